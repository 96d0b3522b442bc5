/*
 * Each channel's subscription, as a state machine on the Redis thread: none ->
 * SUBSCRIBE sent (pending) -> syncing (the ring asks the stream in Redis what it
 * missed since its newest event, while notifications that arrive meanwhile are held)
 * -> active (notifications fan out at once) -> UNSUBSCRIBE sent (leaving) once the
 * last member has been gone for REDIS_LINGER_SECONDS. A member's join waits for the
 * active state and its count (redis_counts.c); replays wait for the sync
 * (redis_replay.c). After the link comes back every channel with members subscribes
 * and syncs again, so subscribers lose nothing Redis holds; a sync that finds events
 * lost (Redis restarted empty, or trimmed past the ring) resets the subscribers and
 * still delivers everything retained after the loss. Redis thread only; the ring and
 * the streams are changed under the channel's lock.
 */
#include "redis_bus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fanout.h"
#include "log.h"

/* A sync's reply context. */
struct redis_sync {
	unsigned epoch, shard;
	struct channel *ch;		/* referenced */
};

static struct redis_chan *chans;	/* every held channel */
static bool shut;

/* The Redis thread's state of ch, made on first need. */
struct redis_chan *
redis_sub_chan(struct channel *ch, bool create)
{
	struct redis_chan *b = ch->bus;

	if (b != NULL || !create || shut || (b = calloc(1, sizeof *b)) == NULL)
		return b;
	b->ch = channel_ref(ch);
	b->shard = redis_link_shard_of(ch->name);
	b->next = chans;
	if (chans != NULL)
		chans->prev = b;
	chans = b;
	ch->bus = b;
	return b;
}

/* Drops the notifications held while syncing. */
static void
redis_sub_drop_held(struct redis_chan *b)
{
	while (b->nheld > 0)
		event_unref(b->held[--b->nheld]);
}

/* Answers every join still waiting for the sync with a failure. */
static void
redis_sub_fail_waiting(struct redis_chan *b)
{
	struct redis_member *m;

	for (m = b->members; m != NULL; m = m->next)
		if (m->awaits_sync) {
			m->awaits_sync = false;
			redis_counts_answer(m, -1);
		}
}

/*
 * Stops holding a channel that has no members: its ring is no longer kept in step with
 * Redis, so it is emptied, keeping its indices (a cursor must never pass the ring).
 */
static void
redis_sub_free(struct redis_chan *b)
{
	struct channel *ch = b->ch;
	struct redis_replay *r;

	while ((r = b->deferred) != NULL) {
		b->deferred = r->next;
		redis_replay_cancel(r);
	}
	redis_sub_drop_held(b);
	free(b->held);
	pthread_mutex_lock(&ch->lock);
	history_clear(&ch->history, 0);
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

/* Lets a memberless channel go, first removing counts of ours Redis may still hold. */
static void
redis_sub_release(struct redis_chan *b)
{
	if (b->dirty && redis_link_up(b->shard))
		redis_counts_clear(b);
	redis_sub_free(b);
}

static void redis_sub_on_message(redisAsyncContext *ac, void *reply, void *priv);

/* Subscribes to the channel's notifications. */
static void
redis_sub_subscribe(struct redis_chan *b)
{
	char key[BUS_KEY_MAX];

	if (bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_NOTIFY, b->ch->name) == 0 ||
	    redis_link_subscribe(b->shard, redis_sub_on_message, "SUBSCRIBE", key) == -1)
		return;
	b->st = SUB_PENDING;
	b->sent_ns = clock_ns();
}

/* A stream joined: count it now if the channel is live, else once it is. */
void
redis_sub_join(struct redis_member *m)
{
	struct redis_chan *b = redis_sub_chan(m->ch, true);

	if (b == NULL) {
		redis_counts_answer(m, -1);
		return;
	}
	m->prev = NULL;
	m->next = b->members;
	if (b->members != NULL)
		b->members->prev = m;
	b->members = m;
	m->linked = true;
	b->nmembers++;
	b->idle_since = 0;
	if (!redis_link_up(b->shard)) {
		redis_counts_answer(m, -1);
		return;
	}
	b->counted = true;
	if (b->st == SUB_ACTIVE) {
		redis_counts_join(m);
		return;
	}
	m->awaits_sync = true;
	if (b->st == SUB_NONE)
		redis_sub_subscribe(b);
}

