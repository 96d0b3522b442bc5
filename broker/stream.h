/*
 * One subscriber stream (an EventSource or long-poll response): where it reads its
 * channel's ring, what it still has to send (a partial event, small frames, events
 * replayed from the bus, the rest of a direct write), and its flags. Written only by
 * stream.c, always with its channel's lock held (the wheel node under the watcher's
 * wheel lock). Every byte here is paid once per subscriber, so fields are ordered by
 * size to avoid padding.
 */
#ifndef SSEPUSH_STREAM_H
#define SSEPUSH_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "channel.h"
#include "direct.h"
#include "event.h"
#include "wheel.h"

struct MHD_Connection;
struct jmap_sub;
struct repoll;

/* What a request's MHD req_cls points at: each kind starts with this. */
enum req_kind { REQ_STREAM = 1, REQ_PUBLISH, REQ_HEADERS, REQ_BAD_LINE, REQ_WEBPUSH, REQ_UPSTREAM,
	REQ_REPOLL };	/* REQ_REPOLL: not a request's, a long-poll connection's (repoll.h), in the sockset */

/* Why a stream gets "event: reset" (the reason string in its data). */
enum reset_reason { RESET_UNKNOWN, RESET_EXPIRED, RESET_LAGGED, RESET_UNAVAILABLE };

/* Events fetched from the bus for one reconnecting stream, sent before the ring (also a
 * JMAP stream's queue of StateChange events its legs made). */
struct stream_replay {
	struct event **ev;		/* owned references */
	size_t n, i;			/* count, next to send */
};

/* A JMAP stream of several accounts: one leg per account. */
struct stream_legs {
	unsigned n;
	struct stream *leg[];		/* each holds a reference to the stream; the stream's request holds theirs */
};

/*
 * A JMAP stream whose credentials reach several accounts reads none of their rings
 * itself (a lock of one account's channel must never be taken under another's: two
 * such streams would take them in opposite orders). It lives on a channel of its own
 * (channel_private), and each account's channel holds a leg: a stream with no
 * connection, joined on the bus like any subscriber, that turns its ring's jmap-state
 * events into the stream's StateChange events under the leg's channel lock, then the
 * stream's (always in that order). A leg that loses events (a reset, an eviction) ends
 * the stream: its client reconnects with its id and is told exactly what differs.
 */
