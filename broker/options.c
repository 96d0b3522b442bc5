/*
 * The broker's directive table (name, type, bounds, default, reloadable, help) and a
 * lock-free snapshot of the integer values that threads read on hot paths. SIGHUP
 * refreshes the snapshot; string directives are fixed for the life of the process.
 */
#include "broker.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cidr.h"
#include "log.h"
#include "redis_url.h"

struct config *broker_config;

static const char *const auth_modes[] = { "none", "token", "proxy", "upstream", NULL };
static const char *const log_levels[] = LOG_LEVEL_NAMES;
static const char *const webpush_whens[] = { "offline", "always", NULL };
static const char *const webpush_urgencies[] = { "very-low", "low", "normal", "high", NULL };

/* Accepts "host:port", "[v6]:port" or "*:port" with a numeric host; "" where allowed. */
static int
check_listen(const char *v, char *err, size_t errlen)
{
	char host[64];
	const char *colon;
	char *end;
	long port;
	unsigned char buf[16];

	if (*v == '\0')
		return 0;
	colon = strrchr(v, ':');
	if (colon == NULL || (size_t)(colon - v) >= sizeof host) {
		snprintf(err, errlen, "'%s' is not host:port", v);
		return -1;
	}
	memcpy(host, v, (size_t)(colon - v));
	host[colon - v] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
		snprintf(err, errlen, "'%s': bad port", v);
		return -1;
	}
	if (strcmp(host, "*") == 0 || inet_pton(AF_INET, host, buf) == 1)
		return 0;
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		host[strlen(host) - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, buf) == 1)
			return 0;
	}
	snprintf(err, errlen, "'%s': host must be a numeric IPv4 address, [IPv6] or *", v);
	return -1;
}

/* Whether a cors_origins item is scheme://host[:port] with nothing after it. */
static bool
check_origin(const char *s, size_t n)
{
	size_t skip, i;

	if (n > 8 && strncmp(s, "https://", 8) == 0)
		skip = 8;
	else if (n > 7 && strncmp(s, "http://", 7) == 0)
		skip = 7;
	else
		return false;
	for (i = skip; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || strchr(".-:[]", s[i]) != NULL))
			return false;
	return true;
}

/* Config check of cors_origins: a list of exact origins, no wildcard. */
static int
check_cors(const char *v, char *err, size_t errlen)
{
	size_t n;

	for (;;) {
		v += strspn(v, BROKER_LIST_SEP);
		if (*v == '\0')
			return 0;
		n = strcspn(v, BROKER_LIST_SEP);
		if (!check_origin(v, n)) {
			snprintf(err, errlen, "'%.*s' is not an origin (scheme://host[:port], no path, no wildcard)",
			    (int)(n > 200 ? 200 : n), v);
			return -1;
		}
		v += n;
	}
}

/* Validates a redis URL through the same parser the bus uses. */
static int
check_redis(const char *v, char *err, size_t errlen)
{
	struct redis_url u[REDIS_URL_SHARDS_MAX];
	size_t n;

	if (*v == '\0')
		return 0;
	return redis_url_parse_list(v, u, REDIS_URL_SHARDS_MAX, &n, err, errlen);
}

/* A secret is empty (unset) or long enough to resist guessing. */
static int
check_secret(const char *v, char *err, size_t errlen)
{
	if (*v != '\0' && strlen(v) < BROKER_SECRET_MIN) {
		snprintf(err, errlen, "a secret needs at least %d bytes (try: openssl rand -base64 48)",
		    BROKER_SECRET_MIN);
		return -1;
	}
	return 0;
}

/* A list of addresses and addr/bits ranges. */
static int
check_proxies(const char *v, char *err, size_t errlen)
{
	struct cidr_list l;

	return cidr_list_parse(v, &l, err, errlen);
}

/* An http:// or https:// URL, or empty. */
static int
check_upstream_url(const char *v, char *err, size_t errlen)
{
	size_t i;

	if (*v == '\0')
		return 0;
	for (i = 0; v[i] != '\0'; i++)
		if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f)
			break;
	if (v[i] != '\0' || (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)) {
		snprintf(err, errlen, "an http:// or https:// URL expected");
		return -1;
	}
	return 0;
}

