/*
 * Unit tests for the naming rules (common/names.c): every byte value against each
 * alphabet, length limits at and around their bounds, len (not NUL) bounding the span,
 * and origin comma lists (item count, empty items, per-item validity).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

#define BYTES(s) s, sizeof(s) - 1

/* Reference alphabets, written independently of the code under test. */
static bool ref_alnum(unsigned c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool ref_channel_char(unsigned c)
{
	return ref_alnum(c) || c == '.' || c == '_' || c == '~' || c == '@' || c == '+' ||
	    c == '=' || c == '-';
}

static bool ref_event_char(unsigned c)
{
	return ref_alnum(c) || c == '.' || c == '_' || c == '-';
}

/* Each of the 256 bytes alone, and in the middle of an otherwise valid name. */
static void test_every_byte(void **state)
{
	unsigned c;

	(void)state;
	for (c = 0; c < 256; c++) {
		char one[1] = { (char)c };
		char mid[3] = { 'a', (char)c, 'b' };
		bool ch = ref_channel_char(c), ev = ref_event_char(c);
		bool list = ch || c == ',';	/* "a,b" is a list of two ids */

		if (names_channel_valid(one, 1) != ch || names_channel_valid(mid, 3) != ch ||
		    names_id_valid(one, 1) != ch || names_id_valid(mid, 3) != ch ||
		    names_event_type_valid(one, 1) != ev ||
		    names_event_type_valid(mid, 3) != ev ||
		    names_origin_list_valid(one, 1) != ch ||
		    names_origin_list_valid(mid, 3) != list) {
			print_error("byte 0x%02x: channel %d/%d id %d/%d event %d/%d "
			    "origins %d/%d, want %d/%d %d/%d %d/%d %d/%d\n", c,
			    names_channel_valid(one, 1), names_channel_valid(mid, 3),
			    names_id_valid(one, 1), names_id_valid(mid, 3),
			    names_event_type_valid(one, 1), names_event_type_valid(mid, 3),
			    names_origin_list_valid(one, 1), names_origin_list_valid(mid, 3),
			    ch, ch, ch, ch, ev, ev, ch, list);
			fail();
		}
	}
}

typedef bool (*validator)(const char *, size_t);

struct name_case {
	const char *name;
	validator fn;
	const char *s;
	size_t len;
	bool want;
};

static const struct name_case cases[] = {
	{ "channel plain", names_channel_valid, BYTES("news"), true },
	{ "channel mail", names_channel_valid, BYTES("user+tag@example.com"), true },
	{ "channel all punct", names_channel_valid, BYTES("._~@+=-"), true },
	{ "channel dash only", names_channel_valid, BYTES("-"), true },
	{ "channel empty", names_channel_valid, BYTES(""), false },
	{ "channel slash", names_channel_valid, BYTES("a/b"), false },
	{ "channel space", names_channel_valid, BYTES("a b"), false },
	{ "channel percent", names_channel_valid, BYTES("a%20b"), false },
	{ "channel colon", names_channel_valid, BYTES("redis:key"), false },
	{ "channel query", names_channel_valid, BYTES("a?b"), false },
	{ "channel star", names_channel_valid, BYTES("a*"), false },
	{ "channel newline", names_channel_valid, BYTES("a\n"), false },
	{ "channel nul inside", names_channel_valid, BYTES("a\0b"), false },
	{ "channel nul only", names_channel_valid, BYTES("\0"), false },
	{ "channel utf8", names_channel_valid, BYTES("caf\xc3\xa9"), false },
	{ "channel len stops early", names_channel_valid, "abc/def", 3, true },
	{ "channel len includes bad", names_channel_valid, "abc/def", 4, false },
	{ "channel len 0 of text", names_channel_valid, "abc", 0, false },

	{ "event plain", names_event_type_valid, BYTES("update"), true },
	{ "event punct", names_event_type_valid, BYTES("a.b_c-d"), true },
	{ "event digits", names_event_type_valid, BYTES("0"), true },
	{ "event empty", names_event_type_valid, BYTES(""), false },
	{ "event tilde", names_event_type_valid, BYTES("a~b"), false },
	{ "event at", names_event_type_valid, BYTES("a@b"), false },
	{ "event plus", names_event_type_valid, BYTES("a+b"), false },
	{ "event equals", names_event_type_valid, BYTES("a=b"), false },
	{ "event space", names_event_type_valid, BYTES("my event"), false },
	{ "event colon", names_event_type_valid, BYTES("a:b"), false },
	{ "event cr", names_event_type_valid, BYTES("a\rb"), false },
	{ "event lf", names_event_type_valid, BYTES("a\n"), false },
	{ "event nul", names_event_type_valid, BYTES("a\0"), false },
	{ "event len stops early", names_event_type_valid, "ok\nbad", 2, true },

	{ "id plain", names_id_valid, BYTES("sess-1"), true },
	{ "id mail", names_id_valid, BYTES("a@b.c"), true },
	{ "id empty", names_id_valid, BYTES(""), false },
	{ "id comma", names_id_valid, BYTES("a,b"), false },
	{ "id space", names_id_valid, BYTES(" a"), false },

	{ "origins one", names_origin_list_valid, BYTES("a"), true },
	{ "origins two", names_origin_list_valid, BYTES("a,b"), true },
	{ "origins punct", names_origin_list_valid, BYTES("x@y.z,p+q=r,~_-."), true },
	{ "origins empty", names_origin_list_valid, BYTES(""), false },
	{ "origins comma", names_origin_list_valid, BYTES(","), false },
	{ "origins commas", names_origin_list_valid, BYTES(",,"), false },
	{ "origins leading comma", names_origin_list_valid, BYTES(",a"), false },
	{ "origins trailing comma", names_origin_list_valid, BYTES("a,"), false },
	{ "origins double comma", names_origin_list_valid, BYTES("a,,b"), false },
	{ "origins space after comma", names_origin_list_valid, BYTES("a, b"), false },
	{ "origins bad item", names_origin_list_valid, BYTES("a,b/c,d"), false },
	{ "origins bad last item", names_origin_list_valid, BYTES("a,b,c!"), false },
	{ "origins semicolon", names_origin_list_valid, BYTES("a;b"), false },
	{ "origins nul", names_origin_list_valid, BYTES("a,\0"), false },
	{ "origins len stops before comma", names_origin_list_valid, "a,b,", 3, true },
	{ "origins len stops after comma", names_origin_list_valid, "a,b,", 4, false },
	{ "origins len stops early", names_origin_list_valid, "a,b/", 3, true },
};

static void test_cases(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct name_case *c = &cases[i];
		bool got = c->fn(c->s, c->len);

		if (got != c->want) {
			print_error("%s: got %d, want %d\n", c->name, got, c->want);
			fail();
		}
	}
}

