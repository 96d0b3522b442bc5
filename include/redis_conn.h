/*
 * One Redis connection for either daemon, on hiredis's async API and a libevent base:
 * connecting (TCP or UNIX socket), AUTH, SELECT, SCRIPT LOAD, the connect and reply
 * timeouts that hiredis 0.14 lacks, and reconnecting with jittered exponential backoff.
 * It owns the hiredis context and the bookkeeping of the commands sent through it; it
 * does not own what the commands mean, what to resend after a loss, or the log lines
 * about being up or down (the owner knows their context: down() gets the reason).
 * Everything runs on the thread that dispatches the given event base.
 *
 * Callback contract:
 * - up() runs once the set-up is done (all scripts loaded, their SHAs known); down()
 *   runs once per loss of a connection, also of one that never came up (a failed
 *   attempt), after the reconnect is scheduled. Neither runs inside redis_conn_new()
 *   or redis_conn_free(), nor after the free. The owner may call redis_conn_fail() on
 *   any connection and redis_conn_free() on this one from inside either.
 * - A tracked command's fn runs exactly once: with the reply, or with NULL when the
 *   connection is dropped first; a command that returns -1 never calls fn. When the
 *   connection drops, every pending fn runs (in order) before down().
 * - The why strings handed to down() are printable ASCII (bytes Redis or the system
 *   sent are escaped with log_escape) and never contain the password.
 */
#ifndef SSEPUSH_REDIS_CONN_H
#define SSEPUSH_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/event.h>
#include <hiredis/async.h>

#include "redis_url.h"

#define REDIS_CONN_TICK_MS 250		/* how often the timeouts are checked */
#define REDIS_CONN_WHY_MAX 160		/* bytes of a down() reason, NUL included */

struct redis_conn;

struct redis_conn_opts {
	const struct redis_url *url;	/* borrowed for the connection's life */
	const char *name;		/* for log lines, e.g. "redis" or "redis pub/sub"; borrowed */
	bool pubsub;			/* subscriber connection: no SELECT, no scripts, no reply timeout */
	const char *const *scripts;	/* NULL-terminated, SCRIPT LOADed on each connect, or NULL; borrowed */
	unsigned connect_timeout_ms;	/* connect + AUTH + SELECT + SCRIPT LOAD must finish in this */
	unsigned reply_timeout_ms;	/* a tracked command unanswered this long drops the connection */
	unsigned backoff_min_ms;	/* reconnect delay: doubled per failure up to max, */
	unsigned backoff_max_ms;	/* ... each wait drawn between half and all of it */
	void (*up)(struct redis_conn *c, void *arg);
	void (*down)(struct redis_conn *c, const char *why, void *arg);
	void *arg;
};

/*
 * A new connection that starts its first attempt on the next turn of base's loop (so
 * no callback runs inside this call), or NULL when out of memory or opts is unusable
 * (no url, a zero timeout or backoff). opts is copied; what it points to is borrowed.
 */
struct redis_conn *redis_conn_new(struct event_base *base, const struct redis_conn_opts *opts);
/* Drops the connection (every pending fn runs with NULL; up/down do not) and frees c; accepts NULL. */
void redis_conn_free(struct redis_conn *c);
/* Whether the set-up is done and commands are accepted. */
bool redis_conn_is_up(const struct redis_conn *c);
/* Why c is not up: the last loss's reason, or "connecting". Borrowed until the next loss. */
const char *redis_conn_error(const struct redis_conn *c);
/* The 40-hex SHA of opts->scripts[i] (known from the first up() on), or NULL for a bad i. */
const char *redis_conn_sha(const struct redis_conn *c, size_t i);
/*
 * The hiredis context while up, else NULL; borrowed: never free or disconnect it. For
 * SUBSCRIBE and friends on a pubsub connection, whose callbacks hiredis runs per message
 * and once more with NULL when the context goes (possibly after down() if the drop was
 * requested from inside one of this context's own callbacks).
 */
redisAsyncContext *redis_conn_ctx(struct redis_conn *c);
/*
 * Sends a command while up; returns 0, or -1 when not up or hiredis refused it (then fn
 * is never called; the caller decides whether to redis_conn_fail). On a normal
 * connection the command is tracked: its reply is timed and fn (may be NULL) runs once.
 * On a pubsub connection it goes to hiredis as it is (see redis_conn_ctx()).
 */
int redis_conn_command(struct redis_conn *c, redisCallbackFn *fn, void *priv, const char *fmt, ...);
/* redis_conn_command() with argc arguments of lens[i] bytes each (binary safe). */
int redis_conn_command_argv(struct redis_conn *c, redisCallbackFn *fn, void *priv, int argc,
    const char **argv, const size_t *lens);
/*
 * Drops the connection now, for a reason the owner found (why: printable text, used as
 * it is): pending fns run with NULL, then down(why), and a reconnect follows the
 * backoff. A no-op while no connection or attempt exists (waiting for the backoff).
 */
void redis_conn_fail(struct redis_conn *c, const char *why);
/*
 * Ends a backoff wait: the next attempt starts on the next turn of the loop (never inside
 * this call). A no-op while connected or connecting. Called from every down() it makes
 * the attempts back to back: the backoff is then the owner's to keep.
 */
void redis_conn_retry_now(struct redis_conn *c);
/*
 * Batching for an owner that sends several commands from outside hiredis's callbacks
 * (a drain of its job queue): after redis_conn_defer_writes, commands are only
 * buffered, and redis_conn_flush writes them all in one write, at once. hiredis alone
 * would ask the loop to watch the socket for room at the first command and stop at
 * the write: two epoll_ctl calls and a wake-up per batch, on a socket that has room.
 * A rest the socket does not take is watched for as usual. A write error drops the
 * connection as the loop's write would.
 */
void redis_conn_defer_writes(struct redis_conn *c);
void redis_conn_flush(struct redis_conn *c);

#endif
