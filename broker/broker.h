/*
 * ssepush-broker private header: how the broker's threads share its data, the named
 * defaults, the directive indexes, the counters, and the prototypes of the files that
 * have no header of their own, grouped by file. The data path reads from `ls broker/`:
 * http.c routes to subscribe.c / publish.c / ops.c; they reach the bus (bus.h:
 * bus_local.c, or bus_redis.c with redis_link.c, redis_sub.c, redis_counts.c,
 * redis_replay.c); events end in fanout.c, which hands them to stream.c (direct.c for
 * direct writes), reading channel.c's history.c ring; watcher.c (with wheel.c) watches
 * the sockets; reply.c builds every JSON answer. Files call only files below them
 * (tests/callgraph.sh checks it).
 *
 * THREADS AND LOCKS
 *
 * Threads, and what each owns:
 *  - main: loads the config, starts the rest, then only waits for signals (sigwait):
 *    SIGHUP reloads the integer directives into options.c's atomic snapshot; SIGTERM
 *    and SIGINT run the shutdown. String directives are never reloaded, so every
 *    thread may read them without a lock.
 *  - the event loops: `threads` libmicrohttpd daemons sharing the listen port (one
 *    per core by default), plus, standalone, one per core on publish_listen, each with
 *    its own epoll thread (MHD_USE_EPOLL_INTERNAL_THREAD). In Redis mode
 *    publish_listen has one daemon without a thread, which the Redis thread runs (see
 *    there). A loop owns its connections: it
 *    alone runs the access handler (http.c and below), the content reader
 *    stream_read() and the request-completed callback for them. A long-lived HTTP/1.1
 *    stream stops being a loop's at its 200: the broker takes it over (subscribe.c,
 *    subscribe_take), answers it itself and libmicrohttpd drops its connection. So
 *    does a long-poll's, whose connection the broker then keeps (repoll.h).
 *  - the watcher (watcher.c): one thread with an epoll set of every stream's socket
 *    (EPOLLRDHUP, edge triggered, registered once; EPOLLOUT added by a MOD from the
 *    first direct write that leaves a rest, under ch->lock). Owns the ping wheel
 *    (under wheel_lock); sees hang-ups of suspended streams (MHD does not watch them),
 *    ends taken streams (a hang-up, or their own shutdown(2) asking for it), finishes
 *    the rest of direct writes, fires pings, sweeps the channel table a slice at a time
 *    and frees dead streams (stream_reap) between two epoll waits, when no epoll event
 *    can name them any more. Owns every bound kept long-poll connection (repoll.h: its
 *    sockset entry names the record): reads its next request, opens its next poll or
 *    hands it back to libmicrohttpd, closes it, and frees records the same way.
 *  - the Redis thread (Redis mode only, bus_redis.c): a libevent loop owning both Redis
 *    connections (redis_link.c), every channel's subscription state (ch->bus:
 *    redis_sub.c) and every joined stream's membership (s->bus_member). Other threads
 *    give it work only through one FIFO job queue (jobq.c) and an eventfd, and never
 *    wait for it: its answers come back as callbacks. It also runs publish_listen's
 *    daemon (bus->serve): that daemon's epoll set is one more event of its loop, the
 *    publishes MHD_run takes in are sent by the drain right after it, and their
 *    answers resume them on the same thread, so a publish wakes no other thread of the
 *    broker. Without a thread of its own the daemon has no ITC, so every resume goes
 *    through conn_resume, which tells its runner. At stop the Redis thread quiesces it
 *    and hands it back: the shutdown runs it on main until the daemons stop.
 *  - the fan-out helpers (fanout.c): one thread per core beyond the first, idle until a
 *    publisher appends an event to a channel of more than BROKER_DIRECT_FANOUT
 *    subscribers; each then delivers a contiguous run of its subscriber list while the
 *    publisher delivers the first run, holding ch->lock and waiting for every run
 *    before it goes on. A helper so acts under the publisher's lock: it touches only
 *    its run's streams, and the pool's mutex orders its accesses between the
 *    publisher's.
 *
 * Who may write a subscriber's socket, and when:
 *  - libmicrohttpd (the stream's event loop), while the connection is not suspended;
 *  - the thread that appends an event to the stream's channel (fanout.c: a publisher's
 *    event loop standalone, the Redis thread in Redis mode), holding ch->lock, as one
 *    HTTP chunk (direct.c), only while the stream is suspended by its reader with
 *    nothing of its own pending (partial event, small frame, replay, direct rest) and
 *    its channel has at most BROKER_DIRECT_FANOUT subscribers;
 *  - the watcher, holding ch->lock, to send the rest of a direct write;
 *  - for a taken stream (no MHD connection any more), whichever thread wakes it
 *    (a publisher, the watcher's ping, a bus answer), holding ch->lock: what the
 *    reader would have returned goes out as chunks (stream.c, stream_pump), and a
 *    stream that must end is shut down there and ended by the watcher. A kept
 *    long-poll's answer ends with its last chunk in the same send, and the thread that
 *    answered it ends the poll once it lets go of ch->lock (stream_end_polls), or the
 *    watcher does; whoever swaps it out of its record (repoll_take_answered).
 *  A stream with a direct rest pending is not resumed until the rest is out
 *  (wake_after_raw), so libmicrohttpd and a direct writer never interleave bytes.
 *
 * The libmicrohttpd behaviour this relies on, read in the 0.9.75 source (Debian 12)
 * and pinned: main.c checks MHD_get_version() at start-up and turns direct writes off,
 * with a warning, under any other version:
 *  - the content reader is called only with the connection's write buffer empty, and a
 *    suspended connection is never written, so bytes written directly while it is
 *    suspended follow everything MHD wrote and precede MHD's next chunk;
 *  - a suspended connection's socket is not watched (hence the watcher) and it never
 *    times out; MHD_resume_connection may be called from any thread, even from inside
 *    the access handler that just suspended it; after a resume the access handler is
 *    called again if no response was queued (the waits of subscribe.c and publish.c);
 *  - a response queued in the first access-handler call forces Connection: close, so
 *    GET and HEAD answer on the second call (http.c);
 *  - MHD_stop_daemon with a suspended connection aborts: the shutdown fails every bus
 *    wait and ends every stream first (main.c);
 *  - an access handler's MHD_NO closes the connection without a byte sent, and under
 *    MHD_USE_TURBO without shutdown(2): the socket's other descriptor (a taken
 *    stream's dup) keeps it open; MHD removes the socket from its epoll set before it
 *    closes its descriptor (daemon.c, MHD_cleanup_connections), so no event of the
 *    socket reaches MHD after its connection is freed.
 *
 * Lock order (a lock on the left may be held while taking one on its right, never the
 * reverse): table_lock (channel.c) -> wheel_lock (watcher.c) -> ch->lock -> the job
 * queue's lock (jobq.c) -> grave_lock (stream.c), ch->lock -> the kept long-poll
 * connections' list_lock and done_lock (repoll.c), and ch->lock -> the web push store's
 * table_lock (webpush_store.c, read: webpush_wants); libmicrohttpd's own locks come last
 * (MHD_resume_connection is called under ch->lock). ch->lock guards a channel's ring,
 * its subscriber list and every field of its subscribers' streams; the Redis thread's
 * state (ch->bus, s->bus_member once joined) needs no lock, being its alone. Channel
 * and event references are atomic, so a holder may take one under any lock.
 *
 * Which callback runs on which thread:
 *  - bus publish, join and replay answers: standalone, on the calling event loop before
 *    the call returns; Redis mode, on the Redis thread. They resume the waiting
 *    connection (MHD_resume_connection) and touch nothing after that.
 *  - fanout() and so stream_deliver(): the publishing event loop, or the Redis thread.
 *  - stream_read(): the stream's event loop; stream_hangup(), stream_flush(),
 *    stream_tick(), stream_reap(): the watcher.
 */
