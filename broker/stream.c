/*
 * Subscriber streams (struct stream, stream.h): linking one into its channel with its
 * replay cursor, the libmicrohttpd content reader that copies frames from the
 * channel's ring, suspending when there is nothing to send and being woken by
 * publishers, pings and the hang-up watcher, direct writes of new events, resets, and
 * the end of a stream's life (the grave the watcher frees). Knows nothing of HTTP
 * requests (subscribe.c) or where events come from (the bus).
 */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "broker.h"
#include "bus.h"
#include "jmap.h"
#include "log.h"
#include "repoll.h"
#include "sockset.h"
#include "sse.h"

/*
 * Small frames are rendered when sent, from a few bytes of state, instead of being
 * kept in a per-stream buffer: every byte of struct stream is paid per subscriber.
 */
enum { STREAM_SMALL_PREAMBLE = 1, STREAM_SMALL_RESET = 2, STREAM_SMALL_PING = 4 };
enum { STREAM_HEADERS_MAX = 16 };	/* more than a stream's response ever has */
enum { STREAM_QUEUE_MAX = 64 };		/* StateChange events a JMAP stream's client may leave unread */
enum { STREAM_PUMP_MAX = 16384 };	/* bytes a taken stream's pump sends per write (on the caller's stack) */
static const char *const stream_reset_reasons[] = { "unknown", "expired", "lagged", "unavailable" };

enum { STREAM_POLL_ENDS_MAX = 64 };	/* answered polls one thread ends once it let go of the lock */

static atomic_bool streams_ending;		/* SIGTERM: readers end their responses */
static __thread bool poll_ends_deferred;	/* this thread calls stream_end_polls() after unlocking */
static __thread unsigned poll_ends_n;
static __thread struct stream *poll_ends[STREAM_POLL_ENDS_MAX];	/* each referenced */
static void (*poll_end)(struct stream *);	/* set once at start: subscribe.c's, above this file */
static atomic_int streams_blocked;		/* streams with a direct rest their socket has not taken */
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static struct channel_member *grave;		/* dead streams nobody holds, under grave_lock */

/* Copies the request's choices into a new stream. */
struct stream *
stream_new(const struct stream_opts *o)
{
	struct stream *s = calloc(1, sizeof *s);

	if (s == NULL) {
		jmap_sub_free(o->jmap);
		if (o->own_fd)
			close(o->fd);
		if (o->repoll != NULL)
			repoll_unref(o->repoll);
		return NULL;
	}
	s->kind = REQ_STREAM;
	s->jmap = o->jmap;
	s->conn = o->conn;
	s->fd = o->fd;
	s->refs = 1;
	s->start_ns = clock_ns();
	s->last_send = clock_sec();
	s->ping = o->ping;
	s->longpoll = o->longpoll;
	s->direct_ok = o->direct_ok;
	s->own_fd = o->own_fd;
	s->repoll = o->repoll;
	s->polls = o->polls;
	wheel_node_init(&s->wnode);
	if ((o->session != NULL && (s->session = strdup(o->session)) == NULL) ||
	    (o->origins != NULL && (s->origins = strdup(o->origins)) == NULL)) {
		stream_free(s);
		return NULL;
	}
	if (o->owner != NULL) {
		s->leg = true;
		s->acct.owner = o->owner;
		pthread_mutex_lock(&o->owner->ch->lock);
		stream_ref_locked(o->owner);	/* dropped by stream_free */
		pthread_mutex_unlock(&o->owner->ch->lock);
	}
	return s;
}

/* Drops the events fetched for a stream. */
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

