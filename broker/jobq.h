/*
 * The job queue between the broker's threads and the Redis thread: one FIFO (so the
 * jobs of one stream run in the order they were given), a bound on the jobs that
 * count against it (publishes: a stalled Redis must not grow memory without end),
 * a stop after which only jobs that must still run (a stream leaving, whose member
 * the Redis thread may still hold) are taken in, and a close after which nothing is.
 * Intrusive (the node lives in the job), locked inside. Leaf module: libc and
 * pthreads only.
 */
#ifndef SSEPUSH_JOBQ_H
#define SSEPUSH_JOBQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* How a job is taken in. */
enum jobq_mode {
	JOBQ_NORMAL,		/* until the stop */
	JOBQ_BOUNDED,		/* until the stop, and while fewer than max of these wait */
	JOBQ_ALWAYS,		/* until the close */
};

struct jobq_node {
	struct jobq_node *next;
	bool bounded;			/* counts against the bound while queued */
};

struct jobq {
	pthread_mutex_t lock;
	struct jobq_node *head, *tail;	/* under lock */
	size_t nbounded;		/* bounded nodes queued, under lock */
	size_t max;			/* bound on them */
	bool stopped, closed;		/* under lock */
};

/* An empty, running queue holding at most max bounded nodes. */
void jobq_init(struct jobq *q, size_t max);
/* Appends n; -1 (n untouched) when its mode refuses it now. */
int jobq_push(struct jobq *q, struct jobq_node *n, enum jobq_mode mode);
/* Takes every queued node, oldest first, as a list through next (NULL if none). */
struct jobq_node *jobq_take(struct jobq *q);
/* Refuses later pushes but JOBQ_ALWAYS ones; returns whether it was running. */
bool jobq_stop(struct jobq *q);
/* Refuses every later push. */
void jobq_close(struct jobq *q);
/* Whether jobq_stop was called. */
bool jobq_stopped(struct jobq *q);

#endif
