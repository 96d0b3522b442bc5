/*
 * What one JMAP stream owes its client (struct jmap_sub): the account, the types it
 * asked for, and the full state its client was last told, kept as the state id itself
 * (a short string, not a 4 KB map: it is paid per connection). Turns the account's
 * jmap-state events into StateChange events naming only the requested types that grew,
 * and a reconnect's Last-Event-ID into one StateChange of what differs. Knows nothing
 * of streams, locks or the bus: its caller (stream.c) holds the channel's lock.
 */
#include "jmap.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "event.h"

#define JMAP_DATA_MAX 8192	/* a StateChange, or one jmap-state event's data, bytes */

struct jmap_sub {
	char *account;		/* owned */
	char *types;		/* owned, as jmap_types_parse() made it */
	char *id;		/* owned: the state the client has, as an id; NULL until ready */
	char *last_id;		/* owned: the client's Last-Event-ID until ready, or NULL */
	size_t idlen;
};

/* A new sub for account; steals types; copies last_id (NULL or "": a fresh client). */
struct jmap_sub *
jmap_sub_new(const char *account, char *types, const char *last_id)
{
	struct jmap_sub *j = calloc(1, sizeof *j);

	if (j == NULL || (j->account = strdup(account)) == NULL ||
	    (last_id != NULL && *last_id != '\0' && (j->last_id = strdup(last_id)) == NULL)) {
		if (j != NULL)
			free(j->account);
		free(j);
		free(types);
		return NULL;
	}
	j->types = types;
	return j;
}

/* Frees a sub; NULL is fine. */
void
jmap_sub_free(struct jmap_sub *j)
{
	if (j == NULL)
		return;
	free(j->account);
	free(j->types);
	free(j->id);
	free(j->last_id);
	free(j);
}

/* Bytes a sub holds, for the memory figure. */
size_t
jmap_sub_size(const struct jmap_sub *j)
{
	return sizeof *j + strlen(j->account) + 1 + strlen(j->types) + 1 + (j->id ? j->idlen + 1 : 0);
}

/* Replaces the client's state with m (an id that does not fit keeps the old one). */
static void
jmap_sub_remember(struct jmap_sub *j, const struct jmap_map *m)
{
	char id[JMAP_ID_MAX + 1];
	size_t n = jmap_id_encode(j->account, m, id, sizeof id);
	char *copy;

	if (n == 0 || (copy = strdup(id)) == NULL)
		return;
	free(j->id);
	j->id = copy;
	j->idlen = n;
}

/* A StateChange of changed (new, one reference), carrying the sub's id; NULL on ENOMEM. */
static struct event *
jmap_sub_change(const struct jmap_sub *j, const struct jmap_map *changed, int64_t published_ns)
{
	char data[JMAP_DATA_MAX];
	struct publish_req req = { .channel = j->account, .type = "state", .data = data };

	if ((req.len = jmap_change_json(j->account, changed, data, sizeof data)) == 0)
		return NULL;
	return event_create(&req, 0, j->id != NULL ? j->id : "", published_ns);
}

/*
 * The account's stored full state arrived (stored: its JSON object, NULL when there is
 * none): it becomes what the client has. A client that came with a Last-Event-ID gets
 * one StateChange (returned, new) of the requested types whose state differs from the
 * id's (every requested type when the id is unreadable), or NULL when none does.
 */
struct event *
jmap_sub_ready(struct jmap_sub *j, const char *stored, size_t len)
{
	struct jmap_map st, client, changed;
	const char *had;
	bool unreadable;
	unsigned i;

	if (stored == NULL || jmap_map_parse_json(stored, len, &st) == -1)
		jmap_map_init(&st);
	jmap_sub_remember(j, &st);
	if (j->last_id == NULL)
		return NULL;
	unreadable = jmap_id_decode(j->last_id, j->account, &client) == -1;
	free(j->last_id);
	j->last_id = NULL;
	jmap_map_init(&changed);
	for (i = 0; i < st.n; i++) {
		if (!jmap_types_want(j->types, st.e[i].type))
			continue;
		had = jmap_map_get(&client, st.e[i].type);
		if (unreadable || had == NULL || strcmp(had, st.e[i].state) != 0)
			(void)jmap_map_put(&changed, st.e[i].type, strlen(st.e[i].type), st.e[i].state,
			    strlen(st.e[i].state));
	}
	return changed.n > 0 ? jmap_sub_change(j, &changed, clock_ns()) : NULL;
}

/*
 * One event of the account's channel: a jmap-state event whose states are newer than
 * the client's for a requested type becomes a StateChange of those types (returned,
 * new); anything else (other event types, nothing requested grew) gives NULL. The
 * client's full state follows every type, requested or not, so the next id is whole.
 */
struct event *
jmap_sub_event(struct jmap_sub *j, const struct event *ev)
{
	struct jmap_map have, got, changed;
	char data[JMAP_DATA_MAX];
	const char *cur;
	size_t len;
	unsigned i;
	bool grew = false;

	if (j->id == NULL || jmap_frame_data(ev->frame, ev->len, JMAP_STATE_EVENT, data, sizeof data, &len) == -1 ||
	    jmap_map_parse_json(data, len, &got) == -1 || jmap_id_decode(j->id, j->account, &have) == -1)
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
		jmap_sub_remember(j, &have);
	return changed.n > 0 ? jmap_sub_change(j, &changed, ev->published_ns) : NULL;
}
