/*
 * GET /events/<channel>: validating the request (name, auth, query, limits), making
 * its stream, attaching it to the channel with its replay cursor, and answering 200
 * only once the bus has joined it, so that every event published after the 200
 * reaches it and counts it. Standalone the join is immediate; in Redis mode the
 * request waits, suspended, for the channel's subscription and this broker's count to
 * be in Redis, and gets 503 if Redis cannot confirm them. Also the end of a stream's
 * request: leaving the bus and the watcher, and dropping MHD's reference.
 */
#include "broker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "jmap.h"
#include "log.h"
#include "names.h"
#include "repoll.h"
#include "replay.h"
#include "stream.h"

/* Each response owns a buffer this big, used only for HTTP/1.0 clients (HTTP/1.1
 * chunked output goes through the connection's pool): keep it small. */
#define SUBSCRIBE_BLOCK 32
#define SUBSCRIBE_HEAD_MAX 2048		/* a taken stream's 200 head: its few headers fit with room */

static bool direct_allowed = true;	/* off under an unknown libmicrohttpd (main.c) */

/* Lets main.c turn direct writes off before any request. */
void
subscribe_allow_direct(bool on)
{
	direct_allowed = on;
}

/* Applies the keepalive directives to a subscriber socket. */
static void
subscribe_keepalive(int fd)
{
	int on = 1, idle, intvl, cnt;

	if (fd < 0 || !opt(OPT_TCP_KEEPALIVE))
		return;
	idle = (int)opt(OPT_TCP_KEEPIDLE);
	intvl = (int)opt(OPT_TCP_KEEPINTVL);
	cnt = (int)opt(OPT_TCP_KEEPCNT);
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) == -1)
		log_debug("tcp keepalive: %s", strerror(errno));
}

/*
 * Reads ?ping= into *ping: absent, the ping_interval default; 0, no pings; any other
 * decimal, clamped to [ping_min, ping_max] (DESIGN.md, RFC 8620 section 7.3), however
 * large, even past what fits in a long. Returns -1 for anything but digits.
 */
int
subscribe_ping_arg(const char *v, unsigned *ping)
{
	unsigned long long n = 0, max = (unsigned long long)opt(OPT_PING_MAX);
	const char *p;

	*ping = (unsigned)opt(OPT_PING_INTERVAL);
	if (v == NULL)
		return 0;
	if (*v == '\0')
		return -1;
	for (p = v; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (n <= max)	/* stop growing once past the clamp: no overflow */
			n = n * 10 + (unsigned)(*p - '0');
	}
	if (n > 0 && n < (unsigned long long)opt(OPT_PING_MIN))
		n = (unsigned long long)opt(OPT_PING_MIN);
	if (n > max)
		n = max;
	*ping = (unsigned)n;
	return 0;
}

/* Reads the query and headers into o; returns NULL or the 400 reason. The token's sid wins over ?session=. */
static const char *
subscribe_parse(struct MHD_Connection *conn, const struct auth_result *ar, struct stream_opts *o)
{
	const char *session = request_arg(conn, "session");
	const char *origin = request_arg(conn, "origin");
	const char *closeafter = request_arg(conn, "closeafter");
	const char *lp = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Long-Poll");

	if (session != NULL && !names_id_valid(session, strlen(session)))
		return "invalid session";
	if (origin != NULL && !names_origin_list_valid(origin, strlen(origin)))
		return "invalid origin list";
	if (subscribe_ping_arg(request_arg(conn, "ping"), &o->ping) == -1)
		return "invalid ping: seconds expected";
	if (closeafter != NULL && strcmp(closeafter, "event") != 0 &&
	    strcmp(closeafter, "state") != 0 && strcmp(closeafter, "no") != 0)
		return "invalid closeafter: event, state or no expected";
	o->longpoll = (lp != NULL && strcasecmp(lp, "yes") == 0) ||
	    (closeafter != NULL && strcmp(closeafter, "no") != 0);
	o->session = ar->session[0] != '\0' ? ar->session : session;
	o->origins = origin;
	return NULL;
}

