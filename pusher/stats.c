/*
 * The pusher's counters made visible: one list of figures (stats_collect) written as a
 * "stats:" log line every stats_interval seconds and on SIGUSR1, and as the Prometheus
 * text of /metrics with the datagram-to-publish latency histogram (the HTTP side is
 * metrics.c); and the rate limiter that keeps repeated warnings (drops, malformed
 * datagrams) from flooding the log while still counting each one.
 */
#include "pusher.h"

#include <inttypes.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "log.h"

static struct event *stats_ev;

/*
 * Lets one log line of a kind through per PUSHER_LOG_EVERY_MS. Returns true when the
 * caller may log; *suppressed then holds how many were held back since the last one.
 */
bool
ratelimit_pass(struct ratelimit *rl, uint64_t now_ms, uint64_t *suppressed)
{
	if (rl->last_ms != 0 && now_ms - rl->last_ms < PUSHER_LOG_EVERY_MS) {
		rl->suppressed++;
		return false;
	}
	rl->last_ms = now_ms == 0 ? 1 : now_ms;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return true;
}

/* Upper bounds (ms) of the datagram-to-publish histogram; the window (coalesce_ms, 500) is in it. */
static const uint64_t latency_bounds_ms[PUSHER_LATENCY_BUCKETS] = {
	5, 10, 25, 50, 100, 250, 500, 600, 750, 1000, 2500, 5000, 10000, 30000, 60000, 120000,
};

/*
 * Fills rows[PUSHER_STATS_ROWS] with every figure of the stats line, in its order: the
 * one list both the log line and /metrics are made from. Returns the count.
 */
size_t
stats_collect(struct stats_row *rows)
{
	const struct pusher_counters *p = &pusher_counters;
	struct coalesce_stats s;
	size_t n = 0;

	input_coalesce_stats(&s);
	/* PUSHER_STATS_ROWS bounds the rows; a row added past it is left out, never written past the end. */
#define ROW(nm, k, v, h) do { if (n < PUSHER_STATS_ROWS) rows[n++] = (struct stats_row){ nm, k, h, (uint64_t)(v) }; } while (0)
	ROW("datagrams", STATS_COUNTER, p->datagrams, "Datagrams received on the notify socket.");
	ROW("bytes", STATS_COUNTER, p->bytes, "Bytes of the datagrams received.");
	ROW("parse_errors", STATS_COUNTER, p->parse_errors, "Malformed or oversized datagrams (dropped).");
	ROW("notifications", STATS_COUNTER, s.added, "Notifications folded into a coalescing window.");
	ROW("filtered", STATS_COUNTER, s.filtered, "Notifications of an event type not in events.");
	ROW("shared_skipped", STATS_COUNTER, s.shared_skipped, "Notifications for shared folders skipped (no shared_channel).");
	ROW("dropped_users", STATS_COUNTER, s.dropped_users, "Notifications dropped: max_users windows were open.");
	ROW("bad_channel", STATS_COUNTER, s.bad_channel, "Notifications dropped: channel_format gave an invalid channel.");
	ROW("truncated_mailboxes", STATS_COUNTER, s.mailbox_overflow, "Mailboxes left out of a change event (max_mailboxes).");
	ROW("windows_open", STATS_GAUGE, coalesce_pending(input_coalescer()), "Coalescing windows open now.");
	ROW("changes", STATS_COUNTER, s.emitted, "Change events made from closed windows.");
	ROW("queued", STATS_COUNTER, p->queued, "Change events that entered the Redis queue.");
	ROW("queue_depth", STATS_GAUGE, pusher_queue.len, "Change events waiting for Redis now.");
	ROW("queue_dropped", STATS_COUNTER, p->queue_dropped, "Change events dropped: the queue was full (queue_max).");
	ROW("published", STATS_COUNTER, p->published, "Change events acknowledged by Redis.");
	ROW("subscribers", STATS_COUNTER, p->subscribers, "Sum of the subscriber counts the publishes reached.");
	ROW("resent", STATS_COUNTER, p->resent, "Publishes sent again after a connection loss (may be duplicates).");
	ROW("publish_failed", STATS_COUNTER, p->publish_failed, "Change events given up after repeated Redis error replies.");
	ROW("nomem", STATS_COUNTER, s.nomem, "Notifications or events lost to an allocation failure.");
	ROW("redis", STATS_UP, pub_up(), "Whether the Redis connection takes publishes (1) or not (0).");
	ROW("redis_connects", STATS_COUNTER, p->redis_connects, "Successful Redis connections.");
	ROW("jmap_updates", STATS_COUNTER, p->jmap_updates, "jmap_states: windows whose states grew in Redis (a jmap-state event was published).");
	ROW("jmap_unchanged", STATS_COUNTER, p->jmap_unchanged, "jmap_states: windows whose states Redis already had (nothing published).");
	ROW("jmap_dropped", STATS_COUNTER, p->jmap_dropped, "jmap_states: notifications whose states were dropped (max_users accounts open, or no valid channel).");
#undef ROW
	return n;
}

