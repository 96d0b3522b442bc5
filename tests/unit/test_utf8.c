/*
 * Unit tests for strict UTF-8 validation (common/utf8.c): a table of the RFC 3629
 * boundaries and classic malformations, every code point encoded (surrogates rejected),
 * every overlong form rejected, truncation at every position, and an exhaustive
 * comparison with an independent decoder over all 1- and 2-byte strings and all
 * 3-byte strings with a multi-byte lead.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

#define BYTES(s) s, sizeof(s) - 1

struct utf8_case {
	const char *name;
	const char *s;
	size_t len;
	bool want;
};

static const struct utf8_case cases[] = {
	/* well-formed: boundaries of each row of the RFC 3629 table */
	{ "empty", BYTES(""), true },
	{ "ascii", BYTES("hello, world"), true },
	{ "embedded NUL", BYTES("a\0b"), true },
	{ "NUL only", BYTES("\0"), true },
	{ "U+007F", BYTES("\x7f"), true },
	{ "U+0080", BYTES("\xc2\x80"), true },
	{ "U+00E9", BYTES("caf\xc3\xa9"), true },
	{ "U+07FF", BYTES("\xdf\xbf"), true },
	{ "U+0800", BYTES("\xe0\xa0\x80"), true },
	{ "U+0FFF", BYTES("\xe0\xbf\xbf"), true },
	{ "U+1000", BYTES("\xe1\x80\x80"), true },
	{ "U+20AC euro", BYTES("\xe2\x82\xac"), true },
	{ "U+CFFF", BYTES("\xec\xbf\xbf"), true },
	{ "U+D000", BYTES("\xed\x80\x80"), true },
	{ "U+D7FF", BYTES("\xed\x9f\xbf"), true },
	{ "U+E000", BYTES("\xee\x80\x80"), true },
	{ "U+FEFF BOM", BYTES("\xef\xbb\xbf"), true },
	{ "U+FFFD", BYTES("\xef\xbf\xbd"), true },
	{ "U+FFFF", BYTES("\xef\xbf\xbf"), true },
	{ "U+10000", BYTES("\xf0\x90\x80\x80"), true },
	{ "U+3FFFF", BYTES("\xf0\xbf\xbf\xbf"), true },
	{ "U+40000", BYTES("\xf1\x80\x80\x80"), true },
	{ "U+1F600", BYTES("\xf0\x9f\x98\x80"), true },
	{ "U+FFFFF", BYTES("\xf3\xbf\xbf\xbf"), true },
	{ "U+100000", BYTES("\xf4\x80\x80\x80"), true },
	{ "U+10FFFF", BYTES("\xf4\x8f\xbf\xbf"), true },
	{ "mixed", BYTES("a\xc3\xa9" "b\xe2\x82\xac" "c\xf0\x9f\x98\x80" "d"), true },

	/* overlongs */
	{ "C0 80 (NUL)", BYTES("\xc0\x80"), false },
	{ "C0 AF ('/')", BYTES("\xc0\xaf"), false },
	{ "C1 BF", BYTES("\xc1\xbf"), false },
	{ "E0 80 80", BYTES("\xe0\x80\x80"), false },
	{ "E0 9F BF", BYTES("\xe0\x9f\xbf"), false },
	{ "F0 80 80 80", BYTES("\xf0\x80\x80\x80"), false },
	{ "F0 8F BF BF", BYTES("\xf0\x8f\xbf\xbf"), false },
	/* surrogates */
	{ "ED A0 80 (U+D800)", BYTES("\xed\xa0\x80"), false },
	{ "ED AD BF (U+DB7F)", BYTES("\xed\xad\xbf"), false },
	{ "ED B0 80 (U+DC00)", BYTES("\xed\xb0\x80"), false },
	{ "ED BF BF (U+DFFF)", BYTES("\xed\xbf\xbf"), false },
	{ "surrogate pair", BYTES("\xed\xa0\xbd\xed\xb8\x80"), false },
	/* above U+10FFFF and never-valid leads */
	{ "F4 90 80 80", BYTES("\xf4\x90\x80\x80"), false },
	{ "F4 BF BF BF", BYTES("\xf4\xbf\xbf\xbf"), false },
	{ "F5 80 80 80", BYTES("\xf5\x80\x80\x80"), false },
	{ "F7 BF BF BF", BYTES("\xf7\xbf\xbf\xbf"), false },
	{ "F8 88 80 80 80", BYTES("\xf8\x88\x80\x80\x80"), false },
	{ "FC 84 80 80 80 80", BYTES("\xfc\x84\x80\x80\x80\x80"), false },
	{ "FE", BYTES("\xfe"), false },
	{ "FF", BYTES("\xff"), false },
	{ "FE FF BOM-ish", BYTES("\xfe\xff"), false },
	/* truncated sequences */
	{ "C2 alone", BYTES("\xc2"), false },
	{ "C2 at end", BYTES("abc\xc2"), false },
	{ "E2 82", BYTES("\xe2\x82"), false },
	{ "E2 alone", BYTES("\xe2"), false },
	{ "F0 9F 98", BYTES("\xf0\x9f\x98"), false },
	{ "F0 9F", BYTES("\xf0\x9f"), false },
	{ "F0 alone", BYTES("\xf0"), false },
	{ "E2 82 then ASCII", BYTES("\xe2\x82" "a"), false },
	{ "F0 9F 98 then ASCII", BYTES("\xf0\x9f\x98" "a"), false },
	{ "C2 then lead", BYTES("\xc2\xc2\x80"), false },
	{ "E2 then NUL", BYTES("\xe2\x82\0"), false },
	/* stray continuation bytes */
	{ "80 alone", BYTES("\x80"), false },
	{ "BF alone", BYTES("\xbf"), false },
	{ "80 after ASCII", BYTES("a\x80"), false },
	{ "extra continuation", BYTES("\xc3\xa9\xa9"), false },
	{ "extra after 3-byte", BYTES("\xe2\x82\xac\x80"), false },
	{ "extra after 4-byte", BYTES("\xf0\x9f\x98\x80\x80"), false },
	/* bad continuation byte values */
	{ "C2 C0", BYTES("\xc2\xc0"), false },
	{ "C2 7F", BYTES("\xc2\x7f"), false },
	{ "E2 82 C0", BYTES("\xe2\x82\xc0"), false },
	{ "E2 C2 AC", BYTES("\xe2\xc2\xac"), false },
	{ "F0 9F 98 7F", BYTES("\xf0\x9f\x98\x7f"), false },
	{ "F0 9F C0 80", BYTES("\xf0\x9f\xc0\x80"), false },
	{ "F1 80 80 FF", BYTES("\xf1\x80\x80\xff"), false },
	/* len bounds the check */
	{ "len cuts a sequence", "\xc3\xa9", 1, false },
	{ "len stops before bad byte", "abc\xff", 3, true },
	{ "len 0 of bad bytes", "\xff", 0, true },
};