/* A stream left: uncount it and free its member. */
void
redis_sub_leave(struct redis_member *m)
{
	struct redis_chan *b = m->ch->bus;

	if (m->linked && b != NULL) {
		if (m->prev != NULL)
			m->prev->next = m->next;
		else
			b->members = m->next;
		if (m->next != NULL)
			m->next->prev = m->prev;
		b->nmembers--;
		if (b->st == SUB_ACTIVE && redis_link_up(b->shard))
			redis_counts_leave(m);
		else if (b->counted)
			b->dirty = true;
		if (b->nmembers == 0)
			b->idle_since = clock_sec() | 1;
	}
	redis_counts_answer(m, -1);	/* a no-op: answered long before */
	channel_put(m->ch);
	free(m);
}

/* Copies a length-delimited field into buf as a C string (NULL when empty). */
static const char *
redis_sub_field(char *buf, size_t buflen, const char *s, size_t len)
{
	if (len == 0 || len >= buflen)
		return NULL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return buf;
}

/* Turns a notification into an event; NULL if malformed. */
static struct event *
redis_sub_note(const char *payload, size_t len)
{
	struct bus_note n;
	struct publish_req req = { .type = NULL };
	char type[80], sess[160], excl[160], orig[160], id[BUS_ID_MAX];
	uint64_t key;

	if (bus_note_parse(payload, len, &n) == -1 || bus_id_parse(n.id, n.idlen, &key) == -1)
		return NULL;
	req.type = redis_sub_field(type, sizeof type, n.type, n.typelen);
	req.session = redis_sub_field(sess, sizeof sess, n.session, n.sessionlen);
	req.exclude_session = redis_sub_field(excl, sizeof excl, n.exclude_session, n.excludelen);
	req.origin = redis_sub_field(orig, sizeof orig, n.origin, n.originlen);
	req.data = n.data;
	req.len = n.datalen;
	bus_id_format(id, sizeof id, key);
	return event_create(&req, key, id, clock_ns());
}

/* Keeps a notification that arrived while the channel is being synced. */
static void
redis_sub_hold(struct redis_chan *b, struct event *ev)
{
	struct event **h;

	if (b->nheld == b->capheld) {
		size_t cap = b->capheld ? b->capheld * 2 : 8;
		if ((h = realloc(b->held, cap * sizeof *h)) == NULL) {
			event_unref(ev);
			redis_link_fail(b->shard, "out of memory holding notifications");	/* resync later */
			return;
		}
		b->held = h;
		b->capheld = cap;
	}
	b->held[b->nheld++] = ev;
}

/* Appends an event of the channel unless the ring has it already (ch->lock held). */
static void
redis_sub_deliver(struct redis_chan *b, struct event *ev)
{
	if (b->positioned && ev->seq <= b->ch->history.last_seq) {
		event_unref(ev);	/* from the sync and the notifications both */
		return;
	}
	fanout(b->ch, ev);
}

static void redis_sub_sync(struct redis_chan *b);
static void redis_sub_on_unsubscribed(struct redis_chan *b);

/* The pub/sub connection's replies: messages, subscribe and unsubscribe confirmations. */
static void
redis_sub_on_message(redisAsyncContext *ac, void *reply, void *priv)
{
	redisReply *r = reply, **e;
	const char *prefix = redis_link_prefix();
	size_t plen = strlen(prefix);
	struct channel *ch;
	struct redis_chan *b;
	struct event *ev;

	(void)ac;
	(void)priv;
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements < 3)
		return;
	e = r->element;
	if (e[0]->type != REDIS_REPLY_STRING || e[1]->type != REDIS_REPLY_STRING ||
	    e[1]->len < plen + 2 || memcmp(e[1]->str, prefix, plen) != 0 ||
	    (ch = channel_get(e[1]->str + plen + 2, e[1]->len - plen - 2, false)) == NULL)
		return;
	if ((b = ch->bus) != NULL) {
		if (strcmp(e[0]->str, "message") == 0 && e[2]->type == REDIS_REPLY_STRING) {
			if ((ev = redis_sub_note(e[2]->str, e[2]->len)) == NULL)
				log_warn("redis: malformed notification on channel %s", ch->name);
			else if (b->st == SUB_SYNCING)
				redis_sub_hold(b, ev);
			else if (b->st == SUB_ACTIVE) {
				stream_defer_poll_ends();	/* kept long-polls it answers: ended below */
				pthread_mutex_lock(&ch->lock);
				redis_sub_deliver(b, ev);
				pthread_mutex_unlock(&ch->lock);
				stream_end_polls();
			} else
				event_unref(ev);
		} else if (strcmp(e[0]->str, "subscribe") == 0 && b->st == SUB_PENDING)
			redis_sub_sync(b);
		else if (strcmp(e[0]->str, "unsubscribe") == 0 && b->st == SUB_LEAVING)
			redis_sub_on_unsubscribed(b);
	}
	channel_put(ch);
}

