/*
 * The watcher's side of kept long-poll connections (repoll.h): reading the next
 * request once a poll is answered, taking it on as the next poll or handing it back to
 * libmicrohttpd, and the connection's end (hang-up, idle past header_timeout, SIGTERM).
 *
 * The next request is read with MSG_PEEK and consumed only once the broker has taken
 * it on, so that a request it does not take goes back to libmicrohttpd whole, still in
 * the socket. It is taken on only if it is byte for byte the first request as
 * libmicrohttpd parsed it (its arguments, then its headers, in order) but for the last
 * event id (Last-Event-ID, ?last_event_id=), so everything decided from the first one
 * (auth mode and peer, filters, ping, CORS) holds; the token is checked again, since
 * it may have expired meanwhile. The parser is stricter than libmicrohttpd (no folded
 * or padded lines, no control bytes, nothing after the head): a request it would read
 * differently is handed back, never taken on. Every piece is bounded by REPOLL_HEAD_MAX.
 * Above subscribe.c, which makes the next poll's stream; the watcher calls in through
 * its hooks (main.c).
 */
#include "repoll.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "sockset.h"

static struct repoll *grave;		/* closed this loop, watcher only */

/* Ends the answered polls (the watcher, between two waits); a record has a new poll by now if its client was quick. */
static void
repoll_drain(void)
{
	struct repoll *r, *next;
	struct stream *s;

	for (r = repoll_take_done(); r != NULL; r = next) {
		next = r->done_next;
		s = atomic_load(&r->s);
		if (atomic_load_explicit(&r->bound, memory_order_acquire) && !r->closed && s != NULL &&
		    stream_poll_answered(s, false) && repoll_take_answered(r, s))
			subscribe_end_poll(s);
		repoll_unref(r);
	}
}

/* Ends the connection's poll, if any (the watcher). */
static void
repoll_end_poll(struct repoll *r)
{
	struct stream *s = atomic_exchange(&r->s, NULL);

	if (s != NULL)
		subscribe_end_poll(s);
}

/*
 * The connection is the record's no more (the watcher): its poll ends, its socket
 * leaves the sockset and the open list, and is returned; r's memory waits for the
 * next loop.
 */
static int
repoll_retire(struct repoll *r)
{
	int fd = r->fd;

	repoll_end_poll(r);
	sockset_del(fd);
	r->fd = -1;
	r->closed = true;
	conn_adopt(-1);
	repoll_unlist(r);
	r->grave_next = grave;
	grave = r;
	return fd;
}

/* The connection ended. */
static void
repoll_close(struct repoll *r)
{
	close(repoll_retire(r));
}

/*
 * The next request is not one the broker takes on: the socket goes back to
 * libmicrohttpd with the request unread in it, as a new connection (the watcher).
 */
static void
repoll_hand_back(struct repoll *r)
{
	int fd = repoll_retire(r);

	atomic_fetch_add(&counters.repoll_handed_back, 1);
	repoll_give_back(r, fd);
}

static bool
repoll_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Compares name and value with the template's next entry at *pos; advances it. */
static bool
repoll_next_is(const struct repoll *r, size_t *pos, const char *name, const char *value)
{
	const char *p = r->tmpl + *pos;
	size_t n, v;

	if (*pos >= r->tmpl_len)
		return false;
	n = strlen(p) + 1;
	v = strlen(p + n) + 1;
	if (strcmp(p, name) != 0 || strcmp(p + n, value) != 0)
		return false;
	*pos += n + v;
	return true;
}

/* '+' is a space in a query (as libmicrohttpd reads it), then the broker's percent-decoding. */
static void
repoll_unescape_arg(char *s)
{
	char *p;

	for (p = s; *p != '\0'; p++)
		if (*p == '+')
			*p = ' ';
	request_unescape(NULL, NULL, s);
}

/* The query (NUL-terminated, in place): the template's arguments, and perhaps last_event_id. */
static bool
repoll_match_query(const struct repoll *r, char *q, size_t *pos, const char **last_id)
{
	char *amp, *eq;

	while (q != NULL && *q != '\0') {
		if ((amp = strchr(q, '&')) != NULL)
			*amp++ = '\0';
		if ((eq = strchr(q, '=')) == NULL || eq == q)
			return false;	/* "?a", "?=b": libmicrohttpd's own reading */
		*eq++ = '\0';
		repoll_unescape_arg(q);
		repoll_unescape_arg(eq);
		if (strcmp(q, "last_event_id") == 0)
			*last_id = eq;
		else if (!repoll_next_is(r, pos, q, eq))
			return false;
		q = amp;
	}
	return true;
}

/* The request line "GET /events/<channel>[?query] HTTP/1.1" (NUL-terminated, in place). */
static bool
repoll_match_line(const struct repoll *r, char *line, size_t *pos, const char **last_id)
{
	char *target, *end, *query;
	const char *p;
	size_t n;

	if (strncmp(line, "GET /events/", 12) != 0)
		return false;
	target = line + 4;
	if ((end = strchr(target, ' ')) == NULL || strcmp(end, " HTTP/1.1") != 0)
		return false;
	*end = '\0';
	for (p = target; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '#')
			return false;
	if ((query = strchr(target, '?')) != NULL)
		*query++ = '\0';
	n = request_unescape(NULL, NULL, target + 8);
	if (n != r->chlen || memcmp(target + 8, r->channel, n) != 0)
		return false;
	return repoll_match_query(r, query, pos, last_id);
}

