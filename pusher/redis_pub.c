/*
 * The pusher's publishing: the queue's items go to Redis with EVALSHA of the shared
 * publish script, exactly as the broker sends them, at most PUSHER_INFLIGHT_MAX
 * unanswered. An item leaves the queue when its reply arrives; an item whose reply was
 * lost with the connection is sent again (at least once). The connection itself
 * (connect, AUTH, SELECT, SCRIPT LOAD, timeouts, reconnect backoff) is redis_conn's.
 * It never blocks: the notify socket keeps being drained.
 */
#include "pusher.h"

#include <hiredis/hiredis.h>
#include <string.h>

#include "log.h"
#include "redis_conn.h"
#include "jmap_state.h"
#include "redis_keys.h"
#include "redis_url.h"

static struct redis_url url;
static struct redis_conn *conn;
static bool report_failure = true;	/* log the next failure (the first, or the first after success) */
static const char *const scripts[] = { bus_publish_script, jmap_state_script, NULL };

#define PUB_JMAP_SHA 1			/* index of jmap_state_script in scripts[] */
#define PUB_JMAP_ARGC (5 + 2 * JMAP_TYPES)
#define PUB_JMAP_JSON 1024		/* bytes of the states that grew, as JSON */

/* Whether publishes are being sent. */
bool
pub_up(void)
{
	return conn != NULL && redis_conn_is_up(conn);
}

/* Why publishes are not being sent ("connecting", the last loss's reason, or "stopped"). */
const char *
pub_error(void)
{
	return conn != NULL ? redis_conn_error(conn) : "stopped";
}

/* Marks every item sent on the dead connection as unsent, so it goes out again. */
static void
pub_rewind(void)
{
	struct queue_item *it;

	for (it = pusher_queue.head; it != NULL; it = it->next)
		it->sent = false;
	pusher_queue.inflight = 0;
}

/* The connection is gone (or an attempt failed): log it once per outage, resend later. */
static void
pub_on_down(struct redis_conn *c, const char *why, void *arg)
{
	(void)c;
	(void)arg;
	if (report_failure)
		log_error("redis: down: %s (%zu change events queued)", why, pusher_queue.len);
	report_failure = false;
	pub_rewind();
}

/* The script is loaded: the connection is usable. */
static void
pub_on_up(struct redis_conn *c, void *arg)
{
	(void)c;
	(void)arg;
	report_failure = true;
	pusher_counters.redis_connects++;
	log_info("redis: connected (%zu change events queued)", pusher_queue.len);
	pub_kick();
}

/* An error reply: give the item PUSHER_PUBLISH_TRIES chances, then drop it (counted). */
static void
pub_on_error(struct queue_item *it, const char *msg)
{
	char esc[LOG_ESCAPE_SIZE];

	log_escape(esc, msg, strlen(msg));
	if (strncmp(msg, "NOSCRIPT", 8) != 0 && ++it->tries >= PUSHER_PUBLISH_TRIES) {
		pusher_counters.publish_failed++;
		log_error("redis: publish to \"%s\" failed %u times, change event dropped: %s",
		    it->channel, it->tries, esc);
		queue_remove(&pusher_queue, it);
		return;
	}
	/* NOSCRIPT (scripts flushed) or a transient error: reconnect, reload, back off. */
	redis_conn_fail(conn, esc);
}

/* The publish script's reply: the item is done, or goes back to be sent again. */
static void
pub_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct queue_item *it = priv;
	redisReply *r = reply;

	(void)ac;
	if (r == NULL) {
		/* Connection gone: it is sent again on the next one. */
		if (it->sent) {
			it->sent = false;
			pusher_queue.inflight--;
		}
		return;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER) {
		pusher_counters.published++;
		pusher_counters.subscribers += (uint64_t)r->element[1]->integer;
		stats_observe_latency(pusher_now_ms() - it->first_ms);
		log_debug("published %s to \"%s\" (%lld subscribers%s%s)", r->element[0]->str,
		    it->channel, r->element[1]->integer, it->origin[0] ? ", origin " : "", it->origin);
		queue_remove(&pusher_queue, it);
		pub_kick();
		return;
	}
	pub_on_error(it, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type");
}

/*
 * The merge script's answer for a JMAP item: the type, state pairs it stored (what
 * grew). Nothing grew: done. Else the item becomes a jmap-state publish of those
 * pairs, sent at once; a resend after a lost connection goes straight to the publish.
 */
