/*
 * Who may subscribe and who may publish: the auth directives' cross checks and the
 * secrets they name (files, permissions), subscriber tokens (JWT HS256 through libjwt,
 * with the algorithm checked before libjwt is trusted), the auth proxy peer check and
 * X-Forwarded-For, publisher secrets compared in constant time, the refusals with their
 * reasons and counters, and minting tokens for --mint-token. Tokens and secrets never
 * reach a log line. It does not own routing (http.c) or CORS (cors.c).
 */
#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "cidr.h"
#include "log.h"
#include "names.h"
#include "secret.h"

#define AUTH_SECRET_MAX 1024		/* bytes of a secret, as the directives allow */
#define AUTH_CLOCK_SKEW 30		/* seconds of leeway on exp and nbf between hosts */
#define AUTH_TTL_MAX (366LL * 86400)	/* longest --ttl of a minted token */
#define AUTH_ADDR_MAX 64		/* bytes of a formatted client address */
#define AUTH_COOKIE "ssepush_token"

_Static_assert(sizeof ((struct auth_result *)0)->session == NAMES_ID_MAX + 1,
    "auth_result.session holds one session id");

/* Refusal reasons: the metrics label and the HTTP status of each. */
enum auth_reason {
	AR_MISSING, AR_MALFORMED, AR_TOO_LARGE, AR_ALG_NONE, AR_ALG, AR_SIGNATURE,
	AR_CLAIMS, AR_EXPIRED, AR_NOT_YET_VALID, AR_CHANNEL, AR_UNTRUSTED_PEER,
	AR_PUBLISH_SECRET, AR_PUBLISH_NOT_LOCAL, AR_UPSTREAM_ONLY, AR_COUNT
};
static const char *const auth_labels[AR_COUNT] = {
	"missing", "malformed", "too_large", "alg_none", "alg", "signature", "claims",
	"expired", "not_yet_valid", "channel", "untrusted_peer", "publish_secret",
	"publish_not_local", "upstream_only",
};
static atomic_ullong auth_failures[AR_COUNT];

/* The secrets and trusted ranges, set once by auth_init before any thread starts. */
static struct {
	enum auth_mode mode;
	char token_secret[AUTH_SECRET_MAX + 1];
	size_t token_secret_len;
	char publish_secret[AUTH_SECRET_MAX + 1];
	size_t publish_secret_len;
	struct cidr_list trusted;
} auth;

/* --- configuration ------------------------------------------------------------ */

/* Where directive i was set, for "file:line: message" reports. */
static void
auth_where(const struct config *c, const char *path, int i, char *buf, size_t len)
{
	if (c->origin[i] == CONFIG_FILE)
		snprintf(buf, len, "%s:%u", path, c->line[i]);
	else if (c->origin[i] == CONFIG_ARGV)
		snprintf(buf, len, "command line");
	else
		snprintf(buf, len, "%s", path != NULL ? path : "configuration");
}

/* Reports one cross-directive error at directive i's location. */
__attribute__((format(printf, 6, 7)))
static void
auth_report(const struct config *c, const char *path, int i, config_error_fn *report,
    void *arg, const char *fmt, ...)
{
	char where[1100], msg[1024], line[2200];
	va_list ap;

	auth_where(c, path, i, where, sizeof where);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(line, sizeof line, "%s: %s", where, msg);
	report(arg, line);
}

/* Reads a one-line secret file (trailing CR/LF dropped); returns 0 or -1 with err. */
static int
auth_read_secret(const char *file, char *buf, size_t *len, char *err, size_t errlen)
{
	return secret_read_file(file, "the broker", buf, AUTH_SECRET_MAX, BROKER_SECRET_MIN, len,
	    err, errlen);
}

/*
 * Loads one secret from its directive or its file directive into buf (len 0 when
 * neither is set). Returns 0 or -1 with the reason in err and the culprit in *bad.
 */
