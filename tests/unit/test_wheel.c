/*
 * Unit tests for the ping timer wheel (broker/wheel.c): a node filed under a second
 * comes out of wheel_take for that second's slot only (the same slot one turn later
 * too: the caller re-files what is not due), removal of a node that is not filed is a
 * no-op, removal from the head, middle and tail of a slot keeps the rest linked, taken
 * nodes are marked not filed, re-filing taken nodes while walking the taken list (as
 * broker/watcher.c's watcher_tick does), and 10,000 nodes with pseudo-random deadlines
 * each coming out exactly once, at their second, across the uint32_t wrap.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "wheel.h"

/* A zeroed wheel on the heap (the broker's is static, so zeroed too). */
static struct wheel *wheel_new(void)
{
	struct wheel *w = calloc(1, sizeof *w);

	assert_non_null(w);
	return w;
}

/* Asserts every slot of w is empty. */
static void assert_wheel_empty(const struct wheel *w)
{
	size_t i;

	for (i = 0; i < WHEEL_SLOTS; i++) {
		if (w->slot[i] != NULL) {
			print_error("slot %zu not empty\n", i);
			fail();
		}
	}
}

/*
 * Asserts slot s holds exactly want[0..n) in that order, doubly linked (each prev is
 * the node before it, the head's prev is NULL) and each node marked with slot s.
 */
static void assert_slot(const struct wheel *w, int s, struct wheel_node *const *want, size_t n)
{
	const struct wheel_node *prev = NULL, *it = w->slot[s];
	size_t i;

	for (i = 0; i < n; i++) {
		if (it != want[i]) {
			print_error("slot %d position %zu: %p, want %p\n", s, i, (const void *)it,
			    (const void *)want[i]);
			fail();
		}
		assert_int_equal(it->slot, s);
		assert_ptr_equal(it->prev, prev);
		prev = it;
		it = it->next;
	}
	assert_null(it);
}

/* Walks a taken list: asserts it is exactly want[0..n), every node marked not filed. */
static void assert_taken(const struct wheel_node *head, struct wheel_node *const *want, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		assert_ptr_equal(head, want[i]);
		assert_int_equal(head->slot, -1);
		assert_null(head->prev);
		head = head->next;
	}
	assert_null(head);
}

static void test_node_init(void **state)
{
	struct wheel_node n;

	(void)state;
	memset(&n, 0xa5, sizeof n);
	wheel_node_init(&n);
	assert_int_equal(n.slot, -1);
	assert_null(n.prev);
	assert_null(n.next);
}

/* A node filed under second 5 comes out of wheel_take(5) and of no other second. */
static void test_insert_take_one(void **state)
{
	struct wheel *w = wheel_new();
	struct wheel_node n, *one[1] = { &n };
	uint32_t s;

	(void)state;
	wheel_node_init(&n);
	wheel_insert(w, &n, 5);
	assert_int_equal(n.slot, 5);
	assert_slot(w, 5, one, 1);
	for (s = 0; s < WHEEL_SLOTS; s++) {
		if (s == 5)
			continue;
		if (wheel_take(w, s) != NULL) {
			print_error("wheel_take(%u) returned the node filed under 5\n", s);
			fail();
		}
	}
	assert_int_equal(n.slot, 5);	/* still filed after all those takes */
	assert_taken(wheel_take(w, 5), one, 1);
	assert_null(wheel_take(w, 5));	/* taken once */
	assert_wheel_empty(w);
	free(w);
}

/*
 * A deadline a turn or more away shares its slot with earlier seconds: wheel_take of
 * the same slot a turn earlier returns it too, and the caller re-files it.
 */
