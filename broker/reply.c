/*
 * Every answer the broker builds itself except event streams and embedded files: JSON
 * bodies (errors as {"error": ...}, publish results, stats), the refusals of auth, the
 * metrics text and CORS preflights, with the headers each needs (Retry-After on 429
 * and 503, Allow on 405, WWW-Authenticate on 401, CORS on all). Strings a peer chose
 * are escaped by jansson; channel names and ids need no escaping (their alphabets
 * exclude it), which keeps the hot publish answer a single snprintf.
 */
#include "broker.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "utf8.h"

#define REPLY_CORS_MAX_AGE "600"

/* Queues body (copied) with its type and the headers every answer of ours carries. */
static enum MHD_Result
reply_send(struct MHD_Connection *conn, unsigned status, const char *type, const char *body,
    size_t len, const char *name, const char *value)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE || status == MHD_HTTP_TOO_MANY_REQUESTS)
		MHD_add_response_header(r, "Retry-After", BROKER_RETRY_AFTER);
	if (name != NULL)
		MHD_add_response_header(r, name, value);
	cors_headers(conn, r);
	ret = conn_queue(conn, status, r);
	MHD_destroy_response(r);
	if (status >= 400)
		atomic_fetch_add(&counters.rejected, 1);
	return ret;
}

/* A JSON body with a status. */
enum MHD_Result
reply_json(struct MHD_Connection *conn, unsigned status, const char *body)
{
	return reply_send(conn, status, "application/json", body, strlen(body), NULL, NULL);
}

/* Dumps o (stolen) as the body. */
static enum MHD_Result
reply_object(struct MHD_Connection *conn, unsigned status, json_t *o, const char *name,
    const char *value)
{
	char *body = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	enum MHD_Result ret;

	json_decref(o);
	if (body == NULL)
		return reply_send(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json",
		    "{\"error\":\"out of memory\"}", 25, NULL, NULL);
	ret = reply_send(conn, status, "application/json", body, strlen(body), name, value);
	free(body);
	return ret;
}

/*
 * {"error": msg}. A reason may quote what the client sent (jansson's parse errors quote
 * the offending bytes, which can be half a UTF-8 sequence): one that is not valid
 * UTF-8 has its bytes above 0x7f written as \xNN, so the answer is still JSON, not a 500.
 */
enum MHD_Result
reply_error(struct MHD_Connection *conn, unsigned status, const char *msg)
{
	char clean[1024];

	return reply_object(conn, status, json_pack("{s:s}", "error", utf8_clean(clean, sizeof clean,
	    msg)), NULL, NULL);
}

/* 405 with the Allow header the client should have used. */
enum MHD_Result
reply_method_not_allowed(struct MHD_Connection *conn, const char *allow)
{
	static const char body[] = "{\"error\":\"method not allowed\"}";

	return reply_send(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "application/json", body,
	    sizeof body - 1, "Allow", allow);
}

/* An auth refusal: 401 carries the Bearer challenge. */
enum MHD_Result
reply_refused(struct MHD_Connection *conn, unsigned status, const char *msg,
    const char *www_authenticate)
{
	return reply_object(conn, status, json_pack("{s:s}", "error", msg),
	    www_authenticate != NULL ? "WWW-Authenticate" : NULL, www_authenticate);
}

/* A 200 text body (metrics). */
enum MHD_Result
reply_text(struct MHD_Connection *conn, const char *type, const char *body, size_t len)
{
	return reply_send(conn, MHD_HTTP_OK, type, body, len, NULL, NULL);
}

