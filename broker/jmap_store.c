/*
 * Standalone mode's JMAP states: each account's latest full state, in memory, merged
 * from the jmap-state events published to its channel (the local bus calls in before
 * it fans an event out), so a JMAP stream that joins reads the state its account is
 * at. Bounded by max_channels accounts; one lock. In Redis mode the pusher keeps the
 * states in Redis instead (redis_state.c reads them) and this table stays empty.
 */
#include "jmap.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "fnv.h"
#include "log.h"

#define JMAP_STORE_BUCKETS 4096

/* One account's state, as the id string of its map (compact). */
struct jmap_stored {
	struct jmap_stored *next;
	char *id;		/* owned: jmap_id_encode() of the full state */
	char account[];
};

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static struct jmap_stored *buckets[JMAP_STORE_BUCKETS];
static size_t stored_count;

/* FNV-1a of an account id. */
static unsigned
jmap_store_hash(const char *s)
{
	return (unsigned)(fnv1a(s, strlen(s)) % JMAP_STORE_BUCKETS);
}

/* The entry of an account, made if create (NULL when full or on ENOMEM); store_lock held. */
static struct jmap_stored *
jmap_store_find(const char *account, bool create)
{
	unsigned h = jmap_store_hash(account);
	size_t n = strlen(account);
	struct jmap_stored *e;

	for (e = buckets[h]; e != NULL; e = e->next)
		if (strcmp(e->account, account) == 0)
			return e;
	if (!create || stored_count >= (size_t)opt(OPT_MAX_CHANNELS) ||
	    (e = calloc(1, sizeof *e + n + 1)) == NULL)
		return NULL;
	memcpy(e->account, account, n + 1);
	e->next = buckets[h];
	buckets[h] = e;
	stored_count++;
	return e;
}

/* Merges one jmap-state event's data: each valid type's state replaces an older one. */
void
jmap_store_merge(const char *account, const char *json, size_t len)
{
	struct jmap_map have, got;
	char id[JMAP_ID_MAX + 1];
	struct jmap_stored *e;
	const char *cur;
	char *copy;
	unsigned i;

	if (jmap_map_parse_json(json, len, &got) == -1 || got.n == 0)
		return;
	pthread_mutex_lock(&store_lock);
	if ((e = jmap_store_find(account, true)) == NULL) {
		pthread_mutex_unlock(&store_lock);
		log_warn("jmap: the states of one more account do not fit (max_channels): not kept");
		return;
	}
	if (e->id == NULL || jmap_id_decode(e->id, account, &have) == -1)
		jmap_map_init(&have);
	for (i = 0; i < got.n; i++) {
		cur = jmap_map_get(&have, got.e[i].type);
		if (cur == NULL || jmap_state_newer(got.e[i].state, cur))
			(void)jmap_map_put(&have, got.e[i].type, strlen(got.e[i].type), got.e[i].state,
			    strlen(got.e[i].state));
	}
	if (jmap_id_encode(account, &have, id, sizeof id) > 0 && (copy = strdup(id)) != NULL) {
		free(e->id);
		e->id = copy;
	}
	pthread_mutex_unlock(&store_lock);
}

/* The account's full state as a new JSON object string (*len its length), or NULL. */
char *
jmap_store_get(const char *account, size_t *len)
{
	struct jmap_map have;
	struct jmap_stored *e;
	char *out = NULL;
	size_t cap = 8, n;
	unsigned i;

	pthread_mutex_lock(&store_lock);
	if ((e = jmap_store_find(account, false)) == NULL || e->id == NULL ||
	    jmap_id_decode(e->id, account, &have) == -1) {
		pthread_mutex_unlock(&store_lock);
		return NULL;
	}
	pthread_mutex_unlock(&store_lock);
	for (i = 0; i < have.n; i++)
		cap += strlen(have.e[i].type) + strlen(have.e[i].state) + 6;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	n = 0;
	out[n++] = '{';
	for (i = 0; i < have.n; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s\"%s\":\"%s\"", i > 0 ? "," : "",
		    have.e[i].type, have.e[i].state);
	out[n++] = '}';
	out[n] = '\0';
	*len = n;
	return out;
}

/* Frees the table (at exit). */
void
jmap_store_free(void)
{
	struct jmap_stored *e, *next;
	size_t i;

	for (i = 0; i < JMAP_STORE_BUCKETS; i++) {
		for (e = buckets[i]; e != NULL; e = next) {
			next = e->next;
			free(e->id);
			free(e);
		}
		buckets[i] = NULL;
	}
	stored_count = 0;
}
