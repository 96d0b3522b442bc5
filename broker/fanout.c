/* Delivery of one new event to a channel's local subscribers (see fanout.h). */
#include "fanout.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "stream.h"

#define FANOUT_HELPERS_MAX 7		/* helper threads at most, whatever the core count */

/* One run of a channel's subscriber list, delivered by one thread. */
struct fanout_part {
	struct channel_member *from;	/* its first member */
	size_t count;			/* members from there */
	int delivered;			/* the result: how many the event was for */
};

/*
 * The helpers: threads that deliver a part of a big channel's fan-out while the
 * publisher delivers the first part. The publisher holds the channel's lock all along
 * and waits for every part before it goes on, so a helper touches its streams as if
 * it held the lock itself (the pool's mutex orders its accesses between the
 * publisher's). One fan-out uses the pool at a time; another publisher meanwhile
 * delivers alone.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t work, done;	/* a new generation of parts / the last part is delivered */
	pthread_t thread[FANOUT_HELPERS_MAX];
	struct fanout_part part[FANOUT_HELPERS_MAX];	/* helper k delivers part[k] */
	struct event *ev;		/* the current fan-out's event, ring index and mode */
	uint64_t index;
	unsigned n;			/* helpers started */
	unsigned generation;		/* bumped per shared fan-out */
	unsigned pending;		/* parts of this generation still being delivered */
	bool busy, stopping, direct_ok;
} pool = { .lock = PTHREAD_MUTEX_INITIALIZER, .work = PTHREAD_COND_INITIALIZER,
	   .done = PTHREAD_COND_INITIALIZER };

/* Delivers ev to the count members from m on that ev is for; returns how many. */
static int
fanout_run(struct channel_member *m, size_t count, struct event *ev, uint64_t index, bool direct_ok)
{
	struct stream *s;
	int n = 0;

	for (; m != NULL && count > 0; m = m->next, count--) {
		s = stream_of_member(m);
		if (!stream_wants(s, ev))
			continue;
		n++;
		stream_deliver(s, ev, index, direct_ok);
	}
	return n;
}

static void *
fanout_helper(void *arg)
{
	unsigned k = (unsigned)(uintptr_t)arg, seen = 0;
	struct fanout_part *p = &pool.part[k];

	pthread_mutex_lock(&pool.lock);
	for (;;) {
		while (!pool.stopping && seen == pool.generation)
			pthread_cond_wait(&pool.work, &pool.lock);
		if (pool.stopping)
			break;
		seen = pool.generation;
		pthread_mutex_unlock(&pool.lock);
		p->delivered = fanout_run(p->from, p->count, pool.ev, pool.index, pool.direct_ok);
		pthread_mutex_lock(&pool.lock);
		if (--pool.pending == 0)
			pthread_cond_signal(&pool.done);
	}
	pthread_mutex_unlock(&pool.lock);
	return NULL;
}

int
fanout_start(void)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned want = cores > 1 ? (unsigned)(cores - 1) : 0;
	int err;

	if (want > FANOUT_HELPERS_MAX)
		want = FANOUT_HELPERS_MAX;
	for (; pool.n < want; pool.n++) {
		if ((err = pthread_create(&pool.thread[pool.n], NULL, fanout_helper,
		    (void *)(uintptr_t)pool.n)) != 0) {
			log_error("fan-out helper thread: %s", strerror(err));
			fanout_stop();
			return -1;
		}
	}
	return 0;
}

void
fanout_stop(void)
{
	unsigned i;

	pthread_mutex_lock(&pool.lock);
	pool.stopping = true;
	pthread_cond_broadcast(&pool.work);
	pthread_mutex_unlock(&pool.lock);
	for (i = 0; i < pool.n; i++)
		pthread_join(pool.thread[i], NULL);
	pool.n = 0;
}

/*
 * A big channel's fan-out split in contiguous runs, one per helper and one for the
 * caller: a publishing thread alone sends ~15 us per loopback socket, 150 ms for
 * 10,000 subscribers. Returns -1 when the pool is in use or has no helper (the caller
 * delivers alone), else how many the event was for.
 */
static int
fanout_shared(struct channel *ch, struct event *ev, uint64_t index, bool direct_ok)
{
	struct channel_member *m = ch->subs;
	size_t size, i;
	unsigned k;
	int n;

	pthread_mutex_lock(&pool.lock);
	if (pool.busy || pool.n == 0 || pool.stopping) {
		pthread_mutex_unlock(&pool.lock);
		return -1;
	}
	pool.busy = true;
	size = ch->nsubs / (pool.n + 1) + 1;
	for (k = 0; k < pool.n; k++) {	/* the caller's part is the head, before part[0] */
		for (i = 0; i < size && m != NULL; i++)
			m = m->next;
		pool.part[k].from = m;
		pool.part[k].count = k + 1 < pool.n ? size : SIZE_MAX;	/* the last takes what is left */
	}
	pool.ev = ev;
	pool.index = index;
	pool.direct_ok = direct_ok;
	pool.pending = pool.n;
	pool.generation++;
	pthread_cond_broadcast(&pool.work);
	pthread_mutex_unlock(&pool.lock);

	n = fanout_run(ch->subs, size, ev, index, direct_ok);

	pthread_mutex_lock(&pool.lock);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.lock);
	for (k = 0; k < pool.n; k++)
		n += pool.part[k].delivered;
	pool.busy = false;
	pthread_mutex_unlock(&pool.lock);
	return n;
}

/* Direct writes only while the channel is small: see stream_deliver(). */
int
fanout(struct channel *ch, struct event *ev)
{
	bool direct_ok = ch->nsubs <= BROKER_DIRECT_FANOUT;
	uint64_t index;
	int n;

	if (history_push(&ch->history, ev, (size_t)opt(OPT_HISTORY_SIZE)) == -1) {
		event_unref(ev);
		return -1;
	}
	ch->published++;
	index = ch->history.next - 1;
	if (direct_ok || (n = fanout_shared(ch, ev, index, direct_ok)) < 0)
		n = fanout_run(ch->subs, SIZE_MAX, ev, index, direct_ok);
	return n;
}

/* Which sessions an event reached, for web push's per-session offline rule. */
char *
fanout_reached(struct channel *ch, const struct event *ev)
{
	struct channel_member *m;
	struct stream *s;
	size_t len = 0, cap = 0, n;
	char *out = NULL, *grown;
	const char *name;
	bool anon = false;

	for (m = ch->subs; m != NULL; m = m->next) {
		s = stream_of_member(m);
		if (!stream_wants(s, ev))
			continue;
		name = s->session != NULL ? s->session : "";
		if (*name == '\0') {
			if (anon)
				continue;	/* one empty entry says it all */
			anon = true;
		}
		n = strlen(name);
		if (len + n + 3 > cap) {
			cap = (len + n + 3) * 2;
			if ((grown = realloc(out, cap)) == NULL) {
				free(out);
				return NULL;
			}
			out = grown;
		}
		if (len == 0)
			out[len++] = ',';
		memcpy(out + len, name, n);
		len += n;
		out[len++] = ',';
		out[len] = '\0';
	}
	return out;
}
