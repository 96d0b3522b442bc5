/* UTF-8 well-formedness, following the table in RFC 3629 section 4. */
#include "utf8.h"

#include <string.h>

/* Returns the number of bytes of the sequence at p, or 0 if it is ill-formed. */
static size_t
utf8_seq(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* above U+10FFFF */
	} else
		return 0;
	if (left < n || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

/* Publish bodies must be text: an EventSource client decodes the stream as UTF-8. */
bool
utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		n = utf8_seq(p + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/* Copies src, writing every byte outside [lo, hi] as \xNN; cut at dstlen. */
const char *
utf8_escape(char *dst, size_t dstlen, const char *src, unsigned char lo, unsigned char hi)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (; *src != '\0' && o + 5 < dstlen; src++) {
		unsigned char c = (unsigned char)*src;
		if (c >= lo && c <= hi) {
			dst[o++] = (char)c;
			continue;
		}
		dst[o++] = '\\';
		dst[o++] = 'x';
		dst[o++] = hex[c >> 4];
		dst[o++] = hex[c & 15];
	}
	dst[o] = '\0';
	return dst;
}

/* For reasons that quote a peer's bytes into a JSON answer. */
const char *
utf8_clean(char *dst, size_t dstlen, const char *src)
{
	return utf8_escape(dst, dstlen, src, 0x01, utf8_valid(src, strlen(src)) ? 0xff : 0x7f);
}
