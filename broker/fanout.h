/*
 * Fan-out: appending a new event to its channel's ring and handing it to every local
 * subscriber it is for. Both buses end here; the caller holds the channel's lock.
 */
#ifndef SSEPUSH_FANOUT_H
#define SSEPUSH_FANOUT_H

#include "channel.h"
#include "event.h"

/*
 * Appends ev (stolen) to ch's ring and delivers it to the subscribers whose filters
 * let it through. Returns how many that is, or -1 on ENOMEM (ev dropped).
 * Called with ch->lock held.
 */
int fanout(struct channel *ch, struct event *ev);

#endif