/* Whether the client is an EventSource (or says it reads one): it accepts text/event-stream. */
static bool
subscribe_is_eventsource(struct MHD_Connection *conn)
{
	const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");

	return accept != NULL && strcasestr(accept, "text/event-stream") != NULL;
}

static const char subscribe_bus_refused[] = "the bus could not confirm the subscription (redis unavailable)";

/* The retry: of a refused EventSource: BROKER_RETRY_MS plus 0-50% jitter. */
static unsigned
subscribe_retry_ms(void)
{
	return BROKER_RETRY_MS + (unsigned)(random() % (BROKER_RETRY_MS / 2 + 1));
}

/*
 * A refusal for a while (a limit, the bus): counted, then 429 or 503 + Retry-After
 * with a JSON reason for curl and monitoring, or, for an EventSource, a 200 stream
 * that only says when to retry (reply_retry), so that the browser comes back by itself.
 */
static enum MHD_Result
subscribe_refuse_for_now(struct MHD_Connection *conn, unsigned status, enum refuse_reason why,
    const char *msg)
{
	atomic_fetch_add(&counters.refused[why], 1);
	if (!subscribe_is_eventsource(conn))
		return reply_error(conn, status, msg);
	return reply_retry(conn, subscribe_retry_ms(), msg);
}

struct subscribe_head { char *p; size_t len, max; bool cors_only; };

/* Appends one "Name: value" line of the response's header list to a head. */
static enum MHD_Result
subscribe_head_line(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
	struct subscribe_head *h = cls;
	int n;

	(void)kind;
	if (h->cors_only && strncasecmp(name, "Access-Control-", 15) != 0 && strcasecmp(name, "Vary") != 0)
		return MHD_YES;
	n = snprintf(h->p + h->len, h->max - h->len, "%s: %s\r\n", name, value);
	if (n < 0 || (size_t)n >= h->max - h->len)
		return MHD_NO;
	h->len += (size_t)n;
	return MHD_YES;
}

