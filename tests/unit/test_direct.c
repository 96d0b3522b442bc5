/*
 * Unit tests for direct chunk writes (broker/direct.c) over a real AF_UNIX stream
 * socketpair, no network: the exact "<hex len>\r\n<frame>\r\n" bytes, a full socket
 * (small buffers filled first) giving DIRECT_PENDING with exactly the unsent rest kept,
 * direct_flush finishing it once the peer drained (the peer reads the whole chunk
 * exactly once), a partial send, a closed peer giving DIRECT_FAILED without a SIGPIPE
 * (MSG_NOSIGNAL: SIGPIPE is blocked and must not become pending), and direct_free.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "direct.h"

/* Asserts that buf[0..len) equals want[0..wantlen), printing both on failure. */
static void assert_bytes(const char *buf, size_t len, const char *want, size_t wantlen)
{
	if (len != wantlen || memcmp(buf, want, len) != 0) {
		print_error("got  (%zu) \"%.*s\"\nwant (%zu) \"%.*s\"\n", len,
		    (int)(len < 200 ? len : 200), buf, wantlen,
		    (int)(wantlen < 200 ? wantlen : 200), want);
		fail();
	}
}

/* A connected pair: fd[0] is the broker's end, fd[1] the subscriber's; both non-blocking. */
static void pair_open(int fd[2])
{
	int i;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(fcntl(fd[i], F_SETFL, fcntl(fd[i], F_GETFL) | O_NONBLOCK), 0);
}

/* Shrinks both ends' buffers so a few kilobytes fill the pair. */
static void pair_small(int fd[2])
{
	int sz = 4096;

	assert_int_equal(setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz), 0);
	assert_int_equal(setsockopt(fd[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz), 0);
}

/* Reads what is readable now from fd into buf (up to cap); returns the count. */
static size_t drain(int fd, char *buf, size_t cap)
{
	size_t got = 0;

	while (got < cap) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		assert_true(n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK));
		break;
	}
	return got;
}

/* Reads exactly len bytes from fd, waiting at most 5 s in all. */
static void read_exact(int fd, char *buf, size_t len)
{
	size_t got = 0;
	int waits = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		got += drain(fd, buf + got, len - got);
		if (got == len)
			break;
		assert_true(++waits < 50);
		assert_true(poll(&p, 1, 100) >= 0);
	}
}

