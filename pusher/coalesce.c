/*
 * Coalescing windows, one per mailbox owner: a hash table finds a user's open window, a
 * FIFO orders windows by deadline (every window has the same length and times only move
 * forward, so the oldest window is always due first). A window collects the changed
 * mailboxes with the last counters Cyrus reported and the event types seen; when it is
 * popped it becomes one JSON payload. Publishing, clocks and logging belong to the daemon.
 */
#include "coalesce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fnv.h"

_Static_assert(NOTIFY_ID_MAX == NAMES_ID_MAX, "a Cyrus session id must fit an origin id");
_Static_assert(COALESCE_KINDS_MAX <= 64, "kinds are bits of a uint64_t");

/* One changed mailbox in a window. */
struct coalesce_mailbox {
	char *name;			/* new */
	char id[NOTIFY_ID_MAX + 1];
	uint64_t kinds;			/* bit i: c->kinds[i] seen for this mailbox */
	bool has_modseq, has_uidnext, has_unseen;
	uint64_t modseq, uidnext, unseen;
};

/* One open window. */
struct coalesce_user {
	struct coalesce_user *hnext;	/* hash chain */
	struct coalesce_user *qnext;	/* deadline FIFO */
	uint64_t opened;		/* now_ms of the first notification */
	uint64_t deadline;
	char owner[NOTIFY_USER_MAX + 1];
	char channel[NAMES_CHANNEL_MAX + 1];
	char session[NOTIFY_ID_MAX + 1];
	bool mixed;			/* messages from more than one (or no) session */
	bool truncated;			/* a mailbox was left out */
	uint64_t kinds;
	unsigned count;
	size_t nmb, capmb;
	struct coalesce_mailbox *mb;	/* new */
};

struct coalesce {
	uint64_t window_ms;
	size_t max_users, max_mailboxes;
	char *format;			/* new */
	char *shared_channel;		/* new, or NULL */
	bool all_events;
	char *filter[COALESCE_KINDS_MAX];	/* new; accepted types unless all_events */
	size_t nfilter;
	char *kinds[COALESCE_KINDS_MAX];	/* new; interned event types */
	size_t nkinds;
	struct coalesce_user **buckets;	/* new */
	size_t nbuckets, nusers;
	struct coalesce_user *head, *tail;
	struct coalesce_stats stats;
	char errstr[128];
};

/* Records why the last call failed; returns -1. */
static int
coalesce_fail(struct coalesce *c, const char *reason)
{
	snprintf(c->errstr, sizeof(c->errstr), "%s", reason);
	return -1;
}

/* FNV-1a over a NUL-terminated owner. */
static size_t
coalesce_hash(const char *s)
{
	return (size_t)fnv1a(s, strlen(s));
}

/* True when c is allowed in the literal parts of a channel_format. */
static bool
coalesce_literal_ok(char ch)
{
	return names_channel_valid(&ch, 1);
}

/* Checks a channel_format: only %u %l %d %% escapes and channel-alphabet literals. */
static int
coalesce_format_check(const char *fmt, char *err, size_t errlen)
{
	size_t i;

	if (*fmt == '\0') {
		snprintf(err, errlen, "channel_format is empty");
		return -1;
	}
	for (i = 0; fmt[i] != '\0'; i++) {
		if (fmt[i] == '%') {
			i++;
			if (fmt[i] != 'u' && fmt[i] != 'l' && fmt[i] != 'd' && fmt[i] != '%') {
				snprintf(err, errlen, "channel_format: unknown escape at byte %zu "
				    "(use %%u, %%l, %%d or %%%%)", i);
				return -1;
			}
		} else if (!coalesce_literal_ok(fmt[i])) {
			snprintf(err, errlen, "channel_format: byte %zu is not allowed in a channel "
			    "name", i + 1);
			return -1;
		}
	}
	return 0;
}

/* Appends s to dst at *o, failing when it does not fit. */
static int
coalesce_append(char *dst, size_t dstsize, size_t *o, const char *s, size_t len)
{
	if (*o + len >= dstsize)
		return -1;
	memcpy(dst + *o, s, len);
	*o += len;
	dst[*o] = '\0';
	return 0;
}