/* Frees everything a stream holds. */
void
stream_free(struct stream *s)
{
	if (s == NULL)
		return;
	if (s->ch != NULL)
		channel_put(s->ch);
	event_unref(s->partial);
	stream_replay_free(s);
	if (direct_busy(&s->direct))
		atomic_fetch_sub(&streams_blocked, 1);
	direct_free(&s->direct);
	free(s->session);
	free(s->origins);
	jmap_sub_free(s->jmap);
	if (s->own_fd && s->fd >= 0)
		close(s->fd);
	if (s->repoll != NULL)
		repoll_unref(s->repoll);	/* the last one of a closed record frees it */
	if (s->leg)
		stream_unref(s->acct.owner);	/* may bury it: the watcher frees it next */
	else
		free(s->acct.legs);
	free(s);
}

/* Filters: a session-only event, an excluded session, an origin the subscriber produces. */
bool
stream_wants(const struct stream *s, const struct event *ev)
{
	if (ev->session != NULL && (s->session == NULL || strcmp(ev->session, s->session) != 0))
		return false;
	if (ev->exclude_session != NULL && s->session != NULL &&
	    strcmp(ev->exclude_session, s->session) == 0)
		return false;
	if (ev->origin != NULL && s->origins != NULL) {
		size_t n = strlen(ev->origin);
		const char *p = s->origins;
		for (;;) {
			const char *comma = strchr(p, ',');
			size_t l = comma ? (size_t)(comma - p) : strlen(p);
			if (l == n && memcmp(p, ev->origin, n) == 0)
				return false;
			if (comma == NULL)
				break;
			p = comma + 1;
		}
	}
	return true;
}

/*
 * Appends a StateChange to a JMAP stream's queue (s's lock held); a client that lets
 * STREAM_QUEUE_MAX of them pile up is cut instead (it reconnects with its id and is
 * told what differs, in one event). Steals ev.
 */
static void
stream_queue(struct stream *s, struct event *ev)
{
	struct stream_replay *r = s->replay;
	struct event **grown;

	if (r == NULL && (r = s->replay = calloc(1, sizeof *r)) == NULL)
		goto cut;
	if (r->n - r->i >= STREAM_QUEUE_MAX)
		goto cut;
	if (r->i > 0) {		/* sent ones go first */
		memmove(r->ev, r->ev + r->i, (r->n - r->i) * sizeof *r->ev);
		r->n -= r->i;
		r->i = 0;
	}
	if ((grown = realloc(r->ev, (r->n + 1) * sizeof *grown)) == NULL)
		goto cut;
	r->ev = grown;
	r->ev[r->n++] = ev;
	return;
cut:
	event_unref(ev);
	s->closing = true;
}

/*
 * A leg's channel has news (its lock held): its ring's new jmap-state events become its
 * stream's StateChange events, unless it is still waiting for every account's stored
 * state. A leg that lost events (reset by the bus, evicted unread, cut) ends its stream.
 */
static void
stream_leg_feed(struct stream *leg)
{
	struct stream *s = leg->acct.owner;
	struct history *h = &leg->ch->history;
	struct event *ev;
	bool news = false;

	pthread_mutex_lock(&s->ch->lock);
	if (s->dead)
		goto out;
	if (leg->closing || (leg->small & STREAM_SMALL_RESET) || leg->cursor < h->first) {
		leg->small &= (uint8_t)~STREAM_SMALL_RESET;
		s->closing = true;
		news = true;
	}
	while (!leg->pending && !s->closing && (ev = history_get(h, leg->cursor)) != NULL) {
		leg->cursor++;
		if ((ev = jmap_sub_event(s->jmap, leg->ch->name, ev)) != NULL) {
			stream_queue(s, ev);
			news = true;
		}
	}
	if (news || atomic_load(&streams_ending))
		stream_wake(s);
out:
	pthread_mutex_unlock(&s->ch->lock);
}

static size_t stream_fill(struct stream *s, char *buf, size_t max);

/* A direct write left a rest (ch->lock held): from the first one on, the watcher learns when the socket takes more. */
static void
stream_kept_rest(struct stream *s)
{
	atomic_fetch_add(&streams_blocked, 1);	/* watched until the socket takes it */
	if (s->watch_room || s->fd < 0)
		return;
	if (sockset_want_room(s->fd, s->polls ? (void *)s->repoll : s, s->polls) == 0)
		s->watch_room = true;
	else	/* the slow-reader cut ends it after request_timeout */
		log_warn("epoll_ctl mod: %s", strerror(errno));
}

