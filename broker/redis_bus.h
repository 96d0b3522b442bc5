/*
 * The Redis bus's private interface, between its files: bus_redis.c (the bus_ops, the
 * job queue and the Redis thread), redis_sub.c (each channel's subscription state
 * machine and its ring's sync with the stream in Redis), redis_counts.c (this broker's
 * subscriber counts and liveness key), redis_replay.c (replays for reconnecting
 * streams) and redis_link.c (the two connections). Everything declared here runs on
 * the Redis thread, except where a comment says otherwise.
 */
#ifndef SSEPUSH_REDIS_BUS_H
#define SSEPUSH_REDIS_BUS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "broker.h"
#include "bus.h"
#include "channel.h"
#include "jobq.h"
#include "redis_keys.h"
#include "stream.h"

#define REDIS_LINGER_SECONDS 15		/* stay subscribed this long after the last member left */
#define REDIS_BACKOFF_MIN_MS 100	/* reconnect backoff, doubled up to the max, jittered */
#define REDIS_BACKOFF_MAX_MS 5000
#define REDIS_COUNTS_TTL 86400		/* seconds a channel's count hash lives without refresh */
#define REDIS_REFRESH_SECONDS 600	/* how often live brokers refresh that TTL */
#define REDIS_QUEUE_MAX 100000		/* publishes waiting for the Redis thread, at most */
#define REDIS_COUNT_FIELDS 64		/* distinct count fields one recount sends, at most */
#define REDIS_PROBE_MS 3000		/* how often each shard's pub/sub path is probed */

/* Work handed from other threads to the Redis thread, in one FIFO queue. */
enum redis_job_kind { JOB_PUBLISH, JOB_JOIN, JOB_LEAVE, JOB_REPLAY, JOB_STATE, JOB_SERVE, JOB_RESUMED };
struct redis_job {
	struct jobq_node node;		/* first: the queue's link */
	enum redis_job_kind kind;
};

/*
 * A joined stream as the Redis thread counts it (s->bus_member). Made by the stream's
 * thread at join, queued as the join job, then owned by its channel's member list;
 * queued again as the leave job, which frees it. Once the bus stopped, the stream's
 * thread frees it itself.
 */
struct redis_member {
	struct redis_job job;		/* first: the join or leave job */
	struct redis_member *prev, *next;	/* its channel's members */
	struct redis_member *wait_next;	/* members waiting for one recount's answer */
	struct channel *ch;		/* referenced */
	struct stream *s;		/* until the join is answered, then NULL */
	bus_join_done *done;		/* the join's answer, until given */
	bool linked;			/* in its channel's member list */
	bool awaits_sync;		/* its join is answered by the recount after the sync */
	char field[];			/* "<broker>|<session>|<origins>" */
};

/* A replay asked for by a reconnecting stream. */
struct redis_replay {
	struct redis_job job;		/* first */
	struct redis_replay *next;	/* deferred until its channel is synced */
	struct stream *s;		/* referenced until done */
	bus_replay_done *done;
	uint64_t key;			/* the client's id as a key, or 0 when it is not a stream id */
	char from[];			/* the client's id */
};

/* A JMAP stream's fetch of its account's state (redis_state.c). */
struct redis_state {
	struct redis_job job;		/* first */
	struct stream *s;		/* referenced by the caller until done */
	bus_state_done *done;
};

/* A channel's subscription: none, SUBSCRIBE sent, syncing the ring, live, UNSUBSCRIBE sent. */
enum redis_sub_state { SUB_NONE, SUB_PENDING, SUB_SYNCING, SUB_ACTIVE, SUB_LEAVING };

/* What the Redis thread knows about one channel it holds (ch->bus). */
struct redis_chan {
	struct channel *ch;		/* referenced */
	unsigned shard;			/* the shard holding the channel (redis_link_shard_of) */
	struct redis_chan *prev, *next;	/* every held channel */
	struct redis_member *members;	/* joined streams: what this broker counts */
	struct redis_replay *deferred;	/* replays waiting for the sync */
	struct event **held;		/* notifications received while syncing */
	size_t nheld, capheld;
	unsigned nmembers;
	enum redis_sub_state st;
	uint32_t idle_since;		/* second the last member left, 0 while it has some */
	int64_t sent_ns;		/* when SUBSCRIBE or UNSUBSCRIBE went out, for the timeout */
	bool covered;			/* the ring holds every event after history.floor_seq */
	bool positioned;		/* history.last_seq is a real position in the stream */
	bool counted;			/* this broker's counts for the channel were sent */
	bool dirty;			/* Redis may hold counts of ours that the members no longer match */
};

/* redis_link.c */
enum redis_script { SCRIPT_PUBLISH, SCRIPT_REPLAY, SCRIPT_COUNTS, SCRIPT_JMAP_STATE };
struct event_base;
int redis_link_start(struct event_base *base, void (*up)(unsigned shard), void (*down)(unsigned shard));
void redis_link_stop(void);
unsigned redis_link_shards(void);			/* any thread */
unsigned redis_link_shard_of(const char *channel);	/* any thread */
bool redis_link_usable(unsigned shard);			/* any thread */
bool redis_link_any_usable(void);			/* any thread */
bool redis_link_why(char *buf, size_t len);		/* any thread */
void redis_link_metrics(FILE *f);			/* any thread */
bool redis_link_up(unsigned shard);
void redis_link_fail(unsigned shard, const char *why);
const char *redis_link_sha(unsigned shard, enum redis_script i);
const char *redis_link_prefix(void);
const char *redis_link_broker(void);
int redis_link_command(unsigned shard, redisCallbackFn *fn, void *priv, int argc, const char **argv);
int redis_link_command_argv(unsigned shard, redisCallbackFn *fn, void *priv, int argc, const char **argv,
    const size_t *lens);
int redis_link_subscribe(unsigned shard, redisCallbackFn *fn, const char *verb, const char *key);
unsigned redis_link_epoch(unsigned shard);
void redis_link_defer_writes(void);
void redis_link_flush(void);

/* redis_counts.c */
size_t redis_counts_field(char *buf, size_t len, const struct stream *s);	/* any thread */
void redis_counts_join(struct redis_member *m);
void redis_counts_leave(struct redis_member *m);
void redis_counts_recount(struct redis_chan *b, struct redis_member *waiting);
void redis_counts_answer(struct redis_member *m, int status);
void redis_counts_clear(struct redis_chan *b);
void redis_counts_heartbeat(unsigned shard);
void redis_counts_refresh(struct redis_chan *b);

/* redis_replay.c */
struct event *redis_replay_entry(redisReply *e, int64_t published_ns);
int redis_replay_parse(redisReply *r, int64_t published_ns, int *status, uint64_t *last, struct event ***evs,
    size_t *n, uint64_t *base);
void redis_replay_run(struct redis_replay *r);
void redis_replay_defer(struct redis_chan *b, struct redis_replay *r);
void redis_replay_flush(struct redis_chan *b);
void redis_replay_cancel(struct redis_replay *r);

/* redis_state.c */
void redis_state_run(struct redis_state *j);

/* redis_sub.c */
struct redis_chan *redis_sub_chan(struct channel *ch, bool create);
void redis_sub_join(struct redis_member *m);
void redis_sub_leave(struct redis_member *m);
void redis_sub_connected(unsigned shard);
void redis_sub_disconnected(unsigned shard);
void redis_sub_tick(uint32_t now);
void redis_sub_shutdown(void);

#endif
