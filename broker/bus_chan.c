/*
 * The Redis thread's per-channel work: subscribing to a channel's notifications while
 * it has local subscribers (and a little longer), syncing the channel's ring with the
 * history in Redis after each (re)subscription so nothing published meanwhile is
 * lost, replays for streams the ring cannot serve, and this broker's subscriber
 * counts. Runs on the Redis thread only; ring changes take the channel's lock.
 */
#include "redis_bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum bus_sub_state { SUB_NONE, SUB_PENDING, SUB_SYNCING, SUB_ACTIVE, SUB_LEAVING };

/* A replay waiting for its channel to be synced. */
struct deferred {
	struct stream *s;		/* referenced */
	struct deferred *next;
	char from[];
};

/* What the Redis thread knows about one channel it holds. */
struct bus_chan {
	struct channel *ch;		/* referenced */
	struct bus_chan *prev, *next;
	enum bus_sub_state st;
	uint32_t idle_since;		/* second the last local subscriber left, 0 if it has some */
	struct deferred *deferred;
	struct event **held;		/* notifications received while syncing */
	size_t nheld, capheld;
};

/* A reply's context: stale once the connection it was sent on is gone. */
struct bus_ctx {
	unsigned epoch;
	struct channel *ch;		/* referenced */
	struct stream *s;		/* replay only, referenced */
	char from[64];			/* replay only: the id the client gave */
};

static struct bus_chan *chans;
static unsigned epoch;			/* bumped on every disconnect */
static bool shut;
static uint32_t last_refresh;

/* Local subscriber count of a channel. */
static unsigned
bus_chan_nsubs(struct channel *ch)
{
	unsigned n;

	pthread_mutex_lock(&ch->lock);
	n = ch->nsubs;
	pthread_mutex_unlock(&ch->lock);
	return n;
}

/* Starts holding a channel. */
static struct bus_chan *
bus_chan_new(struct channel *ch)
{
	struct bus_chan *b = calloc(1, sizeof *b);

	if (b == NULL)
		return NULL;
	b->ch = channel_ref(ch);
	b->next = chans;
	if (chans != NULL)
		chans->prev = b;
	chans = b;
	ch->bus = b;
	return b;
}

/* Drops the events held while syncing. */
static void
bus_chan_drop_held(struct bus_chan *b)
{
	while (b->nheld > 0)
		event_unref(b->held[--b->nheld]);
}

/* Releases the stream reference of a replay that will not run. */
static void
bus_chan_release_stream(struct stream *s)
{
	bool bury;

	pthread_mutex_lock(&s->ch->lock);
	bury = stream_release(s);
	pthread_mutex_unlock(&s->ch->lock);
	if (bury)
		reaper_bury(s);
}

/* Stops holding a channel: its ring is no longer kept in step with Redis. */
static void
bus_chan_free(struct bus_chan *b)
{
	struct channel *ch = b->ch;
	struct deferred *d;

	while ((d = b->deferred) != NULL) {
		b->deferred = d->next;
		bus_chan_release_stream(d->s);
		free(d);
	}
	bus_chan_drop_held(b);
	free(b->held);
	pthread_mutex_lock(&ch->lock);
	ch->covered = ch->positioned = false;
	history_free(&ch->history);
	history_init(&ch->history, 0);
	pthread_mutex_unlock(&ch->lock);
	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		chans = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	ch->bus = NULL;
	channel_put(ch);
	free(b);
}

/* Makes a reply context holding a channel (and stream) reference. */
static struct bus_ctx *
bus_ctx_new(struct channel *ch, struct stream *s)
{
	struct bus_ctx *c = malloc(sizeof *c);

	if (c == NULL)
		return NULL;
	c->epoch = epoch;
	c->ch = channel_ref(ch);
	c->s = s;
	return c;
}

/* Frees a reply context (the stream reference is the caller's business). */
static void
bus_ctx_free(struct bus_ctx *c)
{
	channel_put(c->ch);
	free(c);
}

/* Subscribes to the channel's notifications. */
static void
bus_chan_subscribe(struct bus_chan *b)
{
	char key[BUS_KEY_MAX];

	if (bus_key(key, sizeof key, bus_prefix(), BUS_KEY_NOTIFY, b->ch->name) == 0)
		return;
	if (redisAsyncCommand(bus_sub, bus_chan_on_message, NULL, "SUBSCRIBE %s", key) == REDIS_OK)
		b->st = SUB_PENDING;
}

