/*
 * The web push sender: one thread with its own libevent base, fed through a bounded
 * queue (events offered by the publish path, registration jobs from HTTP handlers),
 * sending through libcurl's multi interface driven by that base (curl's socket and
 * timer callbacks). Each message is encrypted once (a fresh key and salt), signed
 * with a VAPID token cached per push service origin, sent with TTL, Urgency and the
 * channel's Topic; at most webpush_concurrency requests are in flight, and at most
 * webpush_queue messages wait or retry. 5xx and network errors retry with backoff,
 * 429 after its Retry-After, 404 and 410 remove the registration. Owns the metrics.
 */
#include "broker.h"
#include "webpush.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/sha.h>

#include "log.h"

#define SEND_TOKENS 64			/* push service origins whose token is cached */
#define SEND_STATUS_MAX 600		/* HTTP statuses counted one by one */
#define SEND_HIST 12			/* latency buckets (counters_bounds) */

/* One queued item: an offered event, or a registration job. */
struct send_item {
	struct send_item *next;
	struct webpush_event *ev;	/* an event, or NULL for a job */
	struct webpush_reg reg;		/* job: the registration to add, or channel + id to remove */
	bool remove;
	webpush_job_done *done;
	void *arg;
};

/* One message to one registration, from its first try to its last. */
struct send {
	struct send *next;		/* the waiting FIFO */
	struct send *iprev, *inext;	/* the in-flight list */
	struct webpush_event *ev;	/* a reference (ev->refs) */
	struct webpush_reg reg;		/* a copy: the store may change meanwhile */
	unsigned char *body;		/* the encrypted message, built once */
	size_t bodylen;
	CURL *easy;
	struct curl_slist *headers;
	struct event *timer;		/* a retry's wait */
	unsigned attempts;
	char urgency[12];
	char error[CURL_ERROR_SIZE];
};

/* A cached VAPID token. */
struct token {
	char origin[WEBPUSH_ORIGIN_MAX + 1];
	char value[WEBPUSH_TOKEN_MAX];
	long long exp;
};

