/*
 * The pusher's directive table (name, type, bounds, default, reloadable, help) with the
 * checks that reuse the coalescer's and the Redis URL's own validation, and the
 * translation of a loaded config into a struct coalesce_config.
 */
#include "pusher.h"

#include <arpa/inet.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_url.h"

static const char *const log_levels[] = LOG_LEVEL_NAMES;

/* The descriptor named by a notify_socket of "stdin" or "fd:N"; -1 for a path. */
int
options_socket_fd(const char *v)
{
	char *end;
	long fd;

	if (strcmp(v, PUSHER_STDIN) == 0)
		return 0;
	if (strncmp(v, "fd:", 3) != 0 || v[3] < '0' || v[3] > '9')
		return -1;
	fd = strtol(v + 3, &end, 10);
	return *end == '\0' && fd <= 65535 ? (int)fd : -1;
}

/* An absolute path (under the sun_path limit), "stdin" or "fd:N". */
static int
check_socket(const char *v, char *err, size_t errlen)
{
	if (strcmp(v, PUSHER_STDIN) == 0 || options_socket_fd(v) >= 0)
		return 0;
	if (v[0] != '/' || strlen(v) >= 108) {
		snprintf(err, errlen, "'%s': an absolute path (under 108 bytes), \"stdin\" or \"fd:N\"", v);
		return -1;
	}
	return 0;
}

/* Octal permission bits such as 0660. */
static int
check_mode(const char *v, char *err, size_t errlen)
{
	char *end;
	long m = strtol(v, &end, 8);

	if (*v < '0' || *v > '7' || *end != '\0' || m < 0 || m > 07777) {
		snprintf(err, errlen, "'%s' is not an octal mode such as 0660", v);
		return -1;
	}
	return 0;
}

/* A group name known to the system, or empty. */
static int
check_group(const char *v, char *err, size_t errlen)
{
	if (*v != '\0' && getgrnam(v) == NULL) {
		snprintf(err, errlen, "unknown group '%s'", v);
		return -1;
	}
	return 0;
}

/* Validates a redis URL through the same parser the connection uses. */
static int
check_redis(const char *v, char *err, size_t errlen)
{
	struct redis_url u[REDIS_URL_SHARDS_MAX];
	size_t n;

	return redis_url_parse_list(v, u, REDIS_URL_SHARDS_MAX, &n, err, errlen);
}

/*
 * Splits a metrics_listen value, "host:port" with a numeric IPv4 host or "[v6]:port",
 * into host (brackets dropped) and port. Returns 0, or -1 with the reason in err.
 */
int
options_split_listen(const char *v, char *host, size_t hostlen, unsigned *port, char *err, size_t errlen)
{
	const char *colon = strrchr(v, ':');
	unsigned char addr[16];
	char *end;
	long p;
	size_t n, v6;

	if (colon == NULL || colon == v || (n = (size_t)(colon - v)) >= hostlen) {
		snprintf(err, errlen, "'%s' is not host:port", v);
		return -1;
	}
	p = strtol(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || p > 65535) {
		snprintf(err, errlen, "'%s': bad port", v);
		return -1;
	}
	v6 = v[0] == '[' && n > 2 && v[n - 1] == ']';
	memcpy(host, v + v6, n - 2 * v6);
	host[n - 2 * v6] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) != 1) {
		snprintf(err, errlen, "'%s': the host must be a numeric IPv4 address or [IPv6]", v);
		return -1;
	}
	*port = (unsigned)p;
	return 0;
}

/* Empty (off) or a host:port options_split_listen takes. */
static int
check_listen(const char *v, char *err, size_t errlen)
{
	char host[64];
	unsigned port;

	return *v == '\0' ? 0 : options_split_listen(v, host, sizeof host, &port, err, errlen);
}

/* A secret is empty (unset) or long enough to resist guessing. */
static int
check_secret(const char *v, char *err, size_t errlen)
{
	if (*v != '\0' && strlen(v) < PUSHER_SECRET_MIN) {
		snprintf(err, errlen, "a secret needs at least %d bytes (try: openssl rand -base64 48)",
		    PUSHER_SECRET_MIN);
		return -1;
	}
	return 0;
}

