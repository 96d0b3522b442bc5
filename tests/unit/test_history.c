/*
 * Unit tests for the per-channel history ring (broker/history.c): growth by doubling up
 * to the limit, eviction by count (floor_seq follows the evicted event), history_get
 * bounds, expiry by publish time, trimming, history_after on gapped seqs, a shrinking
 * and a growing limit, and a randomised comparison with a simple model. Events are
 * malloc'ed like the broker does; ASan's leak check verifies evictions and
 * history_free release them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

/* A heap event like the broker's: the frame holds "id: SEQ\ndata: x\n\n". */
static struct event *ev_new(uint64_t seq, int64_t published_ns)
{
	char frame[64];
	int n = snprintf(frame, sizeof frame, "id: %llu\ndata: x\n\n", (unsigned long long)seq);
	struct event *ev;

	assert_true(n > 0 && (size_t)n < sizeof frame);
	ev = malloc(sizeof *ev + (size_t)n + 1);
	assert_non_null(ev);
	atomic_init(&ev->refs, 1);
	ev->seq = seq;
	ev->published_ns = published_ns;
	ev->session = ev->exclude_session = ev->origin = NULL;
	ev->len = (size_t)n;
	memcpy(ev->frame, frame, (size_t)n + 1);
	return ev;
}

/* Pushes seq (published at seq * 1000 ns) and asserts success. */
static void push(struct history *h, uint64_t seq, size_t limit)
{
	assert_int_equal(history_push(h, ev_new(seq, (int64_t)seq * 1000), limit), 0);
}

/*
 * Asserts the whole observable state: first/next indexes, floor/last seqs, and that
 * exactly the indexes [first, next) resolve, to events with the given seqs in order.
 */
static void check(const struct history *h, uint64_t first, uint64_t next, uint64_t floor_seq,
    uint64_t last_seq, const uint64_t *seqs)
{
	uint64_t i;

	assert_int_equal(h->first, first);
	assert_int_equal(h->next, next);
	assert_int_equal(history_count(h), next - first);
	assert_int_equal(h->floor_seq, floor_seq);
	assert_int_equal(h->last_seq, last_seq);
	if (first > 0)
		assert_null(history_get(h, first - 1));
	assert_null(history_get(h, next));
	assert_null(history_get(h, next + 1));
	assert_null(history_get(h, UINT64_MAX));
	for (i = first; i < next; i++) {
		struct event *ev = history_get(h, i);
		char want[64];

		assert_non_null(ev);
		assert_int_equal(ev->seq, seqs[i - first]);
		snprintf(want, sizeof want, "id: %llu\n", (unsigned long long)seqs[i - first]);
		assert_memory_equal(ev->frame, want, strlen(want));
	}
}

static void test_init_empty(void **state)
{
	struct history h;
	uint64_t idx = 12345;

	(void)state;
	history_init(&h, 77);
	assert_null(h.ring);
	assert_int_equal(h.cap, 0);
	check(&h, 0, 0, 77, 77, NULL);
	assert_null(history_get(&h, 0));
	assert_int_equal(history_after(&h, 76, &idx), -1);
	assert_int_equal(history_after(&h, 0, &idx), -1);
	assert_int_equal(history_after(&h, 77, &idx), 0);
	assert_int_equal(idx, 0);
	idx = 12345;
	assert_int_equal(history_after(&h, 500, &idx), 0);
	assert_int_equal(idx, 0);
	assert_int_equal(history_expire(&h, INT64_MAX), 0);
	assert_int_equal(history_trim(&h, 0), 0);
	check(&h, 0, 0, 77, 77, NULL);
	history_free(&h);
	assert_null(h.ring);
	assert_int_equal(h.cap, 0);
}

/* Expected capacity after k pushes with a fixed limit: 4, 8, 16, ... clamped to limit. */
static uint32_t want_cap(size_t k, size_t limit)
{
	size_t cap = 4;

	if (k == 0)
		return 0;
	while (cap < k && cap < limit)
		cap *= 2;
	return (uint32_t)(cap < limit ? cap : limit);
}

