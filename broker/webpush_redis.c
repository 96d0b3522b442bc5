/*
 * Web push in Redis mode, on the sender thread with one connection of its own to each
 * Redis shard (common/redis_conn.c): registrations live in a hash per channel on the
 * channel's shard (redis_shard_of, as every other key of the channel) (<prefix>w:<channel>,
 * id -> JSON), changed by a script that enforces the per-channel limit and replaces a
 * registration of the same endpoint; events reach the push queue stream (<prefix>wq)
 * from the shared publish script, which runs on the channel's shard, so each shard has
 * a queue of its own; every broker reads every shard's queue in one consumer group, so
 * each event has one sender. A sender acknowledges an event once all its messages are
 * done, and touches (XCLAIM to itself) what it still works on, so an entry idle for
 * webpush_reclaim belongs to a broker that died: XAUTOCLAIM takes it over and it is
 * sent again.
 */
#include "broker.h"
#include "webpush.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <event2/event.h>

#include "log.h"
#include "redis_conn.h"
#include "redis_keys.h"
#include "redis_shard.h"
#include "redis_url.h"

#define WR_GROUP "webpush"
#define WR_COUNT "32"			/* entries one read takes */
#define WR_POLL_MS 20			/* pause after a read that found nothing */
#define WR_INPROGRESS_MAX 4096		/* entries one sender works on at once */

/*
 * KEYS: the channel's registrations. ARGV: new id, its JSON, the endpoint, the limit.
 * Returns {id, "added"|"replaced"|"full"}; a replaced registration keeps its id.
 */
static const char register_script[] =
"local f = redis.call('HGETALL', KEYS[1])\n"
"for i = 1, #f, 2 do\n"
"  local ok, o = pcall(cjson.decode, f[i + 1])\n"
"  if ok and type(o) == 'table' and o.endpoint == ARGV[3] then\n"
"    local n = cjson.decode(ARGV[2])\n"
"    n.id = f[i]\n"
"    redis.call('HSET', KEYS[1], f[i], cjson.encode(n))\n"
"    return {f[i], 'replaced'}\n"
"  end\n"
"end\n"
"if #f / 2 >= tonumber(ARGV[4]) then return {'', 'full'} end\n"
"redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
"return {ARGV[1], 'added'}\n";

static const char *const scripts[] = { register_script, NULL };

/* An entry this sender works on (taken, not yet acknowledged). */
struct wr_entry {
	struct wr_entry *prev, *next;
	char id[48];
};

/* A registration job waiting for its reply. */
struct wr_job {
	webpush_job_done *done;
	void *arg;
	char id[WEBPUSH_ID_LEN + 1];
};

/* One shard: its connection, its queue's reader and the entries taken from it. */
struct wr_shard {
	struct redis_url url;
	struct redis_conn *conn;
	struct event *poll_timer;
	bool reading, up;
	unsigned index;
	char cursor[48];		/* XAUTOCLAIM's */
	struct wr_entry *entries;
	size_t nentries;
};

static struct {
	struct wr_shard shards[REDIS_URL_SHARDS_MAX];
	unsigned nshards;
	struct event *beat_timer;
	char consumer[17];
	char queue[BUS_KEY_MAX];
	webpush_push_fn *push;		/* the sender's: a callback, so this file never calls up */
} r;

static void wr_poll_later(struct wr_shard *sh, long ms);

/* The shard holding a channel's keys. */
static struct wr_shard *
wr_shard_of(const char *channel)
{
	return &r.shards[redis_shard_of(channel, strlen(channel), r.nshards)];
}

/* The channel's registrations hash key. */
static void
wr_key(char *out, const char *channel)
{
	bus_key(out, BUS_KEY_MAX, opt_str(OPT_REDIS_PREFIX), BUS_KEY_WEBPUSH, channel);
}