/* Expands %u %l %d %% for owner; see coalesce.h. */
int
coalesce_channel(const char *format, const char *owner, char *dst, size_t dstsize)
{
	const char *at = strrchr(owner, '@');
	size_t o = 0, i, ulen = strlen(owner);
	size_t llen = at != NULL ? (size_t)(at - owner) : ulen;
	const char *dom = at != NULL ? at + 1 : "";
	int rc = 0;

	if (dstsize == 0)
		return -1;
	dst[0] = '\0';
	for (i = 0; format[i] != '\0' && rc == 0; i++) {
		if (format[i] != '%') {
			rc = coalesce_append(dst, dstsize, &o, format + i, 1);
			continue;
		}
		switch (format[++i]) {
		case 'u':
			rc = coalesce_append(dst, dstsize, &o, owner, ulen);
			break;
		case 'l':
			rc = coalesce_append(dst, dstsize, &o, owner, llen);
			break;
		case 'd':
			rc = coalesce_append(dst, dstsize, &o, dom, strlen(dom));
			break;
		case '%':
			rc = coalesce_append(dst, dstsize, &o, "%", 1);
			break;
		default:
			return -1;	/* includes a lone trailing '%' */
		}
	}
	if (rc == -1 || !names_channel_valid(dst, o))
		return -1;
	return 0;
}

