/*
 * The JMAP push endpoint's private interface (RFC 8620 section 7.3), between
 * jmap_ids.c (state maps, the state ids, the types filter: pure), jmap_stream.c (what
 * one JMAP stream has told its client, and the StateChange events it is owed),
 * jmap_store.c (standalone: each account's latest full state, in memory) and jmap.c
 * (the GET handler). A JMAP stream of one account is an ordinary subscriber stream on
 * its account's channel (the channel is the account id) whose ring events go through
 * jmap_sub_event() instead of out as they are; one of several accounts is fed by a leg
 * on each account's channel (stream.h).
 */
#ifndef SSEPUSH_BROKER_JMAP_H
#define SSEPUSH_BROKER_JMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jmap_state.h"

/* State ids: "s1:<account>;Type=state,Type=state" (types sorted), one such segment per
 * account joined by '/' for a stream of several accounts ("s1:a;Email=7/b;Email=3"). */
#define JMAP_ID_PREFIX "s1:"
#define JMAP_ACCOUNTS_MAX 16		/* accounts one stream follows (as many as upstream.c keeps of a session) */
#define JMAP_ID_MAX 8192		/* longest Last-Event-ID read as a state id, bytes */
#define JMAP_TYPES_ARG_MAX 2048		/* longest ?types= accepted, bytes */

struct event;

/* One type's state. */
struct jmap_entry {
	char type[JMAP_TYPE_MAX + 1];
	char state[JMAP_STATE_MAX + 1];
};

/* An account's states, sorted by type (a stack object: 4 KB). */
struct jmap_map {
	unsigned n;
	struct jmap_entry e[JMAP_TYPES_MAX];
};

/* jmap_ids.c */
void jmap_map_init(struct jmap_map *m);
const char *jmap_map_get(const struct jmap_map *m, const char *type);
int jmap_map_put(struct jmap_map *m, const char *type, size_t tlen, const char *state, size_t slen);
int jmap_map_parse_json(const char *json, size_t len, struct jmap_map *out);
size_t jmap_id_encode(const char *account, const struct jmap_map *m, char *out, size_t outlen);
int jmap_id_decode(const char *id, const char *account, struct jmap_map *m);
size_t jmap_id_put(const char *id, const char *accounts, unsigned n, const char *account,
    const struct jmap_map *m, char *out, size_t outlen);
char *jmap_types_parse(const char *arg);
bool jmap_types_want(const char *types, const char *type);
size_t jmap_change_json(const char *account, const struct jmap_map *changed, char *out, size_t outlen);
size_t jmap_change_begin(char *out, size_t outlen);
size_t jmap_change_add(char *out, size_t outlen, size_t n, bool first, const char *account,
    const struct jmap_map *changed);
size_t jmap_change_end(char *out, size_t outlen, size_t n);
int jmap_frame_data(const char *frame, size_t len, const char *type, char *out, size_t outlen,
    size_t *datalen);

/* jmap_stream.c */
struct jmap_sub;
struct jmap_sub *jmap_sub_new(const char *accounts, unsigned n, char *types, const char *last_id);
void jmap_sub_free(struct jmap_sub *j);
unsigned jmap_sub_naccounts(const struct jmap_sub *j);
const char *jmap_sub_accounts(const struct jmap_sub *j);
struct event *jmap_sub_ready(struct jmap_sub *j, const char *account, const char *stored, size_t len,
    bool *all);
struct event *jmap_sub_event(struct jmap_sub *j, const char *account, const struct event *ev);
size_t jmap_sub_size(const struct jmap_sub *j);

/* jmap_store.c */
void jmap_store_merge(const char *account, const char *json, size_t len);
char *jmap_store_get(const char *account, size_t *len);
void jmap_store_free(void);

#endif