#ifndef SSEPUSH_BROKER_H
#define SSEPUSH_BROKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "config.h"

#define BROKER_VERSION "0.1.0"
#define BROKER_MHD_VERSION "0.9.75"	/* the libmicrohttpd whose behaviour direct writes rely on */
#define BROKER_ID_MAX 48		/* bytes of an event id, with NUL */
#define BROKER_BOOT_HEX 12		/* hex digits of the per-process id prefix */
#define BROKER_RETRY_AFTER "5"		/* seconds, in 503 answers */
#define BROKER_RETRY_MS 5000		/* the same, as the retry: of a refused EventSource (plus jitter) */
#define BROKER_STOP_GRACE_MS 3000	/* wait for streams to end on SIGTERM */
#define BROKER_SWEEP_SECONDS 5		/* how often idle channels are swept */
#define BROKER_MAX_SHARDS 64
#define BROKER_DIRECT_FANOUT 256	/* channels with more subscribers are woken, not written directly */
#define BROKER_SECRET_MIN 32		/* bytes in a token or publish secret */
#define BROKER_LIST_SEP ", \t"		/* separates the items of a list directive */

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
	OPT_LOG_LEVEL, OPT_REDIS, OPT_REDIS_PREFIX, OPT_REDIS_TIMEOUT, OPT_DEMO,
	OPT_HEADER_TIMEOUT, OPT_MAX_PENDING_PER_ADDRESS, OPT_MAX_TOKEN_LIFETIME,
	OPT_REDIS_MIN_REPLICAS, OPT_REDIS_WAIT_MS,
	/* web push (webpush*.c) */
	OPT_WEBPUSH, OPT_WEBPUSH_VAPID_KEY_FILE, OPT_WEBPUSH_SUBJECT, OPT_WEBPUSH_ENDPOINTS,
	OPT_WEBPUSH_WHEN, OPT_WEBPUSH_STORE, OPT_WEBPUSH_TTL, OPT_WEBPUSH_URGENCY,
	OPT_WEBPUSH_MAX_PER_CHANNEL, OPT_WEBPUSH_QUEUE, OPT_WEBPUSH_CONCURRENCY,
	OPT_WEBPUSH_RETRIES, OPT_WEBPUSH_RECLAIM,
	OPT_JMAP_EVENTSOURCE_PATH, OPT_UPSTREAM_SESSION_URL, OPT_UPSTREAM_CACHE_TTL,
	OPT_UPSTREAM_CACHE_SIZE, OPT_UPSTREAM_TIMEOUT, OPT_UPSTREAM_MAX_PENDING,
	OPT_COUNT
};

