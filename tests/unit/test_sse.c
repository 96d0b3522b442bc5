/*
 * Unit tests for the SSE framing (common/sse.c): exact frame bytes for a table of
 * id/type/payload combinations (every line-ending form), sse_frame_size agreeing with
 * sse_frame, the ping/reset/preamble frames and their too-small-buffer cases, and a
 * property test that parses random frames back the way an EventSource client does.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* A byte string with an explicit length (payloads may hold NUL). */
#define BYTES(s) s, sizeof(s) - 1

/*
 * Frames id/type/data into a buffer of exactly sse_frame_size() bytes (so ASan catches
 * any overrun), checks that the returned length equals the size, and returns the frame.
 */
static char *frame_exact(const char *id, const char *type, const char *data, size_t len,
    size_t *outlen)
{
	size_t size = sse_frame_size(id, type, data, len);
	char *out = malloc(size ? size : 1);
	size_t n;

	assert_non_null(out);
	n = sse_frame(out, id, type, data, len);
	assert_int_equal(n, size);
	*outlen = n;
	return out;
}

/* Asserts that buf[0..len) equals want[0..wantlen), printing both on failure. */
static void assert_bytes(const char *buf, size_t len, const char *want, size_t wantlen)
{
	if (len != wantlen || memcmp(buf, want, len) != 0) {
		print_error("got  (%zu) \"%.*s\"\nwant (%zu) \"%.*s\"\n", len, (int)len, buf,
		    wantlen, (int)wantlen, want);
		fail();
	}
}

struct frame_case {
	const char *id;
	const char *type;
	const char *data;
	size_t len;
	const char *want;
	size_t wantlen;
};

static const struct frame_case frame_cases[] = {
	/* id and event lines */
	{ NULL, NULL, BYTES("hello"), BYTES("data: hello\n\n") },
	{ "", NULL, BYTES("hello"), BYTES("data: hello\n\n") },
	{ NULL, "", BYTES("hello"), BYTES("data: hello\n\n") },
	{ "", "", BYTES("hello"), BYTES("data: hello\n\n") },
	{ NULL, "message", BYTES("x"), BYTES("data: x\n\n") },
	{ "7", "message", BYTES("x"), BYTES("id: 7\ndata: x\n\n") },
	{ "7", NULL, BYTES("x"), BYTES("id: 7\ndata: x\n\n") },
	{ NULL, "update", BYTES("x"), BYTES("event: update\ndata: x\n\n") },
	{ "42", "update", BYTES("a"), BYTES("id: 42\nevent: update\ndata: a\n\n") },
	{ "1-2", "Message", BYTES("a"), BYTES("id: 1-2\nevent: Message\ndata: a\n\n") },
	{ "9", "messages", BYTES("a"), BYTES("id: 9\nevent: messages\ndata: a\n\n") },
	{ "9", "messag", BYTES("a"), BYTES("id: 9\nevent: messag\ndata: a\n\n") },
	/* empty payload and empty lines */
	{ NULL, NULL, BYTES(""), BYTES("data: \n\n") },
	{ "5", "t", BYTES(""), BYTES("id: 5\nevent: t\ndata: \n\n") },
	{ NULL, NULL, BYTES("\n"), BYTES("data: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\r"), BYTES("data: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\r\n"), BYTES("data: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\n\n"), BYTES("data: \ndata: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\n\r"), BYTES("data: \ndata: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\r\r"), BYTES("data: \ndata: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\r\r\n"), BYTES("data: \ndata: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\r\n\r\n"), BYTES("data: \ndata: \ndata: \n\n") },
	{ NULL, NULL, BYTES("\r\n\n"), BYTES("data: \ndata: \ndata: \n\n") },
	/* trailing terminators */
	{ NULL, NULL, BYTES("a\n"), BYTES("data: a\ndata: \n\n") },
	{ NULL, NULL, BYTES("a\r"), BYTES("data: a\ndata: \n\n") },
	{ NULL, NULL, BYTES("a\r\n"), BYTES("data: a\ndata: \n\n") },
	{ NULL, NULL, BYTES("\na"), BYTES("data: \ndata: a\n\n") },
	/* mixed terminators */
	{ NULL, NULL, BYTES("a\r\nb\rc\nd"), BYTES("data: a\ndata: b\ndata: c\ndata: d\n\n") },
	{ NULL, NULL, BYTES("a\n\rb"), BYTES("data: a\ndata: \ndata: b\n\n") },
	{ NULL, NULL, BYTES("ab\r\r\ncd"), BYTES("data: ab\ndata: \ndata: cd\n\n") },
	{ "3", "e", BYTES("one\ntwo\r\nthree"),
	  BYTES("id: 3\nevent: e\ndata: one\ndata: two\ndata: three\n\n") },
	/* bytes that must pass through untouched */
	{ NULL, NULL, BYTES(" lead"), BYTES("data:  lead\n\n") },
	{ NULL, NULL, BYTES(":colon"), BYTES("data: :colon\n\n") },
	{ NULL, NULL, BYTES("data: x"), BYTES("data: data: x\n\n") },
	{ NULL, NULL, BYTES("a\0b"), BYTES("data: a\0b\n\n") },
	{ NULL, NULL, BYTES("\0"), BYTES("data: \0\n\n") },
	{ NULL, NULL, BYTES("caf\xc3\xa9\t{\"k\":1}"), BYTES("data: caf\xc3\xa9\t{\"k\":1}\n\n") },
};

