/*
 * libFuzzer target for the request path and query as the broker decodes them:
 * broker/request.c's request_unescape() (libmicrohttpd's unescape callback) and the
 * name validators of common/names.c that the decoded strings then meet. The input is
 * a request target ("/events/<channel>?session=..&origin=..&event=..") split the way
 * libmicrohttpd 0.9.75 splits it (path at '?', arguments at '&', key and value at the
 * first '=', '+' as a blank in arguments). Invariants: the decoding equals an
 * independent reference decoder, is never longer than its input, holds no NUL inside
 * its length, is the identity on text without '%'; each validator equals a reference
 * written from the alphabets and limits of names.h. Build and run with `make fuzz`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "names.h"

#define FUZZ_REQUEST_MAX 8192	/* bytes of one request target (MHD's pool is 4 KiB) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts so libFuzzer records the input. */
static void
check(int ok)
{
	if (!ok)
		abort();
}

/* Value of a hex digit, or -1: written apart from request.c's on purpose. */
static int
ref_hex(unsigned char c)
{
	static const char digits[] = "0123456789abcdef0123456789ABCDEF";
	const char *p = c != '\0' ? strchr(digits, c) : NULL;

	return p == NULL ? -1 : (int)((p - digits) & 15);
}

/* Reference percent-decoding of s[0..len) into out; a decoded NUL becomes DEL. */
static size_t
ref_unescape(const char *s, size_t len, char *out)
{
	size_t i = 0, o = 0;

	while (i < len) {
		if (s[i] == '%' && i + 2 < len && ref_hex((unsigned char)s[i + 1]) >= 0 &&
		    ref_hex((unsigned char)s[i + 2]) >= 0) {
			unsigned char c = (unsigned char)(ref_hex((unsigned char)s[i + 1]) * 16 +
			    ref_hex((unsigned char)s[i + 2]));
			out[o++] = c == 0 ? 0x7f : (char)c;
			i += 3;
		} else {
			out[o++] = s[i++];
		}
	}
	out[o] = '\0';
	return o;
}

/* Whether c is in the channel (and id) alphabet of names.h: [A-Za-z0-9._~@+=-]. */
static int
ref_channel_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '_' || c == '~' || c == '@' || c == '+' || c == '=' || c == '-';
}

/* Whether c is in the event type alphabet of names.h: [A-Za-z0-9._-]. */
static int
ref_type_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '.' || c == '_' || c == '-';
}

/* 1..max bytes, each accepted by ok. */
static int
ref_span(const char *s, size_t len, size_t max, int (*ok)(unsigned char))
{
	size_t i;

	if (len == 0 || len > max)
		return 0;
	for (i = 0; i < len; i++)
		if (!ok((unsigned char)s[i]))
			return 0;
	return 1;
}

/* A comma list of 1..NAMES_ORIGINS_MAX ids, no empty item. */
static int
ref_origins(const char *s, size_t len)
{
	size_t start = 0, i, items = 0;

	for (i = 0; i <= len; i++) {
		if (i < len && s[i] != ',')
			continue;
		if (!ref_span(s + start, i - start, NAMES_ID_MAX, ref_channel_char))
			return 0;
		items++;
		start = i + 1;
	}
	return items >= 1 && items <= NAMES_ORIGINS_MAX;
}

/* Each validator against its reference, on a decoded string of len bytes. */
static void
check_names(const char *s, size_t len)
{
	int channel = names_channel_valid(s, len), id = names_id_valid(s, len);
	int type = names_event_type_valid(s, len), origins = names_origin_list_valid(s, len);

	check(channel == ref_span(s, len, NAMES_CHANNEL_MAX, ref_channel_char));
	check(id == ref_span(s, len, NAMES_ID_MAX, ref_channel_char));
	check(type == ref_span(s, len, NAMES_EVENT_MAX, ref_type_char));
	check(origins == ref_origins(s, len));
	/* What validates fits in the buffers the broker copies names into, and never holds
	 * the DEL a decoded %00 became, a blank, a slash or a line break. */
	if (channel || id || type || origins)
		check(memchr(s, 0x7f, len) == NULL && memchr(s, ' ', len) == NULL &&
		    memchr(s, '/', len) == NULL && memchr(s, '\n', len) == NULL &&
		    memchr(s, '\r', len) == NULL);
	if (channel)
		check(len <= NAMES_CHANNEL_MAX);
	if (id)
		check(len <= NAMES_ID_MAX && channel);
	if (type)
		check(len <= NAMES_EVENT_MAX && channel);
	if (names_event_type_reserved(s, len))
		check(type);
}

/*
 * Decodes s in place as the broker's unescape callback does and checks the result
 * against the reference; then runs the validators on it. s is NUL-terminated.
 */
static void
check_decode(char *s)
{
	size_t in = strlen(s), out;
	char *want = malloc(in + 1), *again;
	int had_percent = memchr(s, '%', in) != NULL;

	check(want != NULL);
	ref_unescape(s, in, want);
	out = request_unescape(NULL, NULL, s);
	check(out <= in);
	check(s[out] == '\0');
	check(memchr(s, '\0', out) == NULL);
	check(out == strlen(want) && memcmp(s, want, out) == 0);
	if (!had_percent)
		check(out == in);	/* the identity: nothing to decode */
	/* Text without '%' decodes to itself: decoding a second time changes nothing. */
	if (memchr(s, '%', out) == NULL) {
		again = strdup(s);
		check(again != NULL);
		check(request_unescape(NULL, NULL, again) == out && memcmp(again, s, out + 1) == 0);
		free(again);
	}
	check_names(s, out);
	free(want);
}

/* libmicrohttpd's '+' to blank in argument keys and values, before the callback. */
static void
unescape_plus(char *s)
{
	for (; *s != '\0'; s++)
		if (*s == '+')
			*s = ' ';
}

/* Splits the query as libmicrohttpd does and decodes each key and value. */
static void
check_query(char *q)
{
	char *amp, *eq;

	for (; q != NULL; q = amp) {
		if ((amp = strchr(q, '&')) != NULL)
			*amp++ = '\0';
		if ((eq = strchr(q, '=')) != NULL)
			*eq++ = '\0';
		unescape_plus(q);
		check_decode(q);
		if (eq != NULL) {
			unescape_plus(eq);
			check_decode(eq);
		}
	}
}

/*
 * The input is one request target, cut at its first NUL (libmicrohttpd hands on C
 * strings; a NUL in the request line is refused before this, see request_uri_log).
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *copy, *q, *path;

	if (size > FUZZ_REQUEST_MAX)
		return 0;
	if ((buf = malloc(size + 1)) == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	/* The whole target, undivided, as one string (a value may hold any byte). */
	copy = strdup(buf);
	check(copy != NULL);
	check_decode(copy);
	free(copy);
	/* The path, with the channel after /events/ or /publish/ as the router cuts it. */
	if ((q = strchr(buf, '?')) != NULL)
		*q++ = '\0';
	check_decode(buf);
	path = buf;
	if (strncmp(path, "/events/", 8) == 0 || strncmp(path, "/publish/", 9) == 0)
		check_names(strchr(path + 1, '/') + 1, strlen(strchr(path + 1, '/') + 1));
	if (q != NULL)
		check_query(q);
	free(buf);
	return 0;
}
