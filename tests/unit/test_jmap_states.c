/*
 * Unit tests for the pusher's JMAP mode (pusher/jmap_states.c) and the shared state strings
 * (common/jmap_state.c): the type-to-state mapping on Cyrus 3.6.1's own datagrams
 * (tests/fixtures/cyrus-jmapstates, rebuilt byte for byte and parsed by notify.c),
 * message events vouching for no committed state, the highest value winning in a
 * window (the intermediate MailboxModseq of a MOVE), EmailDelivery, the JSON written,
 * the window bounds, and which of two states is newer.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jmap_states.h"
#include "jmap_state.h"
#include "notify.h"

#define NEVENTS 7

static struct notify_msg fixture[NEVENTS];

/* Where the fixture copy lives, relative to the repository root (make unit runs there). */
static const char *
fixture_path(void)
{
	const char *d = getenv("SSEPUSH_JMAP_FIXTURES");

	return d != NULL ? d : "tests/fixtures/cyrus-jmapstates/events.jsonl";
}

/* Rebuilds each captured datagram as the README says and parses it with notify.c. */
static int
load_fixture(void **state)
{
	FILE *f = fopen(fixture_path(), "r");
	char line[8192], dgram[8192], err[128];
	json_error_t jerr;
	size_t i = 0;

	(void)state;
	if (f == NULL)
		return -1;
	while (i < NEVENTS && fgets(line, sizeof line, f) != NULL) {
		json_t *root = json_loads(line, 0, &jerr), *msg;
		char *text;
		size_t n, len;

		if (root == NULL)
			return -1;
		msg = json_object_get(root, "message");
		text = json_dumps(msg, JSON_COMPACT);
		n = (size_t)snprintf(dgram, sizeof dgram, "%s%c%s%c%c%c%c0%c",
		    json_string_value(json_object_get(root, "method")), 0,
		    json_string_value(json_object_get(root, "class")), 0, 0, 0, 0, 0);
		len = strlen(text);
		memcpy(dgram + n, text, len + 1);
		if (notify_parse(dgram, n + len + 1, &fixture[i], err, sizeof err) == -1) {
			fprintf(stderr, "fixture %zu: %s\n", i, err);
			return -1;
		}
		free(text);
		json_decref(root);
		i++;
	}
	fclose(f);
	return i == NEVENTS ? 0 : -1;
}

/* The mask bit of a type. */
#define BIT(t) (1u << (t))

/* The parser reads jmapStates: decimal strings into the mask and values. */
static void
test_parse_jmapstates(void **state)
{
	(void)state;
	assert_string_equal(fixture[1].event, "MailboxModseq");
	assert_string_equal(fixture[1].actor, "");
	assert_string_equal(fixture[1].owner, "alice");
	assert_true(fixture[1].jmap_mask & (1u << NOTIFY_JMAP_EMAIL));
	assert_int_equal(fixture[1].jmap[NOTIFY_JMAP_EMAIL], 4);
	assert_int_equal(fixture[1].jmap[NOTIFY_JMAP_MAILBOX], 1);
	assert_int_equal(fixture[1].jmap[NOTIFY_JMAP_QUOTA], 4);
	assert_int_equal(fixture[6].jmap[NOTIFY_JMAP_EMAIL], 7);
}

/* Only MailboxModseq (and MailboxCreate) vouch for Email, Thread and Mailbox: jmapStates.Email. */
static void
test_map_mailbox_modseq(void **state)
{
	struct jmap_states st;

	(void)state;
	jmap_map(&fixture[1], &st);
	assert_int_equal(st.mask, BIT(JMAP_EMAIL) | BIT(JMAP_THREAD) | BIT(JMAP_MAILBOX) | BIT(JMAP_QUOTA));
	assert_int_equal(st.v[JMAP_EMAIL], 4);
	assert_int_equal(st.v[JMAP_THREAD], 4);
	assert_int_equal(st.v[JMAP_MAILBOX], 4);	/* not jmapStates.Mailbox (1) */
	assert_int_equal(st.v[JMAP_QUOTA], 4);
	jmap_map(&fixture[0], &st);	/* MailboxCreate */
	assert_int_equal(st.v[JMAP_MAILBOX], 1);
	assert_true(st.mask & BIT(JMAP_EMAIL));
}