/* Every table row: exact bytes, and the size function agrees. */
static void test_frame_table(void **state)
{
	size_t i, n;

	(void)state;
	for (i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++) {
		const struct frame_case *c = &frame_cases[i];
		char *out;

		if (sse_frame_size(c->id, c->type, c->data, c->len) != c->wantlen) {
			print_error("case %zu: sse_frame_size %zu, want %zu\n", i,
			    sse_frame_size(c->id, c->type, c->data, c->len), c->wantlen);
			fail();
		}
		out = frame_exact(c->id, c->type, c->data, c->len, &n);
		assert_bytes(out, n, c->want, c->wantlen);
		free(out);
	}
}

/* len, not NUL termination, bounds the payload. */
static void test_frame_respects_len(void **state)
{
	char *out;
	size_t n;

	(void)state;
	out = frame_exact(NULL, NULL, "abc\ndef", 3, &n);
	assert_bytes(out, n, BYTES("data: abc\n\n"));
	free(out);
	out = frame_exact(NULL, NULL, "abc\ndef", 4, &n);
	assert_bytes(out, n, BYTES("data: abc\ndata: \n\n"));
	free(out);
	out = frame_exact(NULL, NULL, "a\r\nb", 2, &n);	/* CR is the last byte: lone CR */
	assert_bytes(out, n, BYTES("data: a\ndata: \n\n"));
	free(out);
	out = frame_exact("1", "t", "xyz", 0, &n);
	assert_bytes(out, n, BYTES("id: 1\nevent: t\ndata: \n\n"));
	free(out);
}

/* sse_frame writes nothing past the returned length. */
static void test_frame_no_overrun(void **state)
{
	char buf[128];
	size_t n;

	(void)state;
	memset(buf, 'Z', sizeof buf);
	n = sse_frame(buf, "12", "ev", "p\r\nq", 4);
	assert_int_equal(n, sizeof "id: 12\nevent: ev\ndata: p\ndata: q\n\n" - 1);
	assert_memory_equal(buf, "id: 12\nevent: ev\ndata: p\ndata: q\n\n", n);
	for (size_t i = n; i < sizeof buf; i++)
		assert_int_equal(buf[i], 'Z');
}

/* A long id/type/payload: sizes scale and bytes are right. */
static void test_frame_long(void **state)
{
	enum { LINES = 1000 };
	char *data = malloc(LINES * 4), *out, *want;
	char id[129], type[65];
	size_t len = 0, wl = 0, n;
	int i;

	(void)state;
	assert_non_null(data);
	memset(id, '7', sizeof id - 1);
	id[sizeof id - 1] = '\0';
	memset(type, 'e', sizeof type - 1);
	type[sizeof type - 1] = '\0';
	for (i = 0; i < LINES; i++) {
		static const char *const ends[] = { "\n", "\r\n", "\r" };
		const char *e = ends[i % 3];
		data[len++] = (char)('a' + i % 26);
		memcpy(data + len, e, strlen(e));
		len += strlen(e);
	}
	want = malloc(4 + 128 + 1 + 7 + 64 + 1 + (LINES + 1) * 8 + 1);
	assert_non_null(want);
	wl += (size_t)sprintf(want + wl, "id: %s\nevent: %s\n", id, type);
	for (i = 0; i < LINES; i++)
		wl += (size_t)sprintf(want + wl, "data: %c\n", 'a' + i % 26);
	wl += (size_t)sprintf(want + wl, "data: \n\n");
	out = frame_exact(id, type, data, len, &n);
	assert_bytes(out, n, want, wl);
	free(out);
	free(want);
	free(data);
}

