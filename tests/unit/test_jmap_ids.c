/*
 * Unit tests for the broker's JMAP state ids, maps, types filter and StateChange JSON
 * (broker/jmap_ids.c): an id decodes back to the map it encodes, only for its account
 * (an id of several accounts: each account's segment alone);
 * malformed ids are unreadable; the map stays sorted and bounded; ?types= parsing and
 * filtering; the frame reader that picks a jmap-state event's data.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jmap.h"

/* Puts a NUL-terminated pair. */
static int
put(struct jmap_map *m, const char *t, const char *s)
{
	return jmap_map_put(m, t, strlen(t), s, strlen(s));
}

/* Encode, decode: the same map, sorted by type. */
static void
test_id_round_trip(void **state)
{
	struct jmap_map m, back;
	char id[512];
	size_t n;

	(void)state;
	jmap_map_init(&m);
	assert_int_equal(put(&m, "Mailbox", "7"), 0);
	assert_int_equal(put(&m, "Email", "7"), 0);
	assert_int_equal(put(&m, "Thread", "7"), 0);
	assert_int_equal(put(&m, "Email", "8"), 0);	/* replaces */
	n = jmap_id_encode("alice@example.com", &m, id, sizeof id);
	assert_string_equal(id, "s1:alice@example.com;Email=8,Mailbox=7,Thread=7");
	assert_int_equal(n, strlen(id));
	assert_int_equal(jmap_id_decode(id, "alice@example.com", &back), 0);
	assert_int_equal(back.n, 3);
	assert_string_equal(jmap_map_get(&back, "Email"), "8");
	assert_string_equal(jmap_map_get(&back, "Thread"), "7");
	assert_null(jmap_map_get(&back, "Quota"));
	/* An empty state is an id too. */
	jmap_map_init(&m);
	jmap_id_encode("bob", &m, id, sizeof id);
	assert_string_equal(id, "s1:bob;");
	assert_int_equal(jmap_id_decode(id, "bob", &back), 0);
	assert_int_equal(back.n, 0);
	/* Too small a buffer: 0, never a cut id. */
	put(&m, "Email", "123456789");
	assert_int_equal(jmap_id_encode("bob", &m, id, 12), 0);
}

/* Ids of another account, another format, or malformed: unreadable. */
static void
test_id_unreadable(void **state)
{
	static const char *const bad[] = {
		"", "garbage", "65e5519b412e-1", "s1:bob;Email=7", "s1:alic;Email=7", "s1:alice",
		"s1:alice;Email", "s1:alice;Email=", "s1:alice;=7", "s1:alice;Email=7,",
		"s1:alice;Email=7,,Mailbox=7", "s1:alice;Em ail=7", "s1:alice;Email=7\n",
		"s2:alice;Email=7", "s1:alice;Email=7=8",
	};
	struct jmap_map m;
	char big[JMAP_ID_MAX + 64];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(jmap_id_decode(bad[i], "alice", &m), -1);
	assert_int_equal(jmap_id_decode(NULL, "alice", &m), -1);
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	memcpy(big, "s1:alice;Email=", 15);
	assert_int_equal(jmap_id_decode(big, "alice", &m), -1);
	assert_int_equal(jmap_id_decode("s1:alice;Email=7", "alice", &m), 0);
}

/* The map holds at most JMAP_TYPES_MAX types and refuses invalid names and states. */
static void
test_map_bounds(void **state)
{
	struct jmap_map m;
	char t[16];
	int i;

	(void)state;
	jmap_map_init(&m);
	for (i = 0; i < JMAP_TYPES_MAX; i++) {
		snprintf(t, sizeof t, "T%02d", i);
		assert_int_equal(put(&m, t, "1"), 0);
	}
	assert_int_equal(put(&m, "Z", "1"), -1);
	assert_int_equal(put(&m, "T05", "2"), 0);	/* replacing still works */
	jmap_map_init(&m);
	assert_int_equal(put(&m, "a\"b", "1"), -1);
	assert_int_equal(put(&m, "Email", "1\"}"), -1);
	assert_int_equal(jmap_map_put(&m, "Email", 5, "", 0), -1);
	/* A prefix of an existing name is another type. */
	assert_int_equal(put(&m, "EmailDelivery", "3"), 0);
	assert_int_equal(put(&m, "Email", "4"), 0);
	assert_int_equal(m.n, 2);
	assert_string_equal(m.e[0].type, "Email");
	assert_string_equal(jmap_map_get(&m, "EmailDelivery"), "3");
}

