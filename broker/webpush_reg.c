/*
 * Web push registrations as data: the configuration checks, the endpoint allow-list
 * (webpush_endpoints) and the private-address rule, parsing a browser's
 * PushSubscription JSON into a registration, and the JSON the stores keep. Pure
 * functions but for the allow-list, which is set once at start-up before any thread.
 */
#include "broker.h"
#include "webpush.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/time.h>

#include "log.h"
#include "names.h"
#include "secret.h"

/* One webpush_endpoints item. */
struct webpush_entry {
	bool https;
	bool wildcard;		/* "*.suffix": any host below suffix */
	bool private_ok;	/* an exact entry the operator wrote: private addresses allowed */
	unsigned port;
	char host[300];		/* lower case; the suffix after "*." for a wildcard */
};

static struct webpush_entry entries[WEBPUSH_ENTRIES_MAX];
static size_t nentries;

/* The parts of an http(s) URL we look at; host lower-cased, port defaulted. */
struct webpush_url {
	bool https;
	unsigned port;
	char host[256];
	size_t hostlen;
	const char *path;	/* borrowed: from the first '/' after the authority */
	size_t pathlen;		/* 0: none */
};

/* Parses scheme://host[:port][/path] (no userinfo; the path printable ASCII); -1 if not. */
static int
webpush_url_parse(const char *s, size_t len, struct webpush_url *u, bool allow_star)
{
	const char *p, *end = s + len, *h, *colon = NULL;
	size_t i;
	char *e;
	unsigned long port;

	if (len > 8 && strncasecmp(s, "https://", 8) == 0)
		u->https = true, p = s + 8;
	else if (len > 7 && strncasecmp(s, "http://", 7) == 0)
		u->https = false, p = s + 7;
	else
		return -1;
	h = p;
	if (p < end && *p == '[') {
		while (p < end && *p != ']')
			p++;
		if (p == end)
			return -1;
		p++;
	} else
		while (p < end && (isalnum((unsigned char)*p) || *p == '.' || *p == '-' ||
		    (allow_star && *p == '*')))
			p++;
	if (p == h || (size_t)(p - h) >= sizeof u->host)
		return -1;
	u->hostlen = (size_t)(p - h);
	for (i = 0; i < u->hostlen; i++)
		u->host[i] = (char)tolower((unsigned char)h[i]);
	u->host[u->hostlen] = '\0';
	u->port = u->https ? 443 : 80;
	if (p < end && *p == ':') {
		colon = p + 1;
		port = strtoul(colon, &e, 10);
		if (e == colon || e > end || port == 0 || port > 65535 || !isdigit((unsigned char)*colon))
			return -1;
		u->port = (unsigned)port;
		p = e;
	}
	if (p < end && *p != '/')
		return -1;	/* userinfo, a query without a path, or junk */
	u->path = p;
	u->pathlen = (size_t)(end - p);
	for (; p < end; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '\\')
			return -1;
	return 0;
}

/* Parses the list into out (*count items); from_operator: written in the file or on the command line. */
static int
webpush_endpoints_parse(const char *list, bool from_operator, struct webpush_entry *out, size_t *count)
{
	struct webpush_url u;
	size_t n, k = 0;

	for (;;) {
		list += strspn(list, BROKER_LIST_SEP);
		if (*list == '\0') {
			*count = k;
			return 0;
		}
		n = strcspn(list, BROKER_LIST_SEP);
		if (k == WEBPUSH_ENTRIES_MAX || webpush_url_parse(list, n, &u, true) == -1 ||
		    u.pathlen != 0)
			return -1;
		if (strchr(u.host, '*') != NULL && (strncmp(u.host, "*.", 2) != 0 ||
		    strchr(u.host + 2, '*') != NULL || u.host[2] == '\0'))
			return -1;
		out[k].https = u.https;
		out[k].port = u.port;
		out[k].wildcard = u.host[0] == '*';
		out[k].private_ok = from_operator && !out[k].wildcard;
		/* http: only from an exact entry the operator wrote (tests, a local relay) */
		if (!u.https && !out[k].private_ok)
			return -1;
		snprintf(out[k].host, sizeof out[k].host, "%s",
		    out[k].wildcard ? u.host + 1 : u.host);	/* keep the dot */
		k++;
		list += n;
	}
}

