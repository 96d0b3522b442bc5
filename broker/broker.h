/*
 * ssepush-broker private header: named defaults, the shared structures (channels,
 * subscriber streams, counters) and the prototypes of each file, grouped by file.
 */
#ifndef SSEPUSH_BROKER_H
#define SSEPUSH_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "config.h"
#include "history.h"
#include "bus.h"
#include "sse.h"

#define BROKER_VERSION "0.1.0"
#define BROKER_ID_MAX 48		/* bytes of an event id, with NUL */
#define BROKER_BOOT_HEX 12		/* hex digits of the per-process id prefix */
#define BROKER_RETRY_AFTER "5"		/* seconds, in 503 answers */
#define BROKER_STOP_GRACE_MS 3000	/* wait for streams to end on SIGTERM */
#define BROKER_SWEEP_SECONDS 5		/* how often idle channels are swept */
#define BROKER_WHEEL_SLOTS 1024		/* ping wheel: one slot per second */
#define BROKER_MAX_SHARDS 64
#define BROKER_DIRECT_FANOUT 256	/* channels with more subscribers are woken, not written directly */
#define BUS_LINGER_SECONDS 15		/* stay subscribed this long after the last subscriber left */
#define BUS_BACKOFF_MIN_MS 100		/* Redis reconnect backoff, doubled up to the max, jittered */
#define BUS_BACKOFF_MAX_MS 5000
#define BUS_COUNTS_TTL 86400		/* seconds a channel's count hash lives without refresh */
#define BUS_REFRESH_SECONDS 600		/* how often live brokers refresh that TTL */
#define BUS_QUEUE_MAX 100000		/* jobs waiting for the Redis thread, at most */
#define BROKER_SECRET_MIN 32		/* bytes in a token or publish secret */

/* Directive indexes into the broker's table (options.c). */
enum opt {
	OPT_LISTEN, OPT_PUBLISH_LISTEN, OPT_AUTH, OPT_THREADS,
	OPT_TOKEN_SECRET, OPT_TOKEN_SECRET_FILE, OPT_MAX_TOKEN_SIZE, OPT_TRUSTED_PROXIES,
	OPT_PUBLISH_SECRET, OPT_PUBLISH_SECRET_FILE, OPT_CORS_ORIGINS,
	OPT_PING_INTERVAL, OPT_PING_MIN, OPT_PING_MAX, OPT_RECONNECT_MS,
	OPT_HISTORY_SIZE, OPT_HISTORY_TTL, OPT_MAX_CONNECTIONS,
	OPT_MAX_SUBSCRIBERS_PER_CHANNEL, OPT_MAX_CHANNELS, OPT_MAX_MESSAGE_SIZE,
	OPT_MAX_BATCH, OPT_CONNECTION_MEMORY, OPT_REQUEST_TIMEOUT,
	OPT_TCP_KEEPALIVE, OPT_TCP_KEEPIDLE, OPT_TCP_KEEPINTVL, OPT_TCP_KEEPCNT,
	OPT_LOG_LEVEL, OPT_REDIS, OPT_REDIS_PREFIX, OPT_DEMO,
	OPT_COUNT
};

/* Values of the auth directive. */
enum auth_mode { AUTH_NONE, AUTH_TOKEN, AUTH_PROXY };

/* Why a request was let in or refused (auth.c fills it, the caller sends the refusal). */
struct auth_result {
	unsigned status;		/* 401 or 403 when refused */
	int reason;			/* index into auth.c's reasons */
	const char *msg;		/* static text for the JSON error */
	char session[129];		/* the token's sid (NAMES_ID_MAX + 1), or "" */
};

/*
 * A channel: its history and its local subscribers, under one lock. One per user in
 * the common case, so fields are ordered by size to avoid padding.
 */
struct channel {
	struct channel *hnext;		/* hash chain, under the table lock */
	struct stream *subs;		/* subscriber list, under lock */
	struct bus_chan *bus;		/* Redis mode: the Redis thread's state, or NULL (Redis thread only) */
	struct channel *bus_next;	/* Redis mode: the Redis thread's work list (under its queue lock) */
	pthread_mutex_t lock;
	struct history history;		/* under lock */
	uint64_t published;		/* under lock */
	/* Holders (streams, publishers, the Redis thread). Atomic so that a holder may take
	 * another reference under ch->lock without the table lock (lock order: table, then
	 * channel); only channel_get raises it from 0, under the table lock. */
	atomic_uint refs;
	unsigned nsubs;			/* under lock */
	uint32_t count_gen;		/* Redis mode: generation of this broker's registered counts (under lock) */
	uint16_t namelen;
	bool covered;			/* Redis mode: the ring holds every event after history.floor_seq (under lock) */
	bool positioned;		/* Redis mode: history.last_seq is a real position in Redis (under lock) */
	bool bus_queued;		/* Redis mode: in the Redis thread's work list (under its queue lock) */
	char name[];
};

