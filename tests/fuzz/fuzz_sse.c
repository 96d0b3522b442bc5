/*
 * libFuzzer target for the SSE framing round trip: common/sse.c's sse_frame() of
 * events (id, type, data) as a publisher could have sent them, after the stream
 * preamble and with a ping and a reset between, read back by a strict event-stream
 * parser written here from the WHATWG HTML standard (9.2.6 "Interpreting an event
 * stream": lines end at CRLF, LF or CR; field and value split at the first colon, one
 * leading space dropped; data lines joined with LF, the last LF removed; an event
 * without data is not dispatched; the last event id persists; bytes after the last
 * blank line are discarded). The input is "id NUL type NUL data NUL id NUL type NUL
 * data": ids are mapped into the id alphabet and types into the event-type alphabet
 * (what the broker accepts), data is made valid UTF-8 without NUL (utf8.c, and what
 * publish.c takes). Invariants: sse_frame writes exactly sse_frame_size bytes; the
 * stream is valid UTF-8; exactly the framed events come back, in order, each with its
 * id (or the previous one), its type ("message" for none) and its data with CRLF and
 * lone CR turned to LF (as sse.h documents); the preamble's retry and the ping and
 * reset frames read back too. Build and run with `make fuzz`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "sse.h"
#include "utf8.h"

#define FUZZ_SSE_MAX 70000	/* bytes of input: data a bit over the 64k max_message_size */
#define FUZZ_EVENTS 8		/* events the parser keeps: 2 framed, a ping and a reset */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One dispatched event as a browser's EventSource would see it. */
struct sse_event {
	char *type, *data, *id;
	size_t datalen;
};

/* The parser's state (the standard's buffers) and what it dispatched. */
struct sse_parser {
	char *data;
	size_t datalen, datacap;
	char *type;
	char *last_id;
	long long retry;
	struct sse_event ev[FUZZ_EVENTS];
	int nev;
};

/* Aborts so libFuzzer records the input. */
static void
check(int ok)
{
	if (!ok)
		abort();
}

/* A copy of s[0..n) with a NUL after it. */
static char *
dupn(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	check(d != NULL);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* Replaces a string buffer of the parser with a copy of s[0..n). */
static void
set(char **buf, const char *s, size_t n)
{
	free(*buf);
	*buf = dupn(s, n);
}

/* Appends value and an LF to the data buffer. */
static void
append_data(struct sse_parser *p, const char *v, size_t n)
{
	if (p->datalen + n + 1 > p->datacap) {
		p->datacap = (p->datalen + n + 1) * 2;
		check((p->data = realloc(p->data, p->datacap)) != NULL);
	}
	memcpy(p->data + p->datalen, v, n);
	p->datalen += n;
	p->data[p->datalen++] = '\n';
}

/* "Dispatch the event", step by step as the standard lists them. */
static void
dispatch(struct sse_parser *p)
{
	struct sse_event *e;

	if (p->datalen == 0) {
		set(&p->type, "", 0);
		return;
	}
	if (p->data[p->datalen - 1] == '\n')
		p->datalen--;
	check(p->nev < FUZZ_EVENTS);
	e = &p->ev[p->nev++];
	e->type = *p->type != '\0' ? dupn(p->type, strlen(p->type)) : dupn("message", 7);
	e->data = dupn(p->data != NULL ? p->data : "", p->datalen);
	e->datalen = p->datalen;
	e->id = dupn(p->last_id, strlen(p->last_id));
	p->datalen = 0;
	set(&p->type, "", 0);
}

/* "Process the field" for one field name and value. */
static void
field(struct sse_parser *p, const char *name, size_t nl, const char *v, size_t vl)
{
	size_t i;

	if (nl == 5 && memcmp(name, "event", 5) == 0) {
		set(&p->type, v, vl);
	} else if (nl == 4 && memcmp(name, "data", 4) == 0) {
		append_data(p, v, vl);
	} else if (nl == 2 && memcmp(name, "id", 2) == 0) {
		if (memchr(v, '\0', vl) == NULL)
			set(&p->last_id, v, vl);
	} else if (nl == 5 && memcmp(name, "retry", 5) == 0) {
		for (i = 0; i < vl; i++)
			if (v[i] < '0' || v[i] > '9')
				return;
		if (vl > 0 && vl < 18) {
			char digits[18];

			memcpy(digits, v, vl);
			digits[vl] = '\0';
			p->retry = strtoll(digits, NULL, 10);
		}
	}
}

/* One line (without its end): blank dispatches, ':' starts a comment, else a field. */
static void
line(struct sse_parser *p, const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	const char *v;
	size_t vl;

	if (n == 0) {
		dispatch(p);
		return;
	}
	if (s[0] == ':')
		return;
	if (colon == NULL) {
		field(p, s, n, "", 0);
		return;
	}
	v = colon + 1;
	vl = n - (size_t)(v - s);
	if (vl > 0 && *v == ' ') {
		v++;
		vl--;
	}
	field(p, s, (size_t)(colon - s), v, vl);
}

/* Parses a whole stream; what follows the last line end is discarded. */
static void
parse(struct sse_parser *p, const char *s, size_t n)
{
	size_t i = 0, start;

	/* A leading BOM is dropped (the stream here never starts with one). */
	if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
		i = 3;
	for (start = i; i < n; i++) {
		if (s[i] != '\n' && s[i] != '\r')
			continue;
		line(p, s + start, i - start);
		if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
			i++;
		start = i + 1;
	}
}

/* The broker's channel/id alphabet and its event-type alphabet. */
static const char id_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~@+=-";
static const char type_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";

/* Maps bytes into an alphabet, in place (bytes already in it stay), cut to max. */
static size_t
map(char *s, size_t n, const char *alpha, size_t max)
{
	size_t i, k = strlen(alpha);

	if (n > max)
		n = max;
	for (i = 0; i < n; i++)
		if (s[i] == '\0' || strchr(alpha, s[i]) == NULL)
			s[i] = alpha[(unsigned char)s[i] % k];
	s[n] = '\0';
	return n;
}

/* Makes data valid UTF-8 without NUL, in place: bad bytes and NUL become '?'. */
static void
repair(char *s, size_t n)
{
	size_t i = 0, k;

	while (i < n) {
		for (k = 1; k <= 4 && i + k <= n; k++)
			if (utf8_valid(s + i, k))
				break;
		if (k > 4 || i + k > n || s[i] == '\0') {
			s[i++] = '?';
			continue;
		}
		i += k;
	}
}

/* Data as a client must read it: CRLF and lone CR become LF. Returns the new length. */
static size_t
normalise(const char *s, size_t n, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		if (s[i] == '\r') {
			out[o++] = '\n';
			if (i + 1 < n && s[i + 1] == '\n')
				i++;
		} else {
			out[o++] = s[i];
		}
	}
	return o;
}

