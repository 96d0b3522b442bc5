/*
 * The epoll set of stream sockets (sockset.h). Its own module so that stream.c can ask
 * for room on a socket without calling into the watcher, which calls stream.c.
 */
#include "sockset.h"

#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int epfd = -1, stopfd = -1, kickfd = -1;	/* set at start, before any thread uses them */
static char kick_mark;				/* what the kick event reports */

/* Creates the epoll set and the stop event in it. */
int
sockset_open(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct epoll_event kick = { .events = EPOLLIN | EPOLLET, .data.ptr = &kick_mark };

	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    (stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, stopfd, &ev) == -1 ||
	    (kickfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, kickfd, &kick) == -1)
		return -1;
	return 0;
}

/* Closes the set and the stop event. */
void
sockset_close(void)
{
	if (epfd >= 0)
		close(epfd);
	if (stopfd >= 0)
		close(stopfd);
	if (kickfd >= 0)
		close(kickfd);
	epfd = stopfd = kickfd = -1;
}

/*
 * Hang-ups only: a socket registered writable reports so at once, which would wake the
 * waiter for every new stream (see sockset_want_room).
 */
int
sockset_add(int fd, void *ptr)
{
	struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLET, .data.ptr = ptr };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/*
 * Room to write as well (and input, for a kept long-poll connection's). Modifying the
 * registration reports a socket that is writable already, so room that came before
 * the call is not missed.
 */
int
sockset_want_room(int fd, void *ptr, bool input)
{
	struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLOUT | EPOLLET | (input ? EPOLLIN : 0),
	    .data.ptr = ptr };

	return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

/*
 * Input as well, reporting ptr from now on (a kept long-poll connection's next
 * request). Like any modification, it reports data that came before the call.
 */
int
sockset_watch_input(int fd, void *ptr)
{
	struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLIN | EPOLLET, .data.ptr = ptr };

	return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

/* Takes fd out of the set (before its socket is closed). */
void
sockset_del(int fd)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* The waiter's epoll_wait. */
int
sockset_wait(struct epoll_event *evs, int max, int ms)
{
	return epoll_wait(epfd, evs, max, ms);
}

/* Wakes the waiter with the kick event (edge triggered: the counter is never read back). */
void
sockset_kick(void)
{
	uint64_t one = 1;

	if (write(kickfd, &one, sizeof one) != (ssize_t)sizeof one) {
		/* EAGAIN: the counter is full, so a wake-up is pending anyway */
	}
}

bool
sockset_is_kick(const void *ptr)
{
	return ptr == &kick_mark;
}

/* Wakes the waiter with the stop event. */
int
sockset_stop(void)
{
	uint64_t one = 1;

	return write(stopfd, &one, sizeof one) == (ssize_t)sizeof one ? 0 : -1;
}