int
repoll_match(const struct repoll *r, char *buf, size_t n, struct repoll_req *q)
{
	char *end, *line, *next, *colon, *v, *e;
	const char *header_id = NULL, *arg_id = NULL;
	size_t pos = 0;

	if (n < 12)
		return memcmp(buf, "GET /events/", n) == 0 ? 0 : -1;
	if (memcmp(buf, "GET /events/", 12) != 0)
		return -1;
	if ((end = memmem(buf, n, "\r\n\r\n", 4)) == NULL)
		return n >= REPOLL_HEAD_MAX ? -1 : 0;
	q->head_len = (size_t)(end - buf) + 4;
	if (q->head_len != n || memchr(buf, '\0', n) != NULL)
		return -1;	/* pipelined, or a NUL: libmicrohttpd's */
	end[2] = '\0';		/* the head is now lines ending in "\r\n", then NUL */
	for (line = buf; *line != '\0'; line = next) {
		if ((e = strstr(line, "\r\n")) == NULL)
			return -1;
		*e = '\0';
		next = e + 2;
		if (memchr(line, '\n', (size_t)(e - line)) != NULL || memchr(line, '\r', (size_t)(e - line)) != NULL)
			return -1;
		if (line == buf) {
			if (!repoll_match_line(r, line, &pos, &arg_id))
				return -1;
			continue;
		}
		if ((colon = strchr(line, ':')) == NULL || colon == line)
			return -1;
		*colon = '\0';
		for (v = line; v < colon; v++)
			if (!repoll_tchar((unsigned char)*v))
				return -1;
		for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (e = v; *e != '\0'; e++)
			if (((unsigned char)*e < 0x20 && *e != '\t') || *e == 0x7f)
				return -1;
		if (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			return -1;	/* libmicrohttpd may keep or trim it: not compared */
		if (strcasecmp(line, "Last-Event-ID") == 0) {
			if (header_id != NULL)
				return -1;
			header_id = v;
		} else if (!repoll_next_is(r, &pos, line, v))
			return -1;
	}
	if (pos != r->tmpl_len)
		return -1;
	q->last_id = header_id != NULL ? header_id : arg_id;	/* as subscribe_start reads them */
	if (q->last_id != NULL && strlen(q->last_id) > REPOLL_ID_MAX)
		return -1;
	return 1;
}

/*
 * The socket has data: once the poll's answer is out, the next request is read (not
 * consumed) and either taken on as the next poll or handed back (the watcher).
 */
static void
repoll_read(struct repoll *r)
{
	char buf[REPOLL_HEAD_MAX + 1];
	struct repoll_req q;
	struct auth_result ar;
	struct stream *s = atomic_load(&r->s);
	ssize_t n;
	int m;

	if (s != NULL && !stream_poll_answered(s, true))
		return;		/* its end re-arms the socket (repoll_rearm) */
	repoll_end_poll(r);
	if (stream_ending()) {
		repoll_close(r);
		return;
	}
	n = recv(r->fd, buf, REPOLL_HEAD_MAX, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		repoll_close(r);
		return;
	}
	if (n < 0)
		return;
	buf[n] = '\0';
	if ((m = repoll_match(r, buf, (size_t)n, &q)) == 0)
		return;		/* the rest of the head wakes the watcher again */
	if (m < 0 || (r->token != NULL && auth_token_check(r->token, r->channel, r->chlen, &ar) == -1) ||
	    (s = subscribe_repoll_open(r, q.last_id)) == NULL) {
		repoll_hand_back(r);	/* libmicrohttpd answers it, refusals included */
		return;
	}
	/* Taken on: consumed without a copy (TCP discards with MSG_TRUNC). */
	if (recv(r->fd, buf, q.head_len, MSG_TRUNC | MSG_DONTWAIT) != (ssize_t)q.head_len) {
		repoll_close(r);
		return;
	}
	atomic_store(&r->idle_since, 0);
	atomic_fetch_add(&counters.repolls, 1);
	atomic_store(&r->s, s);
	subscribe_repoll_go(s, q.last_id);
}

void
repoll_event(struct repoll *r, uint32_t events)
{
	struct stream *s;

	if (!atomic_load_explicit(&r->bound, memory_order_acquire) || r->closed)
		;		/* closed earlier in this batch */
	else if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		repoll_close(r);
	else {
		/* s stays in memory until this thread reaps it, even if another thread ends it. */
		if ((events & EPOLLOUT) && (s = atomic_load(&r->s)) != NULL)
			stream_flush(s);
		if (events & EPOLLIN)
			repoll_read(r);
	}
}

void
repoll_reap(void)
{
	struct repoll *r;

	repoll_drain();
	while ((r = grave) != NULL) {
		grave = r->grave_next;
		repoll_unref(r);	/* the connection's */
	}
}

void
repoll_close_all(void)
{
	struct repoll *r;

	while ((r = repoll_first_open()) != NULL)
		repoll_close(r);
	repoll_reap();
}