struct stream {
	enum req_kind kind;		/* first: MHD's req_cls points here (REQ_STREAM) */
	unsigned refs;			/* MHD's request, plus each bus job in flight (under ch->lock) */
	struct channel_member member;	/* channel list (under ch->lock); the grave list once dead */
	struct wheel_node wnode;	/* ping wheel (under the watcher's wheel lock) */
	struct MHD_Connection *conn;
	struct channel *ch;		/* holds a reference */
	struct stream_replay *replay;	/* events fetched for this stream, or NULL */
	struct event *partial;		/* the event at cursor, referenced while offset > 0 */
	void *bus_member;		/* the bus implementation's state for this stream (bus only) */
	struct MHD_Response *head;	/* borrowed: its header list is freed at the first read */
	struct jmap_sub *jmap;		/* owned: a JMAP stream's state (jmap_stream.c), else NULL */
	struct repoll *repoll;		/* referenced: the long-poll connection it answers a poll of (repoll.h), or NULL */
	union {
		struct stream *owner;		/* a leg: the JMAP stream it feeds (referenced) */
		struct stream_legs *legs;	/* a JMAP stream of several accounts: owned; else NULL */
	} acct;
	char *session;			/* owned, or NULL */
	char *origins;			/* owned comma list, or NULL */
	struct direct direct;		/* the unsent rest of a directly written chunk */
	uint64_t cursor;		/* channel index of the next event to consider */
	uint64_t skip_until;		/* ring events with a key up to this were already sent */
	uint64_t reset_seq;		/* id the pending reset carries */
	int64_t start_ns;		/* when the stream began: older events are replays */
	int fd;
	uint32_t offset;		/* bytes of the event at cursor already sent */
	uint32_t last_send;		/* monotonic second something was last sent */
	uint32_t ping;			/* seconds, 0 = no pings */
	uint32_t retry_ms;		/* for the preamble */
	atomic_uchar join_wait;		/* subscribe.c: the join's answer and the handler, whichever ends last answers */
	int8_t join_status;		/* subscribe.c: 0 joined, -1 the bus refused, -2 the watcher could not take it */
	/* flags, under ch->lock */
	bool suspended;			/* the content reader suspended the connection */
	bool closing, longpoll, ping_due, sent, dead, attached, pending;
	bool direct_ok;			/* frames may be written straight to the socket while suspended */
	bool wake_after_raw;		/* resume once the direct rest is flushed */
	bool watch_room;		/* the socket is watched for room too (sockset_want_room) */
	bool responding;		/* subscribe.c: the 200 is queued */
	bool join_suspended;		/* subscribe.c: the handler suspended the connection for the join */
	bool join_asked;		/* subscribe.c: bus->join was called, so bus->leave must follow */
	bool leg;			/* a leg of a JMAP stream (acct.owner) */
	bool own_fd;			/* fd is the broker's duplicate of the socket (closed with the stream) */
	bool taken;			/* the broker answered the 200 itself and MHD let go: it writes everything */
	bool shut;			/* taken: the socket is shut down, the watcher ends the stream */
	bool finished;			/* taken: the last chunk is written (SIGTERM; a long-poll's answer) */
	bool polls;			/* repoll is bound: its record owns the socket and the sockset entry */
	bool poll_done;			/* polls: the whole answer is out, the connection waits for the next poll */
	bool poll_input;		/* polls: the next request came before this answer was out */
	uint8_t small;			/* small frames still to send */
	uint8_t small_off;		/* bytes of the first of them already sent */
	uint8_t reset_reason;		/* enum reset_reason */
};

#define stream_of_member(m) ((struct stream *)((char *)(m) - offsetof(struct stream, member)))
#define stream_of_wnode(n) ((struct stream *)((char *)(n) - offsetof(struct stream, wnode)))

/* What a subscribe request asked for (borrowed strings, copied by stream_new). */
struct stream_opts {
	struct MHD_Connection *conn;
	int fd;				/* the socket, or -1 */
	const char *session, *origins;	/* or NULL */
	unsigned ping;			/* seconds, 0 = none */
	struct jmap_sub *jmap;		/* a JMAP stream's state (stolen by stream_new, even when it fails), or NULL */
	struct stream *owner;		/* makes a leg of this JMAP stream (attached to its own channel) */
	bool longpoll;
	bool direct_ok;			/* HTTP/1.1: direct chunk writes allowed */
	bool own_fd;			/* fd is the broker's own duplicate (stolen by stream_new, even when it fails): the stream may be taken over */
	struct repoll *repoll;		/* a long-poll connection the broker may keep (its reference is stolen), or NULL */
	bool polls;			/* repoll is bound already: a poll the broker read itself (fd is the record's) */
};

/* stream_attach()'s results besides 0. */
enum { STREAM_FULL = -1, STREAM_REMOTE = 1 };

/* Makes a stream with one reference (MHD's request; a leg's: its owner's request); NULL on ENOMEM. */
struct stream *stream_new(const struct stream_opts *o);
/* The legs of a JMAP stream of several accounts, or NULL. */
static inline struct stream_legs *
stream_legs(const struct stream *s)
{
	return s->leg ? NULL : s->acct.legs;
}

/* Frees a stream that was never attached, or one taken from the grave. Accepts NULL. */
void stream_free(struct stream *s);
/*
 * Links s into ch (stealing the caller's channel reference), queues the preamble and
 * places the cursor for a client that last saw last_id (NULL: live only), all under the
 * lock publishers take, so no event falls between replay and live. Returns 0,
 * STREAM_REMOTE when only the bus can say what the client missed (s is pending until
 * stream_replayed), or STREAM_FULL (the reference is dropped).
 */