/* A channel's local subscribers changed: subscribe, or start lingering. */
void
bus_chan_touch(struct channel *ch)
{
	struct bus_chan *b = ch->bus;
	unsigned n;

	if (shut)
		return;
	n = bus_chan_nsubs(ch);
	if (n > 0) {
		if (b == NULL && (b = bus_chan_new(ch)) == NULL)
			return;
		b->idle_since = 0;
		if (b->st == SUB_NONE && bus_up)
			bus_chan_subscribe(b);
	} else if (b != NULL && b->idle_since == 0)
		b->idle_since = clock_sec() | 1;
}

/* Turns one XRANGE entry [id, [field, value, ...]] into an event; NULL if malformed. */
static struct event *
bus_chan_entry(redisReply *e)
{
	struct publish_req req = { .type = NULL };
	redisReply *f;
	uint64_t key;
	size_t i;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY ||
	    bus_id_parse(e->element[0]->str, e->element[0]->len, &key) == -1)
		return NULL;
	f = e->element[1];
	req.data = "";
	for (i = 0; i + 1 < f->elements; i += 2) {
		const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
		if (f->element[i]->type != REDIS_REPLY_STRING || f->element[i + 1]->type != REDIS_REPLY_STRING)
			return NULL;
		if (strcmp(k, "t") == 0)
			req.type = v;
		else if (strcmp(k, "s") == 0)
			req.session = *v ? v : NULL;
		else if (strcmp(k, "x") == 0)
			req.exclude_session = *v ? v : NULL;
		else if (strcmp(k, "o") == 0)
			req.origin = *v ? v : NULL;
		else if (strcmp(k, "d") == 0) {
			req.data = v;
			req.len = f->element[i + 1]->len;
		}
	}
	return channel_event_new(&req, key);
}

/* Copies a length-delimited field into buf as a C string (NULL when empty). */
static const char *
bus_chan_field(char *buf, size_t buflen, const char *s, size_t len)
{
	if (len == 0 || len >= buflen)
		return NULL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return buf;
}

/* Turns a notification into an event; NULL if malformed. */
static struct event *
bus_chan_note(const char *payload, size_t len)
{
	struct bus_note n;
	struct publish_req req = { .type = NULL };
	char type[80], sess[160], excl[160], orig[160];
	uint64_t key;

	if (bus_note_parse(payload, len, &n) == -1 || bus_id_parse(n.id, n.idlen, &key) == -1)
		return NULL;
	req.type = bus_chan_field(type, sizeof type, n.type, n.typelen);
	req.session = bus_chan_field(sess, sizeof sess, n.session, n.sessionlen);
	req.exclude_session = bus_chan_field(excl, sizeof excl, n.exclude_session, n.excludelen);
	req.origin = bus_chan_field(orig, sizeof orig, n.origin, n.originlen);
	req.data = n.data;
	req.len = n.datalen;
	return channel_event_new(&req, key);
}

/* Keeps a notification that arrived while the channel is being synced. */
static void
bus_chan_hold(struct bus_chan *b, struct event *ev)
{
	struct event **h;

	if (b->nheld == b->capheld) {
		size_t cap = b->capheld ? b->capheld * 2 : 8;
		if ((h = realloc(b->held, cap * sizeof *h)) == NULL) {
			event_unref(ev);	/* the sync's range covers it only if it was early */
			return;
		}
		b->held = h;
		b->capheld = cap;
	}
	b->held[b->nheld++] = ev;
}

static void bus_chan_sync(struct bus_chan *b);
static void bus_chan_on_unsubscribed(struct bus_chan *b);

