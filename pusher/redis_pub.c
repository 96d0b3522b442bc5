/*
 * The pusher's publishing: the queue's items go to Redis with EVALSHA of the shared
 * publish script, exactly as the broker sends them, each to the shard that holds its
 * channel (common/redis_shard.c, the brokers' mapping), at most PUSHER_INFLIGHT_MAX
 * unanswered per shard. An item leaves the queue when its reply arrives (with
 * redis_min_replicas, when the WAIT sent after it says enough replicas hold it); an
 * item whose reply was lost with the connection, or that too few replicas acknowledged,
 * is sent again (at least once). A shard that is down holds back only its own items.
 * The connections themselves (connect, Sentinel, AUTH, SELECT, SCRIPT LOAD, timeouts,
 * reconnect backoff) are redis_conn's. It never blocks: the notify socket keeps being
 * drained.
 */
#include "pusher.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "jmap_state.h"
#include "log.h"
#include "redis_conn.h"
#include "redis_keys.h"
#include "redis_shard.h"
#include "redis_url.h"

/* One shard's connection and what is in flight on it. */
struct pub_shard {
	struct redis_url url;
	struct redis_conn *conn;
	unsigned index;
	size_t inflight;		/* items sent on this connection, reply pending */
	bool sent_now;			/* items went out in this kick: a WAIT follows */
	bool report_failure;		/* log the next failure (the first, or the first after success) */
	uint64_t wait_seq;		/* the last WAIT sent */
	char desc[200];
};

/* A WAIT's context. */
struct pub_wait {
	struct pub_shard *s;
	uint64_t seq;
};

static struct pub_shard shards[REDIS_URL_SHARDS_MAX];
static unsigned nshards;
static const char *const scripts[] = { bus_publish_script, jmap_state_script, NULL };

#define PUB_JMAP_SHA 1			/* index of jmap_state_script in scripts[] */
#define PUB_JMAP_ARGC (5 + 2 * JMAP_TYPES)
#define PUB_JMAP_JSON 1024		/* bytes of the states that grew, as JSON */
static char why_buf[REDIS_CONN_WHY_MAX + 220];

/* The shard of an item's channel. */
static struct pub_shard *
pub_shard_of(const struct queue_item *it)
{
	return &shards[redis_shard_of(it->channel, strlen(it->channel), nshards)];
}

/*
 * The connection to the shard holding a channel (borrowed; NULL before pub_start): the
 * one to send any other command about that channel's keys on, so that they live where
 * the brokers look for them.
 */
struct redis_conn *
pub_conn_of(const char *channel)
{
	if (nshards == 0)
		return NULL;
	return shards[redis_shard_of(channel, strlen(channel), nshards)].conn;
}

/* Whether publishes are being sent to every shard. */
bool
pub_up(void)
{
	unsigned i;

	if (nshards == 0)
		return false;
	for (i = 0; i < nshards; i++)
		if (!redis_conn_is_up(shards[i].conn))
			return false;
	return true;
}

/* Why publishes are not being sent (the first down shard's last loss, or "stopped"). */
const char *
pub_error(void)
{
	unsigned i;

	if (nshards == 0)
		return "stopped";
	for (i = 0; i < nshards; i++) {
		if (redis_conn_is_up(shards[i].conn))
			continue;
		if (nshards == 1)
			return redis_conn_error(shards[i].conn);
		snprintf(why_buf, sizeof why_buf, "shard %u (%s): %s", i, shards[i].desc,
		    redis_conn_error(shards[i].conn));
		return why_buf;
	}
	return "up";
}

/* Marks every item sent on a shard's dead connection as unsent, so it goes out again. */
static void
pub_rewind(struct pub_shard *s)
{
	struct queue_item *it;

	for (it = pusher_queue.head; it != NULL; it = it->next)
		if (it->sent && pub_shard_of(it) == s) {
			it->sent = false;
			it->stored = false;
			pusher_queue.inflight--;
		}
	s->inflight = 0;
}

/* The connection is gone (or an attempt failed): log it once per outage, resend later. */
static void
pub_on_down(struct redis_conn *c, const char *why, void *arg)
{
	struct pub_shard *s = arg;

	(void)c;
	if (s->report_failure) {
		if (nshards == 1)
			log_error("redis: down: %s (%zu change events queued)", why, pusher_queue.len);
		else
			log_error("redis: shard %u (%s) down: %s (%zu change events queued)", s->index, s->desc,
			    why, pusher_queue.len);
	}
	s->report_failure = false;
	pub_rewind(s);
}

/* The script is loaded: the connection is usable. */
static void
pub_on_up(struct redis_conn *c, void *arg)
{
	struct pub_shard *s = arg;

	(void)c;
	s->report_failure = true;
	pusher_counters.redis_connects++;
	if (nshards == 1)
		log_info("redis: connected (%zu change events queued)", pusher_queue.len);
	else
		log_info("redis: shard %u (%s) connected (%zu change events queued)", s->index, s->desc,
		    pusher_queue.len);
	pub_kick();
}