/* The JMAP endpoint's path: empty (off), or absolute and clear of the broker's own paths. */
static int
check_jmap_path(const char *v, char *err, size_t errlen)
{
	size_t i;

	if (*v == '\0')
		return 0;
	for (i = 0; v[i] != '\0'; i++)
		if (v[i] <= ' ' || v[i] == '?' || v[i] == '%' || v[i] == '#' || (unsigned char)v[i] >= 0x7f)
			break;
	if (v[0] != '/' || v[i] != '\0' || strncmp(v, "/events/", 8) == 0 ||
	    strncmp(v, "/publish", 8) == 0 || strncmp(v, "/stats", 6) == 0 ||
	    strcmp(v, "/healthz") == 0 || strcmp(v, "/metrics") == 0) {
		snprintf(err, errlen, "an absolute path outside /events/, /publish, /stats, /healthz and /metrics expected");
		return -1;
	}
	return 0;
}

const struct config_directive broker_directives[OPT_COUNT] = {
	[OPT_LISTEN] = { "listen", CONFIG_STRING, 1, 64, "127.0.0.1:8080", NULL, false,
	    check_listen, "address:port for subscribers (and publishers unless publish_listen is set); port 0 picks a free one" },
	[OPT_PUBLISH_LISTEN] = { "publish_listen", CONFIG_STRING, 0, 64, "", NULL, false,
	    check_listen, "separate address:port for publishing and the operations endpoints; empty = same as listen" },
	[OPT_AUTH] = { "auth", CONFIG_ENUM, 0, 0, "none", auth_modes, false, NULL,
	    "subscriber authentication: none (the channel in the URL is trusted; loopback listen only), token (a JWT signed with token_secret), proxy (only trusted_proxies may subscribe), upstream (the JMAP endpoint only: its Authorization and cookies are checked by upstream_session_url, whose accounts they may read)" },
	[OPT_TOKEN_SECRET] = { "token_secret", CONFIG_STRING, 0, 1024, "", NULL, false, check_secret,
	    "HS256 key of subscriber tokens (at least 32 bytes); prefer token_secret_file" },
	[OPT_TOKEN_SECRET_FILE] = { "token_secret_file", CONFIG_STRING, 0, 1024, "", NULL, false, NULL,
	    "file holding token_secret (one line; must not be readable by others)" },
	[OPT_MAX_TOKEN_SIZE] = { "max_token_size", CONFIG_SIZE, 256, 16 * 1024, "2k", NULL, true, NULL,
	    "longest subscriber token accepted; longer ones are refused with 401" },
	[OPT_TRUSTED_PROXIES] = { "trusted_proxies", CONFIG_STRING, 0, 2048, "", NULL, false, check_proxies,
	    "addresses and addr/bits ranges (IPv4, IPv6; comma or blank separated) of reverse proxies: only they may subscribe with auth proxy, and only their X-Forwarded-For is believed" },
	[OPT_PUBLISH_SECRET] = { "publish_secret", CONFIG_STRING, 0, 1024, "", NULL, false, check_secret,
	    "secret publishers send as Authorization: Bearer (also guards /metrics and /stats); empty = loopback peers only" },
	[OPT_PUBLISH_SECRET_FILE] = { "publish_secret_file", CONFIG_STRING, 0, 1024, "", NULL, false, NULL,
	    "file holding publish_secret (one line; must not be readable by others)" },
	[OPT_CORS_ORIGINS] = { "cors_origins", CONFIG_STRING, 0, 2048, "", NULL, false, check_cors,
	    "origins (scheme://host[:port], comma or blank separated) allowed to read streams and publish from a browser, with credentials" },
	[OPT_THREADS] = { "threads", CONFIG_INT, 0, BROKER_MAX_SHARDS, "0", NULL, false, NULL,
	    "subscriber event loops (libmicrohttpd daemons sharing the port with SO_REUSEPORT); 0 = one per core" },
	[OPT_PING_INTERVAL] = { "ping_interval", CONFIG_SECONDS, 0, 86400, "300", NULL, true, NULL,
	    "seconds without an event before a ping event is sent; 0 = no pings" },
	[OPT_PING_MIN] = { "ping_min", CONFIG_SECONDS, 1, 86400, "30", NULL, true, NULL,
	    "lowest ping interval a client may ask for with ?ping=" },
	[OPT_PING_MAX] = { "ping_max", CONFIG_SECONDS, 1, 86400, "900", NULL, true, NULL,
	    "highest ping interval a client may ask for with ?ping=" },
	[OPT_RECONNECT_MS] = { "reconnect_ms", CONFIG_INT, 0, 3600000, "5000", NULL, true, NULL,
	    "reconnect delay sent as retry: (plus up to 50% random jitter)" },
	[OPT_HISTORY_SIZE] = { "history_size", CONFIG_INT, 1, 100000, "100", NULL, true, NULL,
	    "events kept per channel for replay; a subscriber further behind gets a reset" },
	[OPT_HISTORY_TTL] = { "history_ttl", CONFIG_SECONDS, 1, 604800, "600", NULL, true, NULL,
	    "seconds an event stays replayable (longer than a client's dead-connection timeout)" },
	[OPT_MAX_CONNECTIONS] = { "max_connections", CONFIG_INT, 1, 1000000, "19000", NULL, true, NULL,
	    "open subscriber streams per process; beyond it 503 with Retry-After" },
	[OPT_MAX_SUBSCRIBERS_PER_CHANNEL] = { "max_subscribers_per_channel", CONFIG_INT, 1, 1000000,
	    "100000", NULL, true, NULL, "subscribers on one channel; beyond it 429" },
	[OPT_MAX_CHANNELS] = { "max_channels", CONFIG_INT, 1, 100000000, "1000000", NULL, true, NULL,
	    "channels held in memory (with subscribers or history); beyond it 503" },
	[OPT_MAX_MESSAGE_SIZE] = { "max_message_size", CONFIG_SIZE, 1, 16 * 1024 * 1024, "64k", NULL,
	    true, NULL, "largest event payload; a batch body may be max_batch times this (64 MiB at most)" },
	[OPT_MAX_BATCH] = { "max_batch", CONFIG_INT, 1, 10000, "100", NULL, true, NULL,
	    "events in one POST /publish batch" },
	[OPT_CONNECTION_MEMORY] = { "connection_memory", CONFIG_SIZE, 2048, 1024 * 1024, "4k", NULL,
	    false, NULL, "libmicrohttpd memory pool per subscriber connection (request headers and output buffer)" },
	[OPT_REQUEST_TIMEOUT] = { "request_timeout", CONFIG_SECONDS, 0, 86400, "60", NULL, false, NULL,
	    "seconds a connection may stay idle while not subscribed (slow request, stuck writer); 0 = none" },
	[OPT_TCP_KEEPALIVE] = { "tcp_keepalive", CONFIG_BOOL, 0, 1, "off", NULL, true, NULL,
	    "TCP keepalive probes on subscriber sockets (costs battery on phones; pings usually suffice)" },
	[OPT_TCP_KEEPIDLE] = { "tcp_keepidle", CONFIG_SECONDS, 1, 32767, "300", NULL, true, NULL,
	    "idle seconds before the first keepalive probe" },
	[OPT_TCP_KEEPINTVL] = { "tcp_keepintvl", CONFIG_SECONDS, 1, 32767, "60", NULL, true, NULL,
	    "seconds between keepalive probes" },
	[OPT_TCP_KEEPCNT] = { "tcp_keepcnt", CONFIG_INT, 1, 127, "5", NULL, true, NULL,
	    "unanswered probes before the connection is dropped" },
	[OPT_LOG_LEVEL] = { "log_level", CONFIG_ENUM, 0, 0, "info", log_levels, true, NULL,
	    "error, warn, info or debug" },
	[OPT_REDIS] = { "redis", CONFIG_STRING, 0, 4000, "", NULL, false, check_redis,
	    "redis://[:password@]host:port[/db], unix:/path[?db=N] or sentinel://[:password@]host:port[,host:port...]/master[?db=N] (its password is the data servers'), or up to 16 of these separated by blanks, one per shard (each channel lives on one: add shards at the end only); brokers share publishes, history and counts; empty = standalone" },
	[OPT_REDIS_PREFIX] = { "redis_prefix", CONFIG_STRING, 0, 64, "ssepush:", NULL, false, NULL,
	    "prefix of every Redis key and pub/sub channel (several deployments can share one Redis)" },
	[OPT_REDIS_TIMEOUT] = { "redis_timeout", CONFIG_INT, 100, 600000, "2000", NULL, false, NULL,
	    "milliseconds the Redis link may take to connect or to answer a command (or confirm a subscription); past it the link is dropped, /healthz and publishes answer 503, and it reconnects" },
	[OPT_HEADER_TIMEOUT] = { "header_timeout", CONFIG_SECONDS, 0, 3600, "15", NULL, true, NULL,
	    "seconds a connection has to send a whole request (head and body), counted once, not per byte, from its accept or the end of its previous request; past it the connection is closed; 0 = no limit" },
	[OPT_MAX_PENDING_PER_ADDRESS] = { "max_pending_per_address", CONFIG_INT, 1, 1000000, "1024", NULL, true, NULL,
	    "connections from one address that have not yet been answered or become a stream; beyond it a new one is closed at once (trusted_proxies are exempt)" },
	[OPT_MAX_TOKEN_LIFETIME] = { "max_token_lifetime", CONFIG_SECONDS, 60, 31622400, "30d", NULL, true, NULL,
	    "longest a subscriber token may still be valid: one whose exp lies further ahead is refused (so exp 1e300 is not for ever)" },
	[OPT_REDIS_MIN_REPLICAS] = { "redis_min_replicas", CONFIG_INT, 0, 16, "0", NULL, true, NULL,
	    "a publish is answered as accepted only once Redis's WAIT says this many replicas hold it (within redis_wait_ms), else 503 (the publisher may retry; the event may still arrive); 0 = once the primary has it" },
	[OPT_REDIS_WAIT_MS] = { "redis_wait_ms", CONFIG_INT, 1, 300000, "1000", NULL, true, NULL,
	    "milliseconds a publish waits for redis_min_replicas replicas (capped at half of redis_timeout)" },
	/* web push: the checks that need the whole configuration are webpush_check_config's */
	[OPT_WEBPUSH] = { "webpush", CONFIG_BOOL, 0, 1, "off", NULL, false, NULL,
	    "Web Push (RFC 8030/8291/8292): POST /webpush/<channel> registers a browser's PushSubscription, and the channel's events are sent to its push service" },
	[OPT_WEBPUSH_VAPID_KEY_FILE] = { "webpush_vapid_key_file", CONFIG_STRING, 0, 1024, "", NULL, false, NULL,
	    "PEM P-256 private key signing VAPID tokens (openssl ecparam -name prime256v1 -genkey -noout, or ssepush-broker --webpush-genkey; must not be readable by others)" },
	[OPT_WEBPUSH_SUBJECT] = { "webpush_subject", CONFIG_STRING, 0, 255, "", NULL, false, NULL,
	    "the VAPID sub claim push services contact you by: mailto:address or an https: URL" },
	[OPT_WEBPUSH_ENDPOINTS] = { "webpush_endpoints", CONFIG_STRING, 1, 2048,
	    "https://fcm.googleapis.com https://updates.push.services.mozilla.com https://web.push.apple.com https://*.notify.windows.com",
	    NULL, false, NULL,
	    "origins of the push services registrations may use (scheme://host[:port], *. for any subdomain); only an exact entry written here allows http: or a private or loopback address" },
	[OPT_WEBPUSH_WHEN] = { "webpush_when", CONFIG_ENUM, 0, 0, "offline", webpush_whens, true, NULL,
	    "offline: push an event only when no open stream of its channel received it; always: every event" },
	[OPT_WEBPUSH_STORE] = { "webpush_store", CONFIG_STRING, 0, 1024, "", NULL, false, NULL,
	    "standalone: the file keeping registrations across restarts (replaced atomically); required with webpush on and no redis" },
	[OPT_WEBPUSH_TTL] = { "webpush_ttl", CONFIG_SECONDS, 0, 2419200, "1d", NULL, true, NULL,
	    "TTL of a push message: how long the push service keeps it for a device that is offline" },
	[OPT_WEBPUSH_URGENCY] = { "webpush_urgency", CONFIG_ENUM, 0, 0, "normal", webpush_urgencies, true, NULL,
	    "Urgency of a push message (RFC 8030 5.3) unless the event's JSON payload names one (\"urgency\")" },
	[OPT_WEBPUSH_MAX_PER_CHANNEL] = { "webpush_max_per_channel", CONFIG_INT, 1, 1000, "20", NULL, true, NULL,
	    "registrations one channel may hold; beyond it 429" },
	[OPT_WEBPUSH_QUEUE] = { "webpush_queue", CONFIG_INT, 1, 1000000, "10000", NULL, false, NULL,
	    "push messages waiting to be sent (or retried); beyond it new ones are dropped and counted" },
	[OPT_WEBPUSH_CONCURRENCY] = { "webpush_concurrency", CONFIG_INT, 1, 1000, "32", NULL, false, NULL,
	    "push requests in flight at once (each holds a connection, that is an open file)" },
	[OPT_WEBPUSH_RETRIES] = { "webpush_retries", CONFIG_INT, 0, 20, "5", NULL, true, NULL,
	    "retries of a message the push service answered 5xx or 429 (or could not be reached), with backoff from 1 s doubling; Retry-After is honoured" },
	[OPT_WEBPUSH_RECLAIM] = { "webpush_reclaim", CONFIG_SECONDS, 1, 3600, "30", NULL, false, NULL,
	    "Redis: seconds an event a broker took from the push queue may go untouched before another broker takes it over (the first one died)" },
	[OPT_JMAP_EVENTSOURCE_PATH] = { "jmap_eventsource_path", CONFIG_STRING, 0, 200, "/jmap/eventsource/",
	    NULL, false, check_jmap_path,
	    "path of the JMAP push endpoint (RFC 8620 section 7.3: types, closeafter, ping; event: state); route the JMAP server's eventSourceUrl here; empty = off" },
	[OPT_UPSTREAM_SESSION_URL] = { "upstream_session_url", CONFIG_STRING, 0, 1024, "", NULL, false,
	    check_upstream_url, "auth upstream: the JMAP session object (Cyrus: http://host/jmap/) that the JMAP endpoint's Authorization and cookies are sent to; its accounts are what they may read" },
	[OPT_UPSTREAM_CACHE_TTL] = { "upstream_cache_ttl", CONFIG_SECONDS, 0, 86400, "60", NULL, true, NULL,
	    "auth upstream: seconds an answer (accounts, or a refusal) is kept per credential (a SHA-256 of it); 0 = ask every time" },
	[OPT_UPSTREAM_CACHE_SIZE] = { "upstream_cache_size", CONFIG_INT, 1, 10000000, "10000", NULL, true, NULL,
	    "auth upstream: credentials cached at most; beyond, the oldest answer goes" },
	[OPT_UPSTREAM_TIMEOUT] = { "upstream_timeout", CONFIG_INT, 100, 60000, "5000", NULL, true, NULL,
	    "auth upstream: milliseconds the session request may take (connect included); past it the client gets 503 with Retry-After" },
	[OPT_UPSTREAM_MAX_PENDING] = { "upstream_max_pending", CONFIG_INT, 1, 100000, "1000", NULL, true, NULL,
	    "auth upstream: session requests in flight at most; beyond, a client whose credential is not cached gets 503 with Retry-After" },
	[OPT_DEMO] = { "demo", CONFIG_BOOL, 0, 1, "off", NULL, true, NULL,
	    "serve the demo page at / (a live event view and a publish form; /ssepush.js is always served)" },
};

static atomic_llong opt_values[OPT_COUNT];

/* Hot paths read integer directives without a lock; SIGHUP swaps values in here. */
long long
opt(enum opt o)
{
	return atomic_load_explicit(&opt_values[o], memory_order_relaxed);
}

/* Copies every integer value of c into the snapshot threads read. */
void
options_snapshot(const struct config *c)
{
	int i;

	for (i = 0; i < OPT_COUNT; i++)
		if (broker_directives[i].type != CONFIG_STRING)
			atomic_store(&opt_values[i], config_int(c, i));
	log_set_level((enum log_level)opt(OPT_LOG_LEVEL));
}

/* String directives are not reloadable, so the live config's copy is stable. */
const char *
opt_str(enum opt o)
{
	return config_str(broker_config, (int)o);
}