/* Values of the auth directive. */
enum auth_mode { AUTH_NONE, AUTH_TOKEN, AUTH_PROXY, AUTH_UPSTREAM };

/* Why a request was let in or refused (auth.c fills it, the caller sends the refusal). */
struct auth_result {
	unsigned status;		/* 401 or 403 when refused */
	int reason;			/* index into auth.c's reasons */
	const char *msg;		/* static text for the JSON error */
	char session[129];		/* the token's sid (NAMES_ID_MAX + 1), or "" */
};

/* Why a subscribe was refused for a while (a limit, or the bus): ssepush_refused_total's labels. */
enum refuse_reason { REFUSE_CONNECTIONS, REFUSE_CHANNELS, REFUSE_SUBSCRIBERS, REFUSE_BUS,
	REFUSE_WATCH, REFUSE_COUNT };

/* How a request head too big for connection_memory ended: ssepush_heads_too_large_total's labels. */
enum head_answer { HEAD_JSON_431, HEAD_MHD_431, HEAD_CLOSED, HEAD_COUNT };

/* Broker-wide counters for /metrics and /stats. */
struct counters {
	atomic_ullong connections;	/* open HTTP connections */
	atomic_ullong streams;		/* open subscriber streams */
	atomic_ullong channels;
	atomic_ullong published, delivered, pings, replays, resets;
	atomic_ullong auth_failures, rejected, lagged;
	atomic_ullong latency_count, latency_sum_us;
	atomic_ullong latency_bucket[12];
	atomic_ullong refused[REFUSE_COUNT];
	atomic_ullong pending_refused;	/* connections closed at accept: too many pending */
	atomic_ullong header_timeouts;	/* connections that did not finish a request within header_timeout */
	atomic_ullong slow_readers;	/* streams cut: their socket took nothing for request_timeout */
	atomic_ullong heads_too_large[HEAD_COUNT];	/* request heads over connection_memory */
	atomic_ullong repolls;		/* long-polls the broker read on a kept connection itself (repoll.c) */
	atomic_ullong repoll_handed_back;	/* next requests of kept connections handed back to libmicrohttpd */
};
#define COUNTERS_BUCKETS { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 }