/* JSON objects: string values of valid pairs only; anything else is not a state. */
static void
test_parse_json(void **state)
{
	struct jmap_map m;
	const char *j = "{\"Email\":\"7\",\"Bad Name\":\"1\",\"Quota\":3,\"Mailbox\":\"7\"}";

	(void)state;
	assert_int_equal(jmap_map_parse_json(j, strlen(j), &m), 0);
	assert_int_equal(m.n, 2);
	assert_string_equal(jmap_map_get(&m, "Mailbox"), "7");
	assert_int_equal(jmap_map_parse_json("[1]", 3, &m), -1);
	assert_int_equal(jmap_map_parse_json("{", 1, &m), -1);
	assert_int_equal(jmap_map_parse_json("hello", 5, &m), -1);
}

/* ?types=: absent or "*" is every type; a list; an empty list; refusals. */
static void
test_types(void **state)
{
	char *t;

	(void)state;
	t = jmap_types_parse(NULL);
	assert_string_equal(t, "*");
	assert_true(jmap_types_want(t, "Email"));
	free(t);
	t = jmap_types_parse("Email,Mailbox");
	assert_string_equal(t, ",Email,Mailbox,");
	assert_true(jmap_types_want(t, "Email"));
	assert_true(jmap_types_want(t, "Mailbox"));
	assert_false(jmap_types_want(t, "EmailDelivery"));
	assert_false(jmap_types_want(t, "Thread"));
	assert_false(jmap_types_want(t, "mail"));
	free(t);
	t = jmap_types_parse("");
	assert_false(jmap_types_want(t, "Email"));
	free(t);
	assert_null(jmap_types_parse("Email,"));
	assert_null(jmap_types_parse(",Email"));
	assert_null(jmap_types_parse("Email,,Mailbox"));
	assert_null(jmap_types_parse("Email Mailbox"));
	assert_null(jmap_types_parse("*,Email"));
	{
		char many[JMAP_TYPES_MAX * 4 + 8] = "";
		int i;
		for (i = 0; i <= JMAP_TYPES_MAX; i++)
			sprintf(many + strlen(many), "%sT%d", i ? "," : "", i);
		assert_null(jmap_types_parse(many));
	}
}

/* The StateChange object and the frame reader. */
static void
test_change_and_frame(void **state)
{
	const char frame[] = "id: 5-1\nevent: jmap-state\ndata: {\"Email\":\ndata: \"7\"}\n\n";
	const char other[] = "id: 5-2\nevent: change\ndata: {}\n\n";
	struct jmap_map m;
	char out[256];
	size_t n;

	(void)state;
	jmap_map_init(&m);
	put(&m, "Mailbox", "9");
	put(&m, "Email", "9");
	n = jmap_change_json("alice", &m, out, sizeof out);
	assert_string_equal(out, "{\"@type\":\"StateChange\",\"changed\":{\"alice\":{\"Email\":\"9\",\"Mailbox\":\"9\"}}}");
	assert_int_equal(n, strlen(out));
	assert_int_equal(jmap_change_json("alice", &m, out, 20), 0);
	assert_int_equal(jmap_frame_data(frame, sizeof frame - 1, JMAP_STATE_EVENT, out, sizeof out, &n), 0);
	assert_string_equal(out, "{\"Email\":\n\"7\"}");
	assert_int_equal(jmap_frame_data(other, sizeof other - 1, JMAP_STATE_EVENT, out, sizeof out, &n), -1);
	assert_int_equal(jmap_frame_data(frame, sizeof frame - 1, JMAP_STATE_EVENT, out, 8, &n), -1);
}

