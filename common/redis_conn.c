/*
 * One hiredis async connection with what hiredis 0.14 leaves to its user: the set-up
 * commands (AUTH, SELECT, SCRIPT LOAD) pipelined behind the connect, a connect timeout
 * and a reply timeout on libevent timers, reconnects with jittered exponential backoff,
 * and a record per tracked command so that its callback runs exactly once even when
 * the connection is dropped from inside another callback. It does not know what the
 * commands mean or what the owner resends; it logs only attempts (at debug level),
 * leaving the up/down lines to the owner.
 *
 * Lifetime rules, from hiredis 0.14's async.c: a context is freed with redisAsyncFree,
 * never redisAsyncDisconnect (that waits for every pending reply, forever on a server
 * that stopped answering, which is exactly what the reply timeout is for); a context
 * that hiredis is already tearing down (connect or disconnect callback) is never freed
 * here, since hiredis frees it right after those callbacks return; ac->data points at
 * the owning redis_conn and is cleared when we let go, so any callback hiredis still
 * runs for a dropped context finds NULL and does nothing.
 */
#include "redis_conn.h"

#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"
#include "redis_sentinel.h"

/* What a set-up reply answers (its privdata); scripts count up from REDIS_CONN_STEP_SCRIPT. */
enum redis_conn_step { REDIS_CONN_STEP_AUTH, REDIS_CONN_STEP_SELECT, REDIS_CONN_STEP_PING,
	REDIS_CONN_STEP_ROLE, REDIS_CONN_STEP_SCRIPT };

/*
 * A tracked command, in send order. While conn is set it is in conn's list and fn is
 * still to run; a drop runs fn with NULL and clears conn, and hiredis's own (later) call
 * of the callback only frees the record. hiredis calls every callback exactly once
 * (with the reply, or NULL from redisAsyncFree), so the record never leaks.
 */
struct redis_conn_cmd {
	struct redis_conn_cmd *prev, *next;
	struct redis_conn *conn;
	redisCallbackFn *fn;
	void *priv;
	uint64_t sent_ms;
};

struct redis_conn {
	struct redis_conn_opts o;
	struct event_base *base;
	struct event *retry_ev;		/* one-shot: the next attempt */
	struct event *tick_ev;		/* persistent while an attempt or connection exists */
	redisAsyncContext *ctx;		/* NULL between attempts */
	struct redis_sentinel *sentinel;	/* a sentinel:// URL's resolver, else NULL */
	bool resolving;			/* an attempt is asking the sentinels (ctx still NULL) */
	char host[128];			/* the address being used: the URL's, or the one Sentinel gave */
	int port;
	bool up;			/* set-up done */
	bool dropping;			/* inside redis_conn_drop(): no new attempt yet */
	bool freeing;			/* redis_conn_free() was called: destroyed when holds is 0 */
	bool defer_writes;		/* redis_conn_defer_writes(): commands wait for redis_conn_flush */
	bool unsent;			/* a command was buffered while writes were deferred */
	unsigned holds;			/* owner callbacks running on the stack */
	unsigned backoff_ms;		/* the next wait's upper bound */
	unsigned setup_pending;		/* set-up replies still to come */
	uint64_t started_ms;		/* when the current attempt began */
	struct redis_conn_cmd *head, *tail;
	size_t nscripts;
	char (*sha)[41];
	char errstr[REDIS_CONN_WHY_MAX];
};

/* Milliseconds on the monotonic clock. */
static uint64_t
redis_conn_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Writes prefix and then src (untrusted, len bytes) escaped into why, "..." if cut. */
static void
redis_conn_reason(char *why, size_t whylen, const char *prefix, const char *src, size_t len)
{
	char esc[LOG_ESCAPE_SIZE];

	log_escape(esc, src, len);
	if (snprintf(why, whylen, "%s%s", prefix, esc) >= (int)whylen && whylen > 4)
		memcpy(why + whylen - 4, "...", 4);
}