/* From empty through each doubling up to the limit, then steady at the limit. */
static void test_growth(void **state)
{
	static const size_t limits[] = { 1, 2, 3, 4, 5, 8, 9, 16, 100 };
	size_t li;

	(void)state;
	for (li = 0; li < sizeof limits / sizeof limits[0]; li++) {
		size_t limit = limits[li], k, total = limit * 2 + 3;
		uint64_t *seqs = malloc(sizeof *seqs * total);
		struct history h;

		assert_non_null(seqs);
		history_init(&h, 5);
		for (k = 1; k <= total; k++) {
			size_t kept = k < limit ? k : limit;
			uint64_t first = k - kept;

			seqs[k - 1] = 10 + 3 * (k - 1) + (k % 2);	/* gapped, increasing */
			push(&h, seqs[k - 1], limit);
			if (h.cap != want_cap(k, limit)) {
				print_error("limit %zu after %zu pushes: cap %u, want %u\n", limit,
				    k, h.cap, want_cap(k, limit));
				fail();
			}
			check(&h, first, k, first ? seqs[first - 1] : 5, seqs[k - 1],
			    seqs + first);
		}
		history_free(&h);
		assert_null(h.ring);
		free(seqs);
	}
}

/* Count eviction: the evicted event's seq becomes floor_seq, indexes keep counting. */
static void test_eviction_by_count(void **state)
{
	static const uint64_t seqs[] = { 10, 13, 20, 21, 35, 36, 50 };
	struct history h;

	(void)state;
	history_init(&h, 2);
	push(&h, 10, 3);
	push(&h, 13, 3);
	push(&h, 20, 3);
	check(&h, 0, 3, 2, 20, seqs);
	push(&h, 21, 3);
	check(&h, 1, 4, 10, 21, seqs + 1);
	push(&h, 35, 3);
	check(&h, 2, 5, 13, 35, seqs + 2);
	push(&h, 36, 3);
	push(&h, 50, 3);
	check(&h, 4, 7, 21, 50, seqs + 4);
	assert_int_equal(h.cap, 3);
	history_free(&h);
}

/* Lookups only succeed for retained indexes, including across the ring's wrap. */
static void test_get_bounds(void **state)
{
	struct history h;
	uint64_t i;

	(void)state;
	history_init(&h, 0);
	assert_null(history_get(&h, 0));
	assert_null(history_get(&h, 1));
	push(&h, 10, 4);
	assert_non_null(history_get(&h, 0));
	assert_int_equal(history_get(&h, 0)->seq, 10);
	assert_null(history_get(&h, 1));
	for (i = 1; i < 11; i++)
		push(&h, 10 + 7 * i, 4);	/* indexes 0..10, 7..10 retained */
	assert_null(history_get(&h, 0));
	assert_null(history_get(&h, 6));
	assert_int_equal(history_get(&h, 7)->seq, 59);
	assert_int_equal(history_get(&h, 8)->seq, 66);
	assert_int_equal(history_get(&h, 9)->seq, 73);
	assert_int_equal(history_get(&h, 10)->seq, 80);
	assert_null(history_get(&h, 11));
	/* index 11 % 4 == 7 % 4: a slot reused must not leak through a wrong index */
	assert_null(history_get(&h, 3));
	assert_null(history_get(&h, 15));
	assert_null(history_get(&h, UINT64_MAX));
	history_free(&h);
}

/* Age eviction: strictly-before cutoff is dropped, floor follows, order preserved. */
static void test_expire(void **state)
{
	static const uint64_t seqs[] = { 10, 13, 20, 27, 30 };
	static const int64_t times[] = { 100, 200, 200, 300, 450 };
	struct history h;
	size_t i;

	(void)state;
	history_init(&h, 1);
	for (i = 0; i < 5; i++)
		assert_int_equal(history_push(&h, ev_new(seqs[i], times[i]), 16), 0);
	assert_int_equal(history_expire(&h, 0), 0);
	assert_int_equal(history_expire(&h, 100), 0);	/* published at 100 is not before 100 */
	check(&h, 0, 5, 1, 30, seqs);
	assert_int_equal(history_expire(&h, 101), 1);
	check(&h, 1, 5, 10, 30, seqs + 1);
	assert_int_equal(history_expire(&h, 200), 0);
	assert_int_equal(history_expire(&h, 201), 2);	/* both events at 200 */
	check(&h, 3, 5, 20, 30, seqs + 3);
	assert_int_equal(history_expire(&h, 449), 1);
	check(&h, 4, 5, 27, 30, seqs + 4);
	assert_int_equal(history_expire(&h, INT64_MAX), 1);
	check(&h, 5, 5, 30, 30, NULL);	/* empty: floor == last */
	assert_int_equal(history_expire(&h, INT64_MAX), 0);

	/* pushing after the ring emptied continues the indexes */
	assert_int_equal(history_push(&h, ev_new(44, 500), 16), 0);
	{
		static const uint64_t after[] = { 44 };
		check(&h, 5, 6, 30, 44, after);
	}
	/* expiry stops at the first young event even if an older one follows it */
	assert_int_equal(history_push(&h, ev_new(45, 400), 16), 0);
	assert_int_equal(history_expire(&h, 450), 0);
	assert_int_equal(history_count(&h), 2);
	history_free(&h);
}

