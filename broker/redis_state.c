/*
 * The Redis bus's JMAP states: a JMAP stream's fetch of its account's stored state
 * (the hash <prefix>j:<account> that the pusher's jmap_state_script keeps), run on the
 * Redis thread as one HGETALL and answered as a JSON object. The fetch goes out after
 * the stream's join, on the same FIFO, so a state stored after the HGETALL is also
 * an event the stream receives.
 */
#include "redis_bus.h"

#include <stdlib.h>
#include <string.h>

#include "jmap_state.h"
#include "log.h"

/* The HGETALL reply as a JSON object (new, NUL-terminated), skipping invalid pairs; NULL on ENOMEM. */
static char *
redis_state_json(const redisReply *r, size_t *len)
{
	size_t cap = 3, n = 0, i;
	char *out;

	for (i = 0; i + 1 < r->elements; i += 2)
		cap += r->element[i]->len + r->element[i + 1]->len + 6;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	out[n++] = '{';
	for (i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING ||
		    !jmap_type_valid(k->str, k->len) || !jmap_state_valid(v->str, v->len))
			continue;
		n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":\"%s\"", n > 1 ? "," : "", k->str, v->str);
	}
	out[n++] = '}';
	out[n] = '\0';
	*len = n;
	return out;
}

/* HGETALL's answer: the state, or -1 (link lost, an error reply). */
static void
redis_state_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_state *j = priv;
	redisReply *r = reply;
	char *json = NULL;
	size_t len = 0;

	(void)ac;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_error("redis: jmap state: %s", r->str);
		j->done(j->s, -1, NULL, 0);
	} else {
		json = redis_state_json(r, &len);
		j->done(j->s, json != NULL ? 0 : -1, json, len);
		free(json);
	}
	free(j);
}

/* Sends the fetch, or fails it while the link is down. */
void
redis_state_run(struct redis_state *j)
{
	char key[BUS_KEY_MAX];
	const char *argv[2] = { "HGETALL", key };
	unsigned shard = redis_link_shard_of(j->s->ch->name);	/* the account's hash lives with its channel */

	if (!redis_link_up(shard) ||
	    bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_JMAP, j->s->ch->name) == 0 ||
	    redis_link_command(shard, redis_state_on_reply, j, 2, argv) == -1) {
		j->done(j->s, -1, NULL, 0);
		free(j);
	}
}
