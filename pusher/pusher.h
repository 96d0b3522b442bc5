/*
 * ssepush-pusher's private header: named defaults, the directive indices, the
 * daemon-wide counters, and the prototypes of each file, grouped by file. The daemon is
 * one thread on one libevent base: the notify socket is drained, parsed and coalesced
 * on it, closed windows wait in a bounded queue for the Redis connection, and the
 * optional metrics listener (libevent's evhttp) answers on the same base.
 */
#ifndef SSEPUSH_PUSHER_H
#define SSEPUSH_PUSHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "coalesce.h"
#include "jmap_states.h"
#include "config.h"
#include "notify.h"

#define PUSHER_VERSION "0.1.0"
#define PUSHER_EVENT_TYPE "change"	/* type of every published event */
#define PUSHER_STDIN "stdin"		/* notify_socket value: the socket on fd 0 (same as "fd:0") */
#define PUSHER_MASTER_FD 4		/* Cyrus master hands a service its listen socket as fd 4 */
#define PUSHER_DRAIN_BATCH 256		/* datagrams read per wake-up before timers get a turn */
#define PUSHER_INFLIGHT_MAX 64		/* publishes sent to Redis and not yet answered */
#define PUSHER_BACKOFF_MIN_MS 100	/* Redis reconnect backoff, doubled up to the max, jittered */
#define PUSHER_BACKOFF_MAX_MS 5000
#define PUSHER_CONNECT_TIMEOUT_MS 5000	/* connect + AUTH + SELECT + SCRIPT LOAD must finish in this */
#define PUSHER_REPLY_TIMEOUT_MS 10000	/* a publish unanswered this long: reconnect and resend */
#define PUSHER_PUBLISH_TRIES 3		/* error replies before an event is given up (and counted) */
#define PUSHER_STOP_GRACE_MS 3000	/* SIGTERM: time to publish what is queued */
#define PUSHER_LOG_EVERY_MS 10000	/* repeated warnings (drops, bad datagrams): one per this */
#define PUSHER_HTTP_TIMEOUT_S 10	/* metrics_listen: a connection idle this long is closed */
#define PUSHER_HTTP_MAX_HEADERS 8192	/* metrics_listen: request line and headers, bytes */
#define PUSHER_HTTP_MAX_BODY 1024	/* metrics_listen: request body, bytes (GET needs none) */
#define PUSHER_ACCEPT_PAUSE_MS 1000	/* metrics_listen: accept() paused this long on EMFILE */
#define PUSHER_SECRET_MIN 32		/* metrics_secret: shortest accepted, bytes */
#define PUSHER_SECRET_MAX 1024		/* metrics_secret: longest accepted, bytes */
#define PUSHER_LATENCY_BUCKETS 16	/* datagram-to-publish histogram buckets, +Inf not counted */
#define PUSHER_STATS_ROWS 24		/* figures on the stats line (and in /metrics) */

enum popt {
	POPT_NOTIFY_SOCKET,
	POPT_NOTIFY_SOCKET_MODE,
	POPT_NOTIFY_SOCKET_GROUP,
	POPT_NOTIFY_RCVBUF,
	POPT_VIRTDOMAINS,
	POPT_REDIS,
	POPT_REDIS_PREFIX,
	POPT_HISTORY_SIZE,
	POPT_HISTORY_TTL,
	POPT_COALESCE_MS,
	POPT_EVENTS,
	POPT_CHANNEL_FORMAT,
	POPT_SHARED_CHANNEL,
	POPT_MAX_USERS,
	POPT_MAX_MAILBOXES,
	POPT_QUEUE_MAX,
	POPT_STATS_INTERVAL,
	POPT_METRICS_LISTEN,
	POPT_METRICS_SECRET,
	POPT_METRICS_SECRET_FILE,
	POPT_LOG_LEVEL,
	POPT_REDIS_MIN_REPLICAS,
	POPT_REDIS_WAIT_MS,
	POPT_JMAP_STATES,
	POPT_COUNT
};

