/*
 * Replays in Redis mode: what a reconnecting stream's client missed after its id,
 * served from the ring when the ring surely covers it, else fetched with the replay
 * script. A replay waits (deferred) until its channel's ring is synced, and one that
 * cannot run (the link is down, or goes down with the replay in flight) is answered
 * RESET_UNAVAILABLE at once: the stream then starts with a reset, never silence. Also
 * the parsing of the script's replies, which the ring's sync shares. Redis thread only.
 */
#include "redis_bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* A replay command's context: stale once its connection is gone. */
struct redis_replay_ctx {
	unsigned epoch, shard;
	struct redis_replay *r;
};

/* Turns one XRANGE entry [id, [field, value, ...]] into an event; NULL if malformed. */
struct event *
redis_replay_entry(redisReply *e, int64_t published_ns)
{
	struct publish_req req = { .data = "" };
	char id[BUS_ID_MAX];
	redisReply *f;
	uint64_t key;
	size_t i;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
	    bus_id_parse(e->element[0]->str, e->element[0]->len, &key) == -1)
		return NULL;
	f = e->element[1];
	for (i = 0; i + 1 < f->elements; i += 2) {
		const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
		if (f->element[i]->type != REDIS_REPLY_STRING || f->element[i + 1]->type != REDIS_REPLY_STRING)
			return NULL;
		if (strcmp(k, "t") == 0)
			req.type = v;
		else if (strcmp(k, "s") == 0)
			req.session = *v ? v : NULL;
		else if (strcmp(k, "x") == 0)
			req.exclude_session = *v ? v : NULL;
		else if (strcmp(k, "o") == 0)
			req.origin = *v ? v : NULL;
		else if (strcmp(k, "d") == 0) {
			req.data = v;
			req.len = f->element[i + 1]->len;
		}
	}
	bus_id_format(id, sizeof id, key);
	return event_create(&req, key, id, published_ns);
}

/* Drops a parsed list of events. */
static void
redis_replay_drop(struct event **evs, size_t n)
{
	while (n > 0)
		event_unref(evs[--n]);
	free(evs);
}

/*
 * Parses the replay script's reply {status, last, entries[, base]}: status BUS_REPLAY_OK
 * or a reset reason; base (the id before the entries of a sync after a loss) is last
 * when absent. Returns 0, or -1 if malformed (nothing allocated).
 */
int
redis_replay_parse(redisReply *r, int64_t published_ns, int *status, uint64_t *last,
    struct event ***evs, size_t *n, uint64_t *base)
{
	redisReply *es;
	size_t i;

	*evs = NULL;
	*n = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
	    bus_id_parse(r->element[1]->str, r->element[1]->len, last) == -1)
		return -1;
	*base = *last;
	if (r->elements > 3 && (r->element[3]->type != REDIS_REPLY_STRING ||
	    bus_id_parse(r->element[3]->str, r->element[3]->len, base) == -1))
		return -1;
	*status = strcmp(r->element[0]->str, "ok") == 0 ? BUS_REPLAY_OK :
	    strcmp(r->element[0]->str, "unknown") == 0 ? RESET_UNKNOWN : RESET_EXPIRED;
	es = r->element[2];
	if (es->type != REDIS_REPLY_ARRAY || es->elements == 0)
		return 0;
	if ((*evs = calloc(es->elements, sizeof **evs)) == NULL)
		return -1;
	for (i = 0; i < es->elements; i++) {
		if (((*evs)[*n] = redis_replay_entry(es->element[i], published_ns)) == NULL) {
			redis_replay_drop(*evs, *n);
			*evs = NULL;
			*n = 0;
			return -1;
		}
		(*n)++;
	}
	return 0;
}

/* Answers a replay and frees it. */
static void
redis_replay_answer(struct redis_replay *r, int status, uint64_t last, struct event **evs, size_t n)
{
	r->done(r->s, status, last, evs, n);
	free(r);
}

/* A replay that cannot run: the stream starts with a reset. */
void
redis_replay_cancel(struct redis_replay *r)
{
	redis_replay_answer(r, RESET_UNAVAILABLE, r->key, NULL, 0);
}

/* Keeps a replay until its channel is synced. */
void
redis_replay_defer(struct redis_chan *b, struct redis_replay *r)
{
	r->next = b->deferred;
	b->deferred = r;
}

/* The channel is synced (or gone): runs, or cancels, what waited. */
void
redis_replay_flush(struct redis_chan *b)
{
	struct redis_replay *r = b->deferred, *next;

	b->deferred = NULL;
	for (; r != NULL; r = next) {
		next = r->next;
		redis_replay_run(r);
	}
}

/* The replay script's answer for one stream. */
static void
redis_replay_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_replay_ctx *c = priv;
	struct redis_replay *r = c->r;
	struct event **evs;
	uint64_t last, base;
	size_t n;
	int status;

	(void)ac;
	if (c->epoch != redis_link_epoch(c->shard) || reply == NULL ||
	    redis_replay_parse(reply, 0, &status, &last, &evs, &n, &base) == -1) {
		if (reply != NULL && ((redisReply *)reply)->type == REDIS_REPLY_ERROR)
			log_error("redis: replay: %s", ((redisReply *)reply)->str);
		redis_replay_cancel(r);
	} else
		redis_replay_answer(r, status, last, evs, n);
	free(c);
}

/* Sends the replay script for one stream. */
static void
redis_replay_send(struct redis_replay *r)
{
	char key[BUS_KEY_MAX], count[24];
	unsigned shard = redis_link_shard_of(r->s->ch->name);
	const char *argv[6] = { "EVALSHA", redis_link_sha(shard, SCRIPT_REPLAY), "1", key, r->from, count };
	struct redis_replay_ctx *c = malloc(sizeof *c);

	snprintf(count, sizeof count, "%lld", opt(OPT_HISTORY_SIZE) * 2 + 16);
	if (c == NULL || bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_HISTORY, r->s->ch->name) == 0) {
		free(c);
		redis_replay_cancel(r);
		return;
	}
	c->epoch = redis_link_epoch(shard);
	c->shard = shard;
	c->r = r;
	if (redis_link_command(shard, redis_replay_on_reply, c, 6, argv) == -1) {
		free(c);
		redis_replay_cancel(r);
	}
}

/*
 * Serves a replay from the ring if the synced ring covers the id, sends it to Redis
 * otherwise; waits while the channel is not synced; cancels it while the link is down.
 */
void
redis_replay_run(struct redis_replay *r)
{
	struct channel *ch = r->s->ch;
	struct redis_chan *b = ch->bus;
	uint64_t index;
	bool local;

	if (b == NULL || !redis_link_up(b->shard)) {
		redis_replay_cancel(r);
		return;
	}
	if (b->st != SUB_ACTIVE) {
		redis_replay_defer(b, r);
		return;
	}
	pthread_mutex_lock(&ch->lock);
	local = b->covered && r->key != 0 && r->key <= ch->history.last_seq &&
	    history_after(&ch->history, r->key, &index) == 0;
	pthread_mutex_unlock(&ch->lock);
	if (local)
		redis_replay_answer(r, BUS_REPLAY_OK, r->key, NULL, 0);
	else
		redis_replay_send(r);
}
