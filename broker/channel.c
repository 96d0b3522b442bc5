/*
 * The channel table and the in-process bus: finding and creating channels, publishing
 * into a channel's history and waking its suspended subscribers, event ids, and the
 * sweep that drops expired history and idle channels. Streams (stream.c) read the
 * history; this file never writes to a socket.
 */
#include "broker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define CHANNEL_TABLE_MIN 1024

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct channel **table;		/* under table_lock */
static size_t table_size, table_count;	/* under table_lock */
static atomic_ullong seq_counter;	/* last seq handed out */

/* FNV-1a: channel names are short and attacker-chosen only within a fixed alphabet. */
static uint64_t
channel_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

/* Allocates the first bucket array. */
int
channel_table_init(void)
{
	table_size = CHANNEL_TABLE_MIN;
	table = calloc(table_size, sizeof *table);
	return table == NULL ? -1 : 0;
}

/* Frees a channel and its history; the caller unlinked it. */
static void
channel_destroy(struct channel *ch)
{
	history_free(&ch->history);
	pthread_mutex_destroy(&ch->lock);
	free(ch);
	atomic_fetch_sub(&counters.channels, 1);
}

/* Frees every channel at exit (no stream is left by then). */
void
channel_table_free(void)
{
	size_t i;
	struct channel *ch, *next;

	for (i = 0; i < table_size; i++)
		for (ch = table[i]; ch != NULL; ch = next) {
			next = ch->hnext;
			channel_destroy(ch);
		}
	free(table);
	table = NULL;
}

/* Doubles the bucket array when chains get long; called with table_lock held. */
static void
channel_table_grow(void)
{
	size_t size = table_size * 2, i;
	struct channel **t = calloc(size, sizeof *t), *ch, *next;

	if (t == NULL)
		return;		/* longer chains, still correct */
	for (i = 0; i < table_size; i++)
		for (ch = table[i]; ch != NULL; ch = next) {
			size_t b = channel_hash(ch->name, ch->namelen) & (size - 1);
			next = ch->hnext;
			ch->hnext = t[b];
			t[b] = ch;
		}
	free(table);
	table = t;
	table_size = size;
}

/* Makes a channel whose history starts at the current sequence. */
static struct channel *
channel_new(const char *name, size_t len)
{
	struct channel *ch = calloc(1, sizeof *ch + len + 1);

	if (ch == NULL)
		return NULL;
	pthread_mutex_init(&ch->lock, NULL);
	memcpy(ch->name, name, len);
	ch->namelen = len;
	/* Standalone: events of an earlier channel of this name are gone, so ids up to now
	 * are stale. Redis mode: the ring knows nothing until the bus syncs it. */
	history_init(&ch->history, bus_enabled ? 0 : atomic_load(&seq_counter));
	atomic_fetch_add(&counters.channels, 1);
	return ch;
}

/*
 * Returns the channel with a new reference, creating it if create is set. NULL when it
 * does not exist, when max_channels is reached, or on ENOMEM.
 */
struct channel *
channel_get(const char *name, size_t len, bool create)
{
	struct channel *ch;
	size_t b;

	pthread_mutex_lock(&table_lock);
	b = channel_hash(name, len) & (table_size - 1);
	for (ch = table[b]; ch != NULL; ch = ch->hnext)
		if (ch->namelen == len && memcmp(ch->name, name, len) == 0)
			break;
	if (ch == NULL && create && table_count < (size_t)opt(OPT_MAX_CHANNELS) &&
	    (ch = channel_new(name, len)) != NULL) {
		ch->hnext = table[b];
		table[b] = ch;
		if (++table_count > table_size)
			channel_table_grow();
	}
	if (ch != NULL)
		atomic_fetch_add(&ch->refs, 1);
	pthread_mutex_unlock(&table_lock);
	return ch;
}

/* Takes another reference on a channel the caller already holds; any lock may be held. */
struct channel *
channel_ref(struct channel *ch)
{
	atomic_fetch_add(&ch->refs, 1);
	return ch;
}

/* Drops a reference; the sweep frees channels nobody holds once their history is gone. */
void
channel_put(struct channel *ch)
{
	atomic_fetch_sub(&ch->refs, 1);
}

/* Writes the id clients see: "<boot>-<seq>" standalone, the Redis stream id otherwise. */
void
channel_format_id(char *buf, size_t len, uint64_t seq)
{
	if (bus_enabled)
		bus_id_format(buf, len, seq);
	else
		snprintf(buf, len, "%s-%" PRIu64, broker_boot, seq);
}

/* The newest seq handed out by this process. */
uint64_t
channel_last_seq(void)
{
	return atomic_load(&seq_counter);
}

/* Whether the session and origin filters let ev through to s. */
bool
channel_matches(const struct stream *s, const struct event *ev)
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

/* Copies an optional string into the event's tail; returns the new tail offset. */
static size_t
event_put_str(struct event *ev, size_t off, const char *s, const char **dst)
{
	size_t n;

	if (s == NULL) {
		*dst = NULL;
		return off;
	}
	n = strlen(s) + 1;
	memcpy(ev->frame + off, s, n);
	*dst = ev->frame + off;
	return off + n;
}