/* The pub/sub connection's replies: subscribe and unsubscribe confirmations, messages. */
void
bus_chan_on_message(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply, **e;
	const char *prefix = bus_prefix();
	size_t plen = strlen(prefix);
	struct channel *ch;
	struct bus_chan *b;
	struct event *ev;

	(void)ac;
	(void)priv;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
		return;
	e = r->element;
	if (e[1]->type != REDIS_REPLY_STRING || e[1]->len < plen + 2 ||
	    memcmp(e[1]->str, prefix, plen) != 0 ||
	    (ch = channel_get(e[1]->str + plen + 2, e[1]->len - plen - 2, false)) == NULL)
		return;
	if ((b = ch->bus) != NULL) {
		if (strcmp(e[0]->str, "message") == 0 && e[2]->type == REDIS_REPLY_STRING) {
			if ((ev = bus_chan_note(e[2]->str, e[2]->len)) == NULL)
				log_warn("redis: malformed notification on channel %s", ch->name);
			else if (b->st == SUB_SYNCING)
				bus_chan_hold(b, ev);
			else if (b->st == SUB_ACTIVE) {
				pthread_mutex_lock(&ch->lock);
				channel_deliver(ch, ev);
				pthread_mutex_unlock(&ch->lock);
			} else
				event_unref(ev);
		} else if (strcmp(e[0]->str, "subscribe") == 0 && b->st == SUB_PENDING)
			bus_chan_sync(b);
		else if (strcmp(e[0]->str, "unsubscribe") == 0 && b->st == SUB_LEAVING)
			bus_chan_on_unsubscribed(b);
	}
	channel_put(ch);
}

/* The last local subscriber left long ago and Redis confirmed: let the channel go. */
static void
bus_chan_on_unsubscribed(struct bus_chan *b)
{
	b->st = SUB_NONE;
	if (bus_chan_nsubs(b->ch) > 0) {
		b->idle_since = 0;
		bus_chan_subscribe(b);		/* someone came back meanwhile */
	} else
		bus_chan_free(b);
}

/* Parses the replay script's reply {status, last, entries}; -1 if malformed. */
static int
bus_chan_parse_replay(redisReply *r, int *status, uint64_t *last, struct event ***evs, size_t *n)
{
	redisReply *es;
	size_t i;

	*evs = NULL;
	*n = 0;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
	    bus_id_parse(r->element[1]->str, r->element[1]->len, last) == -1)
		return -1;
	*status = strcmp(r->element[0]->str, "ok") == 0 ? -1 :
	    strcmp(r->element[0]->str, "unknown") == 0 ? RESET_UNKNOWN : RESET_EXPIRED;
	es = r->element[2];
	if (es->type != REDIS_REPLY_ARRAY || es->elements == 0)
		return 0;
	if ((*evs = calloc(es->elements, sizeof **evs)) == NULL)
		return -1;
	for (i = 0; i < es->elements; i++) {
		if (((*evs)[*n] = bus_chan_entry(es->element[i])) == NULL) {
			while (*n > 0)
				event_unref((*evs)[--*n]);
			free(*evs);
			*evs = NULL;
			return -1;
		}
		(*n)++;
	}
	return 0;
}

/* Sends the replay script for a stream whose channel is synced. */
static void bus_chan_send_replay(struct stream *s, const char *from);

/* Runs or re-defers the replays that waited for this channel's sync. */
static void
bus_chan_run_deferred(struct bus_chan *b)
{
	struct deferred *d = b->deferred, *next;

	b->deferred = NULL;
	for (; d != NULL; d = next) {
		next = d->next;
		bus_chan_replay_job(d->s, d->from);
		free(d);
	}
}

/* Registers this broker's subscriber counts for a channel from scratch. */
static void bus_chan_recount(struct bus_chan *b);

/*
 * Applies a sync reply: the events published while the ring was out of step are
 * appended (or, if Redis no longer has them all, every stream gets a reset), then
 * what arrived meanwhile through pub/sub; from now on the ring covers the channel.
 */
static void
bus_chan_apply_sync(struct bus_chan *b, int status, uint64_t last, struct event **evs, size_t n)
{
	struct channel *ch = b->ch;
	struct history *h = &ch->history;
	struct stream *s;
	size_t i;

	pthread_mutex_lock(&ch->lock);
	if (status != -1 && ch->positioned) {
		log_warn("redis: channel %s: events were lost while disconnected; subscribers get a reset", ch->name);
		history_trim(h, 0);
		/* Ids up to the newest we held belong to the lost history: the ring must not
		 * vouch for them, so reconnects with such ids go to Redis and get a reset. */
		h->floor_seq = h->last_seq >= last ? h->last_seq + 1 : last;
		h->last_seq = last;
		for (s = ch->subs; s != NULL; s = s->next)
			if (!s->pending) {
				stream_force_reset(s, last, RESET_EXPIRED);
				stream_wake(s);
			}
	}
	for (i = 0; i < n; i++)
		channel_deliver(ch, evs[i]);
	if (!ch->positioned) {
		h->floor_seq = last;	/* live from here: nothing older is in the ring */
		if (h->last_seq < last)
			h->last_seq = last;
		ch->positioned = true;
	}
	for (i = 0; i < b->nheld; i++)
		channel_deliver(ch, b->held[i]);
	b->nheld = 0;
	ch->covered = true;
	pthread_mutex_unlock(&ch->lock);
	free(evs);
	b->st = SUB_ACTIVE;
}

