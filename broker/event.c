/*
 * Building the one shared copy of an event (its SSE frame followed by its filter
 * strings, in one allocation) and its reference count. Knows nothing of channels,
 * ids' formats or threads beyond the atomic count.
 */
#include "event.h"

#include <stdlib.h>
#include <string.h>

#include "sse.h"

/* Copies an optional string into the event's tail; returns the new tail offset. */
static size_t
event_put_str(struct event *ev, size_t off, const char *s, const char **dst)
{
	size_t n;

	if (s == NULL) {
		*dst = NULL;
		return off;
	}
	n = strlen(s) + 1;
	memcpy(ev->frame + off, s, n);
	*dst = ev->frame + off;
	return off + n;
}

/* One allocation: the frame, then the session, exclude and origin strings. */
struct event *
event_create(const struct publish_req *req, uint64_t seq, const char *id, int64_t published_ns)
{
	size_t flen, extra = 0, off;
	struct event *ev;

	flen = sse_frame_size(id, req->type, req->data, req->len);
	if (req->session)
		extra += strlen(req->session) + 1;
	if (req->exclude_session)
		extra += strlen(req->exclude_session) + 1;
	if (req->origin)
		extra += strlen(req->origin) + 1;
	if ((ev = malloc(sizeof *ev + flen + extra)) == NULL)
		return NULL;
	atomic_init(&ev->refs, 1);
	ev->seq = seq;
	ev->published_ns = published_ns;
	ev->len = sse_frame(ev->frame, id, req->type, req->data, req->len);
	off = event_put_str(ev, ev->len, req->session, &ev->session);
	off = event_put_str(ev, off, req->exclude_session, &ev->exclude_session);
	event_put_str(ev, off, req->origin, &ev->origin);
	return ev;
}

/* A holder keeps the event alive after the ring evicted it. */
struct event *
event_ref(struct event *ev)
{
	atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
	return ev;
}

/* Frees the event with its last reference. */
void
event_unref(struct event *ev)
{
	if (ev != NULL && atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) == 1)
		free(ev);
}
