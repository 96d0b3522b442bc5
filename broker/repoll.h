/*
 * A long-poll connection the broker keeps (repoll.c). A long-poll client asks again on
 * the same connection after every answer; libmicrohttpd would resume the connection
 * for the answer (a walk of its loop's whole suspended list), read the next request
 * and suspend it again, three thread wake-ups and 17 system calls a cycle. Instead the
 * first poll is taken over at its 200 like a stream, the answer ends with the last
 * chunk written by the thread that has the event, and the watcher reads the next poll
 * itself: if it is the same request as the first one (libmicrohttpd parsed that one)
 * but for its last event id, the broker opens the next poll without libmicrohttpd;
 * anything else goes back to libmicrohttpd unread (MHD_add_connection), which answers
 * it as any request. A record lives as long as its connection.
 */
#ifndef SSEPUSH_REPOLL_H
#define SSEPUSH_REPOLL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stream.h"

struct MHD_Connection;
struct MHD_Daemon;

struct repoll {
	enum req_kind kind;		/* REQ_REPOLL: what the sockset entry points at */
	atomic_uint refs;		/* each stream's that points here, and the connection's while open */
	atomic_uint idle_since;		/* clock_sec() + 1 once a poll's answer is out, 0 while one is open */
	atomic_bool bound;		/* released by the loop that binds it, acquired by the watcher */
	struct repoll *prev, *next;	/* the open list, under repoll.c's list lock */
	/*
	 * The poll of the connection (open or answered), or NULL. Whoever swaps an answered
	 * one out ends it: the watcher, or the thread that answered it (repoll_take_answered).
	 */
	_Atomic(struct stream *) s;
	/* Once bound, only the watcher reads and writes these: */
	int fd;				/* the socket, the record's once bound; -1 once closed */
	bool closed;
	bool eventsource;		/* the request accepts text/event-stream: refusals as reply_retry's */
	/* What the first poll was, immutable once made: */
	struct MHD_Daemon *daemon;	/* the loop it came from, which gets anything else back */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned ping;
	char *channel;			/* the channel (its decoded name) */
	size_t chlen;
	char *token;			/* the subscriber token it presented, or NULL */
	char *session, *origins;	/* the stream's filters, or NULL */
	char *lines;			/* the 200's header lines after Date, with the blank line */
	char *cors;			/* its CORS lines (for a refusal), or "" */
	char *tmpl;			/* the request: arguments then headers, "name\0value\0" each, but the last event id */
	size_t tmpl_len;
	struct repoll *grave_next;	/* closed, waiting for the watcher's next loop */
	struct repoll *done_next;	/* answered, waiting for the watcher to end the poll; under repoll.c's done lock */
	bool queued;			/* on that list, under the done lock */
};

/*
 * The record of a long-poll request libmicrohttpd parsed, if its connection may be
 * kept (HTTP/1.1, no body, no Connection: close, a head the broker can compare) on
 * socket fd, for channel; NULL otherwise. One reference, the first stream's.
 */
struct repoll *repoll_new(struct MHD_Connection *conn, int fd, const char *channel, size_t chlen,
    const char *token);
/* Fills in what the first poll's stream decided (its filters, its ping). 0 or -1 (ENOMEM). */
int repoll_set_stream(struct repoll *r, const struct stream *s, const char *lines, const char *cors);
/*
 * Binds r once its first poll s is taken over (s's channel lock held): the sockset
 * reports r for the socket from now on, reading too, and r ends s. 0, or -1: not bound.
 */
int repoll_bind(struct repoll *r, struct stream *s);
/* r's poll is answered (its channel lock held): the watcher ends it soon, so it counts no more. */
void repoll_answered(struct repoll *r);
/* Whether the caller takes s, r's answered poll, out of r to end it (else someone did already). */
bool repoll_take_answered(struct repoll *r, struct stream *s);
/* The answered records queued for the watcher (each referenced, linked by done_next). */
struct repoll *repoll_take_done(void);
/* The watcher must read the socket again: the next poll came while an answer was going out. */
void repoll_rearm(struct repoll *r);
/* A stream lets go of r (the last reference of a closed one frees it). */
void repoll_unref(struct repoll *r);
/* The watcher's, once a second: connections idle past header_timeout are shut down. */
void repoll_tick(uint32_t now);
/* The watcher's, closing r: off the list repoll_tick walks. */
void repoll_unlist(struct repoll *r);
/* The first open record, or NULL (repoll_close_all). */
struct repoll *repoll_first_open(void);
/* fd, r's socket, goes back to the libmicrohttpd loop r came from (closed if it is stopping). */
void repoll_give_back(struct repoll *r, int fd);
/* Before the loops stop: nothing goes back to libmicrohttpd any more. */
void repoll_stop(void);
/* --- repoll_read.c, the watcher's (through its hooks) --- */
#define REPOLL_HEAD_MAX 8192		/* the most of a next request the watcher reads (on its stack) */
#define REPOLL_ID_MAX 256		/* a last event id longer than this goes to libmicrohttpd */
/* The next request as the broker read it. */
struct repoll_req {
	size_t head_len;
	const char *last_id;		/* in the buffer, or NULL */
};
/*
 * Whether buf[0..n) (a NUL-terminated copy the call cuts up) is a whole request the
 * broker takes on as r's next poll: 1 (q filled), 0 (not all of it yet), -1 (it goes
 * to libmicrohttpd). Its own for tests/fuzz/fuzz_repoll.c.
 */
int repoll_match(const struct repoll *r, char *buf, size_t n, struct repoll_req *q);
/* An event on r's socket. */
void repoll_event(struct repoll *r, uint32_t events);
/* The watcher's, between two epoll waits: ends answered polls, drops the connections' references of closed records. */
void repoll_reap(void);
/* After the watcher stopped: closes what is left. */
void repoll_close_all(void);

#endif
