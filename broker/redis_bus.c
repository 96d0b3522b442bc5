/*
 * The broker's Redis connection, on a thread of its own running libevent with
 * hiredis's async API: connecting (with AUTH and SELECT), loading the shared scripts,
 * reconnecting with jittered exponential backoff, the liveness heartbeat, and the job
 * queue through which HTTP threads publish, subscribe and replay without ever
 * waiting on Redis. Per-channel work is in bus_chan.c.
 */
#include "redis_bus.h"

#include <errno.h>
#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <unistd.h>

#include "log.h"
#include "redis_url.h"

bool bus_enabled;
redisAsyncContext *bus_cmd, *bus_sub;
bool bus_up;
char bus_sha_publish[41], bus_sha_replay[41], bus_sha_counts[41];
char bus_broker_id[17];

enum job_kind { JOB_PUBLISH, JOB_REPLAY, JOB_COUNT };

/* Work handed from HTTP threads to the Redis thread. */
struct bus_job {
	enum job_kind kind;
	struct bus_job *next;
	struct publish_req req;		/* JOB_PUBLISH: strings point into blob */
	bus_publish_done *done;
	void *arg;
	struct stream *stream;		/* JOB_REPLAY, referenced */
	struct channel *ch;		/* JOB_COUNT, referenced */
	uint32_t gen;
	int delta;
	char blob[];
};

static struct redis_url url;
static struct event_base *base;
static struct event *wake_ev, *tick_ev, *retry_ev;
static int wake_fd = -1;
static pthread_t thread;
static bool thread_running;
static atomic_bool ready;		/* bus_up, readable from any thread */
static char down_reason[128] = "connecting";
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bus_job *q_head, *q_tail;	/* under q_lock */
static struct channel *q_chans;		/* under q_lock */
static size_t q_len;			/* under q_lock */
static bool q_stop;			/* under q_lock */
static unsigned backoff_ms = BUS_BACKOFF_MIN_MS;
static bool stopping;			/* Redis thread's copy of q_stop */
static int scripts_pending;
static uint32_t last_beat;

static void bus_connect(void);

/* The key prefix (a non-reloadable directive, stable for the process). */
const char *
bus_prefix(void)
{
	return opt_str(OPT_REDIS_PREFIX);
}

