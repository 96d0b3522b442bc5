/*
 * The pusher's Redis connection: hiredis's async API on the daemon's libevent base,
 * connecting (AUTH, SELECT, SCRIPT LOAD of the shared publish script), publishing the
 * queue's items with EVALSHA exactly as the broker does, reconnecting with jittered
 * exponential backoff, and timing out a connection that stops answering. An item leaves
 * the queue when its reply arrives; an item whose reply was lost with the connection is
 * sent again (at least once). It never blocks: the notify socket keeps being drained.
 */
#include "pusher.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "bus.h"
#include "log.h"
#include "redis_url.h"

static struct redis_url url;
static redisAsyncContext *ctx;		/* NULL while disconnected */
static bool up;				/* connected and the script loaded */
static char sha[41];
static unsigned backoff_ms = PUSHER_BACKOFF_MIN_MS;
static uint64_t connect_started;
static struct event *retry_ev, *tick_ev;
static bool stopping;
static bool report_failure = true;	/* log the next failure (the first, or the first after success) */
static char auth_failed[] = "AUTH failed";

static void pub_connect(void);

/* Whether publishes are being sent. */
bool
pub_up(void)
{
	return up;
}

/* Schedules the next connection attempt with exponential backoff and jitter. */
static void
pub_schedule_retry(void)
{
	unsigned j = 0;
	struct timeval tv;

	if (stopping || evtimer_pending(retry_ev, NULL))
		return;
	if (getrandom(&j, sizeof j, GRND_NONBLOCK) != (ssize_t)sizeof j)
		j = (unsigned)random();
	j = backoff_ms / 2 + j % (backoff_ms / 2 + 1);
	tv.tv_sec = j / 1000;
	tv.tv_usec = (j % 1000) * 1000;
	evtimer_add(retry_ev, &tv);
	backoff_ms = backoff_ms * 2 > PUSHER_BACKOFF_MAX_MS ? PUSHER_BACKOFF_MAX_MS : backoff_ms * 2;
}

/* Marks every item sent on the dead connection as unsent, so it goes out again. */
static void
pub_rewind(void)
{
	struct queue_item *it;

	for (it = pusher_queue.head; it != NULL; it = it->next)
		it->sent = false;
	pusher_queue.inflight = 0;
}

/*
 * Drops the connection after a failure and schedules a reconnect. redisAsyncFree runs
 * every pending callback at once with a NULL reply (deferred when called from inside a
 * callback), so no callback of this connection can run after the next one exists.
 */
static void
pub_fail(const char *why)
{
	redisAsyncContext *c = ctx;

	if (up || report_failure)
		log_error("redis: down: %s (%zu change events queued)", why, pusher_queue.len);
	up = false;
	report_failure = false;
	ctx = NULL;
	if (c != NULL)
		redisAsyncFree(c);
	pub_rewind();
	pub_schedule_retry();
}

/* An error reply: give the item PUSHER_PUBLISH_TRIES chances, then drop it (counted). */
static void
pub_on_error(struct queue_item *it, const char *msg)
{
	char esc[LOG_ESCAPE_SIZE];

	log_escape(esc, msg, strlen(msg));
	if (strncmp(msg, "NOSCRIPT", 8) != 0 && ++it->tries >= PUSHER_PUBLISH_TRIES) {
		pusher_counters.publish_failed++;
		log_error("redis: publish to \"%s\" failed %u times, change event dropped: %s",
		    it->channel, it->tries, esc);
		queue_remove(&pusher_queue, it);
		return;
	}
	/* NOSCRIPT (scripts flushed) or a transient error: reconnect, reload, back off. */
	pub_fail(esc);
}

/* The publish script's reply: the item is done, or goes back to be sent again. */
static void
pub_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct queue_item *it = priv;
	redisReply *r = reply;

	(void)ac;
	if (r == NULL) {
		/* Connection gone: pub_fail/pub_rewind already marked it unsent, or will. */
		if (it->sent) {
			it->sent = false;
			pusher_queue.inflight--;
		}
		return;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER) {
		pusher_counters.published++;
		pusher_counters.subscribers += (uint64_t)r->element[1]->integer;
		log_debug("published %s to \"%s\" (%lld subscribers%s%s)", r->element[0]->str,
		    it->channel, r->element[1]->integer, it->origin[0] ? ", origin " : "", it->origin);
		queue_remove(&pusher_queue, it);
		pub_kick();
		return;
	}
	pub_on_error(it, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type");
}

/* Sends queued items while connected, up to PUSHER_INFLIGHT_MAX unanswered. */
void
pub_kick(void)
{
	struct bus_publish_args a;
	struct bus_message m = { .type = PUSHER_EVENT_TYPE };
	struct queue_item *it;

	while (up && ctx != NULL && pusher_queue.inflight < PUSHER_INFLIGHT_MAX &&
	    (it = queue_next_unsent(&pusher_queue)) != NULL) {
		/* Every session of the user gets it, except one that produced the origin. */
		m.channel = it->channel;
		m.origin = it->origin;
		m.data = it->payload;
		m.len = it->len;
		if (bus_publish_args(&a, sha, popt_str(POPT_REDIS_PREFIX), popt(POPT_HISTORY_SIZE),
		    popt(POPT_HISTORY_TTL), &m) == -1 ||
		    redisAsyncCommandArgv(ctx, pub_on_reply, it, BUS_PUBLISH_ARGC, a.argv, a.lens) != REDIS_OK) {
			pub_fail("cannot queue a command");
			return;
		}
		if (it->was_sent)
			pusher_counters.resent++;
		it->sent = it->was_sent = true;
		it->sent_ms = pusher_now_ms();
		pusher_queue.inflight++;
	}
}

