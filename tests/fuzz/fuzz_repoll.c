/*
 * libFuzzer target for broker/repoll_read.c `repoll_match`: whether the next request
 * on a kept long-poll connection is the first poll again (taken on by the broker) or
 * goes to libmicrohttpd. The record's template is a fixed first poll. The first input
 * byte picks the mode:
 *  - raw (even): the rest is the request as the client sent it. Invariants: nothing is
 *    read outside it (ASan); a match is a whole head ending in CRLF CRLF exactly at its
 *    end, starting "GET /events/", without NUL or a bare CR or LF, with a last event id
 *    of at most REPOLL_ID_MAX bytes inside the head.
 *  - mutated (odd): the first poll rendered again with a last event id taken from the
 *    input (Last-Event-ID header or ?last_event_id=, any letter case of the header's
 *    name, the channel's characters percent-encoded or not), which must match with
 *    exactly that id; then one byte of it replaced, at a place and with a value from
 *    the input. The mutated request may match only if a reference reading of it (split
 *    as libmicrohttpd 0.9.75 splits a head: a value's leading blanks skipped, the path
 *    and the query percent-decoded, '+' a space in the query) gives the first poll's
 *    arguments and headers in order, and then with the id the reference read: a
 *    request the broker would read otherwise than libmicrohttpd is never taken on.
 *    Build and run with `make fuzz`.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "repoll.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char channel[] = "alice@example.com";
/* The first poll as libmicrohttpd parsed it: arguments, then headers. */
static const char tmpl[] = "closeafter\0event\0ping\0" "0\0"
    "Host\0" "127.0.0.1:8080\0" "Accept\0text/event-stream\0X-Long-Poll\0Yes\0";

/* Aborts so libFuzzer records the input, saying which invariant failed. */
static void
check_at(int ok, int line)
{
	if (!ok) {
		fprintf(stderr, "fuzz_repoll.c:%d: invariant failed\n", line);
		abort();
	}
}
#define check(ok) check_at((ok), __LINE__)

