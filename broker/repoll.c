/*
 * The record of a long-poll connection the broker keeps (repoll.h): the first poll's
 * request as libmicrohttpd parsed it (the template the next ones are compared with),
 * its binding to the sockset, its references, the queue of answered polls the watcher
 * ends, the idle limit and the hand-back to libmicrohttpd. Below stream.c, which binds
 * and answers; the watcher's reading of the next request is repoll_read.c.
 */
#include "repoll.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <microhttpd.h>

#include "broker.h"
#include "log.h"
#include "sockset.h"

#define REPOLL_TMPL_MAX 4096		/* a first request's arguments and headers, kept per connection */

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct repoll *open_list;	/* bound, not closed; under list_lock */
static bool stopping;			/* under list_lock: the loops are stopping */
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static struct repoll *done_list;	/* answered polls' records, each referenced; under done_lock */

/* The first request, as a template being built. */
struct repoll_tmpl {
	char buf[REPOLL_TMPL_MAX];
	size_t len;
	bool bad;			/* not a request the broker can compare */
};

/* Appends "name\0value\0". */
static void
repoll_tmpl_add(struct repoll_tmpl *t, const char *name, const char *value)
{
	size_t n = strlen(name) + 1, v;

	if (value == NULL) {	/* "?a" without "=": not compared */
		t->bad = true;
		return;
	}
	v = strlen(value) + 1;
	if (t->len + n + v > sizeof t->buf) {
		t->bad = true;
		return;
	}
	memcpy(t->buf + t->len, name, n);
	memcpy(t->buf + t->len + n, value, v);
	t->len += n + v;
}

static enum MHD_Result
repoll_tmpl_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	if (strcmp(key, "last_event_id") != 0)
		repoll_tmpl_add(cls, key, value);
	return MHD_YES;
}

/*
 * A request with a body or that ends its connection is not kept, and neither is one
 * whose headers the broker would read otherwise than libmicrohttpd.
 */
static enum MHD_Result
repoll_tmpl_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct repoll_tmpl *t = cls;

	(void)kind;
	if (strcasecmp(key, "Content-Length") == 0 || strcasecmp(key, "Transfer-Encoding") == 0 ||
	    strcasecmp(key, "Expect") == 0 || strcasecmp(key, "Upgrade") == 0 ||
	    (strcasecmp(key, "Connection") == 0 && value != NULL &&
	    (strcasestr(value, "close") != NULL || strcasestr(value, "upgrade") != NULL)))
		t->bad = true;
	else if (strcasecmp(key, "Last-Event-ID") != 0)
		repoll_tmpl_add(t, key, value);
	return MHD_YES;
}

static void
repoll_free(struct repoll *r)
{
	free(r->channel);
	free(r->token);
	free(r->session);
	free(r->origins);
	free(r->lines);
	free(r->cors);
	free(r->tmpl);
	free(r);
}

struct repoll *
repoll_new(struct MHD_Connection *conn, int fd, const char *channel, size_t chlen, const char *token)
{
	const union MHD_ConnectionInfo *d = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON);
	const union MHD_ConnectionInfo *a = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
	struct repoll_tmpl t = { .len = 0 };
	struct repoll *r;
	const union MHD_DaemonInfo *f = d != NULL ? MHD_get_daemon_info(d->daemon, MHD_DAEMON_INFO_FLAGS) : NULL;
	socklen_t alen;

	/* A daemon without a thread of its own (bus->serve) takes no connection back from the watcher. */
	if (d == NULL || a == NULL || a->client_addr == NULL || f == NULL ||
	    (f->flags & MHD_USE_INTERNAL_POLLING_THREAD) == 0)
		return NULL;
	alen = a->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, repoll_tmpl_arg, &t);
	MHD_get_connection_values(conn, MHD_HEADER_KIND, repoll_tmpl_header, &t);
	if (t.bad || (r = calloc(1, sizeof *r)) == NULL)
		return NULL;
	r->kind = REQ_REPOLL;
	atomic_init(&r->refs, 1);
	r->fd = fd;
	r->daemon = d->daemon;
	memcpy(&r->addr, a->client_addr, alen);
	r->addrlen = alen;
	r->eventsource = accept != NULL && strcasestr(accept, "text/event-stream") != NULL;
	r->chlen = chlen;
	if ((r->channel = malloc(chlen + 1)) == NULL || (r->tmpl = malloc(t.len + 1)) == NULL ||
	    (token != NULL && (r->token = strdup(token)) == NULL)) {
		repoll_free(r);
		return NULL;
	}
	memcpy(r->channel, channel, chlen);
	r->channel[chlen] = '\0';
	memcpy(r->tmpl, t.buf, t.len);
	r->tmpl_len = t.len;
	return r;
}

int
repoll_set_stream(struct repoll *r, const struct stream *s, const char *lines, const char *cors)
{
	r->ping = s->ping;
	if ((s->session != NULL && (r->session = strdup(s->session)) == NULL) ||
	    (s->origins != NULL && (r->origins = strdup(s->origins)) == NULL) ||
	    (r->lines = strdup(lines)) == NULL || (r->cors = strdup(cors)) == NULL)
		return -1;
	return 0;
}

