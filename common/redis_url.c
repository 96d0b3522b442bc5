/* The `redis` directive's URL forms and lists of them, parsed once for both daemons. */
#include "redis_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a decimal number in [min, max] from s (whole string); -1 if it is not one. */
static int
redis_url_number(const char *s, long min, long max, int *out)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -1;
	v = strtol(s, &end, 10);
	if (*end != '\0' || v < min || v > max)
		return -1;
	*out = (int)v;
	return 0;
}

/* unix:/path[?db=N] */
static int
redis_url_unix(const char *s, struct redis_url *u, char *err, size_t errlen)
{
	const char *q = strchr(s, '?');
	size_t n = q ? (size_t)(q - s) : strlen(s);

	if (n == 0 || s[0] != '/' || n >= sizeof u->path) {
		snprintf(err, errlen, "unix: needs an absolute socket path (under %zu bytes)", sizeof u->path);
		return -1;
	}
	memcpy(u->path, s, n);
	u->path[n] = '\0';
	if (q != NULL && (strncmp(q, "?db=", 4) != 0 || redis_url_number(q + 4, 0, 1000000, &u->db) == -1)) {
		snprintf(err, errlen, "unix socket URL: only ?db=N may follow the path");
		return -1;
	}
	return 0;
}

/* Takes an optional ":password@" off the front of *s; returns 0 or -1. */
static int
redis_url_password(const char **s, struct redis_url *u, char *err, size_t errlen)
{
	const char *at = strrchr(*s, '@');

	if (at == NULL)
		return 0;
	if ((*s)[0] != ':') {
		snprintf(err, errlen, "redis URL: the password goes as :password@ (no user name)");
		return -1;
	}
	if (at == *s + 1 || (size_t)(at - *s - 1) >= sizeof u->password) {
		snprintf(err, errlen, "redis URL: the password must be 1 to %zu bytes", sizeof u->password - 1);
		return -1;
	}
	memcpy(u->password, *s + 1, (size_t)(at - *s - 1));
	u->password[at - *s - 1] = '\0';
	*s = at + 1;
	return 0;
}

/* Reads "host:port" (n bytes of s) into a; returns 0 or -1. */
static int
redis_url_addr(const char *s, size_t n, struct redis_addr *a, char *err, size_t errlen)
{
	const char *colon = NULL;
	char port[8];
	size_t i, plen;

	for (i = 0; i < n; i++)
		if (s[i] == ':')
			colon = s + i;
	if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof a->host) {
		snprintf(err, errlen, "redis URL: host:port expected");
		return -1;
	}
	memcpy(a->host, s, (size_t)(colon - s));
	a->host[colon - s] = '\0';
	if (strspn(a->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
	    strlen(a->host)) {
		snprintf(err, errlen, "redis URL: the host must be a name or an IPv4 address");
		return -1;
	}
	plen = n - (size_t)(colon + 1 - s);
	if (plen >= sizeof port) {
		snprintf(err, errlen, "redis URL: bad port");
		return -1;
	}
	memcpy(port, colon + 1, plen);
	port[plen] = '\0';
	if (redis_url_number(port, 1, 65535, &a->port) == -1) {
		snprintf(err, errlen, "redis URL: bad port");
		return -1;
	}
	return 0;
}