/* The in-progress entry with this id, or NULL. */
static struct wr_entry *
wr_find(struct wr_shard *sh, const char *id)
{
	struct wr_entry *e;

	for (e = sh->entries; e != NULL; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

/* Forgets an in-progress entry. */
static void
wr_forget(struct wr_shard *sh, const char *id)
{
	struct wr_entry *e = wr_find(sh, id);

	if (e == NULL)
		return;
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		sh->entries = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	free(e);
	sh->nentries--;
}

/* Acknowledges and deletes an entry (its event is done, or was not for web push). */
static void
wr_ack(struct wr_shard *sh, const char *id)
{
	wr_forget(sh, id);
	redis_conn_command(sh->conn, NULL, NULL, "XACK %s %s %s", r.queue, WR_GROUP, id);
	redis_conn_command(sh->conn, NULL, NULL, "XDEL %s %s", r.queue, id);
}

/* Every message of ev is done (webpush_send.c): the entry is acknowledged on its shard. */
void
webpush_redis_event_done(struct webpush_event *ev)
{
	wr_ack(&r.shards[ev->shard], ev->entry);
}

/* The registrations of an entry's channel arrived: parse them and send. */
static void
wr_on_regs(redisAsyncContext *ac, void *reply, void *priv)
{
	struct webpush_event *ev = priv;
	redisReply *rep = reply;
	struct webpush_reg *regs = NULL;
	size_t i, n = 0;

	(void)ac;
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
		wr_forget(&r.shards[ev->shard], ev->entry);	/* left pending: reclaimed later, by anyone */
		webpush_event_free(ev);
		return;
	}
	if (rep->elements > 0 && (regs = calloc(rep->elements / 2, sizeof *regs)) == NULL) {
		wr_forget(&r.shards[ev->shard], ev->entry);
		webpush_event_free(ev);
		return;
	}
	for (i = 1; i < rep->elements; i += 2)
		if (rep->element[i]->type == REDIS_REPLY_STRING &&
		    webpush_reg_load(rep->element[i]->str, rep->element[i]->len, &regs[n]) == 0)
			n++;
	r.push(ev, regs, n);	/* acknowledged when its last message is done */
	free(regs);
}

/* A reply string field's copy, or NULL for "" (filters) when empty_null. */
static char *
wr_field(redisReply *v, bool empty_null)
{
	char *s;

	if (v->type != REDIS_REPLY_STRING || (empty_null && v->len == 0))
		return NULL;
	if ((s = malloc(v->len + 1)) == NULL)
		return NULL;
	memcpy(s, v->str, v->len);
	s[v->len] = '\0';
	return s;
}

/* Starts on one queue entry [id, [field, value, ...]] (read or claimed) of sh's queue. */
static void
wr_take(struct wr_shard *sh, redisReply *entry)
{
	const char *prefix = opt_str(OPT_REDIS_PREFIX);
	size_t plen = strlen(prefix) + 2, i;
	struct webpush_event *ev;
	struct wr_entry *e;
	redisReply *id, *f;
	char key[BUS_KEY_MAX];

	if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
	    (id = entry->element[0])->type != REDIS_REPLY_STRING || id->len >= sizeof e->id ||
	    (f = entry->element[1])->type != REDIS_REPLY_ARRAY || wr_find(sh, id->str) != NULL)
		return;
	if ((ev = calloc(1, sizeof *ev)) == NULL || (e = calloc(1, sizeof *e)) == NULL) {
		free(ev);
		return;
	}
	memcpy(e->id, id->str, id->len + 1);
	memcpy(ev->entry, id->str, id->len + 1);
	if ((e->next = sh->entries) != NULL)
		e->next->prev = e;
	sh->entries = e;
	sh->nentries++;
	ev->shard = sh->index;
	ev->published_ms = strtoll(id->str, NULL, 10);
	for (i = 0; i + 1 < f->elements; i += 2) {
		redisReply *k = f->element[i], *v = f->element[i + 1];

		if (k->type != REDIS_REPLY_STRING || k->len != 1)
			continue;
		switch (k->str[0]) {
		case 'k':
			if (v->type == REDIS_REPLY_STRING && v->len > plen && strncmp(v->str, prefix, plen - 2) == 0)
				ev->channel = strndup(v->str + plen, v->len - plen);
			break;
		case 'i': ev->id = wr_field(v, false); break;
		case 't': ev->type = wr_field(v, false); break;
		case 's': ev->session = wr_field(v, true); break;
		case 'x': ev->exclude_session = wr_field(v, true); break;
		case 'd': ev->data = wr_field(v, false); ev->len = v->type == REDIS_REPLY_STRING ? v->len : 0; break;
		case 'n': ev->subscribers = (unsigned)strtoul(v->type == REDIS_REPLY_STRING ? v->str : "0", NULL, 10); break;
		case 'r': ev->reached = wr_field(v, true); break;
		default: break;
		}
	}
	if (ev->channel == NULL || ev->id == NULL || ev->type == NULL || ev->data == NULL) {
		wr_ack(sh, ev->entry);	/* malformed */
		webpush_event_free(ev);
		return;
	}
	wr_key(key, ev->channel);
	if (redis_conn_command(sh->conn, wr_on_regs, ev, "HGETALL %s", key) == -1) {
		wr_forget(sh, ev->entry);
		webpush_event_free(ev);
	}
}