/* Sets the allow-list once, before the sender thread starts. */
int
webpush_endpoints_init(const char *list, bool from_operator)
{
	return webpush_endpoints_parse(list, from_operator, entries, &nentries);
}

/* The entry that allows u, or NULL. */
static const struct webpush_entry *
webpush_entry_for(const struct webpush_url *u)
{
	size_t i, hl;

	for (i = 0; i < nentries; i++) {
		const struct webpush_entry *e = &entries[i];

		if (e->https != u->https || e->port != u->port)
			continue;
		hl = strlen(e->host);
		if (!e->wildcard && strcmp(e->host, u->host) == 0)
			return e;
		if (e->wildcard && u->hostlen > hl && strcmp(u->host + u->hostlen - hl, e->host) == 0 &&
		    u->host[0] != '.')
			return e;
	}
	return NULL;
}

/* Whether an address is one a request forger would aim at: loopback, private, link-local, ... */
bool
webpush_addr_public(const struct sockaddr *sa)
{
	const unsigned char *a;
	unsigned char v4[4];

	if (sa->sa_family == AF_INET) {
		memcpy(v4, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		static const unsigned char zero[15] = { 0 };

		if (memcmp(a, mapped, 12) == 0) {
			memcpy(v4, a + 12, 4);
		} else {
			if (memcmp(a, zero, 15) == 0)		/* :: and ::1 */
				return false;
			if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) ||
			    a[0] == 0xff || (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) ||
			    (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b))
				return false;	/* ULA, link-local, multicast, documentation, NAT64 */
			return true;
		}
	} else
		return false;
	return !(v4[0] == 0 || v4[0] == 10 || v4[0] == 127 || v4[0] >= 224 ||
	    (v4[0] == 100 && (v4[1] & 0xc0) == 64) || (v4[0] == 169 && v4[1] == 254) ||
	    (v4[0] == 172 && (v4[1] & 0xf0) == 16) || (v4[0] == 192 && v4[1] == 168) ||
	    (v4[0] == 192 && v4[1] == 0 && (v4[2] == 0 || v4[2] == 2)) ||
	    (v4[0] == 198 && (v4[1] & 0xfe) == 18));
}

/* Whether a host written in a URL names a non-public address (literal, or localhost). */
static bool
webpush_host_private(const char *host)
{
	struct sockaddr_in a4 = { .sin_family = AF_INET };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6 };
	char v6[64];
	size_t n = strlen(host);

	if (strcmp(host, "localhost") == 0 || (n > 10 && strcmp(host + n - 10, ".localhost") == 0))
		return true;
	if (inet_pton(AF_INET, host, &a4.sin_addr) == 1)
		return !webpush_addr_public((struct sockaddr *)&a4);
	if (host[0] == '[' && n < sizeof v6 + 2) {
		memcpy(v6, host + 1, n - 2);
		v6[n - 2] = '\0';
		if (inet_pton(AF_INET6, v6, &a6.sin6_addr) == 1)
			return !webpush_addr_public((struct sockaddr *)&a6);
		return true;	/* a bracketed host that is no address */
	}
	return false;
}

/* Checks an endpoint against the allow-list; fills r's endpoint, origin and private_ok. */
static const char *
webpush_endpoint_check(const char *endpoint, struct webpush_reg *r)
{
	struct webpush_url u;
	const struct webpush_entry *e;
	size_t len = strlen(endpoint);

	if (len > WEBPUSH_ENDPOINT_MAX)
		return "endpoint too long";
	if (webpush_url_parse(endpoint, len, &u, false) == -1)
		return "endpoint is not an http(s) URL";
	if ((e = webpush_entry_for(&u)) == NULL)
		return u.https ? "endpoint not on an allowed push service (webpush_endpoints)" :
		    "endpoint must be https: on an allowed push service (webpush_endpoints)";
	if (!e->private_ok && webpush_host_private(u.host))
		return "endpoint names a private or loopback address";
	memcpy(r->endpoint, endpoint, len + 1);
	if (u.port == (u.https ? 443u : 80u))
		snprintf(r->origin, sizeof r->origin, "%s://%s", u.https ? "https" : "http", u.host);
	else
		snprintf(r->origin, sizeof r->origin, "%s://%s:%u", u.https ? "https" : "http", u.host, u.port);
	r->private_ok = e->private_ok;
	return NULL;
}