/* Asks the watcher to end a taken stream: its own shutdown reads as a hang-up there. */
static void
stream_shut(struct stream *s)
{
	if (s->shut)
		return;
	s->shut = true;
	/* A socket the peer reset says ENOTCONN, and still wakes its pollers (inet_shutdown). */
	if (shutdown(s->fd, SHUT_RDWR) == -1 && errno != ENOTCONN)
		log_warn("shutdown of a stream's socket: %s", strerror(errno));
}

/*
 * A poll of a kept long-poll connection is answered, its last chunk out (ch->lock
 * held): the connection is idle from now (repoll_tick), and a next request that came
 * meanwhile is read now (the watcher left it, edge triggered, for this moment).
 */
static void
stream_poll_finished(struct stream *s)
{
	if (s->poll_done)
		return;
	s->poll_done = true;
	atomic_store(&s->repoll->idle_since, clock_sec() + 1);
	if (s->poll_input)
		repoll_rearm(s->repoll);
	if (poll_ends_deferred && poll_ends_n < STREAM_POLL_ENDS_MAX) {
		stream_ref_locked(s);
		poll_ends[poll_ends_n++] = s;
	} else
		repoll_answered(s->repoll);	/* the watcher ends it, woken for it */
}

/*
 * The thread that answers a poll holds its channel's lock and cannot end it there; a
 * publishing thread ends the polls it answered right after letting go of the lock
 * (a wake-up of the watcher for each one cost 15% of a long-poll cycle).
 */
void
stream_set_poll_end(void (*end)(struct stream *))
{
	poll_end = end;
}

void
stream_defer_poll_ends(void)
{
	poll_ends_deferred = true;
}

void
stream_end_polls(void)
{
	struct stream *s;
	unsigned i;

	poll_ends_deferred = false;
	for (i = 0; i < poll_ends_n; i++) {
		s = poll_ends[i];
		if (repoll_take_answered(s->repoll, s))
			poll_end(s);
		stream_unref(s);
	}
	poll_ends_n = 0;
}

/* Whether s's answer is out; if not and input, the next request is read once it is. */
bool
stream_poll_answered(struct stream *s, bool input)
{
	bool done;

	pthread_mutex_lock(&s->ch->lock);
	done = s->poll_done;
	if (!done && input)
		s->poll_input = true;
	pthread_mutex_unlock(&s->ch->lock);
	return done;
}

/*
 * A taken stream's writer, on whichever thread woke it (ch->lock held): what the
 * reader would give libmicrohttpd (stream_fill) goes straight out as chunks, the head
 * first (take), the last chunk once every stream is ending. A rest the socket does not
 * take waits for the watcher's flush, which wakes the stream again.
 */
static void
stream_pump(struct stream *s, const char *head, size_t hlen)
{
	char buf[STREAM_PUMP_MAX];
	enum direct_result r;
	size_t n;

	if (s->dead || s->shut)
		return;
	while (!s->closing) {
		if (direct_busy(&s->direct)) {
			s->wake_after_raw = true;
			return;
		}
		if (s->finished) {	/* the last chunk is out */
			if (s->polls && !atomic_load(&streams_ending)) {
				stream_poll_finished(s);	/* the connection stays for the next poll */
				return;
			}
			stream_shut(s);
			return;
		}
		if ((n = stream_fill(s, buf, sizeof buf)) > 0) {
			s->last_send = clock_sec();
			s->ping_due = false;
			if (s->longpoll && s->sent)
				s->finished = true;	/* a long-poll's answer: its end goes in the same send */
		} else if (atomic_load(&streams_ending) || (s->longpoll && s->sent))
			s->finished = true;	/* the empty chunk ends the response */
		else if (hlen == 0)
			return;		/* nothing to send: idle until the next wake */
		/* The head alone if there is nothing yet (a stream always has its preamble). */
		if (n > 0 && s->finished)
			r = direct_write_end(&s->direct, s->fd, head, hlen, buf, n);
		else
			r = direct_write(&s->direct, s->fd, head, hlen, n > 0 || s->finished ? buf : NULL, n);
		head = NULL;
		hlen = 0;
		if (r == DIRECT_FAILED)
			s->closing = true;
		else if (r == DIRECT_PENDING)
			stream_kept_rest(s);
	}
	stream_shut(s);
}

