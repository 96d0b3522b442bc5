/*
 * One published event: the fields a publisher gives (struct publish_req) and the one
 * shared, preformatted copy every subscriber reads (struct event), reference counted
 * so a ring eviction never frees a frame a stream is halfway through. Leaf module:
 * libc and the SSE framing only.
 */
#ifndef SSEPUSH_EVENT_H
#define SSEPUSH_EVENT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* The fields of one publish, all borrowed. */
struct publish_req {
	const char *channel;
	const char *type;		/* NULL for message */
	const char *data;
	size_t len;
	const char *session, *exclude_session, *origin;
};

/* One published event, preformatted once as its SSE frame. */
struct event {
	atomic_uint refs;		/* the ring's reference, plus one per holder (a stream halfway through it, a replay) */
	uint64_t seq;			/* ordered key of the id (broker sequence, or packed Redis id) */
	int64_t published_ns;		/* CLOCK_MONOTONIC at publish, for ttl and latency */
	const char *session;		/* deliver only to this session, or NULL */
	const char *exclude_session;	/* never to this session, or NULL */
	const char *origin;		/* not to subscribers producing this origin, or NULL */
	size_t len;			/* bytes in frame */
	char frame[];			/* "id: ...\nevent: ...\ndata: ...\n\n", then the strings above */
};

/*
 * Builds the event for req with the ordered key seq and the id clients see; new
 * (one reference). NULL on ENOMEM.
 */
struct event *event_create(const struct publish_req *req, uint64_t seq, const char *id,
    int64_t published_ns);
/* Takes a reference; returns ev. */
struct event *event_ref(struct event *ev);
/* Drops a reference; the last one frees the event. Accepts NULL. */
void event_unref(struct event *ev);

#endif
