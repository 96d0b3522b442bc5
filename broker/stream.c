/*
 * Subscriber streams: starting one from a GET /events request (query, replay cursor,
 * preamble), the libmicrohttpd content reader that copies frames from the channel's
 * history, suspending when there is nothing to send and being resumed by publishers,
 * pings and the hang-up watcher, and tearing a stream down. Owns struct stream.
 */
#include "broker.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "log.h"
#include "names.h"

/* Each response owns a buffer this big, used only for HTTP/1.0 clients (HTTP/1.1
 * chunked output goes through the connection's pool): keep it small. */
#define STREAM_BLOCK 32

/*
 * Wakes a suspended stream so its reader runs again; called with ch->lock held. While
 * a directly written chunk is still half unsent, MHD must not write, so the wake
 * waits for the flush (unless the stream is closing anyway).
 */
void
stream_wake(struct stream *s)
{
	if (!s->suspended)
		return;
	if (s->raw != NULL && !s->closing) {
		s->wake_after_raw = true;
		return;
	}
	s->suspended = false;
	MHD_resume_connection(s->conn);
}

/*
 * Sends as much of the pending raw bytes as the socket takes; returns 0 when all are
 * sent, 1 when some remain, -1 when the connection failed (the stream is closing).
 */
static int
stream_send_raw(struct stream *s)
{
	ssize_t n;

	while (s->raw_off < s->raw_len) {
		n = send(s->fd, s->raw + s->raw_off, s->raw_len - s->raw_off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			s->raw_off += (uint32_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		s->closing = true;
		return -1;
	}
	free(s->raw);
	s->raw = NULL;
	s->raw_len = s->raw_off = 0;
	return 0;
}

/*
 * The reaper saw the socket writable: sends more of the raw chunk, and once it is all
 * out hands the stream back to MHD if anything asked for a wake meanwhile.
 */
void
stream_flush_raw(struct stream *s)
{
	pthread_mutex_lock(&s->ch->lock);
	if (!s->dead && s->raw != NULL && stream_send_raw(s) != 1 &&
	    (s->wake_after_raw || s->closing || atomic_load(&broker_terminating))) {
		s->wake_after_raw = false;
		stream_wake(s);
	}
	pthread_mutex_unlock(&s->ch->lock);
}

/*
 * Writes one event straight to a suspended stream's socket as an HTTP chunk, from the
 * publishing thread: no resume, no wake-up of the stream's event loop, no walk of
 * MHD's suspended list. Safe because MHD calls the content reader only with its
 * write buffer empty and never writes a suspended connection. Returns false when the
 * stream is not in that state (the caller wakes it instead).
 */
static bool
stream_push(struct stream *s, struct event *ev, uint64_t index)
{
	char head[16];
	struct iovec iov[3];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 3 };
	size_t total;
	ssize_t n;

	if (!s->direct || !s->suspended || s->raw != NULL || s->small != 0 || s->partial != NULL ||
	    s->replay != NULL || s->pending || s->closing || s->cursor != index ||
	    ev->seq <= s->skip_until)
		return false;
	iov[0].iov_base = head;
	iov[0].iov_len = (size_t)snprintf(head, sizeof head, "%zx\r\n", ev->len);
	iov[1].iov_base = ev->frame;
	iov[1].iov_len = ev->len;
	iov[2].iov_base = (void *)"\r\n";
	iov[2].iov_len = 2;
	total = iov[0].iov_len + ev->len + 2;
	n = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		s->closing = true;
		return false;	/* the wake lets MHD end it */
	}
	if (n < 0)
		n = 0;
	if ((size_t)n < total) {
		/* Keep the rest; the reaper sends it when the socket drains. */
		if ((s->raw = malloc(total - (size_t)n)) == NULL) {
			s->closing = true;
			return false;
		}
		s->raw_len = (uint32_t)(total - (size_t)n);
		s->raw_off = 0;
		for (int i = 0, skip = (int)n; i < 3; i++) {
			size_t l = iov[i].iov_len, from = (size_t)skip < l ? (size_t)skip : l;
			memcpy(s->raw + s->raw_off, (char *)iov[i].iov_base + from, l - from);
			s->raw_off += (uint32_t)(l - from);
			skip -= (int)from;
		}
		s->raw_off = 0;
	}
	s->cursor = index + 1;
	s->last_send = clock_sec();
	s->sent = true;
	atomic_fetch_add(&counters.delivered, 1);
	if (ev->published_ns >= s->start_ns)
		counters_observe_latency(clock_ns() - ev->published_ns);
	return true;
}

