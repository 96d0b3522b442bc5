/*
 * The Redis bus (bus.h): brokers share publishes, history and subscriber counts
 * through Redis (layout and scripts: include/redis_keys.h). Everything that talks to
 * Redis runs on one thread of its own with a libevent loop; other threads hand it
 * work through one FIFO job queue (so a stream's join always precedes its replay and
 * its leave) and never wait for it: publishes, joins and replays are answered through
 * their callbacks. Each channel lives on one shard (redis_link_shard_of); while its
 * shard's link is down, its publishes and joins are refused at once and its replays end
 * in a reset, and the other shards go on. With redis_min_replicas N, the publishes one
 * drain of the queue sends to a shard are followed by one WAIT there, and each is
 * answered only once WAIT says N replicas hold it (else it is refused: the publisher
 * may retry). Per-channel work is in redis_sub.c, counts in redis_counts.c, replays in
 * redis_replay.c, the connections in redis_link.c.
 */
#include "redis_bus.h"

#include <errno.h>
#include <event2/event.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "jmap.h"
#include "log.h"
#include "redis_url.h"

/* A publish waiting for the Redis thread (then for its reply, then maybe for WAIT); its strings live in blob. */
struct redis_publish {
	struct redis_job job;		/* first */
	struct publish_req req;
	bus_publish_done *done;
	void *arg;
	struct redis_publish *wait_next;	/* the WAIT batch it is in */
	unsigned shard;
	bool waits;			/* answered by its WAIT, not by the script's reply */
	bool stored;			/* the script's reply came: id and subscribers are set */
	bool refused;			/* no WAIT could be sent for it: refused when its reply comes */
	unsigned subscribers;
	char id[BUS_ID_MAX];
	char blob[];
};

/* One WAIT's context: the publishes sent just before it on its shard. */
struct redis_wait {
	struct redis_publish *list;
	unsigned shard;
	long long need;
};

static struct event_base *base;
static struct event *wake_ev, *tick_ev;
static int wake_fd = -1;
static pthread_t thread;
static bool thread_running;
static struct jobq queue;		/* every job, in order; publishes bounded */
static uint32_t last_beat;
static struct redis_publish *batch[REDIS_URL_SHARDS_MAX];	/* sent in this drain, to be WAITed for */

/*
 * The daemon this thread runs (bus->serve: publish_listen's), its epoll set's event and
 * the timer libmicrohttpd asks for. A publish it takes in is sent to Redis by the drain
 * that follows MHD_run, and its answer resumes it on this thread too: no thread is woken
 * between the request and its reply (the publish loops' hop to this thread and back).
 */
static struct MHD_Daemon *served;
static struct event *served_ev, *served_timer;
static __thread bool serving;		/* inside MHD_run here: the drain after it runs the jobs */
static __thread bool on_thread;		/* this is the Redis thread */

/* The serve job: the daemon to run from now on. */
struct redis_serve {
	struct redis_job job;		/* first */
	struct MHD_Daemon *d;
};

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
	if (!serving)
		redis_bus_wake();
	return 0;
}

/* Whether every shard's link is up; otherwise which one is not, and why (any thread). */
static bool
redis_bus_ready(char *why, size_t len)
{
	return redis_link_why(why, len);
}

/* Whether some publish can succeed: some shard is up (any thread). */
static bool
redis_bus_accepting(char *why, size_t len)
{
	if (redis_link_any_usable())
		return true;
	redis_link_why(why, len);
	return false;
}

