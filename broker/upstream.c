/*
 * auth upstream: a JMAP request's credentials (its Authorization header and cookies)
 * are checked by the JMAP server itself, with a GET of its session object
 * (upstream_session_url, Cyrus's /jmap/), whose `accounts` are the account ids they may
 * read. Answers are cached per credential (the key is a SHA-256 of them, never the
 * credential; bounded by upstream_cache_size, for upstream_cache_ttl seconds). A miss
 * never blocks the event loop: the request is handed to this file's thread, which runs
 * every session request at once on one libcurl multi handle, and the caller is
 * answered through a callback (and resumes its suspended connection).
 *
 * Thread: "upstream" owns the multi handle and every easy handle; other threads only
 * append to the job list and wake it (curl_multi_wakeup), both under job_lock, under
 * which upstream_stop also frees the handle. The cache is under cache_lock, taken by
 * both. Lock order: job_lock and cache_lock are never held together.
 */
#include "broker.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "log.h"
#include "names.h"
#include "upstream.h"

#define UPSTREAM_BODY_MAX (256 * 1024)	/* a session object larger than this is refused (503) */
#define UPSTREAM_BUCKETS 4096
#define UPSTREAM_POLL_MS 1000		/* the thread's longest sleep (it is woken for new jobs) */

/* One cached answer. */
struct upstream_entry {
	struct upstream_entry *hnext, *next;	/* hash chain; FIFO of insertion (oldest first) */
	unsigned char key[UPSTREAM_KEY_LEN];
	uint32_t expires;			/* clock_sec() */
	struct upstream_result r;
};

/* One session request in flight. */
struct upstream_job {
	struct upstream_job *next;	/* new_jobs, then the thread's inflight list */
	struct upstream_job *prev;	/* inflight only */
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	size_t len;
	bool too_big;
	unsigned char key[UPSTREAM_KEY_LEN];
	upstream_done *done;
	void *arg;
};

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upstream_job *new_jobs;	/* under job_lock: not yet on the multi handle */
static size_t jobs_pending;		/* under job_lock: new or in flight */
static bool stopping;			/* under job_lock */
static pthread_t thread;
static bool started;			/* under job_lock once threads run: lookups may queue */
static bool thread_running;		/* the main thread's own: upstream_stop has a thread to join */
static CURLM *multi;
static struct upstream_job *inflight;	/* the thread's: jobs on the multi handle */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upstream_entry *cache[UPSTREAM_BUCKETS], *cache_head, **cache_tail = &cache_head;
static size_t cache_count;

/* The cache key of a credential: SHA-256 of the Authorization and Cookie values. */
static void
upstream_key(const char *authorization, const char *cookie, unsigned char *key)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned len = UPSTREAM_KEY_LEN;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, authorization, strlen(authorization) + 1) != 1 ||
	    EVP_DigestUpdate(ctx, cookie, strlen(cookie)) != 1 ||
	    EVP_DigestFinal_ex(ctx, key, &len) != 1)
		memset(key, 0, UPSTREAM_KEY_LEN);	/* never a hit: the all-zero key is not stored */
	EVP_MD_CTX_free(ctx);
}

/* Bucket of a key. */
static unsigned
upstream_bucket(const unsigned char *key)
{
	return ((unsigned)key[0] << 8 | key[1]) % UPSTREAM_BUCKETS;
}

/* Unlinks and frees the oldest entry (cache_lock held). */
static void
upstream_evict_oldest(void)
{
	struct upstream_entry *e = cache_head, **pp;

	if (e == NULL)
		return;
	if ((cache_head = e->next) == NULL)
		cache_tail = &cache_head;
	for (pp = &cache[upstream_bucket(e->key)]; *pp != e; pp = &(*pp)->hnext)
		;
	*pp = e->hnext;
	cache_count--;
	free(e);
}

/* A fresh cached answer for key, copied into *r; false on a miss. */
static bool
upstream_cache_get(const unsigned char *key, struct upstream_result *r)
{
	struct upstream_entry *e;
	bool hit = false;

	pthread_mutex_lock(&cache_lock);
	for (e = cache[upstream_bucket(key)]; e != NULL; e = e->hnext)
		if (memcmp(e->key, key, UPSTREAM_KEY_LEN) == 0) {
			if ((int32_t)(e->expires - clock_sec()) > 0) {
				*r = e->r;
				hit = true;
			}
			break;
		}
	pthread_mutex_unlock(&cache_lock);
	return hit;
}

/* Stores an answer (an older one for the key is left to expire: a hit prefers the newest). */
static void
upstream_cache_put(const unsigned char *key, const struct upstream_result *r)
{
	static const unsigned char zero[UPSTREAM_KEY_LEN];
	struct upstream_entry *e;
	unsigned h = upstream_bucket(key);
	long long ttl = opt(OPT_UPSTREAM_CACHE_TTL);

	if (ttl == 0 || memcmp(key, zero, UPSTREAM_KEY_LEN) == 0 || (e = calloc(1, sizeof *e)) == NULL)
		return;
	memcpy(e->key, key, UPSTREAM_KEY_LEN);
	e->expires = clock_sec() + (uint32_t)ttl;
	e->r = *r;
	pthread_mutex_lock(&cache_lock);
	while (cache_count >= (size_t)opt(OPT_UPSTREAM_CACHE_SIZE))
		upstream_evict_oldest();
	e->hnext = cache[h];
	cache[h] = e;
	*cache_tail = e;
	cache_tail = &e->next;
	cache_count++;
	pthread_mutex_unlock(&cache_lock);
}

