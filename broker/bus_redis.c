/*
 * The Redis bus (bus.h): brokers share publishes, history and subscriber counts
 * through Redis (layout and scripts: include/redis_keys.h). Everything that talks to
 * Redis runs on one thread of its own with a libevent loop; other threads hand it
 * work through one FIFO job queue (so a stream's join always precedes its replay and
 * its leave) and never wait for it: publishes, joins and replays are answered through
 * their callbacks. While the link is down, publishes and joins are refused at once and
 * replays end in a reset. Per-channel work is in redis_sub.c, counts in redis_counts.c,
 * replays in redis_replay.c, the connections in redis_link.c.
 */
#include "redis_bus.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

/* A publish waiting for the Redis thread; its strings live in blob. */
struct redis_publish {
	struct redis_job job;		/* first */
	struct publish_req req;
	bus_publish_done *done;
	void *arg;
	char blob[];
};

static struct event_base *base;
static struct event *wake_ev, *tick_ev;
static int wake_fd = -1;
static pthread_t thread;
static bool thread_running;
static atomic_bool ready;		/* the link is up: readable from any thread */
static struct jobq queue;		/* every job, in order; publishes bounded */
static uint32_t last_beat;

/* Wakes the Redis thread to look at its queue. */
static void
redis_bus_wake(void)
{
	uint64_t one = 1;

	if (write(wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_warn("redis: wake: %s", strerror(errno));
}

/* Appends a job and wakes the thread; -1 once stopping (or too many publishes wait). */
static int
redis_bus_enqueue(struct redis_job *j)
{
	/* A leave is taken in until the thread is gone: its member may still be linked. */
	if (jobq_push(&queue, &j->node, j->kind == JOB_PUBLISH ? JOBQ_BOUNDED :
	    j->kind == JOB_LEAVE ? JOBQ_ALWAYS : JOBQ_NORMAL) == -1)
		return -1;
	redis_bus_wake();
	return 0;
}

/* Whether the link is up; otherwise why not (any thread). */
static bool
redis_bus_ready(char *why, size_t len)
{
	if (atomic_load(&ready))
		return true;
	redis_link_why(why, len);
	return false;
}

/* ssepush_redis_up. */
static void
redis_bus_metrics(FILE *f)
{
	fprintf(f, "# HELP ssepush_redis_up 1 when the Redis bus is connected (always 0 standalone).\n"
	    "# TYPE ssepush_redis_up gauge\nssepush_redis_up %d\n", atomic_load(&ready) ? 1 : 0);
}

/* The ring knows nothing until the channel's first sync positions it. */
static uint64_t
redis_bus_floor(void)
{
	return 0;
}

/* Copies an optional string into a job's blob; returns the new offset. */
static size_t
redis_bus_blob(char *blob, size_t off, const char *s, const char **dst)
{
	size_t n = s ? strlen(s) + 1 : 0;

	*dst = NULL;
	if (s != NULL) {
		memcpy(blob + off, s, n);
		*dst = blob + off;
	}
	return off + n;
}

/* Queues a publish through the shared script; refused at once while the link is down. */
static void
redis_bus_publish(const struct publish_req *r, bus_publish_done *done, void *arg)
{
	size_t need = strlen(r->channel) + 1 + r->len + 1 + (r->type ? strlen(r->type) + 1 : 0) +
	    (r->session ? strlen(r->session) + 1 : 0) +
	    (r->exclude_session ? strlen(r->exclude_session) + 1 : 0) +
	    (r->origin ? strlen(r->origin) + 1 : 0);
	struct redis_publish *j;
	size_t off;

	if (!atomic_load(&ready) || (j = calloc(1, sizeof *j + need)) == NULL) {
		done(arg, -1, NULL, 0);
		return;
	}
	j->job.kind = JOB_PUBLISH;
	j->done = done;
	j->arg = arg;
	off = redis_bus_blob(j->blob, 0, r->channel, &j->req.channel);
	memcpy(j->blob + off, r->data, r->len);
	j->blob[off + r->len] = '\0';
	j->req.data = j->blob + off;
	j->req.len = r->len;
	off += r->len + 1;
	off = redis_bus_blob(j->blob, off, r->type, &j->req.type);
	off = redis_bus_blob(j->blob, off, r->session, &j->req.session);
	off = redis_bus_blob(j->blob, off, r->exclude_session, &j->req.exclude_session);
	redis_bus_blob(j->blob, off, r->origin, &j->req.origin);
	if (redis_bus_enqueue(&j->job) == -1) {
		free(j);
		done(arg, -1, NULL, 0);
	}
}

/* Hands the publish script's reply to the waiting request. */
static void
redis_bus_on_published(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_publish *j = priv;
	redisReply *r = reply;

	(void)ac;
	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER) {
		atomic_fetch_add(&counters.published, 1);
		j->done(j->arg, 0, r->element[0]->str, (unsigned)r->element[1]->integer);
	} else {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			log_error("redis: publish: %s", r->str);
		j->done(j->arg, -1, NULL, 0);
	}
	free(j);
}

/* Sends one publish, or fails it at once while the link is down. */
static void
redis_bus_run_publish(struct redis_publish *j)
{
	struct bus_publish_args a;
	struct bus_message m = { j->req.channel, j->req.type, j->req.session,
	    j->req.exclude_session, j->req.origin, j->req.data, j->req.len };

	if (!redis_link_up() || bus_publish_args(&a, redis_link_sha(SCRIPT_PUBLISH), redis_link_prefix(),
	    opt(OPT_HISTORY_SIZE), opt(OPT_HISTORY_TTL), &m) == -1 ||
	    redis_link_command_argv(redis_bus_on_published, j, BUS_PUBLISH_ARGC, a.argv, a.lens) == -1) {
		j->done(j->arg, -1, NULL, 0);
		free(j);
	}
}

/* A stream was attached: its member is made here and joins on the Redis thread. */
static void
redis_bus_join(struct stream *s, bus_join_done *done)
{
	size_t n = redis_counts_field(NULL, 0, s) + 1;
	struct redis_member *m = calloc(1, sizeof *m + n);

	if (m == NULL) {
		done(s, -1);
		return;
	}
	redis_counts_field(m->field, n, s);
	m->job.kind = JOB_JOIN;
	m->ch = channel_ref(s->ch);
	m->s = s;
	m->done = done;
	s->bus_member = m;
	if (redis_bus_enqueue(&m->job) == -1) {
		m->done = NULL;
		done(s, -1);	/* stopping: the leave frees m */
	}
}

/* A joined stream is gone: its member leaves on the Redis thread (or here once stopped). */
static void
redis_bus_leave(struct stream *s)
{
	struct redis_member *m = s->bus_member;

	if (m == NULL)
		return;
	s->bus_member = NULL;
	m->job.kind = JOB_LEAVE;
	if (redis_bus_enqueue(&m->job) == -1) {
		channel_put(m->ch);	/* closed: the Redis thread is gone, nothing links m */
		free(m);
	}
}

/* Redis mode always asks Redis (through the Redis thread) what a client missed. */
static int
redis_bus_position(struct channel *ch, const char *last_id, uint64_t *index)
{
	(void)ch;
	(void)last_id;
	(void)index;
	return BUS_POS_REMOTE;
}

/* Queues a replay, holding a stream reference until it is answered. */
static void
redis_bus_replay(struct stream *s, const char *last_id, bus_replay_done *done)
{
	size_t n = strlen(last_id);
	struct redis_replay *r;

	if (n >= BUS_ID_MAX)
		last_id = "x";	/* too long to be a stream id: simply unknown */
	n = strlen(last_id);
	pthread_mutex_lock(&s->ch->lock);
	stream_ref_locked(s);
	pthread_mutex_unlock(&s->ch->lock);
	if ((r = calloc(1, sizeof *r + n + 1)) == NULL) {
		done(s, RESET_UNAVAILABLE, 0, NULL, 0);
		return;
	}
	r->job.kind = JOB_REPLAY;
	r->s = s;
	r->done = done;
	memcpy(r->from, last_id, n + 1);
	if (bus_id_parse(last_id, n, &r->key) == -1)
		r->key = 0;
	if (redis_bus_enqueue(&r->job) == -1)
		redis_replay_cancel(r);
}

/* Queues a JMAP state fetch (redis_state.c); fails it at once when stopping. */
static void
redis_bus_jmap_state(struct stream *s, bus_state_done *done)
{
	struct redis_state *j = calloc(1, sizeof *j);

	if (j == NULL) {
		done(s, -1, NULL, 0);
		return;
	}
	j->job.kind = JOB_STATE;
	j->s = s;
	j->done = done;
	if (redis_bus_enqueue(&j->job) == -1) {
		free(j);
		done(s, -1, NULL, 0);
	}
}

/* Runs one job on the Redis thread (or, after it stopped, fails it). */
static void
redis_bus_run(struct redis_job *j)
{
	switch (j->kind) {
	case JOB_PUBLISH:
		redis_bus_run_publish((struct redis_publish *)j);
		break;
	case JOB_JOIN:
		redis_sub_join((struct redis_member *)j);
		break;
	case JOB_LEAVE:
		redis_sub_leave((struct redis_member *)j);
		break;
	case JOB_REPLAY:
		redis_replay_run((struct redis_replay *)j);
		break;
	case JOB_STATE:
		redis_state_run((struct redis_state *)j);
		break;
	}
}

/* Runs every queued job in order. */
static void
redis_bus_drain(void)
{
	struct jobq_node *n, *next;

	for (n = jobq_take(&queue); n != NULL; n = next) {
		next = n->next;
		redis_bus_run((struct redis_job *)n);
	}
}

/* The eventfd: jobs are waiting. */
static void
redis_bus_on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	(void)what;
	(void)arg;
	if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("redis: wake read: %s", strerror(errno));
	redis_bus_drain();
}