/*
 * Hands a new event to a subscriber it is for. Small channels (the usual one per user)
 * are written directly by the publishing thread; a big fan-out goes through the
 * event loops instead, which spreads the sends over every core and lets each loop
 * resume many streams in one walk of its suspended list (measured with 10,000
 * subscribers: fan-out in 80 ms instead of 118 ms, at less CPU).
 */
void
stream_deliver(struct stream *s, struct event *ev, uint64_t index)
{
	/* A long-poll response still ends through MHD: the event goes out at once, then
	 * the wake lets the reader return the end of the stream. */
	if (s->ch->nsubs > BROKER_DIRECT_FANOUT || !stream_push(s, ev, index) || s->longpoll)
		stream_wake(s);
}

/*
 * Small frames are rendered when sent, from a few bytes of state, instead of being
 * kept in a per-stream buffer: every byte of struct stream is paid per subscriber.
 */
enum { STREAM_SMALL_PREAMBLE = 1, STREAM_SMALL_RESET = 2, STREAM_SMALL_PING = 4 };
static void stream_replay_free(struct stream *s);

/* stream_position() results besides the reset reasons (enum stream_reset). */
enum { STREAM_POS_LIVE = -1, STREAM_POS_REMOTE = -2 };
static const char *const stream_reset_reasons[] = { "unknown", "expired", "lagged" };

/* Renders the first pending small frame into out; returns its length and its flag. */
static size_t
stream_small_render(const struct stream *s, char *out, size_t len, uint8_t *flag)
{
	char id[BROKER_ID_MAX];

	if (s->small & STREAM_SMALL_PREAMBLE) {
		*flag = STREAM_SMALL_PREAMBLE;
		return sse_preamble(out, len, s->retry_ms);
	}
	if (s->small & STREAM_SMALL_RESET) {
		*flag = STREAM_SMALL_RESET;
		channel_format_id(id, sizeof id, s->reset_seq);
		return sse_reset(out, len, id, stream_reset_reasons[s->reset_reason]);
	}
	*flag = STREAM_SMALL_PING;
	return sse_ping(out, len, s->ping);
}

/* Copies what fits of the pending small frames; returns bytes copied. */
static size_t
stream_copy_small(struct stream *s, char *buf, size_t max)
{
	char frame[SSE_SMALL_FRAME];
	uint8_t flag;
	size_t len = stream_small_render(s, frame, sizeof frame, &flag), k;

	k = len - s->small_off;
	if (k > max)
		k = max;
	memcpy(buf, frame + s->small_off, k);
	s->small_off = (uint8_t)(s->small_off + k);
	if (s->small_off >= len) {
		s->small &= (uint8_t)~flag;
		s->small_off = 0;
	}
	return k;
}

/*
 * Queues "event: reset" carrying key as its id, and resumes the ring after key (or at
 * its end). Called with ch->lock held; never between two halves of a frame, since a
 * partial event is always finished before small frames are sent.
 */
void
stream_force_reset(struct stream *s, uint64_t key, int reason)
{
	struct history *h = &s->ch->history;
	uint64_t index;

	s->small |= STREAM_SMALL_RESET;
	s->reset_reason = (uint8_t)reason;
	s->reset_seq = key;
	s->cursor = history_after(h, key, &index) == 0 ? index : h->next;
	s->skip_until = key;
	s->sent = true;		/* a long-poll response ends after a reset, like after an event */
	atomic_fetch_add(&counters.resets, 1);
}

/* Resets to the channel's newest id. */
static void
stream_reset(struct stream *s, int reason)
{
	stream_force_reset(s, s->ch->history.last_seq, reason);
}

