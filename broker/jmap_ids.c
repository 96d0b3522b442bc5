/*
 * JMAP state maps, the ids that encode them, the ?types= filter and the StateChange
 * JSON (broker/jmap.h). Pure: no I/O, no locks; allocation only in jmap_types_parse.
 * Leaf module: libc and jansson.
 */
#include "jmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Empties a map. */
void
jmap_map_init(struct jmap_map *m)
{
	m->n = 0;
}

/* The state of a type, or NULL. */
const char *
jmap_map_get(const struct jmap_map *m, const char *type)
{
	unsigned i;

	for (i = 0; i < m->n; i++)
		if (strcmp(m->e[i].type, type) == 0)
			return m->e[i].state;
	return NULL;
}

/* Sets a type's state, keeping the map sorted; -1 if either is invalid or the map is full. */
int
jmap_map_put(struct jmap_map *m, const char *type, size_t tlen, const char *state, size_t slen)
{
	unsigned i;
	int c = 1;

	if (!jmap_type_valid(type, tlen) || !jmap_state_valid(state, slen))
		return -1;
	for (i = 0; i < m->n; i++) {
		c = strncmp(m->e[i].type, type, tlen);
		if (c == 0 && m->e[i].type[tlen] != '\0')
			c = 1;
		if (c >= 0)
			break;
	}
	if (i == m->n || c != 0) {
		if (m->n == JMAP_TYPES_MAX)
			return -1;
		memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof m->e[0]);
		m->n++;
		memcpy(m->e[i].type, type, tlen);
		m->e[i].type[tlen] = '\0';
	}
	memcpy(m->e[i].state, state, slen);
	m->e[i].state[slen] = '\0';
	return 0;
}

/*
 * Reads a flat JSON object {"Type":"state",...} into out (emptied first); pairs that
 * are not a valid type and state string are skipped. -1 if it is not a JSON object.
 */
int
jmap_map_parse_json(const char *json, size_t len, struct jmap_map *out)
{
	json_t *root = json_loadb(json, len, 0, NULL), *v;	/* new reference */
	const char *k;

	jmap_map_init(out);
	if (!json_is_object(root)) {
		json_decref(root);
		return -1;
	}
	json_object_foreach(root, k, v) {
		if (json_is_string(v))
			(void)jmap_map_put(out, k, strlen(k), json_string_value(v), json_string_length(v));
	}
	json_decref(root);
	return 0;
}

/* "s1:<account>;T=s,T=s"; returns its length, or 0 if it does not fit. */
size_t
jmap_id_encode(const char *account, const struct jmap_map *m, char *out, size_t outlen)
{
	size_t n;
	unsigned i;
	int k;

	k = snprintf(out, outlen, "%s%s;", JMAP_ID_PREFIX, account);
	if (k < 0 || (size_t)k >= outlen)
		return 0;
	n = (size_t)k;
	for (i = 0; i < m->n; i++) {
		k = snprintf(out + n, outlen - n, "%s%s=%s", i > 0 ? "," : "", m->e[i].type, m->e[i].state);
		if (k < 0 || (size_t)k >= outlen - n)
			return 0;
		n += (size_t)k;
	}
	return n;
}

/*
 * Finds account's segment in a state id: the prefix, then one "<account>;<map>" per
 * account joined by '/' (a stream of several accounts; no account id holds '/' or ';').
 * Sets *map and *maplen to the segment's map text. -1 when the id is malformed (too
 * long, another prefix, a segment without an account) or has no segment for account.
 */
