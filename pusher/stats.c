/*
 * The pusher's counters made visible: one "stats:" log line every stats_interval
 * seconds and on SIGUSR1, and the rate limiter that keeps repeated warnings (drops,
 * malformed datagrams) from flooding the log while still counting each one.
 */
#include "pusher.h"

#include <inttypes.h>
#include <stdio.h>

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

/* Writes every counter on one line (why: "interval", "signal", "exit"). */
void
stats_log(const char *why)
{
	const struct pusher_counters *p = &pusher_counters;
	struct coalesce *c = input_coalescer();
	struct coalesce_stats st, *s = &st;

	input_coalesce_stats(&st);

	log_info("stats: %s datagrams=%" PRIu64 " bytes=%" PRIu64 " parse_errors=%" PRIu64
	    " notifications=%" PRIu64 " filtered=%" PRIu64 " shared_skipped=%" PRIu64
	    " dropped_users=%" PRIu64 " bad_channel=%" PRIu64 " truncated_mailboxes=%" PRIu64
	    " windows_open=%zu changes=%" PRIu64 " queued=%" PRIu64 " queue_depth=%zu"
	    " queue_dropped=%" PRIu64 " published=%" PRIu64 " subscribers=%" PRIu64
	    " resent=%" PRIu64 " publish_failed=%" PRIu64 " nomem=%" PRIu64
	    " redis=%s redis_connects=%" PRIu64,
	    why, p->datagrams, p->bytes, p->parse_errors, s->added, s->filtered,
	    s->shared_skipped, s->dropped_users, s->bad_channel, s->mailbox_overflow,
	    coalesce_pending(c), s->emitted, p->queued, pusher_queue.len, p->queue_dropped,
	    p->published, p->subscribers, p->resent, p->publish_failed, s->nomem,
	    pub_up() ? "up" : "down", p->redis_connects);
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