int stream_attach(struct stream *s, struct channel *ch, const char *last_id);
/* Unlinks s and marks it dead (its request is over); returns whether it was attached. */
bool stream_detach(struct stream *s);
/* Takes a reference for a bus job (ch->lock held). */
void stream_ref_locked(struct stream *s);
/* Drops a reference; the last one of a dead stream sends it to the grave. */
void stream_unref(struct stream *s);
/* Frees the grave: only the watcher thread, between two epoll waits. */
void stream_reap(void);
/* Whether the session and origin filters let ev through to s. */
bool stream_wants(const struct stream *s, const struct event *ev);
/* Hands a new ring event at index to s (ch->lock held); direct_ok: may write it straight away. */
void stream_deliver(struct stream *s, struct event *ev, uint64_t index, bool direct_ok);
/* Wakes a suspended stream so its reader runs again (ch->lock held). */
void stream_wake(struct stream *s);
/* Queues "event: reset" carrying key, resuming the ring after key (ch->lock held). */
void stream_force_reset(struct stream *s, uint64_t key, int reason);
/*
 * Installs what the bus answered for a pending stream (ch->lock held): status < 0, the
 * events to send first (stolen, may be NULL) and then the ring after key (or a reset
 * "lagged" when the ring lost events after key meanwhile); status >= 0, a reset for
 * that reason carrying key. Clears pending and wakes s.
 */
void stream_replayed(struct stream *s, int status, struct event **ev, size_t n, uint64_t key);
/*
 * The bus's answer to a JMAP stream's state fetch (any thread; a bus_state_done): the
 * stored state becomes what its client has, a reconnect's StateChange is queued first,
 * and the ring is read from then on. For a leg, its account's part: once every leg's
 * is in, the legs read their rings. Drops the fetch's reference (to s).
 */
void stream_jmap_ready(struct stream *s, int status, const char *json, size_t len);
/*
 * The watcher saw the client hang up (or a taken stream's own shutdown): the reader
 * ends the response. Returns true for a taken stream, which the caller ends itself.
 */
bool stream_hangup(struct stream *s);
/*
 * Takes a stream over from libmicrohttpd (its 200 head rendered in head): from now on
 * the broker writes everything, head first, and the caller lets MHD drop its connection.
 */
void stream_take(struct stream *s, const char *head, size_t len);
/*
 * A poll's whole answer in raw bytes (a refusal of a poll the broker read itself): sent
 * like a head, then the connection waits for the next poll.
 */
void stream_answer_raw(struct stream *s, const char *raw, size_t len);
/* Whether s, a kept long-poll connection's poll, is answered; input: the next request came (read once it is). */
bool stream_poll_answered(struct stream *s, bool input);
/*
 * The calling thread, about to answer polls under channel locks, ends them itself with
 * stream_end_polls() once it holds no channel lock (else the watcher is woken for them).
 */
void stream_defer_poll_ends(void);
/* How an answered poll is ended (subscribe_end_poll), set once at start. */
void stream_set_poll_end(void (*end)(struct stream *));
void stream_end_polls(void);
/* Whether every stream is ending (SIGTERM). */
bool stream_ending(void);
/* Closes a taken stream's socket once it is detached (the watcher, ending it). */
void stream_close_socket(struct stream *s);
/* The watcher saw the socket writable: sends more of a direct write's rest. */
void stream_flush(struct stream *s);
/* The watcher's tick: fires the ping if due; returns false if s is dead, else its next deadline in *due. */
bool stream_tick(struct stream *s, uint32_t now, uint32_t *due);
/* The libmicrohttpd content reader of every stream response. */
ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max);
/* The watcher's check: ends streams whose socket took nothing of waiting data for limit seconds. */
void stream_cut_slow(uint32_t now, uint32_t limit);
/* Resumes every stream so each ends its response (SIGTERM); with force, even mid-chunk. */
void stream_end_all(bool force);

#endif
