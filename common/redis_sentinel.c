/*
 * Sentinel discovery (include/redis_sentinel.h): one query connection at a time, to
 * the sentinels in turn starting with the last one that answered, and one watch
 * connection subscribed to +switch-master. The same lifetime rules as redis_conn.c: a
 * context is never freed inside its own connect or disconnect callback (hiredis frees
 * it right after those), ac->data is cleared when we let go, so later callbacks of a
 * dropped context do nothing, and redisAsyncFree from inside a reply callback only
 * marks the context (hiredis frees it when the callback returns). The sentinels get
 * no AUTH: the URL's password is the data servers'.
 */
#include "redis_sentinel.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct redis_sentinel {
	struct redis_sentinel_opts o;
	struct event_base *base;
	struct event *kick_ev;		/* one-shot: start a resolve */
	struct event *timeout_ev;	/* one-shot: the current sentinel took too long */
	struct event *watch_ev;		/* one-shot: (re)connect the watch */
	redisAsyncContext *query;	/* the sentinel being asked, or NULL */
	redisAsyncContext *watch;	/* the +switch-master subscription, or NULL */
	redis_sentinel_found *found;	/* the pending resolve's answer, or NULL */
	void *found_arg;
	size_t first, tried;		/* where this resolve started, how many it asked */
	size_t good;			/* the last sentinel that answered */
	size_t watch_at;		/* the sentinel the watch uses */
	char why[160];			/* the last failure of this resolve */
};

static void redis_sentinel_next(struct redis_sentinel *s);

/* Lets go of a context that is not inside one of its own connect/disconnect callbacks. */
static void
redis_sentinel_drop(redisAsyncContext *ac)
{
	if (ac == NULL)
		return;
	ac->data = NULL;
	redisAsyncFree(ac);
}

/* Gives the pending resolve its answer (once). */
static void
redis_sentinel_answer(struct redis_sentinel *s, const char *host, int port, const char *why)
{
	redis_sentinel_found *found = s->found;

	evtimer_del(s->timeout_ev);
	if (found == NULL)
		return;
	s->found = NULL;
	found(s->found_arg, host, port, why);
}

/* Records why the current sentinel failed. */
static void
redis_sentinel_failed(struct redis_sentinel *s, const struct redis_addr *a, const char *what)
{
	char esc[LOG_ESCAPE_SIZE];

	log_escape(esc, what, strlen(what));
	snprintf(s->why, sizeof s->why, "sentinel %.64s:%d: %.80s", a->host, a->port, esc);
	log_debug("%s: %s", s->o.name, s->why);
}

/* The sentinel's answer to get-master-addr-by-name: [ip, port], or nil when it does not know the master. */
static void
redis_sentinel_on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_sentinel *s = ac->data;
	redisReply *r = reply;
	const struct redis_addr *a;
	char host[128];
	int port;

	(void)priv;
	if (s == NULL || r == NULL || ac != s->query)
		return;		/* let go of, or being torn down (the disconnect callback follows) */
	a = &s->o.url->sentinels[(s->first + s->tried - 1) % s->o.url->nsentinels];
	s->query = NULL;
	redis_sentinel_drop(ac);	/* in a reply callback: freed when it returns */
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
	    r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len > 0 &&
	    r->element[0]->len < sizeof host) {
		port = atoi(r->element[1]->str);
		if (port > 0 && port < 65536) {
			memcpy(host, r->element[0]->str, r->element[0]->len + 1);
			s->good = (s->first + s->tried - 1) % s->o.url->nsentinels;
			redis_sentinel_answer(s, host, port, NULL);
			return;
		}
	}
	redis_sentinel_failed(s, a, r->type == REDIS_REPLY_ERROR ? r->str :
	    r->type == REDIS_REPLY_NIL ? "does not know the master" : "unexpected reply");
	redis_sentinel_next(s);
}

/* A query connection's connect result: on failure hiredis frees the context after this. */
static void
redis_sentinel_on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;

	if (s == NULL || status == REDIS_OK || ac != s->query)
		return;
	s->query = NULL;
	redis_sentinel_failed(s, &s->o.url->sentinels[(s->first + s->tried - 1) % s->o.url->nsentinels],
	    ac->errstr[0] ? ac->errstr : "cannot connect");
	redis_sentinel_next(s);
}

