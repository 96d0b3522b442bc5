/*
 * POST /publish/<channel> and the batch form POST /publish: checks the request before
 * the body is read (size from Content-Length, channel, event type, filters), collects
 * the body within its bound, validates it, and hands each event to channel_publish().
 * Owns the per-request publish state.
 */
#include "broker.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "utf8.h"

#define PUBLISH_BATCH_LIMIT (64LL * 1024 * 1024)	/* bytes in one batch body, at most */

/* A publish request between its first and last access-handler call. */
struct publish_state {
	enum req_kind kind;	/* REQ_PUBLISH */
	bool batch;
	bool too_large;		/* the body outgrew its limit while streaming in */
	/* Redis mode: the request waits, suspended, for the bus's answers. */
	struct MHD_Connection *conn;
	bool waiting;
	atomic_uint outstanding;	/* answers still to come */
	json_t *results;		/* one object per event, filled by the Redis thread */
	size_t limit;
	size_t len, cap;
	char *body;
	char channel[NAMES_CHANNEL_MAX + 1];
};

/* Frees the state of a finished publish request; accepts NULL. */
void
publish_free(void *state)
{
	struct publish_state *p = state;

	if (p == NULL)
		return;
	json_decref(p->results);
	free(p->body);
	free(p);
}

/* A query argument, or the header standing for it. */
static const char *
publish_param(struct MHD_Connection *conn, const char *arg, const char *header)
{
	const char *v = http_arg(conn, arg);

	return v != NULL ? v : MHD_lookup_connection_value(conn, MHD_HEADER_KIND, header);
}

/* Checks the optional type and filter strings of one event; returns NULL or the reason. */
static const char *
publish_check_fields(const struct publish_req *r)
{
	if (r->type != NULL && !names_event_type_valid(r->type, strlen(r->type)))
		return "invalid event type";
	if (r->session != NULL && !names_id_valid(r->session, strlen(r->session)))
		return "invalid session";
	if (r->exclude_session != NULL &&
	    !names_id_valid(r->exclude_session, strlen(r->exclude_session)))
		return "invalid exclude_session";
	if (r->origin != NULL && !names_id_valid(r->origin, strlen(r->origin)))
		return "invalid origin";
	return NULL;
}

/* Fills a request from the query and headers of a single publish. */
static void
publish_req_from_conn(struct MHD_Connection *conn, struct publish_req *r)
{
	memset(r, 0, sizeof *r);
	r->type = publish_param(conn, "event", "X-Event");
	r->session = publish_param(conn, "session", "X-Session");
	r->exclude_session = publish_param(conn, "exclude_session", "X-Exclude-Session");
	r->origin = publish_param(conn, "origin", "X-Origin");
}

/*
 * First call: everything decidable from the headers, so that an Expect: 100-continue
 * client gets 413 or 400 before it sends the body.
 */
static enum MHD_Result
publish_begin(struct MHD_Connection *conn, const char *url, void **req_cls)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
	bool batch = strcmp(url, "/publish") == 0;
	const char *name = url + strlen("/publish/"), *why;
	long long limit = opt(OPT_MAX_MESSAGE_SIZE);
	struct publish_req r;
	struct publish_state *p;

	if (batch) {
		limit *= opt(OPT_MAX_BATCH);
		if (limit > PUBLISH_BATCH_LIMIT)
			limit = PUBLISH_BATCH_LIMIT;
	} else {
		if (!names_channel_valid(name, strlen(name)))
			return http_error(conn, MHD_HTTP_BAD_REQUEST, "invalid channel name");
		publish_req_from_conn(conn, &r);
		if ((why = publish_check_fields(&r)) != NULL)
			return http_error(conn, MHD_HTTP_BAD_REQUEST, why);
	}
	if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)limit)
		return http_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "message too large");
	if ((p = calloc(1, sizeof *p)) == NULL)
		return MHD_NO;
	p->kind = REQ_PUBLISH;
	p->batch = batch;
	p->limit = (size_t)limit;
	if (!batch)
		memcpy(p->channel, name, strlen(name) + 1);
	*req_cls = p;
	return MHD_YES;
}

/* Appends a chunk of body, or notes that the body is over its limit. */
static int
publish_append(struct publish_state *p, const char *data, size_t len)
{
	size_t cap;
	char *b;

	if (p->too_large || p->len + len > p->limit) {
		p->too_large = true;
		return 0;
	}
	if (p->len + len + 1 > p->cap) {
		cap = p->cap ? p->cap : 1024;
		while (cap < p->len + len + 1)
			cap *= 2;
		if ((b = realloc(p->body, cap)) == NULL)
			return -1;
		p->body = b;
		p->cap = cap;
	}
	memcpy(p->body + p->len, data, len);
	p->len += len;
	p->body[p->len] = '\0';
	return 0;
}

/* A bus answer for item index (encoded in the slot pointer) of a waiting request. */
struct publish_slot {
	struct publish_state *p;
	size_t index;
};

