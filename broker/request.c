/*
 * Reading a request: query arguments, the percent-decoding libmicrohttpd applies to
 * the path and the query (ours, so a decoded NUL cannot cut a name short), and the
 * framing checks that refuse the request-smuggling shapes libmicrohttpd lets through.
 */
#include "broker.h"
#include "stream.h"

#include <string.h>
#include <strings.h>

#include "log.h"

#define REQUEST_HEADER_COST 72		/* pool bytes per header, argument or cookie record */
#define REQUEST_POOL_RESERVE 512	/* pool bytes the answer's head needs, with room for CORS */
#define REQUEST_HEAD_LOG_SECONDS 10	/* at most one log line this often about heads too large */

/* What the framing headers of one request say. */
struct request_framing {
	unsigned content_lengths, transfer_encodings;
	bool bad_length;
};

/* Counts Content-Length and Transfer-Encoding headers; a length must be plain digits that fit. */
static enum MHD_Result
request_framing_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct request_framing *f = cls;
	size_t n;

	(void)kind;
	if (strcasecmp(key, "Content-Length") == 0) {
		f->content_lengths++;
		n = strspn(value, "0123456789");
		if (n == 0 || value[n] != '\0' || n > 18)
			f->bad_length = true;
	} else if (strcasecmp(key, "Transfer-Encoding") == 0)
		f->transfer_encodings++;
	return MHD_YES;
}

static bool uri_check;			/* set once at start: the pinned libmicrohttpd */
static enum req_kind bad_line = REQ_BAD_LINE;	/* the req_cls of a request whose line hid a NUL */

/* Turns the request-line check on (only under the libmicrohttpd whose layout it knows). */
void
request_check_lines(bool on)
{
	uri_check = on;
}

/*
 * libmicrohttpd's URI callback, called with the request line's URI before anything
 * else: it returns the request's first req_cls. libmicrohttpd 0.9.75 cuts the line in
 * place, writing a NUL over the space before "HTTP/"; a NUL the client put in the URI
 * ends it earlier, and everything after would silently be dropped ("/events/a\0b" is
 * /events/a). Such a request is marked, and refused with 400 (http.c).
 */
void *
request_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)cls;
	(void)conn;
	if (uri_check && strncmp(uri + strlen(uri) + 1, "HTTP/", 5) != 0)
		return &bad_line;
	return NULL;
}

/* Counts a request's headers. */
static enum MHD_Result
request_count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	(void)key;
	(void)value;
	(*(unsigned *)cls)++;
	return MHD_YES;
}

/*
 * Whether the request's head leaves room in the connection's memory pool for the
 * answer. libmicrohttpd 0.9.75 keeps the head and one record per header in the pool
 * and builds the response's head there too; when a head fits but the answer does not,
 * it closes the connection without a status line, after the request ran. So a head
 * that leaves less than REQUEST_POOL_RESERVE bytes is refused with 431 before anything
 * runs (REQUEST_HEADER_COST: a header record's share, measured on 0.9.75). Nearer the
 * edge even that 431 finds no room and the connection just closes: the request still
 * did not run.
 */
bool
request_head_fits(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
	const char *cookie;
	unsigned n = 0;
	size_t used;

	if (ci == NULL)
		return true;
	MHD_get_connection_values(conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND | MHD_COOKIE_KIND,
	    request_count_header, &n);
	used = ci->header_size + (size_t)n * REQUEST_HEADER_COST;
	/* The cookies are parsed from a copy of their header, also in the pool. */
	if ((cookie = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Cookie")) != NULL)
		used += strlen(cookie) + 1;
	return used + REQUEST_POOL_RESERVE <= (size_t)opt(OPT_CONNECTION_MEMORY);
}

/*
 * Counts a head that did not fit connection_memory and tells the operator, at most one
 * log line every REQUEST_HEAD_LOG_SECONDS (a flood of them must not flood the log):
 * near the pool's edge libmicrohttpd 0.9.75 has no room left even for a 431 and closes
 * the connection, so the log is the only place such a client's failure shows.
 */
void
request_head_too_large(enum head_answer how)
{
	static atomic_uint last_log;
	static const char *const what[HEAD_COUNT] = { "answered 431", "answered 431 by libmicrohttpd",
	    "closed without an answer (no room left even for a 431)" };
	uint32_t now = clock_sec(), last = atomic_load(&last_log);

	atomic_fetch_add(&counters.heads_too_large[how], 1);
	if (last != 0 && now - last < REQUEST_HEAD_LOG_SECONDS)
		return;
	if (!atomic_compare_exchange_strong(&last_log, &last, now))
		return;
	log_warn("a request head too large for connection_memory (%lld bytes) was %s; "
	    "ssepush_heads_too_large_total counts them; raise connection_memory if browsers send big cookies",
	    opt(OPT_CONNECTION_MEMORY), what[how]);
}

/*
 * The shapes behind request smuggling through a proxy: two Content-Length headers, a
 * length with a sign, spaces or more digits than fit, Content-Length together with
 * Transfer-Encoding, or two Transfer-Encoding headers. Returns the reason, or NULL.
 */
const char *
request_framing_error(struct MHD_Connection *conn)
{
	struct request_framing f = { 0, 0, false };

	MHD_get_connection_values(conn, MHD_HEADER_KIND, request_framing_header, &f);
	if (f.content_lengths > 1)
		return "more than one Content-Length";
	if (f.bad_length)
		return "Content-Length is not a plain decimal number";
	if (f.content_lengths > 0 && f.transfer_encodings > 0)
		return "Content-Length together with Transfer-Encoding";
	if (f.transfer_encodings > 1)
		return "more than one Transfer-Encoding";
	return NULL;
}

/* Value of one hex digit, or -1. */
static int
request_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decodes a path or query value in place. MHD hands us C strings, so a decoded
 * NUL would silently cut "a%00b" to "a"; it becomes DEL instead, which no name allows.
 */
size_t
request_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	char *r = s, *w = s;
	int hi, lo;

	(void)cls;
	(void)conn;
	while (*r != '\0') {
		if (r[0] == '%' && (hi = request_hex(r[1])) >= 0 && (lo = request_hex(r[2])) >= 0) {
			*w = (char)(hi << 4 | lo);
			if (*w == '\0')
				*w = 0x7f;
			w++;
			r += 3;
		} else
			*w++ = *r++;
	}
	*w = '\0';
	return (size_t)(w - s);
}

/* A query argument (percent-decoded by request_unescape), or NULL. */
const char *
request_arg(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}
