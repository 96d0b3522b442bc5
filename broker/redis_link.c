/*
 * The broker's links to Redis: one per shard (the `redis` directive lists the shards'
 * URLs, in the order that the channel mapping of common/redis_shard.c numbers them),
 * each two connections (commands with the shared scripts, and pub/sub) through
 * common/redis_conn.c, which are up together or not at all. When either one is lost
 * the other is dropped too, so that a shard is either fully connected, with every
 * subscription it needs, or reconnecting; each loss bumps the shard's epoch so replies
 * from an older connection can be told apart. A probe checks each shard's pub/sub
 * connection end to end: every REDIS_PROBE_MS the command connection publishes to this
 * broker's own probe channel, and the echo must come back on the pub/sub connection
 * within redis_timeout (not a PING: hiredis 0.14 matches every reply on a subscribed
 * connection to the subscribe callbacks). Also this broker's id, the key prefix, and
 * the one function saying which shard holds a channel. Redis thread only, except where
 * a function says otherwise.
 */
#include "redis_bus.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "jmap_state.h"
#include "log.h"
#include "redis_conn.h"
#include "redis_shard.h"
#include "redis_url.h"

/* In enum redis_script's order. */
static const char *const scripts[] = { bus_publish_script, bus_replay_script, bus_counts_script,
    jmap_state_script, NULL };

/* One shard's link. */
struct redis_shard {
	struct redis_url url;
	struct redis_conn *cmd, *sub;
	unsigned index;
	bool up;			/* both connections up, and the owner told */
	atomic_bool usable;		/* the same, readable from any thread */
	unsigned epoch;			/* bumped on every loss */
	char desc[200];			/* where it is, for log lines and /healthz */
	char why[REDIS_CONN_WHY_MAX];	/* why it is down, under why_lock */
	char probe_key[BUS_KEY_MAX];
	bool probe_subscribed;		/* the probe channel's SUBSCRIBE was confirmed */
	int64_t probe_sub_ns;		/* when that SUBSCRIBE went out */
	uint64_t probe_seq;		/* the last probe published */
	int64_t probe_sent_ns;		/* when it went out, 0 once echoed */
	int64_t probe_last_ns;		/* when the last probe went out */
};

static struct redis_shard shards[REDIS_URL_SHARDS_MAX];
static unsigned nshards;
static struct event *probe_ev;
static void (*on_up)(unsigned), (*on_down)(unsigned);
static char broker_id[17];
static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;

/* Remembers why a shard is down, for /healthz. */
static void
redis_link_set_why(struct redis_shard *s, const char *why)
{
	pthread_mutex_lock(&why_lock);
	snprintf(s->why, sizeof s->why, "%s", why);
	pthread_mutex_unlock(&why_lock);
}

/* Copies why the first down shard is down; false if every shard is up (any thread). */
bool
redis_link_why(char *buf, size_t len)
{
	unsigned i, down = 0;

	for (i = 0; i < nshards; i++) {
		if (atomic_load(&shards[i].usable))
			continue;
		if (down++ > 0)
			continue;
		pthread_mutex_lock(&why_lock);
		if (nshards == 1)
			snprintf(buf, len, "redis: %s", shards[i].why);
		else
			snprintf(buf, len, "redis shard %u (%.100s) down: %s", i, shards[i].desc, shards[i].why);
		pthread_mutex_unlock(&why_lock);
	}
	if (down > 1 && strlen(buf) + 24 < len)
		snprintf(buf + strlen(buf), len - strlen(buf), " (and %u more shards)", down - 1);
	return down == 0;
}

/* Whether a shard takes publishes and joins now (any thread). */
bool
redis_link_usable(unsigned shard)
{
	return shard < nshards && atomic_load(&shards[shard].usable);
}

/* Whether any shard is up (any thread). */
bool
redis_link_any_usable(void)
{
	unsigned i;

	for (i = 0; i < nshards; i++)
		if (atomic_load(&shards[i].usable))
			return true;
	return false;
}

/* The number of shards (fixed once started; any thread). */
unsigned
redis_link_shards(void)
{
	return nshards;
}

/* The shard whose link holds a channel's keys and notifications (any thread). */
unsigned
redis_link_shard_of(const char *channel)
{
	return redis_shard_of(channel, strlen(channel), nshards);
}

static void redis_link_on_probe(redisAsyncContext *ac, void *reply, void *priv);

/* A connection came up; the shard is up once both are, and its probe subscribes. */
static void
redis_link_on_up(struct redis_conn *c, void *arg)
{
	struct redis_shard *s = arg;
	const char *argv[2] = { "SUBSCRIBE", s->probe_key };
	size_t lens[2] = { 9, strlen(s->probe_key) };

	(void)c;
	if (s->up || !redis_conn_is_up(s->cmd) || !redis_conn_is_up(s->sub))
		return;
	s->up = true;
	s->probe_subscribed = false;
	s->probe_sent_ns = 0;
	s->probe_sub_ns = clock_ns();
	if (redis_conn_command_argv(s->sub, redis_link_on_probe, s, 2, argv, lens) == -1) {
		redis_conn_fail(s->sub, "cannot subscribe the probe");
		return;
	}
	atomic_store(&s->usable, true);
	if (nshards == 1)
		log_info("redis: connected as broker %s", broker_id);
	else
		log_info("redis: shard %u (%s) connected as broker %s", s->index, s->desc, broker_id);
	on_up(s->index);
}