static int
auth_load_secret(const struct config *c, int inline_opt, int file_opt, char *buf,
    size_t *len, int *bad, char *err, size_t errlen)
{
	const char *v = config_str(c, inline_opt), *file = config_str(c, file_opt);

	*bad = file_opt;
	if (*v != '\0' && *file != '\0') {
		snprintf(err, errlen, "set %s or %s, not both", c->table[inline_opt].name,
		    c->table[file_opt].name);
		return -1;
	}
	if (*file != '\0')
		return auth_read_secret(file, buf, len, err, errlen);
	*len = strlen(v);
	memcpy(buf, v, *len + 1);
	return 0;
}

/* Whether a checked "host:port" listen value names a loopback host. */
static bool
auth_listen_is_loopback(const char *spec)
{
	const char *colon = strrchr(spec, ':');
	const char *h = spec;
	size_t n = colon != NULL ? (size_t)(colon - spec) : 0;
	struct cidr c;

	if (n >= 2 && h[0] == '[') {
		h++;
		n -= 2;
	}
	if (cidr_parse(h, n, &c) == -1)
		return false;
	return (c.family == 4 && c.addr[0] == 127) ||
	    (c.family == 6 && memcmp(c.addr, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0);
}

/* Checks that a config file holding an inline secret is not readable by others. */
static int
auth_check_config_file(const struct config *c, const char *path, config_error_fn *report,
    void *arg)
{
	char err[1024];
	int i = c->origin[OPT_TOKEN_SECRET] == CONFIG_FILE ? OPT_TOKEN_SECRET : OPT_PUBLISH_SECRET;

	if (path == NULL || c->origin[i] != CONFIG_FILE || *config_str(c, i) == '\0')
		return 0;
	if (secret_file_mode_ok(path, "the broker", err, sizeof err) == 0)
		return 0;
	auth_report(c, path, i, report, arg, "%s (or move the secret to %s_file)", err,
	    c->table[i].name);
	return 1;
}

/*
 * Checks what single directives cannot: secrets and their files, the mode's needs, and
 * that auth none only listens on loopback. Reports each error; returns their number.
 */
int
auth_check_config(const struct config *c, const char *path, config_error_fn *report, void *arg)
{
	char buf[AUTH_SECRET_MAX + 1], err[1024];
	size_t len, tlen = 0;
	int errors = 0, bad;
	enum auth_mode mode = (enum auth_mode)config_int(c, OPT_AUTH);

	if (auth_load_secret(c, OPT_TOKEN_SECRET, OPT_TOKEN_SECRET_FILE, buf, &tlen, &bad,
	    err, sizeof err) == -1) {
		auth_report(c, path, bad, report, arg, "%s", err);
		errors++;
		tlen = 1;	/* do not also say that it is missing */
	}
	if (auth_load_secret(c, OPT_PUBLISH_SECRET, OPT_PUBLISH_SECRET_FILE, buf, &len, &bad,
	    err, sizeof err) == -1) {
		auth_report(c, path, bad, report, arg, "%s", err);
		errors++;
	}
	explicit_bzero(buf, sizeof buf);
	errors += auth_check_config_file(c, path, report, arg);
	if (mode == AUTH_TOKEN && tlen == 0) {
		auth_report(c, path, OPT_AUTH, report, arg,
		    "auth token needs token_secret or token_secret_file");
		errors++;
	}
	if (mode == AUTH_UPSTREAM && *config_str(c, OPT_UPSTREAM_SESSION_URL) == '\0') {
		auth_report(c, path, OPT_AUTH, report, arg,
		    "auth upstream needs upstream_session_url (the JMAP server's session object)");
		errors++;
	}
	if (mode == AUTH_PROXY && *config_str(c, OPT_TRUSTED_PROXIES) == '\0') {
		auth_report(c, path, OPT_AUTH, report, arg,
		    "auth proxy needs trusted_proxies (the reverse proxies' addresses)");
		errors++;
	}
	if (mode == AUTH_NONE && !auth_listen_is_loopback(config_str(c, OPT_LISTEN))) {
		auth_report(c, path, OPT_LISTEN, report, arg,
		    "listen %s is not a loopback address and auth is none, so anyone could read any channel: set auth token (with token_secret) or auth proxy (with trusted_proxies), or listen on 127.0.0.1",
		    config_str(c, OPT_LISTEN));
		errors++;
	}
	return errors;
}

/* Loads the secrets and ranges of a checked config; start-up only. Returns 0 or -1. */
int
auth_init(const struct config *c)
{
	char err[1024];
	int bad;

	auth.mode = (enum auth_mode)config_int(c, OPT_AUTH);
	if (auth_load_secret(c, OPT_TOKEN_SECRET, OPT_TOKEN_SECRET_FILE, auth.token_secret,
	    &auth.token_secret_len, &bad, err, sizeof err) == -1 ||
	    auth_load_secret(c, OPT_PUBLISH_SECRET, OPT_PUBLISH_SECRET_FILE, auth.publish_secret,
	    &auth.publish_secret_len, &bad, err, sizeof err) == -1 ||
	    cidr_list_parse(config_str(c, OPT_TRUSTED_PROXIES), &auth.trusted, err, sizeof err) == -1) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

/* Wipes the secrets from memory at exit. */
void
auth_free(void)
{
	explicit_bzero(&auth, sizeof auth);
}

/* --- refusals ----------------------------------------------------------------- */

/* Fills r for a refusal; returns -1 so callers can return it. */
static int
auth_fail(struct auth_result *r, enum auth_reason reason, unsigned status, const char *msg)
{
	r->reason = (int)reason;
	r->status = status;
	r->msg = msg;
	return -1;
}

/* Formats an IP socket address. */
static void
auth_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa != NULL && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, host, sizeof host);
	else if (sa != NULL && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, host, sizeof host);
	snprintf(buf, len, "%s", host);
}