/* The link is up: announce this broker, subscribe what members need. */
static void
redis_bus_on_up(void)
{
	atomic_store(&ready, true);
	redis_counts_heartbeat();
	redis_sub_connected();
}

/* The link is down: refuse new work, fail what waited on it. */
static void
redis_bus_on_down(void)
{
	atomic_store(&ready, false);
	redis_sub_disconnected();
}

/* Four times a second: stop requests; every second the heartbeat and the channels' timers. */
static void
redis_bus_on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint32_t now = clock_sec();

	(void)fd;
	(void)what;
	(void)arg;
	if (jobq_stopped(&queue)) {
		atomic_store(&ready, false);
		redis_bus_drain();	/* what came before the stop runs or fails */
		redis_link_stop();	/* pending replies: publishes fail, joins fail, replays reset */
		redis_sub_disconnected();
		redis_sub_shutdown();
		event_base_loopexit(base, NULL);
		return;
	}
	if (now != last_beat) {
		last_beat = now;
		if (redis_link_up())
			redis_counts_heartbeat();
		redis_sub_tick(now);
	}
}

/* The Redis thread. */
static void *
redis_bus_main(void *arg)
{
	(void)arg;
	event_base_dispatch(base);
	return NULL;
}

/* Starts the link and the thread. */
static int
redis_bus_start(void)
{
	struct timeval quarter = { 0, 250000 };

	jobq_init(&queue, REDIS_QUEUE_MAX);
	if ((base = event_base_new()) == NULL ||
	    (wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1 ||
	    (wake_ev = event_new(base, wake_fd, EV_READ | EV_PERSIST, redis_bus_on_wake, NULL)) == NULL ||
	    (tick_ev = event_new(base, -1, EV_PERSIST, redis_bus_on_tick, NULL)) == NULL ||
	    event_add(wake_ev, NULL) == -1 || event_add(tick_ev, &quarter) == -1 ||
	    redis_link_start(base, redis_bus_on_up, redis_bus_on_down) == -1)
		return -1;
	if (pthread_create(&thread, NULL, redis_bus_main, NULL) != 0)
		return -1;
	thread_running = true;
	return 0;
}

/* Stops the thread: what is pending is answered (refused), then it exits. */
static void
redis_bus_stop(void)
{
	if (!thread_running)
		return;
	jobq_stop(&queue);
	pthread_join(thread, NULL);
	thread_running = false;
	/* Anything queued after the thread's last drain: the channels are gone, so each
	 * fails (a leave frees its member); after the close, callers do that themselves. */
	jobq_close(&queue);
	redis_bus_drain();
	event_free(wake_ev);
	event_free(tick_ev);
	event_base_free(base);
	close(wake_fd);
}

const struct bus_ops bus_redis = {
	.name = "redis",
	.start = redis_bus_start,
	.stop = redis_bus_stop,
	.ready = redis_bus_ready,
	.metrics = redis_bus_metrics,
	.floor = redis_bus_floor,
	.format_id = bus_id_format,
	.publish = redis_bus_publish,
	.join = redis_bus_join,
	.leave = redis_bus_leave,
	.position = redis_bus_position,
	.replay = redis_bus_replay,
	.jmap_state = redis_bus_jmap_state,
};
