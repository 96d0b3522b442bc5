/*
 * The epoll set of every stream's socket, which the watcher thread waits on (watcher.c)
 * and a publishing thread extends when a direct write leaves a rest (stream.c). A leaf:
 * it knows sockets and opaque pointers, not streams.
 */
#ifndef SSEPUSH_SOCKSET_H
#define SSEPUSH_SOCKSET_H

#include <stdbool.h>
#include <sys/epoll.h>

/* Creates the set with its stop event (reported with a NULL pointer). 0, or -1 (errno). */
int sockset_open(void);
/* Closes the set. */
void sockset_close(void);
/* Watches fd for hang-ups, edge triggered, reporting ptr. 0, or -1 (errno). */
int sockset_add(int fd, void *ptr);
/* Watches fd for room to write too (and input). 0, or -1 (errno). */
int sockset_want_room(int fd, void *ptr, bool input);
/* Watches fd for input too, reporting ptr (and whatever is there already). 0, or -1 (errno). */
int sockset_watch_input(int fd, void *ptr);
/* Stops watching fd. */
void sockset_del(int fd);
/* Waits up to ms for events; as epoll_wait. */
int sockset_wait(struct epoll_event *evs, int max, int ms);
/* Wakes the waiter (it then does the work queued for it), at any time. */
void sockset_kick(void);
/* Whether an event is the kick's. */
bool sockset_is_kick(const void *ptr);
/* Makes the waiter see the stop event. 0, or -1 (errno). */
int sockset_stop(void);

#endif
