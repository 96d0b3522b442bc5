/*
 * This broker's subscriber counts in Redis, which every publish script sums over the
 * live brokers: one hash per channel, "<broker>|<session>|<origins>" -> local count,
 * and a liveness key per broker that expires soon after it stops refreshing it. The
 * member list of a channel on the Redis thread is the truth; while the channel's
 * subscription is live each join and leave is one HINCRBY, and after every
 * (re)subscription one recount replaces all of this broker's fields. A join is
 * answered only once Redis holds its count, so a publish that follows the 200 counts
 * the new stream. Redis thread only, except redis_counts_field().
 */
#include "redis_bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A recount's reply context: the members whose joins it answers. */
struct redis_recount {
	unsigned epoch, shard;
	struct redis_member *waiting;
};

/* Writes a stream's count field; returns its length as snprintf does (any thread). */
size_t
redis_counts_field(char *buf, size_t len, const struct stream *s)
{
	int n = snprintf(buf, len, "%s%c%s%c%s", redis_link_broker(), BUS_FIELD_SEP,
	    s->session ? s->session : "", BUS_FIELD_SEP, s->origins ? s->origins : "");

	return n < 0 ? 0 : (size_t)n;
}

/* Gives a member's join its answer (once). */
void
redis_counts_answer(struct redis_member *m, int status)
{
	struct stream *s = m->s;
	bus_join_done *done = m->done;

	if (done == NULL)
		return;
	m->done = NULL;
	m->s = NULL;
	done(s, status);	/* s may be gone once this returns */
}

/* Sends HINCRBY and EXPIRE for one field; fn (may be NULL) gets the HINCRBY's reply. */
static int
redis_counts_incr(struct channel *ch, const char *field, int delta, redisCallbackFn *fn, void *priv)
{
	char key[BUS_KEY_MAX], d[8], ttl[16];
	const char *incr[4] = { "HINCRBY", key, field, d }, *expire[3] = { "EXPIRE", key, ttl };

	unsigned shard = redis_link_shard_of(ch->name);

	if (bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_COUNTS, ch->name) == 0)
		return -1;
	snprintf(d, sizeof d, "%d", delta);
	snprintf(ttl, sizeof ttl, "%d", REDIS_COUNTS_TTL);
	if (redis_link_command(shard, fn, priv, 4, incr) == -1)
		return -1;
	redis_link_command(shard, NULL, NULL, 3, expire);
	return 0;
}

/* The HINCRBY of a join: the count is in Redis (or the link went with it). */
static void
redis_counts_on_joined(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	redis_counts_answer(priv, r != NULL && r->type == REDIS_REPLY_INTEGER ? 0 : -1);
}

/* A member joined a live channel: count it, and answer once Redis has it. */
void
redis_counts_join(struct redis_member *m)
{
	if (redis_counts_incr(m->ch, m->field, +1, redis_counts_on_joined, m) == -1)
		redis_counts_answer(m, -1);
}

/* A member left a live channel. */
void
redis_counts_leave(struct redis_member *m)
{
	redis_counts_incr(m->ch, m->field, -1, NULL, NULL);
}

/* Answers every member a recount carried. */
static void
redis_counts_answer_all(struct redis_member *w, int status)
{
	struct redis_member *next;

	for (; w != NULL; w = next) {
		next = w->wait_next;
		w->wait_next = NULL;
		redis_counts_answer(w, status);
	}
}

/* The recount's reply: every join it carried is counted now, or failed with the link. */
static void
redis_counts_on_recount(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_recount *c = priv;
	redisReply *r = reply;

	(void)ac;
	redis_counts_answer_all(c->waiting, r != NULL && r->type == REDIS_REPLY_INTEGER &&
	    c->epoch == redis_link_epoch(c->shard) ? 0 : -1);
	free(c);
}

/* Sorts fields so equal ones are adjacent. */
static int
redis_counts_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lays out EVALSHA counts 1 <key> <broker> [field count]... from sorted fields. */
static int
redis_counts_layout(const char **argv, char (*counts)[24], char **fields, size_t n, const char *key,
    unsigned shard)
{
	size_t i, c;
	int argc = 5;

	argv[0] = "EVALSHA";
	argv[1] = redis_link_sha(shard, SCRIPT_COUNTS);
	argv[2] = "1";
	argv[3] = key;
	argv[4] = redis_link_broker();
	for (i = 0; i < n && (argc - 5) / 2 < REDIS_COUNT_FIELDS; i += c) {
		for (c = 1; i + c < n && strcmp(fields[i], fields[i + c]) == 0; c++)
			;
		snprintf(counts[(argc - 5) / 2], 24, "%zu", c);
		argv[argc] = fields[i];
		argv[argc + 1] = counts[(argc - 5) / 2];
		argc += 2;
	}
	return argc;
}

/*
 * Replaces this broker's fields for b's channel with what its members are now, and
 * answers the joins in waiting (a list through wait_next) once Redis has them.
 */
void
redis_counts_recount(struct redis_chan *b, struct redis_member *waiting)
{
	struct redis_member *m;
	char key[BUS_KEY_MAX], counts[REDIS_COUNT_FIELDS][24], ttl[16];
	const char *argv[5 + 2 * REDIS_COUNT_FIELDS], *expire[3] = { "EXPIRE", key, ttl };
	size_t lens[5 + 2 * REDIS_COUNT_FIELDS], n = 0;
	char **fields = calloc(b->nmembers ? b->nmembers : 1, sizeof *fields);
	struct redis_recount *c = malloc(sizeof *c);
	int argc, i;

	if (fields == NULL || c == NULL ||
	    bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_COUNTS, b->ch->name) == 0) {
		free(fields);
		free(c);
		redis_counts_answer_all(waiting, -1);
		return;
	}
	for (m = b->members; m != NULL; m = m->next)
		fields[n++] = m->field;
	qsort(fields, n, sizeof *fields, redis_counts_cmp);
	argc = redis_counts_layout(argv, counts, fields, n, key, b->shard);
	free(fields);
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	c->epoch = redis_link_epoch(b->shard);
	c->shard = b->shard;
	c->waiting = waiting;
	if (redis_link_command_argv(b->shard, redis_counts_on_recount, c, argc, argv, lens) == -1) {
		free(c);
		redis_counts_answer_all(waiting, -1);
		return;
	}
	snprintf(ttl, sizeof ttl, "%d", REDIS_COUNTS_TTL);
	redis_link_command(b->shard, NULL, NULL, 3, expire);
}

/* A channel let go while its counts may be stale in Redis: remove this broker's fields. */
void
redis_counts_clear(struct redis_chan *b)
{
	redis_counts_recount(b, NULL);
}

/* Refreshes this broker's liveness key on a shard: its counts there vanish soon after it stops. */
void
redis_counts_heartbeat(unsigned shard)
{
	char key[BUS_KEY_MAX], ttl[16];
	const char *argv[5] = { "SET", key, "1", "PX", ttl };

	if (bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_ALIVE, redis_link_broker()) == 0)
		return;
	snprintf(ttl, sizeof ttl, "%d", BUS_ALIVE_MS);
	redis_link_command(shard, NULL, NULL, 5, argv);
}

/* Keeps a live channel's count hash from expiring. */
void
redis_counts_refresh(struct redis_chan *b)
{
	char key[BUS_KEY_MAX], ttl[16];
	const char *argv[3] = { "EXPIRE", key, ttl };

	if (bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_COUNTS, b->ch->name) == 0)
		return;
	snprintf(ttl, sizeof ttl, "%d", REDIS_COUNTS_TTL);
	redis_link_command(b->shard, NULL, NULL, 3, argv);
}
