/*
 * The pusher's JMAP mapping and per-account windows (jmap_states.h). A window table is a
 * FIFO (every window has the same length, so the oldest is the first due) plus a hash
 * on the channel name; it owns its windows and nothing else.
 */
#include "jmap_states.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coalesce.h"
#include "fnv.h"

#define JMAP_BUCKETS 1024

const char *const jmap_type_names[JMAP_TYPES] = {
	"Calendar", "CalendarEvent", "Contact", "ContactGroup", "Email", "EmailDelivery",
	"EmailSubmission", "Mailbox", "Quota", "Thread",
};

/* One account's open window. */
struct jmap_window {
	struct jmap_window *hnext;	/* hash chain */
	struct jmap_window *next;	/* FIFO, oldest first */
	struct jmap_update u;
	uint64_t deadline;
};

struct jmap_windows {
	struct jmap_window *buckets[JMAP_BUCKETS];
	struct jmap_window *head, **tail;
	uint64_t window_ms;
	size_t max, n;
	char *format;
};

/* Sets type t to v when v is a used counter (not 0). */
static void
jmap_set(struct jmap_states *st, enum jmap_type t, uint64_t v)
{
	if (v == 0)
		return;
	st->mask |= 1u << t;
	st->v[t] = v;
}

/* Whether the notification's jmapStates has key k. */
static bool
jmap_has(const struct notify_msg *m, enum notify_jmap k)
{
	return (m->jmap_mask & (1u << k)) != 0;
}

/* The mapping (jmap_states.h). */
void
jmap_map(const struct notify_msg *m, struct jmap_states *out)
{
	memset(out, 0, sizeof *out);
	if (m->cls != NOTIFY_CLASS_EVENT)
		return;
	if (strcmp(m->event, "MailboxModseq") == 0 || strcmp(m->event, "MailboxCreate") == 0) {
		if (jmap_has(m, NOTIFY_JMAP_EMAIL)) {
			jmap_set(out, JMAP_EMAIL, m->jmap[NOTIFY_JMAP_EMAIL]);
			jmap_set(out, JMAP_THREAD, m->jmap[NOTIFY_JMAP_EMAIL]);
			jmap_set(out, JMAP_MAILBOX, m->jmap[NOTIFY_JMAP_EMAIL]);
		}
		if (jmap_has(m, NOTIFY_JMAP_CALENDAREVENT)) {
			jmap_set(out, JMAP_CALENDAR, m->jmap[NOTIFY_JMAP_CALENDAREVENT]);
			jmap_set(out, JMAP_CALENDAREVENT, m->jmap[NOTIFY_JMAP_CALENDAREVENT]);
		}
		if (jmap_has(m, NOTIFY_JMAP_CONTACT)) {
			jmap_set(out, JMAP_CONTACT, m->jmap[NOTIFY_JMAP_CONTACT]);
			jmap_set(out, JMAP_CONTACTGROUP, m->jmap[NOTIFY_JMAP_CONTACT]);
		}
		if (jmap_has(m, NOTIFY_JMAP_EMAILSUBMISSION))
			jmap_set(out, JMAP_EMAILSUBMISSION, m->jmap[NOTIFY_JMAP_EMAILSUBMISSION]);
		if (jmap_has(m, NOTIFY_JMAP_QUOTA))
			jmap_set(out, JMAP_QUOTA, m->jmap[NOTIFY_JMAP_QUOTA]);
		return;
	}
	if (strcmp(m->event, "MessageNew") == 0 || strcmp(m->event, "MessageAppend") == 0) {
		if (m->has_modseq)
			jmap_set(out, JMAP_EMAILDELIVERY, m->modseq);
		else if (jmap_has(m, NOTIFY_JMAP_EMAIL) && m->jmap[NOTIFY_JMAP_EMAIL] < UINT64_MAX)
			jmap_set(out, JMAP_EMAILDELIVERY, m->jmap[NOTIFY_JMAP_EMAIL] + 1);
	}
}

/* Highest of each. */
void
jmap_merge(struct jmap_states *a, const struct jmap_states *b)
{
	int t;

	for (t = 0; t < JMAP_TYPES; t++) {
		if (!(b->mask & (1u << t)))
			continue;
		if (!(a->mask & (1u << t)) || b->v[t] > a->v[t])
			a->v[t] = b->v[t];
		a->mask |= 1u << t;
	}
}

