/*
 * Which Redis shard holds a channel: the one mapping that the broker and the pusher
 * share, so a publish from either lands where the brokers subscribe. Every key and
 * pub/sub channel of a channel (history, counts, notifications, and any per-channel
 * key added later) lives on its shard; per-broker keys (liveness) go to every shard.
 *
 * The scheme: jump consistent hash (Lamping and Veach, 2014, arXiv:1406.2294) of the
 * 64-bit FNV-1a hash of the channel's name. Shards are numbered in the order the
 * `redis` directive lists them. Going from n to n + 1 shards (a URL added at the end)
 * moves only the channels that land on the new shard, about 1/(n + 1) of them, and
 * none between old shards; removing or reordering URLs moves far more. Leaf module:
 * libc only.
 */
#ifndef SSEPUSH_REDIS_SHARD_H
#define SSEPUSH_REDIS_SHARD_H

#include <stddef.h>
#include <stdint.h>

/* The 64-bit FNV-1a hash of len bytes (the mapping's key). */
uint64_t redis_shard_hash(const char *s, size_t len);
/* The shard, in [0, nshards), that holds the channel of len bytes; 0 when nshards <= 1. */
unsigned redis_shard_of(const char *channel, size_t len, unsigned nshards);

#endif