/* ssepush_redis_up (every shard up) and ssepush_redis_shard_up. */
static void
redis_bus_metrics(FILE *f)
{
	char why[8];

	fprintf(f, "# HELP ssepush_redis_up 1 when the Redis bus is connected (every shard; always 0 standalone).\n"
	    "# TYPE ssepush_redis_up gauge\nssepush_redis_up %d\n", redis_link_why(why, sizeof why) ? 1 : 0);
	redis_link_metrics(f);
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
	unsigned shard = redis_link_shard_of(r->channel);
	size_t off;

	if (!redis_link_usable(shard) || (j = calloc(1, sizeof *j + need)) == NULL) {
		done(arg, -1, NULL, 0);
		return;
	}
	j->job.kind = JOB_PUBLISH;
	j->shard = shard;
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

/* Hands the publish script's reply to the waiting request, or keeps it for the WAIT that follows. */
static void
redis_bus_on_published(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_publish *j = priv;
	redisReply *r = reply;

	(void)ac;
	if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	    r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_INTEGER &&
	    r->element[0]->len < sizeof j->id) {
		memcpy(j->id, r->element[0]->str, r->element[0]->len + 1);
		j->subscribers = (unsigned)r->element[1]->integer;
		j->stored = true;
	} else if (r != NULL && r->type == REDIS_REPLY_ERROR) {
		log_error("redis: publish: %s", r->str);
		/* A primary demoted behind our back (a failover we did not hear of): find the new one. */
		if (strstr(r->str, "READONLY") != NULL)
			redis_link_fail(j->shard, "the server is a replica now (READONLY)");
	}
	if (j->waits)
		return;		/* its WAIT's reply answers it */
	if (j->stored && !j->refused) {
		atomic_fetch_add(&counters.published, 1);
		j->done(j->arg, 0, j->id, j->subscribers);
	} else
		j->done(j->arg, -1, NULL, 0);
	free(j);
}

/* WAIT's reply: the batch's publishes are answered, accepted only if enough replicas hold them. */
static void
redis_bus_on_waited(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_wait *w = priv;
	struct redis_publish *j, *next;
	redisReply *r = reply;
	bool enough = r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= w->need;

	(void)ac;
	if (r != NULL && !enough)
		log_warn("redis: publish not acknowledged by %lld replicas (WAIT: %lld%s); answered 503", w->need,
		    r->type == REDIS_REPLY_INTEGER ? r->integer : -1, r->type == REDIS_REPLY_ERROR ? ", an error" : "");
	for (j = w->list; j != NULL; j = next) {
		next = j->wait_next;
		if (j->stored && enough) {
			atomic_fetch_add(&counters.published, 1);
			j->done(j->arg, 0, j->id, j->subscribers);
		} else
			j->done(j->arg, -1, NULL, 0);
		free(j);
	}
	free(w);
}

/* A batch no WAIT will answer: each publish is refused when its own reply comes. */
static void
redis_bus_refuse_batch(struct redis_publish *j)
{
	for (; j != NULL; j = j->wait_next) {
		j->waits = false;
		j->refused = true;
	}
}

/*
 * Sends one WAIT per shard after the publishes this drain sent there. Its timeout is
 * redis_wait_ms, capped at half of redis_timeout so the reply timeout cannot fire first.
 * The replies come in order, so when WAIT's arrives every publish of the batch has its own.
 */
static void
redis_bus_send_waits(void)
{
	char need[24], ms[24];
	const char *argv[3] = { "WAIT", need, ms };
	long long t = opt(OPT_REDIS_WAIT_MS), cap = opt(OPT_REDIS_TIMEOUT) / 2;
	struct redis_wait *w;
	unsigned i;

	for (i = 0; i < redis_link_shards(); i++) {
		if (batch[i] == NULL)
			continue;
		if ((w = calloc(1, sizeof *w)) == NULL) {
			redis_bus_refuse_batch(batch[i]);	/* their replies are still to come */
			batch[i] = NULL;
			continue;
		}
		w->list = batch[i];
		w->shard = i;
		w->need = opt(OPT_REDIS_MIN_REPLICAS) > 0 ? opt(OPT_REDIS_MIN_REPLICAS) : 1;
		batch[i] = NULL;
		snprintf(need, sizeof need, "%lld", w->need);
		snprintf(ms, sizeof ms, "%lld", t < cap ? t : cap > 0 ? cap : 1);
		if (redis_link_command(i, redis_bus_on_waited, w, 3, argv) == -1) {
			/* Dropping the link first runs every pending reply (with NULL): none is left to come. */
			redis_link_fail(i, "cannot send WAIT");
			redis_bus_on_waited(NULL, NULL, w);
		}
	}
}

/* The merge script's reply: nothing waits for it, but an error is worth a line. */
static void
redis_bus_on_merged(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	(void)priv;
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		log_error("redis: jmap state merge: %s", r->str);
}

/* Whether a state is what the merge script compares: decimal, no leading zero. */
static bool
redis_bus_decimal(const char *s)
{
	size_t n = strspn(s, "0123456789");

	return n > 0 && s[n] == '\0' && (s[0] != '0' || n == 1);
}