/* Reads types (a string "a,b" or an array of strings) into r->types; NULL or the reason. */
static const char *
webpush_types(json_t *t, struct webpush_reg *r)
{
	size_t i, n = 0, l;
	json_t *v;
	const char *s;

	r->types[0] = '\0';
	if (t == NULL || json_is_null(t))
		return NULL;
	if (json_is_string(t)) {
		s = json_string_value(t);
		l = strlen(s);
		if (l == 0)
			return NULL;	/* every type */
		if (l > WEBPUSH_TYPES_MAX)
			return "types too long";
		for (i = 0; i <= l; i++) {
			size_t k = strcspn(s + i, ",");

			if (k == 0 || !names_event_type_valid(s + i, k))
				return "invalid types: event type names, comma separated";
			i += k;
		}
		memcpy(r->types, s, l + 1);
		return NULL;
	}
	if (!json_is_array(t))
		return "types must be a string or an array of strings";
	json_array_foreach(t, i, v) {
		if (!json_is_string(v) || !names_event_type_valid(json_string_value(v), json_string_length(v)))
			return "invalid types: event type names expected";
		l = json_string_length(v);
		if (n + l + 1 > WEBPUSH_TYPES_MAX)
			return "types too long";
		if (n > 0)
			r->types[n++] = ',';
		memcpy(r->types + n, json_string_value(v), l);
		n += l;
		r->types[n] = '\0';
	}
	return NULL;
}

/* Decodes a base64url key of exactly want bytes. */
static bool
webpush_key_field(json_t *keys, const char *name, unsigned char *out, size_t want)
{
	json_t *v = json_object_get(keys, name);
	unsigned char buf[128];
	ssize_t n;

	if (!json_is_string(v) || json_string_length(v) > 200)
		return false;
	n = webpush_b64_decode(buf, sizeof buf, json_string_value(v), json_string_length(v));
	if (n != (ssize_t)want)
		return false;
	memcpy(out, buf, want);
	return true;
}

/* Milliseconds since the epoch. */
static long long
webpush_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Fills r from the parsed request body; NULL or the reason for a 400. */
static const char *
webpush_reg_fill(json_t *o, const char *channel, const char *session, struct webpush_reg *r)
{
	json_t *ep = json_object_get(o, "endpoint"), *keys = json_object_get(o, "keys");
	json_t *exp = json_object_get(o, "expirationTime"), *ses = json_object_get(o, "session");
	const char *why;

	if (!json_is_object(o))
		return "a PushSubscription JSON object expected";
	if (!json_is_string(ep))
		return "endpoint missing";
	if ((why = webpush_endpoint_check(json_string_value(ep), r)) != NULL)
		return why;
	if (!json_is_object(keys))
		return "keys missing";
	if (!webpush_key_field(keys, "p256dh", r->p256dh, WEBPUSH_PUBKEY_LEN) ||
	    !webpush_pubkey_valid(r->p256dh))
		return "keys.p256dh is not a base64url P-256 public key";
	if (!webpush_key_field(keys, "auth", r->auth, WEBPUSH_AUTH_LEN))
		return "keys.auth is not 16 bytes of base64url";
	if (exp != NULL && !json_is_null(exp)) {
		if (!json_is_number(exp) || json_number_value(exp) < 0 || json_number_value(exp) > 1e15)
			return "expirationTime must be null or a time in milliseconds";
		r->expires_ms = (long long)json_number_value(exp);
		if (r->expires_ms != 0 && r->expires_ms <= webpush_now_ms())
			return "expirationTime is in the past";
	}
	if ((why = webpush_types(json_object_get(o, "types"), r)) != NULL)
		return why;
	if (session == NULL && ses != NULL && !json_is_null(ses)) {
		if (!json_is_string(ses) || !names_id_valid(json_string_value(ses), json_string_length(ses)))
			return "invalid session";
		session = json_string_value(ses);
	}
	snprintf(r->session, sizeof r->session, "%s", session != NULL ? session : "");
	snprintf(r->channel, sizeof r->channel, "%s", channel);
	return NULL;
}

/*
 * Parses a registration request for channel; session (the token's sid, or NULL) wins
 * over the body's. Returns 0, or 400 with the reason in why. Unknown fields are ignored.
 */
