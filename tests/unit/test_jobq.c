/* Unit tests for broker/jobq.c: FIFO order, the bound on bounded jobs, the stop, and many producers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <pthread.h>

#include "jobq.h"

struct job {
	struct jobq_node node;	/* first */
	int producer, n;
};

/* Jobs come out in the order they went in, and a take empties the queue. */
static void
test_fifo(void **state)
{
	struct jobq q;
	struct job j[5];
	struct jobq_node *n;
	int i = 0;

	(void)state;
	jobq_init(&q, 10);
	assert_null(jobq_take(&q));
	for (i = 0; i < 5; i++) {
		j[i].n = i;
		assert_int_equal(jobq_push(&q, &j[i].node, i % 2 == 0 ? JOBQ_BOUNDED : JOBQ_NORMAL), 0);
	}
	i = 0;
	for (n = jobq_take(&q); n != NULL; n = n->next)
		assert_int_equal(((struct job *)n)->n, i++);
	assert_int_equal(i, 5);
	assert_null(jobq_take(&q));
}

/* Only bounded jobs count against the bound, and taking them frees room. */
static void
test_bound(void **state)
{
	struct jobq q;
	struct job b[3], u[3];
	struct jobq_node *n;
	int count = 0;

	(void)state;
	jobq_init(&q, 2);
	assert_int_equal(jobq_push(&q, &b[0].node, JOBQ_BOUNDED), 0);
	assert_int_equal(jobq_push(&q, &b[1].node, JOBQ_BOUNDED), 0);
	assert_int_equal(jobq_push(&q, &b[2].node, JOBQ_BOUNDED), -1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(jobq_push(&q, &u[i].node, i == 0 ? JOBQ_NORMAL : JOBQ_ALWAYS), 0);
	for (n = jobq_take(&q); n != NULL; n = n->next)
		count++;
	assert_int_equal(count, 5);
	assert_int_equal(jobq_push(&q, &b[2].node, JOBQ_BOUNDED), 0);
	assert_ptr_equal(jobq_take(&q), &b[2].node);
}

/*
 * After the stop only JOBQ_ALWAYS jobs are taken in, after the close none; what was
 * queued can still be taken.
 */
static void
test_stop(void **state)
{
	struct jobq q;
	struct job a, b, c;

	(void)state;
	jobq_init(&q, 4);
	assert_false(jobq_stopped(&q));
	assert_int_equal(jobq_push(&q, &a.node, JOBQ_NORMAL), 0);
	assert_true(jobq_stop(&q));
	assert_false(jobq_stop(&q));
	assert_true(jobq_stopped(&q));
	assert_int_equal(jobq_push(&q, &b.node, JOBQ_NORMAL), -1);
	assert_int_equal(jobq_push(&q, &b.node, JOBQ_BOUNDED), -1);
	assert_int_equal(jobq_push(&q, &b.node, JOBQ_ALWAYS), 0);
	jobq_close(&q);
	assert_true(jobq_stopped(&q));
	assert_int_equal(jobq_push(&q, &c.node, JOBQ_ALWAYS), -1);
	assert_ptr_equal(jobq_take(&q), &a.node);
	assert_ptr_equal(a.node.next, &b.node);
	assert_null(b.node.next);
	assert_null(jobq_take(&q));
}

#define PRODUCERS 4
#define PER 20000

static struct jobq shared;
static struct job jobs[PRODUCERS][PER];

/* Pushes one producer's jobs in order. */
static void *
producer(void *arg)
{
	int p = (int)(intptr_t)arg, i;

	for (i = 0; i < PER; i++) {
		jobs[p][i].producer = p;
		jobs[p][i].n = i;
		while (jobq_push(&shared, &jobs[p][i].node, JOBQ_NORMAL) == -1)
			;
	}
	return NULL;
}

/* With producers racing one taker, every job comes out once, each producer's in order. */
static void
test_threads(void **state)
{
	pthread_t t[PRODUCERS];
	int next[PRODUCERS] = { 0 }, total = 0, p;
	struct jobq_node *n;

	(void)state;
	jobq_init(&shared, 1);
	for (p = 0; p < PRODUCERS; p++)
		assert_int_equal(pthread_create(&t[p], NULL, producer, (void *)(intptr_t)p), 0);
	while (total < PRODUCERS * PER) {
		for (n = jobq_take(&shared); n != NULL; n = n->next) {
			struct job *j = (struct job *)n;
			assert_int_equal(j->n, next[j->producer]);
			next[j->producer]++;
			total++;
		}
	}
	for (p = 0; p < PRODUCERS; p++) {
		pthread_join(t[p], NULL);
		assert_int_equal(next[p], PER);
	}
	assert_null(jobq_take(&shared));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fifo),
		cmocka_unit_test(test_bound),
		cmocka_unit_test(test_stop),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
