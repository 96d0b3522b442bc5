/*
 * Parsing of the `redis` directive, shared by the broker and the pusher:
 * redis://[:password@]host:port[/db], unix:/path[?db=N], or
 * sentinel://[:password@]host:port[,host:port...]/<master-name>[?db=N], and a list of
 * these separated by blanks (one per shard). Leaf module: libc only.
 */
#ifndef SSEPUSH_REDIS_URL_H
#define SSEPUSH_REDIS_URL_H

#include <stddef.h>

#define REDIS_URL_SENTINELS_MAX 8	/* sentinels one sentinel:// URL may list */
#define REDIS_URL_SHARDS_MAX 16		/* URLs one `redis` value may list */
#define REDIS_URL_MASTER_MAX 64		/* bytes of a master name, NUL included */
#define REDIS_URL_SEP " \t"		/* separates the URLs of a list */

/* One TCP address. */
struct redis_addr {
	char host[128];
	int port;
};

struct redis_url {
	char host[128];		/* empty for a UNIX socket or Sentinel */
	int port;
	char path[108];		/* UNIX socket path, or empty */
	char password[128];	/* the data servers' password (not sent to sentinels); empty if none */
	int db;
	char master[REDIS_URL_MASTER_MAX];	/* Sentinel: the monitored master's name; else empty */
	size_t nsentinels;
	struct redis_addr sentinels[REDIS_URL_SENTINELS_MAX];
};

/* Fills u from one URL; returns 0, or -1 with the reason in err. */
int redis_url_parse(const char *text, struct redis_url *u, char *err, size_t errlen);
/*
 * Parses a blank-separated list of 1 to max URLs into out[0..*n); returns 0, or -1
 * with the reason (naming the URL's position) in err. The same server twice is refused.
 */
int redis_url_parse_list(const char *text, struct redis_url *out, size_t max, size_t *n,
    char *err, size_t errlen);
/* Writes where u points, for log lines and /healthz (never the password). */
void redis_url_describe(const struct redis_url *u, char *buf, size_t len);

#endif
