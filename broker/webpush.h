/*
 * Web Push (RFC 8030 / 8291 / 8292): devices that hold no connection get an encrypted
 * message through their browser's push service. Files, by role:
 *   webpush_crypto.c  aes128gcm and VAPID (leaf, OpenSSL only)
 *   webpush_reg.c     a registration: parsing the PushSubscription JSON, the endpoint
 *                     allow-list (webpush_endpoints), the private-address check, JSON
 *                     for the stores (pure functions, any thread)
 *   webpush_store.c   standalone registrations: the table and its file (atomic rename)
 *   webpush_redis.c   Redis mode: registrations in Redis, the queue stream read with a
 *                     consumer group, reclaiming what a dead broker left pending
 *   webpush_send.c    the sender thread: its event base, the job and event queues,
 *                     libcurl's multi interface, retries, VAPID tokens, metrics
 *   webpush_http.c    POST/DELETE /webpush/<channel>[/<id>], GET /webpush/key
 *
 * Threads: one sender thread (webpush_send.c) owns the event base, libcurl, the
 * registration store (the standalone table or the Redis connection), the token cache
 * and every retry timer. Other threads only: offer events (webpush_offer: a bounded
 * queue under queue_lock), submit registration jobs (webpush_submit: the same queue;
 * the job's done() runs on the sender thread and resumes the suspended request), read
 * the standalone interest set (webpush_store_interested: under its rwlock) and the
 * atomic counters. Lock order: ch->lock (the publish hook runs under it) -> the
 * interest rwlock -> queue_lock; none is held while calling out.
 */
#ifndef SSEPUSH_WEBPUSH_H
#define SSEPUSH_WEBPUSH_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "event.h"
#include "webpush_crypto.h"

#define WEBPUSH_ID_LEN 22		/* base64url of 16 random bytes */
#define WEBPUSH_ENDPOINT_MAX 1024	/* bytes of an endpoint URL */
#define WEBPUSH_BODY_MAX 4096		/* bytes of a registration request body */
#define WEBPUSH_TYPES_MAX 512		/* bytes of a registration's type list */
#define WEBPUSH_ORIGIN_MAX 300		/* scheme://host[:port] */
#define WEBPUSH_ENTRIES_MAX 32		/* webpush_endpoints items */
#define WEBPUSH_TOKEN_LIFE 43200	/* seconds a VAPID token is valid (RFC 8292: at most 24 h) */
#define WEBPUSH_TOKEN_RENEW 3600	/* ... renewed when less than this is left */
#define WEBPUSH_RETRY_AFTER_MAX 3600	/* seconds of a 429's Retry-After we honour, at most */
#define WEBPUSH_BACKOFF_MS 1000		/* first retry after a 5xx, doubled each time */
#define WEBPUSH_CONNECT_TIMEOUT_MS 10000
#define WEBPUSH_TIMEOUT_MS 30000	/* a whole push request */
#define WEBPUSH_HEARTBEAT_MS 1000	/* Redis: a sender touches what it works on this often */

struct sockaddr;
struct event_base;

/* One registration: a browser's PushSubscription for a channel. */
struct webpush_reg {
	char id[WEBPUSH_ID_LEN + 1];
	char channel[201];
	char endpoint[WEBPUSH_ENDPOINT_MAX + 1];
	char origin[WEBPUSH_ORIGIN_MAX + 1];	/* the endpoint's scheme://host[:port]: VAPID aud */
	unsigned char p256dh[WEBPUSH_PUBKEY_LEN];
	unsigned char auth[WEBPUSH_AUTH_LEN];
	char types[WEBPUSH_TYPES_MAX + 1];	/* comma list; "" = every type */
	char session[129];			/* "" = none */
	long long expires_ms;			/* expirationTime (Unix ms), 0 = none */
	bool private_ok;			/* its allow-list entry allows private addresses */
};

/* One event to push, as the sender thread holds it. */
struct webpush_event {
	char *channel, *id, *type, *session, *exclude_session, *data;	/* owned */
	size_t len;
	unsigned subscribers;		/* open streams it reached (webpush_when offline) */
	char *reached;			/* owned ",s1,s2,": sessions of the streams it reached, or NULL */
	int64_t published_ms;		/* wall clock, for the latency histogram */
	char entry[48];			/* Redis: the queue stream entry, "" standalone */
	unsigned shard;			/* Redis: the shard whose queue holds the entry */
	unsigned refs;			/* sends still out, +1 while being expanded (sender thread) */
};

/* Hands an event and the registrations (n, borrowed) of its channel to the sender; takes ev. */
typedef void webpush_push_fn(struct webpush_event *ev, struct webpush_reg *regs, size_t n);

/* A registration job's answer: an HTTP status and the id (or a reason). */
typedef void webpush_job_done(void *arg, unsigned status, const char *text);

/* webpush_reg.c */
int webpush_check_config(const struct config *c, const char *path, config_error_fn *report, void *arg);
int webpush_endpoints_init(const char *list, bool from_operator);
unsigned webpush_reg_parse(const char *body, size_t len, const char *channel, const char *session,
    struct webpush_reg *r, char *why, size_t whylen);
bool webpush_reg_wants(const struct webpush_reg *r, const struct webpush_event *ev);
bool webpush_reg_offline(const struct webpush_reg *r, const struct webpush_event *ev);
char *webpush_reg_dump(const struct webpush_reg *r);
int webpush_reg_load(const char *json, size_t len, struct webpush_reg *r);
bool webpush_addr_public(const struct sockaddr *sa);
void webpush_new_id(char out[WEBPUSH_ID_LEN + 1]);
void webpush_event_free(struct webpush_event *ev);

/* webpush_store.c (standalone; sender thread but webpush_store_interested) */
int webpush_store_open(const char *path, unsigned max_per_channel);
void webpush_store_close(void);
bool webpush_store_interested(const char *channel);
unsigned webpush_store_add(struct webpush_reg *r, char *why, size_t whylen);
unsigned webpush_store_remove(const char *channel, const char *id);
size_t webpush_store_list(const char *channel, struct webpush_reg **out);
size_t webpush_store_count(void);

/* webpush_send.c */
int webpush_start(void);
void webpush_stop(void);
bool webpush_enabled(void);
bool webpush_wants(const char *channel);
void webpush_offer(const struct publish_req *req, const char *id, unsigned subscribers,
    const char *reached);
int webpush_submit(struct webpush_reg *reg, const char *channel, const char *id,
    webpush_job_done *done, void *arg);
const char *webpush_public_key(void);
void webpush_metrics(FILE *f);
void webpush_push_event(struct webpush_event *ev, struct webpush_reg *regs, size_t n);

/* webpush_redis.c (sender thread) */
int webpush_redis_start(struct event_base *base, webpush_push_fn *push);
void webpush_redis_stop(void);
void webpush_redis_register(struct webpush_reg *r, webpush_job_done *done, void *arg);
void webpush_redis_unregister(const char *channel, const char *id, webpush_job_done *done, void *arg);
void webpush_redis_remove(const char *channel, const char *id);
void webpush_redis_event_done(struct webpush_event *ev);

/* webpush_http.c */
struct MHD_Connection;
enum MHD_Result webpush_http_handle(struct MHD_Connection *conn, const char *url, const char *method,
    const char *upload, size_t *upload_size, void **req_cls);
void webpush_http_free(void *state);

#endif
