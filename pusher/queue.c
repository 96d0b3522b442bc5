/*
 * The bounded FIFO of change events waiting for Redis. An item leaves it only when Redis
 * answered its publish (or it was given up, counted); items sent on a connection that
 * died stay and are sent again. It does no I/O and no logging; the caller counts drops.
 */
#include "pusher.h"

#include <stdlib.h>
#include <string.h>

/* Empties q and sets its bound. */
void
queue_init(struct queue *q, size_t max)
{
	memset(q, 0, sizeof *q);
	q->max = max;
}

/* Appends an item at the tail. */
static void
queue_link(struct queue *q, struct queue_item *it)
{
	it->prev = q->tail;
	if (q->tail != NULL)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->len++;
}

/*
 * Appends a closed window. Steals ev->payload on success (ev is cleared); returns -1
 * and leaves ev alone when the queue is full or memory ran out.
 */
int
queue_push(struct queue *q, struct coalesce_event *ev)
{
	struct queue_item *it;

	if (q->len >= q->max || (it = calloc(1, sizeof *it)) == NULL)
		return -1;
	memcpy(it->channel, ev->channel, sizeof it->channel);
	memcpy(it->origin, ev->origin, sizeof it->origin);
	it->payload = ev->payload;
	it->len = ev->payload_len;
	it->first_ms = ev->first_ms;
	ev->payload = NULL;
	queue_link(q, it);
	return 0;
}

/*
 * Appends a closed JMAP window (its states are copied; the payload is written once
 * the merge script said what grew). Returns -1 when the queue is full or memory ran out.
 */
int
queue_push_jmap(struct queue *q, const struct jmap_update *u)
{
	struct queue_item *it;

	if (q->len >= q->max || (it = calloc(1, sizeof *it)) == NULL)
		return -1;
	if ((it->jmap = malloc(sizeof *it->jmap)) == NULL) {
		free(it);
		return -1;
	}
	*it->jmap = u->states;
	memcpy(it->channel, u->channel, sizeof it->channel);
	it->first_ms = u->first_ms;
	queue_link(q, it);
	return 0;
}

/* The oldest item not handed to the current connection, or NULL. */
struct queue_item *
queue_next_unsent(const struct queue *q)
{
	struct queue_item *it;

	/* Sent items form a prefix (sent in order, answered in order), so this is short. */
	for (it = q->head; it != NULL && it->sent; it = it->next)
		;
	return it;
}

/* Unlinks and frees one item. */
void
queue_remove(struct queue *q, struct queue_item *it)
{
	if (it->prev != NULL)
		it->prev->next = it->next;
	else
		q->head = it->next;
	if (it->next != NULL)
		it->next->prev = it->prev;
	else
		q->tail = it->prev;
	if (it->sent)
		q->inflight--;
	q->len--;
	free(it->payload);
	free(it->jmap);
	free(it);
}

/* Frees every item (at exit). */
void
queue_clear(struct queue *q)
{
	while (q->head != NULL)
		queue_remove(q, q->head);
}