static struct {
	bool on, redis;
	pthread_t thread;
	bool started;
	struct event_base *base;
	struct event *wake_ev, *curl_timer;
	int wake_fd;
	CURLM *multi;
	EVP_PKEY *key;
	char public_b64[WEBPUSH_B64_LEN(WEBPUSH_PUBKEY_LEN) + 1];
	pthread_mutex_t lock;		/* queue_lock: head, tail, nqueued, stopping */
	struct send_item *head, *tail;
	size_t nqueued;
	bool stopping;
	struct send *wait_head, *wait_tail;	/* sender thread only */
	size_t inflight;
	struct send *inflight_head;
	struct token tokens[SEND_TOKENS];
} s = { .wake_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

/* Metrics (any thread reads). */
static atomic_ullong m_sent, m_removed, m_dropped, m_retries, m_network, m_pending;
static atomic_ullong m_status[SEND_STATUS_MAX];
static atomic_ullong m_hist[SEND_HIST], m_hist_count, m_hist_sum_us;

static void send_pump(void);

/* Wall-clock milliseconds. */
static int64_t
send_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Whether web push is on (fixed at start-up). */
bool
webpush_enabled(void)
{
	return s.on;
}

/* The VAPID public key, base64url (fixed at start-up; "" while off). */
const char *
webpush_public_key(void)
{
	return s.public_b64;
}

/* Drops a reference; the last one finishes the event (Redis: acknowledged). */
static void
send_event_release(struct webpush_event *ev)
{
	if (--ev->refs > 0)
		return;
	if (ev->entry[0] != '\0')
		webpush_redis_event_done(ev);
	webpush_event_free(ev);
}

/* Appends an item to the queue and wakes the thread; -1 when stopping or full. */
static int
send_enqueue(struct send_item *it, bool bounded)
{
	uint64_t one = 1;
	bool ok;

	pthread_mutex_lock(&s.lock);
	ok = !s.stopping && (!bounded || s.nqueued < (size_t)opt(OPT_WEBPUSH_QUEUE));
	if (ok) {
		it->next = NULL;
		if (s.tail != NULL)
			s.tail->next = it;
		else
			s.head = it;
		s.tail = it;
		s.nqueued++;
	}
	pthread_mutex_unlock(&s.lock);
	if (ok && write(s.wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
		log_error("webpush: wake: %s", strerror(errno));
	return ok ? 0 : -1;
}

/* strdup of an optional string ("" stays NULL for the filters). */
static char *
send_dup(const char *v, bool empty_is_null)
{
	if (v == NULL || (empty_is_null && *v == '\0'))
		return NULL;
	return strdup(v);
}

/* Standalone: whether the channel's events go to web push (any thread, under ch->lock too). */
bool
webpush_wants(const char *channel)
{
	return s.on && !s.redis && webpush_store_interested(channel);
}

/*
 * The publish hook (standalone): an event of a channel with registrations is copied
 * into the queue with what it reached (subscribers, and the sessions of the streams in
 * reached, borrowed); which registrations are offline is decided per registration.
 * Never blocks.
 */
void
webpush_offer(const struct publish_req *req, const char *id, unsigned subscribers, const char *reached)
{
	struct send_item *it;
	struct webpush_event *ev;

	if (!s.on || s.redis || !webpush_store_interested(req->channel))
		return;
	if ((it = calloc(1, sizeof *it)) == NULL || (ev = calloc(1, sizeof *ev)) == NULL) {
		free(it);
		atomic_fetch_add(&m_dropped, 1);
		return;
	}
	it->ev = ev;
	ev->channel = strdup(req->channel);
	ev->id = strdup(id);
	ev->type = strdup(req->type != NULL ? req->type : "message");
	ev->session = send_dup(req->session, true);
	ev->exclude_session = send_dup(req->exclude_session, true);
	ev->data = malloc(req->len + 1);
	ev->len = req->len;
	ev->subscribers = subscribers;
	ev->reached = send_dup(reached, true);	/* NULL: nobody got it, or unknown */
	ev->published_ms = send_now_ms();
	if (ev->data != NULL) {
		memcpy(ev->data, req->data, req->len);
		ev->data[req->len] = '\0';
	}
	/* complete before it is queued: the sender thread may take it at once */
	if (ev->channel == NULL || ev->id == NULL || ev->type == NULL || ev->data == NULL ||
	    (reached != NULL && *reached != '\0' && ev->reached == NULL) || send_enqueue(it, true) == -1) {
		webpush_event_free(ev);
		free(it);
		atomic_fetch_add(&m_dropped, 1);
	}
}

/*
 * A registration job from an HTTP handler: add reg (channel and id NULL), or remove
 * channel's id (reg NULL). done runs once on the sender thread; -1 (done never runs)
 * when web push is off or stopping.
 */
int
webpush_submit(struct webpush_reg *reg, const char *channel, const char *id, webpush_job_done *done,
    void *arg)
{
	struct send_item *it;

	if (!s.on || (it = calloc(1, sizeof *it)) == NULL)
		return -1;
	if (reg != NULL)
		it->reg = *reg;
	else {
		snprintf(it->reg.channel, sizeof it->reg.channel, "%s", channel);
		snprintf(it->reg.id, sizeof it->reg.id, "%s", id);
		it->remove = true;
	}
	it->done = done;
	it->arg = arg;
	if (send_enqueue(it, false) == -1) {
		free(it);
		return -1;
	}
	return 0;
}

/* --- one message ---------------------------------------------------------------- */

/* The Topic of a channel: 32 base64url characters of its SHA-256 (RFC 8030 5.4). */
static void
send_topic(const char *channel, char out[33])
{
	unsigned char h[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)channel, strlen(channel), h);
	webpush_b64_encode(out, 33, h, 24);
}

/* The event's own urgency, if its payload is a JSON object naming a valid one. */
static const char *
send_urgency(const struct webpush_event *ev)
{
	static const char *const names[] = { "very-low", "low", "normal", "high" };
	json_t *o = ev->len > 0 && ev->data[0] == '{' ? json_loadb(ev->data, ev->len, 0, NULL) : NULL;
	const char *u = json_string_value(json_object_get(o, "urgency")), *found = NULL;
	size_t i;

	for (i = 0; u != NULL && i < 4; i++)
		if (strcmp(u, names[i]) == 0)
			found = names[i];
	json_decref(o);
	return found != NULL ? found : names[opt(OPT_WEBPUSH_URGENCY)];
}

/*
 * The plaintext: {"channel","id","event","data"}; one over what every push service
 * must carry becomes a short notice naming the event, {"channel","id","event","truncated":true}.
 */
static char *
send_plaintext(const struct webpush_event *ev)
{
	json_t *o = json_pack("{s:s,s:s,s:s,s:s%}", "channel", ev->channel, "id", ev->id, "event",
	    ev->type, "data", ev->data, ev->len);
	char *text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (text != NULL && strlen(text) <= WEBPUSH_MAX_PLAINTEXT)
		return text;
	free(text);
	o = json_pack("{s:s,s:s,s:s,s:b}", "channel", ev->channel, "id", ev->id, "event", ev->type,
	    "truncated", 1);
	text = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

/* A token for origin from the cache, or a new one (valid WEBPUSH_TOKEN_LIFE); NULL on failure. */
static const char *
send_token(const char *origin)
{
	long long now = send_now_ms() / 1000;
	struct token *t, *slot = &s.tokens[0];
	size_t i;

	for (i = 0; i < SEND_TOKENS; i++) {
		t = &s.tokens[i];
		if (strcmp(t->origin, origin) == 0 && t->exp - now > WEBPUSH_TOKEN_RENEW)
			return t->value;
		if (strcmp(t->origin, origin) == 0 || t->exp < slot->exp)
			slot = t;	/* its own stale slot, or the one expiring first */
	}
	snprintf(slot->origin, sizeof slot->origin, "%s", origin);
	slot->exp = now + WEBPUSH_TOKEN_LIFE;
	if (webpush_vapid_token(s.key, origin, slot->exp, opt_str(OPT_WEBPUSH_SUBJECT), slot->value,
	    sizeof slot->value) == -1) {
		slot->origin[0] = '\0';
		slot->exp = 0;
		return NULL;
	}
	return slot->value;
}

/* Refuses to connect to a non-public address unless the registration's entry allows it. */
static curl_socket_t
send_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct send *m = clientp;

	(void)purpose;
	if (!m->reg.private_ok && !webpush_addr_public(&a->addr)) {
		snprintf(m->error, sizeof m->error, "refused: %.200s resolves to a private or loopback address",
		    m->reg.origin);
		return CURL_SOCKET_BAD;
	}
	return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* The push service's answer body is not needed: read and dropped. */
static size_t
send_discard(char *ptr, size_t size, size_t n, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * n;
}

/* Frees a send (after its easy handle left the multi) and drops its event reference. */
static void
send_free(struct send *m)
{
	if (m->easy != NULL)
		curl_easy_cleanup(m->easy);
	curl_slist_free_all(m->headers);
	if (m->timer != NULL)
		event_free(m->timer);
	free(m->body);
	send_event_release(m->ev);
	free(m);
	atomic_fetch_sub(&m_pending, 1);
}

/* Encrypts the message once, for every try. */
static int
send_build_body(struct send *m)
{
	char *plain = send_plaintext(m->ev);
	size_t len = plain != NULL ? strlen(plain) : 0;
	ssize_t n = -1;

	if (plain != NULL && (m->body = malloc(WEBPUSH_MESSAGE_LEN(len))) != NULL)
		n = webpush_encrypt(m->reg.p256dh, m->reg.auth, (const unsigned char *)plain, len, NULL,
		    NULL, m->body, WEBPUSH_MESSAGE_LEN(len));
	free(plain);
	if (n < 0)
		return -1;
	m->bodylen = (size_t)n;
	snprintf(m->urgency, sizeof m->urgency, "%s", send_urgency(m->ev));
	return 0;
}

/* Adds one header line (the values are ours, never a peer's raw bytes). */
__attribute__((format(printf, 2, 3)))
static void
send_header(struct send *m, const char *fmt, ...)
{
	char line[WEBPUSH_TOKEN_MAX + 200];
	struct curl_slist *l;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if ((l = curl_slist_append(m->headers, line)) != NULL)
		m->headers = l;
}

/* Starts one try: the request with its headers, added to the multi; -1 if it cannot. */
static int
send_start(struct send *m)
{
	const char *token;
	char topic[33];

	if (m->body == NULL && send_build_body(m) == -1)
		return -1;
	if ((token = send_token(m->reg.origin)) == NULL)
		return -1;
	curl_slist_free_all(m->headers);
	m->headers = NULL;
	send_topic(m->ev->channel, topic);
	send_header(m, "TTL: %lld", opt(OPT_WEBPUSH_TTL));
	send_header(m, "Content-Encoding: aes128gcm");
	send_header(m, "Content-Type: application/octet-stream");
	send_header(m, "Urgency: %s", m->urgency);
	send_header(m, "Topic: %s", topic);
	send_header(m, "Authorization: vapid t=%s, k=%s", token, s.public_b64);
	send_header(m, "Expect:");	/* no 100-continue round trip for 4 KB */
	if (m->easy == NULL && (m->easy = curl_easy_init()) == NULL)
		return -1;
	curl_easy_reset(m->easy);
	curl_easy_setopt(m->easy, CURLOPT_URL, m->reg.endpoint);
	curl_easy_setopt(m->easy, CURLOPT_PROTOCOLS_STR, m->reg.private_ok ? "http,https" : "https");
	curl_easy_setopt(m->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(m->easy, CURLOPT_POSTFIELDS, (char *)m->body);
	curl_easy_setopt(m->easy, CURLOPT_POSTFIELDSIZE, (long)m->bodylen);
	curl_easy_setopt(m->easy, CURLOPT_HTTPHEADER, m->headers);
	curl_easy_setopt(m->easy, CURLOPT_PRIVATE, m);
	curl_easy_setopt(m->easy, CURLOPT_ERRORBUFFER, m->error);
	curl_easy_setopt(m->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(m->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)WEBPUSH_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(m->easy, CURLOPT_TIMEOUT_MS, (long)WEBPUSH_TIMEOUT_MS);
	curl_easy_setopt(m->easy, CURLOPT_WRITEFUNCTION, send_discard);
	curl_easy_setopt(m->easy, CURLOPT_OPENSOCKETFUNCTION, send_opensocket);
	curl_easy_setopt(m->easy, CURLOPT_OPENSOCKETDATA, m);
	curl_easy_setopt(m->easy, CURLOPT_USERAGENT, "ssepush/" BROKER_VERSION);
	m->error[0] = '\0';
	m->attempts++;
	if (curl_multi_add_handle(s.multi, m->easy) != CURLM_OK)
		return -1;
	s.inflight++;
	m->iprev = NULL;
	if ((m->inext = s.inflight_head) != NULL)
		m->inext->iprev = m;
	s.inflight_head = m;
	return 0;
}

/* A retry's wait is over: back to the FIFO. */
static void
send_retry_fire(evutil_socket_t fd, short what, void *arg)
{
	struct send *m = arg;

	(void)fd;
	(void)what;
	m->next = NULL;
	if (s.wait_tail != NULL)
		s.wait_tail->next = m;
	else
		s.wait_head = m;
	s.wait_tail = m;
	send_pump();
}

/* Schedules another try after ms, or gives up when the retries are used. */
static void
send_retry(struct send *m, long long ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	if (m->attempts > (unsigned)opt(OPT_WEBPUSH_RETRIES) ||
	    (m->timer == NULL && (m->timer = evtimer_new(s.base, send_retry_fire, m)) == NULL)) {
		log_info("webpush: %s: giving up after %u tries", m->reg.origin, m->attempts);
		send_free(m);
		return;
	}
	atomic_fetch_add(&m_retries, 1);
	evtimer_add(m->timer, &tv);
}

/* Records a 2xx: counted, and its publish-to-accepted latency observed. */
static void
send_observe(const struct send *m)
{
	int64_t ms = send_now_ms() - m->ev->published_ms;
	double sec = (double)(ms < 0 ? 0 : ms) / 1000;
	size_t i;

	atomic_fetch_add(&m_sent, 1);
	for (i = 0; i < SEND_HIST && sec > counters_bounds[i]; i++)
		;
	if (i < SEND_HIST)
		atomic_fetch_add(&m_hist[i], 1);
	atomic_fetch_add(&m_hist_count, 1);
	atomic_fetch_add(&m_hist_sum_us, (unsigned long long)(ms < 0 ? 0 : ms) * 1000);
}

/* Removes a registration the push service says is gone. */
static void
send_unregister(const struct send *m)
{
	log_info("webpush: %s answered: subscription gone; registration %s of %s removed",
	    m->reg.origin, m->reg.id, m->reg.channel);
	if (s.redis)
		webpush_redis_remove(m->reg.channel, m->reg.id);
	else
		webpush_store_remove(m->reg.channel, m->reg.id);
	atomic_fetch_add(&m_removed, 1);
}

/* Takes a send out of the multi and the in-flight list. */
static void
send_unlink(struct send *m)
{
	curl_multi_remove_handle(s.multi, m->easy);
	s.inflight--;
	if (m->iprev != NULL)
		m->iprev->inext = m->inext;
	else
		s.inflight_head = m->inext;
	if (m->inext != NULL)
		m->inext->iprev = m->iprev;
}

/* One finished try: decides between done, retry and removal. */
static void
send_finished(struct send *m, CURLcode rc)
{
	long status = 0;
	curl_off_t after = -1;
	long long backoff = (long long)WEBPUSH_BACKOFF_MS << (m->attempts > 10 ? 10 : m->attempts - 1);

	send_unlink(m);
	if (rc != CURLE_OK) {
		atomic_fetch_add(&m_network, 1);
		log_info("webpush: %s: %s", m->reg.origin, m->error[0] != '\0' ? m->error : curl_easy_strerror(rc));
		send_retry(m, backoff);
		return;
	}
	curl_easy_getinfo(m->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 0 && status < SEND_STATUS_MAX)
		atomic_fetch_add(&m_status[status], 1);
	if (status >= 200 && status < 300) {
		send_observe(m);
		send_free(m);
	} else if (status == 404 || status == 410) {
		send_unregister(m);
		send_free(m);
	} else if (status == 429) {
		curl_easy_getinfo(m->easy, CURLINFO_RETRY_AFTER, &after);
		if (after > WEBPUSH_RETRY_AFTER_MAX)
			after = WEBPUSH_RETRY_AFTER_MAX;
		send_retry(m, after > 0 ? (long long)after * 1000 : backoff);
	} else if (status >= 500) {
		send_retry(m, backoff);
	} else {
		log_info("webpush: %s answered %ld: message dropped", m->reg.origin, status);
		send_free(m);
	}
}

/* Takes every finished transfer out of the multi. */
static void
send_check_done(void)
{
	CURLMsg *msg;
	int left;
	struct send *m;

	while ((msg = curl_multi_info_read(s.multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&m);
		send_finished(m, msg->data.result);
	}
	send_pump();
}

/* Starts waiting sends while there is room in flight. */
static void
send_pump(void)
{
	struct send *m;

	while (s.wait_head != NULL && s.inflight < (size_t)opt(OPT_WEBPUSH_CONCURRENCY)) {
		m = s.wait_head;
		if ((s.wait_head = m->next) == NULL)
			s.wait_tail = NULL;
		if (send_start(m) == -1) {
			log_error("webpush: %s: cannot build the request", m->reg.origin);
			if (m->easy != NULL)
				curl_multi_remove_handle(s.multi, m->easy);
			send_free(m);
		}
	}
}

/* How many messages wait, retry or are in flight (for webpush_queue and the gauge). */
static size_t
send_pending(void)
{
	return (size_t)atomic_load(&m_pending);
}

/*
 * Sends ev to those of regs (n, borrowed) that want it (sender thread). Takes ev: it is
 * freed, and in Redis mode acknowledged, once the last of its messages is done.
 */
void
webpush_push_event(struct webpush_event *ev, struct webpush_reg *regs, size_t n)
{
	struct send *m;
	size_t i;

	ev->refs = 1;
	for (i = 0; i < n; i++) {
		if (!webpush_reg_wants(&regs[i], ev) ||
		    (opt(OPT_WEBPUSH_WHEN) == 0 && !webpush_reg_offline(&regs[i], ev)))
			continue;
		if (send_pending() >= (size_t)opt(OPT_WEBPUSH_QUEUE) || (m = calloc(1, sizeof *m)) == NULL) {
			atomic_fetch_add(&m_dropped, 1);
			continue;
		}
		atomic_fetch_add(&m_pending, 1);
		m->ev = ev;
		ev->refs++;
		m->reg = regs[i];
		if (s.wait_tail != NULL)
			s.wait_tail->next = m;
		else
			s.wait_head = m;
		s.wait_tail = m;
	}
	send_event_release(ev);
	send_pump();
}

/* --- the thread ----------------------------------------------------------------- */

/* Runs one queued item: an event (standalone: its registrations from the table) or a job. */
static void
send_run_item(struct send_item *it)
{
	struct webpush_reg *regs;
	char why[200] = "";
	unsigned status;
	size_t n;

	if (it->ev != NULL) {
		n = webpush_store_list(it->ev->channel, &regs);
		webpush_push_event(it->ev, regs, n);
	} else if (s.redis) {
		if (it->remove)
			webpush_redis_unregister(it->reg.channel, it->reg.id, it->done, it->arg);
		else
			webpush_redis_register(&it->reg, it->done, it->arg);
	} else if (it->remove) {
		status = webpush_store_remove(it->reg.channel, it->reg.id);
		it->done(it->arg, status, status == 404 ? "no such registration" :
		    status == 503 ? "the registration could not be stored" : "");
	} else {
		status = webpush_store_add(&it->reg, why, sizeof why);
		it->done(it->arg, status, status == 201 ? it->reg.id : why);
	}
	free(it);
}

/* The wake event: drains the queue. */
static void
send_wake(evutil_socket_t fd, short what, void *arg)
{
	struct send_item *it, *next;
	uint64_t v;
	bool stop;

	(void)what;
	(void)arg;
	if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_error("webpush: wake: %s", strerror(errno));
	pthread_mutex_lock(&s.lock);
	it = s.head;
	s.head = s.tail = NULL;
	s.nqueued = 0;
	stop = s.stopping;
	pthread_mutex_unlock(&s.lock);
	for (; it != NULL; it = next) {
		next = it->next;
		if (stop) {
			if (it->done != NULL)
				it->done(it->arg, 503, "web push is stopping");
			webpush_event_free(it->ev);
			free(it);
		} else
			send_run_item(it);
	}
	if (stop)
		event_base_loopexit(s.base, NULL);
}

/* A watched socket is ready: tell curl. */
static void
send_sock_ready(evutil_socket_t fd, short kind, void *arg)
{
	int running, flags = ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);

	(void)arg;
	curl_multi_socket_action(s.multi, fd, flags, &running);
	send_check_done();
}

/* curl's timer callback: one libevent timer stands for curl's single timeout. */
static int
send_timer_cb(CURLM *multi, long ms, void *userp)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	(void)multi;
	(void)userp;
	if (ms < 0)
		evtimer_del(s.curl_timer);
	else
		evtimer_add(s.curl_timer, &tv);
	return 0;
}

/* curl's timeout came. */
static void
send_timeout(evutil_socket_t fd, short what, void *arg)
{
	int running;

	(void)fd;
	(void)what;
	(void)arg;
	curl_multi_socket_action(s.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	send_check_done();
}

/* Frees what is still waiting or in flight when the thread ends. */
static void
send_drop_all(void)
{
	struct send *m;

	while ((m = s.wait_head) != NULL) {
		s.wait_head = m->next;
		send_free(m);
	}
	s.wait_tail = NULL;
	while ((m = s.inflight_head) != NULL) {
		send_unlink(m);
		send_free(m);
	}
}

/* The sender thread. */
static void *
send_main(void *arg)
{
	(void)arg;
	event_base_dispatch(s.base);
	send_drop_all();
	if (s.redis)
		webpush_redis_stop();
	return NULL;
}

/* curl's socket callback: one persistent event per socket, watching what curl asks for. */
static int
send_sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct event *ev = socketp;
	short kind;

	(void)e;
	(void)userp;
	if (ev != NULL) {
		event_free(ev);
		curl_multi_assign(s.multi, fd, NULL);
	}
	if (what == CURL_POLL_REMOVE)
		return 0;
	kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
	if ((ev = event_new(s.base, fd, kind, send_sock_ready, NULL)) == NULL || event_add(ev, NULL) == -1)
		return -1;
	curl_multi_assign(s.multi, fd, ev);
	return 0;
}

/* Loads the key, opens the store (or Redis), starts the thread; 0 (also while off) or -1. */
int
webpush_start(void)
{
	unsigned char pub[WEBPUSH_PUBKEY_LEN];
	char err[1200];

	if (!opt(OPT_WEBPUSH))
		return 0;
	s.redis = *opt_str(OPT_REDIS) != '\0';
	if (webpush_endpoints_init(opt_str(OPT_WEBPUSH_ENDPOINTS),
	    broker_config->origin[OPT_WEBPUSH_ENDPOINTS] != CONFIG_DEFAULT) == -1)
		return -1;
	if ((s.key = webpush_key_load(opt_str(OPT_WEBPUSH_VAPID_KEY_FILE), err, sizeof err)) == NULL ||
	    webpush_key_public(s.key, pub) == -1) {
		log_error("webpush: %s", err);
		return -1;
	}
	webpush_b64_encode(s.public_b64, sizeof s.public_b64, pub, sizeof pub);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	if ((s.base = event_base_new()) == NULL || (s.multi = curl_multi_init()) == NULL ||
	    (s.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
	    (s.wake_ev = event_new(s.base, s.wake_fd, EV_READ | EV_PERSIST, send_wake, NULL)) == NULL ||
	    event_add(s.wake_ev, NULL) == -1 ||
	    (s.curl_timer = evtimer_new(s.base, send_timeout, NULL)) == NULL)
		return -1;
	curl_multi_setopt(s.multi, CURLMOPT_SOCKETFUNCTION, send_sock_cb);
	curl_multi_setopt(s.multi, CURLMOPT_TIMERFUNCTION, send_timer_cb);
	curl_multi_setopt(s.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)opt(OPT_WEBPUSH_CONCURRENCY));
	if (s.redis ? webpush_redis_start(s.base, webpush_push_event) == -1 :
	    webpush_store_open(opt_str(OPT_WEBPUSH_STORE), (unsigned)opt(OPT_WEBPUSH_MAX_PER_CHANNEL)) == -1)
		return -1;
	s.on = true;
	if (pthread_create(&s.thread, NULL, send_main, NULL) != 0) {
		s.on = false;
		return -1;
	}
	s.started = true;
	log_info("webpush: on (%s), VAPID key %s", s.redis ? "registrations in redis" : opt_str(OPT_WEBPUSH_STORE),
	    s.public_b64);
	return 0;
}

/* Answers every pending job 503, drops what is unsent, stops the thread (before MHD stops). */
void
webpush_stop(void)
{
	uint64_t one = 1;

	if (!s.started)
		return;
	pthread_mutex_lock(&s.lock);
	s.stopping = true;
	pthread_mutex_unlock(&s.lock);
	if (write(s.wake_fd, &one, sizeof one) < 0)
		log_error("webpush: wake: %s", strerror(errno));
	pthread_join(s.thread, NULL);
	s.started = false;
	event_free(s.wake_ev);
	event_free(s.curl_timer);
	curl_multi_cleanup(s.multi);
	event_base_free(s.base);
	close(s.wake_fd);
	if (!s.redis)
		webpush_store_close();
	EVP_PKEY_free(s.key);
	curl_global_cleanup();
}

/* The ssepush_webpush_* lines of /metrics. */
void
webpush_metrics(FILE *f)
{
	unsigned long long cum = 0;
	size_t i;

	if (!s.on)
		return;
	fprintf(f, "# HELP ssepush_webpush_sent_total Push messages the push service accepted (2xx).\n"
	    "# TYPE ssepush_webpush_sent_total counter\nssepush_webpush_sent_total %llu\n",
	    atomic_load(&m_sent));
	fputs("# HELP ssepush_webpush_responses_total Push service answers by HTTP status (every try).\n"
	    "# TYPE ssepush_webpush_responses_total counter\n", f);
	for (i = 100; i < SEND_STATUS_MAX; i++)
		if (atomic_load(&m_status[i]) > 0)
			fprintf(f, "ssepush_webpush_responses_total{status=\"%zu\"} %llu\n", i,
			    atomic_load(&m_status[i]));
	fprintf(f, "# HELP ssepush_webpush_network_errors_total Tries that got no HTTP answer (connect, TLS, timeout, refused address).\n"
	    "# TYPE ssepush_webpush_network_errors_total counter\nssepush_webpush_network_errors_total %llu\n"
	    "# HELP ssepush_webpush_retries_total Tries scheduled again after a 5xx, 429 or network error.\n"
	    "# TYPE ssepush_webpush_retries_total counter\nssepush_webpush_retries_total %llu\n"
	    "# HELP ssepush_webpush_removed_total Registrations removed because the push service answered 404 or 410.\n"
	    "# TYPE ssepush_webpush_removed_total counter\nssepush_webpush_removed_total %llu\n"
	    "# HELP ssepush_webpush_dropped_total Push messages dropped because webpush_queue was full.\n"
	    "# TYPE ssepush_webpush_dropped_total counter\nssepush_webpush_dropped_total %llu\n"
	    "# HELP ssepush_webpush_queue Push messages waiting, retrying or in flight.\n"
	    "# TYPE ssepush_webpush_queue gauge\nssepush_webpush_queue %llu\n",
	    atomic_load(&m_network), atomic_load(&m_retries), atomic_load(&m_removed),
	    atomic_load(&m_dropped), atomic_load(&m_pending));
	fputs("# HELP ssepush_webpush_latency_seconds From publish to the push service's 2xx.\n"
	    "# TYPE ssepush_webpush_latency_seconds histogram\n", f);
	for (i = 0; i < SEND_HIST; i++) {
		cum += atomic_load(&m_hist[i]);
		fprintf(f, "ssepush_webpush_latency_seconds_bucket{le=\"%g\"} %llu\n", counters_bounds[i], cum);
	}
	fprintf(f, "ssepush_webpush_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "ssepush_webpush_latency_seconds_sum %.6f\nssepush_webpush_latency_seconds_count %llu\n",
	    atomic_load(&m_hist_count), (double)atomic_load(&m_hist_sum_us) / 1e6, atomic_load(&m_hist_count));
}