/* Redis confirmed the unsubscription: let the channel go, or subscribe again. */
static void
redis_sub_on_unsubscribed(struct redis_chan *b)
{
	b->st = SUB_NONE;
	if (b->nmembers > 0)
		redis_sub_subscribe(b);		/* someone came back meanwhile */
	else
		redis_sub_free(b);
}

/*
 * Events after the ring's newest are gone from Redis: every subscriber gets a reset
 * to base (the id just before what Redis still holds), the ring stops vouching for
 * anything up to base, and what Redis holds after base follows. ch->lock held.
 */
static void
redis_sub_lost(struct redis_chan *b, uint64_t base)
{
	struct channel *ch = b->ch;
	struct channel_member *m;
	struct stream *s;
	uint64_t newest = ch->history.last_seq;

	log_warn("redis: channel %s: events were lost while disconnected; subscribers get a reset", ch->name);
	history_clear(&ch->history, base);
	/* Ids up to the newest the ring held belong to the lost history: the ring must not
	 * vouch for them, so reconnects with such ids go to Redis and get a reset. */
	if (newest >= base)
		ch->history.floor_seq = newest + 1;
	for (m = ch->subs; m != NULL; m = m->next) {
		s = stream_of_member(m);
		if (!s->pending) {
			stream_force_reset(s, base, RESET_EXPIRED);
			stream_wake(s);
		}
	}
}

/*
 * Applies a sync reply: what the ring missed is appended (after a reset when Redis no
 * longer has all of it), then what arrived meanwhile through pub/sub; from now on the
 * ring covers the channel.
 */
static void
redis_sub_apply(struct redis_chan *b, int status, uint64_t last, struct event **evs, size_t n,
    uint64_t base)
{
	struct channel *ch = b->ch;
	struct history *h = &ch->history;
	size_t i;

	pthread_mutex_lock(&ch->lock);
	if (status != BUS_REPLAY_OK && b->positioned)
		redis_sub_lost(b, base);
	for (i = 0; i < n; i++)
		redis_sub_deliver(b, evs[i]);
	if (!b->positioned) {
		h->floor_seq = last;	/* live from here: nothing older is in the ring */
		if (h->last_seq < last)
			h->last_seq = last;
		b->positioned = true;
	}
	for (i = 0; i < b->nheld; i++)
		redis_sub_deliver(b, b->held[i]);
	b->nheld = 0;
	b->covered = true;
	pthread_mutex_unlock(&ch->lock);
	free(evs);
	b->st = SUB_ACTIVE;
}

/* Collects the joins the first recount after a sync answers. */
static struct redis_member *
redis_sub_waiting(struct redis_chan *b)
{
	struct redis_member *m, *list = NULL;

	for (m = b->members; m != NULL; m = m->next)
		if (m->awaits_sync) {
			m->awaits_sync = false;
			m->wait_next = list;
			list = m;
		}
	return list;
}

/* The sync script's reply: apply it, run the deferred replays, count the members. */
static void
redis_sub_on_sync(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_sync *c = priv;
	struct redis_chan *b = c->ch->bus;
	redisReply *r = reply;
	struct event **evs;
	uint64_t last, base;
	size_t n;
	int status;

	(void)ac;
	if (c->epoch == redis_link_epoch(c->shard) && b != NULL && b->st == SUB_SYNCING && r != NULL) {
		if (redis_replay_parse(r, clock_ns(), &status, &last, &evs, &n, &base) == -1) {
			log_error("redis: sync of %s failed: %s", c->ch->name,
			    r->type == REDIS_REPLY_ERROR ? r->str : "malformed reply");
			redis_link_fail(c->shard, "sync failed");
		} else {
			redis_sub_apply(b, status, last, evs, n, base);
			redis_replay_flush(b);
			redis_counts_recount(b, redis_sub_waiting(b));
			b->dirty = false;
		}
	}
	channel_put(c->ch);
	free(c);
}