/* Trimming by count to a smaller size, to the same size and to zero. */
static void test_trim(void **state)
{
	static const uint64_t seqs[] = { 10, 13, 20, 27, 30, 41 };
	struct history h;
	size_t i;

	(void)state;
	history_init(&h, 3);
	for (i = 0; i < 6; i++)
		push(&h, seqs[i], 8);
	assert_int_equal(history_trim(&h, 6), 0);
	assert_int_equal(history_trim(&h, 100), 0);
	check(&h, 0, 6, 3, 41, seqs);
	assert_int_equal(history_trim(&h, 4), 2);
	check(&h, 2, 6, 13, 41, seqs + 2);
	assert_int_equal(history_trim(&h, 1), 3);
	check(&h, 5, 6, 30, 41, seqs + 5);
	assert_int_equal(history_trim(&h, 0), 1);
	check(&h, 6, 6, 41, 41, NULL);
	assert_int_equal(history_trim(&h, 0), 0);
	/* after trimming, pushes still work and still respect the limit */
	push(&h, 50, 2);
	push(&h, 51, 2);
	push(&h, 52, 2);
	{
		static const uint64_t want[] = { 51, 52 };
		check(&h, 7, 9, 50, 52, want);
	}
	history_free(&h);
}

struct after_case {
	uint64_t seq;
	int rc;
	uint64_t index;
};

static void check_after(const struct history *h, const struct after_case *cases, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint64_t idx = 0xdeadbeef;
		int rc = history_after(h, cases[i].seq, &idx);

		if (rc != cases[i].rc || (rc == 0 && idx != cases[i].index)) {
			print_error("history_after(%llu): rc %d index %llu, want rc %d index %llu\n",
			    (unsigned long long)cases[i].seq, rc, (unsigned long long)idx,
			    cases[i].rc, (unsigned long long)cases[i].index);
			fail();
		}
	}
}

/* Resume points on gapped seqs, before and after eviction. */
static void test_after(void **state)
{
	/* seqs 10 13 20 27 30 at indexes 0..4, floor 5 */
	static const struct after_case full[] = {
		{ 0, -1, 0 }, { 4, -1, 0 },
		{ 5, 0, 0 },		/* == floor: first retained */
		{ 9, 0, 0 }, { 10, 0, 1 }, { 11, 0, 1 }, { 12, 0, 1 }, { 13, 0, 2 },
		{ 14, 0, 2 }, { 19, 0, 2 }, { 20, 0, 3 }, { 21, 0, 3 }, { 26, 0, 3 },
		{ 27, 0, 4 }, { 29, 0, 4 },
		{ 30, 0, 5 },		/* == last: next */
		{ 31, 0, 5 }, { 1000, 0, 5 }, { UINT64_MAX, 0, 5 },
	};
	/* after pushing 41, 50 with limit 4: 27 30 41 50 at indexes 3..6, floor 20 */
	static const struct after_case evicted[] = {
		{ 5, -1, 0 }, { 10, -1, 0 }, { 13, -1, 0 }, { 19, -1, 0 },
		{ 20, 0, 3 },		/* == floor (the evicted event's seq) */
		{ 21, 0, 3 }, { 26, 0, 3 }, { 27, 0, 4 }, { 28, 0, 4 }, { 30, 0, 5 },
		{ 31, 0, 5 }, { 40, 0, 5 }, { 41, 0, 6 }, { 49, 0, 6 },
		{ 50, 0, 7 }, { 51, 0, 7 },
	};
	/* after trimming to 0: empty, floor == last == 50 */
	static const struct after_case empty[] = {
		{ 41, -1, 0 }, { 49, -1, 0 }, { 50, 0, 7 }, { 51, 0, 7 },
	};
	static const uint64_t seqs[] = { 10, 13, 20, 27, 30, 41, 50 };
	struct history h;
	size_t i;

	(void)state;
	history_init(&h, 5);
	for (i = 0; i < 5; i++)
		push(&h, seqs[i], 4 + (i == 4));	/* limit 5 for the fifth push */
	check(&h, 0, 5, 5, 30, seqs);
	check_after(&h, full, sizeof full / sizeof full[0]);
	push(&h, 41, 4);
	push(&h, 50, 4);
	check(&h, 3, 7, 20, 50, seqs + 3);
	check_after(&h, evicted, sizeof evicted / sizeof evicted[0]);
	history_trim(&h, 0);
	check_after(&h, empty, sizeof empty / sizeof empty[0]);
	history_free(&h);
}

