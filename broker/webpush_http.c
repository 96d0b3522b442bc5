/*
 * The web push endpoints: POST /webpush/<channel> (a PushSubscription, authenticated
 * exactly as GET /events/<channel> is), DELETE /webpush/<channel>/<id>, GET
 * /webpush/key. A registration change is the sender thread's (it owns the store): the
 * request is suspended until the job's answer resumes it, as a publish waits for the
 * bus. Owns the per-request state.
 */
#include "broker.h"
#include "webpush.h"

#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "stream.h"

#define WEBPUSH_PREFIX "/webpush/"

/* A registration request between its first and last access-handler call. */
struct webpush_req {
	enum req_kind kind;		/* REQ_WEBPUSH */
	bool remove;
	bool submitted, suspended;
	atomic_uchar wait;		/* the job's answer and the handler: whichever ends last answers */
	struct MHD_Connection *conn;
	unsigned status;		/* the job's answer */
	char text[256];			/* its id, or the reason */
	char session[129];		/* the token's sid */
	char channel[NAMES_CHANNEL_MAX + 1];
	char id[WEBPUSH_ID_LEN + 1];
	size_t len;
	bool too_large;
	char body[WEBPUSH_BODY_MAX + 1];
};

/* Frees a request's state; accepts NULL. */
void
webpush_http_free(void *state)
{
	free(state);
}

/* GET /webpush/key: {"key": the VAPID public key, base64url}. */
static enum MHD_Result
webpush_http_key(struct MHD_Connection *conn, const char *method)
{
	char body[200];

	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply_method_not_allowed(conn, "GET, HEAD");
	snprintf(body, sizeof body, "{\"key\":\"%s\"}", webpush_public_key());
	return reply_json(conn, MHD_HTTP_OK, body);
}

/* OPTIONS (a cross-origin page registering): 204 for a cors_origins origin, else 403. */
static enum MHD_Result
webpush_http_preflight(struct MHD_Connection *conn)
{
	const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (origin == NULL || *opt_str(OPT_CORS_ORIGINS) == '\0' || !cors_allowed(origin))
		return reply_error(conn, MHD_HTTP_FORBIDDEN, "origin not allowed");
	if ((r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT)) == NULL)
		return MHD_NO;
	cors_headers(conn, r);
	MHD_add_response_header(r, "Access-Control-Allow-Methods", "GET, POST, DELETE");
	MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
	MHD_add_response_header(r, "Access-Control-Max-Age", "600");
	ret = conn_queue(conn, MHD_HTTP_NO_CONTENT, r);
	MHD_destroy_response(r);
	return ret;
}

/* The job's answer (sender thread); the last of it and the handler resumes. */
static void
webpush_http_answered(void *arg, unsigned status, const char *text)
{
	struct webpush_req *w = arg;

	w->status = status;
	snprintf(w->text, sizeof w->text, "%s", text);
	if (atomic_fetch_sub(&w->wait, 1) == 1)
		conn_resume(w->conn);
}

/* The answer once the job is done: 201 {"channel","id"}, 204, or the error. */
static enum MHD_Result
webpush_http_reply(struct MHD_Connection *conn, struct webpush_req *w)
{
	char body[NAMES_CHANNEL_MAX + sizeof w->text + 40];

	if (w->status == 201) {
		snprintf(body, sizeof body, "{\"channel\":\"%s\",\"id\":\"%s\"}", w->channel, w->text);
		return reply_json(conn, MHD_HTTP_CREATED, body);
	}
	if (w->status == 204)
		return reply_json(conn, MHD_HTTP_NO_CONTENT, "");
	return reply_error(conn, w->status, w->text);
}

/* Validates the whole body, then hands the change to the sender thread and waits. */
static enum MHD_Result
webpush_http_submit(struct MHD_Connection *conn, struct webpush_req *w)
{
	struct webpush_reg reg;
	char why[256];
	int rc;

	if (w->too_large)
		return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "registration too large");
	if (!w->remove && webpush_reg_parse(w->body, w->len, w->channel,
	    w->session[0] != '\0' ? w->session : NULL, &reg, why, sizeof why) != 0)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, why);
	atomic_store(&w->wait, 2);
	w->submitted = true;
	rc = w->remove ? webpush_submit(NULL, w->channel, w->id, webpush_http_answered, w) :
	    webpush_submit(&reg, NULL, NULL, webpush_http_answered, w);
	if (rc == -1)
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "web push is stopping");
	if (atomic_load(&w->wait) > 1) {
		w->suspended = true;
		MHD_suspend_connection(conn);
	}
	if (atomic_fetch_sub(&w->wait, 1) != 1)
		return MHD_YES;
	if (w->suspended) {
		conn_resume(conn);
		return MHD_YES;
	}
	return webpush_http_reply(conn, w);
}

/* First call: route, channel, auth and size, all before the body is read. */
static enum MHD_Result
webpush_http_begin(struct MHD_Connection *conn, const char *url, const char *method, void **req_cls)
{
	const char *rest = url + strlen(WEBPUSH_PREFIX), *slash = strchr(rest, '/');
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
	size_t len = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
	bool remove = strcmp(method, MHD_HTTP_METHOD_DELETE) == 0;
	struct auth_result ar;
	struct webpush_req *w;

	if (slash == NULL && strcmp(method, MHD_HTTP_METHOD_POST) != 0)
		return reply_method_not_allowed(conn, "POST");
	if (slash != NULL && !remove)
		return reply_method_not_allowed(conn, "DELETE");
	if (!names_channel_valid(rest, len))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "invalid channel name");
	if (slash != NULL && strlen(slash + 1) != WEBPUSH_ID_LEN)
		return reply_error(conn, MHD_HTTP_NOT_FOUND, "no such registration");
	if (auth_subscriber(conn, rest, len, &ar) == -1)
		return auth_refuse(conn, &ar);
	if (!remove && cl != NULL && strtoull(cl, NULL, 10) > WEBPUSH_BODY_MAX)
		return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "registration too large");
	if ((w = calloc(1, sizeof *w)) == NULL)
		return MHD_NO;
	w->kind = REQ_WEBPUSH;
	w->remove = remove;
	w->conn = conn;
	memcpy(w->channel, rest, len);
	if (slash != NULL)
		memcpy(w->id, slash + 1, WEBPUSH_ID_LEN);
	snprintf(w->session, sizeof w->session, "%s", ar.session);
	*req_cls = w;
	return MHD_YES;
}

/*
 * Every call of a /webpush/ request: the first checks what the headers decide, body
 * chunks are collected (up to WEBPUSH_BODY_MAX), the last submits the change, and the
 * call after the job's answer replies.
 */
enum MHD_Result
webpush_http_handle(struct MHD_Connection *conn, const char *url, const char *method,
    const char *upload, size_t *upload_size, void **req_cls)
{
	struct webpush_req *w = *req_cls;

	if (w == NULL) {
		if (!webpush_enabled())
			return reply_error(conn, MHD_HTTP_NOT_FOUND, "web push is off");
		if (strcmp(method, MHD_HTTP_METHOD_OPTIONS) == 0)
			return webpush_http_preflight(conn);
		if (strcmp(url, WEBPUSH_PREFIX "key") == 0)
			return webpush_http_key(conn, method);
		return webpush_http_begin(conn, url, method, req_cls);
	}
	if (*upload_size > 0) {
		if (w->len + *upload_size > WEBPUSH_BODY_MAX)
			w->too_large = true;
		else {
			memcpy(w->body + w->len, upload, *upload_size);
			w->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (!w->submitted)
		return webpush_http_submit(conn, w);
	return webpush_http_reply(conn, w);
}
