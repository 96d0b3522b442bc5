/*
 * Standalone web push registrations: a table of channels, each with its registrations,
 * and the file that keeps them across restarts (webpush_store), written whole to a
 * temporary file beside it, synced and renamed over it, so a crash leaves the old or
 * the new file, never half of one. The sender thread is the only writer; publishing
 * threads only ask, under the read lock, whether a channel has registrations at all.
 */
#include "broker.h"
#include "webpush.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fnv.h"
#include "log.h"

#define STORE_BUCKETS 4096

/* One channel's registrations. */
struct store_channel {
	struct store_channel *next;
	size_t n;
	struct webpush_reg *regs;	/* n of them, owned */
	char name[];
};

static pthread_rwlock_t table_lock = PTHREAD_RWLOCK_INITIALIZER;	/* writers: the sender thread */
static struct store_channel *table[STORE_BUCKETS];
static size_t total;
static char *store_path;
static unsigned max_per_channel;

/* FNV-1a of a channel name. */
static size_t
store_hash(const char *s)
{
	return (size_t)(fnv1a(s, strlen(s)) % STORE_BUCKETS);
}

/* The channel's entry, or NULL (sender thread, or under table_lock). */
static struct store_channel *
store_find(const char *channel)
{
	struct store_channel *c;

	for (c = table[store_hash(channel)]; c != NULL; c = c->next)
		if (strcmp(c->name, channel) == 0)
			return c;
	return NULL;
}

/* Whether a publish to channel has anyone to push to (any thread). */
bool
webpush_store_interested(const char *channel)
{
	bool yes;

	pthread_rwlock_rdlock(&table_lock);
	yes = store_find(channel) != NULL;
	pthread_rwlock_unlock(&table_lock);
	return yes;
}

/* Appends r to its channel (write lock held); -1 on ENOMEM. */
static int
store_insert(const struct webpush_reg *r)
{
	struct store_channel *c = store_find(r->channel), **slot;
	struct webpush_reg *regs;
	size_t len;

	if (c == NULL) {
		len = strlen(r->channel);
		if ((c = calloc(1, sizeof *c + len + 1)) == NULL)
			return -1;
		memcpy(c->name, r->channel, len + 1);
		slot = &table[store_hash(r->channel)];
		c->next = *slot;
		*slot = c;
	}
	if ((regs = realloc(c->regs, (c->n + 1) * sizeof *regs)) == NULL)
		return -1;
	c->regs = regs;
	c->regs[c->n++] = *r;
	total++;
	return 0;
}

/* Removes registration i of c, and c once empty (write lock held). */
static void
store_delete(struct store_channel *c, size_t i)
{
	struct store_channel **p;

	c->regs[i] = c->regs[--c->n];
	total--;
	if (c->n > 0)
		return;
	for (p = &table[store_hash(c->name)]; *p != c; p = &(*p)->next)
		;
	*p = c->next;
	free(c->regs);
	free(c);
}

/* Every registration as the file's JSON (new, or NULL). */
static json_t *
store_dump(void)
{
	json_t *a = json_array(), *o;
	struct store_channel *c;
	size_t b, i;
	char *s;

	for (b = 0; b < STORE_BUCKETS && a != NULL; b++)
		for (c = table[b]; c != NULL; c = c->next)
			for (i = 0; i < c->n; i++) {
				if ((s = webpush_reg_dump(&c->regs[i])) == NULL ||
				    (o = json_loads(s, 0, NULL)) == NULL || json_array_append_new(a, o) == -1) {
					free(s);
					json_decref(a);
					return NULL;
				}
				free(s);
			}
	return a != NULL ? json_pack("{s:i,s:o}", "version", 1, "registrations", a) : NULL;
}

/* Syncs the directory, so that the rename itself survives a crash. */
static void
store_sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd;

	if (copy == NULL)
		return;
	if ((fd = open(dirname(copy), O_RDONLY | O_DIRECTORY)) >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
}