static int
jmap_id_segment(const char *id, const char *account, const char **map, size_t *maplen)
{
	size_t plen = strlen(JMAP_ID_PREFIX), alen = strlen(account), len;
	const char *p, *end, *semi, *found = NULL, *found_end = NULL;

	if (id == NULL || (len = strlen(id)) > JMAP_ID_MAX || strncmp(id, JMAP_ID_PREFIX, plen) != 0)
		return -1;
	for (p = id + plen;; p = end + 1) {
		if ((end = strchr(p, '/')) == NULL)
			end = id + len;
		if ((semi = memchr(p, ';', (size_t)(end - p))) == NULL || semi == p)
			return -1;
		if (found == NULL && (size_t)(semi - p) == alen && memcmp(p, account, alen) == 0) {
			found = semi + 1;
			found_end = end;
		}
		if (*end == '\0')
			break;
	}
	if (found == NULL)
		return -1;
	*map = found;
	*maplen = (size_t)(found_end - found);
	return 0;
}

/* Reads account's states from an id back into m; -1 when it is not one (unreadable). */
int
jmap_id_decode(const char *id, const char *account, struct jmap_map *m)
{
	const char *p, *eq, *end, *stop;
	size_t len;

	jmap_map_init(m);
	if (jmap_id_segment(id, account, &p, &len) == -1)
		return -1;
	for (stop = p + len; p < stop;) {
		if ((end = memchr(p, ',', (size_t)(stop - p))) == NULL)
			end = stop;
		eq = memchr(p, '=', (size_t)(end - p));
		if (eq == NULL || jmap_map_put(m, p, (size_t)(eq - p), eq + 1, (size_t)(end - eq - 1)) == -1)
			return -1;
		if (end < stop && end + 1 == stop)
			return -1;	/* a trailing comma */
		p = end < stop ? end + 1 : end;
	}
	return 0;
}

/*
 * Writes the id of several accounts (n NUL-separated ids in accounts, the segment
 * order): account's segment from m, every other account's copied from id (NULL: none)
 * where it has one, left out where it has none. Returns its length, 0 if it does not fit.
 */
size_t
jmap_id_put(const char *id, const char *accounts, unsigned n, const char *account,
    const struct jmap_map *m, char *out, size_t outlen)
{
	const char *a = accounts, *seg;
	size_t len = strlen(JMAP_ID_PREFIX), seglen;
	unsigned i, k, written = 0;
	int w;

	if (len >= outlen)
		return 0;
	memcpy(out, JMAP_ID_PREFIX, len + 1);
	for (i = 0; i < n; i++, a += strlen(a) + 1) {
		bool mine = strcmp(a, account) == 0;

		if (!mine && jmap_id_segment(id, a, &seg, &seglen) == -1)
			continue;
		w = snprintf(out + len, outlen - len, "%s%s;", written > 0 ? "/" : "", a);
		if (w < 0 || (size_t)w >= outlen - len)
			return 0;
		len += (size_t)w;
		written++;
		if (!mine) {
			if (seglen >= outlen - len)
				return 0;
			memcpy(out + len, seg, seglen);
			out[len += seglen] = '\0';
			continue;
		}
		for (k = 0; k < m->n; k++) {
			w = snprintf(out + len, outlen - len, "%s%s=%s", k > 0 ? "," : "", m->e[k].type,
			    m->e[k].state);
			if (w < 0 || (size_t)w >= outlen - len)
				return 0;
			len += (size_t)w;
		}
	}
	return len;
}

/*
 * Normalises ?types= into a new string: "*" for every type (also when absent), else
 * ",A,B," (so a lookup is one strstr), "," for an empty list. NULL when the list is
 * too long, names an invalid type or too many of them (or on ENOMEM).
 */
char *
jmap_types_parse(const char *arg)
{
	size_t len, n = 0, k;
	const char *p, *end;
	char *out;

	if (arg == NULL || strcmp(arg, "*") == 0)
		return strdup("*");
	if ((len = strlen(arg)) > JMAP_TYPES_ARG_MAX || (out = malloc(len + 3)) == NULL)
		return NULL;
	out[0] = ',';
	out[1] = '\0';
	for (p = arg; *p != '\0'; p = *end == ',' ? end + 1 : end) {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		k = (size_t)(end - p);
		if (!jmap_type_valid(p, k) || ++n > JMAP_TYPES_MAX || (*end == ',' && end[1] == '\0')) {
			free(out);
			return NULL;
		}
		strncat(out, p, k);
		strcat(out, ",");
	}
	return out;
}