static void
record(struct repoll *r)
{
	memset(r, 0, sizeof *r);
	r->kind = REQ_REPOLL;
	r->channel = (char *)channel;
	r->chlen = sizeof channel - 1;
	r->tmpl = (char *)tmpl;
	r->tmpl_len = sizeof tmpl - 1;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decoding as the broker's unescape callback does (invalid escapes stay, %00 is DEL). */
static size_t
decode(const char *in, size_t n, char *out, int plus)
{
	size_t i = 0, o = 0;
	int hi, lo;

	while (i < n) {
		if (in[i] == '%' && i + 2 < n && (hi = hexval((unsigned char)in[i + 1])) >= 0 &&
		    (lo = hexval((unsigned char)in[i + 2])) >= 0) {
			out[o] = (char)(hi << 4 | lo);
			if (out[o] == '\0')
				out[o] = 0x7f;
			o++;
			i += 3;
		} else {
			out[o++] = plus && in[i] == '+' ? ' ' : in[i];
			i++;
		}
	}
	out[o] = '\0';
	return o;
}

/* The template's next entry equals name and value (advancing *pos). */
static int
next_is(size_t *pos, const char *name, const char *value)
{
	const char *p = tmpl + *pos;
	size_t n, v;

	if (*pos >= sizeof tmpl - 1)
		return 0;
	n = strlen(p) + 1;
	v = strlen(p + n) + 1;
	if (strcmp(p, name) != 0 || strcmp(p + n, value) != 0)
		return 0;
	*pos += n + v;
	return 1;
}

/*
 * The reference: whether req[0..len) reads as the first poll again, and with which last
 * event id (into id, "" for none).
 */
static int
equivalent(const char *req, size_t len, char *id, size_t idmax)
{
	char line[2048], dec[2048], key[2048], val[2048];
	const char *p = req, *e, *end = req + len, *t, *q, *amp, *eq, *c, *v, *ve;
	const char *hid = NULL, *qid = NULL;
	size_t pos = 0, hidlen = 0, qidlen = 0, n;
	int first = 1;

	if (len < 4 || memcmp(end - 4, "\r\n\r\n", 4) != 0 || memchr(req, '\0', len) != NULL)
		return 0;
	for (;;) {
		e = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (e == NULL)
			return 0;
		n = (size_t)(e - p);
		if (n == 0) {
			p = e + 2;	/* the blank line ends the head */
			break;
		}
		if (n >= sizeof line || memchr(p, '\r', n) != NULL || memchr(p, '\n', n) != NULL)
			return 0;
		memcpy(line, p, n);
		line[n] = '\0';
		p = e + 2;
		if (first) {
			first = 0;
			if (n < 21 || memcmp(line, "GET /events/", 12) != 0 || strcmp(line + n - 9, " HTTP/1.1") != 0)
				return 0;
			line[n - 9] = '\0';
			t = line + 4;
			for (c = t; *c != '\0'; c++)
				if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
					return 0;
			q = strchr(t, '?');
			n = q != NULL ? (size_t)(q - t) : strlen(t);
			if (decode(t + 8, n - 8, dec, 0) != sizeof channel - 1 || strcmp(dec, channel) != 0)
				return 0;
			for (q = q != NULL ? q + 1 : NULL; q != NULL && *q != '\0'; q = amp != NULL ? amp + 1 : NULL) {
				amp = strchr(q, '&');
				n = amp != NULL ? (size_t)(amp - q) : strlen(q);
				eq = memchr(q, '=', n);
				if (eq == NULL || eq == q)
					return 0;
				decode(q, (size_t)(eq - q), key, 1);
				decode(eq + 1, n - (size_t)(eq - q) - 1, val, 1);
				if (strcmp(key, "last_event_id") == 0) {
					qid = strdup(val);
					qidlen = strlen(val);
				} else if (!next_is(&pos, key, val))
					return 0;
			}
			continue;
		}
		c = strchr(line, ':');
		if (c == NULL || c == line)
			return 0;
		for (v = line; v < c; v++)
			if (!isalnum((unsigned char)*v) && strchr("!#$%&'*+-.^_`|~", *v) == NULL)
				return 0;
		for (v = c + 1; *v == ' ' || *v == '\t'; v++)
			;
		for (ve = v; *ve != '\0'; ve++)
			if (((unsigned char)*ve < 0x20 && *ve != '\t') || *ve == 0x7f)
				return 0;
		if (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			return 0;
		memcpy(key, line, (size_t)(c - line));
		key[c - line] = '\0';
		if (strcasecmp(key, "last-event-id") == 0) {
			if (hid != NULL)
				return 0;
			hid = strdup(v);
			hidlen = strlen(v);
		} else if (!next_is(&pos, key, v))
			return 0;
	}
	if (p != end || pos != sizeof tmpl - 1)
		return 0;
	id[0] = '\0';
	if (hid != NULL && hidlen < idmax)
		memcpy(id, hid, hidlen + 1);
	else if (hid == NULL && qid != NULL && qidlen < idmax)
		memcpy(id, qid, qidlen + 1);
	free((void *)hid);
	free((void *)qid);
	return 1;
}

/* Raw input: only structural invariants. */
static void
raw(const struct repoll *r, const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *copy = malloc(size + 1);
	struct repoll_req q;
	int m;

	memcpy(buf, data, size);
	buf[size] = '\0';
	memcpy(copy, buf, size + 1);
	m = repoll_match(r, buf, size, &q);
	check(m >= -1 && m <= 1);
	if (m == 1) {
		check(q.head_len == size && size >= 16);
		check(memcmp(copy, "GET /events/", 12) == 0);
		check(memcmp(copy + size - 4, "\r\n\r\n", 4) == 0);
		check(memchr(copy, '\0', size) == NULL);
		for (size_t i = 0; i < size; i++) {
			if (copy[i] == '\r')
				check(i + 1 < size && copy[i + 1] == '\n');
			if (copy[i] == '\n')
				check(i > 0 && copy[i - 1] == '\r');
		}
		if (q.last_id != NULL) {
			check(q.last_id >= buf && q.last_id < buf + size);
			check(strlen(q.last_id) <= REPOLL_ID_MAX);
		}
	}
	free(buf);
	free(copy);
}

/* Appends the channel's name, percent-encoding the characters the input says. */
static size_t
path(char *out, const uint8_t *bits, size_t nbits)
{
	size_t i, n = 0;

	for (i = 0; i < sizeof channel - 1; i++) {
		if (i < nbits * 8 && (bits[i / 8] >> (i % 8)) & 1)
			n += (size_t)sprintf(out + n, "%%%02X", (unsigned char)channel[i]);
		else
			out[n++] = channel[i];
	}
	out[n] = '\0';
	return n;
}

/* The first poll again with a last event id, then one byte mutated. */
static void
mutated(const struct repoll *r, const uint8_t *data, size_t size)
{
	char req[2048], id[REPOLL_ID_MAX + 1], ref[REPOLL_ID_MAX + 1], name[16] = "Last-Event-ID", p[128], *buf;
	size_t idlen = 0, len, pos, i;
	uint8_t flags, newbyte;
	struct repoll_req q;
	int m, in_query;

	if (size < 6)
		return;
	flags = data[0];
	newbyte = data[1];
	pos = (size_t)data[2] << 8 | data[3];
	path(p, data + 4, 2);
	in_query = flags & 2;
	for (i = 0; i < 13; i++)
		if ((flags >> (2 + i % 6)) & 1)
			name[i] = (char)(islower((unsigned char)name[i]) ? toupper((unsigned char)name[i]) :
			    tolower((unsigned char)name[i]));
	for (i = 6; i < size && idlen < 64; i++)	/* an id libmicrohttpd would read the same */
		if (data[i] > 0x20 && data[i] < 0x7f && (!in_query || isalnum(data[i]) || data[i] == '-'))
			id[idlen++] = (char)data[i];
	id[idlen] = '\0';
	if (idlen == 0)
		return;
	if (in_query) {
		len = (size_t)snprintf(req, sizeof req, "GET /events/%s?closeafter=event&ping=0&last_event_id=", p);
		len += (size_t)snprintf(req + len, sizeof req - len, "%s", id);
		len += (size_t)snprintf(req + len, sizeof req - len, " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
		    "Accept: text/event-stream\r\nX-Long-Poll: Yes\r\n\r\n");
	} else {
		len = (size_t)snprintf(req, sizeof req, "GET /events/%s?closeafter=event&ping=0 HTTP/1.1\r\n"
		    "Host: 127.0.0.1:8080\r\nAccept: text/event-stream\r\nX-Long-Poll: Yes\r\n", p);
		len += (size_t)snprintf(req + len, sizeof req - len, "%s: %s", name, id);
		len += (size_t)snprintf(req + len, sizeof req - len, "\r\n\r\n");
	}
	buf = malloc(len + 1);
	memcpy(buf, req, len + 1);
	m = repoll_match(r, buf, len, &q);
	check(m == 1 && q.head_len == len && q.last_id != NULL && strcmp(q.last_id, id) == 0);
	check(equivalent(req, len, ref, sizeof ref) && strcmp(ref, id) == 0);	/* the reference agrees */
	/* One byte changed. */
	pos %= len;
	if ((uint8_t)req[pos] == newbyte) {
		free(buf);
		return;
	}
	req[pos] = (char)newbyte;
	memcpy(buf, req, len + 1);
	m = repoll_match(r, buf, len, &q);
	if (m == 1) {
		check(equivalent(req, len, ref, sizeof ref));
		check(strcmp(q.last_id != NULL ? q.last_id : "", ref) == 0);
	}
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct repoll r;

	if (size < 1 || size > REPOLL_HEAD_MAX + 1)
		return 0;
	record(&r);
	if (data[0] & 1)
		mutated(&r, data + 1, size - 1);
	else
		raw(&r, data + 1, size - 1);
	return 0;
}