/* Builds the one shared copy of an event: its frame, then the filter strings. */
struct event *
channel_event_new(const struct publish_req *req, uint64_t seq)
{
	char id[BROKER_ID_MAX];
	size_t flen, extra = 0, off;
	struct event *ev;

	channel_format_id(id, sizeof id, seq);
	flen = sse_frame_size(id, req->type, req->data, req->len);
	if (req->session)
		extra += strlen(req->session) + 1;
	if (req->exclude_session)
		extra += strlen(req->exclude_session) + 1;
	if (req->origin)
		extra += strlen(req->origin) + 1;
	if ((ev = malloc(sizeof *ev + flen + extra)) == NULL)
		return NULL;
	atomic_init(&ev->refs, 1);
	ev->seq = seq;
	ev->published_ns = clock_ns();
	ev->len = sse_frame(ev->frame, id, req->type, req->data, req->len);
	off = event_put_str(ev, ev->len, req->session, &ev->session);
	off = event_put_str(ev, off, req->exclude_session, &ev->exclude_session);
	event_put_str(ev, off, req->origin, &ev->origin);
	return ev;
}

/*
 * Stores one event in the channel's history and wakes every suspended subscriber it is
 * for. Writes the id and the number of subscribers it is for. Returns 0, or -1 when
 * the channel cannot be created (max_channels) or on ENOMEM.
 */
int
channel_publish(const struct publish_req *req, char *id, size_t idlen, unsigned *count)
{
	struct channel *ch = channel_get(req->channel, strlen(req->channel), true);
	struct event *ev;
	struct stream *s;
	unsigned n = 0;

	if (ch == NULL)
		return -1;
	pthread_mutex_lock(&ch->lock);
	/* The seq is taken under the channel lock so the ring stays in seq order. */
	ev = channel_event_new(req, atomic_fetch_add(&seq_counter, 1) + 1);
	if (ev == NULL || history_push(&ch->history, ev, (size_t)opt(OPT_HISTORY_SIZE)) == -1) {
		pthread_mutex_unlock(&ch->lock);
		free(ev);
		channel_put(ch);
		return -1;
	}
	ch->published++;
	for (s = ch->subs; s != NULL; s = s->next) {
		if (!channel_matches(s, ev))
			continue;
		n++;
		stream_deliver(s, ev, ch->history.next - 1);
	}
	channel_format_id(id, idlen, ev->seq);
	pthread_mutex_unlock(&ch->lock);
	channel_put(ch);
	atomic_fetch_add(&counters.published, 1);
	*count = n;
	return 0;
}

/*
 * Appends an event that came through Redis (steals ev) and wakes the subscribers it
 * is for; an event at or before the ring's newest is a duplicate and dropped.
 * Called with ch->lock held.
 */
void
channel_deliver(struct channel *ch, struct event *ev)
{
	struct stream *s;

	if ((ch->positioned && ev->seq <= ch->history.last_seq) ||
	    history_push(&ch->history, ev, (size_t)opt(OPT_HISTORY_SIZE)) == -1) {
		event_unref(ev);
		return;
	}
	ch->published++;
	for (s = ch->subs; s != NULL; s = s->next)
		if (channel_matches(s, ev))
			stream_deliver(s, ev, ch->history.next - 1);
}

/* Calls fn on every channel with the table locked (for stats and shutdown). */
void
channel_each(void (*fn)(struct channel *, void *), void *arg)
{
	size_t i;
	struct channel *ch;

	pthread_mutex_lock(&table_lock);
	for (i = 0; i < table_size; i++)
		for (ch = table[i]; ch != NULL; ch = ch->hnext)
			fn(ch, arg);
	pthread_mutex_unlock(&table_lock);
}

/*
 * Expires old history and frees channels that nobody holds and that have nothing left
 * to replay, a slice of the table per call: the reaper calls it every quarter second
 * and covers the table every BROKER_SWEEP_SECONDS, so the table lock (which every
 * publish and subscribe takes) is never held for a walk of every channel.
 */
void
channel_sweep(void)
{
	static size_t next;	/* bucket to resume at; only the reaper sweeps */
	int64_t cutoff = clock_ns() - (int64_t)opt(OPT_HISTORY_TTL) * 1000000000;
	size_t limit = (size_t)opt(OPT_HISTORY_SIZE), n, i;
	struct channel **pp, *ch;
	bool empty;

	pthread_mutex_lock(&table_lock);
	n = table_size / (BROKER_SWEEP_SECONDS * 4) + 1;
	for (i = 0; i < n; i++, next++) {
		for (pp = &table[next % table_size]; (ch = *pp) != NULL;) {
			pthread_mutex_lock(&ch->lock);
			history_expire(&ch->history, cutoff);
			history_trim(&ch->history, limit);
			empty = history_count(&ch->history) == 0 && ch->nsubs == 0;
			pthread_mutex_unlock(&ch->lock);
			if (empty && atomic_load(&ch->refs) == 0) {
				*pp = ch->hnext;
				table_count--;
				channel_destroy(ch);
			} else
				pp = &ch->hnext;
		}
	}
	pthread_mutex_unlock(&table_lock);
}
