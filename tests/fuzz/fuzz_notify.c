/*
 * libFuzzer target for the notify parser (pusher/notify.c), and the coalescer behind it:
 * arbitrary bytes must never crash, every output string must be NUL-terminated inside
 * its array (and clean UTF-8 after a success, as notify.h promises), a success must name
 * an owner (or be a shared folder), and a failure must give a printable reason. Build
 * and run with `make fuzz`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "coalesce.h"
#include "names.h"
#include "notify.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts so libFuzzer records the input. */
static void
check(int ok)
{
	if (!ok)
		abort();
}

/*
 * A string field must end inside its array; after a success it must also hold clean
 * UTF-8 without control bytes (after a failure notify.h leaves the rest unspecified:
 * a field cut where it overflowed may end inside a UTF-8 sequence).
 */
static void
check_text(const char *s, size_t size, int ok)
{
	const char *nul = memchr(s, '\0', size);
	size_t i;

	check(nul != NULL);
	if (!ok)
		return;
	for (i = 0; s + i < nul; i++)
		check((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
	check(utf8_valid(s, (size_t)(nul - s)));
}

/* Checks the invariants of one parse. */
static void
check_result(int rc, size_t size, const struct notify_msg *m, const char *err, size_t errlen)
{
	const char *nul = memchr(err, '\0', errlen);
	size_t i;

	check(rc == 0 || rc == -1);
	check(nul != NULL);
	for (i = 0; err + i < nul; i++)
		check(err[i] >= 0x20 && err[i] <= 0x7e);
	check_text(m->event, sizeof(m->event), rc == 0);
	check_text(m->owner, sizeof(m->owner), rc == 0);
	check_text(m->actor, sizeof(m->actor), rc == 0);
	check_text(m->mailbox, sizeof(m->mailbox), rc == 0);
	check_text(m->mailbox_id, sizeof(m->mailbox_id), rc == 0);
	check_text(m->session, sizeof(m->session), rc == 0);
	if (rc == -1) {
		check(err[0] != '\0');
		return;
	}
	check(size <= NOTIFY_DATAGRAM_MAX);
	check(err[0] == '\0');
	check(names_event_type_valid(m->event, strlen(m->event)));
	check(m->shared ? m->owner[0] == '\0' && m->mailbox[0] != '\0' : m->owner[0] != '\0');
	check(m->session[0] == '\0' || names_id_valid(m->session, strlen(m->session)));
	check(m->sep == 0 || m->sep == '/' || m->sep == '.');
}

/* Parses the input both ways and pushes successes through a coalescer. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct coalesce *c;
	static uint64_t now;
	struct coalesce_event ev;
	struct notify_msg m;
	char err[96];
	unsigned flags;

	if (c == NULL) {
		struct coalesce_config cfg = { 100, "all", "p.%l.%d", "shared", 64, 8 };
		c = coalesce_new(&cfg, NULL, 0);
		check(c != NULL);
	}
	for (flags = 0; flags <= NOTIFY_NO_VIRTDOMAINS; flags += NOTIFY_NO_VIRTDOMAINS) {
		int rc;

		memset(err, 'Z', sizeof(err));
		rc = notify_parse_flags((const char *)data, size, flags, &m, err, sizeof(err));
		check_result(rc, size, &m, err, sizeof(err));
		if (rc == 0)
			(void)coalesce_add(c, &m, now);
	}
	now += 60;
	while (coalesce_pop_due(c, now, &ev) == 1) {
		check(ev.payload != NULL && strlen(ev.payload) == ev.payload_len);
		check(names_channel_valid(ev.channel, strlen(ev.channel)));
		check(utf8_valid(ev.payload, ev.payload_len));
		coalesce_event_clear(&ev);
	}
	return 0;
}