/* reply_retry's body into buf (also a kept long-poll's refusal, subscribe.c); its length, or 0. */
size_t
reply_retry_body(char *buf, size_t len, unsigned retry_ms, const char *why)
{
	int n = snprintf(buf, len, "retry: %u\n: ssepush: refused for now (%s); retry in %u ms\n\n",
	    retry_ms, why, retry_ms);

	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

/*
 * A refusal an EventSource retries by itself: WHATWG EventSource fails for good on any
 * status but 200, and ignores Retry-After, so a temporary refusal of a client that
 * accepts text/event-stream is a 200 stream carrying only "retry:" (the delay) and a
 * comment saying why, then its end; the browser reconnects after that delay.
 */
enum MHD_Result
reply_retry(struct MHD_Connection *conn, unsigned retry_ms, const char *why)
{
	char body[REPLY_RETRY_BODY_MAX];
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t n = reply_retry_body(body, sizeof body, retry_ms, why);

	if (n == 0)
		return MHD_NO;
	r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/event-stream; charset=utf-8");
	MHD_add_response_header(r, "Cache-Control", "no-cache");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	MHD_add_response_header(r, "Retry-After", BROKER_RETRY_AFTER);
	cors_headers(conn, r);
	ret = conn_queue(conn, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/*
 * Answers OPTIONS (only routed here when cors_origins is set): 204 with the methods and
 * headers the route accepts for an allowed origin, 403 for another, 404 off the routes.
 */
enum MHD_Result
reply_preflight(struct MHD_Connection *conn, bool events, bool publish)
{
	const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (!events && !publish)
		return reply_error(conn, MHD_HTTP_NOT_FOUND, "not found");
	if (origin == NULL || !cors_allowed(origin))
		return reply_error(conn, MHD_HTTP_FORBIDDEN, "origin not allowed");
	r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	if (r == NULL)
		return MHD_NO;
	cors_headers(conn, r);
	MHD_add_response_header(r, "Access-Control-Allow-Methods", events ? "GET" : "POST");
	MHD_add_response_header(r, "Access-Control-Allow-Headers", events ?
	    "Authorization, Last-Event-ID, X-Long-Poll" :
	    "Authorization, Content-Type, X-Event, X-Session, X-Exclude-Session, X-Origin");
	MHD_add_response_header(r, "Access-Control-Max-Age", REPLY_CORS_MAX_AGE);
	ret = conn_queue(conn, MHD_HTTP_NO_CONTENT, r);
	MHD_destroy_response(r);
	return ret;
}

/* {"channel","id","subscribers"} of one publish. */
enum MHD_Result
reply_published(struct MHD_Connection *conn, const char *channel, const char *id,
    unsigned subscribers)
{
	char body[NAMES_CHANNEL_MAX + BROKER_ID_MAX + 64];

	snprintf(body, sizeof body, "{\"channel\":\"%s\",\"id\":\"%s\",\"subscribers\":%u}",
	    channel, id, subscribers);
	return reply_json(conn, MHD_HTTP_OK, body);
}

/* {"results":[...]} of a batch, one object per item in order. */
enum MHD_Result
reply_batch(struct MHD_Connection *conn, const struct reply_item *items, size_t n)
{
	json_t *results = json_array();
	size_t i;

	for (i = 0; i < n && results != NULL; i++)
		json_array_append_new(results, items[i].error != NULL ?
		    json_pack("{s:s,s:s}", "channel", items[i].channel, "error", items[i].error) :
		    json_pack("{s:s,s:s,s:I}", "channel", items[i].channel, "id", items[i].id,
		    "subscribers", (json_int_t)items[i].subscribers));
	return reply_object(conn, MHD_HTTP_OK, json_pack("{s:o}", "results", results), NULL, NULL);
}

/* GET /stats. */
enum MHD_Result
reply_stats(struct MHD_Connection *conn)
{
	return reply_object(conn, MHD_HTTP_OK, json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}",
	    "connections", (json_int_t)atomic_load(&counters.connections),
	    "subscribers", (json_int_t)atomic_load(&counters.streams),
	    "channels", (json_int_t)atomic_load(&counters.channels),
	    "published", (json_int_t)atomic_load(&counters.published),
	    "delivered", (json_int_t)atomic_load(&counters.delivered),
	    "resets", (json_int_t)atomic_load(&counters.resets)), NULL, NULL);
}

/* GET /stats/<channel>. */
enum MHD_Result
reply_channel_stats(struct MHD_Connection *conn, const char *channel, unsigned subscribers,
    size_t history, uint64_t published, const char *last_id)
{
	return reply_object(conn, MHD_HTTP_OK, json_pack("{s:s,s:I,s:I,s:I,s:s}", "channel", channel,
	    "subscribers", (json_int_t)subscribers, "history", (json_int_t)history,
	    "published", (json_int_t)published, "last_id", last_id), NULL, NULL);
}