/*
 * The watcher learns of r only from the sockset, after the modification: the release
 * before it (acquired in repoll_event) hands it everything written so far.
 */
int
repoll_bind(struct repoll *r, struct stream *s)
{
	atomic_store(&r->s, s);
	atomic_fetch_add(&r->refs, 1);	/* the connection's */
	atomic_store_explicit(&r->bound, true, memory_order_release);
	if (sockset_watch_input(r->fd, r) == -1) {
		log_warn("epoll_ctl mod: %s", strerror(errno));
		atomic_store(&r->bound, false);
		atomic_store(&r->s, NULL);
		atomic_fetch_sub(&r->refs, 1);
		return -1;
	}
	pthread_mutex_lock(&list_lock);
	r->prev = NULL;
	r->next = open_list;
	if (open_list != NULL)
		open_list->prev = r;
	open_list = r;
	pthread_mutex_unlock(&list_lock);
	return 0;
}

void
repoll_rearm(struct repoll *r)
{
	if (sockset_watch_input(r->fd, r) == -1)
		log_warn("epoll_ctl mod: %s", strerror(errno));
}

/*
 * An answered poll must stop counting as a subscriber (in /stats, in a publish's
 * count, in Redis) as soon as libmicrohttpd's completed callback would have ended it;
 * the thread that answered holds the channel's lock, so the watcher ends it, woken
 * once for a batch of them.
 */
void
repoll_answered(struct repoll *r)
{
	bool kick;

	pthread_mutex_lock(&done_lock);
	if (r->queued) {
		pthread_mutex_unlock(&done_lock);
		return;
	}
	r->queued = true;
	atomic_fetch_add(&r->refs, 1);	/* the list's */
	kick = done_list == NULL;
	r->done_next = done_list;
	done_list = r;
	pthread_mutex_unlock(&done_lock);
	if (kick)
		sockset_kick();
}

void
repoll_unref(struct repoll *r)
{
	if (atomic_fetch_sub(&r->refs, 1) == 1)
		repoll_free(r);
}

/*
 * A kept connection has header_timeout for its next request after an answer, as
 * libmicrohttpd's (conn.c); without one, request_timeout, libmicrohttpd's idle limit.
 * Shut down here, it ends through its hang-up.
 */
void
repoll_tick(uint32_t now)
{
	uint32_t limit = (uint32_t)(opt(OPT_HEADER_TIMEOUT) > 0 ? opt(OPT_HEADER_TIMEOUT) : opt(OPT_REQUEST_TIMEOUT));
	struct repoll *r;
	unsigned idle;

	if (limit == 0)
		return;
	pthread_mutex_lock(&list_lock);
	for (r = open_list; r != NULL; r = r->next) {
		idle = atomic_load(&r->idle_since);
		if (idle != 0 && now + 1 - idle >= limit) {
			atomic_store(&r->idle_since, 0);	/* once */
			if (shutdown(r->fd, SHUT_RDWR) == 0)
				atomic_fetch_add(&counters.header_timeouts, 1);
		}
	}
	pthread_mutex_unlock(&list_lock);
}

void
repoll_stop(void)
{
	pthread_mutex_lock(&list_lock);
	stopping = true;
	pthread_mutex_unlock(&list_lock);
}

struct repoll *
repoll_take_done(void)
{
	struct repoll *r, *n;

	pthread_mutex_lock(&done_lock);
	r = done_list;
	done_list = NULL;
	for (n = r; n != NULL; n = n->done_next)
		n->queued = false;
	pthread_mutex_unlock(&done_lock);
	return r;
}

bool
repoll_take_answered(struct repoll *r, struct stream *s)
{
	struct stream *was = s;

	return atomic_compare_exchange_strong(&r->s, &was, NULL);
}

/* Off the open list (the watcher, closing it). */
void
repoll_unlist(struct repoll *r)
{
	pthread_mutex_lock(&list_lock);
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		open_list = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	pthread_mutex_unlock(&list_lock);
}

struct repoll *
repoll_first_open(void)
{
	struct repoll *r;

	pthread_mutex_lock(&list_lock);
	r = open_list;
	pthread_mutex_unlock(&list_lock);
	return r;
}

/* Under the list lock, so that no daemon stops meanwhile (repoll_stop comes first). */
void
repoll_give_back(struct repoll *r, int fd)
{
	pthread_mutex_lock(&list_lock);
	if (stopping)
		close(fd);
	else if (MHD_add_connection(r->daemon, fd, (const struct sockaddr *)&r->addr, r->addrlen) != MHD_YES)
		log_debug("long-poll connection: libmicrohttpd did not take it back (%s)", strerror(errno));
	pthread_mutex_unlock(&list_lock);	/* libmicrohttpd closed fd if it failed */
}
