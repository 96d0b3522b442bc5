/*
 * ssepush-pusher's private header: named defaults, the directive indices, the
 * daemon-wide counters, and the prototypes of each file, grouped by file. The daemon is
 * one thread on one libevent base: the notify socket is drained, parsed and coalesced
 * on it, and closed windows wait in a bounded queue for the Redis connection.
 */
#ifndef SSEPUSH_PUSHER_H
#define SSEPUSH_PUSHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "coalesce.h"
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
	POPT_LOG_LEVEL,
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
};

/* One closed window waiting for Redis (a doubly linked FIFO). */
struct queue_item {
	struct queue_item *prev, *next;
	char channel[NAMES_CHANNEL_MAX + 1];
	char origin[NAMES_ID_MAX + 1];
	char *payload;			/* new, NUL-terminated */
	size_t len;
	bool sent;			/* handed to the current connection, reply pending */
	bool was_sent;			/* handed to some connection before */
	unsigned tries;			/* error replies so far */
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
struct queue_item *queue_next_unsent(const struct queue *q);
void queue_remove(struct queue *q, struct queue_item *it);
void queue_clear(struct queue *q);

/* redis_pub.c */
int pub_start(void);
void pub_kick(void);
void pub_stop(void);
bool pub_up(void);

/* stats.c */
bool ratelimit_pass(struct ratelimit *rl, uint64_t now_ms, uint64_t *suppressed);
void stats_log(const char *why);
int stats_start(void);
void stats_reschedule(void);
void stats_stop(void);

#endif