/* libcurl's write callback: keeps the body, up to UPSTREAM_BODY_MAX. */
static size_t
upstream_write(char *data, size_t size, size_t n, void *arg)
{
	struct upstream_job *j = arg;
	size_t len = size * n;
	char *nb;

	if (j->len + len > UPSTREAM_BODY_MAX) {
		j->too_big = true;
		return 0;	/* libcurl ends the transfer with CURLE_WRITE_ERROR */
	}
	if ((nb = realloc(j->body, j->len + len + 1)) == NULL)
		return 0;
	j->body = nb;
	memcpy(j->body + j->len, data, len);
	j->len += len;
	j->body[j->len] = '\0';
	return len;
}

/*
 * Reads a session object's account ids (RFC 8620 section 2: the keys of `accounts`)
 * and its primary mail account. Returns 0, or -1 when it is not a session object.
 */
int
upstream_parse_session(const char *body, size_t len, struct upstream_result *r)
{
	json_t *root = json_loadb(body, len, 0, NULL), *accounts, *v, *prim;	/* new */
	const char *k;
	size_t n = 0, kl;

	memset(r, 0, sizeof *r);
	accounts = json_object_get(root, "accounts");
	if (!json_is_object(accounts)) {
		json_decref(root);
		return -1;
	}
	json_object_foreach(accounts, k, v) {
		kl = strlen(k);
		if (!names_channel_valid(k, kl) || r->naccounts == UPSTREAM_ACCOUNTS_MAX ||
		    n + kl + 2 > sizeof r->accounts)
			continue;	/* not usable as a channel: skipped */
		memcpy(r->accounts + n, k, kl + 1);
		n += kl + 1;
		r->naccounts++;
	}
	prim = json_object_get(json_object_get(root, "primaryAccounts"), "urn:ietf:params:jmap:mail");
	if (json_is_string(prim) && names_channel_valid(json_string_value(prim), json_string_length(prim)) &&
	    json_string_length(prim) < sizeof r->primary)
		memcpy(r->primary, json_string_value(prim), json_string_length(prim) + 1);
	json_decref(root);
	r->status = 200;
	return 0;
}

/* A finished request: its answer, cached when it is one (200 or 401), then the callback. */
static void
upstream_finish(struct upstream_job *j, CURLcode rc)
{
	struct upstream_result r;
	long code = 0;

	memset(&r, 0, sizeof r);
	if (rc == CURLE_OK)
		curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OK && code == 200 && upstream_parse_session(j->body != NULL ? j->body : "", j->len, &r) == 0) {
		upstream_cache_put(j->key, &r);
	} else if (rc == CURLE_OK && (code == 401 || code == 403)) {
		r.status = 401;
		upstream_cache_put(j->key, &r);
	} else {
		r.status = 503;
		log_warn("upstream: %s: %s", code != 0 ? "unexpected answer" : "no answer",
		    rc != CURLE_OK ? curl_easy_strerror(rc) : j->too_big ? "too large" :
		    code == 200 ? "not a JMAP session object" : "status not 200, 401 or 403");
		if (code != 0)
			log_debug("upstream: status %ld", code);
	}
	j->done(j->arg, &r);
	if (j->easy != NULL) {
		curl_multi_remove_handle(multi, j->easy);
		curl_easy_cleanup(j->easy);
		if (j->prev != NULL)
			j->prev->next = j->next;
		else
			inflight = j->next;
		if (j->next != NULL)
			j->next->prev = j->prev;
	}
	curl_slist_free_all(j->headers);
	free(j->body);
	free(j);
	pthread_mutex_lock(&job_lock);
	jobs_pending--;
	pthread_mutex_unlock(&job_lock);
}

/* Sets a new job's easy handle up and adds it to the multi handle; -1 if it cannot start. */
static int
upstream_add(struct upstream_job *j)
{
	long ms = (long)opt(OPT_UPSTREAM_TIMEOUT);

	if ((j->easy = curl_easy_init()) == NULL)
		return -1;
	curl_easy_setopt(j->easy, CURLOPT_URL, opt_str(OPT_UPSTREAM_SESSION_URL));
	curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->headers);
	curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, upstream_write);
	curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(j->easy, CURLOPT_PRIVATE, j);
	curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(j->easy, CURLOPT_TIMEOUT_MS, ms);
	curl_easy_setopt(j->easy, CURLOPT_CONNECTTIMEOUT_MS, ms);
	curl_easy_setopt(j->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(j->easy, CURLOPT_FOLLOWLOCATION, 0L);	/* credentials go to that URL only */
	curl_easy_setopt(j->easy, CURLOPT_USERAGENT, "ssepush-broker/" BROKER_VERSION);
	if (curl_multi_add_handle(multi, j->easy) != CURLM_OK) {
		curl_easy_cleanup(j->easy);
		j->easy = NULL;
		return -1;
	}
	j->prev = NULL;
	j->next = inflight;
	if (inflight != NULL)
		inflight->prev = j;
	inflight = j;
	return 0;
}

