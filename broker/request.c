/*
 * Reading a request: query arguments and the percent-decoding libmicrohttpd applies to
 * the path and the query (ours, so a decoded NUL cannot cut a name short).
 */
#include "broker.h"

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
