/*
 * Redis Sentinel for either daemon, on hiredis's async API and a libevent base: asks
 * the sentinels of a sentinel:// URL, in turn, where the primary of the named master
 * is (SENTINEL get-master-addr-by-name, as Redis's client guide has clients do; the
 * caller then checks ROLE on the address it gets), and watches +switch-master on one
 * sentinel so that a failover is known at once. It owns its connections to the
 * sentinels and nothing else. Everything runs on the thread that dispatches the base.
 *
 * Callback contract: a resolve's found() runs exactly once, never inside
 * redis_sentinel_resolve(), unless redis_sentinel_cancel() or redis_sentinel_free()
 * comes first (then never); switched() runs for each +switch-master of this master.
 * Either may call redis_sentinel_resolve() again, but not redis_sentinel_free().
 */
#ifndef SSEPUSH_REDIS_SENTINEL_H
#define SSEPUSH_REDIS_SENTINEL_H

#include <event2/event.h>

#include "redis_url.h"

#define REDIS_SENTINEL_WATCH_RETRY_MS 1000	/* the +switch-master watch reconnects this often */

struct redis_sentinel;

/* The primary's address (host, port), or NULL with why (printable) when no sentinel told it. */
typedef void redis_sentinel_found(void *arg, const char *host, int port, const char *why);

struct redis_sentinel_opts {
	const struct redis_url *url;	/* a sentinel:// URL; borrowed for the object's life */
	const char *name;		/* for log lines; borrowed */
	unsigned timeout_ms;		/* one sentinel's connect + answer must take at most this */
	void (*switched)(void *arg, const char *host, int port);	/* may be NULL */
	void *arg;
};

/* A new resolver whose watch connects on the next turn of the loop; NULL when out of memory. */
struct redis_sentinel *redis_sentinel_new(struct event_base *base, const struct redis_sentinel_opts *o);
/* Cancels a pending resolve and closes every connection; accepts NULL. Not from inside its callbacks. */
void redis_sentinel_free(struct redis_sentinel *s);
/* Starts asking the sentinels (on the next turn of the loop); a resolve in flight is replaced. */
void redis_sentinel_resolve(struct redis_sentinel *s, redis_sentinel_found *found, void *arg);
/* Forgets a pending resolve: its found() never runs. */
void redis_sentinel_cancel(struct redis_sentinel *s);

#endif