/* Runs on the Redis thread: records one result and resumes the request after the last. */
static void
publish_bus_done(void *arg, int ok, const char *id, unsigned n)
{
	struct publish_slot *slot = arg;
	struct publish_state *p = slot->p;
	json_t *o = json_array_get(p->results, slot->index);

	if (ok == 0) {
		json_object_set_new(o, "id", json_string(id));
		json_object_set_new(o, "subscribers", json_integer(n));
	} else
		json_object_set_new(o, "error", json_string("event could not be stored"));
	free(slot);
	if (atomic_fetch_sub(&p->outstanding, 1) == 1)
		MHD_resume_connection(p->conn);
}

/*
 * Redis mode: hands each event to the bus and suspends the request until every
 * answer is in (never blocking an MHD thread on Redis). Returns MHD_YES, or an
 * immediate 503 when Redis is down.
 */
static enum MHD_Result
publish_via_bus(struct MHD_Connection *conn, struct publish_state *p, const struct publish_req *reqs,
    size_t n)
{
	size_t i;
	struct publish_slot *slot;
	char why[160];

	if (!bus_ready(why, sizeof why))
		return http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
	p->conn = conn;
	p->results = json_array();
	for (i = 0; i < n; i++)
		json_array_append_new(p->results, json_pack("{s:s}", "channel", reqs[i].channel));
	atomic_store(&p->outstanding, (unsigned)n + 1);	/* +1 until every job is queued */
	p->waiting = true;
	MHD_suspend_connection(conn);
	for (i = 0; i < n; i++) {
		if ((slot = malloc(sizeof *slot)) == NULL) {
			json_object_set_new(json_array_get(p->results, i), "error",
			    json_string("out of memory"));
			atomic_fetch_sub(&p->outstanding, 1);
			continue;
		}
		slot->p = p;
		slot->index = i;
		if (bus_publish(&reqs[i], publish_bus_done, slot) == -1)
			publish_bus_done(slot, -1, NULL, 0);
	}
	if (atomic_fetch_sub(&p->outstanding, 1) == 1)
		MHD_resume_connection(conn);
	return MHD_YES;
}

/* Answers a request whose bus results are all in: a single object, or {"results":[...]}. */
static enum MHD_Result
publish_bus_reply(struct MHD_Connection *conn, struct publish_state *p)
{
	json_t *first = json_array_get(p->results, 0), *reply;
	char *body;
	enum MHD_Result ret;

	if (!p->batch && json_object_get(first, "error") != NULL)
		return http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "event could not be stored");
	reply = p->batch ? json_pack("{s:O}", "results", p->results) : json_incref(first);
	body = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	ret = body ? http_json(conn, MHD_HTTP_OK, body) : MHD_NO;
	free(body);
	json_decref(reply);
	return ret;
}

/* Publishes one event and answers with its id and subscriber count. */
static enum MHD_Result
publish_single(struct MHD_Connection *conn, struct publish_state *p)
{
	struct publish_req r;
	char id[BROKER_ID_MAX], body[NAMES_CHANNEL_MAX + BROKER_ID_MAX + 64];
	unsigned n;

	publish_req_from_conn(conn, &r);
	r.channel = p->channel;
	r.data = p->body != NULL ? p->body : "";
	r.len = p->len;
	if (bus_enabled)
		return publish_via_bus(conn, p, &r, 1);
	if (channel_publish(&r, id, sizeof id, &n) == -1)
		return http_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "event could not be stored");
	/* Channel names and ids need no JSON escaping (their alphabets exclude it). */
	snprintf(body, sizeof body, "{\"channel\":\"%s\",\"id\":\"%s\",\"subscribers\":%u}",
	    p->channel, id, n);
	return http_json(conn, MHD_HTTP_OK, body);
}

