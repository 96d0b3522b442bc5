/*
 * Direct chunk writes to a subscriber socket (see direct.h): sendmsg of the chunk head,
 * frame and tail (after the response head, for a stream the broker answers itself) in
 * one call, MSG_DONTWAIT so a full socket never blocks a publisher.
 */
#include "direct.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* Copies the unsent part of iov (after skip bytes) into d; -1 on ENOMEM. */
static int
direct_keep(struct direct *d, const struct iovec *iov, int n, size_t total, size_t skip)
{
	int i;

	if ((d->raw = malloc(total - skip)) == NULL)
		return -1;
	d->len = (uint32_t)(total - skip);
	d->off = 0;
	for (i = 0; i < n; i++) {
		size_t l = iov[i].iov_len, from = skip < l ? skip : l;
		if (l > from)	/* an empty piece may have no base at all */
			memcpy(d->raw + d->off, (const char *)iov[i].iov_base + from, l - from);
		d->off += (uint32_t)(l - from);
		skip -= from;
	}
	d->off = 0;
	return 0;
}

/*
 * One sendmsg of raw, then frame as a chunk (none if NULL), then the last chunk if
 * last; what the socket does not take is kept for direct_flush.
 */
static enum direct_result
direct_send(struct direct *d, int fd, const char *raw, size_t rawlen, const char *frame, size_t len,
    bool last)
{
	char head[24];
	struct iovec iov[5];
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 5 };
	size_t total;
	ssize_t n;

	iov[0].iov_base = (void *)raw;
	iov[0].iov_len = rawlen;
	iov[1].iov_base = head;
	iov[1].iov_len = (size_t)snprintf(head, sizeof head, "%zx\r\n", len);
	iov[2].iov_base = (void *)frame;
	iov[2].iov_len = len;
	iov[3].iov_base = (void *)"\r\n";
	iov[3].iov_len = 2;
	iov[4].iov_base = (void *)"0\r\n\r\n";
	iov[4].iov_len = last ? 5 : 0;
	if (frame == NULL)	/* the raw bytes alone */
		iov[1].iov_len = iov[3].iov_len = 0;
	total = rawlen + iov[1].iov_len + len + iov[3].iov_len + iov[4].iov_len;
	n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return DIRECT_FAILED;
	if (n < 0)
		n = 0;
	if ((size_t)n == total)
		return DIRECT_SENT;
	return direct_keep(d, iov, 5, total, (size_t)n) == 0 ? DIRECT_PENDING : DIRECT_FAILED;
}

enum direct_result
direct_write(struct direct *d, int fd, const char *raw, size_t rawlen, const char *frame, size_t len)
{
	return direct_send(d, fd, raw, rawlen, frame, len, false);
}

enum direct_result
direct_write_end(struct direct *d, int fd, const char *raw, size_t rawlen, const char *frame, size_t len)
{
	return direct_send(d, fd, raw, rawlen, frame, len, true);
}

/* A chunk with nothing before it. */
enum direct_result
direct_chunk(struct direct *d, int fd, const char *frame, size_t len)
{
	return direct_write(d, fd, NULL, 0, frame, len);
}

/* Sends as much of the rest as the socket takes. */
enum direct_result
direct_flush(struct direct *d, int fd)
{
	ssize_t n;

	while (d->raw != NULL && d->off < d->len) {
		n = send(fd, d->raw + d->off, d->len - d->off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			d->off += (uint32_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return DIRECT_PENDING;
		return DIRECT_FAILED;
	}
	direct_free(d);
	return DIRECT_SENT;
}

/* Frees the rest, sent or not. */
void
direct_free(struct direct *d)
{
	free(d->raw);
	d->raw = NULL;
	d->len = d->off = 0;
}