/* Parses a standalone id "<boot>-<seq>" of this process; -1 for anything else. */
static int
stream_parse_local_id(const char *id, uint64_t *seq)
{
	const char *dash = strchr(id, '-');
	char *end;

	if (dash == NULL || dash - id != BROKER_BOOT_HEX ||
	    memcmp(id, broker_boot, BROKER_BOOT_HEX) != 0 || dash[1] < '0' || dash[1] > '9')
		return -1;
	*seq = strtoull(dash + 1, &end, 10);
	return *end == '\0' ? 0 : -1;
}

/*
 * Places the cursor for a client that last saw last_id (NULL: live only). Returns
 * STREAM_POS_LIVE when the ring serves it, STREAM_POS_REMOTE when only Redis can say
 * what it missed, or a reset reason. Called with ch->lock held.
 */
static int
stream_position(struct stream *s, const char *last_id)
{
	struct channel *ch = s->ch;
	struct history *h = &ch->history;
	uint64_t key, index;

	s->cursor = h->next;
	if (last_id == NULL || *last_id == '\0')
		return STREAM_POS_LIVE;
	if (bus_enabled) {
		/* The ring is only a cache of Redis: use it when it surely covers the id. */
		if (!ch->covered || bus_id_parse(last_id, strlen(last_id), &key) == -1 ||
		    key > h->last_seq || history_after(h, key, &index) == -1)
			return STREAM_POS_REMOTE;
	} else {
		if (stream_parse_local_id(last_id, &key) == -1 || key > channel_last_seq())
			return RESET_UNKNOWN;
		if (history_after(h, key, &index) == -1)
			return RESET_EXPIRED;
	}
	s->cursor = index;
	if (index < h->next)
		atomic_fetch_add(&counters.replays, 1);
	return STREAM_POS_LIVE;
}

/*
 * Copies what fits of the rest of ev; returns bytes copied. An event left halfway is
 * referenced, so eviction cannot cut a frame in two; live events feed the latency
 * histogram when their last byte is handed over.
 */
static size_t
stream_copy_event(struct stream *s, struct event *ev, char *buf, size_t max)
{
	size_t k = ev->len - s->offset;

	if (k > max)
		k = max;
	memcpy(buf, ev->frame + s->offset, k);
	s->offset += k;
	if (s->offset < ev->len) {
		if (s->partial == NULL)
			s->partial = event_ref(ev);
		return k;
	}
	if (ev->published_ns >= s->start_ns)
		counters_observe_latency(clock_ns() - ev->published_ns);
	event_unref(s->partial);	/* may free ev: it was the partial one */
	s->partial = NULL;
	s->offset = 0;
	s->sent = true;
	atomic_fetch_add(&counters.delivered, 1);
	return k;
}

/* Takes the next event from a Redis replay, or NULL when it is used up (and freed). */
static struct event *
stream_next_replayed(struct stream *s)
{
	struct stream_replay *r = s->replay;

	if (r->i < r->n)
		return r->ev[r->i++];
	stream_replay_free(s);
	return NULL;
}

/* Takes the next ring event after the cursor, or NULL. */
static struct event *
stream_next_ring(struct stream *s)
{
	struct event *ev = history_get(&s->ch->history, s->cursor);

	if (ev != NULL)
		s->cursor++;
	return ev;
}

/*
 * Fills buf: the rest of a partial event first, then small frames (preamble, reset),
 * then events fetched from Redis for this stream, then the ring, then a due ping if
 * nothing else was sent. Returns the bytes written. Called with ch->lock held.
 */
