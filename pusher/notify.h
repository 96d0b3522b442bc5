/*
 * Cyrus notify-socket datagrams (EVENT and MAIL classes): a pure parser from the bytes
 * of one recv() to a struct notify_msg. It does no I/O, keeps no state and does not
 * decide what to publish; that is coalesce.c's and the daemon's job.
 * Leaf module: libc and jansson only.
 */
#ifndef SSEPUSH_NOTIFY_H
#define SSEPUSH_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NOTIFY_DATAGRAM_MAX 65536	/* Cyrus never sends more (min(SO_SNDBUF/10-32, 64K)) */
#define NOTIFY_EVENT_MAX 64		/* bytes in an event type */
#define NOTIFY_USER_MAX 255		/* bytes in an owner or actor userid (with @domain) */
#define NOTIFY_MAILBOX_MAX 1023	/* bytes in a decoded mailbox name */
#define NOTIFY_ID_MAX 128		/* bytes in a session id or mailboxID */

/* Flags for notify_parse_flags(). */
#define NOTIFY_NO_VIRTDOMAINS 0x1	/* '@' in a mailbox name is a plain character */

/*
 * The keys of Cyrus's vnd.fastmail.jmapStates (3.6+: a flat object of decimal strings),
 * indexes into notify_msg.jmap; notify_jmap_names[] spells them.
 */
enum notify_jmap { NOTIFY_JMAP_MAILBOX, NOTIFY_JMAP_EMAIL, NOTIFY_JMAP_EMAILSUBMISSION,
	NOTIFY_JMAP_CALENDAR, NOTIFY_JMAP_CALENDAREVENT, NOTIFY_JMAP_CONTACT,
	NOTIFY_JMAP_CONTACTGROUP, NOTIFY_JMAP_NOTE, NOTIFY_JMAP_SIEVESCRIPT, NOTIFY_JMAP_QUOTA,
	NOTIFY_JMAP_RACL, NOTIFY_JMAP_COUNT };
extern const char *const notify_jmap_names[NOTIFY_JMAP_COUNT];

enum notify_class {
	NOTIFY_CLASS_EVENT,	/* RFC 5423 event, JSON message (event_notifier) */
	NOTIFY_CLASS_MAIL	/* lmtpd delivery notice (mailnotifier) */
};

/*
 * One parsed notification. Every string is NUL-terminated, valid UTF-8 and holds no
 * control characters except where noted; an absent string is "".
 */
struct notify_msg {
	enum notify_class cls;
	char event[NOTIFY_EVENT_MAX + 1];	/* "MessageNew", ...; "MAIL" for the MAIL class */
	char owner[NOTIFY_USER_MAX + 1];	/* mailbox owner ("alice", "alice@example.com"); "" if shared */
	char actor[NOTIFY_USER_MAX + 1];	/* the `user` field: who acted (may be "") */
	char mailbox[NOTIFY_MAILBOX_MAX + 1];	/* "INBOX", "Archive", "Archive/2024"; full name if shared; "" on Login/Logout */
	char mailbox_id[NOTIFY_ID_MAX + 1];	/* Cyrus mailboxID (stable across RENAME) or "" */
	char session[NOTIFY_ID_MAX + 1];	/* vnd.cmu.sessionId or "" */
	char sep;				/* separator after "user" in the uri ('/' or '.'); 0 if shared or none */
	bool shared;				/* mailbox outside user/: no owner */
	bool has_modseq, has_uidnext, has_unseen, has_messages;
	uint64_t modseq;			/* mailbox modseq after the change */
	uint64_t uidnext;
	uint64_t unseen;			/* vnd.cmu.unseenMessages after the change */
	uint64_t messages;			/* messages in the mailbox (QuotaChange: in the quota root) */
	unsigned jmap_mask;			/* bit 1 << enum notify_jmap: that jmapStates key was a decimal string */
	uint64_t jmap[NOTIFY_JMAP_COUNT];	/* vnd.fastmail.jmapStates values, where the mask says so */
};

/*
 * Parses one datagram buf[0..len) into *out. Returns 0, or -1 with a one-line reason in
 * err (never containing bytes of the input) when the datagram is malformed; *out is then
 * unspecified but its strings are still NUL-terminated. Virtual domains are recognised
 * (a trailing "@domain" on an admin-namespace name).
 */
int notify_parse(const char *buf, size_t len, struct notify_msg *out, char *err,
    size_t errlen);
/* Same as notify_parse() with NOTIFY_* flags. */
int notify_parse_flags(const char *buf, size_t len, unsigned flags, struct notify_msg *out,
    char *err, size_t errlen);
/* The name of a class, for logs: "EVENT" or "MAIL". */
const char *notify_class_name(enum notify_class cls);

#endif