/* Parses the events list: "default", "all", or names separated by commas or blanks. */
static int
coalesce_events_parse(struct coalesce *c, const char *spec, char *err, size_t errlen)
{
	const char *p = spec != NULL ? spec : COALESCE_DEFAULT_EVENTS;
	size_t n;

	if (strcmp(p, "default") == 0 || strcmp(p, "all") == 0) {
		c->all_events = true;
		if (strcmp(p, "all") == 0)
			return 0;
		p = "-Login -Logout";	/* everything except these */
	}
	while (*p != '\0') {
		bool neg;

		p += strspn(p, ", \t");
		if (*p == '\0')
			break;
		neg = *p == '-';
		n = strcspn(p + neg, ", \t");
		if (neg != c->all_events || !names_event_type_valid(p + neg, n) ||
		    c->nfilter == COALESCE_KINDS_MAX) {
			snprintf(err, errlen, "events: bad or too many event types "
			    "(a list of Cyrus event names, \"default\" or \"all\")");
			return -1;
		}
		c->filter[c->nfilter] = strndup(p + neg, n);
		if (c->filter[c->nfilter++] == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		p += neg + n;
	}
	if (!c->all_events && c->nfilter == 0) {
		snprintf(err, errlen, "events: empty list");
		return -1;
	}
	return 0;
}

/* True when the event type counts: listed, or (default/all) not excluded. */
static bool
coalesce_wanted(const struct coalesce *c, const char *event)
{
	size_t i;

	for (i = 0; i < c->nfilter; i++)
		if (strcmp(c->filter[i], event) == 0)
			return !c->all_events;
	return c->all_events;
}

/* New coalescer; see coalesce.h. */
struct coalesce *
coalesce_new(const struct coalesce_config *cfg, char *err, size_t errlen)
{
	struct coalesce *c = calloc(1, sizeof(*c));
	const char *fmt = cfg->channel_format != NULL ? cfg->channel_format :
	    COALESCE_DEFAULT_FORMAT;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->window_ms = cfg->coalesce_ms;
	c->max_users = cfg->max_users != 0 ? cfg->max_users : COALESCE_DEFAULT_MAX_USERS;
	c->max_mailboxes = cfg->max_mailboxes != 0 ? cfg->max_mailboxes :
	    COALESCE_DEFAULT_MAX_MAILBOXES;
	for (c->nbuckets = 64; c->nbuckets < c->max_users && c->nbuckets < (1u << 20);)
		c->nbuckets *= 2;
	if (coalesce_format_check(fmt, err, errlen) == -1 ||
	    coalesce_events_parse(c, cfg->events, err, errlen) == -1)
		goto fail;
	if (cfg->shared_channel != NULL &&
	    !names_channel_valid(cfg->shared_channel, strlen(cfg->shared_channel))) {
		snprintf(err, errlen, "shared_channel is not a valid channel name");
		goto fail;
	}
	c->format = strdup(fmt);
	c->shared_channel = cfg->shared_channel != NULL ? strdup(cfg->shared_channel) : NULL;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->format == NULL || c->buckets == NULL ||
	    (cfg->shared_channel != NULL && c->shared_channel == NULL)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	return c;
fail:
	coalesce_free(c);
	return NULL;
}

/* Frees one window and its mailboxes. */
static void
coalesce_user_free(struct coalesce_user *u)
{
	size_t i;

	for (i = 0; i < u->nmb; i++)
		free(u->mb[i].name);
	free(u->mb);
	free(u);
}

/* Frees everything; see coalesce.h. */
void
coalesce_free(struct coalesce *c)
{
	struct coalesce_user *u, *next;
	size_t i;

	if (c == NULL)
		return;
	for (u = c->head; u != NULL; u = next) {
		next = u->qnext;
		coalesce_user_free(u);
	}
	for (i = 0; i < c->nfilter; i++)
		free(c->filter[i]);
	for (i = 0; i < c->nkinds; i++)
		free(c->kinds[i]);
	free(c->buckets);
	free(c->format);
	free(c->shared_channel);
	free(c);
}

/* Bit for an event type, interning it; 0 when the table is full or memory ran out. */
static uint64_t
coalesce_kind(struct coalesce *c, const char *event)
{
	size_t i;

	for (i = 0; i < c->nkinds; i++)
		if (strcmp(c->kinds[i], event) == 0)
			return 1ULL << i;
	if (c->nkinds == COALESCE_KINDS_MAX || (c->kinds[c->nkinds] = strdup(event)) == NULL)
		return 0;
	return 1ULL << c->nkinds++;
}

/* Finds the open window of owner, or NULL. */
static struct coalesce_user *
coalesce_find(const struct coalesce *c, const char *owner)
{
	struct coalesce_user *u = c->buckets[coalesce_hash(owner) & (c->nbuckets - 1)];

	while (u != NULL && strcmp(u->owner, owner) != 0)
		u = u->hnext;
	return u;
}

/* Opens a window for owner on channel, deadline now + window, at the FIFO's tail. */
static struct coalesce_user *
coalesce_open(struct coalesce *c, const char *owner, const char *channel, uint64_t now_ms)
{
	struct coalesce_user *u;
	size_t b;

	if (c->nusers >= c->max_users) {
		c->stats.dropped_users++;
		coalesce_fail(c, "too many users with an open window (max_users)");
		return NULL;
	}
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		c->stats.nomem++;
		coalesce_fail(c, "out of memory");
		return NULL;
	}
	snprintf(u->owner, sizeof(u->owner), "%s", owner);
	snprintf(u->channel, sizeof(u->channel), "%s", channel);
	u->opened = now_ms;
	u->deadline = now_ms > UINT64_MAX - 1 - c->window_ms ? UINT64_MAX - 1 :
	    now_ms + c->window_ms;
	if (c->tail != NULL && u->deadline < c->tail->deadline)
		u->deadline = c->tail->deadline;	/* keeps the FIFO sorted if time stepped back */
	b = coalesce_hash(owner) & (c->nbuckets - 1);
	u->hnext = c->buckets[b];
	c->buckets[b] = u;
	if (c->tail != NULL)
		c->tail->qnext = u;
	else
		c->head = u;
	c->tail = u;
	c->nusers++;
	return u;
}

/* Finds or adds the entry for a mailbox; NULL when max_mailboxes is reached. */
static struct coalesce_mailbox *
coalesce_mailbox(struct coalesce *c, struct coalesce_user *u, const char *name)
{
	struct coalesce_mailbox *mb;
	size_t i;

	for (i = 0; i < u->nmb; i++)
		if (strcmp(u->mb[i].name, name) == 0)
			return &u->mb[i];
	if (u->nmb == c->max_mailboxes)
		return NULL;
	if (u->nmb == u->capmb) {
		size_t cap = u->capmb != 0 ? u->capmb * 2 : 4;
		if (cap > c->max_mailboxes)
			cap = c->max_mailboxes;
		mb = realloc(u->mb, cap * sizeof(*mb));
		if (mb == NULL)
			return NULL;
		u->mb = mb;
		u->capmb = cap;
	}
	mb = &u->mb[u->nmb];
	memset(mb, 0, sizeof(*mb));
	if ((mb->name = strdup(name)) == NULL)
		return NULL;
	u->nmb++;
	return mb;
}