static void test_same_slot_other_turn(void **state)
{
	struct wheel *w = wheel_new();
	struct wheel_node a, b, *both[2] = { &b, &a }, *onlyb[1] = { &b };

	(void)state;
	wheel_node_init(&a);
	wheel_node_init(&b);
	wheel_insert(w, &a, 7);
	wheel_insert(w, &b, 7 + 3 * WHEEL_SLOTS);
	assert_int_equal(a.slot, 7);
	assert_int_equal(b.slot, 7);
	assert_null(wheel_take(w, 6));
	assert_null(wheel_take(w, 8));
	assert_taken(wheel_take(w, 7), both, 2);	/* newest first */
	wheel_insert(w, &b, 7 + 3 * WHEEL_SLOTS);	/* not due: re-filed */
	assert_taken(wheel_take(w, 7 + WHEEL_SLOTS), onlyb, 1);
	wheel_insert(w, &b, 7 + 3 * WHEEL_SLOTS);
	assert_taken(wheel_take(w, 7 + 3 * WHEEL_SLOTS), onlyb, 1);
	assert_wheel_empty(w);

	/* the slot of a second is the same on both sides of the uint32_t wrap */
	wheel_insert(w, &a, UINT32_MAX);
	assert_int_equal(a.slot, WHEEL_SLOTS - 1);
	wheel_insert(w, &b, (uint32_t)(UINT32_MAX + 3u));	/* second 2 */
	assert_int_equal(b.slot, 2);
	assert_null(wheel_take(w, 0));
	assert_taken(wheel_take(w, WHEEL_SLOTS - 1), (struct wheel_node *const[]){ &a }, 1);
	assert_taken(wheel_take(w, 2), onlyb, 1);
	assert_wheel_empty(w);
	free(w);
}

/* Removing a node that is not filed (fresh, removed, taken) leaves the wheel alone. */
static void test_remove_not_filed(void **state)
{
	struct wheel *w = wheel_new();
	struct wheel_node a, b, c, fresh, *ab[2] = { &b, &a }, *cab[3] = { &c, &b, &a };

	(void)state;
	wheel_node_init(&a);
	wheel_node_init(&b);
	wheel_node_init(&c);
	wheel_node_init(&fresh);
	wheel_insert(w, &a, 0);
	wheel_insert(w, &b, 0);
	wheel_remove(w, &fresh);
	assert_int_equal(fresh.slot, -1);
	assert_null(fresh.prev);
	assert_null(fresh.next);
	assert_slot(w, 0, ab, 2);

	/* removed twice */
	wheel_insert(w, &c, 9);
	wheel_remove(w, &c);
	assert_null(w->slot[9]);
	wheel_remove(w, &c);
	assert_null(w->slot[9]);
	assert_slot(w, 0, ab, 2);

	/*
	 * A taken node still chains the taken list through next; removing it (a stream
	 * forgotten after its tick) must not write through those stale pointers.
	 */
	wheel_insert(w, &c, 0);
	assert_taken(wheel_take(w, 0), cab, 3);
	wheel_insert(w, &a, 0);	/* a is filed again, b and c are not */
	wheel_remove(w, &b);
	wheel_remove(w, &c);
	assert_slot(w, 0, (struct wheel_node *const[]){ &a }, 1);
	assert_ptr_equal(c.next, &b);	/* untouched */
	wheel_remove(w, &a);
	assert_wheel_empty(w);
	free(w);
}

/* Removing the head, a middle node and the tail of a slot keeps the others linked. */
static void test_remove_positions(void **state)
{
	struct wheel *w = wheel_new();
	struct wheel_node n[6], other;
	int i;

	(void)state;
	for (i = 0; i < 6; i++) {
		wheel_node_init(&n[i]);
		wheel_insert(w, &n[i], 100);	/* slot order: 5 4 3 2 1 0 */
	}
	wheel_node_init(&other);
	wheel_insert(w, &other, 101);
	assert_slot(w, 100, (struct wheel_node *const[]){ &n[5], &n[4], &n[3], &n[2], &n[1],
	    &n[0] }, 6);

	wheel_remove(w, &n[3]);	/* middle */
	assert_int_equal(n[3].slot, -1);
	assert_null(n[3].prev);
	assert_null(n[3].next);
	assert_slot(w, 100, (struct wheel_node *const[]){ &n[5], &n[4], &n[2], &n[1], &n[0] },
	    5);
	wheel_remove(w, &n[5]);	/* head */
	assert_int_equal(n[5].slot, -1);
	assert_slot(w, 100, (struct wheel_node *const[]){ &n[4], &n[2], &n[1], &n[0] }, 4);
	wheel_remove(w, &n[0]);	/* tail */
	assert_int_equal(n[0].slot, -1);
	assert_slot(w, 100, (struct wheel_node *const[]){ &n[4], &n[2], &n[1] }, 3);

	/* a removed node can be filed again, at the head */
	wheel_insert(w, &n[3], 100 + WHEEL_SLOTS);
	assert_slot(w, 100, (struct wheel_node *const[]){ &n[3], &n[4], &n[2], &n[1] }, 4);

	/* down to one, then none */
	wheel_remove(w, &n[4]);
	wheel_remove(w, &n[1]);
	wheel_remove(w, &n[3]);
	assert_slot(w, 100, (struct wheel_node *const[]){ &n[2] }, 1);
	wheel_remove(w, &n[2]);
	assert_null(w->slot[100]);
	assert_slot(w, 101, (struct wheel_node *const[]){ &other }, 1);	/* neighbour intact */
	assert_taken(wheel_take(w, 100), NULL, 0);
	assert_taken(wheel_take(w, 101), (struct wheel_node *const[]){ &other }, 1);
	assert_wheel_empty(w);
	free(w);
}