/* The connection's peer address (borrowed from MHD), or NULL. */
static const struct sockaddr *
auth_peer(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);

	return ci != NULL ? ci->client_addr : NULL;
}

/*
 * The client's address: the peer, or, when the peer is a trusted proxy, the last
 * X-Forwarded-For hop that is not itself a trusted proxy (a hop that is not an address
 * ends the walk: what lies left of it cannot be believed).
 */
void
auth_client_addr(struct MHD_Connection *conn, char *buf, size_t len)
{
	const struct sockaddr *peer = auth_peer(conn);
	const char *xff = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For");
	const char *end, *seg, *p;
	struct cidr c;
	size_t n;

	auth_format_addr(peer, buf, len);
	if (xff == NULL || !cidr_list_match_addr(&auth.trusted, peer))
		return;
	for (end = xff + strlen(xff);; end = seg - 1) {
		for (seg = end; seg > xff && seg[-1] != ','; seg--)
			;
		for (p = seg, n = (size_t)(end - seg); n > 0 && (*p == ' ' || *p == '\t'); p++)
			n--;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (memchr(p, '/', n) != NULL || cidr_parse(p, n, &c) == -1)
			return;
		snprintf(buf, len, "%.*s", (int)n, p);
		if (!cidr_list_match_text(&auth.trusted, p, n) || seg == xff)
			return;
	}
}

/* Counts and logs a refusal (what says what was tried; it holds no secret). */
static void
auth_note(struct MHD_Connection *conn, const struct auth_result *r, const char *what,
    const char *channel, size_t len)
{
	char addr[AUTH_ADDR_MAX], esc[LOG_ESCAPE_SIZE];

	atomic_fetch_add(&auth_failures[r->reason], 1);
	atomic_fetch_add(&counters.auth_failures, 1);
	auth_client_addr(conn, addr, sizeof addr);
	log_info("auth: refused %s%s from %s: %s", what,
	    channel != NULL ? log_escape(esc, channel, len) : "", addr, auth_labels[r->reason]);
}

/* Sends a refusal: JSON {"error"}, WWW-Authenticate on 401. */
enum MHD_Result
auth_refuse(struct MHD_Connection *conn, const struct auth_result *r)
{
	return reply_refused(conn, r->status, r->msg, r->status != MHD_HTTP_UNAUTHORIZED ? NULL :
	    r->reason == AR_MISSING ? "Bearer realm=\"ssepush\"" :
	    "Bearer realm=\"ssepush\", error=\"invalid_token\"");
}