/* One event: all three regions (below floor, the event, after it). */
static void test_after_single(void **state)
{
	static const struct after_case one[] = {
		{ 99, -1, 0 }, { 100, 0, 0 }, { 101, 0, 0 }, { 106, 0, 0 }, { 107, 0, 1 },
		{ 108, 0, 1 },
	};
	struct history h;

	(void)state;
	history_init(&h, 100);
	push(&h, 107, 1);
	check_after(&h, one, sizeof one / sizeof one[0]);
	history_free(&h);
}

/* A smaller limit on a later push evicts down to it; a larger one grows again. */
static void test_shrinking_limit(void **state)
{
	uint64_t seqs[40];
	struct history h;
	size_t i;

	(void)state;
	for (i = 0; i < 40; i++)
		seqs[i] = 100 + i * 5 + (i % 3);
	history_init(&h, 50);
	for (i = 0; i < 8; i++)
		push(&h, seqs[i], 8);
	assert_int_equal(h.cap, 8);
	check(&h, 0, 8, 50, seqs[7], seqs);

	push(&h, seqs[8], 3);	/* 9 events offered, 3 kept: indexes 6..8 */
	check(&h, 6, 9, seqs[5], seqs[8], seqs + 6);
	push(&h, seqs[9], 3);
	check(&h, 7, 10, seqs[6], seqs[9], seqs + 7);

	push(&h, seqs[10], 1);	/* down to a single event */
	check(&h, 10, 11, seqs[9], seqs[10], seqs + 10);

	for (i = 11; i < 20; i++)	/* back up to 6: count climbs to 6 and stays */
		push(&h, seqs[i], 6);
	check(&h, 14, 20, seqs[13], seqs[19], seqs + 14);

	for (i = 20; i < 40; i++)	/* then up to 12, growing the ring with data in it */
		push(&h, seqs[i], 12);
	assert_true(h.cap >= 12);
	check(&h, 28, 40, seqs[27], seqs[39], seqs + 28);
	history_free(&h);
}

/* Growing the ring while its contents wrap keeps every index at its event. */
static void test_grow_after_wrap(void **state)
{
	uint64_t seqs[32];
	struct history h;
	size_t i;

	(void)state;
	for (i = 0; i < 32; i++)
		seqs[i] = 1000 + i * i;	/* gaps widen */
	history_init(&h, 999);
	for (i = 0; i < 7; i++)
		push(&h, seqs[i], 4);	/* cap 4, first 3: the ring has wrapped */
	assert_int_equal(h.cap, 4);
	check(&h, 3, 7, seqs[2], seqs[6], seqs + 3);
	push(&h, seqs[7], 32);	/* grows 4 -> 8 holding indexes 3..6 */
	assert_int_equal(h.cap, 8);
	check(&h, 3, 8, seqs[2], seqs[7], seqs + 3);
	for (i = 8; i < 32; i++)
		push(&h, seqs[i], 32);
	check(&h, 3, 32, seqs[2], seqs[31], seqs + 3);
	assert_int_equal(h.cap, 32);
	history_free(&h);
}

