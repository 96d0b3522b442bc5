/*
 * Cross-origin access for browsers: the cors_origins check, the Access-Control-*
 * headers on every answer to an allowed origin (echoing that exact origin, with
 * credentials, so cookies and EventSource withCredentials work), and the OPTIONS
 * preflight for /events and /publish. It decides nothing about who may subscribe or
 * publish: that is auth.c's business.
 */
#include "broker.h"

#include <stdio.h>
#include <string.h>

#define CORS_MAX_AGE "600"	/* seconds a browser may cache a preflight answer */
#define CORS_SEP ", \t"

/* Whether an origin item is scheme://host[:port] with nothing after it. */
static bool
cors_origin_valid(const char *s, size_t n)
{
	size_t skip, i;

	if (n > 8 && strncmp(s, "https://", 8) == 0)
		skip = 8;
	else if (n > 7 && strncmp(s, "http://", 7) == 0)
		skip = 7;
	else
		return false;
	for (i = skip; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || strchr(".-:[]", s[i]) != NULL))
			return false;
	return true;
}

/* Config check of cors_origins: a list of exact origins, no wildcard. */
int
cors_check_origins(const char *v, char *err, size_t errlen)
{
	size_t n;

	for (;;) {
		v += strspn(v, CORS_SEP);
		if (*v == '\0')
			return 0;
		n = strcspn(v, CORS_SEP);
		if (!cors_origin_valid(v, n)) {
			snprintf(err, errlen, "'%.*s' is not an origin (scheme://host[:port], no path, no wildcard)",
			    (int)(n > 200 ? 200 : n), v);
			return -1;
		}
		v += n;
	}
}

/* Whether origin is exactly one of cors_origins. */
static bool
cors_allowed(const char *origin)
{
	const char *p = opt_str(OPT_CORS_ORIGINS);
	size_t n, olen = strlen(origin);

	for (;;) {
		p += strspn(p, CORS_SEP);
		if (*p == '\0')
			return false;
		n = strcspn(p, CORS_SEP);
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

/*
 * Answers OPTIONS (only routed here when cors_origins is set): 204 with the methods and
 * headers the route accepts for an allowed origin, 403 for another, 404 off the routes.
 */
enum MHD_Result
cors_preflight(struct MHD_Connection *conn, const char *url, bool serves_publish)
{
	bool events = strncmp(url, "/events/", 8) == 0;
	bool publish = serves_publish && (strcmp(url, "/publish") == 0 ||
	    strncmp(url, "/publish/", 9) == 0);
	const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!events && !publish)
		return http_error(conn, MHD_HTTP_NOT_FOUND, "not found");
	if (origin == NULL || !cors_allowed(origin))
		return http_error(conn, MHD_HTTP_FORBIDDEN, "origin not allowed");
	r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	cors_headers(conn, r);
	MHD_add_response_header(r, "Access-Control-Allow-Methods", events ? "GET" : "POST");
	MHD_add_response_header(r, "Access-Control-Allow-Headers", events ?
	    "Authorization, Last-Event-ID, X-Long-Poll" :
	    "Authorization, Content-Type, X-Event, X-Session, X-Exclude-Session, X-Origin");
	MHD_add_response_header(r, "Access-Control-Max-Age", CORS_MAX_AGE);
	ret = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, r);
	MHD_destroy_response(r);
	return ret;
}