/* options.c */
extern struct config *broker_config;
extern const struct config_directive broker_directives[OPT_COUNT];
long long opt(enum opt o);
void options_snapshot(const struct config *c);
const char *opt_str(enum opt o);

/* clock.c */
int64_t clock_ns(void);
uint32_t clock_sec(void);

/* counters.c */
extern struct counters counters;
extern const double counters_bounds[12];
extern const char *const counters_refuse_labels[REFUSE_COUNT];
void counters_observe_latency(int64_t ns);

/* request.c */
const char *request_arg(struct MHD_Connection *conn, const char *name);
size_t request_unescape(void *cls, struct MHD_Connection *conn, char *s);
const char *request_framing_error(struct MHD_Connection *conn);
bool request_head_fits(struct MHD_Connection *conn);
void request_head_too_large(enum head_answer how);
void request_check_lines(bool on);
void *request_uri_log(void *cls, const char *uri, struct MHD_Connection *conn);

/* reply.c */
enum MHD_Result reply_json(struct MHD_Connection *conn, unsigned status, const char *body);
enum MHD_Result reply_error(struct MHD_Connection *conn, unsigned status, const char *msg);
enum MHD_Result reply_method_not_allowed(struct MHD_Connection *conn, const char *allow);
enum MHD_Result reply_refused(struct MHD_Connection *conn, unsigned status, const char *msg,
    const char *www_authenticate);
enum MHD_Result reply_text(struct MHD_Connection *conn, const char *type, const char *body,
    size_t len);
enum MHD_Result reply_retry(struct MHD_Connection *conn, unsigned retry_ms, const char *why);
#define REPLY_RETRY_BODY_MAX 256
size_t reply_retry_body(char *buf, size_t len, unsigned retry_ms, const char *why);
enum MHD_Result reply_preflight(struct MHD_Connection *conn, bool events, bool publish);
enum MHD_Result reply_published(struct MHD_Connection *conn, const char *channel,
    const char *id, unsigned subscribers);
/* One item of a batch answer: an id and count, or an error. */
struct reply_item {
	const char *channel;		/* borrowed */
	const char *error;		/* static, or NULL */
	char id[BROKER_ID_MAX];
	unsigned subscribers;
};
enum MHD_Result reply_batch(struct MHD_Connection *conn, const struct reply_item *items, size_t n);
enum MHD_Result reply_stats(struct MHD_Connection *conn);
enum MHD_Result reply_channel_stats(struct MHD_Connection *conn, const char *channel,
    unsigned subscribers, size_t history, uint64_t published, const char *last_id);

/* cors.c */
void cors_headers(struct MHD_Connection *conn, struct MHD_Response *r);
bool cors_allowed(const char *origin);

/* auth.c */
int auth_check_config(const struct config *c, const char *path, config_error_fn *report,
    void *arg);
int auth_init(const struct config *c);
void auth_free(void);
int auth_subscriber(struct MHD_Connection *conn, const char *channel, size_t len,
    struct auth_result *r);