/*
 * While a directly written chunk is still half unsent, MHD must not write, so the wake
 * waits for the flush (unless the stream is closing anyway). A leg has no connection:
 * its wake feeds its stream. A taken stream writes at once.
 */
void
stream_wake(struct stream *s)
{
	if (s->leg) {
		stream_leg_feed(s);
		return;
	}
	if (s->taken) {
		stream_pump(s, NULL, 0);
		return;
	}
	if (!s->suspended)
		return;
	if (direct_busy(&s->direct) && !s->closing) {
		s->wake_after_raw = true;
		return;
	}
	s->suspended = false;
	conn_resume(s->conn);
}

/* Counts a delivered event and, for a live one, its publish-to-socket latency. */
static void
stream_count_sent(struct stream *s, const struct event *ev)
{
	s->sent = true;
	atomic_fetch_add(&counters.delivered, 1);
	if (ev->published_ns >= s->start_ns)
		counters_observe_latency(clock_ns() - ev->published_ns);
}

/*
 * Writes one event straight to a suspended stream's socket as an HTTP chunk, from the
 * publishing thread: no resume, no wake-up of the stream's event loop, no walk of
 * MHD's suspended list (why this is safe: broker.h, threads and locks). Returns false
 * when the stream is not in that state (the caller wakes it instead).
 */
static bool
stream_push(struct stream *s, struct event *ev, uint64_t index)
{
	if (!s->direct_ok || !s->suspended || direct_busy(&s->direct) || s->small != 0 ||
	    s->partial != NULL || s->replay != NULL || s->pending || s->closing ||
	    s->cursor != index || ev->seq <= s->skip_until)
		return false;
	switch (direct_chunk(&s->direct, s->fd, ev->frame, ev->len)) {
	case DIRECT_FAILED:
		s->closing = true;
		return false;	/* the wake lets MHD end it */
	case DIRECT_PENDING:
		stream_kept_rest(s);
		break;
	case DIRECT_SENT:
		break;
	}
	s->cursor = index + 1;
	s->last_send = clock_sec();
	stream_count_sent(s, ev);
	return true;
}

/*
 * Small channels (the usual one per user) are written directly by the publishing
 * thread. In a big channel a stream libmicrohttpd still holds is woken, which spreads
 * its sends over the event loops and lets each loop resume many streams in one walk
 * of its suspended list; a taken stream has no loop, so it is written here, by the
 * publisher or a fan-out helper (fanout.c splits a big channel's list between them).
 */
void
stream_deliver(struct stream *s, struct event *ev, uint64_t index, bool direct_ok)
{
	/* A long-poll response still ends through MHD: the event goes out at once, then
	 * the wake lets the reader return the end of the stream. A taken stream has no
	 * event loop to hand a big fan-out to: it is written here either way; a taken
	 * long-poll writes its answer and its end in one send (stream_pump). */
	if (s->taken && s->longpoll) {
		stream_wake(s);
		return;
	}
	if ((!direct_ok && !s->taken) || !stream_push(s, ev, index) || s->longpoll)
		stream_wake(s);
}

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
		bus->format_id(id, sizeof id, s->reset_seq);
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
 * Never between two halves of a frame: a partial event is always finished before
 * small frames are sent.
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