struct length_case {
	const char *name;
	validator fn;
	size_t max;
};

static const struct length_case lengths[] = {
	{ "channel", names_channel_valid, 200 },
	{ "event", names_event_type_valid, 64 },
	{ "id", names_id_valid, 128 },
	{ "origin list (one item)", names_origin_list_valid, 128 },
};

/* Every length from 0 to max + 2: valid exactly for 1..max. */
static void test_lengths(void **state)
{
	size_t i, n;
	char buf[256];

	(void)state;
	/* the header's constants are the documented limits */
	assert_int_equal(NAMES_CHANNEL_MAX, 200);
	assert_int_equal(NAMES_EVENT_MAX, 64);
	assert_int_equal(NAMES_ID_MAX, 128);
	assert_int_equal(NAMES_ORIGINS_MAX, 16);
	for (i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
		const struct length_case *c = &lengths[i];

		for (n = 0; n <= c->max + 2; n++) {
			bool got, want = n >= 1 && n <= c->max;
			char *s = malloc(n ? n : 1);	/* exact size: ASan catches over-reads */

			assert_non_null(s);
			for (size_t k = 0; k < n; k++)
				s[k] = "aZ9.-_"[k % 6];
			got = c->fn(s, n);
			free(s);
			if (got != want) {
				print_error("%s length %zu: got %d, want %d\n", c->name, n, got,
				    want);
				fail();
			}
		}
	}
	/* len bounds the span even inside a longer valid buffer */
	memset(buf, 'a', sizeof buf);
	assert_true(names_channel_valid(buf, 200));
	assert_false(names_channel_valid(buf, 201));
	assert_true(names_event_type_valid(buf, 64));
	assert_false(names_event_type_valid(buf, 65));
	assert_true(names_id_valid(buf, 128));
	assert_false(names_id_valid(buf, 129));
}

/* Builds "o0,o1,...": n items; returns its length. */
static size_t origin_list(char *buf, size_t size, int n)
{
	size_t len = 0;
	int i;

	for (i = 0; i < n; i++) {
		int w = snprintf(buf + len, size - len, i ? ",o%d" : "o%d", i);
		assert_true(w > 0 && (size_t)w < size - len);
		len += (size_t)w;
	}
	return len;
}

static void test_origin_count(void **state)
{
	char buf[512];
	int n;

	(void)state;
	for (n = 0; n <= 20; n++) {
		size_t len = origin_list(buf, sizeof buf, n);
		bool want = n >= 1 && n <= 16;

		if (names_origin_list_valid(buf, len) != want) {
			print_error("%d origins: got %d, want %d\n", n, !want, want);
			fail();
		}
	}
	/* 16 items but one empty: still rejected */
	{
		size_t len = origin_list(buf, sizeof buf, 15);
		memcpy(buf + len, ",", 2);
		assert_false(names_origin_list_valid(buf, len + 1));
	}
}

/* Item lengths inside a list: 128 is fine anywhere, 129 is not. */
static void test_origin_item_length(void **state)
{
	char buf[600];
	size_t pos, len;

	(void)state;
	for (pos = 0; pos < 3; pos++) {
		for (size_t item = 128; item <= 129; item++) {
			size_t k;

			len = 0;
			for (k = 0; k < 3; k++) {
				size_t w = k == pos ? item : 2;
				if (k)
					buf[len++] = ',';
				memset(buf + len, 'x', w);
				len += w;
			}
			if (names_origin_list_valid(buf, len) != (item == 128)) {
				print_error("item %zu of 3 with %zu bytes: got %d\n", pos, item,
				    item != 128);
				fail();
			}
		}
	}
	/* 16 items of 128 bytes: the longest valid list */
	len = 0;
	{
		char *big = malloc(16 * 129);
		assert_non_null(big);
		for (int i = 0; i < 16; i++) {
			if (i)
				big[len++] = ',';
			memset(big + len, 'y', 128);
			len += 128;
		}
		assert_true(names_origin_list_valid(big, len));
		big[len - 1] = '#';
		assert_false(names_origin_list_valid(big, len));
		free(big);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_origin_count),
		cmocka_unit_test(test_origin_item_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