/* The trusted proxies' ranges (for conn.c's exemption); valid after auth_init. */
const struct cidr_list *
auth_trusted(void)
{
	return &auth.trusted;
}

/* Prometheus lines: one auth_failures_total series per reason. */
void
auth_metrics(FILE *f)
{
	int i;

	fputs("# HELP ssepush_auth_failures_total Refused credentials, by reason.\n"
	    "# TYPE ssepush_auth_failures_total counter\n", f);
	for (i = 0; i < AR_COUNT; i++)
		fprintf(f, "ssepush_auth_failures_total{reason=\"%s\"} %llu\n", auth_labels[i],
		    atomic_load(&auth_failures[i]));
}

/* --- subscriber tokens ---------------------------------------------------------- */

/*
 * Finds the token: Authorization: Bearer, then ?token=, then the cookie. Returns it
 * (borrowed from MHD), or NULL with r filled.
 */
static const char *
auth_token_find(struct MHD_Connection *conn, struct auth_result *r)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	const char *t;

	if (h != NULL) {
		if (strncasecmp(h, "Bearer ", 7) != 0) {
			auth_fail(r, AR_MALFORMED, MHD_HTTP_UNAUTHORIZED,
			    "Authorization header must be Bearer <token>");
			return NULL;
		}
		for (h += 7; *h == ' '; h++)
			;
		return h;
	}
	if ((t = request_arg(conn, "token")) != NULL)
		return t;
	if ((t = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, AUTH_COOKIE)) != NULL)
		return t;
	auth_fail(r, AR_MISSING, MHD_HTTP_UNAUTHORIZED,
	    "token required (Authorization: Bearer, ?token= or cookie ssepush_token)");
	return NULL;
}