/* Reads an optional string member; returns -1 when present but not a string. */
static int
publish_member(json_t *item, const char *key, const char **out)
{
	json_t *v = json_object_get(item, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

/*
 * Turns one batch item into a request; data that is not a string is sent as compact
 * JSON (stored in *owned for the caller to free). Returns NULL or the reason.
 */
static const char *
publish_batch_item(json_t *item, struct publish_req *r, char **owned)
{
	json_t *data = json_object_get(item, "data");
	const char *why;

	memset(r, 0, sizeof *r);
	*owned = NULL;
	if (!json_is_object(item))
		return "item is not an object";
	if (publish_member(item, "channel", &r->channel) == -1 || r->channel == NULL ||
	    !names_channel_valid(r->channel, strlen(r->channel)))
		return "invalid channel name";
	if (publish_member(item, "event", &r->type) == -1 ||
	    publish_member(item, "session", &r->session) == -1 ||
	    publish_member(item, "exclude_session", &r->exclude_session) == -1 ||
	    publish_member(item, "origin", &r->origin) == -1)
		return "event, session, exclude_session and origin must be strings";
	if ((why = publish_check_fields(r)) != NULL)
		return why;
	if (data == NULL)
		return "missing data";
	if (json_is_string(data)) {
		r->data = json_string_value(data);
		r->len = json_string_length(data);
	} else {
		if ((*owned = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
			return "cannot encode data";
		r->data = *owned;
		r->len = strlen(*owned);
	}
	if (r->len > (size_t)opt(OPT_MAX_MESSAGE_SIZE))
		return "message too large";
	return NULL;
}

/* Checks every item of a batch; on the first bad one writes the 400 reason. */
static int
publish_batch_check(json_t *arr, char *why, size_t len)
{
	size_t i;
	json_t *item;
	struct publish_req r;
	const char *bad;
	char *owned;

	if (!json_is_array(arr)) {
		snprintf(why, len, "batch body must be a JSON array");
		return -1;
	}
	if (json_array_size(arr) > (size_t)opt(OPT_MAX_BATCH)) {
		snprintf(why, len, "batch has more than %lld items", opt(OPT_MAX_BATCH));
		return -1;
	}
	json_array_foreach(arr, i, item) {
		bad = publish_batch_item(item, &r, &owned);
		free(owned);
		if (bad != NULL) {
			snprintf(why, len, "item %zu: %s", i, bad);
			return -1;
		}
	}
	return 0;
}

/* Publishes a validated batch; answers {"results":[...]}. */
static enum MHD_Result
publish_batch_run(struct MHD_Connection *conn, json_t *arr)
{
	json_t *results = json_array(), *item, *reply;
	struct publish_req r;
	char id[BROKER_ID_MAX], *owned, *body;
	unsigned n;
	size_t i;
	enum MHD_Result ret;

	json_array_foreach(arr, i, item) {
		publish_batch_item(item, &r, &owned);
		if (channel_publish(&r, id, sizeof id, &n) == -1)
			json_array_append_new(results, json_pack("{s:s,s:s}", "channel", r.channel,
			    "error", "event could not be stored"));
		else
			json_array_append_new(results, json_pack("{s:s,s:s,s:I}", "channel",
			    r.channel, "id", id, "subscribers", (json_int_t)n));
		free(owned);
	}
	reply = json_pack("{s:o}", "results", results);	/* steals results */
	body = reply ? json_dumps(reply, JSON_COMPACT) : NULL;
	ret = body ? http_json(conn, MHD_HTTP_OK, body) : MHD_NO;
	free(body);
	json_decref(reply);
	return ret;
}

/* Redis mode: queues every item of a validated batch on the bus. */
static enum MHD_Result
publish_batch_bus(struct MHD_Connection *conn, struct publish_state *p, json_t *arr)
{
	size_t n = json_array_size(arr), i;
	struct publish_req *reqs = calloc(n ? n : 1, sizeof *reqs);
	char **owned = calloc(n ? n : 1, sizeof *owned);
	enum MHD_Result ret = MHD_NO;

	if (reqs != NULL && owned != NULL) {
		for (i = 0; i < n; i++)
			publish_batch_item(json_array_get(arr, i), &reqs[i], &owned[i]);
		ret = publish_via_bus(conn, p, reqs, n);	/* the bus copies what it needs */
		for (i = 0; i < n; i++)
			free(owned[i]);
	}
	free(reqs);
	free(owned);
	return ret;
}

/* Parses and publishes a batch body, all or nothing at validation. */
static enum MHD_Result
publish_batch(struct MHD_Connection *conn, struct publish_state *p)
{
	json_error_t jerr;
	json_t *arr;
	char why[256];
	enum MHD_Result ret;

	arr = json_loadb(p->body ? p->body : "", p->len, JSON_REJECT_DUPLICATES, &jerr);
	if (arr == NULL) {
		snprintf(why, sizeof why, "invalid JSON: %s", jerr.text);
		return http_error(conn, MHD_HTTP_BAD_REQUEST, why);
	}
	if (publish_batch_check(arr, why, sizeof why) == -1)
		ret = http_error(conn, MHD_HTTP_BAD_REQUEST, why);
	else if (bus_enabled)
		ret = publish_batch_bus(conn, p, arr);
	else
		ret = publish_batch_run(conn, arr);
	json_decref(arr);
	return ret;
}

/* The access handler's publish path, called once per chunk of body and once at the end. */
enum MHD_Result
publish_handle(struct MHD_Connection *conn, const char *url, const char *upload,
    size_t *upload_size, void **req_cls)
{
	struct publish_state *p = *req_cls;

	if (p == NULL)
		return publish_begin(conn, url, req_cls);
	if (p->waiting)		/* resumed: every bus answer is in */
		return publish_bus_reply(conn, p);
	if (*upload_size > 0) {
		if (publish_append(p, upload, *upload_size) == -1)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (p->too_large)
		return http_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "message too large");
	if (!utf8_valid(p->body ? p->body : "", p->len))
		return http_error(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "body is not valid UTF-8");
	return p->batch ? publish_batch(conn, p) : publish_single(conn, p);
}
