/*
 * Direct writes: one event written as an HTTP/1.1 chunk straight to a subscriber's
 * socket by the thread that publishes it, without waking the connection's event loop,
 * and the unsent rest kept until the socket drains. Knows sockets and chunk framing,
 * nothing of streams or locks (the caller holds the stream's channel lock). When this
 * is safe with libmicrohttpd is written in broker.h ("threads and locks").
 */
#ifndef SSEPUSH_DIRECT_H
#define SSEPUSH_DIRECT_H

#include <stddef.h>
#include <stdint.h>

/* The unsent rest of a directly written chunk. */
struct direct {
	char *raw;		/* owned, or NULL when nothing is pending */
	uint32_t len, off;	/* bytes of raw, and how many are sent */
};

enum direct_result { DIRECT_FAILED = -1, DIRECT_SENT = 0, DIRECT_PENDING = 1 };

/*
 * Sends frame as one chunk ("<hex>\r\n<frame>\r\n"). DIRECT_SENT: all of it is in the
 * socket; DIRECT_PENDING: the rest is kept in d (the event is handed over either way);
 * DIRECT_FAILED: the socket failed or memory ran out, nothing is kept. d must be idle.
 */
enum direct_result direct_chunk(struct direct *d, int fd, const char *frame, size_t len);
/* The same, after raw bytes sent as they are (a response head), in the same call; a NULL
 * frame sends the raw bytes alone (no chunk), an empty one the last chunk "0\r\n\r\n". */
enum direct_result direct_write(struct direct *d, int fd, const char *raw, size_t rawlen,
    const char *frame, size_t len);
/* direct_write, then the last chunk "0\r\n\r\n": a response's end in the same send. */
enum direct_result direct_write_end(struct direct *d, int fd, const char *raw, size_t rawlen,
    const char *frame, size_t len);
/* Sends more of the kept rest: SENT once all is out (d idle again), PENDING, or FAILED. */
enum direct_result direct_flush(struct direct *d, int fd);
/* Whether a rest is still waiting for the socket. */
static inline int
direct_busy(const struct direct *d)
{
	return d->raw != NULL;
}
/* Drops the kept rest. */
void direct_free(struct direct *d);

#endif
