/* The ping timer wheel's slot lists (see wheel.h); no clock, no lock, no streams. */
#include "wheel.h"

#include <stddef.h>

/* A fresh node is in no slot. */
void
wheel_node_init(struct wheel_node *n)
{
	n->prev = n->next = NULL;
	n->slot = -1;
}

/* Pushes n on the front of its due second's slot. */
void
wheel_insert(struct wheel *w, struct wheel_node *n, uint32_t due)
{
	int slot = (int)(due % WHEEL_SLOTS);

	n->slot = slot;
	n->prev = NULL;
	n->next = w->slot[slot];
	if (w->slot[slot] != NULL)
		w->slot[slot]->prev = n;
	w->slot[slot] = n;
}

/* Unlinks n from whatever slot holds it. */
void
wheel_remove(struct wheel *w, struct wheel_node *n)
{
	if (n->slot < 0)
		return;
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		w->slot[n->slot] = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	n->prev = n->next = NULL;
	n->slot = -1;
}

/* Detaches a whole slot; next pointers still chain the taken nodes. */
struct wheel_node *
wheel_take(struct wheel *w, uint32_t now)
{
	struct wheel_node *head = w->slot[now % WHEEL_SLOTS], *n;

	w->slot[now % WHEEL_SLOTS] = NULL;
	for (n = head; n != NULL; n = n->next) {
		n->slot = -1;
		n->prev = NULL;
	}
	return head;
}
