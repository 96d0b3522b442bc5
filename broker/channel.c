/*
 * The channel table: finding and creating channels, their reference counts and
 * subscriber lists, and the sweep that expires history and frees idle channels. Never
 * writes to a socket and knows nothing of streams beyond their list links.
 */
#include "channel.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "fnv.h"

#define CHANNEL_TABLE_MIN 1024

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct channel **table;		/* under table_lock */
static size_t table_size, table_count;	/* under table_lock */
static uint64_t (*channel_floor)(void);	/* set once at start-up */

/* FNV-1a: channel names are short and attacker-chosen only within a fixed alphabet. */
static uint64_t
channel_hash(const char *s, size_t len)
{
	return fnv1a(s, len);
}

/* Allocates the first bucket array. */
int
channel_table_init(uint64_t (*floor)(void))
{
	channel_floor = floor;
	table_size = CHANNEL_TABLE_MIN;
	table = calloc(table_size, sizeof *table);
	return table == NULL ? -1 : 0;
}

/* Frees a channel and its history; the caller unlinked it. */
static void
channel_destroy(struct channel *ch)
{
	if (!ch->unlisted)
		atomic_fetch_sub(&counters.channels, 1);
	history_free(&ch->history);
	pthread_mutex_destroy(&ch->lock);
	free(ch);
}

/* Frees every channel at exit. */
void
channel_table_free(void)
{
	size_t i;
	struct channel *ch, *next;

	for (i = 0; i < table_size; i++)
		for (ch = table[i]; ch != NULL; ch = next) {
			next = ch->hnext;
			channel_destroy(ch);
		}
	free(table);
	table = NULL;
}

/* Doubles the bucket array when chains get long; called with table_lock held. */
static void
channel_table_grow(void)
{
	size_t size = table_size * 2, i;
	struct channel **t = calloc(size, sizeof *t), *ch, *next;

	if (t == NULL)
		return;		/* longer chains, still correct */
	for (i = 0; i < table_size; i++)
		for (ch = table[i]; ch != NULL; ch = next) {
			size_t b = channel_hash(ch->name, ch->namelen) & (size - 1);
			next = ch->hnext;
			ch->hnext = t[b];
			t[b] = ch;
		}
	free(table);
	table = t;
	table_size = size;
}

/* Makes a channel whose history vouches for nothing up to the bus's floor. */
static struct channel *
channel_new(const char *name, size_t len)
{
	struct channel *ch = calloc(1, sizeof *ch + len + 1);

	if (ch == NULL)
		return NULL;
	pthread_mutex_init(&ch->lock, NULL);
	memcpy(ch->name, name, len);
	ch->namelen = (uint16_t)len;
	history_init(&ch->history, channel_floor());
	return ch;
}

/* Looks the name up under the table lock, creating it within max_channels. */
struct channel *
channel_get(const char *name, size_t len, bool create)
{
	struct channel *ch;
	size_t b;

	pthread_mutex_lock(&table_lock);
	b = channel_hash(name, len) & (table_size - 1);
	for (ch = table[b]; ch != NULL; ch = ch->hnext)
		if (ch->namelen == len && memcmp(ch->name, name, len) == 0)
			break;
	if (ch == NULL && create && table_count < (size_t)opt(OPT_MAX_CHANNELS) &&
	    (ch = channel_new(name, len)) != NULL) {
		atomic_fetch_add(&counters.channels, 1);
		ch->hnext = table[b];
		table[b] = ch;
		if (++table_count > table_size)
			channel_table_grow();
	}
	if (ch != NULL)
		atomic_fetch_add(&ch->refs, 1);
	pthread_mutex_unlock(&table_lock);
	return ch;
}

/*
 * A channel outside the table, with one reference: a lock, a list and a ring for one
 * stream of its own (a JMAP stream of several accounts). Not counted, never swept,
 * never published to; its last channel_put frees it.
 */
struct channel *
channel_private(void)
{
	struct channel *ch = channel_new("", 0);

	if (ch != NULL) {
		ch->unlisted = true;
		atomic_init(&ch->refs, 1);
	}
	return ch;
}

/* Another reference for a holder. */
struct channel *
channel_ref(struct channel *ch)
{
	atomic_fetch_add(&ch->refs, 1);
	return ch;
}

/* A holder let go (the sweep frees a listed channel; the last holder a private one). */
void
channel_put(struct channel *ch)
{
	/* Read while still held: once the count drops, the sweep may free a listed channel. */
	bool unlisted = ch->unlisted;

	if (atomic_fetch_sub(&ch->refs, 1) == 1 && unlisted)
		channel_destroy(ch);
}

/* Pushes m on the front of the subscriber list, within max subscribers. */
int
channel_add(struct channel *ch, struct channel_member *m, unsigned max)
{
	if (ch->nsubs >= max)
		return -1;
	m->prev = NULL;
	m->next = ch->subs;
	if (ch->subs != NULL)
		ch->subs->prev = m;
	ch->subs = m;
	ch->nsubs++;
	return 0;
}

/* Unlinks m. */
void
channel_remove(struct channel *ch, struct channel_member *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		ch->subs = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	m->prev = m->next = NULL;
	ch->nsubs--;
}

/* Walks the table under its lock. */
void
channel_each(void (*fn)(struct channel *, void *), void *arg)
{
	size_t i;
	struct channel *ch;

	pthread_mutex_lock(&table_lock);
	for (i = 0; i < table_size; i++)
		for (ch = table[i]; ch != NULL; ch = ch->hnext)
			fn(ch, arg);
	pthread_mutex_unlock(&table_lock);
}

/*
 * Expires old history and frees channels that nobody holds and that have nothing left
 * to replay, a slice of the table per call: the watcher calls it every quarter second
 * and covers the table every BROKER_SWEEP_SECONDS, so the table lock (which every
 * publish and subscribe takes) is never held for a walk of every channel.
 */
void
channel_sweep(int64_t cutoff_ns, size_t limit)
{
	static size_t next;	/* bucket to resume at; only the watcher sweeps */
	size_t n, i;
	struct channel **pp, *ch;
	bool empty;

	pthread_mutex_lock(&table_lock);
	n = table_size / (BROKER_SWEEP_SECONDS * 4) + 1;
	for (i = 0; i < n; i++, next++) {
		for (pp = &table[next % table_size]; (ch = *pp) != NULL;) {
			pthread_mutex_lock(&ch->lock);
			history_expire(&ch->history, cutoff_ns);
			history_trim(&ch->history, limit);
			empty = history_count(&ch->history) == 0 && ch->nsubs == 0;
			pthread_mutex_unlock(&ch->lock);
			if (empty && atomic_load(&ch->refs) == 0) {
				*pp = ch->hnext;
				table_count--;
				channel_destroy(ch);
			} else
				pp = &ch->hnext;
		}
	}
	pthread_mutex_unlock(&table_lock);
}