/* Asserts nothing more is readable on fd. */
static void assert_nothing_more(int fd)
{
	char c;

	assert_int_equal(read(fd, &c, 1), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* The chunk direct_chunk must write for frame: "<hex len>\r\n<frame>\r\n"; malloc'ed. */
static char *chunk_of(const char *frame, size_t len, size_t *outlen)
{
	char *c = malloc(len + 32);
	int h;

	assert_non_null(c);
	h = snprintf(c, 32, "%zx\r\n", len);
	assert_true(h > 0);
	memcpy(c + h, frame, len);
	memcpy(c + h + len, "\r\n", 2);
	*outlen = (size_t)h + len + 2;
	return c;
}

/* A frame of len bytes that is not all one byte (so a misplaced copy shows). */
static char *frame_new(size_t len)
{
	char *f = malloc(len ? len : 1);
	size_t i;

	assert_non_null(f);
	for (i = 0; i < len; i++)
		f[i] = (char)('a' + (i * 7 + i / 26) % 26);
	if (len >= 2)
		memcpy(f + len - 2, "\n\n", 2);
	return f;
}

/*
 * Fills fd[0] until a one-byte write would block (the kernel then refuses any write,
 * whatever its size); returns how many filler bytes are queued, all 'F'.
 */
static size_t fill(int fd[2])
{
	char block[512];
	size_t queued = 0;
	ssize_t n;

	memset(block, 'F', sizeof block);
	while ((n = write(fd[0], block, sizeof block)) > 0)
		queued += (size_t)n;
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	while ((n = write(fd[0], block, 1)) > 0)
		queued += (size_t)n;
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
	assert_true(queued > 0);
	return queued;
}

/* Reads the filler back and asserts it is all 'F'. */
static void read_filler(int fd, size_t queued)
{
	char *buf = malloc(queued);
	size_t i;

	assert_non_null(buf);
	read_exact(fd, buf, queued);
	for (i = 0; i < queued; i++)
		assert_int_equal(buf[i], 'F');
	free(buf);
}

/* Frames of various sizes, each sent whole: the peer reads exactly the chunk, once. */
static void test_chunk_bytes(void **state)
{
	static const size_t lens[] = { 1, 8, 15, 16, 17, 255, 256, 4095, 4096, 10000, 65535 };
	struct direct d = { NULL, 0, 0 };
	int fd[2];
	size_t i;

	(void)state;
	pair_open(fd);
	for (i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		size_t len = lens[i], clen;
		char *frame = frame_new(len), *want = chunk_of(frame, len, &clen);
		char *got = malloc(clen);

		assert_non_null(got);
		assert_int_equal(direct_chunk(&d, fd[0], frame, len), DIRECT_SENT);
		assert_false(direct_busy(&d));
		assert_null(d.raw);
		read_exact(fd[1], got, clen);
		assert_bytes(got, clen, want, clen);
		assert_nothing_more(fd[1]);
		free(got);
		free(want);
		free(frame);
	}

	/* the literal bytes, lower-case hex */
	{
		static const char frame[] = "id: 1\ndata: hi\n\n";
		static const char want[] = "10\r\nid: 1\ndata: hi\n\n\r\n";
		char got[sizeof want - 1];

		assert_int_equal(direct_chunk(&d, fd[0], frame, sizeof frame - 1), DIRECT_SENT);
		read_exact(fd[1], got, sizeof got);
		assert_bytes(got, sizeof got, want, sizeof want - 1);
		assert_nothing_more(fd[1]);
	}
	{
		char frame[0xab], want[0xab + 8], got[0xab + 8];

		memset(frame, 'q', sizeof frame);
		memcpy(want, "ab\r\n", 4);
		memcpy(want + 4, frame, sizeof frame);
		memcpy(want + 4 + sizeof frame, "\r\n", 2);
		assert_int_equal(direct_chunk(&d, fd[0], frame, sizeof frame), DIRECT_SENT);
		read_exact(fd[1], got, sizeof frame + 6);
		assert_bytes(got, sizeof frame + 6, want, sizeof frame + 6);
	}
	close(fd[0]);
	close(fd[1]);
}

/*
 * A full socket: DIRECT_PENDING with the whole chunk kept (nothing went out), flush
 * while still full stays PENDING and keeps it, and after the peer drained the filler
 * the flush sends it: the peer reads filler then the chunk, exactly once.
 */
static void test_pending_when_full(void **state)
{
	static const char frame[] = "id: 99\nevent: change\ndata: {\"k\":1}\n\n";
	struct direct d = { NULL, 0, 0 };
	size_t queued, clen;
	char *want = chunk_of(frame, sizeof frame - 1, &clen), *got;
	int fd[2];

	(void)state;
	pair_open(fd);
	pair_small(fd);
	queued = fill(fd);
	assert_int_equal(direct_chunk(&d, fd[0], frame, sizeof frame - 1), DIRECT_PENDING);
	assert_true(direct_busy(&d));
	assert_non_null(d.raw);
	assert_int_equal(d.off, 0);
	assert_int_equal(d.len, clen);	/* a full socket takes no byte of it */
	assert_bytes(d.raw, d.len, want, clen);

	assert_int_equal(direct_flush(&d, fd[0]), DIRECT_PENDING);	/* still full */
	assert_true(direct_busy(&d));
	assert_int_equal(d.off, 0);
	assert_int_equal(d.len, clen);
	assert_bytes(d.raw, d.len, want, clen);

	read_filler(fd[1], queued);
	assert_int_equal(direct_flush(&d, fd[0]), DIRECT_SENT);
	assert_false(direct_busy(&d));
	assert_null(d.raw);
	assert_int_equal(d.len, 0);
	assert_int_equal(d.off, 0);
	got = malloc(clen);
	assert_non_null(got);
	read_exact(fd[1], got, clen);
	assert_bytes(got, clen, want, clen);
	assert_nothing_more(fd[1]);

	/* idle again: a flush with nothing kept sends nothing, the next chunk goes out whole */
	assert_int_equal(direct_flush(&d, fd[0]), DIRECT_SENT);
	assert_nothing_more(fd[1]);
	assert_int_equal(direct_chunk(&d, fd[0], frame, sizeof frame - 1), DIRECT_SENT);
	read_exact(fd[1], got, clen);
	assert_bytes(got, clen, want, clen);
	free(got);
	free(want);
	close(fd[0]);
	close(fd[1]);
}

/*
 * A chunk larger than the socket holds goes out in part: what the peer reads at once
 * is the chunk's head and d keeps exactly the rest; flushes after each drain move
 * d.off along the same bytes until DIRECT_SENT, and the peer has the chunk once.
 */
static void test_partial_send(void **state)
{
	enum { LEN = 200000 };
	struct direct d = { NULL, 0, 0 };
	char *frame = frame_new(LEN), *want, *got;
	size_t clen, have, kept;
	enum direct_result r;
	int fd[2], rounds = 0;

	(void)state;
	want = chunk_of(frame, LEN, &clen);
	got = malloc(clen);
	assert_non_null(got);
	pair_open(fd);
	pair_small(fd);
	assert_int_equal(direct_chunk(&d, fd[0], frame, LEN), DIRECT_PENDING);
	memset(frame, 'Z', LEN);	/* d holds its own copy */
	kept = d.len;
	assert_true(kept < clen);	/* some went out */
	assert_true(kept > clen / 2);	/* most did not: the buffers are small */
	assert_int_equal(d.off, 0);
	assert_bytes(d.raw, d.len, want + (clen - kept), kept);

	have = drain(fd[1], got, clen);
	assert_int_equal(have, clen - kept);	/* exactly the part not kept */
	assert_bytes(got, have, want, have);
	do {
		uint32_t off = d.off;

		r = direct_flush(&d, fd[0]);
		assert_true(r == DIRECT_PENDING || r == DIRECT_SENT);
		if (r == DIRECT_PENDING) {
			assert_int_equal(d.len, kept);
			assert_true(d.off >= off && d.off < d.len);
			assert_bytes(d.raw, d.len, want + (clen - kept), kept);
		}
		have += drain(fd[1], got + have, clen - have);
		assert_true(++rounds < 100000);
	} while (r == DIRECT_PENDING);
	assert_false(direct_busy(&d));
	have += drain(fd[1], got + have, clen - have);
	assert_bytes(got, have, want, clen);
	assert_nothing_more(fd[1]);
	assert_true(rounds > 1);	/* it really took several flushes */
	free(got);
	free(want);
	free(frame);
	close(fd[0]);
	close(fd[1]);
}

/*
 * A response head before the chunk, as a taken stream's first write: head and chunk in
 * one send, and a full socket keeps exactly the unsent rest of both (the head's too);
 * the empty chunk that ends a response is "0\r\n\r\n", and a NULL frame sends the raw
 * bytes alone.
 */
static void test_head_then_chunk(void **state)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	enum { LEN = 100000 };
	struct direct d = { NULL, 0, 0 };
	char *frame = frame_new(LEN), *chunk, *want, *got;
	size_t clen, wlen, queued, have = 0, hlen = sizeof head - 1;
	enum direct_result r;
	int fd[2], rounds = 0;

	(void)state;
	chunk = chunk_of(frame, LEN, &clen);
	wlen = hlen + clen;
	want = malloc(wlen);
	got = malloc(wlen);
	assert_non_null(want);
	assert_non_null(got);
	memcpy(want, head, hlen);
	memcpy(want + hlen, chunk, clen);
	pair_open(fd);
	pair_small(fd);
	queued = fill(fd);	/* not even the head fits now */
	assert_int_equal(direct_write(&d, fd[0], head, hlen, frame, LEN), DIRECT_PENDING);
	assert_bytes(d.raw, d.len, want, wlen);	/* all of it kept, head first */
	read_filler(fd[1], queued);
	do {
		have += drain(fd[1], got + have, wlen - have);
		r = direct_flush(&d, fd[0]);
		assert_true(r != DIRECT_FAILED);
		assert_true(++rounds < 100000);
	} while (r == DIRECT_PENDING);
	have += drain(fd[1], got + have, wlen - have);
	assert_bytes(got, have, want, wlen);

	assert_int_equal(direct_write(&d, fd[0], "raw", 3, NULL, 0), DIRECT_SENT);
	have = drain(fd[1], got, wlen);
	assert_bytes(got, have, "raw", 3);	/* a NULL frame: no chunk at all */
	assert_int_equal(direct_write(&d, fd[0], NULL, 0, "", 0), DIRECT_SENT);
	have = drain(fd[1], got, wlen);
	assert_bytes(got, have, "0\r\n\r\n", 5);
	assert_nothing_more(fd[1]);
	free(got);
	free(want);
	free(chunk);
	free(frame);
	close(fd[0]);
	close(fd[1]);
}

/* Asserts SIGPIPE (blocked) is not pending, consuming it first if it is. */
static void assert_no_sigpipe(void)
{
	sigset_t pending, pipe_set;
	const struct timespec zero = { 0, 0 };
	int had;

	assert_int_equal(sigpending(&pending), 0);
	had = sigismember(&pending, SIGPIPE);
	if (had) {
		sigemptyset(&pipe_set);
		sigaddset(&pipe_set, SIGPIPE);
		sigtimedwait(&pipe_set, NULL, &zero);
		print_error("a write raised SIGPIPE: MSG_NOSIGNAL missing\n");
	}
	assert_int_equal(had, 0);
}

/*
 * A closed peer: direct_chunk fails and keeps nothing; a kept rest fails to flush
 * (direct_free then releases it). SIGPIPE is blocked throughout: with MSG_NOSIGNAL it
 * never becomes pending (without it the test reports it instead of dying).
 */
static void test_closed_peer(void **state)
{
	static const char frame[] = "data: x\n\n";
	struct direct d = { NULL, 0, 0 };
	sigset_t pipe_set, old;
	int fd[2];

	(void)state;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &pipe_set, &old), 0);
	assert_no_sigpipe();

	pair_open(fd);
	close(fd[1]);
	assert_int_equal(direct_chunk(&d, fd[0], frame, sizeof frame - 1), DIRECT_FAILED);
	assert_false(direct_busy(&d));
	assert_null(d.raw);
	assert_no_sigpipe();
	close(fd[0]);

	/* pending first, then the peer goes away */
	pair_open(fd);
	pair_small(fd);
	fill(fd);
	assert_int_equal(direct_chunk(&d, fd[0], frame, sizeof frame - 1), DIRECT_PENDING);
	close(fd[1]);
	assert_int_equal(direct_flush(&d, fd[0]), DIRECT_FAILED);
	assert_no_sigpipe();
	direct_free(&d);	/* ASan: the kept rest is released */
	assert_false(direct_busy(&d));
	assert_null(d.raw);
	close(fd[0]);

	/* a socket that is not one */
	assert_int_equal(direct_chunk(&d, -1, frame, sizeof frame - 1), DIRECT_FAILED);
	assert_null(d.raw);
	assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
}