/* history_free releases events wherever they sit (ASan reports any leak at exit). */
static void test_free_all(void **state)
{
	struct history h;
	size_t i;

	(void)state;
	history_init(&h, 0);
	for (i = 0; i < 37; i++)
		push(&h, 1 + i * 2, 10);	/* wrapped, evicted */
	assert_int_equal(history_expire(&h, 60 * 1000), 3);	/* seqs 55, 57, 59 */
	assert_int_equal(history_count(&h), 10 - 3);
	history_free(&h);
	assert_null(h.ring);
	assert_int_equal(h.cap, 0);
	assert_int_equal(history_count(&h), 0);
	assert_null(history_get(&h, h.first));

	/* a freed history can be initialised and used again */
	history_init(&h, 0);
	push(&h, 1, 2);
	history_free(&h);
}

/* ---- randomised comparison with a trivial model ---- */

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static uint32_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

enum { MODEL_MAX = 4096 };

struct model {
	uint64_t seq[MODEL_MAX];	/* by index */
	int64_t ns[MODEL_MAX];
	uint64_t first, next, floor_seq, last_seq;
};

static void model_drop(struct model *m)
{
	m->floor_seq = m->seq[m->first++];
}

static void test_random_model(void **state)
{
	struct model *m = calloc(1, sizeof *m);
	struct history h;
	uint64_t seq = 1000;
	int64_t now = 0;
	int step;

	(void)state;
	assert_non_null(m);
	history_init(&h, seq);
	m->floor_seq = m->last_seq = seq;
	for (step = 0; step < 3000 && m->next < MODEL_MAX; step++) {
		uint32_t op = rng() % 100;

		seq += 1 + rng() % 4;	/* other channels take seqs too */
		now += rng() % 50;
		if (op < 80) {
			size_t limit = 1 + rng() % (rng() % 4 == 0 ? 3 : 40);
			assert_int_equal(history_push(&h, ev_new(seq, now), limit), 0);
			m->seq[m->next] = seq;
			m->ns[m->next++] = now;
			m->last_seq = seq;
			while (m->next - m->first > limit)
				model_drop(m);
			assert_true(h.cap >= history_count(&h));
			assert_true(h.cap <= 64);
		} else if (op < 90) {
			int64_t cutoff = now - (int64_t)(rng() % 400);
			size_t n = 0;
			while (m->first < m->next && m->ns[m->first] < cutoff) {
				model_drop(m);
				n++;
			}
			assert_int_equal(history_expire(&h, cutoff), n);
		} else {
			size_t limit = rng() % 12, n = 0;
			while (m->next - m->first > limit) {
				model_drop(m);
				n++;
			}
			assert_int_equal(history_trim(&h, limit), n);
		}
		check(&h, m->first, m->next, m->floor_seq, m->last_seq, m->seq + m->first);
		/* resume points for every seq around the retained range */
		for (uint64_t s = m->floor_seq > 3 ? m->floor_seq - 3 : 0; s <= seq + 2; s++) {
			uint64_t idx = 0, want = m->first;
			int rc = history_after(&h, s, &idx);

			if (s < m->floor_seq) {
				assert_int_equal(rc, -1);
				continue;
			}
			while (want < m->next && m->seq[want] <= s)
				want++;
			assert_int_equal(rc, 0);
			if (idx != want) {
				print_error("step %d: after(%llu) = %llu, want %llu\n", step,
				    (unsigned long long)s, (unsigned long long)idx,
				    (unsigned long long)want);
				fail();
			}
		}
	}
	history_free(&h);
	free(m);
}

/* A stream's reference keeps an evicted event readable; the last unref frees it (ASan). */
static void test_ref_survives_eviction(void **state)
{
	struct history h;
	struct event *held;

	(void)state;
	history_init(&h, 0);
	push(&h, 10, 2);
	held = event_ref(history_get(&h, 0));
	push(&h, 11, 2);
	push(&h, 12, 2);	/* evicts seq 10 */
	assert_null(history_get(&h, 0));
	assert_int_equal(h.floor_seq, 10);
	assert_int_equal(held->seq, 10);
	assert_memory_equal(held->frame, "id: 10\n", 7);
	event_unref(held);
	history_free(&h);
}

/* ---- history_clear: indices never go back ---- */