/* Asks Redis what the ring missed since its newest event (or only where "now" is). */
static void
redis_sub_sync(struct redis_chan *b)
{
	struct channel *ch = b->ch;
	char key[BUS_KEY_MAX], from[BUS_ID_MAX] = "", count[24];
	const char *argv[7] = { "EVALSHA", redis_link_sha(b->shard, SCRIPT_REPLAY), "1", key, from, count, "sync" };
	struct redis_sync *c = malloc(sizeof *c);

	b->st = SUB_SYNCING;
	pthread_mutex_lock(&ch->lock);
	if (b->positioned)
		bus_id_format(from, sizeof from, ch->history.last_seq);
	pthread_mutex_unlock(&ch->lock);
	snprintf(count, sizeof count, "%lld", opt(OPT_HISTORY_SIZE) * 2 + 16);
	if (c == NULL || bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_HISTORY, ch->name) == 0) {
		free(c);
		redis_link_fail(b->shard, "cannot sync a channel");
		return;
	}
	c->epoch = redis_link_epoch(b->shard);
	c->shard = b->shard;
	c->ch = channel_ref(ch);
	if (redis_link_command(b->shard, redis_sub_on_sync, c, 7, argv) == -1) {
		channel_put(ch);
		free(c);
	}
}

/* A shard's link came up: its channels with members subscribe; memberless ones are let go. */
void
redis_sub_connected(unsigned shard)
{
	struct redis_chan *b, *next;

	for (b = chans; b != NULL; b = next) {
		next = b->next;
		if (b->shard != shard)
			continue;
		if (b->nmembers > 0) {
			if (b->st == SUB_NONE)
				redis_sub_subscribe(b);
		} else
			redis_sub_release(b);
	}
}

/*
 * The link went down: every subscription is gone and no ring is in step any more.
 * Rings keep their newest id, so the next sync fetches exactly what was missed; joins
 * and replays waiting for a sync fail now (503, a reset) rather than wait unbounded.
 */
void
redis_sub_disconnected(unsigned shard)
{
	struct redis_chan *b;
	struct redis_replay *r;

	for (b = chans; b != NULL; b = b->next) {
		if (b->shard != shard)
			continue;
		b->st = SUB_NONE;
		redis_sub_drop_held(b);
		redis_sub_fail_waiting(b);
		while ((r = b->deferred) != NULL) {
			b->deferred = r->next;
			redis_replay_cancel(r);
		}
		if (b->counted)
			b->dirty = true;	/* a count in flight may or may not have landed */
		pthread_mutex_lock(&b->ch->lock);
		b->covered = false;
		pthread_mutex_unlock(&b->ch->lock);
	}
}

/* Once a second: unconfirmed (un)subscriptions time out; idle channels go; count TTLs are refreshed. */
void
redis_sub_tick(uint32_t now)
{
	static uint32_t last_refresh;
	struct redis_chan *b, *next;
	char key[BUS_KEY_MAX], why[96];
	int64_t limit = clock_ns() - opt(OPT_REDIS_TIMEOUT) * 1000000LL;
	bool refresh = now - last_refresh >= REDIS_REFRESH_SECONDS;

	if (refresh)
		last_refresh = now;
	for (b = chans; b != NULL; b = next) {
		next = b->next;
		if ((b->st == SUB_PENDING || b->st == SUB_LEAVING) && b->sent_ns < limit) {
			snprintf(why, sizeof why, "no confirmation of %sSUBSCRIBE within %lld ms",
			    b->st == SUB_LEAVING ? "UN" : "", opt(OPT_REDIS_TIMEOUT));
			redis_link_fail(b->shard, why);
			return;		/* every channel of the shard was reset; the rest next second */
		}
		if (b->nmembers > 0)
			b->idle_since = 0;
		else if (b->idle_since == 0)
			b->idle_since = now | 1;
		if (b->nmembers == 0 && now - b->idle_since >= REDIS_LINGER_SECONDS) {
			if (b->st == SUB_NONE && (!b->dirty || redis_link_up(b->shard)))
				redis_sub_release(b);
			else if (b->st == SUB_ACTIVE && redis_link_up(b->shard) &&
			    bus_key(key, sizeof key, redis_link_prefix(), BUS_KEY_NOTIFY, b->ch->name) != 0 &&
			    redis_link_subscribe(b->shard, redis_sub_on_message, "UNSUBSCRIBE", key) == 0) {
				b->st = SUB_LEAVING;
				b->sent_ns = clock_ns();
			}
		} else if (refresh && b->st == SUB_ACTIVE)
			redis_counts_refresh(b);
	}
}

/* Lets go of every channel (the broker is stopping); members stay with their streams. */
void
redis_sub_shutdown(void)
{
	struct redis_member *m;

	shut = true;
	while (chans != NULL) {
		redis_sub_fail_waiting(chans);
		while ((m = chans->members) != NULL) {
			chans->members = m->next;
			m->linked = false;
			redis_counts_answer(m, -1);
		}
		chans->nmembers = 0;
		redis_sub_free(chans);
	}
}
