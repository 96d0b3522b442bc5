/*
 * The files embedded at build time from broker/www/ (see www/embed.sh): /ssepush.js and
 * /ssepush.mjs (and web push's /ssepush-sw.js) always, the demo page at / only while the demo directive is on. Answers
 * GET and HEAD with an ETag (304 on a matching If-None-Match) and is the router's
 * fallback, so it also owns the 404 for every unknown path.
 */
#include "broker.h"

#include <string.h>

#define STATIC_CACHE "public, max-age=300"	/* then revalidated with the ETag */
#define STATIC_DEMO "/demo.html"
#define STATIC_SW "/ssepush-sw.js"		/* web push's service worker, beside ssepush.js */

/* Finds an embedded file by URL path, or NULL. */
static const struct www_file *
static_find(const char *path)
{
	size_t i;

	for (i = 0; i < www_count; i++)
		if (strcmp(www_files[i].path, path) == 0)
			return &www_files[i];
	return NULL;
}

/* Whether If-None-Match names etag (a list, or "*"). */
static bool
static_not_modified(struct MHD_Connection *conn, const char *etag)
{
	const char *inm = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    MHD_HTTP_HEADER_IF_NONE_MATCH);

	return inm != NULL && (strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL);
}

/* Sends one embedded file (or 304); the bytes are static, never copied. */
static enum MHD_Result
static_send(struct MHD_Connection *conn, const struct www_file *f, bool demo)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	unsigned status = MHD_HTTP_OK;

	if (static_not_modified(conn, f->etag)) {
		status = MHD_HTTP_NOT_MODIFIED;
		r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	} else
		r = MHD_create_response_from_buffer(f->len, (void *)f->data,
		    MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", f->type);
	MHD_add_response_header(r, "Cache-Control", demo ? "no-cache" : STATIC_CACHE);
	MHD_add_response_header(r, "ETag", f->etag);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	ret = conn_queue(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Serves url if it names an embedded file that is on; otherwise 404 (or 405). */
enum MHD_Result
static_handle(struct MHD_Connection *conn, const char *url, const char *method)
{
	const struct www_file *f;
	bool demo = strcmp(url, "/") == 0 || strcmp(url, STATIC_DEMO) == 0;

	if (demo)
		f = opt(OPT_DEMO) ? static_find(STATIC_DEMO) : NULL;
	else
		f = strncmp(url, "/ssepush.", 9) == 0 || strcmp(url, STATIC_SW) == 0 ? static_find(url) : NULL;
	if (f == NULL)
		return reply_error(conn, MHD_HTTP_NOT_FOUND, "not found");
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_method_not_allowed(conn, "GET, HEAD");
	return static_send(conn, f, demo);
}