/* The bus places the cursor; a reset or a remote replay is decided here. */
int
stream_attach(struct stream *s, struct channel *ch, const char *last_id)
{
	unsigned retry = (unsigned)opt(OPT_RECONNECT_MS);
	uint64_t index;
	int pos = BUS_POS_LIVE;

	s->ch = ch;
	pthread_mutex_lock(&ch->lock);
	if (channel_add(ch, &s->member, (unsigned)opt(OPT_MAX_SUBSCRIBERS_PER_CHANNEL)) == -1) {
		pthread_mutex_unlock(&ch->lock);
		return STREAM_FULL;	/* stream_free drops the reference */
	}
	s->attached = true;
	history_expire(&ch->history, clock_ns() - (int64_t)opt(OPT_HISTORY_TTL) * 1000000000);
	if (!s->longpoll) {
		retry += (unsigned)(random() % (retry / 2 + 1));
		s->retry_ms = retry;
		s->small |= STREAM_SMALL_PREAMBLE;
	}
	s->cursor = ch->history.next;
	if (last_id != NULL && *last_id != '\0')
		pos = bus->position(ch, last_id, &index);
	if (pos == BUS_POS_LIVE && last_id != NULL && *last_id != '\0') {
		s->cursor = index;
		if (index < ch->history.next)
			atomic_fetch_add(&counters.replays, 1);
	} else if (pos >= 0)
		stream_reset(s, pos);
	else if (pos == BUS_POS_REMOTE)
		s->pending = true;
	if (s->jmap != NULL || s->leg)
		s->pending = true;	/* until its accounts' states are known (stream_jmap_ready) */
	pthread_mutex_unlock(&ch->lock);
	return pos == BUS_POS_REMOTE ? STREAM_REMOTE : 0;
}

/* The request is over: no publisher, watcher or bus answer may start anything on s. */
bool
stream_detach(struct stream *s)
{
	struct channel *ch = s->ch;
	bool attached;

	if (ch == NULL)
		return false;
	pthread_mutex_lock(&ch->lock);
	attached = s->attached;
	if (attached)
		channel_remove(ch, &s->member);
	s->attached = false;
	s->dead = true;
	pthread_mutex_unlock(&ch->lock);
	return attached;
}

/* A bus job holds s until it answers. */
void
stream_ref_locked(struct stream *s)
{
	s->refs++;
}

/* The grave is freed by the watcher, which may still hold an epoll event naming s. */
void
stream_unref(struct stream *s)
{
	bool bury;

	pthread_mutex_lock(&s->ch->lock);
	bury = --s->refs == 0 && s->dead;
	pthread_mutex_unlock(&s->ch->lock);
	if (!bury)
		return;
	pthread_mutex_lock(&grave_lock);
	s->member.next = grave;
	grave = &s->member;
	pthread_mutex_unlock(&grave_lock);
}

/* Safe because each buried stream left epoll before its burial. */
void
stream_reap(void)
{
	struct channel_member *m, *next;

	pthread_mutex_lock(&grave_lock);
	m = grave;
	grave = NULL;
	pthread_mutex_unlock(&grave_lock);
	for (; m != NULL; m = next) {
		next = m->next;
		stream_free(stream_of_member(m));
	}
}

/* The ring's events after key follow the replayed ones; a ring that lost some resets. */
void
stream_replayed(struct stream *s, int status, struct event **ev, size_t n, uint64_t key)
{
	struct history *h = &s->ch->history;
	struct stream_replay *r = NULL;
	uint64_t index;

	if (s->dead)
		goto drop;
	if (status >= 0) {
		stream_force_reset(s, key, status);
		goto drop;
	}
	if (history_after(h, key, &index) == -1 || (n > 0 && (r = calloc(1, sizeof *r)) == NULL)) {
		stream_force_reset(s, h->last_seq, RESET_LAGGED);	/* the ring lost events after key meanwhile */
		goto drop;
	}
	if (r != NULL) {
		r->ev = ev;
		r->n = n;
		s->replay = r;
	} else
		free(ev);
	s->cursor = index;
	s->skip_until = key;
	atomic_fetch_add(&counters.replays, 1);
	s->pending = false;
	stream_wake(s);
	return;
drop:
	while (n > 0)
		event_unref(ev[--n]);
	free(ev);
	s->pending = false;
	if (!s->dead)
		stream_wake(s);
}