/* A status line and libmicrohttpd's Date line into buf; returns its length, or 0. */
static size_t
subscribe_status_line(const char *status, char *buf, size_t max)
{
	time_t now = time(NULL);
	struct tm tm;
	char date[40];
	int n;

	gmtime_r(&now, &tm);
	if (strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
		return 0;
	n = snprintf(buf, max, "HTTP/1.1 %s\r\nDate: %s\r\n", status, date);
	return n > 0 && (size_t)n < max ? (size_t)n : 0;
}

/*
 * The header lines libmicrohttpd 0.9.75 would send for r after Date (the list, chunked
 * framing, the blank line) into buf, or only the CORS ones (no framing, no blank line);
 * returns their length, or 0 if they do not fit.
 */
static size_t
subscribe_render_lines(struct MHD_Response *r, char *buf, size_t max, bool cors_only)
{
	struct subscribe_head h = { .p = buf, .max = max, .cors_only = cors_only };

	buf[0] = '\0';
	if (MHD_get_response_headers(r, subscribe_head_line, &h) < 0)
		return 0;
	if (cors_only)
		return h.len + 1;	/* may be "": its NUL counts */
	if (subscribe_head_line(&h, MHD_HEADER_KIND, "Transfer-Encoding", "chunked") != MHD_YES ||
	    h.max - h.len < 3)
		return 0;
	memcpy(buf + h.len, "\r\n", 3);
	return h.len + 2;
}

/* The head libmicrohttpd 0.9.75 would send for r into buf; returns its length, or 0 if it does not fit. */
static size_t
subscribe_render_head(struct MHD_Response *r, char *buf, size_t max)
{
	size_t n = subscribe_status_line("200 OK", buf, max), m;

	if (n == 0 || (m = subscribe_render_lines(r, buf + n, max - n, false)) == 0)
		return 0;
	return n + m;
}

/*
 * A kept long-poll connection (s->repoll) learns the first poll's answer head and
 * filters; 0, or -1: it is not kept (the connection ends after this answer).
 */
static int
subscribe_keep_poll(struct stream *s, struct MHD_Response *r)
{
	char lines[SUBSCRIBE_HEAD_MAX], cors[SUBSCRIBE_HEAD_MAX];

	if (subscribe_render_lines(r, lines, sizeof lines, false) == 0 ||
	    subscribe_render_lines(r, cors, sizeof cors, true) == 0)
		return -1;
	return repoll_set_stream(s->repoll, s, lines, cors);
}

/*
 * The 200 of a stream that owns a duplicate of its socket is written by the broker
 * with the preamble in one send (libmicrohttpd sends a callback response's head alone:
 * two segments a subscriber), then the handler's MHD_NO makes libmicrohttpd drop its
 * connection, pool and all; TURBO mode closes without shutdown(2), so the duplicate
 * keeps the socket open. The request's reference on s becomes the socket's, dropped
 * when the watcher ends the stream (subscribe_end_taken). *req_cls is cleared first:
 * the stream may end, on the watcher, before MHD's completed callback runs.
 */
static enum MHD_Result
subscribe_take(struct stream *s, struct MHD_Response *r, void **req_cls)
{
	char head[SUBSCRIBE_HEAD_MAX];
	size_t len = subscribe_render_head(r, head, sizeof head);

	if (len == 0)
		return MHD_NO;	/* not as a taken stream: MHD ends it */
	if (s->repoll != NULL && subscribe_keep_poll(s, r) == -1) {
		repoll_unref(s->repoll);	/* never bound: only s knew it */
		s->repoll = NULL;
	}
	conn_settled(s->conn);
	conn_adopt(1);
	*req_cls = NULL;
	stream_take(s, head, len);
	return MHD_NO;
}

/* Sends the stream's headers and hands the connection to the content reader (or takes it over). */
static enum MHD_Result
subscribe_respond(struct stream *s, void **req_cls)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (s->join_status != 0)
		return subscribe_refuse_for_now(s->conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->join_status == -2 ?
		    REFUSE_WATCH : REFUSE_BUS, s->join_status == -2 ? "cannot watch the connection" :
		    subscribe_bus_refused);
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SUBSCRIBE_BLOCK, stream_read, s, NULL);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	cors_headers(s->conn, r);
	if (s->own_fd) {
		ret = subscribe_take(s, r, req_cls);
		MHD_destroy_response(r);
		return ret;
	}
	s->responding = true;
	s->head = r;
	ret = conn_queue(s->conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static void subscribe_repoll_answer(struct stream *s);

/* The join (and a JMAP stream's fetch) answered for o: its request runs again, or a poll the broker read is answered. */
static void
subscribe_waited(struct stream *o)
{
	if (o->polls)
		subscribe_repoll_answer(o);
	else
		conn_resume(o->conn);
}

/*
 * A JMAP stream's stored state is in (or could not be read): installed, then the last
 * of the join, this fetch and the handler to finish answers. The request's own
 * reference keeps s alive after stream_jmap_ready drops the fetch's.
 */
static void
subscribe_jmap_fetched(struct stream *s, int status, const char *json, size_t len)
{
	struct stream *o = s->leg ? s->acct.owner : s;	/* whose request waits */

	stream_jmap_ready(s, status, json, len);
	if (atomic_fetch_sub(&o->join_wait, 1) == 1)
		subscribe_waited(o);
}

/*
 * The bus's join answer; the last of it (with a JMAP stream's state fetch, asked for
 * here, once the join is confirmed, so that every state stored after the fetch is
 * announced to a subscribed channel) and the handler to finish answers. A leg's
 * answers count for its JMAP stream's request, which any failed join refuses.
 */
static void
subscribe_joined(struct stream *s, int status)
{
	struct stream *o = s->leg ? s->acct.owner : s;	/* whose request waits */
	bool jmap = s->jmap != NULL || s->leg;
	unsigned parties = 1;

	if (!s->leg || status != 0)
		o->join_status = (int8_t)status;
	if (jmap && status == 0) {
		pthread_mutex_lock(&s->ch->lock);
		stream_ref_locked(s);	/* the fetch's, dropped by stream_jmap_ready */
		pthread_mutex_unlock(&s->ch->lock);
		bus->jmap_state(s, subscribe_jmap_fetched);
	} else if (jmap)
		parties = 2;		/* no fetch after a failed join: its share goes too */
	if (atomic_fetch_sub(&o->join_wait, parties) == parties)
		subscribe_waited(o);	/* the handler suspended: it runs again */
}

/*
 * Asks the bus to join s and answers at once if it did so already; otherwise the
 * request stays suspended until subscribe_joined resumes it (subscribe_resumed). A
 * JMAP stream also waits for its account's stored state, fetched once the join is
 * confirmed: so its 200, like any stream's, means that every state stored from then on
 * reaches it as a change, never folded into the baseline unseen.
 */
static enum MHD_Result
subscribe_join(struct stream *s, const char *last_id, bool remote, void **req_cls)
{
	struct stream_legs *legs = stream_legs(s);
	unsigned i;

	if (legs != NULL) {	/* the legs join, each with its state fetch; s itself is on no bus */
		atomic_store(&s->join_wait, (unsigned char)(1 + 2 * legs->n));
		for (i = 0; i < legs->n; i++) {
			legs->leg[i]->join_asked = true;
			bus->join(legs->leg[i], subscribe_joined);
		}
	} else {
		atomic_store(&s->join_wait, s->jmap != NULL ? 3 : 2);
		s->join_asked = true;
		bus->join(s, subscribe_joined);
	}
	if (remote)
		bus->replay(s, last_id, replay_done);	/* after the join: one FIFO for both */
	if (atomic_load(&s->join_wait) > 1) {
		s->join_suspended = true;
		MHD_suspend_connection(s->conn);
	}
	if (atomic_fetch_sub(&s->join_wait, 1) != 1)
		return MHD_YES;
	if (s->join_suspended) {
		conn_resume(s->conn);
		return MHD_YES;
	}
	return subscribe_respond(s, req_cls);
}

/* The access handler runs again after the join resumed the request. */
enum MHD_Result
subscribe_resumed(struct MHD_Connection *conn, void **req_cls)
{
	struct stream *s = *req_cls;

	(void)conn;
	if (s->responding)
		return MHD_YES;
	return subscribe_respond(s, req_cls);
}

/*
 * An attached stream becomes the request's: watched for hang-ups, then joined (with
 * its replay when remote). From here the request-completed callback ends the stream
 * (subscribe_completed).
 */
static enum MHD_Result
subscribe_go(struct stream *s, void **req_cls, const char *last_id, bool remote)
{
	*req_cls = s;
	if (watcher_watch(s) == -1) {
		s->join_status = -2;	/* never reaped if its client hung up: refuse it */
		return subscribe_respond(s, req_cls);
	}
	subscribe_keepalive(s->fd);
	return subscribe_join(s, last_id, remote, req_cls);
}

/*
 * Makes the stream of a request (o; o->jmap is stolen) with its socket. Direct writes
 * frame HTTP/1.1 chunks (HTTP/1.0 responses are not chunked); a JMAP stream's events
 * are its own StateChanges, made under its lock, never written directly. A long-lived
 * HTTP/1.1 stream is taken over at its 200 (subscribe_take): its socket is duplicated
 * now, so that the watcher registers the descriptor that stays. A long-poll response
 * stays MHD's (its connection carries the next poll), and so does an HTTP/1.0 one or
 * any under an unknown libmicrohttpd.
 */
static struct stream *
subscribe_stream_new(struct MHD_Connection *conn, const char *version, struct stream_opts *o,
    const char *name, size_t len)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	bool http11 = strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
	int dup;

	o->fd = ci != NULL ? ci->connect_fd : -1;
	o->direct_ok = direct_allowed && o->fd >= 0 && o->jmap == NULL && http11;
	/* A long-poll on a channel may keep its connection (repoll.h): taken over too. */
	if (o->direct_ok && o->longpoll && name != NULL)
		o->repoll = repoll_new(conn, o->fd, name, len, auth_subscriber_token(conn));
	if (direct_allowed && o->fd >= 0 && (!o->longpoll || o->repoll != NULL) && http11 &&
	    (dup = fcntl(o->fd, F_DUPFD_CLOEXEC, 0)) != -1) {	/* out of files: it stays MHD's */
		o->fd = dup;
		o->own_fd = true;
		if (o->repoll != NULL)
			o->repoll->fd = dup;
	} else if (o->repoll != NULL) {
		repoll_unref(o->repoll);
		o->repoll = NULL;
	}
	return stream_new(o);
}