/* What a request's MHD req_cls points at: each kind starts with this. */
enum req_kind { REQ_STREAM = 1, REQ_PUBLISH, REQ_HEADERS };

/*
 * One subscriber stream (an EventSource or long-poll response). Every byte here is
 * paid once per subscriber, so fields are ordered by size to avoid padding.
 */
struct stream {
	enum req_kind kind;		/* first: MHD's req_cls points here (REQ_STREAM) */
	int wslot;			/* wheel slot, or -1 */
	struct MHD_Connection *conn;
	struct channel *ch;		/* holds a reference */
	struct stream *prev, *next;	/* channel list, under ch->lock */
	struct stream *wprev, *wnext;	/* ping wheel slot, under the wheel lock */
	struct stream *gnext;		/* graveyard, under the reaper's lock */
	struct stream_replay *replay;	/* Redis mode: history fetched for this stream, or NULL */
	struct event *partial;		/* the event at cursor, referenced while offset > 0 */
	char *session;			/* owned, or NULL */
	char *origins;			/* owned comma list, or NULL */
	char *raw;			/* the unsent rest of a directly written chunk, or NULL */
	uint64_t cursor;		/* channel index of the next event to consider */
	uint64_t skip_until;		/* ring events with a key up to this were already sent */
	uint64_t reset_seq;		/* id the pending reset carries */
	int64_t start_ns;		/* when the stream began: older events are replays */
	int fd;
	unsigned refs;			/* MHD's request, plus a Redis replay in flight (under ch->lock) */
	uint32_t offset;		/* bytes of the event at cursor already sent */
	uint32_t last_send;		/* monotonic second something was last sent */
	uint32_t ping;			/* seconds, 0 = no pings */
	uint32_t retry_ms;		/* for the preamble */
	uint32_t raw_len, raw_off;	/* bytes of raw, and how many are sent */
	/* flags, under ch->lock */
	bool suspended, closing, longpoll, ping_due, sent, dead, attached, pending;
	bool direct;			/* frames may be written straight to the socket while suspended */
	bool wake_after_raw;		/* resume once raw is flushed */
	uint8_t small;			/* STREAM_SMALL_* frames still to send */
	uint8_t small_off;		/* bytes of the first of them already sent */
	uint8_t reset_reason;		/* index into the reset reasons */
};

/* Broker-wide counters for /metrics and /stats. */
struct counters {
	atomic_ullong connections;	/* open HTTP connections */
	atomic_ullong streams;		/* open subscriber streams */
	atomic_ullong channels;
	atomic_ullong published, delivered, pings, replays, resets;
	atomic_ullong auth_failures, rejected, lagged;
	atomic_ullong latency_count, latency_sum_us;
	atomic_ullong latency_bucket[12];
};
#define COUNTERS_BUCKETS { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }

/* Why a stream gets "event: reset". */
enum stream_reset { RESET_UNKNOWN, RESET_EXPIRED, RESET_LAGGED };

/* Events fetched from Redis for one reconnecting stream, sent before the ring. */
struct stream_replay {
	struct event **ev;		/* owned references */
	size_t n, i;			/* count, next to send */
};

/* The fields of one publish, all borrowed. */
struct publish_req {
	const char *channel;
	const char *type;		/* NULL for message */
	const char *data;
	size_t len;
	const char *session, *exclude_session, *origin;
};

/* main.c */
extern struct config *broker_config;
extern struct counters counters;
extern atomic_bool broker_terminating;
extern char broker_boot[BROKER_BOOT_HEX + 1];

/* options.c */
extern const struct config_directive broker_directives[OPT_COUNT];
long long opt(enum opt o);
void options_snapshot(const struct config *c);
const char *opt_str(enum opt o);

/* clock.c */
int64_t clock_ns(void);
uint32_t clock_sec(void);

