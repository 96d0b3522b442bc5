/*
 * Unit tests for per-user coalescing (pusher/coalesce.c): bursts become one event,
 * origin only when one session made the whole window, window boundaries and ordering,
 * the events filter, channel_format expansion and validation, the users and mailboxes
 * bounds, shared folders, counter merging, and real fixture sequences end to end.
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

#include "coalesce.h"
#include "notify.h"

#define SESSION_A "cyrustest-1795341146-21638-1-413195114991014959"
#define SESSION_B "cyrustest-1795341146-21638-2-11888213923017869681"

/* A notification as the parser would produce it; modseq/uidnext/unseen < 0 = absent. */
static struct notify_msg
msg(const char *event, const char *owner, const char *mailbox, const char *session,
    long long modseq, long long uidnext, long long unseen)
{
	struct notify_msg m;

	memset(&m, 0, sizeof(m));
	m.cls = strcmp(event, "MAIL") == 0 ? NOTIFY_CLASS_MAIL : NOTIFY_CLASS_EVENT;
	snprintf(m.event, sizeof(m.event), "%s", event);
	snprintf(m.owner, sizeof(m.owner), "%s", owner);
	snprintf(m.mailbox, sizeof(m.mailbox), "%s", mailbox);
	snprintf(m.session, sizeof(m.session), "%s", session);
	m.shared = owner[0] == '\0';
	m.has_modseq = modseq >= 0;
	m.modseq = m.has_modseq ? (uint64_t)modseq : 0;
	m.has_uidnext = uidnext >= 0;
	m.uidnext = m.has_uidnext ? (uint64_t)uidnext : 0;
	m.has_unseen = unseen >= 0;
	m.unseen = m.has_unseen ? (uint64_t)unseen : 0;
	return m;
}

/* A coalescer with a 500 ms window and otherwise the given knobs. */
static struct coalesce *
mk(const char *events, const char *format, size_t max_users, size_t max_mailboxes)
{
	struct coalesce_config cfg = { 500, events, format, NULL, max_users, max_mailboxes };
	char err[256];
	struct coalesce *c = coalesce_new(&cfg, err, sizeof(err));

	if (c == NULL)
		fail_msg("coalesce_new: %s", err);
	return c;
}

/* Adds and requires success. */
static void
add(struct coalesce *c, struct notify_msg m, uint64_t now)
{
	if (coalesce_add(c, &m, now) != 0)
		fail_msg("coalesce_add: %s", coalesce_error(c));
}

/* Pops one event that must be due, and parses its payload (new reference). */
static json_t *
pop(struct coalesce *c, uint64_t now, struct coalesce_event *ev)
{
	json_error_t jerr;
	json_t *j;

	assert_int_equal(coalesce_pop_due(c, now, ev), 1);
	assert_int_equal(strlen(ev->payload), ev->payload_len);
	j = json_loads(ev->payload, 0, &jerr);
	assert_non_null(j);
	return j;
}

/* The JSON array arr as a comma-joined string, for compact asserts. */
static const char *
joined(json_t *arr)
{
	static char buf[1024];
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = 0; i < json_array_size(arr); i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", i ? "," : "",
		    json_string_value(json_array_get(arr, i)));
	return buf;
}