/* Drops a stream that never got attached, with its refusal for a while. */
static enum MHD_Result
subscribe_refuse(struct stream *s, unsigned status, enum refuse_reason reason, const char *why,
    struct MHD_Connection *conn)
{
	atomic_fetch_sub(&counters.streams, 1);
	stream_free(s);
	return subscribe_refuse_for_now(conn, status, reason, why);
}

/* Validates, applies the limits, attaches and joins; the stream becomes the req_cls. */
enum MHD_Result
subscribe_start(struct MHD_Connection *conn, const char *version, const char *name, size_t len,
    void **req_cls)
{
	const char *last_id, *why;
	struct stream_opts o = { .conn = conn, .fd = -1 };
	struct auth_result ar;

	if (!names_channel_valid(name, len))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "invalid channel name");
	if (auth_subscriber(conn, name, len, &ar) == -1)
		return auth_refuse(conn, &ar);
	if ((why = subscribe_parse(conn, &ar, &o)) != NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, why);
	last_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
	if (last_id == NULL)
		last_id = request_arg(conn, "last_event_id");
	return subscribe_open(conn, version, name, len, &o, last_id, req_cls);
}

/*
 * Makes the stream of an authorised, parsed request (o; o->jmap is stolen), applies
 * the limits, attaches it to the channel for a client that last saw last_id and joins
 * it; the stream becomes the req_cls.
 */
