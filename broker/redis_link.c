/*
 * The broker's link to Redis: two connections (commands with the shared scripts, and
 * pub/sub) through common/redis_conn.c, which are up together or not at all. When
 * either one is lost the other is dropped too, so that a broker is either fully
 * connected, with every subscription it needs, or reconnecting; each loss bumps an
 * epoch so replies from an older connection can be told apart. Also this broker's id
 * and the key prefix, and the id format of the Redis bus. Redis thread only, except
 * where a function says otherwise.
 */
#include "redis_bus.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"
#include "redis_conn.h"
#include "redis_url.h"

static const char *const scripts[] = { bus_publish_script, bus_replay_script, bus_counts_script, NULL };

static struct redis_url url;
static struct redis_conn *cmd, *sub;
static bool up;				/* both connections up, and the owner told */
static unsigned epoch;			/* bumped on every loss */
static void (*on_up)(void), (*on_down)(void);
static char broker_id[17];
static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;
static char why_down[REDIS_CONN_WHY_MAX] = "connecting";	/* under why_lock: /healthz reads it */

/* Remembers why the link is down, for /healthz. */
static void
redis_link_set_why(const char *why)
{
	pthread_mutex_lock(&why_lock);
	snprintf(why_down, sizeof why_down, "%s", why);
	pthread_mutex_unlock(&why_lock);
}

/* Copies the reason the link is down (any thread). */
void
redis_link_why(char *buf, size_t len)
{
	pthread_mutex_lock(&why_lock);
	snprintf(buf, len, "redis: %s", why_down);
	pthread_mutex_unlock(&why_lock);
}

/* A connection came up; the link is up once both are. */
static void
redis_link_on_up(struct redis_conn *c, void *arg)
{
	(void)c;
	(void)arg;
	if (up || !redis_conn_is_up(cmd) || !redis_conn_is_up(sub))
		return;
	up = true;
	log_info("redis: connected as broker %s", broker_id);
	on_up();
}

/* A connection was lost (or an attempt failed): the other goes too, once. */
static void
redis_link_on_down(struct redis_conn *c, const char *why, void *arg)
{
	bool was = up;

	(void)arg;
	redis_link_set_why(why);
	if (!was) {
		if (redis_conn_is_up(c == cmd ? sub : cmd))
			log_debug("redis: %s: %s", c == cmd ? "commands" : "pub/sub", why);
		return;
	}
	up = false;
	epoch++;
	log_error("redis: down: %s", why);
	redis_conn_fail(c == cmd ? sub : cmd, why);
	on_down();
}

/* Opens both connections; up() and down() report the link as a whole. */
int
redis_link_start(struct event_base *base, void (*up_fn)(void), void (*down_fn)(void))
{
	char err[160];
	unsigned char b[8];
	size_t i;
	struct redis_conn_opts o = {
		.url = &url, .name = "redis", .scripts = scripts,
		.backoff_min_ms = REDIS_BACKOFF_MIN_MS, .backoff_max_ms = REDIS_BACKOFF_MAX_MS,
		.up = redis_link_on_up, .down = redis_link_on_down,
	};

	if (redis_url_parse(opt_str(OPT_REDIS), &url, err, sizeof err) == -1) {
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
	if ((cmd = redis_conn_new(base, &o)) == NULL)
		return -1;
	o.name = "redis pub/sub";
	o.pubsub = true;
	o.scripts = NULL;
	if ((sub = redis_conn_new(base, &o)) == NULL)
		return -1;
	return 0;
}

/* Drops both connections: every pending reply callback runs now, with NULL. */
void
redis_link_stop(void)
{
	up = false;
	epoch++;
	redis_link_set_why("broker stopping");
	redis_conn_free(cmd);
	redis_conn_free(sub);
	cmd = sub = NULL;
}

/* Whether both connections are up. */
bool
redis_link_up(void)
{
	return up;
}

/* Drops the link for a reason found above it (a sync that failed, a late confirmation). */
void
redis_link_fail(const char *why)
{
	if (cmd != NULL)
		redis_conn_fail(cmd, why);
}

/* The SHA of one of the shared scripts. */
const char *
redis_link_sha(enum redis_script i)
{
	return redis_conn_sha(cmd, (size_t)i);
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

/* The number of losses so far: a reply carrying an older one is stale. */
unsigned
redis_link_epoch(void)
{
	return epoch;
}

/* A tracked command of C strings on the command connection; -1 (fn never called) while down. */
int
redis_link_command(redisCallbackFn *fn, void *priv, int argc, const char **argv)
{
	size_t lens[16];
	int i;

	if (argc > 16)
		return -1;
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redis_link_command_argv(fn, priv, argc, argv, lens);
}

/* The same with binary-safe lengths. */
int
redis_link_command_argv(redisCallbackFn *fn, void *priv, int argc, const char **argv,
    const size_t *lens)
{
	if (!up)
		return -1;
	return redis_conn_command_argv(cmd, fn, priv, argc, argv, lens);
}

/* SUBSCRIBE or UNSUBSCRIBE on the pub/sub connection; fn gets every message of key. */
int
redis_link_subscribe(redisCallbackFn *fn, const char *verb, const char *key)
{
	const char *argv[2] = { verb, key };
	size_t lens[2] = { strlen(verb), strlen(key) };

	if (!up)
		return -1;
	return redis_conn_command_argv(sub, fn, NULL, 2, argv, lens);
}