/* direct_free on an idle struct (zeroed, or already freed) leaves it idle. */
static void test_free_idle(void **state)
{
	struct direct d = { NULL, 0, 0 };
	static const char frame[] = "data: y\n\n";
	int fd[2];

	(void)state;
	direct_free(&d);
	assert_null(d.raw);
	assert_int_equal(d.len, 0);
	assert_int_equal(d.off, 0);
	direct_free(&d);
	assert_false(direct_busy(&d));

	/* a kept rest dropped unsent: idle, and the struct works again */
	pair_open(fd);
	pair_small(fd);
	fill(fd);
	assert_int_equal(direct_chunk(&d, fd[0], frame, sizeof frame - 1), DIRECT_PENDING);
	assert_true(direct_busy(&d));
	direct_free(&d);
	assert_false(direct_busy(&d));
	assert_int_equal(d.len, 0);
	assert_int_equal(d.off, 0);
	direct_free(&d);
	assert_null(d.raw);
	close(fd[0]);
	close(fd[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chunk_bytes),
		cmocka_unit_test(test_pending_when_full),
		cmocka_unit_test(test_partial_send),
		cmocka_unit_test(test_head_then_chunk),
		cmocka_unit_test(test_closed_peer),
		cmocka_unit_test(test_free_idle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