/* A burst within one window from one session is one event, with that session as origin. */
static void
test_burst_one_event(void **state)
{
	struct coalesce *c = mk(NULL, NULL, 0, 0);
	struct coalesce_event ev;
	json_t *j, *mb;
	int i;

	(void)state;
	for (i = 0; i < 10; i++) {
		add(c, msg("MailboxModseq", "alice", "INBOX", SESSION_A, -1, -1, -1), 1000 + i);
		add(c, msg(i % 2 ? "FlagsSet" : "MessageRead", "alice", "INBOX", SESSION_A,
		    10 + i, 5, 9 - i), 1000 + i);
	}
	assert_int_equal(coalesce_pending(c), 1);
	assert_int_equal(coalesce_next_deadline(c), 1500);
	assert_int_equal(coalesce_pop_due(c, 1499, &ev), 0);
	j = pop(c, 1500, &ev);
	assert_string_equal(ev.channel, "alice");
	assert_string_equal(ev.user, "alice");
	assert_string_equal(ev.origin, SESSION_A);
	assert_int_equal(ev.notifications, 20);
	assert_int_equal(ev.first_ms, 1000);	/* the window's first notification, for the latency */
	assert_string_equal(json_string_value(json_object_get(j, "user")), "alice");
	assert_string_equal(json_string_value(json_object_get(j, "origin")), SESSION_A);
	assert_string_equal(joined(json_object_get(j, "events")), "FlagsSet,MailboxModseq,MessageRead");
	assert_int_equal(json_array_size(json_object_get(j, "mailboxes")), 1);
	mb = json_array_get(json_object_get(j, "mailboxes"), 0);
	assert_string_equal(json_string_value(json_object_get(mb, "name")), "INBOX");
	assert_int_equal(json_integer_value(json_object_get(mb, "modseq")), 19);
	assert_int_equal(json_integer_value(json_object_get(mb, "unseen")), 0);
	assert_int_equal(json_integer_value(json_object_get(mb, "uidnext")), 5);
	assert_null(json_object_get(j, "truncated"));
	assert_int_equal(json_integer_value(json_object_get(j, "notifications")), 20);
	json_decref(j);
	coalesce_event_clear(&ev);
	coalesce_event_clear(&ev);
	assert_int_equal(coalesce_pending(c), 0);
	assert_int_equal(coalesce_next_deadline(c), COALESCE_NEVER);
	assert_int_equal(coalesce_pop_due(c, 99999, &ev), 0);
	assert_int_equal(coalesce_stats(c)->emitted, 1);
	assert_int_equal(coalesce_stats(c)->added, 20);
	coalesce_free(c);
}

/* Two sessions (or a message without one) in a window: no origin, so nobody is skipped. */
static void
test_origin_mixed(void **state)
{
	struct coalesce *c = mk(NULL, NULL, 0, 0);
	struct coalesce_event ev;
	json_t *j;

	(void)state;
	add(c, msg("FlagsSet", "alice", "INBOX", SESSION_A, 5, -1, -1), 0);
	add(c, msg("FlagsClear", "alice", "INBOX", SESSION_B, 6, -1, -1), 10);
	add(c, msg("FlagsSet", "bob", "INBOX", SESSION_A, 5, -1, -1), 20);
	add(c, msg("MAIL", "bob", "INBOX", "", -1, -1, -1), 30);
	add(c, msg("FlagsSet", "carol", "INBOX", "", 5, -1, -1), 40);
	add(c, msg("FlagsSet", "carol", "INBOX", "", 6, -1, -1), 50);
	while (coalesce_pending(c) > 0) {
		j = pop(c, 10000, &ev);
		assert_string_equal(ev.origin, "");
		assert_null(json_object_get(j, "origin"));
		json_decref(j);
		coalesce_event_clear(&ev);
	}
	coalesce_free(c);
}