/*
 * A leg's account state is in: installed in its stream; the last leg's makes the
 * stream ready (its reconnect StateChange first), then every leg reads its ring, each
 * under its own channel's lock. The legs are all alive here: the stream's request
 * waits, suspended, for every fetch, so it cannot end and drop them meanwhile.
 */
static void
stream_leg_ready(struct stream *leg, int status, const char *json, size_t len)
{
	struct stream *s = leg->acct.owner, *l;
	struct stream_legs *legs = stream_legs(s);
	struct event *ev;
	bool all = false;
	unsigned i;

	pthread_mutex_lock(&s->ch->lock);
	if (!s->dead && status != 0)
		s->closing = true;	/* the client reconnects, maybe to a broker that can read it */
	else if (!s->dead) {
		if ((ev = jmap_sub_ready(s->jmap, leg->ch->name, json, len, &all)) != NULL)
			stream_queue(s, ev);
		if (all) {
			s->pending = false;
			stream_wake(s);
		}
	}
	pthread_mutex_unlock(&s->ch->lock);
	for (i = 0; all && i < legs->n; i++) {
		l = legs->leg[i];
		pthread_mutex_lock(&l->ch->lock);
		l->pending = false;
		stream_leg_feed(l);
		pthread_mutex_unlock(&l->ch->lock);
	}
}

/* Installs a JMAP stream's stored state and its reconnect StateChange, then reads on. */
void
stream_jmap_ready(struct stream *s, int status, const char *json, size_t len)
{
	struct event *ev;
	bool all;

	if (s->leg) {
		stream_leg_ready(s, status, json, len);
		stream_unref(s);
		return;
	}
	pthread_mutex_lock(&s->ch->lock);
	if (!s->dead) {
		if (status != 0)
			s->closing = true;	/* the client reconnects, maybe to a broker that can read it */
		else if ((ev = jmap_sub_ready(s->jmap, s->ch->name, json, len, &all)) != NULL)
			stream_queue(s, ev);
		s->pending = false;
		stream_wake(s);
	}
	pthread_mutex_unlock(&s->ch->lock);
	stream_unref(s);
}

/*
 * Copies what fits of the rest of ev; returns bytes copied. An event left halfway is
 * referenced, so eviction cannot cut a frame in two.
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
	stream_count_sent(s, ev);
	event_unref(s->partial);	/* may free ev: it was the partial one */
	s->partial = NULL;
	s->offset = 0;
	return k;
}

/* Takes the next replayed event, or NULL when they are used up (and freed). */
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
 * then replayed events, then the ring, then a due ping if nothing else was sent.
 * Returns the bytes written. Called with ch->lock held.
 */
static size_t
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
				if (stream_wants(s, ev))
					n += stream_copy_event(s, ev, buf + n, max - n);
				event_unref(ev);
			}
			continue;
		}
		if (!s->pending && (ev = stream_next_ring(s)) != NULL) {
			if (s->jmap != NULL) {
				/* A JMAP stream sends its own StateChange for the event, or nothing. */
				if ((ev = jmap_sub_event(s->jmap, s->ch->name, ev)) != NULL) {
					n += stream_copy_event(s, ev, buf + n, max - n);
					event_unref(ev);
				}
			} else if (ev->seq > s->skip_until && stream_wants(s, ev))
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
			if (s->jmap == NULL)
				s->sent = true;	/* closeafter=state on the JMAP endpoint waits for a state */
			s->ping_due = false;
			continue;
		}
		break;
	}
	return n;
}

struct stream_header { const char *name, *value; };
struct stream_headers { struct stream_header h[STREAM_HEADERS_MAX]; unsigned n; };

