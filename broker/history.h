/*
 * A channel's history ring: the one shared copy of each retained event, in publish
 * order, addressed by a per-channel index so subscribers read it through a cursor.
 * Holds one reference on each event it retains (dropped on eviction). Indices never go
 * backwards: first and next only grow, even when the ring is cleared, so a cursor taken
 * before a clear can never point past the ring. Knows nothing of locks, subscribers or
 * HTTP. Leaf module: libc and event.c only.
 */
#ifndef SSEPUSH_HISTORY_H
#define SSEPUSH_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

struct history {
	struct event **ring;	/* cap slots; slot of index i is i % cap */
	uint32_t cap;		/* allocated slots, grows by doubling up to the size limit */
	uint64_t first;		/* index of the oldest retained event */
	uint64_t next;		/* index the next pushed event gets */
	uint64_t floor_seq;	/* every event of the channel with seq > floor_seq is retained */
	uint64_t last_seq;	/* seq of the newest event, or floor_seq if none */
};

/* Starts an empty history; floor_seq is the broker sequence when the channel appeared. */
void history_init(struct history *h, uint64_t floor_seq);
/* Drops every retained event and frees the ring; next stays, so old cursors stay behind it.
 * floor_seq and last_seq become floor: the ring vouches for nothing up to it. */
void history_clear(struct history *h, uint64_t floor);
/* Drops the ring's reference on every retained event and frees the ring. */
void history_free(struct history *h);
/* Number of retained events. */
size_t history_count(const struct history *h);
/* Appends ev (steals it), evicting the oldest events beyond limit (>= 1). Returns 0, or -1 on ENOMEM (ev not stolen). */
int history_push(struct history *h, struct event *ev, size_t limit);
/* Returns the event at index i (borrowed), or NULL if i is not retained. */
struct event *history_get(const struct history *h, uint64_t i);
/* Drops events published before cutoff_ns; returns how many. */
size_t history_expire(struct history *h, int64_t cutoff_ns);
/* Drops the oldest events until at most limit remain; returns how many. */
size_t history_trim(struct history *h, size_t limit);
/*
 * Finds where a client that has seen everything up to seq resumes: sets *index to the
 * first retained event with a larger seq and returns 0, or returns -1 when events after
 * seq may have been evicted (seq < floor_seq). The caller rejects seqs from the future.
 */
int history_after(const struct history *h, uint64_t seq, uint64_t *index);

#endif
