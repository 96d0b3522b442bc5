/*
 * The bus: the one seam between the broker's HTTP side and where events travel.
 * Two implementations: the local bus (bus_local.c: standalone, in-process, ids
 * "<boot>-<seq>") and the Redis bus (bus_redis.c and redis_*.c: brokers share
 * publishes, history and counts through Redis, ids are Redis stream ids). main.c picks
 * one at start-up; nothing else asks which one is active.
 *
 * Contract of the callbacks (as libuv's): a function that takes a callback calls it
 * exactly once, possibly before it returns, also on error or when the work is dropped
 * (a cancelled status); a callback never runs after bus->stop() returned.
 */
#ifndef SSEPUSH_BUS_H
#define SSEPUSH_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "event.h"

struct channel;
struct stream;
struct MHD_Daemon;

/* position() results besides the reset reasons (enum reset_reason, >= 0). */
enum { BUS_POS_LIVE = -1, BUS_POS_REMOTE = -2 };
/* A replay's status besides the reset reasons. */
enum { BUS_REPLAY_OK = -1 };

/* A publish's answer: status 0 with the id and the subscribers it is for, or -1 (not stored). */
typedef void bus_publish_done(void *arg, int status, const char *id, unsigned subscribers);
/* A join's answer: 0 when every event published from now on reaches s and counts it, -1 if not. */
typedef void bus_join_done(struct stream *s, int status);
/*
 * A replay's answer: BUS_REPLAY_OK with the events after the client's id (new
 * references, array owned by the callee) and the key they end at, or a reset reason
 * with the id the reset carries (RESET_UNAVAILABLE: the history could not be read).
 */
typedef void bus_replay_done(struct stream *s, int status, uint64_t last, struct event **ev, size_t n);
/* A JMAP state fetch's answer: status 0 with the stored state's JSON object (borrowed; NULL: none), or -1. */
typedef void bus_state_done(struct stream *s, int status, const char *json, size_t len);

struct bus_ops {
	const char *name;
	int (*start)(void);
	/* Fails what is pending (publishes -1, joins -1, replays RESET_UNAVAILABLE), then stops. */
	void (*stop)(void);
	/* Whether publishes and joins can succeed now; otherwise why not (for /healthz). */
	bool (*ready)(char *why, size_t len);
	/* Writes the bus's lines of /metrics. */
	void (*metrics)(FILE *f);
	/* History floor of a channel created now: ids up to it are not this channel's to vouch for. */
	uint64_t (*floor)(void);
	/* Writes the id clients see for an ordered key. */
	void (*format_id)(char *buf, size_t len, uint64_t key);
	/* Publishes one event; done answers (maybe before this returns). */
	void (*publish)(const struct publish_req *req, bus_publish_done *done, void *arg);
	/* s was attached to its channel; done says when events published from now on reach it. */
	void (*join)(struct stream *s, bus_join_done *done);
	/* s, joined before, was detached from its channel. */
	void (*leave)(struct stream *s);
	/*
	 * Where a client that last saw last_id resumes in ch's ring (ch->lock held):
	 * BUS_POS_LIVE with *index, a reset reason, or BUS_POS_REMOTE (call replay()).
	 */
	int (*position)(struct channel *ch, const char *last_id, uint64_t *index);
	/* Fetches what s's client missed after last_id; takes a stream reference until done. */
	void (*replay)(struct stream *s, const char *last_id, bus_replay_done *done);
	/* Whether some publish can succeed now (a Redis shard is up), else why not; NULL: as ready(). */
	bool (*accepting)(char *why, size_t len);
	/* Fetches the JMAP state stored for s's channel (its account); the caller holds a stream reference, which done drops. */
	void (*jmap_state)(struct stream *s, bus_state_done *done);
	/*
	 * Runs d, a libmicrohttpd daemon started without a thread of its own (MHD_USE_EPOLL),
	 * on the bus's thread until stop(), which quiesces it (its listen socket is closed)
	 * and hands it back unserved: the caller runs it from then on. 0, or -1 (not taken).
	 * NULL: the bus has no thread.
	 */
	int (*serve)(struct MHD_Daemon *d);
	/* A connection of the served daemon was resumed (any thread): it is run soon. */
	void (*resumed)(void);
};

/* The active bus, chosen once by main.c before any thread starts. */
extern const struct bus_ops *bus;
extern const struct bus_ops bus_local, bus_redis;

#endif