/* XREADGROUP's answer: [[queue, [entries]]] or nil. */
static void
wr_on_read(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wr_shard *sh = priv;
	redisReply *rep = reply, *entries;
	size_t i, n = 0;

	(void)ac;
	sh->reading = false;
	if (rep == NULL)
		return;		/* the connection went: up() polls again */
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
	    rep->element[0]->type == REDIS_REPLY_ARRAY && rep->element[0]->elements == 2 &&
	    (entries = rep->element[0]->element[1])->type == REDIS_REPLY_ARRAY) {
		for (i = 0; i < entries->elements; i++)
			wr_take(sh, entries->element[i]);
		n = entries->elements;
	} else if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "NOGROUP") != NULL) {
		redis_conn_command(sh->conn, NULL, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", r.queue, WR_GROUP);
	}
	wr_poll_later(sh, n > 0 ? 0 : WR_POLL_MS);
}

/* Reads new entries unless a read is out or this sender has enough on its hands. */
static void
wr_poll(evutil_socket_t fd, short what, void *arg)
{
	struct wr_shard *sh = arg;

	(void)fd;
	(void)what;
	if (!sh->up || sh->reading)
		return;
	if (sh->nentries >= WR_INPROGRESS_MAX) {
		wr_poll_later(sh, WR_POLL_MS);
		return;
	}
	if (redis_conn_command(sh->conn, wr_on_read, sh, "XREADGROUP GROUP %s %s COUNT %s STREAMS %s >",
	    WR_GROUP, r.consumer, WR_COUNT, r.queue) == 0)
		sh->reading = true;
}

/* Schedules the next read of sh's queue. */
static void
wr_poll_later(struct wr_shard *sh, long ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	if (sh->up)
		evtimer_add(sh->poll_timer, &tv);
}

/* XAUTOCLAIM's answer: [cursor, [entries], [deleted ids]]. */
static void
wr_on_claim(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wr_shard *sh = priv;
	redisReply *rep = reply, *entries;
	size_t i;

	(void)ac;
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING || rep->element[0]->len >= sizeof sh->cursor)
		return;
	memcpy(sh->cursor, rep->element[0]->str, rep->element[0]->len + 1);
	entries = rep->element[1];
	if (entries->type != REDIS_REPLY_ARRAY)
		return;
	for (i = 0; i < entries->elements; i++) {
		if (entries->element[i]->type == REDIS_REPLY_ARRAY) {
			log_info("webpush: taking over queue entry %s (its broker stopped working on it)",
			    entries->element[i]->elements > 0 && entries->element[i]->element[0]->type ==
			    REDIS_REPLY_STRING ? entries->element[i]->element[0]->str : "?");
			wr_take(sh, entries->element[i]);
		}
	}
}