/* The sync script's reply. */
static void
bus_chan_on_sync(redisAsyncContext *ac, void *reply, void *priv)
{
	struct bus_ctx *c = priv;
	struct bus_chan *b = c->ch->bus;
	struct event **evs;
	uint64_t last;
	size_t n;
	int status;

	(void)ac;
	if (c->epoch != epoch || b == NULL || b->st != SUB_SYNCING || reply == NULL) {
		bus_ctx_free(c);
		return;
	}
	if (bus_chan_parse_replay(reply, &status, &last, &evs, &n) == -1) {
		redisReply *r = reply;
		log_error("redis: sync of %s failed: %s", c->ch->name,
		    r->type == REDIS_REPLY_ERROR ? r->str : "malformed reply");
		bus_ctx_free(c);
		bus_fail("sync failed");
		return;
	}
	bus_chan_apply_sync(b, status, last, evs, n);
	bus_chan_run_deferred(b);
	bus_chan_recount(b);
	bus_ctx_free(c);
}

/* Asks Redis what the ring missed since its newest event (or only where "now" is). */
static void
bus_chan_sync(struct bus_chan *b)
{
	struct channel *ch = b->ch;
	char key[BUS_KEY_MAX], from[BUS_ID_MAX] = "", count[24];
	struct bus_ctx *c;

	b->st = SUB_SYNCING;
	pthread_mutex_lock(&ch->lock);
	if (ch->positioned)
		bus_id_format(from, sizeof from, ch->history.last_seq);
	pthread_mutex_unlock(&ch->lock);
	snprintf(count, sizeof count, "%lld", opt(OPT_HISTORY_SIZE) * 2 + 16);
	bus_key(key, sizeof key, bus_prefix(), BUS_KEY_HISTORY, ch->name);
	if ((c = bus_ctx_new(ch, NULL)) == NULL)
		return;
	if (redisAsyncCommand(bus_cmd, bus_chan_on_sync, c, "EVALSHA %s 1 %s %s %s",
	    bus_sha_replay, key, from, count) != REDIS_OK)
		bus_ctx_free(c);
}

/* Defers a replay until its channel is synced. */
static void
bus_chan_defer(struct bus_chan *b, struct stream *s, const char *from)
{
	struct deferred *d = malloc(sizeof *d + strlen(from) + 1);

	if (d == NULL) {
		bus_chan_release_stream(s);
		return;
	}
	d->s = s;
	memcpy(d->from, from, strlen(from) + 1);
	d->next = b->deferred;
	b->deferred = d;
}

/* A stream's replay reply. */
static void
bus_chan_on_replay(redisAsyncContext *ac, void *reply, void *priv)
{
	struct bus_ctx *c = priv;
	struct stream *s = c->s;
	struct event **evs;
	uint64_t last;
	size_t n;
	int status;

	(void)ac;
	if (c->epoch != epoch || reply == NULL ||
	    bus_chan_parse_replay(reply, &status, &last, &evs, &n) == -1) {
		/* Lost with the connection: run it again once the channel is synced. */
		if (c->ch->bus != NULL && !shut)
			bus_chan_defer(c->ch->bus, s, c->from);
		else
			bus_chan_release_stream(s);
		bus_ctx_free(c);
		return;
	}
	stream_replayed(s, status, last, evs, n);
	bus_ctx_free(c);
}