/* Collects a response header for stream_drop_headers(). */
static enum MHD_Result
stream_note_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
	struct stream_headers *l = cls;

	(void)kind;
	if (l->n == STREAM_HEADERS_MAX)
		return MHD_NO;
	l->h[l->n].name = name;
	l->h[l->n++].value = value;
	return MHD_YES;
}

/*
 * Frees the stream's response header list (three to six headers, a record and two
 * strings each: about 400 bytes a subscriber for the whole life of the stream).
 * libmicrohttpd 0.9.75 reads the list only to build the head, which is built before
 * the content reader's first call, and never again for this response.
 */
static void
stream_drop_headers(struct MHD_Response *r)
{
	struct stream_headers l = { .n = 0 };
	unsigned i;

	MHD_get_response_headers(r, stream_note_header, &l);
	for (i = 0; i < l.n; i++)
		MHD_del_response_header(r, l.h[i].name, l.h[i].value);
}

/*
 * Never returns 0 without suspending the connection (MHD would spin); publishers, the
 * ping wheel and the hang-up watcher resume it.
 */
ssize_t
stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *s = cls;
	ssize_t n;

	(void)pos;
	if (s->head != NULL) {		/* only this connection's loop reads the field */
		stream_drop_headers(s->head);
		s->head = NULL;
	}
	pthread_mutex_lock(&s->ch->lock);
	if (s->closing)
		n = MHD_CONTENT_READER_END_WITH_ERROR;
	else if ((n = (ssize_t)stream_fill(s, buf, max)) > 0) {
		s->last_send = clock_sec();
		s->ping_due = false;
	} else if ((s->longpoll && s->sent) || atomic_load(&streams_ending))
		n = MHD_CONTENT_READER_END_OF_STREAM;
	else {
		s->suspended = true;
		MHD_suspend_connection(s->conn);
	}
	pthread_mutex_unlock(&s->ch->lock);
	return n;
}

/* Its reader returns an error and MHD closes it; a taken one the watcher ends. */
bool
stream_hangup(struct stream *s)
{
	bool end = false;

	pthread_mutex_lock(&s->ch->lock);
	if (!s->dead && s->taken)
		end = !s->polls;	/* a kept long-poll connection's record sees it too, and ends it */
	else if (!s->dead) {
		s->closing = true;
		stream_wake(s);
	}
	pthread_mutex_unlock(&s->ch->lock);
	return end;
}

/*
 * From here MHD is out of the stream's life: it drops its connection (and its memory
 * pool, most of what an idle subscriber cost) while the broker's duplicate keeps the
 * socket. Publishers, pings and replays write as for a suspended stream; its end is
 * the watcher's (stream_hangup).
 */
void
stream_take(struct stream *s, const char *head, size_t len)
{
	pthread_mutex_lock(&s->ch->lock);
	if (s->repoll != NULL && !s->polls && repoll_bind(s->repoll, s) == 0) {
		s->polls = true;	/* the record owns the socket from now */
		s->own_fd = false;
	}
	s->taken = true;
	s->suspended = true;	/* what stream_push asks: MHD writes nothing */
	s->conn = NULL;
	stream_pump(s, head, len);
	pthread_mutex_unlock(&s->ch->lock);
}

void
stream_answer_raw(struct stream *s, const char *raw, size_t len)
{
	pthread_mutex_lock(&s->ch->lock);
	if (!s->dead) {
		s->taken = true;
		s->suspended = true;
		s->conn = NULL;
		s->finished = true;
		switch (direct_write(&s->direct, s->fd, raw, len, NULL, 0)) {
		case DIRECT_FAILED:
			s->closing = true;
			break;
		case DIRECT_PENDING:
			stream_kept_rest(s);
			break;
		case DIRECT_SENT:
			break;
		}
		stream_pump(s, NULL, 0);
	}
	pthread_mutex_unlock(&s->ch->lock);
}