/* Wakes the Redis thread to look at its queue. */
static void
bus_wake(void)
{
	uint64_t one = 1;

	if (write(wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_warn("redis: wake: %s", strerror(errno));
}

/* Appends a job (or fails when the queue is at its bound). */
static int
bus_enqueue(struct bus_job *j)
{
	pthread_mutex_lock(&q_lock);
	if (q_stop || q_len >= BUS_QUEUE_MAX) {
		pthread_mutex_unlock(&q_lock);
		return -1;
	}
	j->next = NULL;
	if (q_tail != NULL)
		q_tail->next = j;
	else
		q_head = j;
	q_tail = j;
	q_len++;
	pthread_mutex_unlock(&q_lock);
	bus_wake();
	return 0;
}

/* Whether Redis is usable; otherwise why not (for /healthz). */
bool
bus_ready(char *why, size_t len)
{
	if (atomic_load(&ready))
		return true;
	pthread_mutex_lock(&q_lock);
	snprintf(why, len, "redis: %s", down_reason);
	pthread_mutex_unlock(&q_lock);
	return false;
}

/* Copies optional strings into a job's blob; returns the new offset. */
static size_t
bus_blob_str(struct bus_job *j, size_t off, const char *s, const char **dst)
{
	size_t n = s ? strlen(s) + 1 : 0;

	*dst = NULL;
	if (s != NULL) {
		memcpy(j->blob + off, s, n);
		*dst = j->blob + off;
	}
	return off + n;
}

/*
 * Queues a publish through the shared script. done runs on the Redis thread with the
 * id and the subscriber count across brokers, or ok = -1. Returns -1 (and done is
 * never called) when Redis is not connected: the caller answers 503 at once.
 */
int
bus_publish(const struct publish_req *r, bus_publish_done *done, void *arg)
{
	size_t need = strlen(r->channel) + 1 + r->len + 1 + (r->type ? strlen(r->type) + 1 : 0) +
	    (r->session ? strlen(r->session) + 1 : 0) +
	    (r->exclude_session ? strlen(r->exclude_session) + 1 : 0) +
	    (r->origin ? strlen(r->origin) + 1 : 0);
	struct bus_job *j;
	size_t off;

	if (!atomic_load(&ready) || (j = calloc(1, sizeof *j + need)) == NULL)
		return -1;
	j->kind = JOB_PUBLISH;
	j->done = done;
	j->arg = arg;
	off = bus_blob_str(j, 0, r->channel, &j->req.channel);
	memcpy(j->blob + off, r->data, r->len);
	j->blob[off + r->len] = '\0';
	j->req.data = j->blob + off;
	j->req.len = r->len;
	off += r->len + 1;
	off = bus_blob_str(j, off, r->type, &j->req.type);
	off = bus_blob_str(j, off, r->session, &j->req.session);
	off = bus_blob_str(j, off, r->exclude_session, &j->req.exclude_session);
	bus_blob_str(j, off, r->origin, &j->req.origin);
	if (bus_enqueue(j) == -1) {
		free(j);
		return -1;
	}
	return 0;
}

/* Queues a replay for a stream that reconnected with an id the ring cannot serve. */
void
bus_replay(struct stream *s, const char *from)
{
	struct bus_job *j = calloc(1, sizeof *j + strlen(from) + 1);

	if (j == NULL)
		return;		/* the stream stays pending until its client gives up */
	j->kind = JOB_REPLAY;
	j->stream = s;
	s->refs++;		/* caller holds ch->lock */
	memcpy(j->blob, from, strlen(from) + 1);
	if (bus_enqueue(j) == -1) {
		s->refs--;
		free(j);
	}
}

/* Queues a change of this broker's subscriber count for a (session, origins) field; ch->lock held. */
void
bus_count_delta(struct channel *ch, const struct stream *s, int delta)
{
	const char *sess = s->session ? s->session : "", *orig = s->origins ? s->origins : "";
	size_t n = strlen(bus_broker_id) + strlen(sess) + strlen(orig) + 3;
	struct bus_job *j = calloc(1, sizeof *j + n);

	if (j == NULL)
		return;		/* the next full recount repairs it */
	j->kind = JOB_COUNT;
	j->ch = channel_ref(ch);
	j->gen = ch->count_gen;
	j->delta = delta;
	snprintf(j->blob, n, "%s%c%s%c%s", bus_broker_id, BUS_FIELD_SEP, sess, BUS_FIELD_SEP, orig);
	if (bus_enqueue(j) == -1) {
		channel_put(ch);
		free(j);
	}
}

/* Marks a channel whose local subscriber set changed, for the Redis thread. */
void
bus_channel_changed(struct channel *ch)
{
	pthread_mutex_lock(&q_lock);
	if (!ch->bus_queued && !q_stop) {
		ch->bus_queued = true;
		ch->bus_next = q_chans;
		q_chans = channel_ref(ch);
	}
	pthread_mutex_unlock(&q_lock);
	bus_wake();
}

/* Hands the publish script's reply to the waiting HTTP request. */
static void
bus_on_published(redisAsyncContext *ac, void *reply, void *priv)
{
	struct bus_job *j = priv;
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

/* Sends one publish, or fails it at once while Redis is down. */
static void
bus_run_publish(struct bus_job *j)
{
	struct bus_publish_args a;
	struct bus_message m = { j->req.channel, j->req.type, j->req.session,
	    j->req.exclude_session, j->req.origin, j->req.data, j->req.len };

	if (!bus_up || bus_publish_args(&a, bus_sha_publish, bus_prefix(), opt(OPT_HISTORY_SIZE),
	    opt(OPT_HISTORY_TTL), &m) == -1 ||
	    redisAsyncCommandArgv(bus_cmd, bus_on_published, j, BUS_PUBLISH_ARGC, a.argv, a.lens) != REDIS_OK) {
		j->done(j->arg, -1, NULL, 0);
		free(j);
	}
}

/* Drains the queue: channels first (so subscriptions precede replays), then jobs. */
static void
bus_on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;
	struct bus_job *j, *next;
	struct channel *ch, *cnext;

	(void)what;
	(void)arg;
	if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("redis: wake read: %s", strerror(errno));
	pthread_mutex_lock(&q_lock);
	j = q_head;
	ch = q_chans;
	q_head = q_tail = NULL;
	q_chans = NULL;
	q_len = 0;
	for (cnext = ch; cnext != NULL; cnext = cnext->bus_next)
		cnext->bus_queued = false;
	pthread_mutex_unlock(&q_lock);
	for (; ch != NULL; ch = cnext) {
		cnext = ch->bus_next;
		bus_chan_touch(ch);
		channel_put(ch);
	}
	for (; j != NULL; j = next) {
		next = j->next;
		if (j->kind == JOB_PUBLISH)
			bus_run_publish(j);
		else if (j->kind == JOB_REPLAY) {
			bus_chan_replay_job(j->stream, j->blob);
			free(j);
		} else {
			bus_chan_count_job(j->ch, j->gen, j->delta, j->blob);
			channel_put(j->ch);
			free(j);
		}
	}
}

/* Records why Redis is unusable (for /healthz) and logs a change once. */
static void
bus_set_down(const char *why)
{
	bool was = atomic_exchange(&ready, false);

	bus_up = false;
	pthread_mutex_lock(&q_lock);
	snprintf(down_reason, sizeof down_reason, "%s", why);
	pthread_mutex_unlock(&q_lock);
	if (was && stopping)
		log_info("redis: disconnected (%s)", why);
	else if (was)
		log_error("redis: down: %s", why);
}

/* Schedules the next connection attempt with exponential backoff and jitter. */
static void
bus_schedule_retry(void)
{
	unsigned j = 0;
	struct timeval tv;

	getrandom(&j, sizeof j, GRND_NONBLOCK);
	j = backoff_ms / 2 + j % (backoff_ms / 2 + 1);
	tv.tv_sec = j / 1000;
	tv.tv_usec = (j % 1000) * 1000;
	evtimer_add(retry_ev, &tv);
	backoff_ms = backoff_ms * 2 > BUS_BACKOFF_MAX_MS ? BUS_BACKOFF_MAX_MS : backoff_ms * 2;
}

/*
 * Tears both connections down after either failed: a broker is either fully
 * connected (and subscribed to all it needs) or reconnecting.
 */
void
bus_fail(const char *why)
{
	redisAsyncContext *c = bus_cmd, *s = bus_sub;

	bus_set_down(why);
	bus_cmd = bus_sub = NULL;
	/* Pending callbacks get their replies, or NULL if the connection is dead. */
	if (c != NULL)
		redisAsyncDisconnect(c);
	if (s != NULL)
		redisAsyncDisconnect(s);
	bus_chan_disconnected();
	if (!stopping && !evtimer_pending(retry_ev, NULL))
		bus_schedule_retry();
}

/* Both connections' disconnect callback. */
static void
bus_on_disconnect(const redisAsyncContext *ac, int status)
{
	char why[128];

	snprintf(why, sizeof why, "%s", status == REDIS_OK ? "disconnected" :
	    (ac->errstr[0] ? ac->errstr : "connection lost"));
	if (ac == bus_cmd)
		bus_cmd = NULL;
	else if (ac == bus_sub)
		bus_sub = NULL;
	else
		return;		/* the other half of a teardown we started */
	bus_fail(why);
}

/* Both connections' connect callback: a failed connect is retried later. */
static void
bus_on_connect(const redisAsyncContext *ac, int status)
{
	if (status == REDIS_OK)
		return;
	if (ac == bus_cmd)
		bus_cmd = NULL;
	else if (ac == bus_sub)
		bus_sub = NULL;
	bus_fail(ac->errstr[0] ? ac->errstr : "cannot connect");
}

/* Refreshes this broker's liveness key; its counts vanish soon after it stops. */
static void
bus_heartbeat(void)
{
	char key[BUS_KEY_MAX], ttl[16];

	if (!bus_up)
		return;
	snprintf(key, sizeof key, "%sb:%s", bus_prefix(), bus_broker_id);
	snprintf(ttl, sizeof ttl, "%d", BUS_ALIVE_MS);
	redisAsyncCommand(bus_cmd, NULL, NULL, "SET %s 1 PX %s", key, ttl);
}

/* A script's SHA arrived; once all three are known the bus is up. */
static void
bus_on_script(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;
	char *sha = priv;

	(void)ac;
	if (r == NULL)
		return;		/* connection lost: bus_fail handles it */
	if (r->type != REDIS_REPLY_STRING || r->len != 40) {
		bus_fail(r->type == REDIS_REPLY_ERROR ? r->str : "SCRIPT LOAD failed");
		return;
	}
	memcpy(sha, r->str, 41);
	if (--scripts_pending > 0)
		return;
	bus_up = true;
	atomic_store(&ready, true);
	backoff_ms = BUS_BACKOFF_MIN_MS;
	log_info("redis: connected as broker %s", bus_broker_id);
	bus_heartbeat();
	bus_chan_connected();
}

/* Reports a failed AUTH or SELECT, which would otherwise go unnoticed. */
static void
bus_on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply;

	(void)ac;
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		bus_fail(priv ? (const char *)priv : r->str);
}

static char auth_failed[] = "AUTH failed";

/* Opens one connection and queues its set-up commands. */
static redisAsyncContext *
bus_open(bool is_cmd)
{
	redisAsyncContext *c = url.path[0] ? redisAsyncConnectUnix(url.path) :
	    redisAsyncConnect(url.host, url.port);

	if (c == NULL || c->err) {
		if (c != NULL)
			redisAsyncFree(c);
		return NULL;
	}
	redisLibeventAttach(c, base);
	redisAsyncSetConnectCallback(c, bus_on_connect);
	redisAsyncSetDisconnectCallback(c, bus_on_disconnect);
	if (url.password[0])
		redisAsyncCommand(c, bus_on_setup, auth_failed, "AUTH %s", url.password);
	if (is_cmd && url.db != 0)
		redisAsyncCommand(c, bus_on_setup, NULL, "SELECT %d", url.db);
	return c;
}

/* One connection attempt: a command connection and a pub/sub connection. */
static void
bus_connect(void)
{
	if ((bus_cmd = bus_open(true)) == NULL || (bus_sub = bus_open(false)) == NULL) {
		if (bus_cmd != NULL)
			redisAsyncFree(bus_cmd);
		bus_cmd = NULL;
		bus_set_down("cannot create a connection");
		bus_schedule_retry();
		return;
	}
	scripts_pending = 3;
	redisAsyncCommand(bus_cmd, bus_on_script, bus_sha_publish, "SCRIPT LOAD %s", bus_publish_script);
	redisAsyncCommand(bus_cmd, bus_on_script, bus_sha_replay, "SCRIPT LOAD %s", bus_replay_script);
	redisAsyncCommand(bus_cmd, bus_on_script, bus_sha_counts, "SCRIPT LOAD %s", bus_counts_script);
}

/* The reconnect timer fired. */
static void
bus_on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (bus_cmd == NULL && bus_sub == NULL)
		bus_connect();
}

