/*
 * text/event-stream framing. Owns the byte layout of events, pings, resets and the
 * stream preamble; knows nothing about connections, channels or history.
 */
#include "sse.h"

#include <stdio.h>
#include <string.h>

/* Tells whether the "event:" line is omitted (the EventSource default type). */
static int
sse_default_type(const char *type)
{
	return type == NULL || *type == '\0' || strcmp(type, "message") == 0;
}

/*
 * Walks the payload's lines, calling emit for each one (line start and length); a line
 * ends at CRLF, LF or a lone CR, and the text after the last terminator is a line too.
 */
static size_t
sse_lines(const char *data, size_t len, char *out)
{
	size_t i = 0, start = 0, total = 0, n;

	for (;;) {
		if (i == len || data[i] == '\n' || data[i] == '\r') {
			n = i - start;
			if (out != NULL) {
				memcpy(out + total, "data: ", 6);
				memcpy(out + total + 6, data + start, n);
				out[total + 6 + n] = '\n';
			}
			total += 6 + n + 1;
			if (i == len)
				return total;
			if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
				i++;
			start = ++i;
			continue;
		}
		i++;
	}
}

/* Sizes a frame so the caller can allocate the one shared copy exactly. */
size_t
sse_frame_size(const char *id, const char *type, const char *data, size_t len)
{
	size_t n = sse_lines(data, len, NULL) + 1;

	if (id != NULL && *id != '\0')
		n += 4 + strlen(id) + 1;
	if (!sse_default_type(type))
		n += 7 + strlen(type) + 1;
	return n;
}

/* Appends "name: value\n" and returns the new offset. */
static size_t
sse_field(char *out, size_t o, const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);

	memcpy(out + o, name, nl);
	o += nl;
	out[o++] = ':';
	out[o++] = ' ';
	memcpy(out + o, value, vl);
	o += vl;
	out[o++] = '\n';
	return o;
}

/* Lays out one event; the caller sized out with sse_frame_size(). */
size_t
sse_frame(char *out, const char *id, const char *type, const char *data, size_t len)
{
	size_t o = 0;

	if (id != NULL && *id != '\0')
		o = sse_field(out, o, "id", id);
	if (!sse_default_type(type))
		o = sse_field(out, o, "event", type);
	o += sse_lines(data, len, out + o);
	out[o++] = '\n';
	return o;
}

/* Clamps snprintf's result to what was really written (0 when truncated). */
static size_t
sse_fit(int n, size_t outlen)
{
	if (n < 0 || (size_t)n >= outlen)
		return 0;
	return (size_t)n;
}

/* A ping is a real event (not a comment) so page script can watch for it. */
size_t
sse_ping(char *out, size_t outlen, unsigned interval)
{
	return sse_fit(snprintf(out, outlen, "event: ping\ndata: {\"interval\":%u}\n\n",
	    interval), outlen);
}

/* A reset tells the client to re-sync; its id is where the stream resumes. */
size_t
sse_reset(char *out, size_t outlen, const char *id, const char *reason)
{
	return sse_fit(snprintf(out, outlen,
	    "id: %s\nevent: reset\ndata: {\"reason\":\"%s\"}\n\n", id, reason), outlen);
}

/* The first bytes of a stream: reconnect delay, and a comment so proxies flush headers. */
size_t
sse_preamble(char *out, size_t outlen, unsigned retry_ms)
{
	return sse_fit(snprintf(out, outlen, "retry: %u\n: ssepush\n\n", retry_ms), outlen);
}
