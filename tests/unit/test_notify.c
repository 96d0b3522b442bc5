/*
 * Unit tests for the Cyrus notify parser (pusher/notify.c): every captured datagram in
 * tests/fixtures/cyrus-notify parses to the owner, mailbox and counters the fixture
 * README describes; synthetic datagrams cover the '.' separator, percent-encoding,
 * virtual domains, shared folders, and a table of malformed inputs with their reasons.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "notify.h"

/* Where the fixture copies live, relative to the repository root (make unit runs there). */
static const char *
fixture_dir(void)
{
	const char *d = getenv("SSEPUSH_FIXTURES");

	return d != NULL ? d : "tests/fixtures/cyrus-notify";
}

/* Expected fields of one fixture; -1 means the counter is absent from the JSON. */
struct expect {
	const char *file;
	enum notify_class cls;
	const char *event, *owner, *mailbox, *actor;
	bool shared;
	long long modseq, uidnext, unseen;
	const char *session;
};

/*
 * Derived from the fixture README's rule (uri path up to ';', percent-decoded, split on the
 * separator after "user", the part after the last '@' is the virtual domain; Login/Logout
 * concern the acting user; MAIL: user = recipient) by a separate script, then reviewed
 * against the README's tables.
 */
static const struct expect fixtures[] = {
	{ "rich/001-Login.bin", NOTIFY_CLASS_EVENT, "Login", "admin", "", "admin", false, -1, -1, -1, "cyrustest-1795341144-21559-2-4294678359402849223" },
	{ "rich/002-MailboxCreate.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice", "INBOX", "admin", false, -1, -1, -1, "cyrustest-1795341144-21559-2-4294678359402849223" },
	{ "rich/003-MailboxCreate.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "bob", "INBOX", "admin", false, -1, -1, -1, "cyrustest-1795341144-21559-2-4294678359402849223" },
	{ "rich/004-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341145-21620-2-7353606518686957703" },
	{ "rich/005-MessageNew.bin", NOTIFY_CLASS_EVENT, "MessageNew", "alice", "INBOX", "alice", false, 2, 2, 1, "cyrustest-1795341145-21620-2-7353606518686957703" },
	{ "rich/006-MAIL.bin", NOTIFY_CLASS_MAIL, "MAIL", "alice", "INBOX", "alice", false, -1, -1, -1, "" },
	{ "rich/007-Login.bin", NOTIFY_CLASS_EVENT, "Login", "alice", "", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/008-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/009-MessageRead.bin", NOTIFY_CLASS_EVENT, "MessageRead", "alice", "INBOX", "alice", false, 3, 2, 0, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/010-FlagsClear.bin", NOTIFY_CLASS_EVENT, "FlagsClear", "alice", "INBOX", "alice", false, 4, 2, 1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/011-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/012-MessageRead.bin", NOTIFY_CLASS_EVENT, "MessageRead", "alice", "INBOX", "alice", false, 5, 2, 0, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/013-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/014-FlagsSet.bin", NOTIFY_CLASS_EVENT, "FlagsSet", "alice", "INBOX", "alice", false, 6, 2, 0, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/015-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/016-FlagsClear.bin", NOTIFY_CLASS_EVENT, "FlagsClear", "alice", "INBOX", "alice", false, 7, 2, 0, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/017-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/018-FlagsClear.bin", NOTIFY_CLASS_EVENT, "FlagsClear", "alice", "INBOX", "alice", false, 8, 2, 1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/019-FlagsSet.bin", NOTIFY_CLASS_EVENT, "FlagsSet", "alice", "INBOX", "alice", false, 8, 2, 1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/020-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/021-MailboxCreate.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice", "Archive", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/022-MailboxSubscribe.bin", NOTIFY_CLASS_EVENT, "MailboxSubscribe", "alice", "Archive", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/023-MailboxUnSubscribe.bin", NOTIFY_CLASS_EVENT, "MailboxUnSubscribe", "alice", "Archive", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/024-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "Archive", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/025-vnd.cmu.MessageCopy.bin", NOTIFY_CLASS_EVENT, "vnd.cmu.MessageCopy", "alice", "Archive", "alice", false, 2, 2, 1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/026-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341151-21620-1-8147912634075096491" },
	{ "rich/027-MessageNew.bin", NOTIFY_CLASS_EVENT, "MessageNew", "alice", "INBOX", "alice", false, 9, 3, 2, "cyrustest-1795341151-21620-1-8147912634075096491" },
	{ "rich/028-MAIL.bin", NOTIFY_CLASS_MAIL, "MAIL", "alice", "INBOX", "alice", false, -1, -1, -1, "" },
	{ "rich/029-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "Archive", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/030-vnd.cmu.MessageMove.bin", NOTIFY_CLASS_EVENT, "vnd.cmu.MessageMove", "alice", "Archive", "alice", false, 3, 3, 2, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/031-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/032-MessageExpunge.bin", NOTIFY_CLASS_EVENT, "MessageExpunge", "alice", "INBOX", "alice", false, 10, 3, 1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/033-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/034-MessageAppend.bin", NOTIFY_CLASS_EVENT, "MessageAppend", "alice", "INBOX", "alice", false, 11, 4, 1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/035-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "Archive", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/036-MessageAppend.bin", NOTIFY_CLASS_EVENT, "MessageAppend", "alice", "Archive", "alice", false, 4, 4, 3, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/037-MessageTrash.bin", NOTIFY_CLASS_EVENT, "MessageTrash", "alice", "INBOX", "alice", false, 12, 4, 1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/038-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/039-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/040-MessageExpunge.bin", NOTIFY_CLASS_EVENT, "MessageExpunge", "alice", "INBOX", "alice", false, 13, 4, 0, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/041-MailboxCreate.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice", "Junk", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/042-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "Archive", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/043-MailboxRename.bin", NOTIFY_CLASS_EVENT, "MailboxRename", "alice", "Old", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/044-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/045-AclChange.bin", NOTIFY_CLASS_EVENT, "AclChange", "alice", "INBOX", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/046-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/047-AclChange.bin", NOTIFY_CLASS_EVENT, "AclChange", "alice", "INBOX", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/048-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "Old", "", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/049-MailboxDelete.bin", NOTIFY_CLASS_EVENT, "MailboxDelete", "alice", "Old", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/050-Login.bin", NOTIFY_CLASS_EVENT, "Login", "alice", "", "alice", false, -1, -1, -1, "cyrustest-1795341157-21788-1-11888213923017869681" },
	{ "rich/051-FlagsClear.bin", NOTIFY_CLASS_EVENT, "FlagsClear", "alice", "INBOX", "alice", false, 16, 4, 1, "cyrustest-1795341157-21788-1-11888213923017869681" },
	{ "rich/052-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341157-21788-1-11888213923017869681" },
	{ "rich/053-Logout.bin", NOTIFY_CLASS_EVENT, "Logout", "alice", "", "alice", false, -1, -1, -1, "cyrustest-1795341157-21788-1-11888213923017869681" },
	{ "rich/054-QuotaChange.bin", NOTIFY_CLASS_EVENT, "QuotaChange", "alice", "INBOX", "alice", false, -1, -1, -1, "cyrustest-1795341144-21559-2-4294678359402849223" },
	{ "rich/055-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341159-21620-1-9738540239751555930" },
	{ "rich/056-MessageNew.bin", NOTIFY_CLASS_EVENT, "MessageNew", "alice", "INBOX", "alice", false, 17, 5, 2, "cyrustest-1795341159-21620-1-9738540239751555930" },
	{ "rich/057-MAIL.bin", NOTIFY_CLASS_MAIL, "MAIL", "alice", "INBOX", "alice", false, -1, -1, -1, "" },
	{ "rich/058-QuotaChange.bin", NOTIFY_CLASS_EVENT, "QuotaChange", "alice", "INBOX", "alice", false, -1, -1, -1, "cyrustest-1795341144-21559-2-4294678359402849223" },
	{ "rich/059-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341160-21806-2-15353915513942105979" },
	{ "rich/060-MessageNew.bin", NOTIFY_CLASS_EVENT, "MessageNew", "alice", "INBOX", "alice", false, 18, 6, 3, "cyrustest-1795341160-21806-2-15353915513942105979" },
	{ "rich/061-MAIL.bin", NOTIFY_CLASS_MAIL, "MAIL", "alice", "INBOX", "alice", false, -1, -1, -1, "" },
	{ "rich/062-Logout.bin", NOTIFY_CLASS_EVENT, "Logout", "alice", "", "alice", false, -1, -1, -1, "cyrustest-1795341146-21638-1-413195114991014959" },
	{ "rich/063-Login.bin", NOTIFY_CLASS_EVENT, "Login", "alice", "", "alice", false, -1, -1, -1, "cyrustest-1795341161-21788-1-1948256948188112974" },
	{ "rich/064-MailboxCreate.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice", "Über Ordner", "alice", false, -1, -1, -1, "cyrustest-1795341161-21788-1-1948256948188112974" },
	{ "rich/065-Logout.bin", NOTIFY_CLASS_EVENT, "Logout", "alice", "", "alice", false, -1, -1, -1, "cyrustest-1795341161-21788-1-1948256948188112974" },
	{ "rich/066-Login.bin", NOTIFY_CLASS_EVENT, "Login", "admin", "", "admin", false, -1, -1, -1, "cyrustest-1795341161-21638-1-4419915544605218535" },
	{ "rich/067-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "bob", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341161-21638-1-4419915544605218535" },
	{ "rich/068-AclChange.bin", NOTIFY_CLASS_EVENT, "AclChange", "bob", "INBOX", "admin", false, -1, -1, -1, "cyrustest-1795341161-21638-1-4419915544605218535" },
	{ "rich/069-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "bob", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341161-21638-1-4419915544605218535" },
	{ "rich/070-MailboxDelete.bin", NOTIFY_CLASS_EVENT, "MailboxDelete", "bob", "INBOX", "admin", false, -1, -1, -1, "cyrustest-1795341161-21638-1-4419915544605218535" },
	{ "rich/071-MailboxCreate.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "john.doe", "INBOX", "admin", false, -1, -1, -1, "cyrustest-1795341161-21638-1-4419915544605218535" },
	{ "rich/072-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "john.doe", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341163-21806-1-4370208162757193885" },
	{ "rich/073-MessageNew.bin", NOTIFY_CLASS_EVENT, "MessageNew", "john.doe", "INBOX", "john.doe", false, 2, 2, 1, "cyrustest-1795341163-21806-1-4370208162757193885" },
	{ "rich/074-MAIL.bin", NOTIFY_CLASS_MAIL, "MAIL", "john.doe", "INBOX", "john.doe", false, -1, -1, -1, "" },
	{ "rich/075-Logout.bin", NOTIFY_CLASS_EVENT, "Logout", "admin", "", "admin", false, -1, -1, -1, "cyrustest-1795341161-21638-1-4419915544605218535" },
	{ "limits/686-FlagsSet-183msgs-21182bytes-largest-delivered.bin", NOTIFY_CLASS_EVENT, "FlagsSet", "alice", "INBOX", "alice", false, -1, 235, 234, "cyrustest-1795341218-22136-1-7509986915406681485" },
	{ "limits/690-MailboxModseq-only-survivor-of-184msg-STORE.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice", "INBOX", "", false, -1, -1, -1, "cyrustest-1795341218-22136-1-7509986915406681485" },
	{ "virtdomains/dot-001-MailboxCreate-inbox.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice@example.com", "INBOX", "admin", false, -1, -1, -1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/dot-002-MailboxCreate-Archive.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice@example.com", "Archive", "admin", false, -1, -1, -1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/dot-003-MailboxCreate-shared-in-domain.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "", "news@example.com", "admin", true, -1, -1, -1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/dot-004-MailboxCreate-shared.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "", "news", "admin", true, -1, -1, -1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/dot-005-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice@example.com", "INBOX", "", false, -1, -1, -1, "cyrustest-1795346419-22056-2-14624471691276159136" },
	{ "virtdomains/dot-006-MessageNew.bin", NOTIFY_CLASS_EVENT, "MessageNew", "alice@example.com", "INBOX", "alice@example.com", false, 2, 2, 1, "cyrustest-1795346419-22056-2-14624471691276159136" },
	{ "virtdomains/dot-007-MAIL.bin", NOTIFY_CLASS_MAIL, "MAIL", "alice@example.com", "INBOX", "alice@example.com", false, -1, -1, -1, "" },
	{ "virtdomains/dot-008-MailboxModseq-Archive.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice@example.com", "Archive", "", false, -1, -1, -1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/dot-009-AclChange-Archive.bin", NOTIFY_CLASS_EVENT, "AclChange", "alice@example.com", "Archive", "admin", false, -1, -1, -1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/dot-010-MailboxModseq-Archive.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice@example.com", "Archive", "", false, -1, -1, -1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/dot-011-MessageAppend-Archive.bin", NOTIFY_CLASS_EVENT, "MessageAppend", "alice@example.com", "Archive", "admin", false, 3, 2, 1, "cyrustest-1795346418-22014-2-12613058395729374231" },
	{ "virtdomains/slash-001-MailboxCreate-inbox.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice@example.com", "INBOX", "admin", false, -1, -1, -1, "cyrustest-1795346413-21813-2-14120518645793642532" },
	{ "virtdomains/slash-002-MailboxCreate-Archive.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "alice@example.com", "Archive", "admin", false, -1, -1, -1, "cyrustest-1795346413-21813-2-14120518645793642532" },
	{ "virtdomains/slash-003-MailboxCreate-shared-in-domain.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "", "news@example.com", "admin", true, -1, -1, -1, "cyrustest-1795346413-21813-2-14120518645793642532" },
	{ "virtdomains/slash-004-MailboxCreate-shared.bin", NOTIFY_CLASS_EVENT, "MailboxCreate", "", "news", "admin", true, -1, -1, -1, "cyrustest-1795346413-21813-2-14120518645793642532" },
	{ "virtdomains/slash-005-MailboxModseq.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice@example.com", "INBOX", "", false, -1, -1, -1, "cyrustest-1795346415-21864-2-14158620960908896051" },
	{ "virtdomains/slash-006-MessageNew.bin", NOTIFY_CLASS_EVENT, "MessageNew", "alice@example.com", "INBOX", "alice@example.com", false, 2, 2, 1, "cyrustest-1795346415-21864-2-14158620960908896051" },
	{ "virtdomains/slash-007-MAIL.bin", NOTIFY_CLASS_MAIL, "MAIL", "alice@example.com", "INBOX", "alice@example.com", false, -1, -1, -1, "" },
	{ "virtdomains/slash-008-MailboxModseq-Archive.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice@example.com", "Archive", "", false, -1, -1, -1, "cyrustest-1795346413-21813-2-14120518645793642532" },
	{ "virtdomains/slash-009-AclChange-Archive.bin", NOTIFY_CLASS_EVENT, "AclChange", "alice@example.com", "Archive", "admin", false, -1, -1, -1, "cyrustest-1795346413-21813-2-14120518645793642532" },
	{ "virtdomains/slash-010-MailboxModseq-Archive.bin", NOTIFY_CLASS_EVENT, "MailboxModseq", "alice@example.com", "Archive", "", false, -1, -1, -1, "cyrustest-1795346413-21813-2-14120518645793642532" },
	{ "virtdomains/slash-011-MessageAppend-Archive.bin", NOTIFY_CLASS_EVENT, "MessageAppend", "alice@example.com", "Archive", "admin", false, 3, 2, 1, "cyrustest-1795346413-21813-2-14120518645793642532" },
};

#define NFIXTURES (sizeof(fixtures) / sizeof(fixtures[0]))

/* Reads a whole fixture file into a malloc'ed buffer (new). */
static char *
read_fixture(const char *rel, size_t *len)
{
	char path[512];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", fixture_dir(), rel);
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Checks an optional counter against the expected value (-1: absent). */
static void
check_counter(const char *file, const char *what, bool has, uint64_t v, long long want)
{
	if (want < 0 && has)
		fail_msg("%s: %s present, expected absent", file, what);
	if (want >= 0 && (!has || v != (uint64_t)want))
		fail_msg("%s: %s = %llu (has %d), expected %lld", file, what,
		    (unsigned long long)v, has, want);
}

/* Every fixture parses, and its fields are those the README's rules give. */
static void
test_fixtures_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NFIXTURES; i++) {
		const struct expect *e = &fixtures[i];
		struct notify_msg m;
		char err[128];
		size_t len;
		char *buf = read_fixture(e->file, &len);

		if (notify_parse(buf, len, &m, err, sizeof(err)) != 0)
			fail_msg("%s: %s", e->file, err);
		free(buf);
		assert_int_equal(m.cls, e->cls);
		assert_string_equal(m.event, e->event);
		assert_string_equal(m.owner, e->owner);
		assert_string_equal(m.mailbox, e->mailbox);
		assert_string_equal(m.actor, e->actor);
		assert_int_equal(m.shared, e->shared);
		assert_string_equal(m.session, e->session);
		check_counter(e->file, "modseq", m.has_modseq, m.modseq, e->modseq);
		check_counter(e->file, "uidnext", m.has_uidnext, m.uidnext, e->uidnext);
		check_counter(e->file, "unseen", m.has_unseen, m.unseen, e->unseen);
		if (e->cls == NOTIFY_CLASS_EVENT && strcmp(e->event, "Login") != 0 &&
		    strcmp(e->event, "Logout") != 0 && strcmp(e->event, "QuotaChange") != 0)
			assert_true(m.mailbox_id[0] != '\0');
	}
}

/* Every .bin file in the fixture folders is listed in the table above. */
static void
test_fixtures_all_listed(void **state)
{
	static const char *const dirs[] = { "rich", "limits", "virtdomains" };
	size_t d, i, seen = 0;

	(void)state;
	for (d = 0; d < 3; d++) {
		char path[512];
		struct dirent *de;
		DIR *dir;

		snprintf(path, sizeof(path), "%s/%s", fixture_dir(), dirs[d]);
		dir = opendir(path);
		assert_non_null(dir);
		while ((de = readdir(dir)) != NULL) {
			char rel[300];
			bool found = false;

			if (strstr(de->d_name, ".bin") == NULL)
				continue;
			snprintf(rel, sizeof(rel), "%s/%s", dirs[d], de->d_name);
			for (i = 0; i < NFIXTURES && !found; i++)
				found = strcmp(fixtures[i].file, rel) == 0;
			if (!found)
				fail_msg("%s is not in the expectation table", rel);
			seen++;
		}
		closedir(dir);
	}
	assert_int_equal(seen, NFIXTURES);
	assert_int_equal(seen, 75 + 2 + 22);
}

/* Spot checks straight from the README's prose, independent of the generated table. */
static void
test_fixture_readme_facts(void **state)
{
	struct notify_msg m;
	char err[128];
	size_t len;
	char *buf;

	(void)state;
	/* 002: admin creates alice's INBOX: owner alice, actor admin. */
	buf = read_fixture("rich/002-MailboxCreate.bin", &len);
	assert_int_equal(notify_parse(buf, len, &m, err, sizeof(err)), 0);
	assert_string_equal(m.owner, "alice");
	assert_string_equal(m.actor, "admin");
	assert_string_equal(m.mailbox, "INBOX");
	assert_int_equal(m.sep, '/');
	free(buf);
	/* 004: MailboxModseq has an empty user but alice still owns the mailbox. */
	buf = read_fixture("rich/004-MailboxModseq.bin", &len);
	assert_int_equal(notify_parse(buf, len, &m, err, sizeof(err)), 0);
	assert_string_equal(m.actor, "");
	assert_string_equal(m.owner, "alice");
	free(buf);
	/* 064: percent-encoded UTF-8 folder name. */
	buf = read_fixture("rich/064-MailboxCreate.bin", &len);
	assert_int_equal(notify_parse(buf, len, &m, err, sizeof(err)), 0);
	assert_string_equal(m.mailbox, "\xc3\x9c" "ber Ordner");
	free(buf);
	/* 073: dotted user id with the '/' separator. */
	buf = read_fixture("rich/073-MessageNew.bin", &len);
	assert_int_equal(notify_parse(buf, len, &m, err, sizeof(err)), 0);
	assert_string_equal(m.owner, "john.doe");
	assert_true(m.has_modseq && m.modseq == 2 && m.has_uidnext && m.uidnext == 2);
	assert_true(m.has_unseen && m.unseen == 1 && m.has_messages && m.messages == 1);
	free(buf);
	/* limits/686: more than one UID, so no modseq. */
	buf = read_fixture("limits/686-FlagsSet-183msgs-21182bytes-largest-delivered.bin", &len);
	assert_int_equal(len, 21182);
	assert_int_equal(notify_parse(buf, len, &m, err, sizeof(err)), 0);
	assert_false(m.has_modseq);
	free(buf);
	/* virtdomains: the domain ends the name, '@' percent-encoded. */
	buf = read_fixture("virtdomains/dot-002-MailboxCreate-Archive.bin", &len);
	assert_int_equal(notify_parse(buf, len, &m, err, sizeof(err)), 0);
	assert_string_equal(m.owner, "alice@example.com");
	assert_string_equal(m.mailbox, "Archive");
	assert_int_equal(m.sep, '.');
	free(buf);
}

/* Builds "pusher\0EVENT\0\0\0\0" nopt "\0" json "\0" into buf; returns its length. */
static size_t
event_dgram(char *buf, size_t size, const char *json)
{
	static const char head[] = "pusher\0EVENT\0\0\0\0" "0";
	size_t jl = strlen(json);

	assert_true(sizeof(head) + jl + 1 <= size);
	memcpy(buf, head, sizeof(head));	/* includes the NUL after "0" */
	memcpy(buf + sizeof(head), json, jl + 1);
	return sizeof(head) + jl + 1;
}

/* Builds an EVENT datagram around a uri and user. */
static size_t
uri_dgram(char *buf, size_t size, const char *ev, const char *uri, const char *user)
{
	char json[1024];

	snprintf(json, sizeof(json),
	    "{\"event\":\"%s\",\"uri\":\"%s\",\"user\":\"%s\",\"vnd.cmu.sessionId\":\"s-1\"}",
	    ev, uri, user);
	return event_dgram(buf, size, json);
}

/* Owner extraction across separators, encodings, domains and shared folders. */
static void
test_owner_forms(void **state)
{
	static const struct {
		const char *uri;
		unsigned flags;
		const char *owner, *mailbox;
		bool shared;
		char sep;
	} cases[] = {
		{ "imap://h/user.alice;UIDVALIDITY=1", 0, "alice", "INBOX", false, '.' },
		{ "imap://h/user.alice.Archive.2024;UIDVALIDITY=1", 0, "alice", "Archive.2024", false, '.' },
		{ "imap://h/user/alice/Archive/2024;UIDVALIDITY=1/;UID=3", 0, "alice", "Archive/2024", false, '/' },
		{ "imap://h/user/john.doe/Sent", 0, "john.doe", "Sent", false, '/' },
		{ "imap://h/user/alice/a%20b%2Fc", 0, "alice", "a b/c", false, '/' },
		{ "imap://h/user/alice%40example.com;UIDVALIDITY=1", 0, "alice@example.com", "INBOX", false, '/' },
		{ "imap://h/user.alice.Sent%40example.com;UIDVALIDITY=1", 0, "alice@example.com", "Sent", false, '.' },
		{ "imap://h/user/alice/x%40y.org", NOTIFY_NO_VIRTDOMAINS, "alice", "x@y.org", false, '/' },
		{ "imap://h/user/alice/x%40y.org", 0, "alice@y.org", "x", false, '/' },
		{ "imap://h/user/alice/at%40", 0, "alice", "at@", false, '/' },
		{ "imap://h/shared/news;UIDVALIDITY=1", 0, "", "shared/news", true, 0 },
		{ "imap://h/news%40example.com", 0, "", "news@example.com", true, 0 },
		{ "imap://h/DELETED.user.alice.Old.5F00", 0, "", "DELETED.user.alice.Old.5F00", true, 0 },
		{ "imap://h/username", 0, "", "username", true, 0 },
		{ "imap://h", 0, "bob", "", false, 0 },
		{ "imap://h/", 0, "bob", "", false, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[2048], err[128];
		struct notify_msg m;
		size_t len = uri_dgram(buf, sizeof(buf), "MessageNew", cases[i].uri, "bob");

		if (notify_parse_flags(buf, len, cases[i].flags, &m, err, sizeof(err)) != 0)
			fail_msg("%s: %s", cases[i].uri, err);
		if (strcmp(m.owner, cases[i].owner) != 0 || strcmp(m.mailbox, cases[i].mailbox) != 0)
			fail_msg("%s: owner '%s' mailbox '%s'", cases[i].uri, m.owner, m.mailbox);
		assert_int_equal(m.shared, cases[i].shared);
		assert_int_equal(m.sep, cases[i].sep);
		assert_string_equal(m.actor, "bob");
		assert_string_equal(m.session, "s-1");
	}
}

/* Options, the optional fname, and an ignored priority are accepted. */
static void
test_framing_variants(void **state)
{
	static const char with_opts[] = "m\0EVENT\0p\0\0\0" "2\0o1\0o2\0"
	    "{\"event\":\"FlagsSet\",\"uri\":\"imap://h/user/a\"}\0fname";
	static const char mail_fname[] = "mailpush\0MAIL\0\0bob\0INBOX\0" "0\0Subject: \xff\n\0f";
	struct notify_msg m;
	char err[128];

	(void)state;
	assert_int_equal(notify_parse(with_opts, sizeof(with_opts), &m, err, sizeof(err)), 0);
	assert_string_equal(m.owner, "a");
	assert_string_equal(m.event, "FlagsSet");
	/* MAIL headers are not interpreted, so 8-bit junk in them is fine. */
	assert_int_equal(notify_parse(mail_fname, sizeof(mail_fname), &m, err, sizeof(err)), 0);
	assert_int_equal(m.cls, NOTIFY_CLASS_MAIL);
	assert_string_equal(m.owner, "bob");
	assert_string_equal(m.mailbox, "INBOX");
	assert_string_equal(notify_class_name(m.cls), "MAIL");
}

/* A malformed datagram and the start of the reason it must give. */
struct bad {
	const char *name;
	const char *buf;
	size_t len;	/* 0: strlen(buf) + 1 of an EVENT built from json */
	const char *reason;
};

#define RAW(s) s, sizeof(s) - 1
#define JSON(s) s, 0

/* Malformed inputs fail with a specific reason and never a crash. */
static void
test_malformed(void **state)
{
	static const struct bad cases[] = {
		{ "empty", RAW(""), "empty datagram" },
		{ "no NULs", RAW("pusher EVENT 0 {}"), "truncated datagram (no final NUL)" },
		{ "cut mid-JSON", RAW("pusher\0EVENT\0\0\0\0" "0\0{\"event\":\"Mess"), "truncated datagram (no final NUL)" },
		{ "few fields", RAW("pusher\0EVENT\0\0\0\0"), "truncated datagram (fewer than 7 fields)" },
		{ "nopt alpha", RAW("m\0EVENT\0\0\0\0x\0{}\0"), "bad nopt field" },
		{ "nopt empty", RAW("m\0EVENT\0\0\0\0\0{}\0"), "bad nopt field" },
		{ "nopt signed", RAW("m\0EVENT\0\0\0\0-1\0{}\0"), "bad nopt field" },
		{ "nopt huge", RAW("m\0EVENT\0\0\0\0" "999\0{}\0"), "nopt too large" },
		{ "nopt > fields", RAW("m\0EVENT\0\0\0\0" "2\0o\0{}\0"), "nopt larger than the options present" },
		{ "two extras", RAW("m\0MAIL\0\0u\0INBOX\0" "0\0msg\0f\0g\0"), "unexpected fields after the message" },
		{ "class", RAW("m\0NOTE\0\0u\0INBOX\0" "0\0msg\0"), "unknown class" },
		{ "MAIL no user", RAW("m\0MAIL\0\0\0INBOX\0" "0\0msg\0"), "MAIL without user" },
		{ "MAIL ctl user", RAW("m\0MAIL\0\0a\nb\0INBOX\0" "0\0msg\0"), "MAIL user too long" },
		{ "MAIL bad utf8", RAW("m\0MAIL\0\0\xc3\0INBOX\0" "0\0msg\0"), "MAIL user too long" },
		{ "bad JSON", JSON("{\"event\":"), "bad JSON at line 1" },
		{ "JSON array", JSON("[1,2]"), "EVENT message is not a JSON object" },
		{ "JSON trailing", JSON("{} {}"), "bad JSON" },
		{ "invalid UTF-8", JSON("{\"event\":\"FlagsSet\",\"uri\":\"imap://h/user/a\xff\"}"), "EVENT message is not valid UTF-8" },
		{ "overlong UTF-8", JSON("{\"event\":\"FlagsSet\",\"x\":\"\xc0\xaf\"}"), "EVENT message is not valid UTF-8" },
		{ "no event", JSON("{\"uri\":\"imap://h/user/a\"}"), "JSON has no \"event\" string" },
		{ "event number", JSON("{\"event\":7,\"uri\":\"imap://h/user/a\"}"), "JSON has no \"event\" string" },
		{ "bad event", JSON("{\"event\":\"a b\",\"uri\":\"imap://h/user/a\"}"), "bad event type" },
		{ "missing uri", JSON("{\"event\":\"MessageNew\",\"user\":\"alice\"}"), "JSON has no \"uri\" string" },
		{ "uri null", JSON("{\"event\":\"MessageNew\",\"uri\":null}"), "JSON has no \"uri\" string" },
		{ "uri scheme", JSON("{\"event\":\"MessageNew\",\"uri\":\"pop://h/user/a\"}"), "uri is not an imap:// URL" },
		{ "pct bad", JSON("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a%G1\"}"), "bad percent-encoding in uri" },
		{ "pct cut", JSON("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a%4\"}"), "bad percent-encoding in uri" },
		{ "pct NUL", JSON("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a%00b\"}"), "mailbox name in uri is not clean UTF-8" },
		{ "pct bad utf8", JSON("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a%C3\"}"), "mailbox name in uri is not clean UTF-8" },
		{ "uri NUL", JSON("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a\\u0000b\"}"), "bad JSON" },
		{ "empty owner", JSON("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/;UIDVALIDITY=1\"}"), "uri names user mailbox with empty owner" },
		{ "empty folder", JSON("{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a/\"}"), "uri names empty folder" },
		{ "login no user", JSON("{\"event\":\"Login\",\"uri\":\"imap://h\",\"user\":\"\"}"), "uri names no mailbox and user is empty" },
		{ "user number", JSON("{\"event\":\"Login\",\"uri\":\"imap://h\",\"user\":5}"), "\"user\" is not a string" },
		{ "user ctl", JSON("{\"event\":\"Login\",\"uri\":\"imap://h\",\"user\":\"a\\tb\"}"), "\"user\" too long or not clean text" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[4096], err[128];
		struct notify_msg m;
		const char *b = cases[i].buf;
		size_t len = cases[i].len;

		if (len == 0 && b[0] != '\0') {
			len = event_dgram(buf, sizeof(buf), b);
			b = buf;
		}
		if (notify_parse(b, len, &m, err, sizeof(err)) != -1)
			fail_msg("%s: parsed", cases[i].name);
		if (strncmp(err, cases[i].reason, strlen(cases[i].reason)) != 0)
			fail_msg("%s: reason '%s', expected '%s'", cases[i].name, err, cases[i].reason);
	}
}

/* Size bounds: 65536 bytes is allowed, one more is not; long names are refused. */
static void
test_sizes(void **state)
{
	size_t big = NOTIFY_DATAGRAM_MAX + 1;
	char *buf = malloc(big);
	char json[4096], err[128];
	struct notify_msg m;
	size_t len, pad;

	(void)state;
	assert_non_null(buf);
	/* a valid EVENT padded with a long string to exactly 65536 bytes */
	len = event_dgram(buf, big, "{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/a\",\"x\":\"\"}");
	pad = NOTIFY_DATAGRAM_MAX - len;
	memmove(buf + len - 3 + pad, buf + len - 3, 3);
	memset(buf + len - 3, 'x', pad);
	assert_int_equal(notify_parse(buf, NOTIFY_DATAGRAM_MAX, &m, err, sizeof(err)), 0);
	buf[NOTIFY_DATAGRAM_MAX] = '\0';
	assert_int_equal(notify_parse(buf, big, &m, err, sizeof(err)), -1);
	assert_string_equal(err, "datagram larger than 65536 bytes");
	free(buf);

	/* an owner longer than NOTIFY_USER_MAX */
	memset(json, 0, sizeof(json));
	strcpy(json, "{\"event\":\"MessageNew\",\"uri\":\"imap://h/user/");
	memset(json + strlen(json), 'a', NOTIFY_USER_MAX + 1);
	strcat(json, "\"}");
	{
		char dg[8192];
		len = event_dgram(dg, sizeof(dg), json);
		assert_int_equal(notify_parse(dg, len, &m, err, sizeof(err)), -1);
		assert_string_equal(err, "owner in uri too long");
	}
}

/* err is optional, bounded, and always NUL-terminated; out strings are "" on failure. */
static void
test_err_buffer(void **state)
{
	static const char bad[] = "m\0EVENT\0\0\0\0" "0\0[]\0";
	struct notify_msg m;
	char err[8];

	(void)state;
	memset(err, 'Z', sizeof(err));
	assert_int_equal(notify_parse(bad, sizeof(bad) - 1, &m, err, sizeof(err)), -1);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_int_equal(notify_parse(bad, sizeof(bad) - 1, &m, NULL, 0), -1);
	assert_string_equal(m.owner, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_parse),
		cmocka_unit_test(test_fixtures_all_listed),
		cmocka_unit_test(test_fixture_readme_facts),
		cmocka_unit_test(test_owner_forms),
		cmocka_unit_test(test_framing_variants),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_err_buffer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
