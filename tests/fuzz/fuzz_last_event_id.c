/*
 * libFuzzer target for what a Last-Event-ID (header or ?last_event_id=) and a Redis
 * notification become in common/redis_keys.c: bus_id_parse, bus_id_format and
 * bus_note_parse. The input is split at its first LF into two ids, and read whole as a
 * notification. Invariants: an id parses exactly when it is "ms-seq" in decimal with
 * ms < 2^44 and seq < 2^20 (a reference decides from the digit strings); a parsed id
 * formats back to its canonical text (no leading zeros) and that text parses to the
 * same key; the order of keys is the order of (ms, seq); any key formats to text that
 * fits BUS_ID_MAX and parses back; a notification parses exactly when it has five
 * LFs, and its fields tile the buffer in order, within it. Build and run with `make fuzz`.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_keys.h"

#define FUZZ_ID_MAX 4096	/* bytes of one input (an id is at most a few dozen) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts so libFuzzer records the input. */
static void
check(int ok)
{
	if (!ok)
		abort();
}

/* Length of the run of decimal digits at s[0..len). */
static size_t
digits(const char *s, size_t len)
{
	size_t n = 0;

	while (n < len && s[n] >= '0' && s[n] <= '9')
		n++;
	return n;
}

/* Whether the digit string d[0..n) (no leading zeros, n >= 1) is below the limit text. */
static int
below(const char *d, size_t n, const char *limit)
{
	size_t ln = strlen(limit);

	return n < ln || (n == ln && memcmp(d, limit, n) < 0);
}

/* Skips leading zeros but keeps one digit. */
static void
strip(const char **d, size_t *n)
{
	while (*n > 1 && **d == '0') {
		(*d)++;
		(*n)--;
	}
}

/* Reference: whether s is an id bus_id_parse must take; *canon gets its canonical text. */
static int
ref_id(const char *s, size_t len, char *canon, size_t canonlen)
{
	const char *ms = s, *seq;
	size_t nms = digits(s, len), nseq;

	if (nms == 0 || nms == len || s[nms] != '-')
		return 0;
	seq = s + nms + 1;
	nseq = digits(seq, len - nms - 1);
	if (nseq == 0 || nms + 1 + nseq != len)
		return 0;
	strip(&ms, &nms);
	strip(&seq, &nseq);
	/* 2^44 = 17592186044416, 2^20 = 1048576 */
	if (!below(ms, nms, "17592186044416") || !below(seq, nseq, "1048576"))
		return 0;
	snprintf(canon, canonlen, "%.*s-%.*s", (int)nms, ms, (int)nseq, seq);
	return 1;
}

/* Parses one id both ways; returns whether it parsed, with its key and (ms, seq). */
static int
check_id(const char *s, size_t len, uint64_t *key, uint64_t *ms, uint64_t *seq)
{
	char canon[64], text[BUS_ID_MAX];
	uint64_t again;
	int want = ref_id(s, len, canon, sizeof canon);
	int got = bus_id_parse(s, len, key) == 0;

	check(want == got);
	if (!got)
		return 0;
	bus_id_format(text, sizeof text, *key);
	check(strcmp(text, canon) == 0);
	check(bus_id_parse(text, strlen(text), &again) == 0 && again == *key);
	check(sscanf(canon, "%" SCNu64 "-%" SCNu64, ms, seq) == 2);
	check(*ms < (UINT64_C(1) << 44) && *seq < (UINT64_C(1) << 20));
	return 1;
}

/* Every 64-bit key formats to text that fits and parses back to it. */
static void
check_key(uint64_t key)
{
	char text[BUS_ID_MAX];
	uint64_t again;

	memset(text, 'Z', sizeof text);
	bus_id_format(text, sizeof text, key);
	check(memchr(text, '\0', sizeof text) != NULL);
	check(bus_id_parse(text, strlen(text), &again) == 0 && again == key);
}

/* A notification's fields: in order, separated by one LF each, within the buffer. */
static void
check_note(const char *buf, size_t len)
{
	struct bus_note n;
	const char *end = buf + len, *p = buf;
	size_t lfs = 0, i;
	const char *f[5];
	size_t fl[5];

	for (i = 0; i < len; i++)
		lfs += buf[i] == '\n';
	memset(&n, 0, sizeof n);
	if (bus_note_parse(buf, len, &n) == -1) {
		check(lfs < 5);
		return;
	}
	check(lfs >= 5);
	f[0] = n.id, fl[0] = n.idlen;
	f[1] = n.type, fl[1] = n.typelen;
	f[2] = n.session, fl[2] = n.sessionlen;
	f[3] = n.exclude_session, fl[3] = n.excludelen;
	f[4] = n.origin, fl[4] = n.originlen;
	for (i = 0; i < 5; i++) {
		check(f[i] == p);
		check(fl[i] < (size_t)(end - p));
		check(memchr(f[i], '\n', fl[i]) == NULL && f[i][fl[i]] == '\n');
		p = f[i] + fl[i] + 1;
	}
	check(n.data == p && n.data + n.datalen == end);
}

/* Two ids (split at the first LF), their order, the raw key, and the notification. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *nl;
	uint64_t k1, k2, ms1, ms2, seq1, seq2, raw = 0;
	size_t i, n1;
	int ok1, ok2;

	if (size > FUZZ_ID_MAX)
		return 0;
	nl = memchr(s, '\n', size);
	n1 = nl != NULL ? (size_t)(nl - s) : size;
	ok1 = check_id(s, n1, &k1, &ms1, &seq1);
	if (nl != NULL) {
		const char *s2 = nl + 1, *nl2 = memchr(s2, '\n', (size_t)(s + size - s2));
		size_t n2 = nl2 != NULL ? (size_t)(nl2 - s2) : (size_t)(s + size - s2);

		ok2 = check_id(s2, n2, &k2, &ms2, &seq2);
		if (ok1 && ok2)
			check((k1 < k2) == (ms1 < ms2 || (ms1 == ms2 && seq1 < seq2)) &&
			    (k1 == k2) == (ms1 == ms2 && seq1 == seq2));
	}
	for (i = 0; i < size && i < 8; i++)
		raw = raw << 8 | data[i];
	check_key(raw);
	check_key(~raw);
	check_note(s, size);
	return 0;
}