/* The last words of a context: hiredis's error text, escaped, or dflt. */
static void
redis_conn_ctx_reason(char *why, size_t whylen, const redisAsyncContext *ac, const char *dflt)
{
	if (ac != NULL && ac->errstr != NULL && ac->errstr[0] != '\0')
		redis_conn_reason(why, whylen, "", ac->errstr, strlen(ac->errstr));
	else
		snprintf(why, whylen, "%s", dflt);
}

/* Frees c and its timers: only once nothing on the stack uses it any more. */
static void
redis_conn_destroy(struct redis_conn *c)
{
	redis_sentinel_free(c->sentinel);
	if (c->retry_ev != NULL)
		event_free(c->retry_ev);
	if (c->tick_ev != NULL)
		event_free(c->tick_ev);
	free(c->sha);
	free(c);
}

/* Marks an owner callback about to run, so a redis_conn_free() inside it is deferred. */
static void
redis_conn_hold(struct redis_conn *c)
{
	c->holds++;
}

/* Ends a hold; returns true when c is being freed (and maybe is gone): touch it no more. */
static bool
redis_conn_release(struct redis_conn *c)
{
	bool gone = c->freeing;

	if (--c->holds == 0 && gone)
		redis_conn_destroy(c);
	return gone;
}

/* Unlinks a tracked command from c's list. */
static void
redis_conn_unlink(struct redis_conn *c, struct redis_conn_cmd *r)
{
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		c->head = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	else
		c->tail = r->prev;
	r->prev = r->next = NULL;
	r->conn = NULL;
}

/*
 * Lets go of the current context: not up, every pending fn runs with NULL (oldest
 * first), then the context is freed when free_ctx (false when hiredis is freeing it
 * itself). redisAsyncFree called from inside one of the context's reply callbacks only
 * sets a flag (async.c: redisAsyncFree, REDIS_IN_CALLBACK); hiredis frees it when that
 * callback returns, and the callbacks it runs then find ac->data cleared. Returns true
 * when c is being freed: the caller must not touch it.
 */
static bool
redis_conn_drop(struct redis_conn *c, bool free_ctx)
{
	redisAsyncContext *ac = c->ctx;
	struct redis_conn_cmd *r;

	c->ctx = NULL;
	c->up = false;
	c->dropping = true;
	if (ac != NULL)
		ac->data = NULL;
	evtimer_del(c->tick_ev);
	redis_conn_hold(c);
	while ((r = c->head) != NULL) {
		redisCallbackFn *fn = r->fn;

		redis_conn_unlink(c, r);	/* hiredis frees r when it lets go of it */
		if (fn != NULL)
			fn(ac, NULL, r->priv);
	}
	if (ac != NULL && free_ctx)
		redisAsyncFree(ac);
	c->dropping = false;
	return redis_conn_release(c);
}

/* Arms the reconnect timer: a wait between half and all of backoff_ms, which then doubles. */
static unsigned
redis_conn_schedule(struct redis_conn *c)
{
	unsigned j = 0, wait;
	struct timeval tv;

	if (getrandom(&j, sizeof j, GRND_NONBLOCK) != (ssize_t)sizeof j)
		j = (unsigned)random();
	wait = c->backoff_ms / 2 + j % (c->backoff_ms / 2 + 1);
	tv.tv_sec = wait / 1000;
	tv.tv_usec = (wait % 1000) * 1000;
	evtimer_add(c->retry_ev, &tv);
	c->backoff_ms = c->backoff_ms > c->o.backoff_max_ms / 2 ? c->o.backoff_max_ms : c->backoff_ms * 2;
	return wait;
}

/* A connection or an attempt is gone: drop it, schedule the next attempt, tell the owner. */
static void
redis_conn_lost(struct redis_conn *c, const char *why, bool free_ctx)
{
	char reason[REDIS_CONN_WHY_MAX];
	unsigned wait;

	snprintf(reason, sizeof reason, "%s", why);	/* why may live in the context */
	if (redis_conn_drop(c, free_ctx))
		return;
	snprintf(c->errstr, sizeof c->errstr, "%s", reason);
	wait = redis_conn_schedule(c);
	log_debug("%s: %s; next attempt in %u ms", c->o.name, reason, wait);
	if (c->o.down == NULL)
		return;
	redis_conn_hold(c);
	c->o.down(c, reason, c->o.arg);
	redis_conn_release(c);
}

