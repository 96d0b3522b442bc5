/*
 * The reaper thread: notices subscribers that hung up while suspended (libmicrohttpd
 * does not watch suspended sockets), fires pings from a timer wheel that only touches
 * streams whose deadline is due, sweeps expired history every few seconds, and frees
 * finished streams once no watcher event can name them any more.
 */
#include "broker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

#define REAPER_EVENTS 256

static int epfd = -1, stopfd = -1;
static pthread_t thread;
static bool running;
static pthread_mutex_t wheel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stream *wheel[BROKER_WHEEL_SLOTS];	/* under wheel_lock */
static pthread_mutex_t grave_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stream *grave;				/* under grave_lock */

/* Puts s in the slot for second due; called with wheel_lock held. */
static void
wheel_insert(struct stream *s, uint32_t due)
{
	int slot = (int)(due % BROKER_WHEEL_SLOTS);

	s->wslot = slot;
	s->wprev = NULL;
	s->wnext = wheel[slot];
	if (wheel[slot] != NULL)
		wheel[slot]->wprev = s;
	wheel[slot] = s;
}

/* Takes s out of its slot; called with wheel_lock held. */
static void
wheel_remove(struct stream *s)
{
	if (s->wslot < 0)
		return;
	if (s->wprev != NULL)
		s->wprev->wnext = s->wnext;
	else
		wheel[s->wslot] = s->wnext;
	if (s->wnext != NULL)
		s->wnext->wprev = s->wprev;
	s->wslot = -1;
}

/*
 * Starts watching a new stream: its socket for hang-ups and for room to finish a
 * direct write (registered once, edge triggered, so suspending costs no syscall) and
 * its ping deadline. Returns 0 or -1.
 */
int
reaper_watch(struct stream *s)
{
	struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLOUT | EPOLLET, .data.ptr = s };

	if (s->ping > 0) {
		pthread_mutex_lock(&wheel_lock);
		wheel_insert(s, s->last_send + s->ping);
		pthread_mutex_unlock(&wheel_lock);
	}
	if (s->fd >= 0 && epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) == -1) {
		log_warn("epoll_ctl add: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Stops watching a finished stream (before MHD closes its socket). */
void
reaper_forget(struct stream *s)
{
	pthread_mutex_lock(&wheel_lock);
	wheel_remove(s);
	pthread_mutex_unlock(&wheel_lock);
	if (s->fd >= 0)
		epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
}

/* Queues a finished stream for freeing by the reaper thread. */
void
reaper_bury(struct stream *s)
{
	pthread_mutex_lock(&grave_lock);
	s->gnext = grave;
	grave = s;
	pthread_mutex_unlock(&grave_lock);
}

/*
 * Frees buried streams. Safe because each was removed from epoll before burial and
 * this runs between two epoll_wait calls of the only thread that reads their events.
 */
static void
reaper_free_grave(void)
{
	struct stream *s, *next;

	pthread_mutex_lock(&grave_lock);
	s = grave;
	grave = NULL;
	pthread_mutex_unlock(&grave_lock);
	for (; s != NULL; s = next) {
		next = s->gnext;
		stream_free(s);
	}
}

/* Ends a stream whose client hung up: its reader returns an error and MHD closes it. */
static void
reaper_hangup(struct stream *s)
{
	pthread_mutex_lock(&s->ch->lock);
	if (!s->dead) {
		s->closing = true;
		stream_wake(s);
	}
	pthread_mutex_unlock(&s->ch->lock);
}

/* Fires the pings due in one wheel slot; streams sent to since are re-filed lazily. */
static void
reaper_tick(uint32_t now)
{
	struct stream *s, *next;
	uint32_t due;
	unsigned ping;
	bool dead;

	pthread_mutex_lock(&wheel_lock);
	s = wheel[now % BROKER_WHEEL_SLOTS];
	wheel[now % BROKER_WHEEL_SLOTS] = NULL;
	for (; s != NULL; s = next) {
		next = s->wnext;
		s->wslot = -1;
		pthread_mutex_lock(&s->ch->lock);
		ping = s->ping;
		due = s->last_send + ping;
		dead = s->dead;
		if (!dead && (int32_t)(due - now) <= 0) {
			s->ping_due = true;
			stream_wake(s);
			due = now + ping;
		}
		pthread_mutex_unlock(&s->ch->lock);
		/* A stream dying meanwhile waits on wheel_lock in reaper_forget. */
		if (!dead)
			wheel_insert(s, due);
	}
	pthread_mutex_unlock(&wheel_lock);
}

/* The thread: wait up to the next second for hang-ups, then run the due timers. */
static void *
reaper_main(void *arg)
{
	struct epoll_event evs[REAPER_EVENTS];
	uint32_t last = clock_sec(), now;
	int i, n;

	(void)arg;
	for (;;) {
		reaper_free_grave();
		n = epoll_wait(epfd, evs, REAPER_EVENTS, 250);
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				return NULL;	/* stop requested */
			if (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
				reaper_hangup(evs[i].data.ptr);
			else
				stream_flush_raw(evs[i].data.ptr);	/* a direct write's rest */
		}
		now = clock_sec();
		/* Catch up on missed seconds, at most one full turn of the wheel. */
		if (now - last > BROKER_WHEEL_SLOTS)
			last = now - BROKER_WHEEL_SLOTS;
		while ((int32_t)(now - last) > 0)
			reaper_tick(++last);
		channel_sweep();	/* one slice per pass */
	}
}

/* Creates the epoll set and starts the thread. */
int
reaper_start(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	if ((epfd = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    (stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, stopfd, &ev) == -1) {
		log_error("reaper: %s", strerror(errno));
		return -1;
	}
	if (pthread_create(&thread, NULL, reaper_main, NULL) != 0) {
		log_error("reaper: cannot start thread");
		return -1;
	}
	running = true;
	return 0;
}

/* Stops the thread (after every daemon stopped) and frees what it buried. */
void
reaper_stop(void)
{
	uint64_t one = 1;

	if (running) {
		if (write(stopfd, &one, sizeof one) < 0)
			log_warn("reaper stop: %s", strerror(errno));
		pthread_join(thread, NULL);
		running = false;
	}
	reaper_free_grave();
	if (epfd >= 0)
		close(epfd);
	if (stopfd >= 0)
		close(stopfd);
	epfd = stopfd = -1;
}
