/*
 * Per-user coalescing of parsed Cyrus notifications into one "change" event per user per
 * window. Pure and single-threaded: the caller passes a monotonic time in milliseconds
 * and asks for due events; nothing here reads a clock, sleeps, logs or publishes.
 * Leaf module: libc, jansson, and the notify.h / names.h types it works on.
 */
#ifndef SSEPUSH_COALESCE_H
#define SSEPUSH_COALESCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "names.h"
#include "notify.h"

#define COALESCE_DEFAULT_MS 500		/* window length */
#define COALESCE_DEFAULT_FORMAT "%u"		/* channel_format */
#define COALESCE_DEFAULT_EVENTS "default"	/* every event type but Login and Logout */
#define COALESCE_DEFAULT_MAX_USERS 10000	/* users with an open window */
#define COALESCE_DEFAULT_MAX_MAILBOXES 64	/* mailboxes listed per event */
#define COALESCE_KINDS_MAX 64			/* distinct event types tracked */
#define COALESCE_NEVER UINT64_MAX		/* no window open */

struct coalesce_config {
	uint64_t coalesce_ms;		/* window length; 0 = every pop flushes */
	const char *events;		/* "default", "all", or a list ("MessageNew,FlagsSet MAIL"); NULL = default */
	const char *channel_format;	/* %u user, %l local part, %d domain, %% '%'; NULL = "%u" */
	const char *shared_channel;	/* channel for shared folders; NULL = skip them */
	size_t max_users;		/* 0 = default */
	size_t max_mailboxes;		/* 0 = default */
};

/* Counters for /metrics and log lines; never reset. */
struct coalesce_stats {
	uint64_t added;			/* notifications that joined a window */
	uint64_t filtered;		/* event type not in `events` */
	uint64_t shared_skipped;	/* shared folder and no shared_channel */
	uint64_t dropped_users;		/* max_users windows already open */
	uint64_t bad_channel;		/* channel_format gave an invalid channel name */
	uint64_t mailbox_overflow;	/* a mailbox not listed because of max_mailboxes */
	uint64_t emitted;		/* change events handed out */
	uint64_t nomem;			/* allocation failures (notification or event lost) */
};

/* One change event, ready to publish. */
struct coalesce_event {
	char channel[NAMES_CHANNEL_MAX + 1];
	char user[NOTIFY_USER_MAX + 1];	/* owner, "" for shared_channel */
	char origin[NAMES_ID_MAX + 1];	/* Cyrus session id if the whole window had one; else "" */
	char *payload;			/* JSON text (new, NUL-terminated); coalesce_event_clear() frees */
	size_t payload_len;
	unsigned notifications;		/* datagrams folded into it */
	uint64_t first_ms;		/* the now_ms its first notification was added with */
};

struct coalesce;

/*
 * Validates the config and returns a new coalescer (strings are copied), or NULL with the
 * reason in err: an unknown % escape or a character outside the channel alphabet in
 * channel_format, a malformed events list, an invalid shared_channel.
 */
struct coalesce *coalesce_new(const struct coalesce_config *cfg, char *err, size_t errlen);
/* Frees the coalescer and every open window (their events are lost); NULL is fine. */
void coalesce_free(struct coalesce *c);
/*
 * Folds one parsed notification into its owner's window, opening one (deadline now_ms +
 * coalesce_ms) if needed. Returns 0 when it was taken or deliberately ignored (filtered,
 * shared), -1 when it had to be dropped (too many users, bad channel, no memory); the
 * reason is then in coalesce_error() and the matching counter went up.
 */
int coalesce_add(struct coalesce *c, const struct notify_msg *m, uint64_t now_ms);
/* The earliest deadline of an open window, or COALESCE_NEVER. */
uint64_t coalesce_next_deadline(const struct coalesce *c);
/*
 * Hands out one window whose deadline is <= now_ms, oldest first: returns 1 and fills
 * *out (the caller must coalesce_event_clear() it), 0 when none is due, -1 when building
 * the payload failed (that window is dropped and counted in nomem). Pass COALESCE_NEVER
 * to flush everything at shutdown.
 */
int coalesce_pop_due(struct coalesce *c, uint64_t now_ms, struct coalesce_event *out);
/* Frees the payload of an event filled by coalesce_pop_due(); safe to call twice. */
void coalesce_event_clear(struct coalesce_event *ev);
/* Number of open windows. */
size_t coalesce_pending(const struct coalesce *c);
/* Counters since coalesce_new() (borrowed). */
const struct coalesce_stats *coalesce_stats(const struct coalesce *c);
/* Reason for the last -1 from coalesce_add() or coalesce_pop_due() (borrowed). */
const char *coalesce_error(const struct coalesce *c);
/*
 * Expands a channel_format for owner into dst; -1 when the result is not a valid
 * channel name (empty, too long, or a character outside the channel alphabet).
 */
int coalesce_channel(const char *format, const char *owner, char *dst, size_t dstsize);

#endif