/*
 * An HTTP publish of jmap-state: its states go into the account's hash first, with the
 * pusher's merge script on the same connection (so it runs before the publish), and a
 * reconnect to any broker is answered from them as from the pusher's. Only decimal
 * states are kept there (the script compares decimals); the event goes out as given.
 */
static void
redis_bus_merge_jmap(const struct redis_publish *j)
{
	const char *argv[5 + 2 * JMAP_TYPES_MAX];
	size_t lens[5 + 2 * JMAP_TYPES_MAX];
	char key[BUS_KEY_MAX];
	struct jmap_map m;
	int argc = 0, i;
	unsigned k;

	if (j->req.type == NULL || strcmp(j->req.type, JMAP_STATE_EVENT) != 0 ||
	    jmap_map_parse_json(j->req.data, j->req.len, &m) == -1 ||
	    bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_JMAP, j->req.channel) == 0)
		return;
	argv[argc++] = "EVALSHA";
	argv[argc++] = redis_link_sha(j->shard, SCRIPT_JMAP_STATE);
	argv[argc++] = "1";
	argv[argc++] = key;
	argv[argc++] = "0";
	for (k = 0; k < m.n; k++) {
		if (!redis_bus_decimal(m.e[k].state))
			continue;
		argv[argc++] = m.e[k].type;
		argv[argc++] = m.e[k].state;
	}
	if (argc == 5)
		return;
	for (i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	if (redis_link_command_argv(j->shard, redis_bus_on_merged, NULL, argc, argv, lens) == -1)
		log_warn("redis: channel %s: cannot send the jmap state merge", j->req.channel);
}