/* A connection was lost (or an attempt failed): the other goes too, once. */
static void
redis_link_on_down(struct redis_conn *c, const char *why, void *arg)
{
	struct redis_shard *s = arg;

	redis_link_set_why(s, why);
	if (!s->up) {
		if (redis_conn_is_up(c == s->cmd ? s->sub : s->cmd))
			log_debug("redis: %s: %s", c == s->cmd ? "commands" : "pub/sub", why);
		return;
	}
	s->up = false;
	atomic_store(&s->usable, false);
	s->epoch++;
	if (nshards == 1)
		log_error("redis: down: %s", why);
	else
		log_error("redis: shard %u (%s) down: %s", s->index, s->desc, why);
	redis_conn_fail(c == s->cmd ? s->sub : s->cmd, why);
	on_down(s->index);
}

/* The probe channel's messages (and its subscribe confirmation): the pub/sub path works. */
static void
redis_link_on_probe(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_shard *s = priv;
	redisReply *r = reply;
	char seq[24];

	(void)ac;
	if (r == NULL || !s->up || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "subscribe") == 0) {
		s->probe_subscribed = true;
		return;
	}
	snprintf(seq, sizeof seq, "%" PRIu64, s->probe_seq);
	if (strcmp(r->element[0]->str, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[2]->str, seq) == 0)
		s->probe_sent_ns = 0;
}

/* PUBLISH's answer: nobody received the probe, so the pub/sub connection is elsewhere. */
static void
redis_link_on_probe_sent(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_shard *s = priv;
	redisReply *r = reply;

	(void)ac;
	if (r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 0 && s->up && s->probe_sent_ns != 0)
		redis_conn_fail(s->cmd, "pub/sub probe: the pub/sub connection is not subscribed on this server");
}

/* Every second: a probe overdue fails the shard; an idle probe period sends the next. */
static void
redis_link_on_probe_tick(evutil_socket_t fd, short what, void *arg)
{
	int64_t now = clock_ns(), limit = opt(OPT_REDIS_TIMEOUT) * 1000000LL;
	char why[96], seq[24];
	const char *argv[3] = { "PUBLISH", NULL, seq };
	unsigned i;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < nshards; i++) {
		struct redis_shard *s = &shards[i];

		if (!s->up)
			continue;
		if (!s->probe_subscribed) {
			if (now - s->probe_sub_ns > limit) {
				snprintf(why, sizeof why, "pub/sub probe: no SUBSCRIBE confirmation within %lld ms",
				    opt(OPT_REDIS_TIMEOUT));
				redis_conn_fail(s->cmd, why);
			}
			continue;
		}
		if (s->probe_sent_ns != 0) {
			if (now - s->probe_sent_ns > limit) {
				snprintf(why, sizeof why, "pub/sub probe not echoed within %lld ms", opt(OPT_REDIS_TIMEOUT));
				redis_conn_fail(s->cmd, why);
			}
			continue;
		}
		if (now - s->probe_last_ns < REDIS_PROBE_MS * 1000000LL)
			continue;
		snprintf(seq, sizeof seq, "%" PRIu64, ++s->probe_seq);
		argv[1] = s->probe_key;
		s->probe_sent_ns = s->probe_last_ns = now;
		redis_link_command(i, redis_link_on_probe_sent, s, 3, argv);
	}
}

/* Opens both connections of every shard; up() and down() report each shard as a whole. */
int
redis_link_start(struct event_base *base, void (*up_fn)(unsigned), void (*down_fn)(unsigned))
{
	char err[200];
	unsigned char b[8];
	size_t i, n;
	struct timeval second = { 1, 0 };
	static struct redis_url urls[REDIS_URL_SHARDS_MAX];
	struct redis_conn_opts o = {
		.scripts = scripts,
		.backoff_min_ms = REDIS_BACKOFF_MIN_MS, .backoff_max_ms = REDIS_BACKOFF_MAX_MS,
		.up = redis_link_on_up, .down = redis_link_on_down,
	};

	if (redis_url_parse_list(opt_str(OPT_REDIS), urls, REDIS_URL_SHARDS_MAX, &n, err, sizeof err) == -1) {
		log_error("redis: %s", err);
		return -1;
	}
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		return -1;
	for (i = 0; i < sizeof b; i++)
		sprintf(broker_id + 2 * i, "%02x", b[i]);
	on_up = up_fn;
	on_down = down_fn;
	o.connect_timeout_ms = o.reply_timeout_ms = (unsigned)opt(OPT_REDIS_TIMEOUT);
	for (i = 0; i < n; i++) {
		struct redis_shard *s = &shards[i];

		s->url = urls[i];
		s->index = (unsigned)i;
		redis_url_describe(&s->url, s->desc, sizeof s->desc);
		snprintf(s->why, sizeof s->why, "connecting");
		if (bus_key(s->probe_key, sizeof s->probe_key, redis_link_prefix(), BUS_KEY_PROBE, broker_id) == 0)
			return -1;
		o.url = &s->url;
		o.arg = s;
		o.name = "redis";
		o.pubsub = false;
		o.scripts = scripts;
		if ((s->cmd = redis_conn_new(base, &o)) == NULL)
			return -1;
		o.name = "redis pub/sub";
		o.pubsub = true;
		o.scripts = NULL;
		if ((s->sub = redis_conn_new(base, &o)) == NULL)
			return -1;
		nshards++;
	}
	if ((probe_ev = event_new(base, -1, EV_PERSIST, redis_link_on_probe_tick, NULL)) == NULL ||
	    event_add(probe_ev, &second) == -1)
		return -1;
	return 0;
}