const char *auth_subscriber_token(struct MHD_Connection *conn);
int auth_publisher(struct MHD_Connection *conn, struct auth_result *r);
enum MHD_Result auth_refuse(struct MHD_Connection *conn, const struct auth_result *r);
void auth_client_addr(struct MHD_Connection *conn, char *buf, size_t len);
int auth_mint(const char *channel, const char *session, long long ttl, FILE *out);
int auth_token_check(const char *tok, const char *channel, size_t len, struct auth_result *r);
int auth_token_accounts(struct MHD_Connection *conn, char *buf, size_t len, unsigned max);
void auth_metrics(FILE *f);
const struct cidr_list *auth_trusted(void);

/* conn.c */
struct cidr_list;
void conn_init(const struct cidr_list *proxies);
enum MHD_Result conn_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void conn_notify(void *cls, struct MHD_Connection *conn, void **socket_cls,
    enum MHD_ConnectionNotificationCode toe);
void conn_settled(struct MHD_Connection *conn);
void conn_adopt(int delta);
bool conn_trim_due(unsigned drop);
void conn_request_done(struct MHD_Connection *conn);
enum MHD_Result conn_queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r);
void conn_served(struct MHD_Daemon *d, void (*resumed)(void));
void conn_resume(struct MHD_Connection *conn);
void conn_expire(uint32_t now);

/* watcher.c */
struct stream;
/* What the watcher calls above it: subscribe.c's end of a taken stream, repoll.c's connections. */
struct watcher_hooks {
	void (*end_taken)(struct stream *);
	void (*repoll_event)(void *repoll, uint32_t events);
	void (*repoll_tick)(uint32_t now);	/* once a second */
	void (*repoll_reap)(void);		/* between two waits */
	void (*repoll_close_all)(void);		/* once stopped */
};
int watcher_start(const struct watcher_hooks *hooks);
void watcher_stop(void);
int watcher_watch(struct stream *s);
void watcher_forget(struct stream *s);

/* subscribe.c */
void subscribe_allow_direct(bool on);
enum MHD_Result subscribe_start(struct MHD_Connection *conn, const char *version,
    const char *channel, size_t len, void **req_cls);
int subscribe_ping_arg(const char *v, unsigned *ping);
struct stream_opts;
enum MHD_Result subscribe_open(struct MHD_Connection *conn, const char *version, const char *name,
    size_t len, struct stream_opts *o, const char *last_id, void **req_cls);
enum MHD_Result subscribe_open_accounts(struct MHD_Connection *conn, const char *version,
    struct stream_opts *o, void **req_cls);
enum MHD_Result subscribe_resumed(struct MHD_Connection *conn, void **req_cls);
void subscribe_completed(struct stream *s);
void subscribe_end_taken(struct stream *s);
struct repoll;
struct stream *subscribe_repoll_open(struct repoll *r, const char *last_id);
void subscribe_repoll_go(struct stream *s, const char *last_id);
void subscribe_end_poll(struct stream *s);

/* publish.c */
enum MHD_Result publish_handle(struct MHD_Connection *conn, const char *url,
    const char *upload, size_t *upload_size, void **req_cls);
void publish_free(void *state);
typedef struct json_t json_t;
unsigned publish_batch_parse(const char *body, size_t len, json_t **out, char *why, size_t whylen);

/* jmap.c */
enum MHD_Result jmap_start(struct MHD_Connection *conn, const char *version, void **req_cls);
enum MHD_Result jmap_resumed(struct MHD_Connection *conn, const char *version, void **req_cls);
void jmap_completed(void *req_cls);
void jmap_check_config(const struct config *c);

/* ops.c */
enum MHD_Result ops_handle(struct MHD_Connection *conn, const char *url);

/* http.c */
enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload, size_t *upload_size,
    void **req_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
    enum MHD_RequestTerminationCode toe);

/* shard.c */
int shard_start_all(void);
void shard_quiesce_all(void);
void shard_run_served(void);
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