/* Windows open on the first message, close coalesce_ms later, and pop oldest first. */
static void
test_window_boundaries(void **state)
{
	struct coalesce *c = mk(NULL, NULL, 0, 0);
	struct coalesce_event ev;
	json_t *j;

	(void)state;
	add(c, msg("MessageNew", "alice", "INBOX", SESSION_A, 1, 2, 1), 1000);
	add(c, msg("MessageNew", "bob", "INBOX", SESSION_A, 1, 2, 1), 1100);
	add(c, msg("MessageNew", "alice", "Archive", SESSION_A, 1, 2, 1), 1499);
	assert_int_equal(coalesce_next_deadline(c), 1500);
	assert_int_equal(coalesce_pop_due(c, 1499, &ev), 0);
	j = pop(c, 1500, &ev);
	assert_string_equal(ev.user, "alice");
	assert_int_equal(ev.notifications, 2);
	assert_int_equal(json_array_size(json_object_get(j, "mailboxes")), 2);
	json_decref(j);
	coalesce_event_clear(&ev);
	assert_int_equal(coalesce_next_deadline(c), 1600);
	assert_int_equal(coalesce_pop_due(c, 1599, &ev), 0);
	/* a message at the old deadline, after the pop, opens a new window */
	add(c, msg("MessageNew", "alice", "INBOX", SESSION_A, 2, 3, 2), 1500);
	assert_int_equal(coalesce_pending(c), 2);
	j = pop(c, 2000, &ev);
	assert_string_equal(ev.user, "bob");
	json_decref(j);
	coalesce_event_clear(&ev);
	j = pop(c, 2000, &ev);
	assert_string_equal(ev.user, "alice");
	assert_int_equal(ev.notifications, 1);
	json_decref(j);
	coalesce_event_clear(&ev);
	/* time stepping back never reorders the FIFO */
	add(c, msg("MessageNew", "alice", "INBOX", "", 3, 4, 3), 5000);
	add(c, msg("MessageNew", "bob", "INBOX", "", 3, 4, 3), 4000);
	assert_int_equal(coalesce_next_deadline(c), 5500);
	assert_int_equal(coalesce_pop_due(c, COALESCE_NEVER, &ev), 1);
	assert_string_equal(ev.user, "alice");
	coalesce_event_clear(&ev);
	assert_int_equal(coalesce_pop_due(c, 5500, &ev), 1);
	assert_string_equal(ev.user, "bob");
	coalesce_event_clear(&ev);
	/* pending windows are freed with the coalescer */
	add(c, msg("MessageNew", "dave", "INBOX", "", 3, 4, 3), 6000);
	coalesce_free(c);
}

/* A zero-length window flushes at the next pop. */
static void
test_zero_window(void **state)
{
	struct coalesce_config cfg = { 0, NULL, NULL, NULL, 0, 0 };
	struct coalesce *c = coalesce_new(&cfg, NULL, 0);
	struct coalesce_event ev;

	(void)state;
	assert_non_null(c);
	add(c, msg("MessageNew", "alice", "INBOX", "", 1, 2, 1), 7);
	assert_int_equal(coalesce_pop_due(c, 7, &ev), 1);
	coalesce_event_clear(&ev);
	coalesce_free(c);
}

/* The events filter: Login/Logout off by default, explicit lists, "all", bad specs. */
static void
test_events_filter(void **state)
{
	static const char *const bad[] = { "", " , ", "Message New!", "-Login", "MessageNew,-Login" };
	struct coalesce_config cfg = { 500, NULL, NULL, NULL, 0, 0 };
	struct coalesce *c = mk(NULL, NULL, 0, 0);
	struct coalesce_event ev;
	char err[256];
	json_t *j;
	size_t i;

	(void)state;
	add(c, msg("Login", "alice", "", SESSION_A, -1, -1, -1), 0);
	add(c, msg("Logout", "alice", "", SESSION_A, -1, -1, -1), 0);
	assert_int_equal(coalesce_pending(c), 0);
	assert_int_equal(coalesce_stats(c)->filtered, 2);
	add(c, msg("QuotaChange", "alice", "INBOX", SESSION_A, -1, -1, -1), 0);
	add(c, msg("vnd.cmu.MessageMove", "alice", "Archive", SESSION_A, 7, 3, 0), 0);
	assert_int_equal(coalesce_pending(c), 1);
	coalesce_free(c);

	c = mk("MessageNew, MAIL", NULL, 0, 0);
	add(c, msg("FlagsSet", "alice", "INBOX", SESSION_A, 5, -1, -1), 0);
	assert_int_equal(coalesce_pending(c), 0);
	add(c, msg("MAIL", "alice", "INBOX", "", -1, -1, -1), 0);
	add(c, msg("MessageNew", "alice", "INBOX", SESSION_A, 2, 3, 1), 0);
	j = pop(c, 500, &ev);
	assert_string_equal(joined(json_object_get(j, "events")), "MAIL,MessageNew");
	json_decref(j);
	coalesce_event_clear(&ev);
	coalesce_free(c);

	c = mk("all", NULL, 0, 0);
	add(c, msg("Login", "alice", "", SESSION_A, -1, -1, -1), 0);
	j = pop(c, 500, &ev);
	assert_string_equal(joined(json_object_get(j, "events")), "Login");
	assert_int_equal(json_array_size(json_object_get(j, "mailboxes")), 0);
	json_decref(j);
	coalesce_event_clear(&ev);
	coalesce_free(c);

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.events = bad[i];
		if (coalesce_new(&cfg, err, sizeof(err)) != NULL)
			fail_msg("events '%s' accepted", bad[i]);
		assert_non_null(strstr(err, "events"));
	}
}

