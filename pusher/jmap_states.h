/*
 * JMAP mode of the pusher (jmap_states on): which JMAP states a Cyrus notification
 * vouches for (the type-to-state mapping of Cyrus 3.6-3.12), and per-account windows
 * that keep the highest state of each type seen until the window closes. Pure and
 * single-threaded like coalesce.c: the caller passes the time and asks for due
 * updates; nothing here reads a clock, logs or publishes.
 * Leaf module: libc and the notify.h / names.h types.
 */
#ifndef SSEPUSH_JMAP_STATES_H
#define SSEPUSH_JMAP_STATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "names.h"
#include "notify.h"

#define JMAP_NEVER UINT64_MAX		/* no window open */

/* The JMAP types the pusher publishes states for, in the order they are written. */
enum jmap_type { JMAP_CALENDAR, JMAP_CALENDAREVENT, JMAP_CONTACT, JMAP_CONTACTGROUP,
	JMAP_EMAIL, JMAP_EMAILDELIVERY, JMAP_EMAILSUBMISSION, JMAP_MAILBOX, JMAP_QUOTA,
	JMAP_THREAD, JMAP_TYPES };
extern const char *const jmap_type_names[JMAP_TYPES];

/* Some types' states: v[t] is set where mask has bit 1 << t. */
struct jmap_states {
	unsigned mask;
	uint64_t v[JMAP_TYPES];
};

/*
 * The states one notification vouches for (mask 0: none). Only MailboxModseq and
 * MailboxCreate carry committed states (message events carry the state from before the
 * change): Email, Thread and Mailbox are jmapStates.Email, Calendar and CalendarEvent
 * jmapStates.CalendarEvent, Contact and ContactGroup jmapStates.Contact,
 * EmailSubmission and Quota their own; a counter at 0 (never used) is left out.
 * MessageNew and MessageAppend give EmailDelivery: the record's modseq (or, without
 * one, the Email state before the change plus one), which grows with every added
 * Email and with nothing else.
 */
void jmap_map(const struct notify_msg *m, struct jmap_states *out);
/* Folds b into a, keeping the highest value of each type. */
void jmap_merge(struct jmap_states *a, const struct jmap_states *b);
/*
 * Writes states as a JSON object {"Type":"decimal",...} into out; returns its length,
 * or 0 if it does not fit.
 */
size_t jmap_states_json(const struct jmap_states *st, char *out, size_t outlen);

/* One closed window: the account's channel and the highest states seen in it. */
struct jmap_update {
	char channel[NAMES_CHANNEL_MAX + 1];
	struct jmap_states states;
	unsigned notifications;		/* datagrams that contributed */
	uint64_t first_ms;		/* now_ms of the first of them */
};

struct jmap_windows;

/* A new window table (window length, bound on open windows, channel_format), or NULL. */
struct jmap_windows *jmap_windows_new(uint64_t window_ms, size_t max_accounts,
    const char *channel_format);
/* Frees the table and its open windows; NULL is fine. */
void jmap_windows_free(struct jmap_windows *w);
/*
 * Folds a notification's states into its owner's window (opened with deadline now_ms +
 * window_ms). Returns 1 when it joined a window, 0 when it vouches for no state (or is
 * a shared folder's), -1 when dropped: max_accounts windows open, the channel_format
 * gives no valid channel, or no memory.
 */
int jmap_windows_add(struct jmap_windows *w, const struct notify_msg *m, uint64_t now_ms);
/* The earliest deadline, or JMAP_NEVER. */
uint64_t jmap_windows_next_deadline(const struct jmap_windows *w);
/* Hands out the oldest window due at now_ms (JMAP_NEVER: any): 1 and *out, or 0. */
int jmap_windows_pop_due(struct jmap_windows *w, uint64_t now_ms, struct jmap_update *out);
/* Open windows. */
size_t jmap_windows_pending(const struct jmap_windows *w);

#endif