/* ---- ping, reset, preamble ---- */

static void test_ping(void **state)
{
	static const char want30[] = "event: ping\ndata: {\"interval\":30}\n\n";
	char buf[SSE_SMALL_FRAME], want[64];
	size_t n, wl;

	(void)state;
	n = sse_ping(buf, sizeof buf, 30);
	assert_bytes(buf, n, BYTES(want30));
	assert_int_equal(buf[n], '\0');

	n = sse_ping(buf, sizeof buf, 0);
	assert_bytes(buf, n, BYTES("event: ping\ndata: {\"interval\":0}\n\n"));

	wl = (size_t)snprintf(want, sizeof want, "event: ping\ndata: {\"interval\":%u}\n\n",
	    UINT_MAX);
	n = sse_ping(buf, sizeof buf, UINT_MAX);
	assert_bytes(buf, n, want, wl);
	assert_true(n < SSE_SMALL_FRAME);

	/* exactly enough room needs the NUL too */
	assert_int_equal(sse_ping(buf, sizeof want30, 30), sizeof want30 - 1);
	assert_int_equal(sse_ping(buf, sizeof want30 - 1, 30), 0);
	assert_int_equal(sse_ping(buf, 1, 30), 0);
	assert_int_equal(sse_ping(NULL, 0, 30), 0);
}

static void test_reset(void **state)
{
	static const char want[] = "id: 99\nevent: reset\ndata: {\"reason\":\"evicted\"}\n\n";
	char buf[SSE_SMALL_FRAME];
	size_t n;

	(void)state;
	n = sse_reset(buf, sizeof buf, "99", "evicted");
	assert_bytes(buf, n, BYTES(want));

	n = sse_reset(buf, sizeof buf, "0", "");
	assert_bytes(buf, n, BYTES("id: 0\nevent: reset\ndata: {\"reason\":\"\"}\n\n"));

	assert_int_equal(sse_reset(buf, sizeof want, "99", "evicted"), sizeof want - 1);
	assert_int_equal(sse_reset(buf, sizeof want - 1, "99", "evicted"), 0);
	assert_int_equal(sse_reset(buf, 10, "99", "evicted"), 0);
	assert_int_equal(sse_reset(NULL, 0, "99", "evicted"), 0);
}

static void test_preamble(void **state)
{
	static const char want[] = "retry: 3000\n: ssepush\n\n";
	char buf[SSE_SMALL_FRAME], big[64];
	size_t n, wl;

	(void)state;
	n = sse_preamble(buf, sizeof buf, 3000);
	assert_bytes(buf, n, BYTES(want));
	assert_int_equal(buf[n], '\0');

	n = sse_preamble(buf, sizeof buf, 0);
	assert_bytes(buf, n, BYTES("retry: 0\n: ssepush\n\n"));

	wl = (size_t)snprintf(big, sizeof big, "retry: %u\n: ssepush\n\n", UINT_MAX);
	n = sse_preamble(buf, sizeof buf, UINT_MAX);
	assert_bytes(buf, n, big, wl);

	/* too small: 0, never a truncated preamble */
	assert_int_equal(sse_preamble(buf, sizeof want, 3000), sizeof want - 1);
	assert_int_equal(sse_preamble(buf, sizeof want - 1, 3000), 0);
	assert_int_equal(sse_preamble(buf, 5, 3000), 0);
	assert_int_equal(sse_preamble(buf, 1, 3000), 0);
	assert_int_equal(sse_preamble(NULL, 0, 3000), 0);
}

/* ---- an EventSource parser (HTML Living Standard, 9.2.6) ---- */

#define PARSE_MAX 4096