/* Writes the whole table: temporary file, fsync, rename; 0 or -1 (logged). */
static int
store_write(void)
{
	json_t *doc = store_dump();
	char tmp[1100];
	char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
	size_t len = text != NULL ? strlen(text) : 0, off = 0;
	ssize_t w;
	int fd = -1, rc = -1;

	json_decref(doc);
	snprintf(tmp, sizeof tmp, "%s.tmp", store_path);
	if (text == NULL || (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		goto out;
	while (off < len) {
		if ((w = write(fd, text + off, len - off)) < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		off += (size_t)w;
	}
	if (write(fd, "\n", 1) != 1 || fsync(fd) == -1)
		goto out;
	close(fd);
	fd = -1;
	if (rename(tmp, store_path) == -1)
		goto out;
	store_sync_dir(store_path);
	rc = 0;
out:
	if (rc == -1) {
		log_error("webpush_store %s: %s", store_path, text == NULL ? "out of memory" : strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
	}
	free(text);
	return rc;
}

/* Loads the file (missing: no registrations yet); -1 if it exists but cannot be read. */
int
webpush_store_open(const char *path, unsigned max)
{
	json_error_t err;
	json_t *doc, *regs, *v;
	struct webpush_reg r;
	size_t i, dropped = 0;
	char *s;

	max_per_channel = max;
	if ((store_path = strdup(path)) == NULL)
		return -1;
	if (access(path, F_OK) == -1 && errno == ENOENT)
		return 0;
	if ((doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err)) == NULL) {
		log_error("webpush_store %s:%d: %s", path, err.line, err.text);
		return -1;
	}
	regs = json_object_get(doc, "registrations");
	json_array_foreach(regs, i, v) {
		s = json_dumps(v, JSON_COMPACT);
		if (s != NULL && webpush_reg_load(s, strlen(s), &r) == 0 &&
		    (store_find(r.channel) == NULL || store_find(r.channel)->n < max))
			store_insert(&r);
		else
			dropped++;
		free(s);
	}
	json_decref(doc);
	if (dropped > 0)
		log_warn("webpush_store %s: %zu registrations dropped (expired, or no longer allowed by webpush_endpoints)",
		    path, dropped);
	log_info("webpush: %zu registrations loaded from %s", total, path);
	return 0;
}

/* Frees the table (after the sender thread stopped). */
void
webpush_store_close(void)
{
	struct store_channel *c, *next;
	size_t b;

	/* a publishing thread may still ask webpush_store_interested() */
	pthread_rwlock_wrlock(&table_lock);
	for (b = 0; b < STORE_BUCKETS; b++) {
		for (c = table[b]; c != NULL; c = next) {
			next = c->next;
			free(c->regs);
			free(c);
		}
		table[b] = NULL;
	}
	pthread_rwlock_unlock(&table_lock);
	total = 0;
	free(store_path);
	store_path = NULL;
}

/*
 * Adds r (a new id is drawn; a registration of the same endpoint on the channel is
 * replaced and keeps its id) and rewrites the file. Returns 201 with r->id set, 429
 * over the channel's limit, 503 if the file could not be written (nothing changed).
 */
unsigned
webpush_store_add(struct webpush_reg *r, char *why, size_t whylen)
{
	struct store_channel *c = store_find(r->channel);
	struct webpush_reg old;
	size_t i;

	for (i = 0; c != NULL && i < c->n; i++)
		if (strcmp(c->regs[i].endpoint, r->endpoint) == 0) {
			memcpy(r->id, c->regs[i].id, sizeof r->id);
			old = c->regs[i];
			c->regs[i] = *r;	/* no lock: readers only ask whether c exists */
			if (store_write() == 0)
				return 201;
			c->regs[i] = old;
			snprintf(why, whylen, "the registration could not be stored");
			return 503;
		}
	if (c != NULL && c->n >= max_per_channel) {
		snprintf(why, whylen, "too many registrations on this channel (webpush_max_per_channel)");
		return 429;
	}
	webpush_new_id(r->id);
	pthread_rwlock_wrlock(&table_lock);
	i = store_insert(r);
	pthread_rwlock_unlock(&table_lock);
	if (i == 0 && store_write() == 0)
		return 201;
	if (i == 0) {
		c = store_find(r->channel);
		pthread_rwlock_wrlock(&table_lock);
		store_delete(c, c->n - 1);
		pthread_rwlock_unlock(&table_lock);
	}
	snprintf(why, whylen, "the registration could not be stored");
	return 503;
}

/* Removes a registration and rewrites the file: 204, 404 if unknown, 503 if not written. */
unsigned
webpush_store_remove(const char *channel, const char *id)
{
	struct store_channel *c = store_find(channel);
	size_t i;

	for (i = 0; c != NULL && i < c->n; i++)
		if (strcmp(c->regs[i].id, id) == 0) {
			pthread_rwlock_wrlock(&table_lock);
			store_delete(c, i);
			pthread_rwlock_unlock(&table_lock);
			return store_write() == 0 ? 204 : 503;
		}
	return 404;
}

/* The channel's registrations (borrowed until the next change, sender thread); the count. */
size_t
webpush_store_list(const char *channel, struct webpush_reg **out)
{
	struct store_channel *c = store_find(channel);

	*out = c != NULL ? c->regs : NULL;
	return c != NULL ? c->n : 0;
}

/* Registrations held (sender thread). */
size_t
webpush_store_count(void)
{
	return total;
}