/* The set-up is complete: reset the backoff and tell the owner. */
static void
redis_conn_became_up(struct redis_conn *c)
{
	c->up = true;
	c->backoff_ms = c->o.backoff_min_ms;
	log_debug("%s: set-up done", c->o.name);
	if (c->o.up == NULL)
		return;
	redis_conn_hold(c);
	c->o.up(c, c->o.arg);
	redis_conn_release(c);
}

/* The reason an AUTH error gives, unless a server ever echoed the password in it. */
static void
redis_conn_auth_reason(const struct redis_conn *c, const redisReply *r, char *why, size_t whylen)
{
	if (r->type == REDIS_REPLY_ERROR && strstr(r->str, c->o.url->password) == NULL)
		redis_conn_reason(why, whylen, "AUTH failed: ", r->str, r->len);
	else
		snprintf(why, whylen, "AUTH failed");
}

/* A primary from Sentinel must say it is one (a sentinel may be behind a failover). */
static int
redis_conn_check_role(const struct redis_conn *c, const redisReply *r, char *why, size_t whylen)
{
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING &&
	    strcmp(r->element[0]->str, "master") == 0)
		return 0;
	if (r->type == REDIS_REPLY_ERROR)
		redis_conn_reason(why, whylen, "ROLE: ", r->str, r->len);
	else
		snprintf(why, whylen, "%.40s:%d, which Sentinel gave for %.40s, is not a primary (ROLE %s)",
		    c->host, c->port, c->o.url->master, r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
		    r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len < 16 ? r->element[0]->str : "?");
	return -1;
}

/* Fills why for a set-up reply that is not what its step needs; returns -1 then. */
static int
redis_conn_check_setup(const struct redis_conn *c, uintptr_t step, const redisReply *r,
    char *why, size_t whylen)
{
	char prefix[32];

	if (step == REDIS_CONN_STEP_AUTH) {
		if (r->type == REDIS_REPLY_ERROR)
			redis_conn_auth_reason(c, r, why, whylen);
		return r->type == REDIS_REPLY_ERROR ? -1 : 0;
	}
	if (step == REDIS_CONN_STEP_ROLE)
		return redis_conn_check_role(c, r, why, whylen);
	if (step == REDIS_CONN_STEP_SELECT)
		snprintf(prefix, sizeof prefix, "SELECT %d: ", c->o.url->db);
	else
		snprintf(prefix, sizeof prefix, step == REDIS_CONN_STEP_PING ? "PING: " : "SCRIPT LOAD: ");
	if (r->type == REDIS_REPLY_ERROR) {
		redis_conn_reason(why, whylen, prefix, r->str, r->len);
		return -1;
	}
	if (step >= REDIS_CONN_STEP_SCRIPT && (r->type != REDIS_REPLY_STRING || r->len != 40)) {
		snprintf(why, whylen, "%sunexpected reply (type %d)", prefix, r->type);
		return -1;
	}
	return 0;
}

/* A set-up reply: an error fails the attempt; the last good one makes c usable. */
static void
redis_conn_on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_conn *c = ac->data;
	redisReply *r = reply;
	uintptr_t step = (uintptr_t)priv;
	char why[REDIS_CONN_WHY_MAX];

	if (c == NULL || r == NULL)
		return;		/* dropped, or hiredis is tearing it down (the disconnect callback follows) */
	if (redis_conn_check_setup(c, step, r, why, sizeof why) == -1) {
		redis_conn_lost(c, why, true);
		return;
	}
	if (step >= REDIS_CONN_STEP_SCRIPT)
		memcpy(c->sha[step - REDIS_CONN_STEP_SCRIPT], r->str, 41);
	if (--c->setup_pending == 0)
		redis_conn_became_up(c);
}

/* hiredis's connect callback; on failure hiredis frees the context right after it returns. */
static void
redis_conn_on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_conn *c = ac->data;
	char why[REDIS_CONN_WHY_MAX];

	if (c == NULL || status == REDIS_OK)
		return;
	redis_conn_ctx_reason(why, sizeof why, ac, "cannot connect");
	redis_conn_lost(c, why, false);
}

