/*
 * The local bus (standalone mode): publishing appends straight to the channel's ring
 * under its lock and fans out on the publishing thread; ids are "<boot>-<seq>", where
 * boot is drawn at start-up (so ids of an earlier process are unknown, never confused
 * with new ones) and seq is one counter for the whole process. Joining is immediate;
 * the ring is the whole history, so a replay never leaves the process.
 */
#include "bus.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker.h"
#include "channel.h"
#include "fanout.h"
#include "jmap.h"
#include "log.h"
#include "stream.h"
#include "webpush.h"

static atomic_ullong seq_counter;		/* last seq handed out */
static char boot[BROKER_BOOT_HEX + 1];	/* this process's id prefix */

/* Draws the id prefix. */
static int
local_start(void)
{
	unsigned char b[BROKER_BOOT_HEX / 2];
	size_t i;

	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
		log_error("getrandom: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < sizeof b; i++)
		sprintf(boot + 2 * i, "%02x", b[i]);
	return 0;
}

/* Nothing runs in the background. */
static void
local_stop(void)
{
}

/* Always ready. */
static bool
local_ready(char *why, size_t len)
{
	(void)why;
	(void)len;
	return true;
}

/* No Redis here. */
static void
local_metrics(FILE *f)
{
	fputs("# HELP ssepush_redis_up 1 when the Redis bus is connected (always 0 standalone).\n"
	    "# TYPE ssepush_redis_up gauge\nssepush_redis_up 0\n", f);
}

/* Events of an earlier channel of this name are gone, so ids up to now are stale. */
static uint64_t
local_floor(void)
{
	return atomic_load(&seq_counter);
}

/* "<boot>-<seq>". */
static void
local_format_id(char *buf, size_t len, uint64_t seq)
{
	snprintf(buf, len, "%s-%" PRIu64, boot, seq);
}

/* Parses an id of this process; -1 for anything else. */
static int
local_parse_id(const char *id, uint64_t *seq)
{
	const char *dash = strchr(id, '-');
	char *end;

	if (dash == NULL || dash - id != BROKER_BOOT_HEX ||
	    memcmp(id, boot, BROKER_BOOT_HEX) != 0 || dash[1] < '0' || dash[1] > '9')
		return -1;
	errno = 0;
	*seq = strtoull(dash + 1, &end, 10);
	return *end == '\0' && errno == 0 ? 0 : -1;
}

/* Stores and fans out under the channel lock; the seq is taken there so the ring stays in order. */
static void
local_publish(const struct publish_req *req, bus_publish_done *done, void *arg)
{
	struct channel *ch = channel_get(req->channel, strlen(req->channel), true);
	char id[BROKER_ID_MAX];
	struct event *ev;
	char *reached = NULL;
	uint64_t seq;
	int n = -1;

	if (ch == NULL) {
		done(arg, -1, NULL, 0);
		return;
	}
	/* Before the event is in the ring: a JMAP stream that fetches the state after reads it there. */
	if (req->type != NULL && strcmp(req->type, JMAP_STATE_EVENT) == 0)
		jmap_store_merge(req->channel, req->data, req->len);
	stream_defer_poll_ends();	/* kept long-poll connections' answers: ended below */
	pthread_mutex_lock(&ch->lock);
	seq = atomic_fetch_add(&seq_counter, 1) + 1;
	local_format_id(id, sizeof id, seq);
	if ((ev = event_create(req, seq, id, clock_ns())) != NULL &&
	    (n = fanout(ch, ev)) > 0 && webpush_wants(req->channel))
		reached = fanout_reached(ch, ev);	/* the ring holds ev: still valid here */
	pthread_mutex_unlock(&ch->lock);
	stream_end_polls();
	channel_put(ch);
	if (n < 0) {
		done(arg, -1, NULL, 0);
		return;
	}
	atomic_fetch_add(&counters.published, 1);
	webpush_offer(req, id, (unsigned)n, reached);	/* devices without a stream (a no-op unless registered) */
	free(reached);
	done(arg, 0, id, (unsigned)n);
}

/* Attached is joined: publishes take the same lock. */
static void
local_join(struct stream *s, bus_join_done *done)
{
	done(s, 0);
}

/* Nothing to undo. */
static void
local_leave(struct stream *s)
{
	(void)s;
}

/* The ring is the whole history: unknown and evicted ids get their reset here. */
static int
local_position(struct channel *ch, const char *last_id, uint64_t *index)
{
	uint64_t seq;

	if (local_parse_id(last_id, &seq) == -1 || seq > atomic_load(&seq_counter))
		return RESET_UNKNOWN;
	if (history_after(&ch->history, seq, index) == -1)
		return RESET_EXPIRED;
	return BUS_POS_LIVE;
}

/* Never needed (position never answers remote); answers as the contract says. */
static void
local_replay(struct stream *s, const char *last_id, bus_replay_done *done)
{
	uint64_t last;

	(void)last_id;
	pthread_mutex_lock(&s->ch->lock);
	stream_ref_locked(s);
	last = s->ch->history.last_seq;
	pthread_mutex_unlock(&s->ch->lock);
	done(s, RESET_UNKNOWN, last, NULL, 0);
}

/* The state jmap_store.c keeps, answered at once. */
static void
local_jmap_state(struct stream *s, bus_state_done *done)
{
	size_t len = 0;
	char *json = jmap_store_get(s->ch->name, &len);	/* new */

	done(s, 0, json, len);
	free(json);
}

const struct bus_ops bus_local = {
	.name = "local",
	.start = local_start,
	.stop = local_stop,
	.ready = local_ready,
	.metrics = local_metrics,
	.floor = local_floor,
	.format_id = local_format_id,
	.publish = local_publish,
	.join = local_join,
	.leave = local_leave,
	.position = local_position,
	.replay = local_replay,
	.jmap_state = local_jmap_state,
};