/* One shard's part of the heartbeat. */
static void
wr_beat_shard(struct wr_shard *sh, const char **argv, size_t *lens, const char *reclaim)
{
	struct wr_entry *e;
	int argc;

	for (e = sh->entries; e != NULL;) {
		argc = 0;
		argv[argc++] = "XCLAIM";
		argv[argc++] = r.queue;
		argv[argc++] = WR_GROUP;
		argv[argc++] = r.consumer;
		argv[argc++] = "0";
		for (; e != NULL && argc < 5 + 64; e = e->next)
			argv[argc++] = e->id;
		argv[argc++] = "JUSTID";
		for (int i = 0; i < argc; i++)
			lens[i] = strlen(argv[i]);
		redis_conn_command_argv(sh->conn, NULL, NULL, argc, argv, lens);
	}
	redis_conn_command(sh->conn, wr_on_claim, sh, "XAUTOCLAIM %s %s %s %s %s COUNT %s", r.queue,
	    WR_GROUP, r.consumer, reclaim, sh->cursor, WR_COUNT);
}

/*
 * The heartbeat: touches every entry in progress (XCLAIM to itself, JUSTID, resets its
 * idle time), then takes over entries idle for webpush_reclaim (a dead broker's).
 */
static void
wr_beat(evutil_socket_t fd, short what, void *arg)
{
	long ms = (long)opt(OPT_WEBPUSH_RECLAIM) * 1000 / 3;
	struct timeval tv;
	const char *argv[8 + 64];
	size_t lens[8 + 64];
	char reclaim[24];
	struct wr_shard *sh;
	unsigned k;

	(void)fd;
	(void)what;
	(void)arg;
	if (ms > WEBPUSH_HEARTBEAT_MS)
		ms = WEBPUSH_HEARTBEAT_MS;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(r.beat_timer, &tv);
	snprintf(reclaim, sizeof reclaim, "%lld", opt(OPT_WEBPUSH_RECLAIM) * 1000);
	for (k = 0; k < r.nshards; k++) {
		if (!(sh = &r.shards[k])->up)
			continue;
		wr_beat_shard(sh, argv, lens, reclaim);
	}
}

/* Connected: make sure the group exists, then read. */
static void
wr_up(struct redis_conn *c, void *arg)
{
	struct wr_shard *sh = arg;

	(void)c;
	sh->up = true;
	if (r.nshards == 1)
		log_info("webpush: redis connected (sender %s)", r.consumer);
	else
		log_info("webpush: redis shard %u connected (sender %s)", sh->index, r.consumer);
	redis_conn_command(sh->conn, NULL, NULL, "XGROUP CREATE %s %s 0 MKSTREAM", r.queue, WR_GROUP);
	wr_poll_later(sh, 0);
}

/* Lost: what is in progress stays pending in Redis (and is reclaimed if not acknowledged). */
static void
wr_down(struct redis_conn *c, const char *why, void *arg)
{
	struct wr_shard *sh = arg;

	(void)c;
	if (sh->up)
		log_error("webpush: redis shard %u down: %s", sh->index, why);
	sh->up = false;
	sh->reading = false;
}