/* hiredis's disconnect callback (pending callbacks already ran with NULL); it frees the context next. */
static void
redis_conn_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_conn *c = ac->data;
	char why[REDIS_CONN_WHY_MAX];

	if (c == NULL)
		return;		/* one we let go of ourselves */
	if (status == REDIS_OK)
		snprintf(why, sizeof why, "disconnected");
	else
		redis_conn_ctx_reason(why, sizeof why, ac, "connection lost");
	redis_conn_lost(c, why, false);
}

/* Queues one set-up command; returns 0 or -1. */
static int
redis_conn_setup_cmd(struct redis_conn *c, uintptr_t step, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = redisvAsyncCommand(c->ctx, redis_conn_on_setup, (void *)step, fmt, ap);
	va_end(ap);
	if (rc != REDIS_OK)
		return -1;
	c->setup_pending++;
	return 0;
}

/* Pipelines AUTH, SELECT and the SCRIPT LOADs (or a PING if none) behind the connect. */
static int
redis_conn_queue_setup(struct redis_conn *c)
{
	const struct redis_url *u = c->o.url;
	size_t i;

	c->setup_pending = 0;
	if (u->password[0] != '\0' &&
	    redis_conn_setup_cmd(c, REDIS_CONN_STEP_AUTH, "AUTH %s", u->password) == -1)
		return -1;
	if (!c->o.pubsub && u->db != 0 &&
	    redis_conn_setup_cmd(c, REDIS_CONN_STEP_SELECT, "SELECT %d", u->db) == -1)
		return -1;
	if (c->sentinel != NULL && redis_conn_setup_cmd(c, REDIS_CONN_STEP_ROLE, "ROLE") == -1)
		return -1;
	for (i = 0; i < c->nscripts; i++)
		if (redis_conn_setup_cmd(c, REDIS_CONN_STEP_SCRIPT + i, "SCRIPT LOAD %s", c->o.scripts[i]) == -1)
			return -1;
	/* Up means Redis answered something: with nothing else to ask, ask PING. */
	if (c->setup_pending == 0 && redis_conn_setup_cmd(c, REDIS_CONN_STEP_PING, "PING") == -1)
		return -1;
	return 0;
}

/*
 * hiredis's event hooks on libevent, as its own adapter does them but for two
 * things. The read event is persistent: the adapter's one-shot event cost an
 * epoll_ctl DEL before every reply's callback and an ADD in it (six of the 24 system
 * calls of a Redis-mode event, measured with strace -c). And a write asked for while
 * the owner defers writes only marks the connection (redis_conn_flush writes it).
 */
struct redis_conn_events {
	redisAsyncContext *ac;
	struct event *rev, *wev;
};

static void
redis_conn_ev_read(evutil_socket_t fd, short what, void *arg)
{
	struct redis_conn_events *e = arg;

	(void)fd;
	(void)what;
	redisAsyncHandleRead(e->ac);
}

static void
redis_conn_ev_write(evutil_socket_t fd, short what, void *arg)
{
	struct redis_conn_events *e = arg;

	(void)fd;
	(void)what;
	redisAsyncHandleWrite(e->ac);
}

/* Called after every read: the persistent event is still added, so this is no syscall. */
static void
redis_conn_ev_add_read(void *privdata)
{
	struct redis_conn_events *e = privdata;

	event_add(e->rev, NULL);
}

static void
redis_conn_ev_del_read(void *privdata)
{
	struct redis_conn_events *e = privdata;

	event_del(e->rev);
}

static void
redis_conn_ev_add_write(void *privdata)
{
	struct redis_conn_events *e = privdata;
	struct redis_conn *c = e->ac->data;

	if (c->defer_writes && c->up) {
		c->unsent = true;
		return;
	}
	event_add(e->wev, NULL);
}

static void
redis_conn_ev_del_write(void *privdata)
{
	struct redis_conn_events *e = privdata;

	event_del(e->wev);
}