static void test_cases(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct utf8_case *c = &cases[i];
		/* copy into an exact-size buffer so ASan catches reads past len */
		char *s = malloc(c->len ? c->len : 1);
		bool got;

		assert_non_null(s);
		memcpy(s, c->s, c->len);
		got = utf8_valid(s, c->len);
		free(s);
		if (got != c->want) {
			print_error("%s: got %d, want %d\n", c->name, got, c->want);
			fail();
		}
	}
}

/* Encodes cp (no range checks) in the shortest form; returns the length. */
static size_t encode(uint32_t cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xc0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xe0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (unsigned char)(0xf0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Encodes cp in exactly n bytes (n >= shortest), i.e. possibly overlong. */
static void encode_n(uint32_t cp, size_t n, unsigned char *out)
{
	static const unsigned char lead[] = { 0, 0, 0xc0, 0xe0, 0xf0 };
	size_t i;

	for (i = n - 1; i > 0; i--) {
		out[i] = (unsigned char)(0x80 | (cp & 0x3f));
		cp >>= 6;
	}
	out[0] = (unsigned char)(lead[n] | cp);
}

/* Every scalar value is accepted; every surrogate is rejected; so is every prefix. */
static void test_every_code_point(void **state)
{
	unsigned char buf[4];
	uint32_t cp;
	size_t n, k;

	(void)state;
	for (cp = 0; cp <= 0x10ffff; cp++) {
		bool surrogate = cp >= 0xd800 && cp <= 0xdfff;

		n = encode(cp, buf);
		if (utf8_valid((const char *)buf, n) == surrogate) {
			print_error("U+%04X (%zu bytes): got %d\n", (unsigned)cp, n, surrogate);
			fail();
		}
		/* a strict prefix of a multi-byte sequence is never valid */
		if (!surrogate && (cp & 0xff) == 0x5a)
			for (k = 1; k < n; k++)
				if (utf8_valid((const char *)buf, k)) {
					print_error("U+%04X prefix of %zu bytes accepted\n",
					    (unsigned)cp, k);
					fail();
				}
	}
	/* just above the top, in the 4-byte form */
	for (cp = 0x110000; cp <= 0x1fffff; cp += 0x1111) {
		encode_n(cp, 4, buf);
		if (utf8_valid((const char *)buf, 4)) {
			print_error("0x%X above U+10FFFF accepted\n", (unsigned)cp);
			fail();
		}
	}
}

/* Every code point in every longer-than-shortest form is rejected. */
static void test_every_overlong(void **state)
{
	unsigned char buf[4];
	uint32_t cp;
	size_t n;

	(void)state;
	for (cp = 0; cp < 0x10000; cp++) {
		size_t shortest = cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;

		for (n = shortest + 1; n <= 4; n++) {
			encode_n(cp, n, buf);
			if (utf8_valid((const char *)buf, n)) {
				print_error("overlong U+%04X in %zu bytes accepted\n", (unsigned)cp,
				    n);
				fail();
			}
		}
	}
	/* the encoder used here must produce the shortest form when it fits */
	encode_n(0x80, 2, buf);
	assert_memory_equal(buf, "\xc2\x80", 2);
	encode_n(0x10ffff, 4, buf);
	assert_memory_equal(buf, "\xf4\x8f\xbf\xbf", 4);
}

/*
 * Independent oracle: decodes by bit patterns, then checks the value range, so a
 * wrong boundary in the table-driven code under test shows up as a disagreement.
 */
static bool ref_valid(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n, k;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4, cp = c & 0x07, min = 0x10000;
		} else
			return false;
		if (len - i < n)
			return false;
		for (k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* Exhaustive agreement with the oracle over short strings. */
static void test_exhaustive_short(void **state)
{
	unsigned char buf[4];
	unsigned a, b, c;
	static const unsigned char tails[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
	    0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xf4, 0xff };

	(void)state;
	for (a = 0; a < 256; a++) {
		buf[0] = (unsigned char)a;
		if (utf8_valid((const char *)buf, 1) != ref_valid(buf, 1) ||
		    utf8_valid((const char *)buf, 1) != (a < 0x80)) {
			print_error("1 byte %02X\n", a);
			fail();
		}
		for (b = 0; b < 256; b++) {
			buf[1] = (unsigned char)b;
			if (utf8_valid((const char *)buf, 2) != ref_valid(buf, 2)) {
				print_error("2 bytes %02X %02X: got %d\n", a, b,
				    utf8_valid((const char *)buf, 2));
				fail();
			}
			if (a < 0xc0)
				continue;	/* three-byte strings: multi-byte leads only */
			for (c = 0; c < 256; c++) {
				buf[2] = (unsigned char)c;
				if (utf8_valid((const char *)buf, 3) != ref_valid(buf, 3)) {
					print_error("3 bytes %02X %02X %02X: got %d\n", a, b, c,
					    utf8_valid((const char *)buf, 3));
					fail();
				}
			}
			if (a < 0xf0)
				continue;	/* four-byte: 4-byte leads, sampled tails */
			for (c = 0; c < sizeof tails; c++)
				for (size_t d = 0; d < sizeof tails; d++) {
					buf[2] = tails[c];
					buf[3] = tails[d];
					if (utf8_valid((const char *)buf, 4) != ref_valid(buf, 4)) {
						print_error("4 bytes %02X %02X %02X %02X\n", a, b,
						    buf[2], buf[3]);
						fail();
					}
				}
		}
	}
}

/* A long valid text stays valid; one bad byte anywhere in it makes it invalid. */
static void test_long_text(void **state)
{
	enum { N = 4096 };
	unsigned char *buf = malloc(N + 4);
	size_t len = 0, pos;
	uint32_t cp = 1;

	(void)state;
	assert_non_null(buf);
	while (len < N) {
		cp = (cp * 2654435761u) % 0x110000;
		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		len += encode(cp, buf + len);
	}
	assert_true(utf8_valid((const char *)buf, len));
	for (pos = 0; pos < len; pos += 97) {
		unsigned char saved = buf[pos];
		buf[pos] = 0xff;
		assert_false(utf8_valid((const char *)buf, len));
		buf[pos] = saved;
	}
	assert_true(utf8_valid((const char *)buf, len));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_every_code_point),
		cmocka_unit_test(test_every_overlong),
		cmocka_unit_test(test_exhaustive_short),
		cmocka_unit_test(test_long_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