bool
stream_ending(void)
{
	return atomic_load(&streams_ending);
}

/* Nobody writes a detached stream's socket any more: close it now, not when reaped. */
void
stream_close_socket(struct stream *s)
{
	int fd;

	pthread_mutex_lock(&s->ch->lock);
	fd = s->own_fd ? s->fd : -1;
	s->fd = -1;
	pthread_mutex_unlock(&s->ch->lock);
	if (fd >= 0)
		close(fd);
}

/* Once the rest is out, hands the stream back to MHD if anything asked for a wake meanwhile. */
void
stream_flush(struct stream *s)
{
	enum direct_result r;

	uint32_t off;

	pthread_mutex_lock(&s->ch->lock);
	if (!s->dead && direct_busy(&s->direct)) {
		off = s->direct.off;
		if ((r = direct_flush(&s->direct, s->fd)) == DIRECT_FAILED)
			s->closing = true;
		if (r != DIRECT_PENDING || s->direct.off != off)
			s->last_send = clock_sec();	/* the socket took something */
		if (!direct_busy(&s->direct))
			atomic_fetch_sub(&streams_blocked, 1);
		if (r != DIRECT_PENDING &&
		    (s->wake_after_raw || s->closing || atomic_load(&streams_ending))) {
			s->wake_after_raw = false;
			stream_wake(s);
		}
	}
	pthread_mutex_unlock(&s->ch->lock);
}

/* A stream sent to since its deadline was filed is re-filed lazily. */
bool
stream_tick(struct stream *s, uint32_t now, uint32_t *due)
{
	bool alive;

	pthread_mutex_lock(&s->ch->lock);
	alive = !s->dead;
	*due = s->last_send + s->ping;
	if (alive && (int32_t)(*due - now) <= 0) {
		s->ping_due = true;
		stream_wake(s);
		*due = now + s->ping;
	}
	pthread_mutex_unlock(&s->ch->lock);
	return alive;
}

/* Cuts a stream whose socket took nothing of its direct rest for the limit (ch->lock held). */
static void
stream_check_slow(struct channel *ch, void *arg)
{
	const uint32_t *now_limit = arg;
	struct channel_member *m;
	struct stream *s;

	pthread_mutex_lock(&ch->lock);
	for (m = ch->subs; m != NULL; m = m->next) {
		s = stream_of_member(m);
		if (direct_busy(&s->direct) && !s->closing && now_limit[0] - s->last_send >= now_limit[1]) {
			s->closing = true;
			atomic_fetch_add(&counters.slow_readers, 1);
			stream_wake(s);
		}
	}
	pthread_mutex_unlock(&ch->lock);
}

/*
 * Ends the streams that have data waiting that their socket did not take for limit
 * seconds (a reader that never reads: a zero receive window). A walk of the table, but
 * only while some stream is blocked at all.
 */
void
stream_cut_slow(uint32_t now, uint32_t limit)
{
	uint32_t arg[2] = { now, limit };

	if (limit == 0 || atomic_load(&streams_blocked) == 0)
		return;
	channel_each(stream_check_slow, arg);
}

/* Wakes every stream of one channel so it ends; with force, even mid-chunk. */
static void
stream_end_channel(struct channel *ch, void *arg)
{
	bool force = arg != NULL;
	struct channel_member *m;
	struct stream *s;

	pthread_mutex_lock(&ch->lock);
	for (m = ch->subs; m != NULL; m = m->next) {
		s = stream_of_member(m);
		if (force)
			s->closing = true;	/* a half-sent direct write cannot be finished */
		stream_wake(s);
	}
	pthread_mutex_unlock(&ch->lock);
}

/*
 * Streams with a direct write still draining end once it is sent, unless force: then
 * they are cut, so that no connection is left suspended when MHD stops.
 */
void
stream_end_all(bool force)
{
	atomic_store(&streams_ending, true);
	channel_each(stream_end_channel, force ? (void *)1 : NULL);
}