/* Daemon counters (the coalescer keeps its own); never reset. */
struct pusher_counters {
	uint64_t datagrams;		/* received from the notify socket */
	uint64_t bytes;
	uint64_t parse_errors;		/* malformed or oversized datagrams */
	uint64_t queued;		/* change events that entered the queue */
	uint64_t queue_dropped;		/* ... or did not: the queue was full */
	uint64_t published;		/* acknowledged by Redis */
	uint64_t subscribers;		/* sum of the subscriber counts Redis answered */
	uint64_t resent;		/* sent again after a connection loss (may be duplicates) */
	uint64_t publish_failed;	/* error replies PUSHER_PUBLISH_TRIES times: given up */
	uint64_t redis_connects;	/* successful connections */
	uint64_t jmap_updates;		/* JMAP state updates published (a type grew) */
	uint64_t jmap_unchanged;	/* JMAP windows whose states Redis already had */
	uint64_t jmap_dropped;		/* JMAP notifications not folded in (max_users, channel) */
	uint64_t latency_bucket[PUSHER_LATENCY_BUCKETS + 1];	/* published, by datagram-to-publish ms; last: +Inf */
	uint64_t latency_sum_ms;
};

/* How a figure of the stats line appears in /metrics. */
enum stats_kind {
	STATS_COUNTER,		/* ssepush_pusher_<name>_total */
	STATS_GAUGE,		/* ssepush_pusher_<name> */
	STATS_UP,		/* ssepush_pusher_<name>_up 0 or 1; "down" or "up" on the stats line */
};

/* One figure of the stats line, and of /metrics. */
struct stats_row {
	const char *name;	/* as on the stats line */
	enum stats_kind kind;
	const char *help;	/* the HELP line of /metrics */
	uint64_t value;
};

/* One closed window waiting for Redis (a doubly linked FIFO). */
struct queue_item {
	struct queue_item *prev, *next;
	char channel[NAMES_CHANNEL_MAX + 1];
	char origin[NAMES_ID_MAX + 1];
	char *payload;			/* new, NUL-terminated */
	size_t len;
	uint64_t first_ms;		/* pusher_now_ms() of the window's first datagram */
	bool sent;			/* handed to the current connection, reply pending */
	bool was_sent;			/* handed to some connection before */
	unsigned tries;			/* error replies so far */
	bool stored;			/* the script stored it; waiting for WAIT (redis_pub.c) */
	uint64_t wait_seq;		/* the WAIT that answers it, on its shard (redis_pub.c) */
	struct jmap_states *jmap;	/* owned: a JMAP state update (jmap_states on), else NULL */
	bool merged;			/* jmap: the merge script answered; payload is what grew */
};

struct queue {
	struct queue_item *head, *tail;
	size_t len, max, inflight;
};

/* Suppresses repeats of one kind of log line: at most one per PUSHER_LOG_EVERY_MS. */
struct ratelimit {
	uint64_t last_ms;
	uint64_t suppressed;
};

extern struct config *pusher_config;
extern struct pusher_counters pusher_counters;
extern struct event_base *pusher_base;
extern struct queue pusher_queue;
extern const struct config_directive pusher_directives[POPT_COUNT];

/* main.c */
uint64_t pusher_now_ms(void);
long long popt(enum popt o);
const char *popt_str(enum popt o);

/* options.c */
int options_coalesce_config(const struct config *c, struct coalesce_config *cc);
int options_socket_fd(const char *v);
int options_split_listen(const char *v, char *host, size_t hostlen, unsigned *port, char *err, size_t errlen);

/* input.c */
int input_open(void);
void input_close(void);
const char *input_describe(void);
struct coalesce *input_coalescer(void);
void input_coalesce_stats(struct coalesce_stats *out);
void input_set_coalescer(struct coalesce *c);
void input_free(void);

/* queue.c */
void queue_init(struct queue *q, size_t max);
int queue_push(struct queue *q, struct coalesce_event *ev);
int queue_push_jmap(struct queue *q, const struct jmap_update *u);
struct queue_item *queue_next_unsent(const struct queue *q);
void queue_remove(struct queue *q, struct queue_item *it);
void queue_clear(struct queue *q);

/* redis_pub.c */
int pub_start(void);
void pub_kick(void);
void pub_stop(void);
bool pub_up(void);
const char *pub_error(void);
struct redis_conn;
struct redis_conn *pub_conn_of(const char *channel);

/* metrics.c */
int metrics_check(const struct config *c, const char *path, config_error_fn *report, void *arg);
int metrics_start(void);
void metrics_stop(void);

/* stats.c */
bool ratelimit_pass(struct ratelimit *rl, uint64_t now_ms, uint64_t *suppressed);
void stats_log(const char *why);
size_t stats_collect(struct stats_row *rows);
void stats_observe_latency(uint64_t ms);
struct evbuffer;
int stats_prometheus(struct evbuffer *out);
int stats_start(void);
void stats_reschedule(void);
void stats_stop(void);

#endif