/*
 * watcher_tick's loop: read next before re-filing, re-file some nodes into the very
 * slot being taken (a turn later) and some into the next second; every taken node is
 * visited exactly once and ends up where it was re-filed.
 */
static void test_refile_while_iterating(void **state)
{
	enum { N = 100 };
	struct wheel *w = wheel_new();
	struct wheel_node n[N], *it, *next;
	int seen[N] = { 0 }, visits = 0, i, in10 = 0, in11 = 0;

	(void)state;
	for (i = 0; i < N; i++) {
		wheel_node_init(&n[i]);
		wheel_insert(w, &n[i], 10);
	}
	for (it = wheel_take(w, 10); it != NULL; it = next) {
		ptrdiff_t k = it - n;

		next = it->next;
		assert_true(k >= 0 && k < N);
		assert_int_equal(it->slot, -1);
		seen[k]++;
		assert_true(++visits <= N);	/* no node comes round twice */
		if (k % 3 == 0)
			wheel_insert(w, it, 10 + WHEEL_SLOTS);	/* same slot */
		else if (k % 3 == 1)
			wheel_insert(w, it, 11);
		/* k % 3 == 2: dropped, as a dead stream is */
	}
	assert_int_equal(visits, N);
	for (i = 0; i < N; i++)
		assert_int_equal(seen[i], 1);

	for (it = w->slot[10]; it != NULL; it = it->next) {
		assert_int_equal((it - n) % 3, 0);
		assert_int_equal(it->slot, 10);
		in10++;
	}
	for (it = w->slot[11]; it != NULL; it = it->next) {
		assert_int_equal((it - n) % 3, 1);
		assert_int_equal(it->slot, 11);
		in11++;
	}
	assert_int_equal(in10, 34);
	assert_int_equal(in11, 33);
	for (i = 0; i < N; i++)
		if (i % 3 == 2)
			assert_int_equal(n[i].slot, -1);
	free(w);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

enum { MANY = 10000 };

struct timer {
	struct wheel_node node;	/* first, so a node pointer is the timer's */
	uint32_t due;
	int fired;		/* times it came out at its own second */
	int taken;		/* times wheel_take returned it */
	int removed;
};

/*
 * One wheel_take per second from start for ticks seconds, the way watcher_tick runs:
 * a node whose second it is fires, one not due yet (a later turn) is re-filed. Asserts
 * that every taken node belongs to the slot, is due now or later, and is not removed.
 */
static void run_ticks(struct wheel *w, struct timer *t, uint32_t start, uint32_t ticks)
{
	uint32_t k;

	for (k = 0; k < ticks; k++) {
		uint32_t now = start + k;
		struct wheel_node *it, *next;
		int visits = 0;

		for (it = wheel_take(w, now); it != NULL; it = next) {
			struct timer *tm = (struct timer *)it;
			ptrdiff_t idx = tm - t;

			next = it->next;
			assert_true(++visits <= MANY);	/* the taken list ends */
			assert_true(idx >= 0 && idx < MANY);
			assert_int_equal(it->slot, -1);
			assert_int_equal(tm->removed, 0);
			assert_int_equal(tm->fired, 0);
			assert_int_equal(tm->due % WHEEL_SLOTS, now % WHEEL_SLOTS);
			tm->taken++;
			if (tm->due == now)
				tm->fired++;
			else {
				/* modular: not overdue (that would mean a missed turn) */
				assert_true((int32_t)(tm->due - now) > 0);
				wheel_insert(w, it, tm->due);
			}
		}
	}
}

/* 10,000 deadlines within one turn: one turn of takes returns each exactly once. */
static void test_many_one_turn(void **state)
{
	struct wheel *w = wheel_new();
	struct timer *t = calloc(MANY, sizeof *t);
	const uint32_t start = UINT32_MAX - 300;	/* the turn crosses the wrap */
	int i;

	(void)state;
	assert_non_null(t);
	rng_state = 0x9e3779b97f4a7c15ULL;
	for (i = 0; i < MANY; i++) {
		wheel_node_init(&t[i].node);
		t[i].due = start + rng() % WHEEL_SLOTS;
		wheel_insert(w, &t[i].node, t[i].due);
	}
	run_ticks(w, t, start, WHEEL_SLOTS);
	for (i = 0; i < MANY; i++) {
		if (t[i].taken != 1 || t[i].fired != 1) {
			print_error("timer %d (due %u): taken %d fired %d, want 1 and 1\n", i,
			    t[i].due, t[i].taken, t[i].fired);
			fail();
		}
		assert_int_equal(t[i].node.slot, -1);
	}
	assert_wheel_empty(w);
	free(t);
	free(w);
}

/*
 * Deadlines up to four turns away, a tenth of them removed before they fire: each
 * other one fires exactly once at its own second and is taken once per turn it
 * waited; the removed ones never come out.
 */
static void test_many_turns_with_removes(void **state)
{
	enum { TURNS = 4 };
	struct wheel *w = wheel_new();
	struct timer *t = calloc(MANY, sizeof *t);
	const uint32_t start = 123456;
	int i, removed = 0;

	(void)state;
	assert_non_null(t);
	rng_state = 0x243f6a8885a308d3ULL;
	for (i = 0; i < MANY; i++) {
		wheel_node_init(&t[i].node);
		t[i].due = start + rng() % (TURNS * WHEEL_SLOTS);
		wheel_insert(w, &t[i].node, t[i].due);
	}
	for (i = 0; i < MANY; i++) {
		if (rng() % 10 == 0) {
			wheel_remove(w, &t[i].node);
			assert_int_equal(t[i].node.slot, -1);
			t[i].removed = 1;
			removed++;
		}
	}
	assert_true(removed > MANY / 20);
	run_ticks(w, t, start, WHEEL_SLOTS / 2);
	/* a few more removes half-way through a turn, of filed (re-filed) nodes */
	for (i = 0; i < MANY; i++) {
		if (!t[i].removed && !t[i].fired && rng() % 10 == 0) {
			assert_true(t[i].node.slot >= 0);
			wheel_remove(w, &t[i].node);
			t[i].removed = 1;
		}
	}
	run_ticks(w, t, start + WHEEL_SLOTS / 2, TURNS * WHEEL_SLOTS - WHEEL_SLOTS / 2);
	for (i = 0; i < MANY; i++) {
		int turns = (int)((t[i].due - start) / WHEEL_SLOTS) + 1;

		if (t[i].removed) {
			assert_int_equal(t[i].fired, 0);
			continue;
		}
		if (t[i].fired != 1 || t[i].taken != turns) {
			print_error("timer %d (due start+%u): taken %d fired %d, want %d and 1\n",
			    i, t[i].due - start, t[i].taken, t[i].fired, turns);
			fail();
		}
	}
	assert_wheel_empty(w);
	free(t);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_node_init),
		cmocka_unit_test(test_insert_take_one),
		cmocka_unit_test(test_same_slot_other_turn),
		cmocka_unit_test(test_remove_not_filed),
		cmocka_unit_test(test_remove_positions),
		cmocka_unit_test(test_refile_while_iterating),
		cmocka_unit_test(test_many_one_turn),
		cmocka_unit_test(test_many_turns_with_removes),
	};

	alarm(20);	/* a broken list (a cycle) hangs inside the wheel: end the run instead */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
