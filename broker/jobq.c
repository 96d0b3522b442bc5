/* The Redis thread's job queue (see jobq.h). */
#include "jobq.h"

/* Starts empty and running. */
void
jobq_init(struct jobq *q, size_t max)
{
	pthread_mutex_init(&q->lock, NULL);
	q->head = q->tail = NULL;
	q->nbounded = 0;
	q->max = max;
	q->stopped = q->closed = false;
}

/* One lock, one append. */
int
jobq_push(struct jobq *q, struct jobq_node *n, enum jobq_mode mode)
{
	bool bounded = mode == JOBQ_BOUNDED;

	pthread_mutex_lock(&q->lock);
	if (q->closed || (q->stopped && mode != JOBQ_ALWAYS) || (bounded && q->nbounded >= q->max)) {
		pthread_mutex_unlock(&q->lock);
		return -1;
	}
	n->next = NULL;
	n->bounded = bounded;
	if (bounded)
		q->nbounded++;
	if (q->tail != NULL)
		q->tail->next = n;
	else
		q->head = n;
	q->tail = n;
	pthread_mutex_unlock(&q->lock);
	return 0;
}

/* Taken nodes no longer count against the bound. */
struct jobq_node *
jobq_take(struct jobq *q)
{
	struct jobq_node *n;

	pthread_mutex_lock(&q->lock);
	n = q->head;
	q->head = q->tail = NULL;
	q->nbounded = 0;
	pthread_mutex_unlock(&q->lock);
	return n;
}

/* Closes the queue for pushes; what is queued stays to be taken. */
bool
jobq_stop(struct jobq *q)
{
	bool was;

	pthread_mutex_lock(&q->lock);
	was = !q->stopped;
	q->stopped = true;
	pthread_mutex_unlock(&q->lock);
	return was;
}

/* After the close a push fails, so its caller knows nobody will take the node. */
void
jobq_close(struct jobq *q)
{
	pthread_mutex_lock(&q->lock);
	q->stopped = q->closed = true;
	pthread_mutex_unlock(&q->lock);
}

/* Read under the lock: pushes and the stop come from other threads. */
bool
jobq_stopped(struct jobq *q)
{
	bool s;

	pthread_mutex_lock(&q->lock);
	s = q->stopped;
	pthread_mutex_unlock(&q->lock);
	return s;
}