static void
redis_conn_ev_cleanup(void *privdata)
{
	struct redis_conn_events *e = privdata;

	event_free(e->rev);
	event_free(e->wev);
	free(e);
}

/* Hooks ac (whose data is its redis_conn) into base; -1 on ENOMEM. */
static int
redis_conn_attach(redisAsyncContext *ac, struct event_base *base)
{
	struct redis_conn_events *e;

	if (ac->ev.data != NULL || (e = calloc(1, sizeof *e)) == NULL)
		return -1;
	e->ac = ac;
	e->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, redis_conn_ev_read, e);
	e->wev = event_new(base, ac->c.fd, EV_WRITE, redis_conn_ev_write, e);
	if (e->rev == NULL || e->wev == NULL) {
		if (e->rev != NULL)
			event_free(e->rev);
		if (e->wev != NULL)
			event_free(e->wev);
		free(e);
		return -1;
	}
	ac->ev.addRead = redis_conn_ev_add_read;
	ac->ev.delRead = redis_conn_ev_del_read;
	ac->ev.addWrite = redis_conn_ev_add_write;
	ac->ev.delWrite = redis_conn_ev_del_write;
	ac->ev.cleanup = redis_conn_ev_cleanup;
	ac->ev.data = e;
	/* As hiredis's adapter: writable tells the connect's end. */
	event_add(e->rev, NULL);
	event_add(e->wev, NULL);
	return 0;
}

/* Connects to c->host:c->port (or the URL's socket); the set-up commands go out once it connects. */
static void
redis_conn_connect(struct redis_conn *c)
{
	const struct redis_url *u = c->o.url;
	redisAsyncContext *ac;
	char why[REDIS_CONN_WHY_MAX];
	struct timeval tick = { 0, REDIS_CONN_TICK_MS * 1000 };

	if (u->path[0] != '\0')
		log_debug("%s: connecting to unix:%s", c->o.name, u->path);
	else
		log_debug("%s: connecting to %s:%d", c->o.name, c->host, c->port);
	c->started_ms = redis_conn_now_ms();
	/* A host name is resolved here, blocking: getaddrinfo in hiredis's net.c. */
	ac = u->path[0] ? redisAsyncConnectUnix(u->path) : redisAsyncConnect(c->host, c->port);
	if (ac == NULL || ac->err) {
		redis_conn_ctx_reason(why, sizeof why, ac, "cannot create a connection");
		if (ac != NULL)
			redisAsyncFree(ac);	/* never attached, no callbacks: freed at once */
		redis_conn_lost(c, why, false);
		return;
	}
	ac->data = c;
	c->ctx = ac;
	if (redis_conn_attach(ac, c->base) == -1 ||
	    redisAsyncSetConnectCallback(ac, redis_conn_on_connect) != REDIS_OK ||
	    redisAsyncSetDisconnectCallback(ac, redis_conn_on_disconnect) != REDIS_OK ||
	    redis_conn_queue_setup(c) == -1) {
		redis_conn_lost(c, "cannot queue the set-up commands", true);
		return;
	}
	event_add(c->tick_ev, &tick);
}

/* Sentinel's answer: connect to the primary it named, or count a failed attempt. */
static void
redis_conn_on_found(void *arg, const char *host, int port, const char *why)
{
	struct redis_conn *c = arg;

	c->resolving = false;
	if (host == NULL) {
		redis_conn_lost(c, why, false);
		return;
	}
	if (strcmp(host, c->host) != 0 || port != c->port)
		log_info("%s: sentinel: master %s is at %s:%d", c->o.name, c->o.url->master, host, port);
	snprintf(c->host, sizeof c->host, "%s", host);
	c->port = port;
	redis_conn_connect(c);
}

/* One connection attempt: through Sentinel's answer first for a sentinel:// URL. */
static void
redis_conn_attempt(struct redis_conn *c)
{
	if (c->sentinel == NULL) {
		redis_conn_connect(c);
		return;
	}
	c->resolving = true;
	redis_sentinel_resolve(c->sentinel, redis_conn_on_found, c);
}