/* Cuts the next NUL-separated field off the input (the rest if there is no NUL). */
static char *
next(char **p, char *end, size_t *n)
{
	char *s = *p, *nul = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;

	*n = nul != NULL ? (size_t)(nul - s) : (size_t)(end - s);
	*p = nul != NULL ? nul + 1 : end;
	return s;
}

/* One event to frame and what the parser must give back for it. */
struct framed {
	char *id, *type, *data;
	size_t idlen, typelen, datalen;
};

/* Appends the frame of one event to the stream; checks the size contract. */
static size_t
put_frame(char *stream, size_t o, const struct framed *f)
{
	const char *type = f->typelen > 0 ? f->type : NULL;
	size_t want = sse_frame_size(f->id, type, f->data, f->datalen), got;
	char *frame = malloc(want);

	check(frame != NULL);
	got = sse_frame(frame, f->id, type, f->data, f->datalen);
	check(got == want);
	check(got >= 2 && frame[got - 1] == '\n' && frame[got - 2] == '\n');
	memcpy(stream + o, frame, got);
	free(frame);
	return o + got;
}

/* Checks a dispatched event against what was framed. */
static void
check_event(const struct sse_event *e, const struct framed *f, const char *id)
{
	char *want = malloc(f->datalen + 1);
	size_t n = normalise(f->data, f->datalen, want);

	check(want != NULL);
	check(strcmp(e->id, id) == 0);
	check(strcmp(e->type, f->typelen > 0 ? f->type : "message") == 0);
	check(e->datalen == n && memcmp(e->data, want, n) == 0);
	free(want);
}

/* Frames two events with a preamble, a ping and a reset; parses; compares. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sse_parser p = { .retry = -1 };
	struct framed f[2];
	char *in, *cur, *end, *stream, small[SSE_SMALL_FRAME];
	size_t o, cap, n;
	int i;

	if (size > FUZZ_SSE_MAX)
		return 0;
	in = dupn((const char *)data, size);
	cur = in;
	end = in + size;
	for (i = 0; i < 2; i++) {
		f[i].id = next(&cur, end, &n);
		f[i].idlen = map(f[i].id, n, id_alpha, NAMES_ID_MAX);
		f[i].type = next(&cur, end, &n);
		f[i].typelen = map(f[i].type, n, type_alpha, NAMES_EVENT_MAX);
		f[i].data = next(&cur, end, &n);
		repair(f[i].data, n);
		f[i].datalen = n;
	}
	cap = 3 * SSE_SMALL_FRAME + 2 * (NAMES_ID_MAX + NAMES_EVENT_MAX + 32) +
	    8 * (f[0].datalen + f[1].datalen) + 16;
	check((stream = malloc(cap)) != NULL);
	o = sse_preamble(stream, SSE_SMALL_FRAME, 5000);
	check(o > 0);
	o = put_frame(stream, o, &f[0]);
	n = sse_ping(small, sizeof small, 300);
	check(n > 0);
	memcpy(stream + o, small, n);
	o += n;
	o = put_frame(stream, o, &f[1]);
	n = sse_reset(small, sizeof small, "1-2", "expired");
	check(n > 0);
	memcpy(stream + o, small, n);
	o += n;
	check(o <= cap);
	check(memchr(stream, '\0', o) == NULL && utf8_valid(stream, o));
	p.type = dupn("", 0);
	p.last_id = dupn("", 0);
	parse(&p, stream, o);
	/* The events in order: the first, the ping, the second, the reset. */
	check(p.nev == 4);
	check(p.retry == 5000);
	check_event(&p.ev[0], &f[0], f[0].id);
	check(strcmp(p.ev[1].type, "ping") == 0 && strcmp(p.ev[1].data, "{\"interval\":300}") == 0);
	check(strcmp(p.ev[1].id, f[0].id) == 0);	/* no id line: the last id persists */
	check_event(&p.ev[2], &f[1], f[1].idlen > 0 ? f[1].id : f[0].id);
	check(strcmp(p.ev[3].type, "reset") == 0 && strcmp(p.ev[3].id, "1-2") == 0 &&
	    strcmp(p.ev[3].data, "{\"reason\":\"expired\"}") == 0);
	check(p.datalen == 0 && *p.type == '\0');	/* nothing left over */
	for (i = 0; i < p.nev; i++) {
		free(p.ev[i].type);
		free(p.ev[i].data);
		free(p.ev[i].id);
	}
	free(p.data);
	free(p.type);
	free(p.last_id);
	free(stream);
	free(in);
	return 0;
}