/* channel_format expansion and the broker's channel rules. */
static void
test_channel_format(void **state)
{
	static const struct {
		const char *fmt, *owner, *want;	/* want NULL: invalid */
	} cases[] = {
		{ "%u", "alice", "alice" },
		{ "%u", "alice@example.com", "alice@example.com" },
		{ "%l", "alice@example.com", "alice" },
		{ "%d", "alice@example.com", "example.com" },
		{ "mail-%d-%l", "alice@example.com", "mail-example.com-alice" },
		{ "%l", "a@b@example.com", "a@b" },
		{ "%u", "john.doe", "john.doe" },
		{ "%d", "alice", NULL },
		{ "%u", "alice smith", NULL },
		{ "%u", "\xc3\x9c" "ser", NULL },
		{ "%%%u", "alice", NULL },
		{ "x%", "alice", NULL },
		{ "%q", "alice", NULL },
	};
	static const char *const bad_formats[] = { "%x", "a b", "%", "", "u/%u" };
	struct coalesce_config cfg = { 500, NULL, NULL, NULL, 0, 0 };
	char dst[NAMES_CHANNEL_MAX + 1], longowner[300], err[256];
	struct coalesce *c;
	struct coalesce_event ev;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = coalesce_channel(cases[i].fmt, cases[i].owner, dst, sizeof(dst));
		if (cases[i].want == NULL && rc != -1)
			fail_msg("'%s' '%s' gave '%s'", cases[i].fmt, cases[i].owner, dst);
		if (cases[i].want != NULL && (rc != 0 || strcmp(dst, cases[i].want) != 0))
			fail_msg("'%s' '%s' gave %d '%s'", cases[i].fmt, cases[i].owner, rc, dst);
	}
	memset(longowner, 'a', 201);
	longowner[201] = '\0';
	assert_int_equal(coalesce_channel("%u", longowner, dst, sizeof(dst)), -1);
	longowner[200] = '\0';
	assert_int_equal(coalesce_channel("%u", longowner, dst, sizeof(dst)), 0);
	assert_int_equal(coalesce_channel("x%u", longowner, dst, sizeof(dst)), -1);
	for (i = 0; i < sizeof(bad_formats) / sizeof(bad_formats[0]); i++) {
		cfg.channel_format = bad_formats[i];
		if (coalesce_new(&cfg, err, sizeof(err)) != NULL)
			fail_msg("format '%s' accepted", bad_formats[i]);
		assert_non_null(strstr(err, "channel_format"));
	}

	/* used by coalesce_add: %l.%d, and a user it cannot name is dropped and counted */
	c = mk(NULL, "u.%l.%d", 0, 0);
	add(c, msg("MessageNew", "alice@example.com", "INBOX", "", 1, 2, 1), 0);
	{
		struct notify_msg m = msg("MessageNew", "bob", "INBOX", "", 1, 2, 1);
		assert_int_equal(coalesce_add(c, &m, 0), 0);	/* "u.bob." is a valid name */
		m = msg("MessageNew", "bad user", "INBOX", "", 1, 2, 1);
		assert_int_equal(coalesce_add(c, &m, 0), -1);
		assert_non_null(strstr(coalesce_error(c), "channel"));
		assert_int_equal(coalesce_stats(c)->bad_channel, 1);
	}
	assert_int_equal(coalesce_pop_due(c, 500, &ev), 1);
	assert_string_equal(ev.channel, "u.alice.example.com");
	assert_string_equal(ev.user, "alice@example.com");
	coalesce_event_clear(&ev);
	assert_int_equal(coalesce_pop_due(c, 500, &ev), 1);
	assert_string_equal(ev.channel, "u.bob.");
	coalesce_event_clear(&ev);
	coalesce_free(c);
}