enum MHD_Result
subscribe_open(struct MHD_Connection *conn, const char *version, const char *name, size_t len,
    struct stream_opts *o, const char *last_id, void **req_cls)
{
	struct channel *ch;
	struct stream *s;
	int pos;

	if ((s = subscribe_stream_new(conn, version, o, o->jmap == NULL ? name : NULL, len)) == NULL)
		return MHD_NO;
	if (atomic_fetch_add(&counters.streams, 1) >= (unsigned long long)opt(OPT_MAX_CONNECTIONS))
		return subscribe_refuse(s, MHD_HTTP_SERVICE_UNAVAILABLE, REFUSE_CONNECTIONS,
		    "too many connections", conn);
	if ((ch = channel_get(name, len, true)) == NULL)
		return subscribe_refuse(s, MHD_HTTP_SERVICE_UNAVAILABLE, REFUSE_CHANNELS,
		    "too many channels", conn);
	if ((pos = stream_attach(s, ch, last_id)) == STREAM_FULL)
		return subscribe_refuse(s, MHD_HTTP_TOO_MANY_REQUESTS, REFUSE_SUBSCRIBERS,
		    "too many subscribers on this channel", conn);
	return subscribe_go(s, req_cls, last_id, pos == STREAM_REMOTE);
}

/* Unlinks a JMAP stream's legs from their channels and the bus and drops the request's references. */
static void
subscribe_drop_legs(struct stream *s)
{
	struct stream_legs *legs = stream_legs(s);
	struct stream *l;
	unsigned i;

	for (i = 0; legs != NULL && i < legs->n; i++) {
		l = legs->leg[i];
		if (stream_detach(l) && l->join_asked)
			bus->leave(l);
		stream_unref(l);
	}
	if (legs != NULL)
		legs->n = 0;	/* the array goes with s */
}

/*
 * A JMAP stream of several accounts (o->jmap names them; stolen): its own channel, and
 * a leg on each account's channel, then the join of every leg, as subscribe_open does
 * for one channel. The 200 waits for every leg's join and stored state.
 */