/* Runs the suite. */
/* Ids of several accounts: a segment per account, each read alone; jmap_id_put keeps the others. */
static void
test_id_accounts(void **state)
{
	static const char accounts[] = "alice\0shared@example.com\0bob";
	struct jmap_map m, back;
	char id[512], id2[512];
	size_t n;

	(void)state;
	jmap_map_init(&m);
	put(&m, "Email", "7");
	put(&m, "Mailbox", "7");
	/* The first account's segment alone; the others have none yet. */
	n = jmap_id_put(NULL, accounts, 3, "alice", &m, id, sizeof id);
	assert_string_equal(id, "s1:alice;Email=7,Mailbox=7");
	assert_int_equal(n, strlen(id));
	jmap_map_init(&m);
	put(&m, "Email", "40");
	/* Segments follow the accounts' order, whichever came first. */
	jmap_id_put(id, accounts, 3, "bob", &m, id2, sizeof id2);
	assert_string_equal(id2, "s1:alice;Email=7,Mailbox=7/bob;Email=40");
	jmap_map_init(&m);
	jmap_id_put(id2, accounts, 3, "shared@example.com", &m, id, sizeof id);
	assert_string_equal(id, "s1:alice;Email=7,Mailbox=7/shared@example.com;/bob;Email=40");
	/* Replacing one segment keeps the others as they were. */
	put(&m, "Email", "41");
	jmap_id_put(id, accounts, 3, "bob", &m, id2, sizeof id2);
	assert_string_equal(id2, "s1:alice;Email=7,Mailbox=7/shared@example.com;/bob;Email=41");
	assert_int_equal(jmap_id_decode(id2, "alice", &back), 0);
	assert_int_equal(back.n, 2);
	assert_string_equal(jmap_map_get(&back, "Mailbox"), "7");
	assert_int_equal(jmap_id_decode(id2, "shared@example.com", &back), 0);
	assert_int_equal(back.n, 0);
	assert_int_equal(jmap_id_decode(id2, "bob", &back), 0);
	assert_string_equal(jmap_map_get(&back, "Email"), "41");
	/* An account the id has no segment for, a prefix of one, malformed segments. */
	assert_int_equal(jmap_id_decode(id2, "carol", &back), -1);
	assert_int_equal(jmap_id_decode(id2, "bo", &back), -1);
	assert_int_equal(jmap_id_decode("s1:alice;Email=7/", "alice", &back), -1);
	assert_int_equal(jmap_id_decode("s1:alice;Email=7//bob;Email=1", "bob", &back), -1);
	assert_int_equal(jmap_id_decode("s1:alice;Email=7/bob", "alice", &back), -1);
	assert_int_equal(jmap_id_decode("s1:alice;Email=7/bob;Email=1,", "bob", &back), -1);
	/* Too small a buffer: 0. */
	assert_int_equal(jmap_id_put(id2, accounts, 3, "alice", &back, id, 20), 0);
}

/* A StateChange of several accounts: begin, one object per account, end. */
static void
test_change_accounts(void **state)
{
	struct jmap_map a, b;
	char out[256];
	size_t n;

	(void)state;
	jmap_map_init(&a);
	put(&a, "Email", "8");
	jmap_map_init(&b);
	put(&b, "Mailbox", "3");
	put(&b, "Email", "3");
	n = jmap_change_begin(out, sizeof out);
	n = jmap_change_add(out, sizeof out, n, true, "alice", &a);
	n = jmap_change_add(out, sizeof out, n, false, "bob", &b);
	n = jmap_change_end(out, sizeof out, n);
	assert_string_equal(out, "{\"@type\":\"StateChange\",\"changed\":{\"alice\":{\"Email\":\"8\"},"
	    "\"bob\":{\"Email\":\"3\",\"Mailbox\":\"3\"}}}");
	assert_int_equal(n, strlen(out));
	n = jmap_change_begin(out, 40);
	assert_int_equal(jmap_change_add(out, 40, n, true, "alice", &a), 0);
	assert_int_equal(jmap_change_end(out, sizeof out, 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_round_trip),
		cmocka_unit_test(test_id_unreadable),
		cmocka_unit_test(test_map_bounds),
		cmocka_unit_test(test_parse_json),
		cmocka_unit_test(test_types),
		cmocka_unit_test(test_change_and_frame),
		cmocka_unit_test(test_id_accounts),
		cmocka_unit_test(test_change_accounts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
