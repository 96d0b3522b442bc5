/*
 * Request routing for every libmicrohttpd daemon: maps method and path to the
 * subscribe, publish, operations and static handlers, brings a resumed request back
 * to its handler, and ends per-request state in the request-completed callback.
 */
#include "broker.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "stream.h"
#include "webpush.h"

#define HTTP_EVENTS "/events/"
#define HTTP_PUBLISH "/publish"

/* Whether url is prefix exactly or prefix followed by "/"; sets *rest past it. */
static bool
http_route(const char *url, const char *prefix, const char **rest)
{
	size_t n = strlen(prefix);

	if (strncmp(url, prefix, n) != 0)
		return false;
	*rest = url + n;
	return true;
}

/* Logs a refused request with its path escaped (the path is peer-controlled). */
static void
http_log_request(const char *method, const char *url)
{
	char esc[LOG_ESCAPE_SIZE];

	if (log_enabled(LOG_DEBUG))
		log_debug("request %s %s", method, log_escape(esc, url, strlen(url)));
}

/*
 * The access handler of every daemon. cls is non-NULL on a daemon that also serves
 * publishing and operations; subscriber-only daemons answer those with 404.
 */
enum MHD_Result
http_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
    const char *version, const char *upload, size_t *upload_size, void **req_cls)
{
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
	bool serves_publish = cls != NULL;
	const char *rest, *why;
	struct auth_result ar;

	static enum req_kind headers_seen = REQ_HEADERS;

	if (*req_cls != NULL && *(enum req_kind *)*req_cls == REQ_PUBLISH)
		return publish_handle(conn, url, upload, upload_size, req_cls);	/* body chunk, or resumed */
	if (*req_cls != NULL && *(enum req_kind *)*req_cls == REQ_STREAM)
		return subscribe_resumed(conn, req_cls);	/* the join answered */
	if (*req_cls != NULL && *(enum req_kind *)*req_cls == REQ_WEBPUSH)
		return webpush_http_handle(conn, url, method, upload, upload_size, req_cls);
	if (*req_cls != NULL && *(enum req_kind *)*req_cls == REQ_UPSTREAM)
		return jmap_resumed(conn, version, req_cls);	/* auth upstream answered */
	if (*req_cls != NULL && *(enum req_kind *)*req_cls == REQ_BAD_LINE) {
		*req_cls = NULL;
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "NUL byte in the request line");
	}
	/* Refused in the first call, so the connection closes and nothing after the
	 * ambiguous framing is read as another request. */
	if (*req_cls == NULL && (why = request_framing_error(conn)) != NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, why);
	if (*req_cls == NULL && !request_head_fits(conn)) {
		request_head_too_large(HEAD_JSON_431);
		return reply_error(conn, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
		    "request headers too large for connection_memory");
	}
	/*
	 * libmicrohttpd 0.9.75 closes the connection after any response queued in the
	 * first call (it stops reading the request). A GET has no body to wait for, so
	 * answer it on the second call and the connection stays open for the next
	 * request (a long-poll client's next poll, an EventSource reconnect).
	 */
	if (*req_cls == NULL && (get || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0)) {
		*req_cls = &headers_seen;
		return MHD_YES;
	}
	if (*req_cls == &headers_seen)
		*req_cls = NULL;
	http_log_request(method, url);
	if (strncmp(url, "/webpush/", 9) == 0)	/* registrations: authenticated as subscribing; their own preflight */
		return webpush_http_handle(conn, url, method, upload, upload_size, req_cls);
	if (strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0 && *opt_str(OPT_CORS_ORIGINS) != '\0')
		return reply_preflight(conn, strncmp(url, HTTP_EVENTS, strlen(HTTP_EVENTS)) == 0 ||
		    (*opt_str(OPT_JMAP_EVENTSOURCE_PATH) != '\0' && strcmp(url, opt_str(OPT_JMAP_EVENTSOURCE_PATH)) == 0),
		    serves_publish && (strcmp(url, HTTP_PUBLISH) == 0 ||
		    strncmp(url, HTTP_PUBLISH "/", strlen(HTTP_PUBLISH) + 1) == 0));
	if (*opt_str(OPT_JMAP_EVENTSOURCE_PATH) != '\0' && strcmp(url, opt_str(OPT_JMAP_EVENTSOURCE_PATH)) == 0) {
		if (!get)
			return reply_method_not_allowed(conn, "GET");
		return jmap_start(conn, version, req_cls);
	}
	if (http_route(url, HTTP_EVENTS, &rest)) {
		if (!get)
			return reply_method_not_allowed(conn, "GET");
		return subscribe_start(conn, version, rest, strlen(rest), req_cls);
	}
	if (serves_publish && (strcmp(url, HTTP_PUBLISH) == 0 ||
	    http_route(url, HTTP_PUBLISH "/", &rest))) {
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			return reply_method_not_allowed(conn, "POST");
		if (auth_publisher(conn, &ar) == -1)
			return auth_refuse(conn, &ar);
		return publish_handle(conn, url, upload, upload_size, req_cls);
	}
	if (serves_publish && (strcmp(url, "/healthz") == 0 || strcmp(url, "/metrics") == 0 ||
	    strcmp(url, "/stats") == 0 || strncmp(url, "/stats/", 7) == 0)) {
		if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
			return reply_method_not_allowed(conn, "GET, HEAD");
		if (strcmp(url, "/healthz") != 0 && auth_publisher(conn, &ar) == -1)
			return auth_refuse(conn, &ar);
		return ops_handle(conn, url);
	}
	return static_handle(conn, url, method);	/* ssepush.js, the demo page, or 404 */
}

/* Frees per-request state once MHD is done with the request. */
void
http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
    enum MHD_RequestTerminationCode toe)
{
	enum req_kind *kind = *req_cls;

	(void)cls;
	(void)toe;
	conn_request_done(conn);	/* a kept-alive connection waits for its next request */
	if (kind == NULL)
		return;
	if (*kind == REQ_STREAM)
		subscribe_completed((struct stream *)kind);
	else if (*kind == REQ_PUBLISH)
		publish_free(kind);
	else if (*kind == REQ_WEBPUSH)
		webpush_http_free(kind);
	else if (*kind == REQ_UPSTREAM)
		jmap_completed(kind);
	*req_cls = NULL;	/* REQ_HEADERS: a static marker, nothing to free */
}