/* A query connection went away before answering (hiredis frees it after this). */
static void
redis_sentinel_on_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;

	(void)status;
	if (s == NULL || ac != s->query)
		return;
	s->query = NULL;
	redis_sentinel_failed(s, &s->o.url->sentinels[(s->first + s->tried - 1) % s->o.url->nsentinels],
	    "connection lost");
	redis_sentinel_next(s);
}

/* Opens a context to a, with both callbacks; NULL with why filled when it cannot. */
static redisAsyncContext *
redis_sentinel_open(struct redis_sentinel *s, const struct redis_addr *a,
    redisConnectCallback *conn_fn, redisDisconnectCallback *disc_fn)
{
	redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);

	if (ac == NULL || ac->err) {
		redis_sentinel_failed(s, a, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);	/* never attached: freed at once */
		return NULL;
	}
	ac->data = s;
	if (redisLibeventAttach(ac, s->base) != REDIS_OK ||
	    redisAsyncSetConnectCallback(ac, conn_fn) != REDIS_OK ||
	    redisAsyncSetDisconnectCallback(ac, disc_fn) != REDIS_OK) {
		redis_sentinel_failed(s, a, "cannot attach");
		redis_sentinel_drop(ac);
		return NULL;
	}
	return ac;
}

/* Asks the next sentinel in turn; after the last one the resolve fails. */
static void
redis_sentinel_next(struct redis_sentinel *s)
{
	const struct redis_url *u = s->o.url;
	const struct redis_addr *a;
	struct timeval tv = { s->o.timeout_ms / 1000, (s->o.timeout_ms % 1000) * 1000 };
	char why[240];

	while (s->found != NULL && s->tried < u->nsentinels) {
		a = &u->sentinels[(s->first + s->tried++) % u->nsentinels];
		if ((s->query = redis_sentinel_open(s, a, redis_sentinel_on_connect,
		    redis_sentinel_on_disconnect)) == NULL)
			continue;
		if (redisAsyncCommand(s->query, redis_sentinel_on_reply, NULL,
		    "SENTINEL get-master-addr-by-name %s", u->master) != REDIS_OK) {
			redis_sentinel_failed(s, a, "cannot queue the query");
			redis_sentinel_drop(s->query);
			s->query = NULL;
			continue;
		}
		evtimer_add(s->timeout_ev, &tv);
		return;
	}
	snprintf(why, sizeof why, "no sentinel gave master %.63s (%.110s)", u->master, s->why);
	redis_sentinel_answer(s, NULL, 0, why);
}

/* The current sentinel did not answer in time: let it go, ask the next. */
static void
redis_sentinel_on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct redis_sentinel *s = arg;
	char t[48];

	(void)fd;
	(void)what;
	redis_sentinel_drop(s->query);
	s->query = NULL;
	snprintf(t, sizeof t, "no answer within %u ms", s->o.timeout_ms);
	redis_sentinel_failed(s, &s->o.url->sentinels[(s->first + s->tried - 1) % s->o.url->nsentinels], t);
	redis_sentinel_next(s);
}

/* Starts a resolve from the last sentinel that answered. */
static void
redis_sentinel_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct redis_sentinel *s = arg;

	(void)fd;
	(void)what;
	s->first = s->good;
	s->tried = 0;
	snprintf(s->why, sizeof s->why, "none tried");
	redis_sentinel_next(s);
}

/* A message on the watch: "<name> <old-ip> <old-port> <new-ip> <new-port>" for +switch-master. */
static void
redis_sentinel_on_switch(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_sentinel *s = ac->data;
	redisReply *r = reply;
	char name[REDIS_URL_MASTER_MAX], host[128];
	int port;

	(void)priv;
	if (s == NULL || r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0 ||
	    r->element[2]->type != REDIS_REPLY_STRING)
		return;
	if (sscanf(r->element[2]->str, "%63s %*s %*s %127s %d", name, host, &port) != 3 ||
	    strcmp(name, s->o.url->master) != 0 || port <= 0 || port > 65535)
		return;
	log_info("%s: sentinel: +switch-master %s to %s:%d", s->o.name, name, host, port);
	if (s->o.switched != NULL)
		s->o.switched(s->o.arg, host, port);
}