/* Message events carry the state from before the change: no Email state; new ones give EmailDelivery. */
static void
test_map_message_events(void **state)
{
	struct jmap_states st;

	(void)state;
	assert_string_equal(fixture[2].event, "MessageNew");
	jmap_map(&fixture[2], &st);
	assert_int_equal(st.mask, BIT(JMAP_EMAILDELIVERY));
	assert_int_equal(st.v[JMAP_EMAILDELIVERY], 4);	/* the record's modseq */
	assert_string_equal(fixture[5].event, "MessageExpunge");
	jmap_map(&fixture[5], &st);
	assert_int_equal(st.mask, 0);	/* an expunge changes Email, but its datagram's state is stale */
}

/* EmailDelivery without a modseq, other datagram kinds, calendar and contact counters. */
static void
test_map_synthetic(void **state)
{
	struct notify_msg m;
	struct jmap_states st;

	(void)state;
	m = fixture[2];
	m.has_modseq = false;
	jmap_map(&m, &st);
	assert_int_equal(st.v[JMAP_EMAILDELIVERY], 2);	/* Email before the change (1) + 1 */
	m = fixture[2];
	strcpy(m.event, "FlagsSet");
	jmap_map(&m, &st);
	assert_int_equal(st.mask, 0);
	strcpy(m.event, "MessageRead");
	jmap_map(&m, &st);
	assert_int_equal(st.mask, 0);
	m = fixture[6];
	m.jmap[NOTIFY_JMAP_CALENDAREVENT] = 12;
	m.jmap[NOTIFY_JMAP_CONTACT] = 9;
	m.jmap[NOTIFY_JMAP_EMAILSUBMISSION] = 3;
	jmap_map(&m, &st);
	assert_int_equal(st.v[JMAP_CALENDAR], 12);
	assert_int_equal(st.v[JMAP_CALENDAREVENT], 12);
	assert_int_equal(st.v[JMAP_CONTACT], 9);
	assert_int_equal(st.v[JMAP_CONTACTGROUP], 9);
	assert_int_equal(st.v[JMAP_EMAILSUBMISSION], 3);
	m.cls = NOTIFY_CLASS_MAIL;
	jmap_map(&m, &st);
	assert_int_equal(st.mask, 0);
}

/* The seven datagrams in one window: one update with the highest of each, in order received. */
static void
test_window_whole_fixture(void **state)
{
	struct jmap_windows *w = jmap_windows_new(500, 10, "%u");
	struct jmap_update u;
	char json[512];
	int i;

	(void)state;
	for (i = 0; i < NEVENTS; i++)
		assert_true(jmap_windows_add(w, &fixture[i], 1000 + (uint64_t)i) >= 0);
	assert_int_equal(jmap_windows_pending(w), 1);
	assert_int_equal(jmap_windows_next_deadline(w), 1500);
	assert_int_equal(jmap_windows_pop_due(w, 1499, &u), 0);
	assert_int_equal(jmap_windows_pop_due(w, 1500, &u), 1);
	assert_string_equal(u.channel, "alice");
	assert_int_equal(u.notifications, 6);	/* the expunge vouches for nothing */
	assert_int_equal(u.first_ms, 1000);
	assert_true(jmap_states_json(&u.states, json, sizeof json) > 0);
	assert_string_equal(json, "{\"Email\":\"7\",\"EmailDelivery\":\"5\",\"Mailbox\":\"7\","
	    "\"Quota\":\"6\",\"Thread\":\"7\"}");
	assert_int_equal(jmap_windows_pop_due(w, JMAP_NEVER, &u), 0);
	jmap_windows_free(w);
}