/* Asserts the state right after history_clear(h, floor) on a ring whose next was next. */
static void check_cleared(struct history *h, uint64_t next, uint64_t floor)
{
	uint64_t idx, i;

	check(h, next, next, floor, floor, NULL);
	assert_null(h->ring);
	assert_int_equal(h->cap, 0);
	for (i = 0; i <= next + 1; i++)
		assert_null(history_get(h, i));
	if (floor > 0)
		assert_int_equal(history_after(h, floor - 1, &idx), -1);
	if (floor > 1)
		assert_int_equal(history_after(h, 0, &idx), -1);
	idx = 0xdeadbeef;
	assert_int_equal(history_after(h, floor, &idx), 0);
	assert_int_equal(idx, next);
	if (floor < UINT64_MAX) {
		idx = 0xdeadbeef;
		assert_int_equal(history_after(h, floor + 1, &idx), 0);
		assert_int_equal(idx, next);
	}
	idx = 0xdeadbeef;
	assert_int_equal(history_after(h, UINT64_MAX, &idx), 0);
	assert_int_equal(idx, next);
	assert_int_equal(history_expire(h, INT64_MAX), 0);
	assert_int_equal(history_trim(h, 0), 0);
}

/*
 * A clear drops every event (ASan: their references released) but keeps next, so a
 * cursor taken before it is not past the ring; floor and last become the given floor;
 * pushes afterwards continue the indices.
 */
static void test_clear(void **state)
{
	static const uint64_t after_clear[] = { 501, 502, 503 };
	struct history h;
	uint64_t cursor, i;

	(void)state;
	history_init(&h, 3);
	for (i = 0; i < 7; i++)
		push(&h, 10 + i, 4);	/* indexes 3..6 retained */
	cursor = h.next;	/* a stream that read everything */
	history_clear(&h, 500);
	check_cleared(&h, 7, 500);
	assert_true(cursor <= h.next);
	for (i = 0; i < 3; i++)
		push(&h, after_clear[i], 4);
	check(&h, 7, 10, 500, 503, after_clear);
	assert_true(h.cap >= 3);
	assert_int_equal(history_get(&h, cursor)->seq, 501);	/* the old cursor reads on */

	/* a lower floor (Redis restarted empty: floor 0) is taken as given */
	history_clear(&h, 0);
	check_cleared(&h, 10, 0);
	push(&h, 1, 2);
	push(&h, 2, 2);
	push(&h, 3, 2);
	{
		static const uint64_t want[] = { 2, 3 };
		check(&h, 11, 13, 1, 3, want);
	}

	/* clearing an empty ring, twice, and with the largest floor */
	history_trim(&h, 0);
	history_clear(&h, 40);
	check_cleared(&h, 13, 40);
	history_clear(&h, 40);
	check_cleared(&h, 13, 40);
	history_clear(&h, UINT64_MAX);
	check_cleared(&h, 13, UINT64_MAX);
	history_free(&h);
	check(&h, 13, 13, UINT64_MAX, UINT64_MAX, NULL);	/* free after clear: no double free */

	/* a fresh history cleared before any push */
	history_init(&h, 8);
	history_clear(&h, 9);
	check_cleared(&h, 0, 9);
	push(&h, 10, 1);
	{
		static const uint64_t want[] = { 10 };
		check(&h, 0, 1, 9, 10, want);
	}
	history_free(&h);
}

/* A stream's reference keeps an event readable across a clear (ASan checks the free). */
static void test_clear_keeps_held_ref(void **state)
{
	struct history h;
	struct event *held;

	(void)state;
	history_init(&h, 0);
	push(&h, 10, 8);
	push(&h, 11, 8);
	held = event_ref(history_get(&h, 1));
	history_clear(&h, 20);
	check_cleared(&h, 2, 20);
	assert_int_equal(held->seq, 11);
	assert_memory_equal(held->frame, "id: 11\n", 7);
	event_unref(held);
	history_free(&h);
}

/*
 * Pushes, expiries, trims and clears at random, checked after every operation
 * against a model: next and first never decrease, first <= next, cursors taken before
 * a clear stay <= next, a clear empties the ring at its floor, and history_after
 * answers every seq around the retained range as the model does.
 */