/* A sentinel announced a failover: leave an old primary now, and try the new one at once. */
static void
redis_conn_on_switch(void *arg, const char *host, int port)
{
	struct redis_conn *c = arg;
	char why[REDIS_CONN_WHY_MAX];

	if (c->ctx != NULL && (strcmp(host, c->host) != 0 || port != c->port)) {
		snprintf(why, sizeof why, "sentinel: failover of %.63s to %.64s:%d", c->o.url->master, host, port);
		redis_conn_fail(c, why);
	}
	redis_conn_retry_now(c);
}

/* The reconnect timer (also the first attempt's). */
static void
redis_conn_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct redis_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->ctx == NULL && !c->resolving && !c->freeing)
		redis_conn_attempt(c);
}

/* A few times a second: an attempt or the oldest tracked command taking too long drops c. */
static void
redis_conn_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct redis_conn *c = arg;
	uint64_t now = redis_conn_now_ms();
	char why[REDIS_CONN_WHY_MAX];

	(void)fd;
	(void)what;
	if (c->ctx == NULL)
		return;
	if (!c->up && now - c->started_ms >= c->o.connect_timeout_ms) {
		snprintf(why, sizeof why, "no answer within %u ms of connecting", c->o.connect_timeout_ms);
		redis_conn_lost(c, why, true);
	} else if (c->up && c->head != NULL && now - c->head->sent_ms >= c->o.reply_timeout_ms) {
		snprintf(why, sizeof why, "no reply within %u ms", c->o.reply_timeout_ms);
		redis_conn_lost(c, why, true);
	}
}

/* Creates c and arms its first attempt for the next turn of the loop. */
struct redis_conn *
redis_conn_new(struct event_base *base, const struct redis_conn_opts *opts)
{
	struct redis_conn *c;
	struct timeval now = { 0, 0 };

	if (opts->url == NULL || opts->connect_timeout_ms == 0 ||
	    (!opts->pubsub && opts->reply_timeout_ms == 0) || opts->backoff_min_ms == 0 ||
	    opts->backoff_max_ms < opts->backoff_min_ms || (c = calloc(1, sizeof *c)) == NULL)
		return NULL;
	c->o = *opts;
	if (c->o.name == NULL)
		c->o.name = "redis";
	if (c->o.pubsub)
		c->o.scripts = NULL;
	while (c->o.scripts != NULL && c->o.scripts[c->nscripts] != NULL)
		c->nscripts++;
	c->base = base;
	c->backoff_ms = opts->backoff_min_ms;
	snprintf(c->host, sizeof c->host, "%s", opts->url->host);
	c->port = opts->url->port;
	snprintf(c->errstr, sizeof c->errstr, "connecting");
	if ((c->nscripts > 0 && (c->sha = calloc(c->nscripts, sizeof *c->sha)) == NULL) ||
	    (c->retry_ev = evtimer_new(base, redis_conn_on_retry, c)) == NULL ||
	    (c->tick_ev = event_new(base, -1, EV_PERSIST, redis_conn_on_tick, c)) == NULL ||
	    evtimer_add(c->retry_ev, &now) == -1) {
		redis_conn_destroy(c);
		return NULL;
	}
	if (opts->url->master[0] != '\0') {
		struct redis_sentinel_opts so = {
			.url = opts->url, .name = c->o.name, .timeout_ms = opts->connect_timeout_ms,
			.switched = redis_conn_on_switch, .arg = c,
		};
		if ((c->sentinel = redis_sentinel_new(base, &so)) == NULL) {
			redis_conn_destroy(c);
			return NULL;
		}
	}
	return c;
}

/* Drops the connection without telling the owner, then frees c (deferred while a callback of c runs). */
void
redis_conn_free(struct redis_conn *c)
{
	if (c == NULL || c->freeing)
		return;
	c->freeing = true;
	evtimer_del(c->retry_ev);
	if (c->sentinel != NULL)
		redis_sentinel_cancel(c->sentinel);
	c->resolving = false;
	redis_conn_drop(c, true);	/* destroys c, or its outermost running callback will */
}

/* Whether commands are accepted. */
bool
redis_conn_is_up(const struct redis_conn *c)
{
	return c->up;
}