static void
pub_on_merged(redisAsyncContext *ac, void *reply, void *priv)
{
	struct queue_item *it = priv;
	redisReply *r = reply;
	char json[PUB_JMAP_JSON];
	size_t i, n = 0;
	int k;

	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		pub_on_reply(ac, reply, priv);	/* lost connection, or an error reply */
		return;
	}
	json[n++] = '{';
	for (i = 0; i + 1 < r->elements; i += 2) {
		if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i + 1]->type != REDIS_REPLY_STRING)
			break;
		k = snprintf(json + n, sizeof json - n, "%s\"%s\":\"%s\"", n > 1 ? "," : "",
		    r->element[i]->str, r->element[i + 1]->str);
		if (k < 0 || (size_t)k >= sizeof json - n - 1)
			break;
		n += (size_t)k;
	}
	json[n++] = '}';
	json[n] = '\0';
	if (r->elements == 0 || i + 1 < r->elements) {
		if (r->elements == 0)
			pusher_counters.jmap_unchanged++;
		else
			log_error("jmap: unexpected merge reply for \"%s\": states not published", it->channel);
		queue_remove(&pusher_queue, it);
		pub_kick();
		return;
	}
	free(it->payload);
	if ((it->payload = strdup(json)) == NULL) {
		queue_remove(&pusher_queue, it);
		return;
	}
	it->len = n;
	it->merged = true;
	it->sent = it->was_sent = false;	/* the publish is a new command, not a resend */
	pusher_queue.inflight--;
	pusher_counters.jmap_updates++;
	pub_kick();
}

/* Sends the merge script for a JMAP item: KEYS the account's hash, ARGV resend, then pairs. */
static int
pub_send_merge(struct queue_item *it)
{
	const char *argv[PUB_JMAP_ARGC];
	size_t lens[PUB_JMAP_ARGC];
	char key[BUS_KEY_MAX], vals[JMAP_TYPES][24];
	int argc = 0, t, i;

	if (bus_key(key, sizeof key, popt_str(POPT_REDIS_PREFIX), BUS_KEY_JMAP, it->channel) == 0)
		return -1;
	argv[argc++] = "EVALSHA";
	argv[argc++] = redis_conn_sha(conn, PUB_JMAP_SHA);
	argv[argc++] = "1";
	argv[argc++] = key;
	argv[argc++] = it->was_sent ? "1" : "0";
	for (t = 0; t < JMAP_TYPES; t++) {
		if (!(it->jmap->mask & (1u << t)))
			continue;
		snprintf(vals[t], sizeof vals[t], "%llu", (unsigned long long)it->jmap->v[t]);
		argv[argc++] = jmap_type_names[t];
		argv[argc++] = vals[t];
	}
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	return redis_conn_command_argv(conn, pub_on_merged, it, argc, argv, lens);
}

/* Sends queued items while connected, up to PUSHER_INFLIGHT_MAX unanswered. */
void
pub_kick(void)
{
	struct bus_publish_args a;
	struct bus_message m = { .type = PUSHER_EVENT_TYPE };
	struct queue_item *it;

	while (pub_up() && pusher_queue.inflight < PUSHER_INFLIGHT_MAX &&
	    (it = queue_next_unsent(&pusher_queue)) != NULL) {
		/* Every session of the user gets it, except one that produced the origin. */
		if (it->jmap != NULL && !it->merged) {
			if (pub_send_merge(it) == -1) {
				redis_conn_fail(conn, "cannot queue a command");
				return;
			}
			goto sent;
		}
		m.type = it->jmap != NULL ? JMAP_STATE_EVENT : PUSHER_EVENT_TYPE;
		m.channel = it->channel;
		m.origin = it->origin;
		m.data = it->payload;
		m.len = it->len;
		if (bus_publish_args(&a, redis_conn_sha(conn, 0), popt_str(POPT_REDIS_PREFIX),
		    popt(POPT_HISTORY_SIZE), popt(POPT_HISTORY_TTL), &m) == -1 ||
		    redis_conn_command_argv(conn, pub_on_reply, it, BUS_PUBLISH_ARGC, a.argv, a.lens) == -1) {
			redis_conn_fail(conn, "cannot queue a command");
			return;
		}
sent:
		if (it->was_sent)
			pusher_counters.resent++;
		it->sent = it->was_sent = true;
		pusher_queue.inflight++;
	}
}

/* Parses `redis` and starts connecting; the daemon runs (and buffers) while Redis is away. */
int
pub_start(void)
{
	char err[160];
	struct redis_conn_opts o = {
		.url = &url,
		.name = "redis",
		.scripts = scripts,
		.connect_timeout_ms = PUSHER_CONNECT_TIMEOUT_MS,
		.reply_timeout_ms = PUSHER_REPLY_TIMEOUT_MS,
		.backoff_min_ms = PUSHER_BACKOFF_MIN_MS,
		.backoff_max_ms = PUSHER_BACKOFF_MAX_MS,
		.up = pub_on_up,
		.down = pub_on_down,
	};

	if (redis_url_parse(popt_str(POPT_REDIS), &url, err, sizeof err) == -1) {
		log_error("redis: %s", err);
		return -1;
	}
	return (conn = redis_conn_new(pusher_base, &o)) == NULL ? -1 : 0;
}

/* Closes the connection: pending replies are lost (their items stay queued, counted by the caller). */
void
pub_stop(void)
{
	redis_conn_free(conn);
	conn = NULL;
	pub_rewind();
}
