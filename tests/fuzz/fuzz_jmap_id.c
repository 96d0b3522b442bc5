/*
 * libFuzzer target for what a JMAP client controls on the JMAP endpoint
 * (broker/jmap_ids.c): its Last-Event-ID, read as a state id, and its ?types= list; and
 * a jmap-state event's data. The input is split at its first LF into the id and the
 * types; the whole input is also read as a state object. Invariants: a decoded id
 * encodes back to text that decodes to the same map, for that account only; the map is
 * sorted without duplicates and within its bounds; the StateChange written from it is
 * JSON with the account's object holding exactly the map; a parsed types list wants
 * each of its names, and "*" wants any. Build and run with `make fuzz`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jmap.h"

#define FUZZ_INPUT_MAX (JMAP_ID_MAX + 4096)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts so libFuzzer records the input. */
static void
check(int ok)
{
	if (!ok)
		abort();
}

/* Whether two maps hold the same pairs. */
static int
same(const struct jmap_map *a, const struct jmap_map *b)
{
	unsigned i;

	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++)
		if (strcmp(a->e[i].type, b->e[i].type) != 0 || strcmp(a->e[i].state, b->e[i].state) != 0)
			return 0;
	return 1;
}

/* The map's own invariants, and its StateChange. */
static void
check_map(const struct jmap_map *m)
{
	static char out[JMAP_TYPES_MAX * (JMAP_TYPE_MAX + JMAP_STATE_MAX + 8) + 256];
	json_t *root, *acct;
	unsigned i;
	size_t n;

	check(m->n <= JMAP_TYPES_MAX);
	for (i = 0; i < m->n; i++) {
		check(jmap_type_valid(m->e[i].type, strlen(m->e[i].type)));
		check(jmap_state_valid(m->e[i].state, strlen(m->e[i].state)));
		check(i == 0 || strcmp(m->e[i - 1].type, m->e[i].type) < 0);
	}
	n = jmap_change_json("acct", m, out, sizeof out);
	check(n > 0);
	root = json_loadb(out, n, 0, NULL);
	check(root != NULL);
	acct = json_object_get(json_object_get(root, "changed"), "acct");
	check(json_is_object(acct) && json_object_size(acct) == m->n);
	for (i = 0; i < m->n; i++)
		check(strcmp(json_string_value(json_object_get(acct, m->e[i].type)), m->e[i].state) == 0);
	json_decref(root);
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char id[JMAP_ID_MAX * 2 + 64];
	struct jmap_map m, back, other;
	const char *nl, *p, *end;
	char *buf, *types;
	size_t n;

	if (size > FUZZ_INPUT_MAX || (buf = malloc(size + 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (jmap_map_parse_json(buf, size, &m) == 0)
		check_map(&m);
	nl = memchr(buf, '\n', size);
	if (nl != NULL)
		buf[nl - buf] = '\0';
	if (strlen(buf) == (nl != NULL ? (size_t)(nl - buf) : size) && jmap_id_decode(buf, "acct", &m) == 0) {
		check_map(&m);
		n = jmap_id_encode("acct", &m, id, sizeof id);
		check(n > 0 && n == strlen(id));
		check(jmap_id_decode(id, "acct", &back) == 0 && same(&m, &back));
		check(jmap_id_decode(id, "acct2", &other) == -1);
	}
	if (nl != NULL && strlen(nl + 1) == size - (size_t)(nl - buf) - 1 &&
	    (types = jmap_types_parse(nl + 1)) != NULL) {
		check(strcmp(types, "*") == 0 || types[0] == ',');
		if (strcmp(nl + 1, "*") == 0)
			check(jmap_types_want(types, "Anything"));
		else
			for (p = nl + 1; *p != '\0'; p = *end == ',' ? end + 1 : end) {
				char name[JMAP_TYPE_MAX + 1];
				end = strchr(p, ',');
				if (end == NULL)
					end = p + strlen(p);
				check((size_t)(end - p) <= JMAP_TYPE_MAX);
				memcpy(name, p, (size_t)(end - p));
				name[end - p] = '\0';
				check(jmap_types_want(types, name));
			}
		free(types);
	}
	free(buf);
	return 0;
}