static ssize_t
stream_fill(struct stream *s, char *buf, size_t max)
{
	struct history *h = &s->ch->history;
	struct event *ev;
	size_t n = 0;

	while (n < max) {
		if (s->partial != NULL) {
			n += stream_copy_event(s, s->partial, buf + n, max - n);
			continue;
		}
		if (s->small != 0) {
			n += stream_copy_small(s, buf + n, max - n);
			continue;
		}
		if (s->replay != NULL) {
			/* The replay owns its events: drop each once taken (a partial keeps its own). */
			if ((ev = stream_next_replayed(s)) != NULL) {
				if (channel_matches(s, ev))
					n += stream_copy_event(s, ev, buf + n, max - n);
				event_unref(ev);
			}
			continue;
		}
		if (!s->pending && (ev = stream_next_ring(s)) != NULL) {
			if (ev->seq > s->skip_until && channel_matches(s, ev))
				n += stream_copy_event(s, ev, buf + n, max - n);
			continue;
		}
		if (!s->pending && s->cursor < h->first) {
			/* Slow subscriber: its unsent events were evicted. */
			atomic_fetch_add(&counters.lagged, 1);
			stream_reset(s, RESET_LAGGED);
			continue;
		}
		if (s->ping_due && n == 0) {
			s->small |= STREAM_SMALL_PING;
			atomic_fetch_add(&counters.pings, 1);
			s->sent = true;
			s->ping_due = false;
			continue;
		}
		break;
	}
	return (ssize_t)n;
}

/*
 * The content reader: never returns 0 without suspending the connection (MHD would
 * spin); publishers, the ping wheel and the hang-up watcher resume it.
 */
static ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	ssize_t n;

	(void)pos;
	pthread_mutex_lock(&s->ch->lock);
	if (s->closing)
		n = MHD_CONTENT_READER_END_WITH_ERROR;
	else if ((n = stream_fill(s, buf, max)) > 0) {
		s->last_send = clock_sec();
		s->ping_due = false;
	} else if ((s->longpoll && s->sent) || atomic_load(&broker_terminating))
		n = MHD_CONTENT_READER_END_OF_STREAM;
	else {
		s->suspended = true;
		MHD_suspend_connection(s->conn);
	}
	pthread_mutex_unlock(&s->ch->lock);
	return n;
}

/* Applies the keepalive directives to a subscriber socket. */
static void
stream_keepalive(int fd)
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

/* Reads ?ping= (clamped to [ping_min, ping_max]; 0 = none) into s->ping; -1 if bad. */
static int
stream_ping_arg(struct stream *s, const char *v)
{
	char *end;
	unsigned long n;

	s->ping = (unsigned)opt(OPT_PING_INTERVAL);
	if (v == NULL)
		return 0;
	n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end != '\0' || n > 86400)
		return -1;
	if (n > 0 && n < (unsigned long)opt(OPT_PING_MIN))
		n = (unsigned long)opt(OPT_PING_MIN);
	if (n > (unsigned long)opt(OPT_PING_MAX))
		n = (unsigned long)opt(OPT_PING_MAX);
	s->ping = (unsigned)n;
	return 0;
}

/* Reads the query and headers into s; returns NULL or the 400 reason. */
static const char *
stream_parse_request(struct stream *s, struct MHD_Connection *conn)
{
	const char *session = http_arg(conn, "session");
	const char *origin = http_arg(conn, "origin");
	const char *closeafter = http_arg(conn, "closeafter");
	const char *lp = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Long-Poll");

	if (session != NULL && !names_id_valid(session, strlen(session)))
		return "invalid session";
	if (origin != NULL && !names_origin_list_valid(origin, strlen(origin)))
		return "invalid origin list";
	if (stream_ping_arg(s, http_arg(conn, "ping")) == -1)
		return "invalid ping: seconds expected";
	if (closeafter != NULL && strcmp(closeafter, "event") != 0 &&
	    strcmp(closeafter, "state") != 0 && strcmp(closeafter, "no") != 0)
		return "invalid closeafter: event, state or no expected";
	s->longpoll = (lp != NULL && strcasecmp(lp, "yes") == 0) ||
	    (closeafter != NULL && strcmp(closeafter, "no") != 0);
	if ((session != NULL && (s->session = strdup(session)) == NULL) ||
	    (origin != NULL && (s->origins = strdup(origin)) == NULL))
		return "out of memory";
	return NULL;
}

/* Drops the events fetched from Redis for a stream. */
static void
stream_replay_free(struct stream *s)
{
	struct stream_replay *r = s->replay;
	size_t i;

	if (r == NULL)
		return;
	for (i = r->i; i < r->n; i++)
		event_unref(r->ev[i]);
	free(r->ev);
	free(r);
	s->replay = NULL;
}