struct parsed {
	int events;			/* dispatched events */
	size_t first_dispatch_end;	/* offset just after the line that dispatched the first event */
	char data[PARSE_MAX];		/* of the first dispatched event */
	size_t data_len;
	char type[PARSE_MAX];		/* of the first dispatched event */
	char last_id[PARSE_MAX];	/* last event id buffer when it was dispatched */
	long retry;			/* last valid retry value, or -1 */
	int comments;
	size_t leftover;		/* bytes of an unterminated last line */
};

struct parser {
	char data[PARSE_MAX];
	size_t data_len;
	char type[PARSE_MAX];
	char last_id[PARSE_MAX];
};

/* Copies a field value into a NUL-terminated buffer. */
static void set_buf(char *dst, const char *v, size_t vl)
{
	assert_true(vl < PARSE_MAX);
	memcpy(dst, v, vl);
	dst[vl] = '\0';
}

static void parse_line(struct parser *p, struct parsed *r, const char *line, size_t n,
    size_t end)
{
	const char *colon, *value;
	size_t fl, vl;

	if (n == 0) {	/* dispatch */
		if (p->data_len == 0) {
			p->type[0] = '\0';
			return;
		}
		if (p->data[p->data_len - 1] == '\n')
			p->data_len--;
		if (r->events++ == 0) {
			memcpy(r->data, p->data, p->data_len);
			r->data_len = p->data_len;
			strcpy(r->type, p->type[0] ? p->type : "message");
			strcpy(r->last_id, p->last_id);
			r->first_dispatch_end = end;
		}
		p->data_len = 0;
		p->type[0] = '\0';
		return;
	}
	if (line[0] == ':') {
		r->comments++;
		return;
	}
	colon = memchr(line, ':', n);
	if (colon != NULL) {
		fl = (size_t)(colon - line);
		value = colon + 1;
		vl = n - fl - 1;
		if (vl > 0 && value[0] == ' ') {
			value++;
			vl--;
		}
	} else {
		fl = n;
		value = line + n;
		vl = 0;
	}
	if (fl == 4 && memcmp(line, "data", 4) == 0) {
		assert_true(p->data_len + vl + 1 <= PARSE_MAX);
		memcpy(p->data + p->data_len, value, vl);
		p->data_len += vl;
		p->data[p->data_len++] = '\n';
	} else if (fl == 5 && memcmp(line, "event", 5) == 0) {
		set_buf(p->type, value, vl);
	} else if (fl == 2 && memcmp(line, "id", 2) == 0) {
		if (memchr(value, '\0', vl) == NULL)
			set_buf(p->last_id, value, vl);
	} else if (fl == 5 && memcmp(line, "retry", 5) == 0) {
		long v = 0;
		size_t i;
		for (i = 0; i < vl; i++) {
			if (value[i] < '0' || value[i] > '9')
				break;
			v = v * 10 + (value[i] - '0');
		}
		if (vl > 0 && i == vl)
			r->retry = v;
	}
}

/* Splits a stream into lines at CRLF, LF or CR and interprets each one. */
static void parse_stream(const char *s, size_t len, struct parsed *r)
{
	struct parser *p = calloc(1, sizeof *p);
	size_t pos = 0, e, next;

	assert_non_null(p);
	memset(r, 0, sizeof *r);
	r->retry = -1;
	while (pos < len) {
		for (e = pos; e < len && s[e] != '\r' && s[e] != '\n'; e++)
			;
		if (e == len) {
			r->leftover = len - pos;
			break;
		}
		next = e + 1;
		if (s[e] == '\r' && next < len && s[next] == '\n')
			next++;
		parse_line(p, r, s + pos, e - pos, next);
		pos = next;
	}
	free(p);
}

/* The parser itself, on known streams, so the property test rests on something checked. */
static void test_parser_sanity(void **state)
{
	struct parsed r;

	(void)state;
	parse_stream(BYTES("data: a\r\ndata:b\rdata\nevent: t\nid: 5\n\n"), &r);
	assert_int_equal(r.events, 1);
	assert_int_equal(r.data_len, 4);
	assert_memory_equal(r.data, "a\nb\n", 4);
	assert_string_equal(r.type, "t");
	assert_string_equal(r.last_id, "5");
	assert_int_equal(r.leftover, 0);

	parse_stream(BYTES("data: x\n"), &r);	/* never dispatched */
	assert_int_equal(r.events, 0);
	parse_stream(BYTES("event: t\n\n"), &r);	/* no data: not dispatched */
	assert_int_equal(r.events, 0);
	parse_stream(BYTES("data\n\ndata: y"), &r);	/* "data" alone gives "" */
	assert_int_equal(r.events, 1);
	assert_int_equal(r.data_len, 0);
	assert_int_equal(r.leftover, 7);
}

