/*
 * libFuzzer target for batch publish bodies: broker/publish.c's publish_batch_parse()
 * (JSON with duplicate keys refused, then every item validated), under small limits
 * (max_batch 10, max_message_size 100) so that both are within the fuzzer's reach.
 * A reference verdict written from the README's contract decides what each body must
 * get. Invariants: 0 with *out the array, every item an object with a valid channel,
 * no reserved type (ping, reset, state), valid ids, data present and within
 * max_message_size (string data valid UTF-8 without NUL); otherwise 400 or 413 (413
 * only for an item over max_message_size), *out NULL, and why a non-empty string
 * within its buffer naming the item ("item N: ") or the JSON error; for a body the
 * broker gets this far with (valid UTF-8 without NUL, as publish_handle checks first)
 * why must also be encodable by reply_error's json_pack (valid UTF-8). No leak (ASan).
 * Build and run with `make fuzz`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "broker.h"
#include "config.h"
#include "names.h"
#include "utf8.h"

#define FUZZ_BATCH_MAX 16384	/* bytes of one body */
#define FUZZ_MAX_BATCH 10
#define FUZZ_MAX_MESSAGE 100

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts so libFuzzer records the input. */
static void
check(int ok)
{
	if (!ok)
		abort();
}

/* Reports a config error at start-up: the fuzzer cannot run without its config. */
static void
report(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "fuzz_batch: %s\n", msg);
}

/* The limits from a directive array, into the snapshot publish.c reads. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const args[] = {
		"--max_batch", "10", "--max_message_size", "100", "--log_level", "error",
	};
	char *copy[sizeof args / sizeof args[0]];
	struct config *c;
	size_t i;

	(void)argc;
	(void)argv;
	for (i = 0; i < sizeof args / sizeof args[0]; i++)
		if ((copy[i] = strdup(args[i])) == NULL)	/* config_load takes char ** */
			abort();
	c = config_load(broker_directives, OPT_COUNT, NULL, (int)(sizeof args / sizeof args[0]),
	    copy, report, NULL);
	for (i = 0; i < sizeof args / sizeof args[0]; i++)
		free(copy[i]);
	if (c == NULL)
		abort();
	options_snapshot(c);
	broker_config = c;
	check(opt(OPT_MAX_BATCH) == FUZZ_MAX_BATCH && opt(OPT_MAX_MESSAGE_SIZE) == FUZZ_MAX_MESSAGE);
	return 0;
}

/* An optional string member: absent or null (1, *s NULL), a string (1), else 0. */
static int
ref_member(json_t *item, const char *key, const char **s)
{
	json_t *v = json_object_get(item, key);

	*s = NULL;
	if (v == NULL || json_is_null(v))
		return 1;
	if (!json_is_string(v))
		return 0;
	*s = json_string_value(v);
	return 1;
}

/* Whether an id member is absent or valid. */
static int
ref_id(const char *s)
{
	return s == NULL || names_id_valid(s, strlen(s));
}

/* Bytes the item's data is published as: a string's own, else its compact JSON. */
static size_t
ref_data_len(json_t *data)
{
	char *s;
	size_t n;

	if (json_is_string(data))
		return json_string_length(data);
	s = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
	check(s != NULL);
	n = strlen(s);
	free(s);
	return n;
}

/* The reference verdict of one item: 0, 400 or 413. */
static unsigned
ref_item(json_t *item)
{
	const char *ch, *type, *sess, *excl, *orig;
	json_t *data;

	if (!json_is_object(item))
		return 400;
	if (!ref_member(item, "channel", &ch) || ch == NULL || !names_channel_valid(ch, strlen(ch)))
		return 400;
	if (!ref_member(item, "event", &type) || !ref_member(item, "session", &sess) ||
	    !ref_member(item, "exclude_session", &excl) || !ref_member(item, "origin", &orig))
		return 400;
	if (type != NULL && (!names_event_type_valid(type, strlen(type)) ||
	    (strcmp(type, "ping") == 0 || strcmp(type, "reset") == 0 || strcmp(type, "state") == 0)))
		return 400;
	if (!ref_id(sess) || !ref_id(excl) || !ref_id(orig))
		return 400;
	if ((data = json_object_get(item, "data")) == NULL)
		return 400;
	if (ref_data_len(data) > FUZZ_MAX_MESSAGE)
		return 413;
	return 0;
}

/* Everything a validated item must satisfy, however it was decided. */
static void
check_item(json_t *item)
{
	const char *type;
	json_t *data = json_object_get(item, "data"), *ch = json_object_get(item, "channel");

	check(json_is_object(item));
	check(json_is_string(ch) && names_channel_valid(json_string_value(ch), json_string_length(ch)));
	check(ref_member(item, "event", &type));
	check(type == NULL || (names_event_type_valid(type, strlen(type)) &&
	    !names_event_type_reserved(type, strlen(type))));
	check(data != NULL && ref_data_len(data) <= FUZZ_MAX_MESSAGE);
	if (json_is_string(data))
		check(memchr(json_string_value(data), '\0', json_string_length(data)) == NULL &&
		    utf8_valid(json_string_value(data), json_string_length(data)));
}

/* Parses the body, checks the result against the reference verdict, frees all. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	char why[256], prefix[32];
	json_t *out = (json_t *)&out, *ref, *item, *e;
	unsigned status, want = 0;
	size_t i, n;
	int reached = utf8_valid(body, size) && memchr(body, '\0', size) == NULL;

	if (size > FUZZ_BATCH_MAX)
		return 0;
	memset(why, 'Z', sizeof why);
	status = publish_batch_parse(body, size, &out, why, sizeof why);
	/* The reference, item by item; the first bad item decides. */
	ref = json_loadb(body, size, JSON_REJECT_DUPLICATES, NULL);
	if (ref == NULL || !json_is_array(ref) || json_array_size(ref) > FUZZ_MAX_BATCH)
		want = 400;
	json_array_foreach(want == 0 ? ref : NULL, i, item)
		if ((want = ref_item(item)) != 0)
			break;
	check(status == want);
	if (status == 0) {
		check(out != NULL && json_is_array(out) && json_array_size(out) <= FUZZ_MAX_BATCH);
		check(json_equal(out, ref));
		json_array_foreach(out, n, item)
			check_item(item);
		json_decref(out);
	} else {
		check(out == NULL);
		check(memchr(why, '\0', sizeof why) != NULL && why[0] != '\0');
		if (ref == NULL)
			check(strncmp(why, "invalid JSON: ", 14) == 0);
		if (ref != NULL && json_is_array(ref) && json_array_size(ref) <= FUZZ_MAX_BATCH) {
			snprintf(prefix, sizeof prefix, "item %zu: ", i);
			check(strncmp(why, prefix, strlen(prefix)) == 0);
		}
		if (status == 413)
			check(strstr(why, "too large") != NULL);
		/* reply_error sends why as {"error": why}: jansson must be able to encode it. */
		if (reached) {
			check(utf8_valid(why, strlen(why)));
			check((e = json_pack("{s:s}", "error", why)) != NULL);
			json_decref(e);
		}
	}
	json_decref(ref);
	return 0;
}
