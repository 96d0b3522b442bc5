/*
 * The history ring of one channel. Events are immutable once pushed; eviction (by
 * count or age) only moves the front and raises floor_seq, which is what lets a
 * reconnecting client tell "nothing missed" from "events lost".
 */
#include "history.h"

#include <stdlib.h>

#define HISTORY_MIN_CAP 4

/* Starts empty: nothing after floor_seq was ever published here. */
void
history_init(struct history *h, uint64_t floor_seq)
{
	h->ring = NULL;
	h->cap = 0;
	h->first = h->next = 0;
	h->floor_seq = h->last_seq = floor_seq;
}

/* Releases every event still held. */
void
history_free(struct history *h)
{
	while (h->first < h->next)
		event_unref(h->ring[h->first++ % h->cap]);
	free(h->ring);
	h->ring = NULL;
	h->cap = 0;
}

/* Empties the ring without moving its indices back (a cursor must never pass next). */
void
history_clear(struct history *h, uint64_t floor)
{
	history_free(h);
	h->floor_seq = h->last_seq = floor;
}

/* Count of events a new cursor at h->first would still see. */
size_t
history_count(const struct history *h)
{
	return (size_t)(h->next - h->first);
}

/* Evicts the oldest event; its seq becomes the floor. */
static void
history_drop_oldest(struct history *h)
{
	struct event *ev = h->ring[h->first % h->cap];

	h->floor_seq = ev->seq;
	event_unref(ev);
	h->first++;
}

/* Regrows the ring keeping index i at slot i % cap. */
static int
history_grow(struct history *h, uint32_t cap)
{
	struct event **ring = malloc(sizeof *ring * cap);
	uint64_t i;

	if (ring == NULL)
		return -1;
	for (i = h->first; i < h->next; i++)
		ring[i % cap] = h->ring[i % h->cap];
	free(h->ring);
	h->ring = ring;
	h->cap = cap;
	return 0;
}

/* Appends one event; small channels keep small rings. */
int
history_push(struct history *h, struct event *ev, size_t limit)
{
	size_t count = history_count(h);

	if (limit < 1)
		limit = 1;
	if (count >= h->cap && count < limit) {
		uint32_t cap = h->cap ? h->cap * 2 : HISTORY_MIN_CAP;
		if (cap > limit)
			cap = (uint32_t)limit;
		if (cap <= h->cap || history_grow(h, cap) == -1)
			return -1;
	}
	while (history_count(h) >= limit || history_count(h) >= h->cap)
		history_drop_oldest(h);
	h->ring[h->next++ % h->cap] = ev;
	h->last_seq = ev->seq;
	return 0;
}

/* Bounds-checked lookup by channel index. */
struct event *
history_get(const struct history *h, uint64_t i)
{
	if (i < h->first || i >= h->next)
		return NULL;
	return h->ring[i % h->cap];
}

/* Age-based eviction from the front; events are in publish order. */
size_t
history_expire(struct history *h, int64_t cutoff_ns)
{
	size_t n = 0;

	while (h->first < h->next && h->ring[h->first % h->cap]->published_ns < cutoff_ns) {
		history_drop_oldest(h);
		n++;
	}
	return n;
}

/* Count-based eviction, for a smaller history_size after a reload. */
size_t
history_trim(struct history *h, size_t limit)
{
	size_t n = 0;

	while (history_count(h) > limit) {
		history_drop_oldest(h);
		n++;
	}
	return n;
}

/* Binary search: seqs in the ring increase with the index. */
int
history_after(const struct history *h, uint64_t seq, uint64_t *index)
{
	uint64_t lo = h->first, hi = h->next;

	if (seq < h->floor_seq)
		return -1;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		if (h->ring[mid % h->cap]->seq <= seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	*index = lo;
	return 0;
}