/* max_users drops (and counts) new users; max_mailboxes truncates (and flags) the list. */
static void
test_bounds(void **state)
{
	struct coalesce *c = mk(NULL, NULL, 2, 2);
	struct notify_msg m;
	struct coalesce_event ev;
	json_t *j;

	(void)state;
	add(c, msg("MessageNew", "alice", "INBOX", "", 1, 2, 1), 0);
	add(c, msg("MessageNew", "bob", "INBOX", "", 1, 2, 1), 0);
	m = msg("MessageNew", "carol", "INBOX", "", 1, 2, 1);
	assert_int_equal(coalesce_add(c, &m, 0), -1);
	assert_non_null(strstr(coalesce_error(c), "max_users"));
	assert_int_equal(coalesce_stats(c)->dropped_users, 1);
	/* existing users still join their windows */
	add(c, msg("MailboxCreate", "alice", "A", "", -1, -1, -1), 1);
	add(c, msg("MailboxCreate", "alice", "B", "", -1, -1, -1), 2);
	add(c, msg("MailboxDelete", "alice", "A", "", -1, -1, -1), 3);
	assert_int_equal(coalesce_stats(c)->mailbox_overflow, 1);
	j = pop(c, 500, &ev);
	assert_int_equal(json_array_size(json_object_get(j, "mailboxes")), 2);
	assert_true(json_is_true(json_object_get(j, "truncated")));
	/* the left-out mailbox's kind is still reported */
	assert_string_equal(joined(json_object_get(j, "events")),
	    "MailboxCreate,MailboxDelete,MessageNew");
	json_decref(j);
	coalesce_event_clear(&ev);
	/* a slot freed by the pop takes a new user */
	assert_int_equal(coalesce_add(c, &m, 600), 0);
	assert_int_equal(coalesce_pending(c), 2);
	coalesce_free(c);
}

/* Shared folders are skipped unless shared_channel names a channel for them. */
static void
test_shared(void **state)
{
	struct coalesce_config cfg = { 500, NULL, NULL, "shared-folders", 0, 0 };
	struct coalesce *c = mk(NULL, NULL, 0, 0);
	struct coalesce_event ev;
	char err[256];
	json_t *j;

	(void)state;
	add(c, msg("MessageNew", "", "shared/news", "", 1, 2, 1), 0);
	assert_int_equal(coalesce_pending(c), 0);
	assert_int_equal(coalesce_stats(c)->shared_skipped, 1);
	coalesce_free(c);

	c = coalesce_new(&cfg, err, sizeof(err));
	assert_non_null(c);
	add(c, msg("MessageNew", "", "shared/news", "", 1, 2, 1), 0);
	add(c, msg("MessageNew", "", "news@example.com", "", 1, 2, 1), 0);
	j = pop(c, 500, &ev);
	assert_string_equal(ev.channel, "shared-folders");
	assert_string_equal(ev.user, "");
	assert_true(json_is_true(json_object_get(j, "shared")));
	assert_null(json_object_get(j, "user"));
	assert_int_equal(json_array_size(json_object_get(j, "mailboxes")), 2);
	json_decref(j);
	coalesce_event_clear(&ev);
	coalesce_free(c);

	cfg.shared_channel = "no spaces";
	assert_null(coalesce_new(&cfg, err, sizeof(err)));
}