/* Sends the replay script for one stream (it holds a reference for us). */
static void
bus_chan_send_replay(struct stream *s, const char *from)
{
	char key[BUS_KEY_MAX], count[24];
	struct bus_ctx *c;

	snprintf(count, sizeof count, "%lld", opt(OPT_HISTORY_SIZE) * 2 + 16);
	bus_key(key, sizeof key, bus_prefix(), BUS_KEY_HISTORY, s->ch->name);
	/* An id too long to be a stream id is simply unknown. */
	if (strlen(from) >= sizeof c->from || *from == '\0')
		from = "x";
	if ((c = bus_ctx_new(s->ch, s)) != NULL)
		memcpy(c->from, from, strlen(from) + 1);
	if (c == NULL || redisAsyncCommand(bus_cmd, bus_chan_on_replay, c, "EVALSHA %s 1 %s %s %s",
	    bus_sha_replay, key, from, count) != REDIS_OK) {
		if (c != NULL)
			bus_ctx_free(c);
		bus_chan_release_stream(s);
	}
}

/*
 * Handles a replay job from an HTTP thread: served from the ring if the channel got
 * synced meanwhile, sent to Redis if it is synced, deferred otherwise.
 */
void
bus_chan_replay_job(struct stream *s, char *from)
{
	struct channel *ch = s->ch;
	struct bus_chan *b = ch->bus;
	uint64_t key, index;
	bool local, dead;

	if (b == NULL && !shut) {
		bus_chan_touch(ch);	/* the job overtook its channel's subscription */
		b = ch->bus;
	}
	if (shut || b == NULL) {
		bus_chan_release_stream(s);
		return;
	}
	if (!bus_up || b->st != SUB_ACTIVE) {
		bus_chan_defer(b, s, from);
		return;
	}
	pthread_mutex_lock(&ch->lock);
	dead = s->dead;
	local = !dead && ch->covered && bus_id_parse(from, strlen(from), &key) == 0 &&
	    key <= ch->history.last_seq && history_after(&ch->history, key, &index) == 0;
	pthread_mutex_unlock(&ch->lock);
	if (dead)
		bus_chan_release_stream(s);
	else if (local)
		stream_replayed(s, -1, key, NULL, 0);
	else
		bus_chan_send_replay(s, from);
}

/* Builds "<broker>|<session>|<origins>" for a stream. */
static char *
bus_chan_field_of(const struct stream *s)
{
	char *f;

	if (asprintf(&f, "%s%c%s%c%s", bus_broker_id, BUS_FIELD_SEP, s->session ? s->session : "",
	    BUS_FIELD_SEP, s->origins ? s->origins : "") < 0)
		return NULL;
	return f;
}

/* Sorts fields so equal ones are adjacent. */
static int
bus_chan_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Replaces this broker's counts for a channel with what its subscribers are now; deltas
 * queued before this recount carry an older generation and are dropped.
 */
static void
bus_chan_recount(struct bus_chan *b)
{
	struct channel *ch = b->ch;
	struct stream *s;
	char **fields = NULL, key[BUS_KEY_MAX], counts[64][24];
	const char **argv = NULL;
	size_t *lens = NULL, n = 0, i, argc, c;

	pthread_mutex_lock(&ch->lock);
	ch->count_gen++;
	if (ch->nsubs > 0 && (fields = calloc(ch->nsubs, sizeof *fields)) != NULL)
		for (s = ch->subs; s != NULL; s = s->next)
			if ((fields[n] = bus_chan_field_of(s)) != NULL)
				n++;
	pthread_mutex_unlock(&ch->lock);
	qsort(fields, n, sizeof *fields, bus_chan_cmp);
	argv = calloc(2 * n + 5, sizeof *argv);
	lens = calloc(2 * n + 5, sizeof *lens);
	bus_key(key, sizeof key, bus_prefix(), BUS_KEY_COUNTS, ch->name);
	if (argv != NULL && lens != NULL) {
		argv[0] = "EVALSHA"; argv[1] = bus_sha_counts; argv[2] = "1"; argv[3] = key;
		argv[4] = bus_broker_id;
		argc = 5;
		/* At most 64 distinct fields per recount are sent; more would be rare. */
		for (i = 0; i < n && (argc - 5) / 2 < 64; i += c) {
			for (c = 1; i + c < n && strcmp(fields[i], fields[i + c]) == 0; c++)
				;
			size_t k = (argc - 5) / 2;
			snprintf(counts[k], sizeof counts[k], "%zu", c);
			argv[argc] = fields[i];
			argv[argc + 1] = counts[k];
			argc += 2;
		}
		for (i = 0; i < argc; i++)
			lens[i] = strlen(argv[i]);
		redisAsyncCommandArgv(bus_cmd, NULL, NULL, (int)argc, argv, lens);
		redisAsyncCommand(bus_cmd, NULL, NULL, "EXPIRE %s %d", key, BUS_COUNTS_TTL);
	}
	for (i = 0; i < n; i++)
		free(fields[i]);
	free(fields);
	free(argv);
	free(lens);
}