/* Merges a notification's counters: modseq and uidnext only grow, unseen follows the newest modseq. */
static void
coalesce_merge(struct coalesce_mailbox *mb, const struct notify_msg *m, uint64_t kind)
{
	mb->kinds |= kind;
	if (m->mailbox_id[0] != '\0')
		memcpy(mb->id, m->mailbox_id, sizeof(mb->id));
	if (m->has_unseen && (!m->has_modseq || !mb->has_modseq || m->modseq >= mb->modseq)) {
		mb->unseen = m->unseen;
		mb->has_unseen = true;
	}
	if (m->has_modseq && (!mb->has_modseq || m->modseq > mb->modseq)) {
		mb->modseq = m->modseq;
		mb->has_modseq = true;
	}
	if (m->has_uidnext && (!mb->has_uidnext || m->uidnext > mb->uidnext)) {
		mb->uidnext = m->uidnext;
		mb->has_uidnext = true;
	}
}

/* Adds one notification; see coalesce.h. */
int
coalesce_add(struct coalesce *c, const struct notify_msg *m, uint64_t now_ms)
{
	char channel[NAMES_CHANNEL_MAX + 1];
	struct coalesce_user *u;
	struct coalesce_mailbox *mb;
	const char *owner = m->owner;
	uint64_t kind;

	if (!coalesce_wanted(c, m->event)) {
		c->stats.filtered++;
		return 0;
	}
	if (m->shared && c->shared_channel == NULL) {
		c->stats.shared_skipped++;
		return 0;
	}
	if (m->shared)
		owner = "";	/* one window for all shared folders */
	if ((u = coalesce_find(c, owner)) == NULL) {
		if (m->shared)
			snprintf(channel, sizeof(channel), "%s", c->shared_channel);
		else if (coalesce_channel(c->format, owner, channel, sizeof(channel)) == -1) {
			c->stats.bad_channel++;
			return coalesce_fail(c, "channel_format gives an invalid channel for this user");
		}
		if ((u = coalesce_open(c, owner, channel, now_ms)) == NULL)
			return -1;
		snprintf(u->session, sizeof(u->session), "%s", m->session);
		u->mixed = m->session[0] == '\0';
	} else if (strcmp(u->session, m->session) != 0 || m->session[0] == '\0')
		u->mixed = true;
	kind = coalesce_kind(c, m->event);
	u->kinds |= kind;
	u->count++;
	c->stats.added++;
	if (m->mailbox[0] == '\0')
		return 0;	/* Login/Logout: no mailbox changed */
	if ((mb = coalesce_mailbox(c, u, m->mailbox)) == NULL) {
		u->truncated = true;
		c->stats.mailbox_overflow++;
		return 0;	/* still announced, flagged truncated */
	}
	coalesce_merge(mb, m, kind);
	return 0;
}

/* Earliest deadline; see coalesce.h. */
uint64_t
coalesce_next_deadline(const struct coalesce *c)
{
	return c->head != NULL ? c->head->deadline : COALESCE_NEVER;
}

