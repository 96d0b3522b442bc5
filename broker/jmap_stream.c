/*
 * What one JMAP stream owes its client (struct jmap_sub): its accounts, the types it
 * asked for, and the full state its client was last told, kept as the state id itself
 * (a short string, not a 4 KB map per account: it is paid per connection). Turns the
 * accounts' jmap-state events into StateChange events naming only the requested types
 * that grew, and a reconnect's Last-Event-ID into one StateChange of what differs, once
 * every account's stored state is in. Knows nothing of streams, locks or the bus: its
 * caller (stream.c) holds the stream's lock.
 */
#include "jmap.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "event.h"

#define JMAP_DATA_MAX 8192	/* a StateChange, or one jmap-state event's data, bytes */

struct jmap_sub {
	char *accounts;		/* owned: naccounts NUL-separated account ids, the id's segment order */
	char *types;		/* owned, as jmap_types_parse() made it */
	char *id;		/* owned: the state the client has, as an id (a segment per ready account); NULL until one is */
	char *last_id;		/* owned: the client's Last-Event-ID until every account is ready, or NULL */
	size_t idlen;
	uint32_t ready;		/* bit i: account i's stored state is in */
	uint8_t naccounts;
};

/* The index of account in j's list, or -1. */
static int
jmap_sub_index(const struct jmap_sub *j, const char *account)
{
	const char *a = j->accounts;
	unsigned i;

	for (i = 0; i < j->naccounts; i++, a += strlen(a) + 1)
		if (strcmp(a, account) == 0)
			return (int)i;
	return -1;
}

/*
 * A new sub for n accounts (1..JMAP_ACCOUNTS_MAX NUL-separated ids, copied); steals
 * types; copies last_id (NULL or "": a fresh client).
 */
struct jmap_sub *
jmap_sub_new(const char *accounts, unsigned n, char *types, const char *last_id)
{
	struct jmap_sub *j = NULL;
	size_t len = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		len += strlen(accounts + len) + 1;
	if (n == 0 || n > JMAP_ACCOUNTS_MAX || (j = calloc(1, sizeof *j)) == NULL ||
	    (j->accounts = malloc(len)) == NULL ||
	    (last_id != NULL && *last_id != '\0' && (j->last_id = strdup(last_id)) == NULL)) {
		if (j != NULL)
			free(j->accounts);
		free(j);
		free(types);
		return NULL;
	}
	memcpy(j->accounts, accounts, len);
	j->naccounts = (uint8_t)n;
	j->types = types;
	return j;
}

/* Frees a sub; NULL is fine. */
void
jmap_sub_free(struct jmap_sub *j)
{
	if (j == NULL)
		return;
	free(j->accounts);
	free(j->types);
	free(j->id);
	free(j->last_id);
	free(j);
}

/* How many accounts the sub follows. */
unsigned
jmap_sub_naccounts(const struct jmap_sub *j)
{
	return j->naccounts;
}

/* Its accounts, NUL-separated (borrowed). */
const char *
jmap_sub_accounts(const struct jmap_sub *j)
{
	return j->accounts;
}

/* Bytes a sub holds, for the memory figure. */
size_t
jmap_sub_size(const struct jmap_sub *j)
{
	size_t len = 0;
	unsigned i;

	for (i = 0; i < j->naccounts; i++)
		len += strlen(j->accounts + len) + 1;
	return sizeof *j + len + strlen(j->types) + 1 + (j->id ? j->idlen + 1 : 0);
}

/* Replaces account's part of the client's state with m (an id that does not fit keeps the old one). */
static void
jmap_sub_remember(struct jmap_sub *j, const char *account, const struct jmap_map *m)
{
	char id[JMAP_ID_MAX + 1];
	size_t n = jmap_id_put(j->id, j->accounts, j->naccounts, account, m, id, sizeof id);
	char *copy;

	if (n == 0 || (copy = strdup(id)) == NULL)
		return;
	free(j->id);
	j->id = copy;
	j->idlen = n;
}

/* A StateChange of data (new, one reference), carrying the sub's id; NULL on ENOMEM. */
static struct event *
jmap_sub_change(const struct jmap_sub *j, const char *data, size_t len, int64_t published_ns)
{
	struct publish_req req = { .channel = j->accounts, .type = "state", .data = data, .len = len };

	return event_create(&req, 0, j->id != NULL ? j->id : "", published_ns);
}