/* modseq and uidnext keep the highest value; unseen follows the newest modseq. */
static void
test_counter_merge(void **state)
{
	struct coalesce *c = mk(NULL, NULL, 0, 0);
	struct notify_msg m;
	struct coalesce_event ev;
	json_t *j, *mb;

	(void)state;
	m = msg("MessageNew", "alice", "INBOX", "", 9, 6, 3);
	snprintf(m.mailbox_id, sizeof(m.mailbox_id), "dd6dtln28pmli2bmz6mo93ph");
	add(c, m, 0);
	add(c, msg("MessageRead", "alice", "INBOX", "", 7, 5, 4), 1);	/* older, arrived late */
	add(c, msg("MailboxModseq", "alice", "INBOX", "", -1, -1, -1), 2);
	j = pop(c, 500, &ev);
	mb = json_array_get(json_object_get(j, "mailboxes"), 0);
	assert_string_equal(json_string_value(json_object_get(mb, "id")), "dd6dtln28pmli2bmz6mo93ph");
	assert_int_equal(json_integer_value(json_object_get(mb, "modseq")), 9);
	assert_int_equal(json_integer_value(json_object_get(mb, "uidnext")), 6);
	assert_int_equal(json_integer_value(json_object_get(mb, "unseen")), 3);
	assert_string_equal(joined(json_object_get(mb, "events")), "MailboxModseq,MessageNew,MessageRead");
	json_decref(j);
	coalesce_event_clear(&ev);
	/* a mailbox with no counters at all lists only name and events */
	add(c, msg("MailboxCreate", "alice", "Archive", "", -1, -1, -1), 600);
	assert_int_equal(coalesce_pop_due(c, 1100, &ev), 1);
	assert_string_equal(ev.payload, "{\"user\":\"alice\",\"mailboxes\":[{\"name\":\"Archive\","
	    "\"events\":[\"MailboxCreate\"]}],\"events\":[\"MailboxCreate\"],\"notifications\":1}");
	coalesce_event_clear(&ev);
	coalesce_free(c);
}

/* Parses a fixture file into *m. */
static void
fixture(const char *rel, struct notify_msg *m)
{
	const char *d = getenv("SSEPUSH_FIXTURES");
	char path[512], buf[65536], err[128];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", d != NULL ? d : "tests/fixtures/cyrus-notify", rel);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	if (notify_parse(buf, n, m, err, sizeof(err)) != 0)
		fail_msg("%s: %s", rel, err);
}

/* Real sequences: an LMTP delivery, and alice's first IMAP session (rich/004-020). */
static void
test_fixture_sequences(void **state)
{
	static const char *const delivery[] = { "rich/004-MailboxModseq.bin",
	    "rich/005-MessageNew.bin", "rich/006-MAIL.bin" };
	struct coalesce *c = mk(NULL, NULL, 0, 0);
	struct coalesce_event ev;
	struct notify_msg m;
	char rel[64];
	json_t *j, *mb;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		fixture(delivery[i], &m);
		add(c, m, 10 * i);
	}
	j = pop(c, 520, &ev);
	assert_string_equal(ev.channel, "alice");
	assert_string_equal(ev.origin, "");	/* the MAIL datagram has no session */
	assert_string_equal(joined(json_object_get(j, "events")), "MAIL,MailboxModseq,MessageNew");
	mb = json_array_get(json_object_get(j, "mailboxes"), 0);
	assert_int_equal(json_array_size(json_object_get(j, "mailboxes")), 1);
	assert_int_equal(json_integer_value(json_object_get(mb, "modseq")), 2);
	assert_int_equal(json_integer_value(json_object_get(mb, "unseen")), 1);
	json_decref(j);
	coalesce_event_clear(&ev);

	for (i = 7; i <= 20; i++) {
		static const char *const names[] = { "Login", "MailboxModseq", "MessageRead",
		    "FlagsClear", "MailboxModseq", "MessageRead", "MailboxModseq", "FlagsSet",
		    "MailboxModseq", "FlagsClear", "MailboxModseq", "FlagsClear", "FlagsSet",
		    "MailboxModseq" };
		snprintf(rel, sizeof(rel), "rich/%03zu-%s.bin", i, names[i - 7]);
		fixture(rel, &m);
		add(c, m, 1000 + i);
	}
	j = pop(c, 1600, &ev);
	assert_string_equal(ev.origin, SESSION_A);	/* Login was filtered, the rest is one session */
	assert_int_equal(ev.notifications, 13);
	assert_string_equal(joined(json_object_get(j, "events")),
	    "FlagsClear,FlagsSet,MailboxModseq,MessageRead");
	json_decref(j);
	coalesce_event_clear(&ev);
	assert_int_equal(coalesce_stats(c)->filtered, 1);
	coalesce_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_one_event),
		cmocka_unit_test(test_origin_mixed),
		cmocka_unit_test(test_window_boundaries),
		cmocka_unit_test(test_zero_window),
		cmocka_unit_test(test_events_filter),
		cmocka_unit_test(test_channel_format),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_shared),
		cmocka_unit_test(test_counter_merge),
		cmocka_unit_test(test_fixture_sequences),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
