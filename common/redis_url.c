/* The `redis` directive's URL forms, parsed once for both daemons. */
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

/* redis://[:password@]host:port[/db] */
static int
redis_url_tcp(const char *s, struct redis_url *u, char *err, size_t errlen)
{
	const char *at = strrchr(s, '@'), *slash, *colon;
	char port[8];
	size_t n;

	if (at != NULL) {
		if (s[0] != ':') {
			snprintf(err, errlen, "redis URL: the password goes as :password@ (no user name)");
			return -1;
		}
		if (at == s + 1 || (size_t)(at - s - 1) >= sizeof u->password) {
			snprintf(err, errlen, "redis URL: the password must be 1 to %zu bytes", sizeof u->password - 1);
			return -1;
		}
		memcpy(u->password, s + 1, (size_t)(at - s - 1));
		u->password[at - s - 1] = '\0';
		s = at + 1;
	}
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

/* Accepts the two documented forms and nothing else. */
int
redis_url_parse(const char *text, struct redis_url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	if (strncmp(text, "redis://", 8) == 0)
		return redis_url_tcp(text + 8, u, err, errlen);
	if (strncmp(text, "unix:", 5) == 0)
		return redis_url_unix(text + 5, u, err, errlen);
	/* The value may hold a password: do not echo it. */
	snprintf(err, errlen, "not a redis://[:password@]host:port[/db] or unix:/path URL");
	return -1;
}