/* A MOVE's two MailboxModseq, the intermediate one last: the highest wins, whatever the order. */
static void
test_window_highest_wins(void **state)
{
	struct jmap_windows *w = jmap_windows_new(0, 10, "%u");
	struct jmap_update u;

	(void)state;
	assert_int_equal(jmap_windows_add(w, &fixture[6], 5), 1);	/* Email 7 */
	assert_int_equal(jmap_windows_add(w, &fixture[3], 5), 1);	/* Email 5, after */
	assert_int_equal(jmap_windows_pop_due(w, 5, &u), 1);
	assert_int_equal(u.states.v[JMAP_EMAIL], 7);
	assert_int_equal(u.states.v[JMAP_MAILBOX], 7);
	jmap_windows_free(w);
}

/* Windows per account, oldest first; the account bound; channel_format; shared folders. */
static void
test_window_accounts(void **state)
{
	struct jmap_windows *w = jmap_windows_new(100, 2, "%l");
	struct notify_msg m = fixture[1];
	struct jmap_update u;

	(void)state;
	strcpy(m.owner, "bob@example.com");
	assert_int_equal(jmap_windows_add(w, &m, 10), 1);
	assert_int_equal(jmap_windows_add(w, &fixture[1], 20), 1);
	strcpy(m.owner, "carol");
	assert_int_equal(jmap_windows_add(w, &m, 30), -1);	/* max_accounts */
	m.shared = true;
	m.owner[0] = '\0';
	assert_int_equal(jmap_windows_add(w, &m, 30), 0);
	assert_int_equal(jmap_windows_pop_due(w, JMAP_NEVER, &u), 1);
	assert_string_equal(u.channel, "bob");
	assert_int_equal(jmap_windows_pop_due(w, JMAP_NEVER, &u), 1);
	assert_string_equal(u.channel, "alice");
	assert_int_equal(jmap_windows_pending(w), 0);
	jmap_windows_free(w);
	jmap_windows_free(NULL);
}

/* The JSON does not overflow a short buffer. */
static void
test_json_bounds(void **state)
{
	struct jmap_states st = { BIT(JMAP_EMAIL), { 0 } };
	char buf[16];

	(void)state;
	st.v[JMAP_EMAIL] = UINT64_MAX;
	assert_int_equal(jmap_states_json(&st, buf, sizeof buf), 0);
	st.mask = 0;
	assert_int_equal(jmap_states_json(&st, buf, sizeof buf), 2);
	assert_string_equal(buf, "{}");
}

/* Decimal states compare as numbers of any length; other strings only by inequality. */
static void
test_state_newer(void **state)
{
	(void)state;
	assert_true(jmap_state_newer("10", "9"));
	assert_false(jmap_state_newer("9", "10"));
	assert_false(jmap_state_newer("7", "7"));
	assert_false(jmap_state_newer("007", "7"));
	assert_true(jmap_state_newer("123456789012345678901234567890", "123456789012345678901234567889"));
	assert_true(jmap_state_newer("J5", "J4"));
	assert_true(jmap_state_newer("J4", "J5"));	/* opaque: only "differs" */
	assert_false(jmap_state_newer("abc", "abc"));
	assert_true(jmap_type_valid("EmailDelivery", 13));
	assert_false(jmap_type_valid("Email-Delivery", 14));
	assert_false(jmap_type_valid("", 0));
	assert_true(jmap_state_valid("J7", 2));
	assert_false(jmap_state_valid("7 ", 2));
	assert_false(jmap_state_valid("x\n", 2));
}

/* Runs the suite. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_jmapstates),
		cmocka_unit_test(test_map_mailbox_modseq),
		cmocka_unit_test(test_map_message_events),
		cmocka_unit_test(test_map_synthetic),
		cmocka_unit_test(test_window_whole_fixture),
		cmocka_unit_test(test_window_highest_wins),
		cmocka_unit_test(test_window_accounts),
		cmocka_unit_test(test_json_bounds),
		cmocka_unit_test(test_state_newer),
	};

	return cmocka_run_group_tests(tests, load_fixture, NULL);
}
