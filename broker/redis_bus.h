/*
 * Private interface between the Redis thread's two files: redis_bus.c (connection,
 * reconnects, the job queue, publishing) and bus_chan.c (per-channel subscriptions,
 * history sync, replays and subscriber counts). Everything here runs on the Redis
 * thread only.
 */
#ifndef SSEPUSH_REDIS_BUS_H
#define SSEPUSH_REDIS_BUS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "broker.h"
#include "bus.h"

extern redisAsyncContext *bus_cmd, *bus_sub;	/* NULL while disconnected */
extern bool bus_up;				/* both connected and the scripts loaded */
extern char bus_sha_publish[41], bus_sha_replay[41], bus_sha_counts[41];
extern char bus_broker_id[17];

/* redis_bus.c */
const char *bus_prefix(void);
void bus_fail(const char *why);

/* bus_chan.c */
void bus_chan_touch(struct channel *ch);
void bus_chan_on_message(redisAsyncContext *ac, void *reply, void *priv);
void bus_chan_replay_job(struct stream *s, char *from);
void bus_chan_count_job(struct channel *ch, uint32_t gen, int delta, const char *field);
void bus_chan_connected(void);
void bus_chan_disconnected(void);
void bus_chan_tick(uint32_t now);
void bus_chan_shutdown(void);

#endif