/* Writes every figure on one line (why: "interval", "signal", "exit"). */
void
stats_log(const char *why)
{
	struct stats_row rows[PUSHER_STATS_ROWS];
	char line[2048];
	size_t i, n = stats_collect(rows), used;

	used = (size_t)snprintf(line, sizeof line, "stats: %s", why);
	for (i = 0; i < n && used < sizeof line; i++) {
		if (rows[i].kind == STATS_UP)
			used += (size_t)snprintf(line + used, sizeof line - used, " %s=%s", rows[i].name,
			    rows[i].value ? "up" : "down");
		else
			used += (size_t)snprintf(line + used, sizeof line - used, " %s=%" PRIu64, rows[i].name,
			    rows[i].value);
	}
	log_info("%s", line);
}

/* Counts one published change event, ms after its window's first datagram came in. */
void
stats_observe_latency(uint64_t ms)
{
	size_t i;

	for (i = 0; i < PUSHER_LATENCY_BUCKETS && ms > latency_bounds_ms[i]; i++)
		;
	pusher_counters.latency_bucket[i]++;
	pusher_counters.latency_sum_ms += ms;
}

/* The datagram-to-publish histogram, cumulative buckets as Prometheus expects. */
static int
stats_prometheus_latency(struct evbuffer *out)
{
	const struct pusher_counters *p = &pusher_counters;
	uint64_t cum = 0;
	size_t i;
	int rc = 0;

	rc |= evbuffer_add_printf(out, "# HELP ssepush_pusher_publish_latency_seconds Time from the first "
	    "datagram of a change event's window to Redis acknowledging its publish (the window, coalesce_ms, "
	    "included).\n# TYPE ssepush_pusher_publish_latency_seconds histogram\n");
	for (i = 0; i < PUSHER_LATENCY_BUCKETS; i++) {
		cum += p->latency_bucket[i];
		rc |= evbuffer_add_printf(out, "ssepush_pusher_publish_latency_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
		    (double)latency_bounds_ms[i] / 1000, cum);
	}
	cum += p->latency_bucket[PUSHER_LATENCY_BUCKETS];
	rc |= evbuffer_add_printf(out, "ssepush_pusher_publish_latency_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
	    "ssepush_pusher_publish_latency_seconds_sum %.3f\n"
	    "ssepush_pusher_publish_latency_seconds_count %" PRIu64 "\n",
	    cum, (double)p->latency_sum_ms / 1000, cum);
	return rc < 0 ? -1 : 0;
}

/*
 * Writes /metrics in the Prometheus text format: each figure of the stats line as
 * ssepush_pusher_<name> (counters with _total, "redis" as redis_up) with HELP and TYPE,
 * then the latency histogram. Returns 0, or -1 when out of memory.
 */
int
stats_prometheus(struct evbuffer *out)
{
	struct stats_row rows[PUSHER_STATS_ROWS];
	size_t i, n = stats_collect(rows);
	const char *suffix;
	int rc = 0;

	for (i = 0; i < n; i++) {
		suffix = rows[i].kind == STATS_COUNTER ? "_total" : rows[i].kind == STATS_UP ? "_up" : "";
		rc |= evbuffer_add_printf(out, "# HELP ssepush_pusher_%s%s %s\n# TYPE ssepush_pusher_%s%s %s\n"
		    "ssepush_pusher_%s%s %" PRIu64 "\n", rows[i].name, suffix, rows[i].help, rows[i].name, suffix,
		    rows[i].kind == STATS_COUNTER ? "counter" : "gauge", rows[i].name, suffix, rows[i].value);
	}
	return rc < 0 || stats_prometheus_latency(out) == -1 ? -1 : 0;
}

/* The interval timer. */
static void
stats_on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	stats_log("interval");
}

/* (Re)arms the interval timer from stats_interval (after start-up and each reload). */
void
stats_reschedule(void)
{
	struct timeval tv = { (time_t)popt(POPT_STATS_INTERVAL), 0 };

	event_del(stats_ev);
	if (tv.tv_sec > 0)
		event_add(stats_ev, &tv);
}

/* Creates the interval timer. */
int
stats_start(void)
{
	if ((stats_ev = event_new(pusher_base, -1, EV_PERSIST, stats_on_timer, NULL)) == NULL)
		return -1;
	stats_reschedule();
	return 0;
}

/* Frees the interval timer (at exit). */
void
stats_stop(void)
{
	if (stats_ev != NULL)
		event_free(stats_ev);
	stats_ev = NULL;
}