/*
 * What a reconnecting client is owed for one account (its stored state is in j->id):
 * the requested types whose state differs from the client's id (every requested type
 * when the id has nothing readable for the account).
 */
static void
jmap_sub_differs(const struct jmap_sub *j, const char *account, struct jmap_map *changed)
{
	struct jmap_map st, client;
	const char *had;
	bool unreadable;
	unsigned i;

	jmap_map_init(changed);
	if (jmap_id_decode(j->id, account, &st) == -1)
		return;
	unreadable = jmap_id_decode(j->last_id, account, &client) == -1;
	for (i = 0; i < st.n; i++) {
		if (!jmap_types_want(j->types, st.e[i].type))
			continue;
		had = jmap_map_get(&client, st.e[i].type);
		if (unreadable || had == NULL || strcmp(had, st.e[i].state) != 0)
			(void)jmap_map_put(changed, st.e[i].type, strlen(st.e[i].type), st.e[i].state,
			    strlen(st.e[i].state));
	}
}

/*
 * One account's stored full state arrived (stored: its JSON object, NULL when there is
 * none): it becomes what the client has for that account. Once every account's is in
 * (*all set), a client that came with a Last-Event-ID gets one StateChange (returned,
 * new) naming, per account, the requested types whose state differs from the id's
 * (every requested type of an account the id says nothing readable about); NULL when
 * none does, or before every account is in.
 */
struct event *
jmap_sub_ready(struct jmap_sub *j, const char *account, const char *stored, size_t len, bool *all)
{
	char data[JMAP_DATA_MAX];
	struct jmap_map st, changed;
	const char *a;
	size_t n;
	unsigned i;
	int k = jmap_sub_index(j, account);
	bool first = true;

	*all = false;
	if (k < 0)
		return NULL;
	if (stored == NULL || jmap_map_parse_json(stored, len, &st) == -1)
		jmap_map_init(&st);
	jmap_sub_remember(j, account, &st);
	j->ready |= (uint32_t)1 << k;
	if (j->ready != (uint32_t)(((uint64_t)1 << j->naccounts) - 1))
		return NULL;
	*all = true;
	if (j->last_id == NULL)
		return NULL;
	n = jmap_change_begin(data, sizeof data);
	for (i = 0, a = j->accounts; n > 0 && i < j->naccounts; i++, a += strlen(a) + 1) {
		jmap_sub_differs(j, a, &changed);
		if (changed.n == 0)
			continue;
		n = jmap_change_add(data, sizeof data, n, first, a, &changed);
		first = false;
	}
	free(j->last_id);
	j->last_id = NULL;
	if (first || (n = jmap_change_end(data, sizeof data, n)) == 0)
		return NULL;
	return jmap_sub_change(j, data, n, clock_ns());
}

/*
 * One event of an account's channel: a jmap-state event whose states are newer than
 * the client's for a requested type becomes a StateChange of those types (returned,
 * new); anything else (other event types, nothing requested grew, an account not yet
 * ready) gives NULL. The client's full state follows every type, requested or not, so
 * the next id is whole.
 */
struct event *
jmap_sub_event(struct jmap_sub *j, const char *account, const struct event *ev)
{
	struct jmap_map have, got, changed;
	char data[JMAP_DATA_MAX];
	const char *cur;
	size_t len;
	unsigned i;
	bool grew = false;

	if (j->id == NULL || jmap_frame_data(ev->frame, ev->len, JMAP_STATE_EVENT, data, sizeof data, &len) == -1 ||
	    jmap_map_parse_json(data, len, &got) == -1 || jmap_id_decode(j->id, account, &have) == -1)
		return NULL;
	jmap_map_init(&changed);
	for (i = 0; i < got.n; i++) {
		cur = jmap_map_get(&have, got.e[i].type);
		if (cur != NULL && !jmap_state_newer(got.e[i].state, cur))
			continue;
		if (jmap_map_put(&have, got.e[i].type, strlen(got.e[i].type), got.e[i].state,
		    strlen(got.e[i].state)) == -1)
			continue;
		grew = true;
		if (jmap_types_want(j->types, got.e[i].type))
			(void)jmap_map_put(&changed, got.e[i].type, strlen(got.e[i].type),
			    got.e[i].state, strlen(got.e[i].state));
	}
	if (grew)
		jmap_sub_remember(j, account, &have);
	if (changed.n == 0 || (len = jmap_change_json(account, &changed, data, sizeof data)) == 0)
		return NULL;
	return jmap_sub_change(j, data, len, ev->published_ns);
}