/* Drops every connection: every pending reply callback runs now, with NULL. */
void
redis_link_stop(void)
{
	unsigned i;

	if (probe_ev != NULL)
		event_free(probe_ev);
	probe_ev = NULL;
	for (i = 0; i < nshards; i++) {
		struct redis_shard *s = &shards[i];

		s->up = false;
		atomic_store(&s->usable, false);
		s->epoch++;
		redis_link_set_why(s, "broker stopping");
		redis_conn_free(s->cmd);
		redis_conn_free(s->sub);
		s->cmd = s->sub = NULL;
	}
}

/* Whether both connections of a shard are up. */
bool
redis_link_up(unsigned shard)
{
	return shard < nshards && shards[shard].up;
}

/* Drops a shard's link for a reason found above it (a sync that failed, a late confirmation). */
void
redis_link_fail(unsigned shard, const char *why)
{
	if (shard < nshards && shards[shard].cmd != NULL)
		redis_conn_fail(shards[shard].cmd, why);
}

/* The SHA of one of the shared scripts (the same text, so the same SHA, on every shard). */
const char *
redis_link_sha(unsigned shard, enum redis_script i)
{
	return redis_conn_sha(shards[shard].cmd, (size_t)i);
}

/* The key prefix (a non-reloadable directive, stable for the process). */
const char *
redis_link_prefix(void)
{
	return opt_str(OPT_REDIS_PREFIX);
}

/* This broker's id in count fields and its liveness key. */
const char *
redis_link_broker(void)
{
	return broker_id;
}

/* The number of a shard's losses so far: a reply carrying an older one is stale. */
unsigned
redis_link_epoch(unsigned shard)
{
	return shards[shard].epoch;
}

/* A tracked command of C strings on a shard's command connection; -1 (fn never called) while down. */
int
redis_link_command(unsigned shard, redisCallbackFn *fn, void *priv, int argc, const char **argv)
{
	size_t lens[16];
	int i;

	if (argc > 16)
		return -1;
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redis_link_command_argv(shard, fn, priv, argc, argv, lens);
}

/* The same with binary-safe lengths. */
int
redis_link_command_argv(unsigned shard, redisCallbackFn *fn, void *priv, int argc, const char **argv,
    const size_t *lens)
{
	if (!redis_link_up(shard))
		return -1;
	return redis_conn_command_argv(shards[shard].cmd, fn, priv, argc, argv, lens);
}

/* SUBSCRIBE or UNSUBSCRIBE on a shard's pub/sub connection; fn gets every message of key. */
int
redis_link_subscribe(unsigned shard, redisCallbackFn *fn, const char *verb, const char *key)
{
	const char *argv[2] = { verb, key };
	size_t lens[2] = { strlen(verb), strlen(key) };

	if (!redis_link_up(shard))
		return -1;
	return redis_conn_command_argv(shards[shard].sub, fn, NULL, 2, argv, lens);
}

/* Runs fn on every shard's two connections. */
static void
redis_link_each_conn(void (*fn)(struct redis_conn *))
{
	unsigned i;

	for (i = 0; i < nshards; i++) {
		if (shards[i].cmd != NULL)
			fn(shards[i].cmd);
		if (shards[i].sub != NULL)
			fn(shards[i].sub);
	}
}

/* Buffers every shard's commands until redis_link_flush (a drain of the job queue). */
void
redis_link_defer_writes(void)
{
	redis_link_each_conn(redis_conn_defer_writes);
}

/* Writes what every shard buffered since redis_link_defer_writes, one write each. */
void
redis_link_flush(void)
{
	redis_link_each_conn(redis_conn_flush);
}

/* Writes ssepush_redis_shard_up, one sample per shard (any thread). */
void
redis_link_metrics(FILE *f)
{
	unsigned i;

	fprintf(f, "# HELP ssepush_redis_shard_up 1 when the Redis shard is connected.\n"
	    "# TYPE ssepush_redis_shard_up gauge\n");
	for (i = 0; i < nshards; i++)
		fprintf(f, "ssepush_redis_shard_up{shard=\"%u\"} %d\n", i, atomic_load(&shards[i].usable) ? 1 : 0);
}
