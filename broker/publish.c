/*
 * POST /publish/<channel> and the batch form POST /publish: checks the request before
 * the body is read (size from Content-Length, channel, event type, filters), collects
 * the body within its bound, validates it, and hands each event to the bus. The bus
 * may answer at once (standalone) or later from its own thread (Redis): the request is
 * suspended only if some answer is still out when every event has been handed over,
 * and answered once the last one is in. Owns the per-request publish state.
 */
#include "broker.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "log.h"
#include "names.h"
#include "stream.h"
#include "utf8.h"

#define PUBLISH_BATCH_LIMIT (64LL * 1024 * 1024)	/* bytes in one batch body, at most */
#define PUBLISH_TOO_LARGE "message too large"

struct publish_state;

/* Where one bus answer goes. */
struct publish_slot {
	struct publish_state *p;
	size_t index;
};

/* A publish request between its first and last access-handler call. */
struct publish_state {
	enum req_kind kind;	/* REQ_PUBLISH */
	bool batch;
	bool too_large;		/* the body outgrew its limit while streaming in */
	bool waiting;		/* suspended until the last bus answer */
	bool answered;		/* every event was handed to the bus */
	atomic_uint outstanding;	/* answers still to come, +1 while handing events over */
	struct MHD_Connection *conn;
	json_t *batch_items;	/* the parsed batch, which the items' channel names point into */
	struct reply_item *items;	/* one per event, filled by the bus's answers */
	struct publish_slot *slots;
	struct reply_item item;		/* items and slots of a single publish: no allocation */
	struct publish_slot slot;
	size_t nitems;
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
	json_decref(p->batch_items);
	if (p->items != &p->item)
		free(p->items);
	if (p->slots != &p->slot)
		free(p->slots);
	free(p->body);
	free(p);
}

/* A query argument, or the header standing for it. */
static const char *
publish_param(struct MHD_Connection *conn, const char *arg, const char *header)
{
	const char *v = request_arg(conn, arg);

	return v != NULL ? v : MHD_lookup_connection_value(conn, MHD_HEADER_KIND, header);
}

/* Checks the optional type and filter strings of one event; returns NULL or the reason. */
static const char *
publish_check_fields(const struct publish_req *r)
{
	if (r->type != NULL && !names_event_type_valid(r->type, strlen(r->type)))
		return "invalid event type";
	if (r->type != NULL && names_event_type_reserved(r->type, strlen(r->type)))
		return "reserved event type: ping, reset and state are the broker's own";
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
			return reply_error(conn, MHD_HTTP_BAD_REQUEST, "invalid channel name");
		publish_req_from_conn(conn, &r);
		if ((why = publish_check_fields(&r)) != NULL)
			return reply_error(conn, MHD_HTTP_BAD_REQUEST, why);
	}
	if (cl != NULL && strtoull(cl, NULL, 10) > (unsigned long long)limit)
		return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, PUBLISH_TOO_LARGE);
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

/* Records one bus answer; the last one resumes a suspended request. */
static void
publish_done(void *arg, int status, const char *id, unsigned n)
{
	struct publish_slot *slot = arg;
	struct publish_state *p = slot->p;
	struct reply_item *it = &p->items[slot->index];

	if (status == 0) {
		snprintf(it->id, sizeof it->id, "%s", id);
		it->subscribers = n;
	} else
		it->error = "event could not be stored";
	if (atomic_fetch_sub(&p->outstanding, 1) == 1 && p->waiting)
		conn_resume(p->conn);
}

/* Answers once every bus answer is in: one object, or {"results":[...]}. */
static enum MHD_Result
publish_reply(struct MHD_Connection *conn, struct publish_state *p)
{
	if (p->batch)
		return reply_batch(conn, p->items, p->nitems);
	if (p->items[0].error != NULL)
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, p->items[0].error);
	return reply_published(conn, p->channel, p->items[0].id, p->items[0].subscribers);
}

/*
 * Hands each event to the bus. Whoever brings the answer count to zero answers: this
 * thread (nothing was left out: no suspend at all), or the last bus answer, which
 * resumes the request suspended here (never blocking an event loop on Redis).
 */
static enum MHD_Result
publish_run(struct MHD_Connection *conn, struct publish_state *p, const struct publish_req *reqs,
    size_t n)
{
	size_t i;
	char why[160];

	if (!(bus->accepting != NULL ? bus->accepting : bus->ready)(why, sizeof why))
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
	if (n == 1 && !p->batch) {
		p->items = &p->item;
		p->slots = &p->slot;
	} else {
		p->items = calloc(n ? n : 1, sizeof *p->items);
		p->slots = calloc(n ? n : 1, sizeof *p->slots);
	}
	if (p->items == NULL || p->slots == NULL)
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
	p->conn = conn;
	p->nitems = n;
	atomic_store(&p->outstanding, (unsigned)n + 1);
	for (i = 0; i < n; i++) {
		p->items[i].channel = reqs[i].channel;
		p->slots[i].p = p;
		p->slots[i].index = i;
		bus->publish(&reqs[i], publish_done, &p->slots[i]);
	}
	p->answered = true;
	if (atomic_load(&p->outstanding) > 1) {
		p->waiting = true;
		MHD_suspend_connection(conn);
	}
	if (atomic_fetch_sub(&p->outstanding, 1) != 1)
		return MHD_YES;		/* the last answer resumes it */
	if (p->waiting) {
		conn_resume(conn);	/* answered meanwhile: the handler runs again */
		return MHD_YES;
	}
	return publish_reply(conn, p);
}