/* A JSON array of the event types in a kinds mask, in name order (new). */
static json_t *
coalesce_kinds_json(const struct coalesce *c, uint64_t kinds)
{
	const char *names[COALESCE_KINDS_MAX];
	size_t i, j, n = 0;
	json_t *a = json_array();

	for (i = 0; i < c->nkinds; i++)
		if (kinds & (1ULL << i)) {
			for (j = n; j > 0 && strcmp(names[j - 1], c->kinds[i]) > 0; j--)
				names[j] = names[j - 1];
			names[j] = c->kinds[i];
			n++;
		}
	for (i = 0; a != NULL && i < n; i++)
		if (json_array_append_new(a, json_string(names[i])) == -1) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* The JSON object for one mailbox (new). */
static json_t *
coalesce_mailbox_json(const struct coalesce *c, const struct coalesce_mailbox *mb)
{
	json_t *o = json_object();
	int rc;

	if (o == NULL)
		return NULL;
	rc = json_object_set_new(o, "name", json_string(mb->name));
	if (mb->id[0] != '\0')
		rc |= json_object_set_new(o, "id", json_string(mb->id));
	if (mb->has_modseq)
		rc |= json_object_set_new(o, "modseq", json_integer((json_int_t)mb->modseq));
	if (mb->has_uidnext)
		rc |= json_object_set_new(o, "uidnext", json_integer((json_int_t)mb->uidnext));
	if (mb->has_unseen)
		rc |= json_object_set_new(o, "unseen", json_integer((json_int_t)mb->unseen));
	rc |= json_object_set_new(o, "events", coalesce_kinds_json(c, mb->kinds));
	if (rc != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Serialises a window into its payload text (new), or NULL when out of memory. */
static char *
coalesce_payload(const struct coalesce *c, const struct coalesce_user *u)
{
	json_t *o = json_object(), *mbs = json_array();
	char *text = NULL;
	int rc;
	size_t i;

	if (o == NULL || mbs == NULL) {
		json_decref(o);
		json_decref(mbs);
		return NULL;
	}
	rc = u->owner[0] != '\0' ? json_object_set_new(o, "user", json_string(u->owner)) :
	    json_object_set_new(o, "shared", json_true());
	for (i = 0; i < u->nmb; i++)
		rc |= json_array_append_new(mbs, coalesce_mailbox_json(c, &u->mb[i]));
	rc |= json_object_set_new(o, "mailboxes", mbs);
	rc |= json_object_set_new(o, "events", coalesce_kinds_json(c, u->kinds));
	if (!u->mixed)
		rc |= json_object_set_new(o, "origin", json_string(u->session));
	if (u->truncated)
		rc |= json_object_set_new(o, "truncated", json_true());
	rc |= json_object_set_new(o, "notifications", json_integer(u->count));
	if (rc == 0)
		text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return text;
}

/* Unlinks the head window from the FIFO and its hash chain. */
static struct coalesce_user *
coalesce_unlink_head(struct coalesce *c)
{
	struct coalesce_user *u = c->head, **pp;

	pp = &c->buckets[coalesce_hash(u->owner) & (c->nbuckets - 1)];
	while (*pp != u)
		pp = &(*pp)->hnext;
	*pp = u->hnext;
	c->head = u->qnext;
	if (c->head == NULL)
		c->tail = NULL;
	c->nusers--;
	return u;
}

/* Hands out one due window; see coalesce.h. */
int
coalesce_pop_due(struct coalesce *c, uint64_t now_ms, struct coalesce_event *out)
{
	struct coalesce_user *u;
	char *text;

	memset(out, 0, sizeof(*out));
	if (c->head == NULL || c->head->deadline > now_ms)
		return 0;
	u = coalesce_unlink_head(c);
	text = coalesce_payload(c, u);
	if (text == NULL) {
		c->stats.nomem++;
		coalesce_user_free(u);
		return coalesce_fail(c, "out of memory building a change event");
	}
	memcpy(out->channel, u->channel, sizeof(out->channel));
	memcpy(out->user, u->owner, sizeof(out->user));
	if (!u->mixed)
		memcpy(out->origin, u->session, sizeof(out->origin));
	out->payload = text;
	out->payload_len = strlen(text);
	out->notifications = u->count;
	out->first_ms = u->opened;
	c->stats.emitted++;
	coalesce_user_free(u);
	return 1;
}

/* Frees an event's payload; see coalesce.h. */
void
coalesce_event_clear(struct coalesce_event *ev)
{
	free(ev->payload);	/* json_dumps() text is malloc'ed with jansson's default allocator */
	ev->payload = NULL;
	ev->payload_len = 0;
}

/* Open windows; see coalesce.h. */
size_t
coalesce_pending(const struct coalesce *c)
{
	return c->nusers;
}

/* Counters; see coalesce.h. */
const struct coalesce_stats *
coalesce_stats(const struct coalesce *c)
{
	return &c->stats;
}

/* Last error; see coalesce.h. */
const char *
coalesce_error(const struct coalesce *c)
{
	return c->errstr;
}