/* channel.c */
int channel_table_init(void);
void channel_table_free(void);
struct channel *channel_get(const char *name, size_t len, bool create);
void channel_put(struct channel *ch);
int channel_publish(const struct publish_req *req, char *id, size_t idlen, unsigned *count);
void channel_format_id(char *buf, size_t len, uint64_t seq);
uint64_t channel_last_seq(void);
void channel_sweep(void);
void channel_each(void (*fn)(struct channel *, void *), void *arg);
bool channel_matches(const struct stream *s, const struct event *ev);
struct channel *channel_ref(struct channel *ch);
struct event *channel_event_new(const struct publish_req *req, uint64_t key);
void channel_deliver(struct channel *ch, struct event *ev);

/* stream.c */
enum MHD_Result stream_start(struct MHD_Connection *conn, const char *version,
    const char *channel, size_t len, void **out);
void stream_deliver(struct stream *s, struct event *ev, uint64_t index);
void stream_flush_raw(struct stream *s);
void stream_completed(struct stream *s);
void stream_wake(struct stream *s);
void stream_end_all(bool force);
void stream_free(struct stream *s);
void stream_force_reset(struct stream *s, uint64_t key, int reason);
void stream_replayed(struct stream *s, int status, uint64_t last, struct event **ev, size_t n);
bool stream_release(struct stream *s);

/* redis_bus.c */
typedef void bus_publish_done(void *arg, int ok, const char *id, unsigned subscribers);
extern bool bus_enabled;
int bus_start(void);
void bus_stop(void);
bool bus_ready(char *why, size_t len);
int bus_publish(const struct publish_req *req, bus_publish_done *done, void *arg);
void bus_channel_changed(struct channel *ch);
void bus_count_delta(struct channel *ch, const struct stream *s, int delta);
void bus_replay(struct stream *s, const char *from);

/* reaper.c */
int reaper_start(void);
void reaper_stop(void);
int reaper_watch(struct stream *s);
void reaper_forget(struct stream *s);
void reaper_bury(struct stream *s);

/* http.c */
enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload, size_t *upload_size,
    void **req_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
    enum MHD_RequestTerminationCode toe);
void http_connection(void *cls, struct MHD_Connection *conn, void **socket_cls,
    enum MHD_ConnectionNotificationCode toe);
enum MHD_Result http_error(struct MHD_Connection *conn, unsigned status, const char *msg);
enum MHD_Result http_json(struct MHD_Connection *conn, unsigned status, const char *body);
const char *http_arg(struct MHD_Connection *conn, const char *name);
size_t http_unescape(void *cls, struct MHD_Connection *conn, char *s);
enum MHD_Result http_method_not_allowed(struct MHD_Connection *conn, const char *allow);

/* auth.c */
int auth_check_config(const struct config *c, const char *path, config_error_fn *report,
    void *arg);
int auth_init(const struct config *c);
void auth_free(void);
int auth_subscriber(struct MHD_Connection *conn, const char *channel, size_t len,
    struct auth_result *r);
int auth_publisher(struct MHD_Connection *conn, struct auth_result *r);
enum MHD_Result auth_refuse(struct MHD_Connection *conn, const struct auth_result *r);
void auth_client_addr(struct MHD_Connection *conn, char *buf, size_t len);
int auth_mint(const char *channel, const char *session, long long ttl, FILE *out);
void auth_metrics(FILE *f);

/* cors.c */
void cors_headers(struct MHD_Connection *conn, struct MHD_Response *r);
enum MHD_Result cors_preflight(struct MHD_Connection *conn, const char *url,
    bool serves_publish);
int cors_check_origins(const char *v, char *err, size_t errlen);

/* publish.c */
enum MHD_Result publish_handle(struct MHD_Connection *conn, const char *url,
    const char *upload, size_t *upload_size, void **req_cls);
void publish_free(void *state);

/* ops.c */
enum MHD_Result ops_handle(struct MHD_Connection *conn, const char *url);
void counters_observe_latency(int64_t ns);

/* shard.c */
int shard_start_all(void);
void shard_quiesce_all(void);
void shard_stop_all(void);
const char *shard_listen_addr(void);

/* static.c, and the embedded files generated from broker/www/ at build time */
struct www_file {
	const char *path;		/* URL path */
	const char *type;		/* Content-Type */
	const unsigned char *data;
	size_t len;
	const char *etag;		/* quoted */
};
extern const struct www_file www_files[];
extern const size_t www_count;
enum MHD_Result static_handle(struct MHD_Connection *conn, const char *url, const char *method);

#endif
