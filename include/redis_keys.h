/*
 * The Redis data layout and publish primitive shared by the broker and the pusher:
 * key names, the server-side scripts (publish: append to the channel's stream, trim,
 * expire, count subscribers on live brokers and notify, in one atomic step; replay:
 * what a client that last saw an id has missed), the notification format, and the
 * packing of Redis stream ids into ordered 64-bit keys. Leaf module: libc only.
 */
#ifndef SSEPUSH_REDIS_KEYS_H
#define SSEPUSH_REDIS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define BUS_SEQ_BITS 20			/* ids with more than 2^20 entries in one ms are refused */
#define BUS_ID_MAX 48			/* "ms-seq" with NUL */
#define BUS_KEY_MAX 256			/* prefix + tag + channel */
#define BUS_HEARTBEAT_MS 1000		/* a broker refreshes its liveness key this often */
#define BUS_ALIVE_MS 3000		/* ... which expires after this: counts of a dead broker vanish */
#define BUS_FIELD_SEP '|'		/* separates broker, session and origins in a count field */

/*
 * Keys, all under redis_prefix:
 *   <prefix>h:<channel>  stream: the channel's history (fields t, s, x, o, d)
 *   <prefix>n:<channel>  hash: "<broker>|<session>|<origins>" -> local subscriber count
 *   <prefix>c:<channel>  pub/sub channel: notification of each new event
 *   <prefix>b:<broker>   string with a TTL: the broker is alive (on every shard)
 *   <prefix>p:<broker>   pub/sub channel: the broker's probe of its pub/sub connection
 *   <prefix>w:<channel>  hash: web push registration id -> its JSON (broker/webpush_redis.c)
 *   <prefix>wq           stream: events for web push, read by a consumer group of brokers
 *   <prefix>j:<account>  hash: JMAP type -> the account's latest state (jmap_state.h)
 */
enum bus_key { BUS_KEY_HISTORY = 'h', BUS_KEY_COUNTS = 'n', BUS_KEY_NOTIFY = 'c', BUS_KEY_ALIVE = 'b',
	BUS_KEY_PROBE = 'p', BUS_KEY_WEBPUSH = 'w', BUS_KEY_JMAP = 'j' };

extern const char bus_publish_script[];
extern const char bus_replay_script[];
extern const char bus_counts_script[];

/* Writes "<prefix><tag>:<name>"; returns its length, or 0 if it does not fit. */
size_t bus_key(char *out, size_t outlen, const char *prefix, enum bus_key tag, const char *name);
/* Writes the web push queue stream's key; returns its length, or 0 if it does not fit. */
size_t bus_webpush_queue_key(char *out, size_t outlen, const char *prefix);
/* Packs "ms-seq" into an ordered key; returns 0, or -1 if it is not a usable stream id. */
int bus_id_parse(const char *id, size_t len, uint64_t *key);
/* Formats a key back into "ms-seq". */
void bus_id_format(char *out, size_t outlen, uint64_t key);

#define BUS_PUBLISH_ARGC 16

/* One event to publish; NULL strings are sent as "" (type "" as message). */
struct bus_message {
	const char *channel, *type, *session, *exclude_session, *origin, *data;
	size_t len;				/* bytes of data */
};

/* An EVALSHA of the publish script, ready for redisAsyncCommandArgv; argv borrows from it and from the message. */
struct bus_publish_args {
	char keys[4][BUS_KEY_MAX];
	char alive[BUS_KEY_MAX];
	char webpush_queue[BUS_KEY_MAX];
	char maxlen[24], ttl_ms[24];
	const char *argv[BUS_PUBLISH_ARGC];
	size_t lens[BUS_PUBLISH_ARGC];
};

/*
 * Lays out the publish script's call for one message: the single place where the
 * broker and the pusher agree on KEYS and ARGV. Returns 0, or -1 if a key is too long.
 */
int bus_publish_args(struct bus_publish_args *a, const char *sha, const char *prefix,
    long long history_size, long long history_ttl_s, const struct bus_message *m);

/* One notification as published by the publish script: "id\ntype\nsession\nexclude\norigin\ndata". */
struct bus_note {
	const char *id, *type, *session, *exclude_session, *origin, *data;	/* borrowed, NUL-terminated except data */
	size_t idlen, typelen, sessionlen, excludelen, originlen, datalen;
};
/* Splits a notification (not copied); returns 0, or -1 if it is malformed. */
int bus_note_parse(const char *buf, size_t len, struct bus_note *n);

#endif