/* Lets the coalescer judge one of its settings on its own. */
static int
check_coalesce(const char *name, const struct coalesce_config *cc, char *err, size_t errlen)
{
	struct coalesce *c = coalesce_new(cc, err, errlen);
	size_t n = strlen(name);

	if (c == NULL) {
		/* The engine prefixes the directive's name already. */
		if (strncmp(err, name, n) == 0 && err[n] == ':' && err[n + 1] == ' ')
			memmove(err, err + n + 2, strlen(err + n + 2) + 1);
		return -1;
	}
	coalesce_free(c);
	return 0;
}

static int
check_events(const char *v, char *err, size_t errlen)
{
	struct coalesce_config cc = { .events = v };

	return check_coalesce("events", &cc, err, errlen);
}

static int
check_format(const char *v, char *err, size_t errlen)
{
	struct coalesce_config cc = { .channel_format = v };

	return check_coalesce("channel_format", &cc, err, errlen);
}

static int
check_shared(const char *v, char *err, size_t errlen)
{
	struct coalesce_config cc = { .shared_channel = *v ? v : NULL };

	return check_coalesce("shared_channel", &cc, err, errlen);
}

const struct config_directive pusher_directives[POPT_COUNT] = {
	[POPT_NOTIFY_SOCKET] = { "notify_socket", CONFIG_STRING, 1, 107, "/run/ssepush-pusher/notify",
	    NULL, false, check_socket,
	    "UNIX datagram socket to bind (imapd.conf notifysocket); or \"fd:4\" when Cyrus master starts the pusher as the notify service (master hands the bound socket over as fd 4); \"stdin\" = fd:0" },
	[POPT_NOTIFY_SOCKET_MODE] = { "notify_socket_mode", CONFIG_STRING, 1, 5, "0660", NULL, false,
	    check_mode, "permissions of the bound socket: Cyrus processes need write access" },
	[POPT_NOTIFY_SOCKET_GROUP] = { "notify_socket_group", CONFIG_STRING, 0, 64, "", NULL, false,
	    check_group, "group of the bound socket (Debian's Cyrus runs as cyrus:mail); empty = the pusher's group" },
	[POPT_NOTIFY_RCVBUF] = { "notify_rcvbuf", CONFIG_SIZE, 65536, 256 * 1024 * 1024, "4m", NULL,
	    false, NULL, "socket receive buffer asked for (SO_RCVBUFFORCE as root, else capped by net.core.rmem_max)" },
	[POPT_VIRTDOMAINS] = { "virtdomains", CONFIG_BOOL, 0, 1, "on", NULL, true, NULL,
	    "read a trailing @domain in a Cyrus mailbox name as a virtual domain; turn off only if folder names end in @host.name and Cyrus has virtdomains off" },
	[POPT_REDIS] = { "redis", CONFIG_STRING, 1, 4000, "redis://127.0.0.1:6379", NULL, false,
	    check_redis, "redis://[:password@]host:port[/db], unix:/path[?db=N] or sentinel://[:password@]host:port[,host:port...]/master[?db=N], or up to 16 of these separated by blanks (the shards, in the brokers' order): the Redis the brokers share" },
	[POPT_REDIS_PREFIX] = { "redis_prefix", CONFIG_STRING, 0, 64, "ssepush:", NULL, false, NULL,
	    "prefix of every Redis key and pub/sub channel: the brokers' redis_prefix" },
	[POPT_HISTORY_SIZE] = { "history_size", CONFIG_INT, 1, 100000, "100", NULL, true, NULL,
	    "events kept per channel for replay: set it as on the brokers" },
	[POPT_HISTORY_TTL] = { "history_ttl", CONFIG_SECONDS, 1, 604800, "600", NULL, true, NULL,
	    "seconds an event stays replayable: set it as on the brokers" },
	[POPT_COALESCE_MS] = { "coalesce_ms", CONFIG_INT, 0, 60000, "500", NULL, true, NULL,
	    "a user's notifications within this many ms of the first become one change event; 0 = one event per drained burst" },
	[POPT_EVENTS] = { "events", CONFIG_STRING, 1, 1024, COALESCE_DEFAULT_EVENTS, NULL, true,
	    check_events, "Cyrus event types that count: default (all but Login, Logout), all, or a list such as \"MessageNew MessageExpunge MAIL\"" },
	[POPT_CHANNEL_FORMAT] = { "channel_format", CONFIG_STRING, 1, 200, COALESCE_DEFAULT_FORMAT, NULL,
	    true, check_format, "channel of a user's events: %u user, %l local part, %d domain, %% a percent sign" },
	[POPT_SHARED_CHANNEL] = { "shared_channel", CONFIG_STRING, 0, 200, "", NULL, true, check_shared,
	    "channel for changes in shared folders (no owner); empty = skip them (counted)" },
	[POPT_MAX_USERS] = { "max_users", CONFIG_INT, 1, 10000000, "10000", NULL, true, NULL,
	    "users with an open coalescing window; a notification for one more is dropped (counted, logged)" },
	[POPT_MAX_MAILBOXES] = { "max_mailboxes", CONFIG_INT, 1, 10000, "64", NULL, true, NULL,
	    "mailboxes listed in one change event; beyond it the event says \"truncated\":true" },
	[POPT_QUEUE_MAX] = { "queue_max", CONFIG_INT, 1, 10000000, "10000", NULL, true, NULL,
	    "change events waiting for Redis (while it is slow or away); beyond it new ones are dropped (counted, logged)" },
	[POPT_STATS_INTERVAL] = { "stats_interval", CONFIG_SECONDS, 0, 86400, "300", NULL, true, NULL,
	    "seconds between counter log lines (also on SIGUSR1); 0 = only on SIGUSR1" },
	[POPT_METRICS_LISTEN] = { "metrics_listen", CONFIG_STRING, 0, 64, "", NULL, false, check_listen,
	    "address:port (numeric IPv4 or [IPv6]) of the HTTP listener for GET /metrics (Prometheus) and GET /healthz; port 0 picks a free one; empty = off" },
	[POPT_METRICS_SECRET] = { "metrics_secret", CONFIG_STRING, 0, PUSHER_SECRET_MAX, "", NULL, false, check_secret,
	    "secret scrapers send as Authorization: Bearer for /metrics (at least 32 bytes); empty = loopback peers only; prefer metrics_secret_file" },
	[POPT_METRICS_SECRET_FILE] = { "metrics_secret_file", CONFIG_STRING, 0, 1024, "", NULL, false, NULL,
	    "file holding metrics_secret (one line; must not be readable by others)" },
	[POPT_LOG_LEVEL] = { "log_level", CONFIG_ENUM, 0, 0, "info", log_levels, true, NULL,
	    "error, warn, info or debug" },
	[POPT_REDIS_MIN_REPLICAS] = { "redis_min_replicas", CONFIG_INT, 0, 16, "0", NULL, true, NULL,
	    "a change event leaves the queue only once Redis's WAIT says this many replicas hold it (within redis_wait_ms), else it is sent again; 0 = once the primary has it" },
	[POPT_REDIS_WAIT_MS] = { "redis_wait_ms", CONFIG_INT, 1, 300000, "1000", NULL, true, NULL,
	    "milliseconds a publish waits for redis_min_replicas replicas (capped at half of the reply timeout)" },
	[POPT_JMAP_STATES] = { "jmap_states", CONFIG_BOOL, 0, 1, "off", NULL, false, NULL,
	    "also keep each account's JMAP states (from Cyrus's vnd.fastmail.jmapStates, MailboxModseq events) in Redis and publish a jmap-state event on the account's channel when one grew, once per coalesce_ms window" },
};

/* Fills a coalescer config from c; its strings stay borrowed from c. */
int
options_coalesce_config(const struct config *c, struct coalesce_config *cc)
{
	memset(cc, 0, sizeof *cc);
	cc->coalesce_ms = (uint64_t)config_int(c, POPT_COALESCE_MS);
	cc->events = config_str(c, POPT_EVENTS);
	cc->channel_format = config_str(c, POPT_CHANNEL_FORMAT);
	cc->shared_channel = *config_str(c, POPT_SHARED_CHANNEL) ? config_str(c, POPT_SHARED_CHANNEL) : NULL;
	cc->max_users = (size_t)config_int(c, POPT_MAX_USERS);
	cc->max_mailboxes = (size_t)config_int(c, POPT_MAX_MAILBOXES);
	return 0;
}