static void test_random_clear_model(void **state)
{
	enum { STEPS = 4000, CURSORS = 8 };
	struct model *m = calloc(1, sizeof *m);
	uint64_t cursors[CURSORS] = { 0 };
	uint64_t seq = 50, prev_first = 0, prev_next = 0;
	int64_t now = 0;
	struct history h;
	int step, clears = 0, pushes = 0;

	(void)state;
	assert_non_null(m);
	rng_state = 0x13198a2e03707344ULL;
	history_init(&h, seq);
	m->floor_seq = m->last_seq = seq;
	for (step = 0; step < STEPS; step++) {
		uint32_t op = rng() % 100;
		uint64_t s, lo;
		int c;

		seq += 1 + rng() % 3;
		now += rng() % 40;
		if (op < 70 && m->next < MODEL_MAX) {
			size_t limit = 1 + rng() % 20;
			assert_int_equal(history_push(&h, ev_new(seq, now), limit), 0);
			m->seq[m->next] = seq;
			m->ns[m->next++] = now;
			m->last_seq = seq;
			while (m->next - m->first > limit)
				model_drop(m);
			pushes++;
		} else if (op < 80) {
			int64_t cutoff = now - (int64_t)(rng() % 300);
			size_t n = 0;
			while (m->first < m->next && m->ns[m->first] < cutoff) {
				model_drop(m);
				n++;
			}
			assert_int_equal(history_expire(&h, cutoff), n);
		} else if (op < 88) {
			size_t limit = rng() % 8, n = 0;
			while (m->next - m->first > limit) {
				model_drop(m);
				n++;
			}
			assert_int_equal(history_trim(&h, limit), n);
		} else {
			/* the floor: the last seq, a jump ahead (a resync), or 0 (Redis emptied) */
			uint32_t kind = rng() % 3;
			uint64_t floor = kind == 0 ? m->last_seq : kind == 1 ? seq + rng() % 50 : 0;

			for (c = 0; c < CURSORS; c++)	/* streams anywhere in [first, next] */
				cursors[c] = m->first + rng() % (m->next - m->first + 1);
			history_clear(&h, floor);
			m->first = m->next;
			m->floor_seq = m->last_seq = floor;
			if (floor > seq)
				seq = floor;	/* later seqs are above the floor */
			check_cleared(&h, m->next, floor);
			for (c = 0; c < CURSORS; c++)
				assert_true(cursors[c] <= h.next);
			clears++;
		}
		assert_true(h.next >= prev_next);
		assert_true(h.first >= prev_first);
		assert_true(h.first <= h.next);
		prev_next = h.next;
		prev_first = h.first;
		for (c = 0; c < CURSORS; c++)
			assert_true(cursors[c] <= h.next);
		check(&h, m->first, m->next, m->floor_seq, m->last_seq, m->seq + m->first);
		lo = m->floor_seq > 3 ? m->floor_seq - 3 : 0;
		for (s = lo; s <= seq + 2; s++) {
			uint64_t idx = 0xdeadbeef, want = m->first;
			int rc = history_after(&h, s, &idx);

			if (s < m->floor_seq) {
				assert_int_equal(rc, -1);
				continue;
			}
			while (want < m->next && m->seq[want] <= s)
				want++;
			assert_int_equal(rc, 0);
			if (idx != want) {
				print_error("step %d: after(%llu) = %llu, want %llu\n", step,
				    (unsigned long long)s, (unsigned long long)idx,
				    (unsigned long long)want);
				fail();
			}
		}
	}
	assert_true(clears > STEPS / 20);	/* every kind of operation really ran */
	assert_true(pushes > STEPS / 2);
	history_free(&h);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_empty),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_eviction_by_count),
		cmocka_unit_test(test_get_bounds),
		cmocka_unit_test(test_expire),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_after),
		cmocka_unit_test(test_after_single),
		cmocka_unit_test(test_shrinking_limit),
		cmocka_unit_test(test_grow_after_wrap),
		cmocka_unit_test(test_free_all),
		cmocka_unit_test(test_random_model),
		cmocka_unit_test(test_ref_survives_eviction),
		cmocka_unit_test(test_clear),
		cmocka_unit_test(test_clear_keeps_held_ref),
		cmocka_unit_test(test_random_clear_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