/* Publishes one event. */
static enum MHD_Result
publish_single(struct MHD_Connection *conn, struct publish_state *p)
{
	struct publish_req r;

	publish_req_from_conn(conn, &r);
	r.channel = p->channel;
	r.data = p->body != NULL ? p->body : "";
	r.len = p->len;
	return publish_run(conn, p, &r, 1);
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
		return PUBLISH_TOO_LARGE;
	return NULL;
}

/* Checks every item of a batch; on the first bad one writes the reason and returns its status (413 or 400), else 0. */
static unsigned
publish_batch_check(json_t *arr, char *why, size_t len)
{
	size_t i;
	json_t *item;
	struct publish_req r;
	const char *bad;
	char *owned;

	if (!json_is_array(arr)) {
		snprintf(why, len, "batch body must be a JSON array");
		return MHD_HTTP_BAD_REQUEST;
	}
	if (json_array_size(arr) > (size_t)opt(OPT_MAX_BATCH)) {
		snprintf(why, len, "batch has more than %lld items", opt(OPT_MAX_BATCH));
		return MHD_HTTP_BAD_REQUEST;
	}
	json_array_foreach(arr, i, item) {
		bad = publish_batch_item(item, &r, &owned);
		free(owned);
		if (bad != NULL) {
			snprintf(why, len, "item %zu: %s", i, bad);
			/* Too large is 413 for a batch item as for a single publish. */
			return strcmp(bad, PUBLISH_TOO_LARGE) == 0 ? MHD_HTTP_CONTENT_TOO_LARGE :
			    MHD_HTTP_BAD_REQUEST;
		}
	}
	return 0;
}

/* Publishes every item of a validated batch (the bus copies what it keeps). */
static enum MHD_Result
publish_batch_run(struct MHD_Connection *conn, struct publish_state *p, json_t *arr)
{
	size_t n = json_array_size(arr), i;
	struct publish_req *reqs = calloc(n ? n : 1, sizeof *reqs);
	char **owned = calloc(n ? n : 1, sizeof *owned);
	enum MHD_Result ret;

	if (reqs == NULL || owned == NULL) {
		free(reqs);
		free(owned);
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory");
	}
	for (i = 0; i < n; i++)
		publish_batch_item(json_array_get(arr, i), &reqs[i], &owned[i]);
	p->batch_items = json_incref(arr);	/* the answer names the channels */
	ret = publish_run(conn, p, reqs, n);
	for (i = 0; i < n; i++)
		free(owned[i]);
	free(reqs);
	free(owned);
	return ret;
}

/*
 * Parses and validates a batch body (no I/O, so a fuzzer can call it): 0 with the
 * array (new reference) in *out, or the status (400, 413) with the reason in why.
 */
unsigned
publish_batch_parse(const char *body, size_t len, json_t **out, char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *arr;
	unsigned status;

	*out = NULL;
	if ((arr = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		char text[sizeof jerr.text * 4];

		/* jansson quotes the offending bytes, maybe half a UTF-8 sequence. */
		snprintf(why, whylen, "invalid JSON: %s", utf8_clean(text, sizeof text, jerr.text));
		return MHD_HTTP_BAD_REQUEST;
	}
	if ((status = publish_batch_check(arr, why, whylen)) != 0) {
		json_decref(arr);
		return status;
	}
	*out = arr;
	return 0;
}

/* Parses and publishes a batch body, all or nothing at validation. */
static enum MHD_Result
publish_batch(struct MHD_Connection *conn, struct publish_state *p)
{
	json_t *arr;
	char why[256];
	enum MHD_Result ret;
	unsigned status;

	if ((status = publish_batch_parse(p->body ? p->body : "", p->len, &arr, why, sizeof why)) != 0)
		return reply_error(conn, status, why);
	ret = publish_batch_run(conn, p, arr);
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
	if (p->answered)	/* resumed: every bus answer is in */
		return publish_reply(conn, p);
	if (*upload_size > 0) {
		if (publish_append(p, upload, *upload_size) == -1)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (p->too_large)
		return reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, PUBLISH_TOO_LARGE);
	if (!utf8_valid(p->body ? p->body : "", p->len))
		return reply_error(conn, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "body is not valid UTF-8");
	/* As a batch's JSON cannot carry U+0000, neither may a single event's body. */
	if (p->len > 0 && memchr(p->body, '\0', p->len) != NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "data must not contain NUL (U+0000)");
	return p->batch ? publish_batch(conn, p) : publish_single(conn, p);
}