/* {"Type":"decimal",...}, in enum order. */
size_t
jmap_states_json(const struct jmap_states *st, char *out, size_t outlen)
{
	size_t n = 0;
	int t, k;

	if (outlen < 3)
		return 0;
	out[n++] = '{';
	for (t = 0; t < JMAP_TYPES; t++) {
		if (!(st->mask & (1u << t)))
			continue;
		k = snprintf(out + n, outlen - n, "%s\"%s\":\"%llu\"", n > 1 ? "," : "",
		    jmap_type_names[t], (unsigned long long)st->v[t]);
		if (k < 0 || (size_t)k >= outlen - n)
			return 0;
		n += (size_t)k;
	}
	if (n + 2 > outlen)
		return 0;
	out[n++] = '}';
	out[n] = '\0';
	return n;
}

/* FNV-1a of a channel name. */
static unsigned
jmap_hash(const char *s)
{
	return (unsigned)(fnv1a(s, strlen(s)) % JMAP_BUCKETS);
}

/* A new table. */
struct jmap_windows *
jmap_windows_new(uint64_t window_ms, size_t max_accounts, const char *channel_format)
{
	struct jmap_windows *w = calloc(1, sizeof *w);

	if (w == NULL)
		return NULL;
	w->tail = &w->head;
	w->window_ms = window_ms;
	w->max = max_accounts;
	if ((w->format = strdup(channel_format != NULL ? channel_format : "%u")) == NULL) {
		free(w);
		return NULL;
	}
	return w;
}

/* Frees everything. */
void
jmap_windows_free(struct jmap_windows *w)
{
	struct jmap_window *x, *next;

	if (w == NULL)
		return;
	for (x = w->head; x != NULL; x = next) {
		next = x->next;
		free(x);
	}
	free(w->format);
	free(w);
}

/* Finds the open window of a channel, or NULL. */
static struct jmap_window *
jmap_find(const struct jmap_windows *w, const char *channel)
{
	struct jmap_window *x;

	for (x = w->buckets[jmap_hash(channel)]; x != NULL; x = x->hnext)
		if (strcmp(x->u.channel, channel) == 0)
			return x;
	return NULL;
}

/* Folds one notification in. */
int
jmap_windows_add(struct jmap_windows *w, const struct notify_msg *m, uint64_t now_ms)
{
	char channel[NAMES_CHANNEL_MAX + 1];
	struct jmap_states st;
	struct jmap_window *x;
	unsigned h;

	jmap_map(m, &st);
	if (st.mask == 0 || m->shared || m->owner[0] == '\0')
		return 0;
	if (coalesce_channel(w->format, m->owner, channel, sizeof channel) == -1)
		return -1;
	if ((x = jmap_find(w, channel)) == NULL) {
		if (w->n >= w->max || (x = calloc(1, sizeof *x)) == NULL)
			return -1;
		memcpy(x->u.channel, channel, sizeof channel);
		x->u.first_ms = now_ms;
		x->deadline = now_ms + w->window_ms;
		h = jmap_hash(channel);
		x->hnext = w->buckets[h];
		w->buckets[h] = x;
		*w->tail = x;
		w->tail = &x->next;
		w->n++;
	}
	jmap_merge(&x->u.states, &st);
	x->u.notifications++;
	return 1;
}

/* The head's deadline. */
uint64_t
jmap_windows_next_deadline(const struct jmap_windows *w)
{
	return w->head != NULL ? w->head->deadline : JMAP_NEVER;
}

/* Unlinks the head from the FIFO and its hash chain, hands it out. */
int
jmap_windows_pop_due(struct jmap_windows *w, uint64_t now_ms, struct jmap_update *out)
{
	struct jmap_window *x = w->head, **pp;

	if (x == NULL || (now_ms != JMAP_NEVER && x->deadline > now_ms))
		return 0;
	if ((w->head = x->next) == NULL)
		w->tail = &w->head;
	for (pp = &w->buckets[jmap_hash(x->u.channel)]; *pp != x; pp = &(*pp)->hnext)
		;
	*pp = x->hnext;
	w->n--;
	*out = x->u;
	free(x);
	return 1;
}

/* Open windows. */
size_t
jmap_windows_pending(const struct jmap_windows *w)
{
	return w->n;
}