/* Applies one subscriber's arrival (+1) or departure (-1) to this broker's counts. */
void
bus_chan_count_job(struct channel *ch, uint32_t gen, int delta, const char *field)
{
	struct bus_chan *b = ch->bus;
	char key[BUS_KEY_MAX];
	uint32_t now;

	if (shut || !bus_up || b == NULL || b->st != SUB_ACTIVE)
		return;		/* the recount after the next sync covers it */
	pthread_mutex_lock(&ch->lock);
	now = ch->count_gen;
	pthread_mutex_unlock(&ch->lock);
	if (now != gen)
		return;
	bus_key(key, sizeof key, bus_prefix(), BUS_KEY_COUNTS, ch->name);
	redisAsyncCommand(bus_cmd, NULL, NULL, "HINCRBY %s %s %d", key, field, delta);
	redisAsyncCommand(bus_cmd, NULL, NULL, "EXPIRE %s %d", key, BUS_COUNTS_TTL);
}

/* Subscribes one channel that has subscribers (called for every channel on connect). */
static void
bus_chan_want(struct channel *ch, void *arg)
{
	(void)arg;
	if (ch->bus == NULL && bus_chan_nsubs(ch) > 0)
		bus_channel_changed(ch);
}

/* The bus came up: subscribe to everything local subscribers need. */
void
bus_chan_connected(void)
{
	struct bus_chan *b;

	for (b = chans; b != NULL; b = b->next)
		if (b->st == SUB_NONE && bus_chan_nsubs(b->ch) > 0)
			bus_chan_subscribe(b);
	channel_each(bus_chan_want, NULL);
}

/*
 * The bus went down: every subscription is gone and no ring is in step any more.
 * Rings keep their newest id, so the next sync fetches exactly what was missed.
 */
void
bus_chan_disconnected(void)
{
	struct bus_chan *b, *next;

	epoch++;
	for (b = chans; b != NULL; b = next) {
		next = b->next;
		b->st = SUB_NONE;
		bus_chan_drop_held(b);
		pthread_mutex_lock(&b->ch->lock);
		b->ch->covered = false;
		pthread_mutex_unlock(&b->ch->lock);
		if (bus_chan_nsubs(b->ch) == 0)
			bus_chan_free(b);
	}
}

/* Once a second: let go of channels idle past the linger time; refresh count TTLs. */
void
bus_chan_tick(uint32_t now)
{
	struct bus_chan *b, *next;
	char key[BUS_KEY_MAX];
	bool refresh = now - last_refresh >= BUS_REFRESH_SECONDS;

	if (refresh)
		last_refresh = now;
	for (b = chans; b != NULL; b = next) {
		next = b->next;
		if (b->idle_since == 0 && bus_chan_nsubs(b->ch) == 0)
			b->idle_since = now | 1;
		if (b->idle_since != 0 && now - b->idle_since >= BUS_LINGER_SECONDS &&
		    bus_chan_nsubs(b->ch) == 0) {
			if (b->st == SUB_NONE)
				bus_chan_free(b);
			else if (b->st == SUB_ACTIVE && bus_up) {
				bus_key(key, sizeof key, bus_prefix(), BUS_KEY_NOTIFY, b->ch->name);
				redisAsyncCommand(bus_sub, bus_chan_on_message, NULL, "UNSUBSCRIBE %s", key);
				b->st = SUB_LEAVING;
			}
		} else if (refresh && b->st == SUB_ACTIVE) {
			bus_key(key, sizeof key, bus_prefix(), BUS_KEY_COUNTS, b->ch->name);
			redisAsyncCommand(bus_cmd, NULL, NULL, "EXPIRE %s %d", key, BUS_COUNTS_TTL);
		}
	}
}

/* Lets go of every channel (the broker is stopping). */
void
bus_chan_shutdown(void)
{
	shut = true;
	epoch++;
	while (chans != NULL)
		bus_chan_free(chans);
}