/* Whether a normalised filter lets a type through. */
bool
jmap_types_want(const char *types, const char *type)
{
	char key[JMAP_TYPE_MAX + 3];

	if (strcmp(types, "*") == 0)
		return true;
	snprintf(key, sizeof key, ",%s,", type);
	return strstr(types, key) != NULL;
}

/* Starts a StateChange: {"@type":"StateChange","changed":{ ; its length, 0 if it does not fit. */
size_t
jmap_change_begin(char *out, size_t outlen)
{
	static const char head[] = "{\"@type\":\"StateChange\",\"changed\":{";

	if (sizeof head > outlen)
		return 0;
	memcpy(out, head, sizeof head);
	return sizeof head - 1;
}

/*
 * Appends "<account>":{"T":"s",...} (after a comma unless first) to the n bytes of a
 * StateChange begun in out; returns the new length, 0 if it does not fit.
 */
size_t
jmap_change_add(char *out, size_t outlen, size_t n, bool first, const char *account,
    const struct jmap_map *changed)
{
	unsigned i;
	int k;

	/* Types, states and channel names hold no character JSON would escape. */
	k = snprintf(out + n, outlen - n, "%s\"%s\":{", first ? "" : ",", account);
	if (k < 0 || (size_t)k >= outlen - n)
		return 0;
	n += (size_t)k;
	for (i = 0; i < changed->n; i++) {
		k = snprintf(out + n, outlen - n, "%s\"%s\":\"%s\"", i > 0 ? "," : "",
		    changed->e[i].type, changed->e[i].state);
		if (k < 0 || (size_t)k >= outlen - n)
			return 0;
		n += (size_t)k;
	}
	if (n + 2 > outlen)
		return 0;
	memcpy(out + n, "}", 2);
	return n + 1;
}

/* Ends a StateChange of n bytes; returns its length, 0 if it does not fit. */
size_t
jmap_change_end(char *out, size_t outlen, size_t n)
{
	if (n == 0 || n + 3 > outlen)
		return 0;
	memcpy(out + n, "}}", 3);
	return n + 2;
}

/* {"@type":"StateChange","changed":{"<account>":{"T":"s",...}}}; 0 if it does not fit. */
size_t
jmap_change_json(const char *account, const struct jmap_map *changed, char *out, size_t outlen)
{
	size_t n = jmap_change_begin(out, outlen);

	if (n > 0)
		n = jmap_change_add(out, outlen, n, true, account, changed);
	return n > 0 ? jmap_change_end(out, outlen, n) : 0;
}

/*
 * If frame (an SSE frame as event.c wrote it) is an event of type, copies its data
 * (the data: lines joined with LF) into out and returns 0; -1 otherwise or when it
 * does not fit.
 */
int
jmap_frame_data(const char *frame, size_t len, const char *type, char *out, size_t outlen,
    size_t *datalen)
{
	const char *p = frame, *end = frame + len, *nl;
	size_t n = 0, k, tlen = strlen(type);
	bool typed = false, first = true;

	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL || nl == p)
			break;
		k = (size_t)(nl - p);
		if (k == 7 + tlen && memcmp(p, "event: ", 7) == 0 && memcmp(p + 7, type, tlen) == 0)
			typed = true;
		else if (k >= 5 && memcmp(p, "data:", 5) == 0) {
			p += k > 5 && p[5] == ' ' ? 6 : 5;
			k = (size_t)(nl - p);
			if (n + k + 2 > outlen)
				return -1;
			if (!first)
				out[n++] = '\n';
			memcpy(out + n, p, k);
			n += k;
			first = false;
		}
	}
	if (!typed)
		return -1;
	out[n] = '\0';
	*datalen = n;
	return 0;
}