/* The token's sid wins over ?session=; returns NULL or the reason. */
static const char *
stream_token_session(struct stream *s, const char *sid)
{
	free(s->session);
	s->session = strdup(sid);
	return s->session != NULL ? NULL : "out of memory";
}

/* Frees a stream once nothing can reach it any more (called by the reaper). */
void
stream_free(struct stream *s)
{
	if (s == NULL)
		return;
	if (s->ch != NULL)
		channel_put(s->ch);
	event_unref(s->partial);
	stream_replay_free(s);
	free(s->raw);
	free(s->session);
	free(s->origins);
	free(s);
}

/*
 * Links s into its channel, placing the cursor and queueing the preamble and any reset,
 * all under the lock publishers take, so no event falls between replay and live.
 * Returns 0, or -1 if the channel is full.
 */
static int
stream_attach(struct stream *s, const char *last_id)
{
	struct channel *ch = s->ch;
	int pos;
	unsigned retry = (unsigned)opt(OPT_RECONNECT_MS);

	pthread_mutex_lock(&ch->lock);
	if (ch->nsubs >= (unsigned)opt(OPT_MAX_SUBSCRIBERS_PER_CHANNEL)) {
		pthread_mutex_unlock(&ch->lock);
		return -1;
	}
	history_expire(&ch->history, clock_ns() - (int64_t)opt(OPT_HISTORY_TTL) * 1000000000);
	if (!s->longpoll) {
		retry += (unsigned)(random() % (retry / 2 + 1));
		s->retry_ms = retry;
		s->small |= STREAM_SMALL_PREAMBLE;
	}
	pos = stream_position(s, last_id);
	if (pos >= 0)
		stream_reset(s, pos);
	else if (pos == STREAM_POS_REMOTE) {
		s->pending = true;
		bus_replay(s, last_id);
	}
	s->next = ch->subs;
	if (ch->subs != NULL)
		ch->subs->prev = s;
	ch->subs = s;
	ch->nsubs++;
	s->attached = true;
	if (bus_enabled)
		bus_count_delta(ch, s, +1);
	pthread_mutex_unlock(&ch->lock);
	if (bus_enabled)
		bus_channel_changed(ch);
	return 0;
}

/* Sends the stream's headers and hands the connection to the content reader. */
static enum MHD_Result
stream_respond(struct stream *s)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_read, s, NULL);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	cors_headers(s->conn, r);
	ret = MHD_queue_response(s->conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/*
 * Handles GET /events/<channel>: validates the request, applies the limits and starts
 * the stream. On success the stream becomes the request's req_cls (via *out).
 */
enum MHD_Result
stream_start(struct MHD_Connection *conn, const char *version, const char *name, size_t len,
    void **out)
{
	const union MHD_ConnectionInfo *ci;
	const char *last_id, *why;
	struct stream *s;
	struct auth_result ar;

	if (!names_channel_valid(name, len))
		return http_error(conn, MHD_HTTP_BAD_REQUEST, "invalid channel name");
	if (auth_subscriber(conn, name, len, &ar) == -1)
		return auth_refuse(conn, &ar);
	if ((s = calloc(1, sizeof *s)) == NULL)
		return MHD_NO;
	s->kind = REQ_STREAM;
	s->conn = conn;
	s->refs = 1;
	s->start_ns = clock_ns();
	s->wslot = -1;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	s->fd = ci != NULL ? ci->connect_fd : -1;
	if ((why = stream_parse_request(s, conn)) != NULL ||
	    (ar.session[0] != '\0' && (why = stream_token_session(s, ar.session)) != NULL)) {
		stream_free(s);
		return http_error(conn, MHD_HTTP_BAD_REQUEST, why);
	}
	/* Direct writes frame HTTP/1.1 chunks (HTTP/1.0 responses are not chunked). */
	s->direct = s->fd >= 0 && strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
	if (atomic_fetch_add(&counters.streams, 1) >= (unsigned long long)opt(OPT_MAX_CONNECTIONS)) {
		atomic_fetch_sub(&counters.streams, 1);
		stream_free(s);
		return http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "too many connections");
	}
	if ((s->ch = channel_get(name, len, true)) == NULL) {
		atomic_fetch_sub(&counters.streams, 1);
		stream_free(s);
		return http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "too many channels");
	}
	last_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
	if (last_id == NULL)
		last_id = http_arg(conn, "last_event_id");
	if (stream_attach(s, last_id) == -1) {
		atomic_fetch_sub(&counters.streams, 1);
		stream_free(s);
		return http_error(conn, MHD_HTTP_TOO_MANY_REQUESTS, "too many subscribers on this channel");
	}
	s->last_send = clock_sec();
	stream_keepalive(s->fd);
	reaper_watch(s);
	*out = s;
	return stream_respond(s);
}