unsigned
webpush_reg_parse(const char *body, size_t len, const char *channel, const char *session,
    struct webpush_reg *r, char *why, size_t whylen)
{
	json_error_t err;
	json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	const char *reason;

	memset(r, 0, sizeof *r);
	if (o == NULL) {
		snprintf(why, whylen, "invalid JSON: %s", err.text);
		return 400;
	}
	reason = webpush_reg_fill(o, channel, session, r);
	json_decref(o);
	if (reason != NULL) {
		snprintf(why, whylen, "%s", reason);
		return 400;
	}
	return 0;
}

/* Whether a comma list holds name. */
static bool
webpush_list_has(const char *list, const char *name)
{
	size_t n = strlen(name), k;

	for (;;) {
		k = strcspn(list, ",");
		if (k == n && memcmp(list, name, n) == 0)
			return true;
		if (list[k] == '\0')
			return false;
		list += k + 1;
	}
}

/* The event's type and session filters, applied to a registration as to a stream. */
bool
webpush_reg_wants(const struct webpush_reg *r, const struct webpush_event *ev)
{
	if (r->types[0] != '\0' && !webpush_list_has(r->types, ev->type))
		return false;
	if (ev->session != NULL && strcmp(ev->session, r->session) != 0)
		return false;
	if (ev->exclude_session != NULL && r->session[0] != '\0' &&
	    strcmp(ev->exclude_session, r->session) == 0)
		return false;
	return r->expires_ms == 0 || r->expires_ms > webpush_now_ms();
}

/*
 * Whether no open stream of the registration's channel and session received ev
 * (webpush_when offline). A registration without a session is offline when no stream
 * received the event. One with a session is also offline when every stream that did
 * belongs to another session: the user's other devices are online while this one
 * sleeps. A stream without a session might be this device, so it counts as online
 * for every registration, and so does a reach of unknown sessions (reached NULL).
 * reached lists the session of each stream reached, "" for one without: ",s2,,".
 */
bool
webpush_reg_offline(const struct webpush_reg *r, const struct webpush_event *ev)
{
	size_t n = strlen(r->session);
	const char *p;

	if (ev->subscribers == 0)
		return true;
	if (n == 0 || ev->reached == NULL || strstr(ev->reached, ",,") != NULL)
		return false;
	for (p = ev->reached; (p = strstr(p, r->session)) != NULL; p++)
		if (p > ev->reached && p[-1] == ',' && p[n] == ',')
			return false;
	return true;
}

/* The JSON a store keeps (new string, or NULL). The keys stay in base64url. */
char *
webpush_reg_dump(const struct webpush_reg *r)
{
	char p256dh[WEBPUSH_B64_LEN(WEBPUSH_PUBKEY_LEN) + 1], auth[WEBPUSH_B64_LEN(WEBPUSH_AUTH_LEN) + 1];
	json_t *o;
	char *s;

	webpush_b64_encode(p256dh, sizeof p256dh, r->p256dh, WEBPUSH_PUBKEY_LEN);
	webpush_b64_encode(auth, sizeof auth, r->auth, WEBPUSH_AUTH_LEN);
	o = json_pack("{s:s,s:s,s:s,s:{s:s,s:s},s:s,s:s,s:I}", "id", r->id, "channel", r->channel,
	    "endpoint", r->endpoint, "keys", "p256dh", p256dh, "auth", auth, "types", r->types,
	    "session", r->session, "expirationTime", (json_int_t)r->expires_ms);
	s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return s;
}

/*
 * Reads back what webpush_reg_dump wrote, checking it again as a new registration
 * (so an endpoint the allow-list no longer takes is dropped); 0 or -1.
 */
int
webpush_reg_load(const char *json, size_t len, struct webpush_reg *r)
{
	json_t *o = json_loadb(json, len, 0, NULL), *id, *ch, *ses;
	int rc = -1;

	memset(r, 0, sizeof *r);
	if (o == NULL)
		return -1;
	id = json_object_get(o, "id");
	ch = json_object_get(o, "channel");
	ses = json_object_get(o, "session");
	if (json_is_string(ses) && json_string_length(ses) == 0)
		json_object_del(o, "session");
	if (json_is_string(id) && json_string_length(id) == WEBPUSH_ID_LEN && json_is_string(ch) &&
	    names_channel_valid(json_string_value(ch), json_string_length(ch)) &&
	    webpush_reg_fill(o, json_string_value(ch), NULL, r) == NULL) {
		memcpy(r->id, json_string_value(id), WEBPUSH_ID_LEN + 1);
		rc = 0;
	}
	json_decref(o);
	return rc;
}

