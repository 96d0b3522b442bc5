/*
 * The hang-up watcher: one thread that notices subscribers hanging up while suspended
 * (libmicrohttpd does not watch suspended sockets), finishes the rest of direct
 * writes when a socket drains, fires pings from the timer wheel (wheel.c), sweeps
 * the channel table a slice at a time, and frees dead streams (stream_reap) once no
 * epoll event can name them any more.
 */
#include "broker.h"

#include <errno.h>
#include <malloc.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "channel.h"
#include "log.h"
#include "sockset.h"
#include "stream.h"
#include "wheel.h"

#define WATCHER_EVENTS 256
#define WATCHER_TRIM_DROP 1000		/* libmicrohttpd connections gone since the peak before memory is trimmed */
#define WATCHER_SWEEP_NS 250000000	/* channel_sweep() runs this often (its slice size assumes it) */

static pthread_t thread;
static bool running;
static pthread_mutex_t wheel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wheel wheel;		/* under wheel_lock */
static const struct watcher_hooks *hooks;	/* set once at start */

/*
 * Starts watching a new stream: its socket for hang-ups (edge triggered, registered
 * once, so suspending costs no syscall) and its ping deadline. Room to finish a direct
 * write is asked for only once a write leaves a rest (stream.c, sockset_want_room): a
 * socket registered writable reports so at once, which woke this thread for every new
 * stream.
 * Returns 0, or -1 (nothing left registered).
 */
int
watcher_watch(struct stream *s)
{
	if (s->fd >= 0 && !s->polls && sockset_add(s->fd, s) == -1) {
		log_warn("epoll_ctl add: %s", strerror(errno));
		return -1;
	}
	if (s->ping > 0) {
		pthread_mutex_lock(&wheel_lock);
		wheel_insert(&wheel, &s->wnode, s->last_send + s->ping);
		pthread_mutex_unlock(&wheel_lock);
	}
	return 0;
}

/* Stops watching a finished stream (before MHD closes its socket). */
void
watcher_forget(struct stream *s)
{
	pthread_mutex_lock(&wheel_lock);
	wheel_remove(&wheel, &s->wnode);
	pthread_mutex_unlock(&wheel_lock);
	if (s->fd >= 0 && !s->polls)	/* a kept long-poll connection's entry is its record's */
		sockset_del(s->fd);
}

/* Fires the pings due in one wheel slot; streams sent to since are re-filed. */
static void
watcher_tick(uint32_t now)
{
	struct wheel_node *n, *next;
	uint32_t due;

	pthread_mutex_lock(&wheel_lock);
	for (n = wheel_take(&wheel, now); n != NULL; n = next) {
		next = n->next;
		/* A stream dying meanwhile waits on wheel_lock in watcher_forget. */
		if (stream_tick(stream_of_wnode(n), now, &due))
			wheel_insert(&wheel, n, due);
	}
	pthread_mutex_unlock(&wheel_lock);
}

/*
 * The thread: wait up to a quarter second for socket events, then run the due timers.
 * The timers run by the clock, not per wake-up: every new stream wakes the watcher once
 * (its socket is registered writable, edge triggered), and a connection flood used to
 * run a table sweep and a scan of every connection slot per wake-up, holding the locks
 * that each accept and subscribe take.
 */
static void *
watcher_main(void *arg)
{
	struct epoll_event evs[WATCHER_EVENTS];
	uint32_t last = clock_sec(), now;
	int64_t next_sweep = 0, t;
	int i, n;

	(void)arg;
	for (;;) {
		stream_end_polls();	/* answered here, under a channel lock */
		stream_defer_poll_ends();
		stream_reap();
		hooks->repoll_reap();
		n = sockset_wait(evs, WATCHER_EVENTS, 250);
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				return NULL;	/* stop requested */
			if (sockset_is_kick(evs[i].data.ptr))
				continue;	/* queued work: done at the top of the loop */
			if (*(enum req_kind *)evs[i].data.ptr == REQ_REPOLL)
				hooks->repoll_event(evs[i].data.ptr, evs[i].events);
			else if (!(evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
				stream_flush(evs[i].data.ptr);	/* a direct write's rest */
			else if (stream_hangup(evs[i].data.ptr))
				hooks->end_taken(evs[i].data.ptr);	/* a taken stream: its end is here */
		}
		now = clock_sec();
		/* Catch up on missed seconds, at most one full turn of the wheel. */
		if (now - last > WHEEL_SLOTS)
			last = now - WHEEL_SLOTS;
		if ((int32_t)(now - last) > 0)
			conn_expire(now);	/* deadlines are whole seconds */
		while ((int32_t)(now - last) > 0) {
			watcher_tick(++last);
			hooks->repoll_tick(last);
			stream_cut_slow(last, (uint32_t)opt(OPT_REQUEST_TIMEOUT));
			/* After a flood of connections left libmicrohttpd, give their memory back. */
			if (conn_trim_due(WATCHER_TRIM_DROP))
				malloc_trim(0);
		}
		t = clock_ns();
		if (t >= next_sweep) {
			next_sweep = t + WATCHER_SWEEP_NS;
			channel_sweep(t - (int64_t)opt(OPT_HISTORY_TTL) * 1000000000,
			    (size_t)opt(OPT_HISTORY_SIZE));
		}
	}
}

/* Creates the epoll set and starts the thread; h is what it calls above this file. */
int
watcher_start(const struct watcher_hooks *h)
{
	hooks = h;
	if (sockset_open() == -1) {
		log_error("watcher: %s", strerror(errno));
		return -1;
	}
	if (pthread_create(&thread, NULL, watcher_main, NULL) != 0) {
		log_error("watcher: cannot start thread");
		return -1;
	}
	running = true;
	return 0;
}

/* Stops the thread (after every daemon stopped) and frees what is left in the grave. */
void
watcher_stop(void)
{
	if (running) {
		if (sockset_stop() < 0)
			log_warn("watcher stop: %s", strerror(errno));
		pthread_join(thread, NULL);
		running = false;
		hooks->repoll_close_all();
	}
	stream_reap();
	sockset_close();
}
