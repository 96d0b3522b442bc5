/*
 * A channel: its history ring and the list of its local subscriber streams, under one
 * lock; and the table that finds channels by name. One per user in the common case, so
 * fields are ordered by size to avoid padding. Written only by channel.c's functions,
 * except the ring, which its users change through history.h with the lock held.
 */
#ifndef SSEPUSH_CHANNEL_H
#define SSEPUSH_CHANNEL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "history.h"

/* A subscriber's link in its channel's list; lives inside struct stream. */
struct channel_member {
	struct channel_member *prev, *next;
};

struct channel {
	struct channel *hnext;		/* hash chain, under the table lock */
	struct channel_member *subs;	/* local subscribers, under lock */
	void *bus;			/* the bus implementation's state for this channel (its thread only; never read here) */
	pthread_mutex_t lock;
	struct history history;		/* under lock */
	uint64_t published;		/* events appended, under lock */
	/* Holders (streams, publishers, the bus). Atomic so that a holder may take another
	 * reference under ch->lock without the table lock; only channel_get raises it from 0,
	 * under the table lock. */
	atomic_uint refs;
	unsigned nsubs;			/* under lock */
	uint16_t namelen;
	bool unlisted;			/* channel_private(): not in the table */
	char name[];
};

/* Allocates the table; floor() gives the history floor of a channel created now. */
int channel_table_init(uint64_t (*floor)(void));
/* Frees every channel at exit (no stream is left by then). */
void channel_table_free(void);
/*
 * Returns the channel with a new reference, creating it if create is set. NULL when it
 * does not exist, when max_channels is reached, or on ENOMEM.
 */
struct channel *channel_get(const char *name, size_t len, bool create);
/* A channel of one stream's own, outside the table; NULL on ENOMEM. */
struct channel *channel_private(void);
/* Takes another reference on a channel the caller already holds; any lock may be held. */
struct channel *channel_ref(struct channel *ch);
/* Drops a reference; the sweep frees channels nobody holds once their history is gone. */
void channel_put(struct channel *ch);
/* Links a subscriber into the list (ch->lock held); -1 when the channel is full. */
int channel_add(struct channel *ch, struct channel_member *m, unsigned max);
/* Unlinks a subscriber (ch->lock held). */
void channel_remove(struct channel *ch, struct channel_member *m);
/* Calls fn on every channel with the table locked (stats, shutdown, a bus reconnect). */
void channel_each(void (*fn)(struct channel *, void *), void *arg);
/* Expires history older than cutoff_ns and frees idle channels, one slice of the table per call. */
void channel_sweep(int64_t cutoff_ns, size_t limit);

#endif