/* An item's reply is in: it is no longer in flight. */
static void
pub_answered(struct queue_item *it)
{
	struct pub_shard *s = pub_shard_of(it);

	if (!it->sent)
		return;
	it->sent = false;
	pusher_queue.inflight--;
	s->inflight--;
}

/* An item is published (and replicated as asked): it leaves the queue. */
static void
pub_done(struct queue_item *it)
{
	pusher_counters.published++;
	stats_observe_latency(pusher_now_ms() - it->first_ms);
	pub_answered(it);
	queue_remove(&pusher_queue, it);
}

/* An error reply: give the item PUSHER_PUBLISH_TRIES chances, then drop it (counted). */
static void
pub_on_error(struct queue_item *it, const char *msg)
{
	struct pub_shard *s = pub_shard_of(it);
	char esc[LOG_ESCAPE_SIZE];

	log_escape(esc, msg, strlen(msg));
	/* NOSCRIPT (scripts flushed) and READONLY (a demoted primary) are the server's, not the item's. */
	if (strncmp(msg, "NOSCRIPT", 8) != 0 && strstr(msg, "READONLY") == NULL &&
	    ++it->tries >= PUSHER_PUBLISH_TRIES) {
		pusher_counters.publish_failed++;
		log_error("redis: publish to \"%s\" failed %u times, change event dropped: %s",
		    it->channel, it->tries, esc);
		pub_answered(it);
		queue_remove(&pusher_queue, it);
		return;
	}
	/* NOSCRIPT, READONLY or a transient error: reconnect (re-asking Sentinel), reload, back off. */
	redis_conn_fail(s->conn, esc);
}

/* The publish script's reply: the item is done (or waits for WAIT), or goes back to be sent again. */
static void
pub_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct queue_item *it = priv;
	redisReply *r = reply;

	(void)ac;
	if (r == NULL)
		return;		/* connection gone: pub_rewind() marked it unsent; sent again on the next one */
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER) {
		pusher_counters.subscribers += (uint64_t)r->element[1]->integer;
		log_debug("published %s to \"%s\" (%lld subscribers%s%s)", r->element[0]->str,
		    it->channel, r->element[1]->integer, it->origin[0] ? ", origin " : "", it->origin);
		if (it->wait_seq != 0) {
			it->stored = true;	/* the WAIT after it decides */
			return;
		}
		pub_done(it);
		pub_kick();
		return;
	}
	pub_on_error(it, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type");
}

/* WAIT's reply: the items it covers leave the queue if enough replicas hold them, else go again. */
static void
pub_on_wait(redisAsyncContext *ac, void *reply, void *priv)
{
	struct pub_wait w = *(struct pub_wait *)priv;
	redisReply *r = reply;
	struct queue_item *it, *next;
	long long need = popt(POPT_REDIS_MIN_REPLICAS) > 0 ? popt(POPT_REDIS_MIN_REPLICAS) : 1;
	bool enough = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= need;
	unsigned short_items = 0;

	(void)ac;
	free(priv);
	if (r == NULL)
		return;		/* connection gone: its items were rewound */
	for (it = pusher_queue.head; it != NULL; it = next) {
		next = it->next;
		if (!it->sent || it->wait_seq != w.seq || pub_shard_of(it) != w.s)
			continue;
		if (it->stored && enough) {
			pub_done(it);
			continue;
		}
		pub_answered(it);	/* sent again: at least once */
		it->stored = false;
		short_items++;
	}
	if (short_items > 0)
		log_warn("redis: %u change events not acknowledged by %lld replicas (WAIT: %lld); sending them again",
		    short_items, need, r->type == REDIS_REPLY_INTEGER ? r->integer : -1);
	pub_kick();
}

/* Sends WAIT on each shard that got publishes in this kick. */
static void
pub_send_waits(void)
{
	char need[24], ms[24];
	long long t = popt(POPT_REDIS_WAIT_MS), cap = PUSHER_REPLY_TIMEOUT_MS / 2;
	struct pub_wait *w;
	unsigned i;

	snprintf(need, sizeof need, "%lld", popt(POPT_REDIS_MIN_REPLICAS));
	snprintf(ms, sizeof ms, "%lld", t < cap ? t : cap);
	for (i = 0; i < nshards; i++) {
		struct pub_shard *s = &shards[i];

		if (!s->sent_now)
			continue;
		s->sent_now = false;
		if ((w = malloc(sizeof *w)) == NULL) {
			redis_conn_fail(s->conn, "out of memory");	/* rewinds: sent again */
			continue;
		}
		w->s = s;
		w->seq = s->wait_seq;
		if (redis_conn_command(s->conn, pub_on_wait, w, "WAIT %s %s", need, ms) == -1) {
			free(w);
			redis_conn_fail(s->conn, "cannot queue WAIT");
		}
	}
}

/*
 * The merge script's answer for a JMAP item: the type, state pairs it stored (what
 * grew). Nothing grew: done. Else the item becomes a jmap-state publish of those
 * pairs, sent at once on the same shard (the account's hash and channel share it); a
 * resend after a lost connection goes straight to the publish.
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
	pub_answered(it);
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
	it->was_sent = false;	/* the publish is a new command, not a resend */
	pusher_counters.jmap_updates++;
	pub_kick();
}

