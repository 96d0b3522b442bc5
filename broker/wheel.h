/*
 * The ping timer wheel: one slot per second, a stream filed under the second its
 * next ping is due, so a tick touches only the streams due then (not every stream).
 * Intrusive (the node lives in the stream) and unlocked: the caller serialises.
 * Leaf module: libc only.
 */
#ifndef SSEPUSH_WHEEL_H
#define SSEPUSH_WHEEL_H

#include <stdint.h>

#define WHEEL_SLOTS 1024	/* seconds of one turn; a later deadline waits for a later turn */

struct wheel_node {
	struct wheel_node *prev, *next;
	int slot;		/* -1 while not filed */
};

struct wheel {
	struct wheel_node *slot[WHEEL_SLOTS];
};

/* Marks a node as not filed. */
void wheel_node_init(struct wheel_node *n);
/* Files n under second due (n must not be filed). */
void wheel_insert(struct wheel *w, struct wheel_node *n, uint32_t due);
/* Takes n out of its slot; a node that is not filed is left alone. */
void wheel_remove(struct wheel *w, struct wheel_node *n);
/*
 * Empties the slot of second now and returns its nodes as a list through next, each
 * marked not filed (the caller re-files the ones not due yet: a later turn).
 */
struct wheel_node *wheel_take(struct wheel *w, uint32_t now);

#endif