/* The fixed frames read back as the events and fields they claim to be. */
static void test_small_frames_parse(void **state)
{
	char buf[SSE_SMALL_FRAME];
	struct parsed r;
	size_t n;

	(void)state;
	n = sse_ping(buf, sizeof buf, 45);
	parse_stream(buf, n, &r);
	assert_int_equal(r.events, 1);
	assert_int_equal(r.first_dispatch_end, n);
	assert_string_equal(r.type, "ping");
	assert_int_equal(r.data_len, strlen("{\"interval\":45}"));
	assert_memory_equal(r.data, "{\"interval\":45}", r.data_len);

	n = sse_reset(buf, sizeof buf, "1234", "gone");
	parse_stream(buf, n, &r);
	assert_int_equal(r.events, 1);
	assert_int_equal(r.first_dispatch_end, n);
	assert_string_equal(r.type, "reset");
	assert_string_equal(r.last_id, "1234");
	assert_int_equal(r.data_len, strlen("{\"reason\":\"gone\"}"));
	assert_memory_equal(r.data, "{\"reason\":\"gone\"}", r.data_len);

	n = sse_preamble(buf, sizeof buf, 2500);
	parse_stream(buf, n, &r);
	assert_int_equal(r.events, 0);
	assert_int_equal(r.retry, 2500);
	assert_int_equal(r.comments, 1);
	assert_int_equal(r.leftover, 0);
}

/* ---- property test ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

/* CRLF and lone CR become LF, as an EventSource client sees the payload. */
static size_t normalise(const char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (in[i] == '\r') {
			out[o++] = '\n';
			if (i + 1 < len && in[i + 1] == '\n')
				i++;
		} else
			out[o++] = in[i];
	}
	return o;
}

static void test_frame_roundtrip_property(void **state)
{
	static const char alphabet[] = { 'a', 'a', 'b', '\r', '\n', '\r', '\n', ' ', ':', '\0',
	    'd' };
	static const char *const ids[] = { NULL, "", "1", "18446744073709551615", "a-b" };
	static const char *const types[] = { NULL, "", "message", "update", "x.y_z-1" };
	enum { ITERATIONS = 5000, MAXLEN = 48 };
	char payload[MAXLEN], want[MAXLEN];
	struct parsed *r = malloc(sizeof *r);
	int it;

	(void)state;
	assert_non_null(r);
	rng_state = 0x9e3779b97f4a7c15ULL;
	for (it = 0; it < ITERATIONS; it++) {
		size_t len = rng() % (MAXLEN + 1), i, n, wl;
		const char *id = ids[rng() % 5], *type = types[rng() % 5];
		char *out;

		for (i = 0; i < len; i++)
			payload[i] = alphabet[rng() % sizeof alphabet];
		out = frame_exact(id, type, payload, len, &n);
		assert_true(n >= 2);
		assert_memory_equal(out + n - 2, "\n\n", 2);

		parse_stream(out, n, r);
		wl = normalise(payload, len, want);
		if (r->events != 1 || r->first_dispatch_end != n || r->leftover != 0 ||
		    r->data_len != wl || memcmp(r->data, want, wl) != 0) {
			print_error("iteration %d: payload (%zu) \"%.*s\" frame \"%.*s\"\n", it,
			    len, (int)len, payload, (int)n, out);
			fail();
		}
		assert_string_equal(r->type,
		    type == NULL || *type == '\0' ? "message" : type);
		assert_string_equal(r->last_id, id == NULL ? "" : id);
		free(out);
	}
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_table),
		cmocka_unit_test(test_frame_respects_len),
		cmocka_unit_test(test_frame_no_overrun),
		cmocka_unit_test(test_frame_long),
		cmocka_unit_test(test_ping),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_preamble),
		cmocka_unit_test(test_parser_sanity),
		cmocka_unit_test(test_small_frames_parse),
		cmocka_unit_test(test_frame_roundtrip_property),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