/* Sends the merge script for a JMAP item on its shard: KEYS the account's hash, ARGV resend, then pairs. */
static int
pub_send_merge(struct pub_shard *s, struct queue_item *it)
{
	const char *argv[PUB_JMAP_ARGC];
	size_t lens[PUB_JMAP_ARGC];
	char key[BUS_KEY_MAX], vals[JMAP_TYPES][24];
	int argc = 0, t, i;

	if (bus_key(key, sizeof key, popt_str(POPT_REDIS_PREFIX), BUS_KEY_JMAP, it->channel) == 0)
		return -1;
	argv[argc++] = "EVALSHA";
	argv[argc++] = redis_conn_sha(s->conn, PUB_JMAP_SHA);
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
	return redis_conn_command_argv(s->conn, pub_on_merged, it, argc, argv, lens);
}

/* Sends queued items to their shards while connected, up to PUSHER_INFLIGHT_MAX unanswered on each. */
void
pub_kick(void)
{
	struct bus_publish_args a;
	struct bus_message m = { .type = PUSHER_EVENT_TYPE };
	struct queue_item *it, *next;
	struct pub_shard *s;
	bool wait = popt(POPT_REDIS_MIN_REPLICAS) > 0, merge;
	unsigned i, full = 0;

	for (i = 0; i < nshards; i++) {
		shards[i].sent_now = false;
		if (!redis_conn_is_up(shards[i].conn) || shards[i].inflight >= PUSHER_INFLIGHT_MAX)
			full++;
		else if (wait)
			shards[i].wait_seq++;	/* the WAIT this kick ends with */
	}
	for (it = pusher_queue.head; it != NULL && full < nshards; it = next) {
		next = it->next;
		s = pub_shard_of(it);
		if (it->sent || !redis_conn_is_up(s->conn) || s->inflight >= PUSHER_INFLIGHT_MAX)
			continue;
		/* A JMAP item is merged into the account's states first (no WAIT covers the merge:
		 * the one after its publish covers both). */
		merge = it->jmap != NULL && !it->merged;
		/* Every session of the user gets it, except one that produced the origin. */
		m.type = it->jmap != NULL ? JMAP_STATE_EVENT : PUSHER_EVENT_TYPE;
		m.channel = it->channel;
		m.origin = it->origin;
		m.data = it->payload;
		m.len = it->len;
		if (merge ? pub_send_merge(s, it) == -1 :
		    bus_publish_args(&a, redis_conn_sha(s->conn, 0), popt_str(POPT_REDIS_PREFIX),
		    popt(POPT_HISTORY_SIZE), popt(POPT_HISTORY_TTL), &m) == -1 ||
		    redis_conn_command_argv(s->conn, pub_on_reply, it, BUS_PUBLISH_ARGC, a.argv, a.lens) == -1) {
			redis_conn_fail(s->conn, "cannot queue a command");
			full++;
			continue;
		}
		if (it->was_sent)
			pusher_counters.resent++;
		it->sent = it->was_sent = true;
		it->stored = false;
		it->wait_seq = wait && !merge ? s->wait_seq : 0;
		if (!merge)
			s->sent_now = true;
		pusher_queue.inflight++;
		if (++s->inflight == PUSHER_INFLIGHT_MAX)
			full++;
	}
	if (wait)
		pub_send_waits();
}

/* Parses `redis` and starts connecting to every shard; the daemon runs (and buffers) while Redis is away. */
int
pub_start(void)
{
	static struct redis_url urls[REDIS_URL_SHARDS_MAX];
	char err[200];
	size_t i, n;
	struct redis_conn_opts o = {
		.name = "redis",
		.scripts = scripts,
		.connect_timeout_ms = PUSHER_CONNECT_TIMEOUT_MS,
		.reply_timeout_ms = PUSHER_REPLY_TIMEOUT_MS,
		.backoff_min_ms = PUSHER_BACKOFF_MIN_MS,
		.backoff_max_ms = PUSHER_BACKOFF_MAX_MS,
		.up = pub_on_up,
		.down = pub_on_down,
	};

	if (redis_url_parse_list(popt_str(POPT_REDIS), urls, REDIS_URL_SHARDS_MAX, &n, err, sizeof err) == -1) {
		log_error("redis: %s", err);
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct pub_shard *s = &shards[i];

		s->url = urls[i];
		s->index = (unsigned)i;
		s->report_failure = true;
		redis_url_describe(&s->url, s->desc, sizeof s->desc);
		o.url = &s->url;
		o.arg = s;
		if ((s->conn = redis_conn_new(pusher_base, &o)) == NULL)
			return -1;
		nshards++;
	}
	return 0;
}

/* Closes the connections: pending replies are lost (their items stay queued, counted by the caller). */
void
pub_stop(void)
{
	unsigned i;

	for (i = 0; i < nshards; i++) {
		redis_conn_free(shards[i].conn);
		shards[i].conn = NULL;
		pub_rewind(&shards[i]);
	}
	nshards = 0;
}