/* Schedules the watch's next connection, on the next sentinel. */
static void
redis_sentinel_watch_later(struct redis_sentinel *s)
{
	struct timeval tv = { REDIS_SENTINEL_WATCH_RETRY_MS / 1000, (REDIS_SENTINEL_WATCH_RETRY_MS % 1000) * 1000 };

	s->watch_at = (s->watch_at + 1) % s->o.url->nsentinels;
	evtimer_add(s->watch_ev, &tv);
}

/* The watch's connect result (freed by hiredis after a failure). */
static void
redis_sentinel_on_watch_connect(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;

	if (s == NULL || status == REDIS_OK || ac != s->watch)
		return;
	s->watch = NULL;
	redis_sentinel_watch_later(s);
}

/* The watch was lost: reconnect, to another sentinel, a little later. */
static void
redis_sentinel_on_watch_disconnect(const redisAsyncContext *ac, int status)
{
	struct redis_sentinel *s = ac->data;

	(void)status;
	if (s == NULL || ac != s->watch)
		return;
	s->watch = NULL;
	redis_sentinel_watch_later(s);
}

/* Connects the watch and subscribes to +switch-master (no PING on it: see redis_link.c). */
static void
redis_sentinel_on_watch(evutil_socket_t fd, short what, void *arg)
{
	struct redis_sentinel *s = arg;
	const struct redis_addr *a = &s->o.url->sentinels[s->watch_at];

	(void)fd;
	(void)what;
	if (s->watch != NULL)
		return;
	if ((s->watch = redis_sentinel_open(s, a, redis_sentinel_on_watch_connect,
	    redis_sentinel_on_watch_disconnect)) == NULL) {
		redis_sentinel_watch_later(s);
		return;
	}
	if (redisAsyncCommand(s->watch, redis_sentinel_on_switch, NULL, "SUBSCRIBE +switch-master") != REDIS_OK) {
		redis_sentinel_drop(s->watch);
		s->watch = NULL;
		redis_sentinel_watch_later(s);
	}
}

/* Creates the resolver; its watch connects on the next turn of the loop. */
struct redis_sentinel *
redis_sentinel_new(struct event_base *base, const struct redis_sentinel_opts *o)
{
	struct redis_sentinel *s;
	struct timeval now = { 0, 0 };

	if (o->url == NULL || o->url->nsentinels == 0 || o->timeout_ms == 0 ||
	    (s = calloc(1, sizeof *s)) == NULL)
		return NULL;
	s->o = *o;
	if (s->o.name == NULL)
		s->o.name = "redis";
	s->base = base;
	if ((s->kick_ev = evtimer_new(base, redis_sentinel_on_kick, s)) == NULL ||
	    (s->timeout_ev = evtimer_new(base, redis_sentinel_on_timeout, s)) == NULL ||
	    (s->watch_ev = evtimer_new(base, redis_sentinel_on_watch, s)) == NULL ||
	    evtimer_add(s->watch_ev, &now) == -1) {
		redis_sentinel_free(s);
		return NULL;
	}
	return s;
}

/* Closes both connections and frees s. */
void
redis_sentinel_free(struct redis_sentinel *s)
{
	if (s == NULL)
		return;
	s->found = NULL;
	redis_sentinel_drop(s->query);
	redis_sentinel_drop(s->watch);
	if (s->kick_ev != NULL)
		event_free(s->kick_ev);
	if (s->timeout_ev != NULL)
		event_free(s->timeout_ev);
	if (s->watch_ev != NULL)
		event_free(s->watch_ev);
	free(s);
}

/* Starts a resolve on the next turn of the loop, dropping one in flight. */
void
redis_sentinel_resolve(struct redis_sentinel *s, redis_sentinel_found *found, void *arg)
{
	struct timeval now = { 0, 0 };

	redis_sentinel_cancel(s);
	s->found = found;
	s->found_arg = arg;
	evtimer_add(s->kick_ev, &now);
}

/* Drops the resolve in flight without answering it. */
void
redis_sentinel_cancel(struct redis_sentinel *s)
{
	s->found = NULL;
	evtimer_del(s->kick_ev);
	evtimer_del(s->timeout_ev);
	redis_sentinel_drop(s->query);
	s->query = NULL;
}
