/*
 * Request routing for every libmicrohttpd daemon: maps method and path to the stream,
 * publish and operations handlers, and owns the JSON error and reply helpers and the
 * per-request state's lifetime (freed in the request-completed callback).
 */
#include "broker.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

#define HTTP_EVENTS "/events/"
#define HTTP_PUBLISH "/publish"

/* Sends a JSON body with a status; the body is copied. */
enum MHD_Result
http_json(struct MHD_Connection *conn, unsigned status, const char *body)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE || status == MHD_HTTP_TOO_MANY_REQUESTS)
		MHD_add_response_header(r, "Retry-After", BROKER_RETRY_AFTER);
	cors_headers(conn, r);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Sends {"error": msg}; msg is escaped by jansson. */
enum MHD_Result
http_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
	json_t *o = json_pack("{s:s}", "error", msg);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	enum MHD_Result ret;

	ret = http_json(conn, status, body ? body : "{\"error\":\"internal error\"}");
	free(body);
	json_decref(o);
	if (status >= 400)
		atomic_fetch_add(&counters.rejected, 1);
	return ret;
}

/* 405 with the Allow header the client should have used. */
enum MHD_Result
http_method_not_allowed(struct MHD_Connection *conn, const char *allow)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	static const char body[] = "{\"error\":\"method not allowed\"}";

	r = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "application/json");
	MHD_add_response_header(r, "Allow", allow);
	cors_headers(conn, r);
	ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
	MHD_destroy_response(r);
	atomic_fetch_add(&counters.rejected, 1);
	return ret;
}

/* Value of one hex digit, or -1. */
static int
http_hex(char c)
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
http_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	char *r = s, *w = s;
	int hi, lo;

	(void)cls;
	(void)conn;
	while (*r != '\0') {
		if (r[0] == '%' && (hi = http_hex(r[1])) >= 0 && (lo = http_hex(r[2])) >= 0) {
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

/* A query argument (percent-decoded by http_unescape), or NULL. */
const char *
http_arg(struct MHD_Connection *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

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
	const char *rest;
	struct auth_result ar;

	static enum req_kind headers_seen = REQ_HEADERS;

	if (*req_cls != NULL && *(enum req_kind *)*req_cls == REQ_PUBLISH)
		return publish_handle(conn, url, upload, upload_size, req_cls);	/* body chunk */
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
	if (strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0 && *opt_str(OPT_CORS_ORIGINS) != '\0')
		return cors_preflight(conn, url, serves_publish);
	if (http_route(url, HTTP_EVENTS, &rest)) {
		if (!get)
			return http_method_not_allowed(conn, "GET");
		return stream_start(conn, version, rest, strlen(rest), req_cls);
	}
	if (serves_publish && (strcmp(url, HTTP_PUBLISH) == 0 ||
	    http_route(url, HTTP_PUBLISH "/", &rest))) {
		if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
			return http_method_not_allowed(conn, "POST");
		if (auth_publisher(conn, &ar) == -1)
			return auth_refuse(conn, &ar);
		return publish_handle(conn, url, upload, upload_size, req_cls);
	}
	if (serves_publish && (strcmp(url, "/healthz") == 0 || strcmp(url, "/metrics") == 0 ||
	    strcmp(url, "/stats") == 0 || strncmp(url, "/stats/", 7) == 0)) {
		if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
			return http_method_not_allowed(conn, "GET, HEAD");
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
	(void)conn;
	(void)toe;
	if (kind == NULL)
		return;
	if (*kind == REQ_STREAM)
		stream_completed((struct stream *)kind);
	else if (*kind == REQ_PUBLISH)
		publish_free(kind);
	*req_cls = NULL;	/* REQ_HEADERS: a static marker, nothing to free */
}

/* Counts open connections for /metrics. */
void
http_connection(void *cls, struct MHD_Connection *conn, void **socket_cls,
    enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	(void)conn;
	(void)socket_cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&counters.connections, 1);
	else
		atomic_fetch_sub(&counters.connections, 1);
}