/* Three dot-separated base64url parts, the first two not empty (alg none has no third). */
static bool
auth_token_shape(const char *t)
{
	size_t part = 0, n = 0;

	for (; *t != '\0'; t++) {
		if (*t == '.') {
			if (n == 0 || ++part > 2)
				return false;
			n = 0;
		} else if ((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') ||
		    (*t >= '0' && *t <= '9') || *t == '-' || *t == '_') {
			n++;
		} else {
			return false;
		}
	}
	return part == 2;
}

/*
 * Reads the header's alg without trusting anything else: libjwt 1.10 accepts any HMAC
 * algorithm with the key it is given (an HS384 token passes an HS256 key), so the
 * algorithm is pinned here before the signature is checked. Returns 0 or -1 with r.
 */
static int
auth_token_alg(const char *tok, struct auth_result *r)
{
	jwt_t *j = NULL;
	const char *alg;
	char *crit;
	int ret = 0;

	if (jwt_decode(&j, tok, NULL, 0) != 0 || (alg = jwt_get_header(j, "alg")) == NULL)
		ret = auth_fail(r, AR_MALFORMED, MHD_HTTP_UNAUTHORIZED, "malformed token");
	else if (strcasecmp(alg, "none") == 0)
		ret = auth_fail(r, AR_ALG_NONE, MHD_HTTP_UNAUTHORIZED,
		    "unsigned token (alg none) refused");
	else if (strcmp(alg, "HS256") != 0)
		ret = auth_fail(r, AR_ALG, MHD_HTTP_UNAUTHORIZED,
		    "token algorithm not accepted (HS256 required)");
	else if ((crit = jwt_get_headers_json(j, "crit")) != NULL) {
		/* RFC 7515 4.1.11: extensions named in crit must be understood; we know none. */
		ret = auth_fail(r, AR_MALFORMED, MHD_HTTP_UNAUTHORIZED,
		    "token header names critical extensions (crit) this broker does not support");
		free(crit);
	}
	jwt_free(j);
	return ret;
}

/* Whether the claims name the channel in sub or in the channels array; -1 if neither is there. */
static int
auth_claims_channel(json_t *claims, const char *channel, size_t len)
{
	json_t *sub = json_object_get(claims, "sub"), *list = json_object_get(claims, "channels");
	json_t *v;
	size_t i;

	if (!json_is_string(sub) && !json_is_array(list))
		return -1;
	if (json_is_string(sub) && json_string_length(sub) == len &&
	    memcmp(json_string_value(sub), channel, len) == 0)
		return 1;
	json_array_foreach(list, i, v)
		if (json_is_string(v) && json_string_length(v) == len &&
		    memcmp(json_string_value(v), channel, len) == 0)
			return 1;
	return 0;
}

/* Checks exp (required), nbf, sid and the channel of verified claims; 0 or -1 with r. */
static int
auth_claims(json_t *claims, const char *channel, size_t len, struct auth_result *r)
{
	json_t *exp = json_object_get(claims, "exp"), *nbf = json_object_get(claims, "nbf");
	json_t *sid = json_object_get(claims, "sid");
	double now = (double)time(NULL);
	int named;

	if (!json_is_number(exp))
		return auth_fail(r, AR_CLAIMS, MHD_HTTP_UNAUTHORIZED, "token has no exp claim");
	if (nbf != NULL && !json_is_number(nbf))
		return auth_fail(r, AR_CLAIMS, MHD_HTTP_UNAUTHORIZED, "token nbf claim is not a number");
	if (sid != NULL && (!json_is_string(sid) ||
	    !names_id_valid(json_string_value(sid), json_string_length(sid))))
		return auth_fail(r, AR_CLAIMS, MHD_HTTP_UNAUTHORIZED, "token sid claim is not a valid session");
	if (json_number_value(exp) + AUTH_CLOCK_SKEW <= now)
		return auth_fail(r, AR_EXPIRED, MHD_HTTP_UNAUTHORIZED, "token expired");
	/* exp: 1e300 must not mean "for ever": the lifetime left is capped. */
	if (json_number_value(exp) - now > (double)opt(OPT_MAX_TOKEN_LIFETIME) + AUTH_CLOCK_SKEW)
		return auth_fail(r, AR_CLAIMS, MHD_HTTP_UNAUTHORIZED,
		    "token exp is further ahead than max_token_lifetime");
	if (nbf != NULL && json_number_value(nbf) - AUTH_CLOCK_SKEW > now)
		return auth_fail(r, AR_NOT_YET_VALID, MHD_HTTP_UNAUTHORIZED, "token not yet valid");
	if ((named = auth_claims_channel(claims, channel, len)) == -1)
		return auth_fail(r, AR_CLAIMS, MHD_HTTP_UNAUTHORIZED,
		    "token names no channel (sub or channels claim)");
	if (named == 0)
		return auth_fail(r, AR_CHANNEL, MHD_HTTP_FORBIDDEN, "token does not grant this channel");
	if (sid != NULL)
		snprintf(r->session, sizeof r->session, "%s", json_string_value(sid));
	return 0;
}

/* Appends name to the n NUL-separated names in buf (at *used) unless listed or invalid. */
static void
auth_add_account(char *buf, size_t len, size_t *used, unsigned *n, unsigned max, json_t *v)
{
	const char *name = json_string_value(v), *a = buf;
	size_t k = json_string_length(v);
	unsigned i;

	if (name == NULL || *n == max || !names_channel_valid(name, k) || *used + k + 1 > len)
		return;
	for (i = 0; i < *n; i++, a += strlen(a) + 1)
		if (strcmp(a, name) == 0)
			return;
	memcpy(buf + *used, name, k + 1);
	*used += k + 1;
	(*n)++;
}

/*
 * The JMAP endpoint without ?account=: every channel a subscriber token with a good
 * signature names (sub, then the channels claim's entries; at most max, valid names
 * only, each once) into buf, NUL-separated. Returns how many, or -1 (no token, a bad
 * one); the caller then checks the whole token for each with auth_subscriber, which
 * counts and words a refusal.
 */
int
auth_token_accounts(struct MHD_Connection *conn, char *buf, size_t len, unsigned max)
{
	struct auth_result r;
	const char *tok;
	jwt_t *j = NULL;
	json_t *claims, *list, *v;
	char *text;
	size_t used = 0, i;
	unsigned n = 0;

	if (auth.mode != AUTH_TOKEN || (tok = auth_token_find(conn, &r)) == NULL ||
	    strlen(tok) > (size_t)opt(OPT_MAX_TOKEN_SIZE) || !auth_token_shape(tok) ||
	    auth_token_alg(tok, &r) == -1 || jwt_decode(&j, tok, (const unsigned char *)auth.token_secret,
	    (int)auth.token_secret_len) != 0 || jwt_get_alg(j) != JWT_ALG_HS256) {
		jwt_free(j);
		return -1;
	}
	text = jwt_get_grants_json(j, NULL);
	jwt_free(j);
	claims = text != NULL ? json_loads(text, 0, NULL) : NULL;
	free(text);
	auth_add_account(buf, len, &used, &n, max, json_object_get(claims, "sub"));
	list = json_object_get(claims, "channels");
	json_array_foreach(list, i, v)
		auth_add_account(buf, len, &used, &n, max, v);
	json_decref(claims);
	return (int)n;
}

/* Verifies a token for a channel: size, shape, alg, signature, then claims (no I/O: fuzzed). */
int
auth_token_check(const char *tok, const char *channel, size_t len, struct auth_result *r)
{
	jwt_t *j = NULL;
	char *text;
	json_t *claims;
	int ret;

	if (strlen(tok) > (size_t)opt(OPT_MAX_TOKEN_SIZE))
		return auth_fail(r, AR_TOO_LARGE, MHD_HTTP_UNAUTHORIZED, "token too large");
	if (!auth_token_shape(tok))
		return auth_fail(r, AR_MALFORMED, MHD_HTTP_UNAUTHORIZED, "malformed token");
	if (auth_token_alg(tok, r) == -1)
		return -1;
	if (jwt_decode(&j, tok, (const unsigned char *)auth.token_secret,
	    (int)auth.token_secret_len) != 0 || jwt_get_alg(j) != JWT_ALG_HS256) {
		jwt_free(j);
		return auth_fail(r, AR_SIGNATURE, MHD_HTTP_UNAUTHORIZED, "bad token signature");
	}
	text = jwt_get_grants_json(j, NULL);
	jwt_free(j);
	claims = text != NULL ? json_loads(text, 0, NULL) : NULL;
	free(text);
	if (!json_is_object(claims))
		ret = auth_fail(r, AR_MALFORMED, MHD_HTTP_UNAUTHORIZED, "malformed token");
	else
		ret = auth_claims(claims, channel, len, r);
	json_decref(claims);
	return ret;
}

/*
 * Decides whether a GET /events/<channel> may go on under the auth mode. Returns 0
 * (r->session holds the token's sid, or "") or -1 with r filled; the refusal is
 * counted and logged here, the caller sends it with auth_refuse.
 */
int
auth_subscriber(struct MHD_Connection *conn, const char *channel, size_t len,
    struct auth_result *r)
{
	const char *tok;

	memset(r, 0, sizeof *r);
	if (auth.mode == AUTH_PROXY && !cidr_list_match_addr(&auth.trusted, auth_peer(conn)))
		auth_fail(r, AR_UNTRUSTED_PEER, MHD_HTTP_FORBIDDEN,
		    "subscribe only through a trusted proxy");
	else if (auth.mode == AUTH_UPSTREAM)
		auth_fail(r, AR_UPSTREAM_ONLY, MHD_HTTP_FORBIDDEN,
		    "auth upstream serves the JMAP endpoint only");
	else if (auth.mode != AUTH_TOKEN)
		return 0;
	else if ((tok = auth_token_find(conn, r)) != NULL &&
	    auth_token_check(tok, channel, len, r) == 0)
		return 0;
	auth_note(conn, r, "subscribe to ", channel, len);
	return -1;
}

/*
 * The token a subscribe request that auth_subscriber let through presented (borrowed
 * from MHD), or NULL when the auth mode asks for none: a kept long-poll connection
 * checks it again at every poll it reads itself (repoll.c).
 */
const char *
auth_subscriber_token(struct MHD_Connection *conn)
{
	struct auth_result r;

	return auth.mode == AUTH_TOKEN ? auth_token_find(conn, &r) : NULL;
}

/* --- publishers ------------------------------------------------------------------ */

/* Compares a presented secret with ours in time that depends only on our length. */
static bool
auth_secret_equal(const char *given, const char *secret, size_t slen)
{
	size_t glen = strlen(given), i;
	unsigned char d = glen != slen;

	for (i = 0; i < slen; i++)
		d |= (unsigned char)((i < glen ? (unsigned char)given[i] : 0) ^ (unsigned char)secret[i]);
	return d == 0;
}

/* A loopback peer that carries no proxy header: the publisher runs on this host. */
static bool
auth_local(struct MHD_Connection *conn)
{
	static const char *const relayed[] = { "X-Forwarded-For", "X-Real-IP", "Forwarded" };
	size_t i;

	for (i = 0; i < sizeof relayed / sizeof relayed[0]; i++)
		if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, relayed[i]) != NULL)
			return false;
	return cidr_is_loopback(auth_peer(conn));
}