enum MHD_Result
subscribe_open_accounts(struct MHD_Connection *conn, const char *version, struct stream_opts *o,
    void **req_cls)
{
	const char *a = jmap_sub_accounts(o->jmap);
	unsigned i, n = jmap_sub_naccounts(o->jmap);
	struct stream_opts lo = { .conn = NULL, .fd = -1 };
	struct stream_legs *legs;
	struct channel *ch;
	struct stream *s, *l;
	const char *why = NULL;
	unsigned status = MHD_HTTP_SERVICE_UNAVAILABLE;
	enum refuse_reason reason = REFUSE_CHANNELS;

	if ((s = subscribe_stream_new(conn, version, o, NULL, 0)) == NULL)
		return MHD_NO;
	if ((legs = calloc(1, sizeof *legs + n * sizeof legs->leg[0])) == NULL ||
	    (ch = channel_private()) == NULL) {
		free(legs);
		stream_free(s);
		return MHD_NO;
	}
	s->acct.legs = legs;
	if (atomic_fetch_add(&counters.streams, 1) >= (unsigned long long)opt(OPT_MAX_CONNECTIONS)) {
		channel_put(ch);
		return subscribe_refuse(s, MHD_HTTP_SERVICE_UNAVAILABLE, REFUSE_CONNECTIONS,
		    "too many connections", conn);
	}
	(void)stream_attach(s, ch, NULL);	/* alone on its channel: never full */
	lo.owner = s;
	for (i = 0; i < n && why == NULL; i++, a += strlen(a) + 1) {
		if ((l = stream_new(&lo)) == NULL)
			why = "out of memory";
		else if ((ch = channel_get(a, strlen(a), true)) == NULL) {
			why = "too many channels";
			stream_free(l);
		} else if (stream_attach(l, ch, NULL) == STREAM_FULL) {
			why = "too many subscribers on this channel";
			status = MHD_HTTP_TOO_MANY_REQUESTS;
			reason = REFUSE_SUBSCRIBERS;
			stream_free(l);
		} else
			legs->leg[legs->n++] = l;
	}
	if (why != NULL) {
		subscribe_drop_legs(s);
		stream_detach(s);
		atomic_fetch_sub(&counters.streams, 1);
		stream_unref(s);	/* the legs' references go as the watcher frees them */
		return subscribe_refuse_for_now(conn, status, reason, why);
	}
	return subscribe_go(s, req_cls, NULL, false);
}

/* Unlinks a finished stream (and its legs) from its channel, the bus and the watcher. */
static void
subscribe_unlink(struct stream *s)
{
	if (stream_detach(s) && s->join_asked)
		bus->leave(s);
	subscribe_drop_legs(s);
	atomic_fetch_sub(&counters.streams, 1);
	watcher_forget(s);
}

/*
 * Ends a stream's life after MHD completed its request: unlinks it, then drops MHD's
 * reference (the watcher frees it once no bus job holds it). Called from MHD's
 * request-completed callback, never the reader.
 */
void
subscribe_completed(struct stream *s)
{
	subscribe_unlink(s);
	stream_unref(s);
}

/*
 * Ends a taken stream, on the watcher, which saw its client hang up or its own
 * shutdown: unlinked like a completed one, its socket closed, the socket's reference
 * dropped.
 */
void
subscribe_end_taken(struct stream *s)
{
	subscribe_unlink(s);
	stream_close_socket(s);
	conn_adopt(-1);
	stream_unref(s);
}

/* --- polls the broker read itself (repoll.c) --------------------------------------- */

/*
 * The answer of a poll the broker read, once its join is confirmed: the 200 head the
 * first poll had (a fresh Date), then whatever is there. A join the bus refused gets
 * what subscribe_refuse_for_now gives libmicrohttpd's requests: reply_retry's stream
 * for an EventSource, else 503 with its JSON reason; the connection stays for the next.
 */