/* Frees an event; accepts NULL. */
void
webpush_event_free(struct webpush_event *ev)
{
	if (ev == NULL)
		return;
	free(ev->channel);
	free(ev->id);
	free(ev->type);
	free(ev->session);
	free(ev->exclude_session);
	free(ev->data);
	free(ev->reached);
	free(ev);
}

/* A new random registration id (base64url of 16 bytes). */
void
webpush_new_id(char out[WEBPUSH_ID_LEN + 1])
{
	unsigned char b[16];

	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		fatal("getrandom failed");
	webpush_b64_encode(out, WEBPUSH_ID_LEN + 1, b, sizeof b);
}

/* --- configuration ------------------------------------------------------------ */

/* Reports an error at directive i ("file:line: message"). */
__attribute__((format(printf, 6, 7)))
static void
webpush_report(const struct config *c, const char *path, int i, config_error_fn *report, void *arg,
    const char *fmt, ...)
{
	char where[1100], msg[1024], line[2200];
	va_list ap;

	if (c->origin[i] == CONFIG_FILE)
		snprintf(where, sizeof where, "%s:%u", path, c->line[i]);
	else if (c->origin[i] == CONFIG_ARGV)
		snprintf(where, sizeof where, "command line");
	else
		snprintf(where, sizeof where, "%s", path != NULL ? path : "configuration");
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(line, sizeof line, "%s: %s", where, msg);
	report(arg, line);
}

/* What webpush on needs: a usable key, a subject, an allow-list, a store; returns the error count. */
int
webpush_check_config(const struct config *c, const char *path, config_error_fn *report, void *arg)
{
	const char *key = config_str(c, OPT_WEBPUSH_VAPID_KEY_FILE), *sub = config_str(c, OPT_WEBPUSH_SUBJECT);
	static struct webpush_entry check[WEBPUSH_ENTRIES_MAX];	/* main thread only */
	char err[1200];
	EVP_PKEY *k;
	size_t n;
	int errors = 0;

	if (webpush_endpoints_parse(config_str(c, OPT_WEBPUSH_ENDPOINTS),
	    c->origin[OPT_WEBPUSH_ENDPOINTS] != CONFIG_DEFAULT, check, &n) == -1) {
		webpush_report(c, path, OPT_WEBPUSH_ENDPOINTS, report, arg,
		    "webpush_endpoints: a list of at most %d origins (https://host[:port], https://*.domain; http: only as an exact entry) expected",
		    WEBPUSH_ENTRIES_MAX);
		errors++;
	}
	if (*sub != '\0' && ((strncmp(sub, "mailto:", 7) != 0 && strncmp(sub, "https://", 8) != 0) ||
	    strpbrk(sub, "\"\\ \t") != NULL || sub[7] == '\0')) {
		webpush_report(c, path, OPT_WEBPUSH_SUBJECT, report, arg,
		    "webpush_subject: a mailto: address or an https: URL expected");
		errors++;
	}
	if (!config_int(c, OPT_WEBPUSH))
		return errors;
	if (*sub == '\0') {
		webpush_report(c, path, OPT_WEBPUSH, report, arg, "webpush on needs webpush_subject");
		errors++;
	}
	if (*key == '\0') {
		webpush_report(c, path, OPT_WEBPUSH, report, arg,
		    "webpush on needs webpush_vapid_key_file (ssepush-broker --webpush-genkey writes one)");
		errors++;
	} else if (secret_file_mode_ok(key, "the broker", err, sizeof err) == -1 ||
	    (k = webpush_key_load(key, err, sizeof err)) == NULL) {
		webpush_report(c, path, OPT_WEBPUSH_VAPID_KEY_FILE, report, arg, "webpush_vapid_key_file: %s", err);
		errors++;
	} else
		EVP_PKEY_free(k);
	if (*config_str(c, OPT_REDIS) == '\0' && *config_str(c, OPT_WEBPUSH_STORE) == '\0') {
		webpush_report(c, path, OPT_WEBPUSH, report, arg,
		    "webpush on without redis needs webpush_store (the file keeping registrations)");
		errors++;
	}
	return errors;
}