/* The thread: takes new jobs, runs transfers, answers finished ones; at stop, fails the rest. */
static void *
upstream_main(void *arg)
{
	struct upstream_job *j, *next;
	CURLMsg *m;
	int running, left;
	bool stop;

	(void)arg;
	for (;;) {
		pthread_mutex_lock(&job_lock);
		j = new_jobs;
		new_jobs = NULL;
		stop = stopping;
		pthread_mutex_unlock(&job_lock);
		for (; j != NULL; j = next) {
			next = j->next;
			if (stop || upstream_add(j) == -1)
				upstream_finish(j, CURLE_FAILED_INIT);
		}
		curl_multi_perform(multi, &running);
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
			upstream_finish(j, m->data.result);
		}
		if (stop) {
			while (inflight != NULL)
				upstream_finish(inflight, CURLE_ABORTED_BY_CALLBACK);
			break;
		}
		curl_multi_poll(multi, NULL, 0, UPSTREAM_POLL_MS, NULL);
	}
	return NULL;
}

/* Starts the thread when auth is upstream. */
int
upstream_start(void)
{
	if (opt(OPT_AUTH) != AUTH_UPSTREAM)
		return 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (multi = curl_multi_init()) == NULL) {
		log_error("upstream: cannot initialise libcurl");
		return -1;
	}
	if (pthread_create(&thread, NULL, upstream_main, NULL) != 0) {
		log_error("upstream: cannot start its thread");
		return -1;
	}
	thread_running = true;
	started = true;
	return 0;
}

/* Fails every request still waiting (their callbacks run: connections resume), then stops. */
void
upstream_stop(void)
{
	if (!thread_running)
		return;
	thread_running = false;
	pthread_mutex_lock(&job_lock);
	stopping = true;
	pthread_mutex_unlock(&job_lock);
	curl_multi_wakeup(multi);
	pthread_join(thread, NULL);	/* it failed what was in flight or new */
	pthread_mutex_lock(&job_lock);
	started = false;
	curl_multi_cleanup(multi);
	multi = NULL;
	pthread_mutex_unlock(&job_lock);
	curl_global_cleanup();
	pthread_mutex_lock(&cache_lock);
	while (cache_head != NULL)
		upstream_evict_oldest();
	pthread_mutex_unlock(&cache_lock);
}

/* Whether a header value is plain text that may be passed on (no control characters). */
static bool
upstream_clean(const char *v)
{
	for (; *v != '\0'; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return false;
	return true;
}

/* The lookup (upstream.h). */
int
upstream_lookup(const char *authorization, const char *cookie, struct upstream_result *r,
    upstream_done *done, void *arg)
{
	struct upstream_job *j;
	char *line;
	size_t n;

	if (authorization == NULL)
		authorization = "";
	if (cookie == NULL)
		cookie = "";
	memset(r, 0, sizeof r[0]);
	if ((*authorization == '\0' && *cookie == '\0') || !upstream_clean(authorization) || !upstream_clean(cookie)) {
		r->status = 401;
		return UPSTREAM_ANSWERED;
	}
	if ((j = calloc(1, sizeof *j)) == NULL) {
		r->status = 503;
		return UPSTREAM_ANSWERED;
	}
	upstream_key(authorization, cookie, j->key);
	if (upstream_cache_get(j->key, r)) {
		free(j);
		return UPSTREAM_ANSWERED;
	}
	j->done = done;
	j->arg = arg;
	n = strlen(authorization) + strlen(cookie) + 32;
	if ((line = malloc(n)) == NULL)
		goto fail;
	j->headers = curl_slist_append(NULL, "Accept: application/json");
	if (*authorization != '\0') {
		snprintf(line, n, "Authorization: %s", authorization);
		j->headers = curl_slist_append(j->headers, line);
	}
	if (*cookie != '\0') {
		snprintf(line, n, "Cookie: %s", cookie);
		j->headers = curl_slist_append(j->headers, line);
	}
	explicit_bzero(line, n);
	free(line);
	pthread_mutex_lock(&job_lock);
	if (stopping || !started || jobs_pending >= (size_t)opt(OPT_UPSTREAM_MAX_PENDING)) {
		pthread_mutex_unlock(&job_lock);
		goto fail;
	}
	j->next = new_jobs;
	new_jobs = j;
	jobs_pending++;
	curl_multi_wakeup(multi);	/* under job_lock: upstream_stop frees multi under it too */
	pthread_mutex_unlock(&job_lock);
	return UPSTREAM_PENDING;
fail:
	curl_slist_free_all(j->headers);
	free(j);
	r->status = 503;
	return UPSTREAM_ANSWERED;
}