/* Sends one publish, or fails it at once while the link is down. */
static void
redis_bus_run_publish(struct redis_publish *j)
{
	struct bus_publish_args a;
	struct bus_message m = { j->req.channel, j->req.type, j->req.session,
	    j->req.exclude_session, j->req.origin, j->req.data, j->req.len };

	if (redis_link_up(j->shard))
		redis_bus_merge_jmap(j);
	if (!redis_link_up(j->shard) || bus_publish_args(&a, redis_link_sha(j->shard, SCRIPT_PUBLISH),
	    redis_link_prefix(), opt(OPT_HISTORY_SIZE), opt(OPT_HISTORY_TTL), &m) == -1 ||
	    redis_link_command_argv(j->shard, redis_bus_on_published, j, BUS_PUBLISH_ARGC, a.argv, a.lens) == -1) {
		j->done(j->arg, -1, NULL, 0);
		free(j);
		return;
	}
	if (opt(OPT_REDIS_MIN_REPLICAS) > 0) {
		/* Kept in the batch until the WAIT sent after this drain answers. */
		j->waits = true;
		j->wait_next = batch[j->shard];
		batch[j->shard] = j;
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

static void redis_bus_serve_start(struct redis_serve *j);

/* The served daemon runs once this loop's callbacks are done (the Redis thread; no system call). */
static void
redis_bus_serve_soon(void)
{
	if (served != NULL)
		event_active(served_ev, EV_READ, 0);
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
	case JOB_SERVE:
		redis_bus_serve_start((struct redis_serve *)j);
		break;
	case JOB_RESUMED:
		if (on_thread)
			redis_bus_serve_soon();
		free(j);
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
	redis_bus_send_waits();
}

/* Runs the served daemon once: what it reads goes to Redis in one write per connection. */
static void
redis_bus_on_served(evutil_socket_t fd, short what, void *arg)
{
	MHD_UNSIGNED_LONG_LONG ms;
	struct timeval tv;

	(void)fd;
	(void)what;
	(void)arg;
	redis_link_defer_writes();
	serving = true;
	MHD_run(served);
	serving = false;
	redis_bus_drain();
	redis_link_flush();
	/* Again when libmicrohttpd's next timeout is due (0: it has input left to process). */
	if (MHD_get_timeout(served, &ms) == MHD_YES) {
		tv.tv_sec = (time_t)(ms / 1000);
		tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
		event_add(served_timer, &tv);
	}
}

/*
 * The serve job: the daemon's epoll set joins this thread's loop (after the stop:
 * nothing). That set is watched level-triggered, so what it held before is seen too.
 */
static void
redis_bus_serve_start(struct redis_serve *j)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(j->d, MHD_DAEMON_INFO_EPOLL_FD);

	if (on_thread && di != NULL && served == NULL &&
	    (served_ev = event_new(base, di->epoll_fd, EV_READ | EV_PERSIST, redis_bus_on_served, NULL)) != NULL &&
	    (served_timer = evtimer_new(base, redis_bus_on_served, NULL)) != NULL &&
	    event_add(served_ev, NULL) == 0)
		served = j->d;
	else if (on_thread)
		log_error("redis: cannot run the publish daemon on the Redis thread");
	free(j);
}

/* Stops running the served daemon: quiesced (its listen socket closed), then handed back. */
static void
redis_bus_serve_stop(void)
{
	MHD_socket fd;

	if (served == NULL)
		return;
	/* No thread of libmicrohttpd's holds the socket: it is out of the epoll set now. */
	if ((fd = MHD_quiesce_daemon(served)) != MHD_INVALID_SOCKET)
		close(fd);
	MHD_run(served);	/* what the stop answered goes out */
	event_free(served_ev);
	event_free(served_timer);
	served_ev = served_timer = NULL;
	served = NULL;
}

/*
 * One of the served daemon's connections was resumed: here, it runs once this loop's
 * callbacks are done; from another thread, a job says so (the queue, not the eventfd:
 * a push after the stop is refused, where a write could hit a closed descriptor).
 */
static void
redis_bus_resumed(void)
{
	struct redis_job *j;

	if (on_thread) {
		redis_bus_serve_soon();
		return;
	}
	if ((j = calloc(1, sizeof *j)) == NULL)
		return;		/* the next request or timeout runs it */
	j->kind = JOB_RESUMED;
	if (redis_bus_enqueue(j) == -1)
		free(j);	/* stopped: whoever stopped the bus runs the daemon now */
}

/* Queues the daemon to run on this thread (bus->serve). */
static int
redis_bus_serve(struct MHD_Daemon *d)
{
	struct redis_serve *j = calloc(1, sizeof *j);

	if (j == NULL)
		return -1;
	j->job.kind = JOB_SERVE;
	j->d = d;
	if (redis_bus_enqueue(&j->job) == -1) {
		free(j);
		return -1;
	}
	return 0;
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
	redis_link_defer_writes();	/* the drain's commands go out in one write per connection */
	redis_bus_drain();
	redis_link_flush();
}

/* A shard's link is up: announce this broker there, subscribe what its channels' members need. */
static void
redis_bus_on_up(unsigned shard)
{
	redis_counts_heartbeat(shard);
	redis_sub_connected(shard);
}

/* A shard's link is down: fail what waited on it (new work is refused: the link says so). */
static void
redis_bus_on_down(unsigned shard)
{
	redis_sub_disconnected(shard);
}

/* Four times a second: stop requests; every second the heartbeat and the channels' timers. */
static void
redis_bus_on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint32_t now = clock_sec();
	unsigned i, n = redis_link_shards();

	(void)fd;
	(void)what;
	(void)arg;
	if (jobq_stopped(&queue)) {
		redis_bus_drain();	/* what came before the stop runs or fails */
		redis_link_stop();	/* pending replies: publishes fail, joins fail, replays reset */
		for (i = 0; i < n; i++)
			redis_sub_disconnected(i);
		redis_sub_shutdown();
		redis_bus_serve_stop();
		event_base_loopexit(base, NULL);
		return;
	}
	if (now != last_beat) {
		last_beat = now;
		for (i = 0; i < n; i++)
			if (redis_link_up(i))
				redis_counts_heartbeat(i);
		redis_sub_tick(now);
	}
}

/* The Redis thread. */
static void *
redis_bus_main(void *arg)
{
	(void)arg;
	on_thread = true;
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
	.accepting = redis_bus_accepting,
	.metrics = redis_bus_metrics,
	.floor = redis_bus_floor,
	.format_id = bus_id_format,
	.publish = redis_bus_publish,
	.join = redis_bus_join,
	.leave = redis_bus_leave,
	.position = redis_bus_position,
	.replay = redis_bus_replay,
	.jmap_state = redis_bus_jmap_state,
	.serve = redis_bus_serve,
	.resumed = redis_bus_resumed,
};
