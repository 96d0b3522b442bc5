/*
 * Unit tests for the shared event (broker/event.c): event_create's frame is byte for
 * byte what sse_frame gives for the same id, type and payload (and what the SSE format
 * says, for a few literal cases), the session / exclude_session / origin strings are
 * copied into the event's own allocation (NULL stays NULL), seq and published_ns are
 * kept, and the reference count keeps the event alive until the last event_unref.
 * Run under SANITIZER=address, ASan reports any leak, double free or read past the
 * allocation; without it a malloc statistics check sees the last unref free.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "sse.h"

/* A byte string with an explicit length (payloads may hold NUL). */
#define BYTES(s) s, sizeof(s) - 1

/* Asserts that buf[0..len) equals want[0..wantlen), printing both on failure. */
static void assert_bytes(const char *buf, size_t len, const char *want, size_t wantlen)
{
	if (len != wantlen || memcmp(buf, want, len) != 0) {
		print_error("got  (%zu) \"%.*s\"\nwant (%zu) \"%.*s\"\n", len, (int)len, buf,
		    wantlen, (int)wantlen, want);
		fail();
	}
}

/* Creates the event for req and asserts its frame is exactly sse_frame's for the same inputs. */
static struct event *create_checked(const struct publish_req *req, uint64_t seq, const char *id,
    int64_t ns)
{
	size_t size = sse_frame_size(id, req->type, req->data, req->len), n;
	char *want = malloc(size ? size : 1);
	struct event *ev;

	assert_non_null(want);
	n = sse_frame(want, id, req->type, req->data, req->len);
	assert_int_equal(n, size);
	ev = event_create(req, seq, id, ns);
	assert_non_null(ev);
	assert_bytes(ev->frame, ev->len, want, n);
	assert_int_equal(ev->seq, seq);
	assert_int_equal(ev->published_ns, ns);
	assert_int_equal(atomic_load(&ev->refs), 1);
	free(want);
	return ev;
}

struct frame_case {
	const char *id;
	const char *type;
	const char *data;
	size_t len;
	const char *want;	/* the frame the SSE format asks for */
	size_t wantlen;
};

static const struct frame_case frame_cases[] = {
	{ "42", NULL, BYTES("hello"), BYTES("id: 42\ndata: hello\n\n") },
	{ "42", "message", BYTES("hello"), BYTES("id: 42\ndata: hello\n\n") },
	{ "42", "change", BYTES("hello"), BYTES("id: 42\nevent: change\ndata: hello\n\n") },
	{ NULL, NULL, BYTES("hello"), BYTES("data: hello\n\n") },
	{ "", "change", BYTES("x"), BYTES("event: change\ndata: x\n\n") },
	{ "7", NULL, BYTES("a\nb"), BYTES("id: 7\ndata: a\ndata: b\n\n") },
	{ "7", "change", BYTES("a\r\nb"), BYTES("id: 7\nevent: change\ndata: a\ndata: b\n\n") },
	{ "7", "message", BYTES("a\rb"), BYTES("id: 7\ndata: a\ndata: b\n\n") },
	{ "7", NULL, BYTES("a\r\n\rb\n"), BYTES("id: 7\ndata: a\ndata: \ndata: b\ndata: \n\n") },
	{ "7", NULL, BYTES(""), BYTES("id: 7\ndata: \n\n") },
	{ NULL, "change", BYTES(""), BYTES("event: change\ndata: \n\n") },
	{ "18446744073709551615", "change", BYTES("a\0b"),
	  BYTES("id: 18446744073709551615\nevent: change\ndata: a\0b\n\n") },
};

/* Every case: sse_frame's bytes, and the literal frame. */
static void test_frame_matches_sse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof frame_cases / sizeof frame_cases[0]; i++) {
		const struct frame_case *c = &frame_cases[i];
		struct publish_req req = { .channel = "ch", .type = c->type, .data = c->data,
		    .len = c->len };
		struct event *ev = create_checked(&req, 1000 + i, c->id, (int64_t)i);

		assert_bytes(ev->frame, ev->len, c->want, c->wantlen);
		assert_null(ev->session);
		assert_null(ev->exclude_session);
		assert_null(ev->origin);
		event_unref(ev);
	}
}

