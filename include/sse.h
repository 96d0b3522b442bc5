/*
 * Server-sent-events framing: turns an event (id, type, payload) into the bytes of
 * the text/event-stream format, and builds the ping, reset and preamble frames.
 * Pure functions, no I/O, no allocation. Leaf module: libc only.
 */
#ifndef SSEPUSH_SSE_H
#define SSEPUSH_SSE_H

#include <stddef.h>

#define SSE_SMALL_FRAME 256	/* enough for a preamble, ping or reset frame */

/*
 * Returns the exact size of the frame sse_frame() writes. type NULL or "message" means
 * no "event:" line; id NULL or "" means no "id:" line.
 */
size_t sse_frame_size(const char *id, const char *type, const char *data, size_t len);
/*
 * Writes the frame into out (at least sse_frame_size() bytes): "id:", "event:", one
 * "data:" line per payload line (lines end at CRLF, LF or a lone CR), then a blank line.
 * Returns the number of bytes written.
 */
size_t sse_frame(char *out, const char *id, const char *type, const char *data, size_t len);
/* Writes the ping frame for an interval in seconds; returns its length. */
size_t sse_ping(char *out, size_t outlen, unsigned interval);
/* Writes "id: ID\nevent: reset\ndata: {"reason":"R"}\n\n"; returns its length (0 if it does not fit). */
size_t sse_reset(char *out, size_t outlen, const char *id, const char *reason);
/* Writes the stream preamble: a retry line and a comment; returns its length. */
size_t sse_preamble(char *out, size_t outlen, unsigned retry_ms);

#endif