static void
subscribe_repoll_answer(struct stream *s)
{
	const struct repoll *r = s->repoll;
	char out[SUBSCRIBE_HEAD_MAX * 2 + 512], body[REPLY_RETRY_BODY_MAX];
	size_t n, lines = strlen(r->lines);
	int b, m;

	if ((n = subscribe_status_line(s->join_status == 0 || r->eventsource ? "200 OK" :
	    "503 Service Unavailable", out, sizeof out)) == 0)
		return;		/* cannot happen: out is big enough */
	if (s->join_status == 0) {
		memcpy(out + n, r->lines, lines);	/* fits: lines < SUBSCRIBE_HEAD_MAX */
		stream_take(s, out, n + lines);
		return;
	}
	atomic_fetch_add(&counters.refused[REFUSE_BUS], 1);
	if (r->eventsource) {
		b = (int)reply_retry_body(body, sizeof body, subscribe_retry_ms(), subscribe_bus_refused);
		m = snprintf(out + n, sizeof out - n, "Retry-After: %s\r\n%s%x\r\n%s\r\n0\r\n\r\n",
		    BROKER_RETRY_AFTER, r->lines, (unsigned)b, body);
	} else {
		atomic_fetch_add(&counters.rejected, 1);
		b = snprintf(body, sizeof body, "{\"error\":\"%s\"}", subscribe_bus_refused);
		m = snprintf(out + n, sizeof out - n, "Content-Type: application/json\r\n"
		    "Cache-Control: no-store\r\nRetry-After: %s\r\n%sContent-Length: %d\r\n\r\n%s",
		    BROKER_RETRY_AFTER, r->cors, b, body);
	}
	stream_answer_raw(s, out, n + (size_t)m);
}

/*
 * The next poll of a kept connection, read by the watcher with last_id: its stream,
 * made as subscribe_open makes one, with the first poll's choices, and attached; or
 * NULL when a limit refuses it, and nothing was done (libmicrohttpd gets the request
 * back and refuses it as usual).
 */
struct stream *
subscribe_repoll_open(struct repoll *r, const char *last_id)
{
	struct stream_opts o = { .fd = r->fd, .session = r->session, .origins = r->origins,
	    .ping = r->ping, .longpoll = true, .direct_ok = true, .repoll = r, .polls = true };
	struct channel *ch;
	struct stream *s;

	atomic_fetch_add(&r->refs, 1);	/* the stream's, stolen by stream_new */
	if ((s = stream_new(&o)) == NULL)
		return NULL;
	if (atomic_fetch_add(&counters.streams, 1) >= (unsigned long long)opt(OPT_MAX_CONNECTIONS) ||
	    (ch = channel_get(r->channel, r->chlen, true)) == NULL) {
		atomic_fetch_sub(&counters.streams, 1);
		stream_free(s);
		return NULL;
	}
	if (stream_attach(s, ch, last_id) == STREAM_FULL) {
		atomic_fetch_sub(&counters.streams, 1);
		stream_free(s);
		return NULL;
	}
	return s;
}

/* The poll, its request consumed: watched for pings, joined (with its replay), answered. */
void
subscribe_repoll_go(struct stream *s, const char *last_id)
{
	bool remote;

	pthread_mutex_lock(&s->ch->lock);
	remote = s->pending;	/* the bus must say what the client missed */
	pthread_mutex_unlock(&s->ch->lock);
	(void)watcher_watch(s);	/* the ping wheel only: the record's socket is in the set */
	atomic_store(&s->join_wait, 2);
	s->join_asked = true;
	bus->join(s, subscribe_joined);
	if (remote)
		bus->replay(s, last_id, replay_done);	/* after the join: one FIFO for both */
	if (atomic_fetch_sub(&s->join_wait, 1) == 1)
		subscribe_repoll_answer(s);
}

/* Ends a kept connection's poll (the watcher): unlinked, the socket's reference dropped; the socket is the record's. */
void
subscribe_end_poll(struct stream *s)
{
	subscribe_unlink(s);
	stream_unref(s);
}