/* len bounds the payload, not a NUL; the payload is copied, not borrowed. */
static void test_frame_copies_len_bytes(void **state)
{
	char data[] = "abc\ndef";
	struct publish_req req = { .channel = "ch", .type = "change", .data = data, .len = 3 };
	char id[] = "9";
	struct event *ev = create_checked(&req, 9, id, 0);

	(void)state;
	memset(data, 'Z', sizeof data - 1);
	id[0] = '8';
	assert_bytes(ev->frame, ev->len, BYTES("id: 9\nevent: change\ndata: abc\n\n"));
	event_unref(ev);

	/* a long multi-line payload, every line-ending form */
	{
		enum { LINES = 2000 };
		char *big = malloc(LINES * 3);
		size_t len = 0;
		int i;

		assert_non_null(big);
		for (i = 0; i < LINES; i++) {
			big[len++] = (char)('a' + i % 26);
			if (i % 3 == 0)
				big[len++] = '\n';
			else if (i % 3 == 1) {
				big[len++] = '\r';
				big[len++] = '\n';
			} else
				big[len++] = '\r';
		}
		req.data = big;
		req.len = len;
		req.type = NULL;
		ev = create_checked(&req, 1, "123456789", 5);
		assert_int_equal(ev->len, strlen("id: 123456789\n") + LINES * 8 + 7 + 1);
		free(big);
		event_unref(ev);
	}
}

/* Returns whether p[0..n) lies inside [lo, hi). */
static int inside(const char *p, size_t n, const char *lo, const char *hi)
{
	return p >= lo && p + n <= hi;
}

/*
 * All eight combinations of session / exclude_session / origin set or NULL: each set
 * string is an equal copy inside the event's allocation, after the frame and not
 * overlapping the others, and survives the caller's buffers changing; NULL stays NULL.
 */
static void test_filter_strings(void **state)
{
	unsigned mask;

	(void)state;
	for (mask = 0; mask < 8; mask++) {
		char session[] = "sess-0123456789", exclude[] = "other-session", origin[] = "";
		struct publish_req req = {
			.channel = "ch", .type = "change", .data = "x\ny", .len = 3,
			.session = mask & 1 ? session : NULL,
			.exclude_session = mask & 2 ? exclude : NULL,
			.origin = mask & 4 ? origin : NULL,
		};
		struct event *ev = create_checked(&req, 77, "77", 1234);
		const char *lo = ev->frame + ev->len, *hi = lo;
		const char *strs[3] = { ev->session, ev->exclude_session, ev->origin };
		const char *want[3] = { "sess-0123456789", "other-session", "" };
		int i, j;

		for (i = 0; i < 3; i++)
			if (mask & (1u << i))
				hi += strlen(want[i]) + 1;
		/* the allocation is the struct, the frame and the strings, nothing more */
		for (i = 0; i < 3; i++) {
			if (!(mask & (1u << i))) {
				assert_null(strs[i]);
				continue;
			}
			assert_non_null(strs[i]);
			assert_string_equal(strs[i], want[i]);
			if (!inside(strs[i], strlen(want[i]) + 1, lo, hi)) {
				print_error("mask %u: string %d at %p outside the event's tail\n", mask,
				    i, (const void *)strs[i]);
				fail();
			}
			for (j = 0; j < i; j++)
				if (strs[j] != NULL)
					assert_true(strs[j] + strlen(strs[j]) < strs[i] ||
					    strs[i] + strlen(strs[i]) < strs[j]);
		}
		/* copies, not the caller's buffers */
		memset(session, 'X', sizeof session - 1);
		memset(exclude, 'Y', sizeof exclude - 1);
		for (i = 0; i < 3; i++)
			if (strs[i] != NULL)
				assert_string_equal(strs[i], want[i]);
		assert_bytes(ev->frame, ev->len, BYTES("id: 77\nevent: change\ndata: x\ndata: y\n\n"));
		event_unref(ev);
	}
}