/*
 * Ends a stream's life after MHD completed its request: unlinks it from its channel
 * and the reaper, then hands it to the reaper to free once no watcher event can
 * still name it. Called from MHD's request-completed callback, never from the reader.
 */
void
stream_completed(struct stream *s)
{
	struct channel *ch = s->ch;
	bool attached, bury;

	pthread_mutex_lock(&ch->lock);
	attached = s->attached;
	if (attached) {
		if (s->prev != NULL)
			s->prev->next = s->next;
		else
			ch->subs = s->next;
		if (s->next != NULL)
			s->next->prev = s->prev;
		ch->nsubs--;
		s->attached = false;
		if (bus_enabled)
			bus_count_delta(ch, s, -1);
	}
	s->dead = true;
	bury = stream_release(s);
	pthread_mutex_unlock(&ch->lock);
	if (attached && bus_enabled)
		bus_channel_changed(ch);
	atomic_fetch_sub(&counters.streams, 1);
	reaper_forget(s);
	if (bury)
		reaper_bury(s);
}

/* Drops one reference (ch->lock held); true when the caller must bury the stream. */
bool
stream_release(struct stream *s)
{
	return --s->refs == 0 && s->dead;
}

/*
 * Installs what Redis answered for a pending stream: the events it missed (status
 * -1 = ok), or a reset for reason status; then the ring resumes after last. Called
 * on the Redis thread; takes the events (references) and the job's stream reference.
 */
void
stream_replayed(struct stream *s, int status, uint64_t last, struct event **ev, size_t n)
{
	struct channel *ch = s->ch;
	struct history *h = &ch->history;
	struct stream_replay *r = NULL;
	uint64_t index;
	bool bury;

	pthread_mutex_lock(&ch->lock);
	if (!s->dead && status == STREAM_POS_LIVE && history_after(h, last, &index) == -1)
		status = RESET_LAGGED;	/* the ring lost events after last meanwhile */
	if (!s->dead && status == STREAM_POS_LIVE && (r = calloc(1, sizeof *r)) != NULL) {
		r->ev = ev;
		r->n = n;
		s->replay = r;
		s->cursor = index;
		s->skip_until = last;
		atomic_fetch_add(&counters.replays, 1);
	} else if (!s->dead)
		stream_force_reset(s, status == RESET_LAGGED ? h->last_seq : last,
		    status == STREAM_POS_LIVE ? RESET_LAGGED : status);
	if (r == NULL) {
		while (n > 0)
			event_unref(ev[--n]);
		free(ev);
	}
	s->pending = false;
	if (!s->dead)
		stream_wake(s);
	bury = stream_release(s);
	pthread_mutex_unlock(&ch->lock);
	if (bury)
		reaper_bury(s);
}

/* Wakes every stream of one channel so it ends (SIGTERM); with force, even mid-chunk. */
static void
stream_end_channel(struct channel *ch, void *arg)
{
	bool force = arg != NULL;
	struct stream *s;

	pthread_mutex_lock(&ch->lock);
	for (s = ch->subs; s != NULL; s = s->next) {
		if (force)
			s->closing = true;	/* a half-sent direct write cannot be finished */
		stream_wake(s);
	}
	pthread_mutex_unlock(&ch->lock);
}

/*
 * Resumes every suspended stream so each reader ends its response (broker_terminating
 * is set). Streams with a direct write still draining end once it is sent, unless
 * force: then they are cut, so that no connection is left suspended when MHD stops.
 */
void
stream_end_all(bool force)
{
	channel_each(stream_end_channel, force ? (void *)1 : NULL);
}