/* redis://[:password@]host:port[/db] */
static int
redis_url_tcp(const char *s, struct redis_url *u, char *err, size_t errlen)
{
	const char *slash, *colon;
	char port[8];
	size_t n;

	if (redis_url_password(&s, u, err, errlen) == -1)
		return -1;
	slash = strchr(s, '/');
	colon = strrchr(s, ':');
	if (colon == NULL || (slash != NULL && colon > slash) || colon == s ||
	    (size_t)(colon - s) >= sizeof u->host) {
		snprintf(err, errlen, "redis URL: host:port expected");
		return -1;
	}
	memcpy(u->host, s, (size_t)(colon - s));
	u->host[colon - s] = '\0';
	if (strspn(u->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
	    strlen(u->host)) {
		snprintf(err, errlen, "redis URL: the host must be a name or an IPv4 address");
		return -1;
	}
	n = slash ? (size_t)(slash - colon - 1) : strlen(colon + 1);
	if (n >= sizeof port) {
		snprintf(err, errlen, "redis URL: bad port");
		return -1;
	}
	memcpy(port, colon + 1, n);
	port[n] = '\0';
	if (redis_url_number(port, 1, 65535, &u->port) == -1) {
		snprintf(err, errlen, "redis URL: bad port");
		return -1;
	}
	if (slash != NULL && redis_url_number(slash + 1, 0, 1000000, &u->db) == -1) {
		snprintf(err, errlen, "redis URL: bad database number after /");
		return -1;
	}
	return 0;
}

/* sentinel://[:password@]host:port[,host:port...]/<master-name>[?db=N] */
static int
redis_url_sentinel(const char *s, struct redis_url *u, char *err, size_t errlen)
{
	const char *slash, *q, *p, *comma;
	size_t n;

	if (redis_url_password(&s, u, err, errlen) == -1)
		return -1;
	if ((slash = strchr(s, '/')) == NULL) {
		snprintf(err, errlen, "sentinel URL: /<master-name> expected after the sentinels");
		return -1;
	}
	for (p = s;; p = comma + 1) {
		if ((comma = memchr(p, ',', (size_t)(slash - p))) == NULL)
			comma = slash;
		if (u->nsentinels == REDIS_URL_SENTINELS_MAX) {
			snprintf(err, errlen, "sentinel URL: at most %d sentinels", REDIS_URL_SENTINELS_MAX);
			return -1;
		}
		if (redis_url_addr(p, (size_t)(comma - p), &u->sentinels[u->nsentinels++], err, errlen) == -1)
			return -1;
		if (comma == slash)
			break;
	}
	q = strchr(slash, '?');
	n = q ? (size_t)(q - slash - 1) : strlen(slash + 1);
	if (n == 0 || n >= sizeof u->master ||
	    strspn(slash + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n) {
		snprintf(err, errlen, "sentinel URL: the master name must be 1 to %zu of [A-Za-z0-9._-]",
		    sizeof u->master - 1);
		return -1;
	}
	memcpy(u->master, slash + 1, n);
	u->master[n] = '\0';
	if (q != NULL && (strncmp(q, "?db=", 4) != 0 || redis_url_number(q + 4, 0, 1000000, &u->db) == -1)) {
		snprintf(err, errlen, "sentinel URL: only ?db=N may follow the master name");
		return -1;
	}
	return 0;
}

/* Accepts the three documented forms and nothing else. */
int
redis_url_parse(const char *text, struct redis_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	if (strncmp(text, "redis://", 8) == 0)
		return redis_url_tcp(text + 8, u, err, errlen);
	if (strncmp(text, "unix:", 5) == 0)
		return redis_url_unix(text + 5, u, err, errlen);
	if (strncmp(text, "sentinel://", 11) == 0)
		return redis_url_sentinel(text + 11, u, err, errlen);
	/* The value may hold a password: do not echo it. */
	snprintf(err, errlen, "not a redis://[:password@]host:port[/db], unix:/path or "
	    "sentinel://host:port[,host:port...]/master URL");
	return -1;
}

/* Whether two parsed URLs name the same server (or the same Sentinel group). */
static int
redis_url_same(const struct redis_url *a, const struct redis_url *b)
{
	char da[256], db[256];

	redis_url_describe(a, da, sizeof da);
	redis_url_describe(b, db, sizeof db);
	return strcmp(da, db) == 0 && a->db == b->db;
}

/* Shards are listed in order: the position of each is part of the channel mapping. */
int
redis_url_parse_list(const char *text, struct redis_url *out, size_t max, size_t *n,
    char *err, size_t errlen)
{
	char one[1024], why[160];
	const char *p = text;
	size_t len, i;

	*n = 0;
	for (;;) {
		p += strspn(p, REDIS_URL_SEP);
		if (*p == '\0')
			break;
		len = strcspn(p, REDIS_URL_SEP);
		if (*n == max) {
			snprintf(err, errlen, "at most %zu Redis URLs (one per shard)", max);
			return -1;
		}
		if (len >= sizeof one) {
			snprintf(err, errlen, "URL %zu: too long", *n + 1);
			return -1;
		}
		memcpy(one, p, len);
		one[len] = '\0';
		if (redis_url_parse(one, &out[*n], why, sizeof why) == -1) {
			if (max > 1)
				snprintf(err, errlen, "URL %zu: %s", *n + 1, why);
			else
				snprintf(err, errlen, "%s", why);
			return -1;
		}
		for (i = 0; i < *n; i++)
			if (redis_url_same(&out[i], &out[*n])) {
				snprintf(err, errlen, "URLs %zu and %zu name the same Redis", i + 1, *n + 1);
				return -1;
			}
		(*n)++;
		p += len;
	}
	if (*n == 0) {
		snprintf(err, errlen, "no Redis URL");
		return -1;
	}
	return 0;
}

/* host:port, unix:/path, or sentinel <name> at its first sentinel; no password. */
void
redis_url_describe(const struct redis_url *u, char *buf, size_t len)
{
	if (u->master[0] != '\0')
		snprintf(buf, len, "sentinel %s via %s:%d", u->master, u->sentinels[0].host, u->sentinels[0].port);
	else if (u->path[0] != '\0')
		snprintf(buf, len, "unix:%s", u->path);
	else
		snprintf(buf, len, "%s:%d", u->host, u->port);
}
