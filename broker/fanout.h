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
/*
 * The sessions of ch's subscribers that ev is for, as ",s1,s2," with one empty entry
 * for those without a session (",s1,,"); a new string, NULL on ENOMEM or when ev is for
 * nobody. Called with ch->lock held, ev still in the ring.
 */
char *fanout_reached(struct channel *ch, const struct event *ev);
/*
 * Starts the helper threads that share a big channel's fan-out with its publisher (one
 * per core beyond the first); 0, or -1 with none left running. Without them (before,
 * after fanout_stop, on one core) the publisher delivers alone.
 */
int fanout_start(void);
/* Stops the helpers: after the last publisher. */
void fanout_stop(void);

#endif