/* Opens a connection to every shard on the sender's base; 0 or -1. */
int
webpush_redis_start(struct event_base *base, webpush_push_fn *push)
{
	static struct redis_url urls[REDIS_URL_SHARDS_MAX];
	struct redis_conn_opts o = {
		.name = "redis (web push)", .scripts = scripts,
		.backoff_min_ms = 100, .backoff_max_ms = 5000, .up = wr_up, .down = wr_down,
	};
	unsigned char b[8];
	char err[200];
	size_t i, n;

	r.push = push;
	if (redis_url_parse_list(opt_str(OPT_REDIS), urls, REDIS_URL_SHARDS_MAX, &n, err, sizeof err) == -1) {
		log_error("webpush: redis: %s", err);
		return -1;
	}
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		return -1;
	for (i = 0; i < sizeof b; i++)
		sprintf(r.consumer + 2 * i, "%02x", b[i]);
	bus_webpush_queue_key(r.queue, sizeof r.queue, opt_str(OPT_REDIS_PREFIX));
	o.connect_timeout_ms = o.reply_timeout_ms = (unsigned)opt(OPT_REDIS_TIMEOUT);
	if ((r.beat_timer = evtimer_new(base, wr_beat, NULL)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		struct wr_shard *sh = &r.shards[i];

		sh->url = urls[i];
		sh->index = (unsigned)i;
		snprintf(sh->cursor, sizeof sh->cursor, "0-0");
		o.url = &sh->url;
		o.arg = sh;
		if ((sh->poll_timer = evtimer_new(base, wr_poll, sh)) == NULL ||
		    (sh->conn = redis_conn_new(base, &o)) == NULL)
			return -1;
		r.nshards++;
	}
	wr_beat(-1, 0, NULL);
	return 0;
}

/* Drops the connections (pending replies run with NULL) and frees (sender thread, at its end). */
void
webpush_redis_stop(void)
{
	unsigned k;

	for (k = 0; k < r.nshards; k++) {
		struct wr_shard *sh = &r.shards[k];

		redis_conn_free(sh->conn);
		sh->conn = NULL;
		sh->up = false;
		event_free(sh->poll_timer);
		while (sh->entries != NULL)
			wr_forget(sh, sh->entries->id);
	}
	r.nshards = 0;
	event_free(r.beat_timer);
}

/* The register script's answer. */
static void
wr_on_register(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wr_job *j = priv;
	redisReply *rep = reply;

	(void)ac;
	if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
	    rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
		j->done(j->arg, 503, "the registration could not be stored (redis unavailable)");
	else if (strcmp(rep->element[1]->str, "full") == 0)
		j->done(j->arg, 429, "too many registrations on this channel (webpush_max_per_channel)");
	else
		j->done(j->arg, 201, rep->element[0]->str);
	free(j);
}

/* Adds (or replaces) a registration in Redis; done answers 201 with the id, 429 or 503. */
void
webpush_redis_register(struct webpush_reg *reg, webpush_job_done *done, void *arg)
{
	struct wr_job *j = calloc(1, sizeof *j);
	char key[BUS_KEY_MAX], max[16], *json;
	struct wr_shard *sh;

	webpush_new_id(reg->id);
	json = webpush_reg_dump(reg);
	wr_key(key, reg->channel);
	snprintf(max, sizeof max, "%lld", opt(OPT_WEBPUSH_MAX_PER_CHANNEL));
	sh = wr_shard_of(reg->channel);
	if (j == NULL || json == NULL || !sh->up) {
		done(arg, 503, "the registration could not be stored (redis unavailable)");
		free(j);
		free(json);
		return;
	}
	j->done = done;
	j->arg = arg;
	if (redis_conn_command(sh->conn, wr_on_register, j, "EVALSHA %s 1 %s %s %s %s %s",
	    redis_conn_sha(sh->conn, 0), key, reg->id, json, reg->endpoint, max) == -1) {
		done(arg, 503, "the registration could not be stored (redis unavailable)");
		free(j);
	}
	free(json);
}

/* HDEL's answer for a DELETE. */
static void
wr_on_unregister(redisAsyncContext *ac, void *reply, void *priv)
{
	struct wr_job *j = priv;
	redisReply *rep = reply;

	(void)ac;
	if (rep == NULL || rep->type != REDIS_REPLY_INTEGER)
		j->done(j->arg, 503, "redis unavailable");
	else if (rep->integer == 0)
		j->done(j->arg, 404, "no such registration");
	else
		j->done(j->arg, 204, "");
	free(j);
}

/* Removes a registration for DELETE; done answers 204, 404 or 503. */
void
webpush_redis_unregister(const char *channel, const char *id, webpush_job_done *done, void *arg)
{
	struct wr_job *j = calloc(1, sizeof *j);
	char key[BUS_KEY_MAX];
	struct wr_shard *sh;

	wr_key(key, channel);
	if (j == NULL || !(sh = wr_shard_of(channel))->up) {
		done(arg, 503, "redis unavailable");
		free(j);
		return;
	}
	j->done = done;
	j->arg = arg;
	if (redis_conn_command(sh->conn, wr_on_unregister, j, "HDEL %s %s", key, id) == -1) {
		done(arg, 503, "redis unavailable");
		free(j);
	}
}

/* Removes a registration its push service says is gone (404, 410). */
void
webpush_redis_remove(const char *channel, const char *id)
{
	char key[BUS_KEY_MAX];

	wr_key(key, channel);
	redis_conn_command(wr_shard_of(channel)->conn, NULL, NULL, "HDEL %s %s", key, id);
}