/* seq and published_ns are kept whatever their values; the channel is not needed. */
static void test_seq_and_time(void **state)
{
	static const uint64_t seqs[] = { 0, 1, UINT64_MAX };
	static const int64_t times[] = { INT64_MIN, -1, 0, INT64_MAX };
	size_t i, j;

	(void)state;
	for (i = 0; i < 3; i++) {
		for (j = 0; j < 4; j++) {
			struct publish_req req = { .channel = NULL, .data = "d", .len = 1 };
			struct event *ev = create_checked(&req, seqs[i], "1", times[j]);

			assert_true(ev->seq == seqs[i]);
			assert_true(ev->published_ns == times[j]);
			event_unref(ev);
		}
	}
}

/* Bytes the allocator holds for the program (0 when an interposed allocator hides it). */
static size_t heap_in_use(void)
{
	return mallinfo2().uordblks;
}

/*
 * Holders keep the event alive until the last unref, in any order: its bytes stay
 * readable (ASan would flag a use after free), the count tracks the holders, and the
 * last unref releases the allocation (seen by ASan's leak check, or the heap figure).
 */
static void test_refcount(void **state)
{
	/* 4 KiB: beyond glibc's per-thread cache and below its mmap threshold, so a free
	 * shows in heap_in_use() */
	enum { PAYLOAD = 4096 };
	char *payload = malloc(PAYLOAD), *want = malloc(PAYLOAD + 32);
	struct publish_req req = { .channel = "ch", .type = "change", .len = PAYLOAD,
	    .session = "s", .origin = "o" };
	size_t before, during, wantlen;
	struct event *ev, *held[5];
	int i;

	(void)state;
	assert_non_null(payload);
	assert_non_null(want);
	memset(payload, 'p', PAYLOAD);
	req.data = payload;
	wantlen = (size_t)sprintf(want, "id: 5\nevent: change\ndata: %.*s\n\n", PAYLOAD, payload);
	before = heap_in_use();
	ev = create_checked(&req, 5, "5", 50);
	during = heap_in_use();
	for (i = 0; i < 5; i++) {
		held[i] = event_ref(ev);
		assert_ptr_equal(held[i], ev);
		assert_int_equal(atomic_load(&ev->refs), 2 + i);
	}
	event_unref(ev);	/* the creator's reference goes first */
	for (i = 4; i > 0; i--) {
		event_unref(held[i]);
		assert_int_equal(atomic_load(&held[0]->refs), i);
		assert_bytes(held[0]->frame, held[0]->len, want, wantlen);
		assert_string_equal(held[0]->session, "s");
		assert_string_equal(held[0]->origin, "o");
		assert_int_equal(heap_in_use(), during);	/* nothing freed yet */
	}
	event_unref(held[0]);
	/* glibc's figure; under ASan both are 0 and the leak check at exit does this job */
	if (during != before)
		assert_int_equal(heap_in_use(), before);
	free(want);
	free(payload);
}

/* event_unref(NULL) does nothing (and does not crash). */
static void test_unref_null(void **state)
{
	size_t before = heap_in_use();

	(void)state;
	event_unref(NULL);
	event_unref(NULL);
	assert_int_equal(heap_in_use(), before);
}

enum { REF_THREADS = 4, REF_ROUNDS = 100000 };

/* Takes and drops a reference REF_ROUNDS times. */
static void *ref_churn(void *arg)
{
	struct event *ev = arg;
	int i;

	for (i = 0; i < REF_ROUNDS; i++)
		event_unref(event_ref(ev));
	return NULL;
}

/* Concurrent holders (publisher threads, streams) never lose or add a count. */
static void test_refcount_threads(void **state)
{
	struct publish_req req = { .channel = "ch", .data = "x", .len = 1 };
	struct event *ev = create_checked(&req, 1, "1", 1);
	pthread_t t[REF_THREADS];
	int i;

	(void)state;
	for (i = 0; i < REF_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, ref_churn, ev), 0);
	for (i = 0; i < REF_THREADS; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	assert_int_equal(atomic_load(&ev->refs), 1);
	assert_bytes(ev->frame, ev->len, BYTES("id: 1\ndata: x\n\n"));
	event_unref(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_matches_sse),
		cmocka_unit_test(test_frame_copies_len_bytes),
		cmocka_unit_test(test_filter_strings),
		cmocka_unit_test(test_seq_and_time),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_unref_null),
		cmocka_unit_test(test_refcount_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