/*
 * Decides whether a publish or operations request may go on: the Bearer publish
 * secret when one is set, otherwise a local peer. Returns 0, or -1 with r filled
 * (counted and logged here).
 */
int
auth_publisher(struct MHD_Connection *conn, struct auth_result *r)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");

	memset(r, 0, sizeof *r);
	if (auth.publish_secret_len > 0) {
		if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
			auth_fail(r, AR_PUBLISH_SECRET, MHD_HTTP_UNAUTHORIZED,
			    "publish secret required (Authorization: Bearer)");
		else if (!auth_secret_equal(h + 7, auth.publish_secret, auth.publish_secret_len))
			auth_fail(r, AR_PUBLISH_SECRET, MHD_HTTP_UNAUTHORIZED, "wrong publish secret");
		else
			return 0;
	} else if (auth_local(conn)) {
		return 0;
	} else {
		auth_fail(r, AR_PUBLISH_NOT_LOCAL, MHD_HTTP_FORBIDDEN,
		    "publishing needs publish_secret, or a loopback peer when none is set");
	}
	auth_note(conn, r, "publish", NULL, 0);
	return -1;
}

/* --- minting --------------------------------------------------------------------- */

/* Prints a token for channel (and session) valid for ttl seconds; 0 or -1 (reported). */
int
auth_mint(const char *channel, const char *session, long long ttl, FILE *out)
{
	jwt_t *j = NULL;
	char *tok = NULL;
	long now = (long)time(NULL);

	if (!names_channel_valid(channel, strlen(channel)) ||
	    (session != NULL && !names_id_valid(session, strlen(session))) ||
	    ttl < 1 || ttl > AUTH_TTL_MAX || ttl > opt(OPT_MAX_TOKEN_LIFETIME)) {
		fprintf(stderr, "ssepush-broker: --mint-token needs a valid channel, session and --ttl of 1 to %lld seconds (max_token_lifetime)\n",
		    opt(OPT_MAX_TOKEN_LIFETIME) < AUTH_TTL_MAX ? opt(OPT_MAX_TOKEN_LIFETIME) : AUTH_TTL_MAX);
		return -1;
	}
	if (auth.token_secret_len == 0) {
		fprintf(stderr, "ssepush-broker: --mint-token needs token_secret or token_secret_file\n");
		return -1;
	}
	if (jwt_new(&j) != 0 ||
	    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)auth.token_secret,
	    (int)auth.token_secret_len) != 0 ||
	    jwt_add_grant(j, "sub", channel) != 0 ||
	    (session != NULL && jwt_add_grant(j, "sid", session) != 0) ||
	    jwt_add_grant_int(j, "iat", now) != 0 ||
	    jwt_add_grant_int(j, "exp", now + (long)ttl) != 0 ||
	    (tok = jwt_encode_str(j)) == NULL) {
		jwt_free(j);
		fprintf(stderr, "ssepush-broker: cannot mint a token\n");
		return -1;
	}
	fprintf(out, "%s\n", tok);
	free(tok);
	jwt_free(j);
	return 0;
}
