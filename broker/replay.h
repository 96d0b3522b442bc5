/*
 * Replays: how a reconnecting stream resumes once the bus answered what its client
 * missed (the events, or a reset), including a replay the bus had to drop.
 */
#ifndef SSEPUSH_REPLAY_H
#define SSEPUSH_REPLAY_H

#include "bus.h"

/* The bus's replay callback (bus_replay_done): installs the answer, drops the bus's reference. */
void replay_done(struct stream *s, int status, uint64_t last, struct event **ev, size_t n);

#endif