/* The last loss's reason (or "connecting"). */
const char *
redis_conn_error(const struct redis_conn *c)
{
	return c->errstr;
}

/* The SHA that SCRIPT LOAD answered for scripts[i] ("" before the first up). */
const char *
redis_conn_sha(const struct redis_conn *c, size_t i)
{
	return i < c->nscripts ? c->sha[i] : NULL;
}

/* The live context, for pub/sub commands; NULL unless up. */
redisAsyncContext *
redis_conn_ctx(struct redis_conn *c)
{
	return c->up ? c->ctx : NULL;
}

/* A tracked command's reply (or NULL): unlink its record, run the owner's fn once. */
static void
redis_conn_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_conn_cmd *r = priv;
	struct redis_conn *c = r->conn;

	if (c == NULL) {
		free(r);	/* a drop already ran fn with NULL */
		return;
	}
	redis_conn_unlink(c, r);
	redis_conn_hold(c);
	if (r->fn != NULL)
		r->fn(ac, reply, r->priv);
	free(r);
	redis_conn_release(c);
}

/* Hands a formatted command to hiredis; tracked unless c is a pub/sub connection. */
static int
redis_conn_send(struct redis_conn *c, redisCallbackFn *fn, void *priv, const char *cmd, size_t len)
{
	struct redis_conn_cmd *r;

	if (c->o.pubsub)
		return redisAsyncFormattedCommand(c->ctx, fn, priv, cmd, len) == REDIS_OK ? 0 : -1;
	if ((r = calloc(1, sizeof *r)) == NULL)
		return -1;
	r->fn = fn;
	r->priv = priv;
	if (redisAsyncFormattedCommand(c->ctx, redis_conn_on_reply, r, cmd, len) != REDIS_OK) {
		free(r);
		return -1;
	}
	r->conn = c;
	r->sent_ms = redis_conn_now_ms();
	r->prev = c->tail;
	if (c->tail != NULL)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	return 0;
}

/* Formats a command (printf-like, as hiredis's redisAsyncCommand) and sends it. */
int
redis_conn_command(struct redis_conn *c, redisCallbackFn *fn, void *priv, const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int len, rc;

	if (!c->up)
		return -1;
	va_start(ap, fmt);
	len = redisvFormatCommand(&cmd, fmt, ap);
	va_end(ap);
	if (len < 0)
		return -1;
	rc = redis_conn_send(c, fn, priv, cmd, (size_t)len);
	redisFreeCommand(cmd);
	return rc;
}

/* Sends a command given as argc binary-safe arguments. */
int
redis_conn_command_argv(struct redis_conn *c, redisCallbackFn *fn, void *priv, int argc,
    const char **argv, const size_t *lens)
{
	char *cmd;
	int len, rc;

	if (!c->up)
		return -1;
	if ((len = redisFormatCommandArgv(&cmd, argc, argv, lens)) < 0)
		return -1;
	rc = redis_conn_send(c, fn, priv, cmd, (size_t)len);
	redisFreeCommand(cmd);
	return rc;
}

void
redis_conn_defer_writes(struct redis_conn *c)
{
	c->defer_writes = true;
}

void
redis_conn_flush(struct redis_conn *c)
{
	bool unsent = c->unsent;

	c->defer_writes = false;
	c->unsent = false;
	/* hiredis writes what it holds; a rest asks for the write event again (not deferred now). */
	if (unsent && c->up && c->ctx != NULL && !c->freeing)
		redisAsyncHandleWrite(c->ctx);
}

/* Drops the connection or attempt for the owner's reason; nothing to do while waiting. */
void
redis_conn_fail(struct redis_conn *c, const char *why)
{
	if (c->ctx == NULL || c->freeing)
		return;
	redis_conn_lost(c, why, true);
}

/* Moves the next attempt to the next turn of the loop (never inline: no recursion via down()). */
void
redis_conn_retry_now(struct redis_conn *c)
{
	struct timeval now = { 0, 0 };

	if (c->ctx != NULL || c->resolving || c->dropping || c->freeing)
		return;
	evtimer_del(c->retry_ev);
	evtimer_add(c->retry_ev, &now);
}