/* Four times a second: heartbeat every second, lingering channels, stop requests. */
static void
bus_on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint32_t now = clock_sec();
	bool stop;

	(void)fd;
	(void)what;
	(void)arg;
	pthread_mutex_lock(&q_lock);
	stop = q_stop;
	pthread_mutex_unlock(&q_lock);
	if (stop) {
		redisAsyncContext *c = bus_cmd, *sc = bus_sub;

		stopping = true;
		bus_set_down("broker stopping");
		bus_chan_shutdown();
		bus_cmd = bus_sub = NULL;
		/* Free at once: every pending callback runs now with a NULL reply, so no
		 * publish request stays suspended past this point. */
		if (c != NULL)
			redisAsyncFree(c);
		if (sc != NULL)
			redisAsyncFree(sc);
		bus_chan_disconnected();
		evtimer_del(retry_ev);
		event_base_loopexit(base, NULL);
		return;
	}
	if (now != last_beat) {
		last_beat = now;
		bus_heartbeat();
		bus_chan_tick(now);
	}
}

/* The Redis thread. */
static void *
bus_main(void *arg)
{
	(void)arg;
	bus_connect();
	event_base_dispatch(base);
	return NULL;
}

/* Parses `redis`, draws this broker's id and starts the thread. */
int
bus_start(void)
{
	char err[160];
	unsigned char b[8];
	size_t i;
	struct timeval quarter = { 0, 250000 };

	if (*opt_str(OPT_REDIS) == '\0')
		return 0;
	if (redis_url_parse(opt_str(OPT_REDIS), &url, err, sizeof err) == -1) {
		log_error("redis: %s", err);
		return -1;
	}
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		return -1;
	for (i = 0; i < sizeof b; i++)
		sprintf(bus_broker_id + 2 * i, "%02x", b[i]);
	bus_enabled = true;
	if ((base = event_base_new()) == NULL ||
	    (wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1 ||
	    (wake_ev = event_new(base, wake_fd, EV_READ | EV_PERSIST, bus_on_wake, NULL)) == NULL ||
	    (tick_ev = event_new(base, -1, EV_PERSIST, bus_on_tick, NULL)) == NULL ||
	    (retry_ev = evtimer_new(base, bus_on_retry, NULL)) == NULL ||
	    event_add(wake_ev, NULL) == -1 || event_add(tick_ev, &quarter) == -1)
		return -1;
	if (pthread_create(&thread, NULL, bus_main, NULL) != 0)
		return -1;
	thread_running = true;
	return 0;
}

/* Stops the thread: pending publishes fail (their requests answer 503), then it exits. */
void
bus_stop(void)
{
	if (!thread_running)
		return;
	pthread_mutex_lock(&q_lock);
	q_stop = true;
	pthread_mutex_unlock(&q_lock);
	pthread_join(thread, NULL);
	thread_running = false;
	/* Anything queued after the last drain: fail publishes, drop the rest. */
	bus_on_wake(wake_fd, 0, NULL);
	event_free(wake_ev);
	event_free(tick_ev);
	event_free(retry_ev);
	event_base_free(base);
	close(wake_fd);
}
