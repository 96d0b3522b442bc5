/*
 * Cross-origin access for browsers: whether an origin is allowed, and the Access-Control-*
 * headers on every answer to an allowed origin (echoing that exact origin, with
 * credentials, so cookies and EventSource withCredentials work); reply.c answers the
 * OPTIONS preflight with them. It decides nothing about who may subscribe or
 * publish: that is auth.c's business.
 */
#include "broker.h"

#include <string.h>

/* Whether origin is exactly one of cors_origins. */
bool
cors_allowed(const char *origin)
{
	const char *p = opt_str(OPT_CORS_ORIGINS);
	size_t n, olen = strlen(origin);

	for (;;) {
		p += strspn(p, BROKER_LIST_SEP);
		if (*p == '\0')
			return false;
		n = strcspn(p, BROKER_LIST_SEP);
		if (n == olen && memcmp(p, origin, n) == 0)
			return true;
		p += n;
	}
}

/* Adds Vary: Origin when CORS is on, and the allow headers for an allowed origin. */
void
cors_headers(struct MHD_Connection *conn, struct MHD_Response *r)
{
	const char *origin;

	if (*opt_str(OPT_CORS_ORIGINS) == '\0')
		return;
	MHD_add_response_header(r, "Vary", "Origin");
	origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	if (origin == NULL || !cors_allowed(origin))
		return;
	MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
	MHD_add_response_header(r, "Access-Control-Allow-Credentials", "true");
}