/* The SHA of the publish script arrived: the connection is usable. */
static void
pub_on_script(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)priv;
	if (r == NULL || ac != ctx)
		return;		/* connection lost: the disconnect path handles it */
	if (r->type != REDIS_REPLY_STRING || r->len != 40) {
		pub_fail(r->type == REDIS_REPLY_ERROR ? r->str : "SCRIPT LOAD failed");
		return;
	}
	memcpy(sha, r->str, 41);
	up = true;
	report_failure = true;
	backoff_ms = PUSHER_BACKOFF_MIN_MS;
	pusher_counters.redis_connects++;
	log_info("redis: connected (%zu change events queued)", pusher_queue.len);
	pub_kick();
}

/* Reports a failed AUTH or SELECT, which would otherwise go unnoticed. */
static void
pub_on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	if (r != NULL && ac == ctx && r->type == REDIS_REPLY_ERROR)
		pub_fail(priv ? (const char *)priv : r->str);
}

/* The connection's connect callback: a failed connect is retried later. */
static void
pub_on_connect(const redisAsyncContext *ac, int status)
{
	if (status == REDIS_OK || ac != ctx)
		return;
	ctx = NULL;		/* hiredis frees it after this callback */
	pub_fail(ac->errstr[0] ? ac->errstr : "cannot connect");
}

/* The connection's disconnect callback. */
static void
pub_on_disconnect(const redisAsyncContext *ac, int status)
{
	if (ac != ctx)
		return;		/* one we dropped ourselves */
	ctx = NULL;		/* hiredis frees it after this callback */
	pub_fail(status == REDIS_OK ? "disconnected" : (ac->errstr[0] ? ac->errstr : "connection lost"));
}

/* One connection attempt; its set-up commands are pipelined behind the connect. */
static void
pub_connect(void)
{
	redisAsyncContext *c = url.path[0] ? redisAsyncConnectUnix(url.path) :
	    redisAsyncConnect(url.host, url.port);

	connect_started = pusher_now_ms();
	if (c == NULL || c->err) {
		char why[160];

		snprintf(why, sizeof why, "%s", c != NULL && c->errstr[0] ? c->errstr : "cannot create a connection");
		if (c != NULL)
			redisAsyncFree(c);
		pub_fail(why);
		return;
	}
	ctx = c;
	redisLibeventAttach(c, pusher_base);
	redisAsyncSetConnectCallback(c, pub_on_connect);
	redisAsyncSetDisconnectCallback(c, pub_on_disconnect);
	if (url.password[0])
		redisAsyncCommand(c, pub_on_setup, auth_failed, "AUTH %s", url.password);
	if (url.db != 0)
		redisAsyncCommand(c, pub_on_setup, NULL, "SELECT %d", url.db);
	redisAsyncCommand(c, pub_on_script, NULL, "SCRIPT LOAD %s", bus_publish_script);
}

/* The reconnect timer fired. */
static void
pub_on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (ctx == NULL && !stopping)
		pub_connect();
}

/* hiredis 0.14 has no timeouts: a connect or a reply that takes too long drops the connection. */
static void
pub_on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = pusher_now_ms();
	char why[96];

	(void)fd;
	(void)what;
	(void)arg;
	if (ctx != NULL && !up && now - connect_started > PUSHER_CONNECT_TIMEOUT_MS) {
		snprintf(why, sizeof why, "no answer within %d ms of connecting", PUSHER_CONNECT_TIMEOUT_MS);
		pub_fail(why);
	} else if (up && pusher_queue.head != NULL && pusher_queue.head->sent &&
	    now - pusher_queue.head->sent_ms > PUSHER_REPLY_TIMEOUT_MS) {
		snprintf(why, sizeof why, "no reply within %d ms", PUSHER_REPLY_TIMEOUT_MS);
		pub_fail(why);
	}
}

/* Parses `redis` and starts connecting; the daemon runs (and buffers) while Redis is away. */
int
pub_start(void)
{
	char err[160];
	struct timeval tick = { 0, PUSHER_TICK_MS * 1000 };

	if (redis_url_parse(popt_str(POPT_REDIS), &url, err, sizeof err) == -1) {
		log_error("redis: %s", err);
		return -1;
	}
	if ((retry_ev = evtimer_new(pusher_base, pub_on_retry, NULL)) == NULL ||
	    (tick_ev = event_new(pusher_base, -1, EV_PERSIST, pub_on_tick, NULL)) == NULL ||
	    event_add(tick_ev, &tick) == -1)
		return -1;
	pub_connect();
	return 0;
}

/* Closes the connection: pending replies are lost (their items stay queued, counted by the caller). */
void
pub_stop(void)
{
	redisAsyncContext *c = ctx;

	stopping = true;
	up = false;
	ctx = NULL;
	if (c != NULL)
		redisAsyncFree(c);
	pub_rewind();
	if (retry_ev != NULL)
		event_free(retry_ev);
	if (tick_ev != NULL)
		event_free(tick_ev);
	retry_ev = tick_ev = NULL;
}
