/*
 * GET <jmap_eventsource_path> (default /jmap/eventsource/): the JMAP push endpoint of
 * RFC 8620 section 7.3. Reads types, closeafter and ping, finds the accounts (a channel
 * is an account id: every account the credentials reach, or ?account= alone) and checks
 * the credentials for each, then opens a stream carrying a jmap_sub (jmap_stream.c)
 * through subscribe.c like /events/: an ordinary one on the account's channel, or, for
 * several accounts, one fed by a leg on each account's channel (stream.h). Under auth upstream the credentials go to the JMAP
 * server (upstream.c) and the request waits, suspended, for its answer.
 */
#include "broker.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "jmap.h"
#include "log.h"
#include "names.h"
#include "stream.h"
#include "upstream.h"

/* A request waiting for the upstream's answer (its req_cls). */
struct jmap_wait {
	enum req_kind kind;		/* first: REQ_UPSTREAM */
	atomic_uint refs;		/* the request's, and the lookup's until it answers */
	atomic_uchar wait;		/* the answer and the handler: whichever comes last goes on */
	bool suspended;
	struct MHD_Connection *conn;
	struct upstream_result r;	/* written by the answer, read after it */
};

/*
 * RFC 8620 section 7.3 lets a server clamp ?ping= only to a minimum of at most 30 s and
 * a maximum of at least 300 s. Other bounds are allowed (tests use 1 to 3 s), but a JMAP
 * client may then get pings it did not ask for: said once, as a warning.
 */
void
jmap_check_config(const struct config *c)
{
	if (*config_str(c, OPT_JMAP_EVENTSOURCE_PATH) == '\0')
		return;
	if (config_int(c, OPT_PING_MIN) > 30 || config_int(c, OPT_PING_MAX) < 300)
		log_warn("ping_min %lld / ping_max %lld: RFC 8620 wants ping_min at most 30 and ping_max at least 300 for the JMAP endpoint (%s)",
		    config_int(c, OPT_PING_MIN), config_int(c, OPT_PING_MAX),
		    config_str(c, OPT_JMAP_EVENTSOURCE_PATH));
}

/* Reads the query into o (types into *types, new, when types is not NULL); NULL or the 400 reason. */
static const char *
jmap_parse(struct MHD_Connection *conn, struct stream_opts *o, char **types)
{
	const char *closeafter = request_arg(conn, "closeafter");
	char *t;

	if (subscribe_ping_arg(request_arg(conn, "ping"), &o->ping) == -1)
		return "invalid ping: seconds expected";
	if (closeafter != NULL && strcmp(closeafter, "state") != 0 && strcmp(closeafter, "no") != 0)
		return "invalid closeafter: state or no expected";
	o->longpoll = closeafter != NULL && strcmp(closeafter, "state") == 0;
	if ((t = jmap_types_parse(request_arg(conn, "types"))) == NULL)
		return "invalid types: \"*\" or a comma list of type names expected";
	if (types != NULL)
		*types = t;
	else
		free(t);
	return NULL;
}

/* Opens the stream of an authorised request for n accounts (NUL-separated ids). */
static enum MHD_Result
jmap_open(struct MHD_Connection *conn, const char *version, const char *accounts, unsigned n,
    void **req_cls)
{
	struct stream_opts o = { .conn = conn, .fd = -1 };
	char *types = NULL;
	const char *why;

	if ((why = jmap_parse(conn, &o, &types)) != NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, why);
	o.jmap = jmap_sub_new(accounts, n, types,
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID"));	/* steals types */
	if (o.jmap == NULL)
		return MHD_NO;
	if (n > 1)
		return subscribe_open_accounts(conn, version, &o, req_cls);
	return subscribe_open(conn, version, accounts, strlen(accounts), &o, NULL, req_cls);
}

/*
 * The accounts a credential's session lets this stream follow, into buf (NUL-separated;
 * returns how many, 0 for none): ?account= alone when the session lists it, else every
 * account of the session, the primary mail account first (RFC 8620 section 7.3: one
 * stream for all of them).
 */
static unsigned
jmap_pick_accounts(struct MHD_Connection *conn, const struct upstream_result *r, char *buf)
{
	const char *want = request_arg(conn, "account"), *a;
	size_t used = 0, k;
	unsigned i, n = 0;

	if (r->primary[0] != '\0' && want == NULL) {
		for (i = 0, a = r->accounts; i < r->naccounts; i++, a += strlen(a) + 1)
			if (strcmp(a, r->primary) == 0) {
				memcpy(buf, a, (used = strlen(a) + 1));
				n = 1;
			}
	}
	for (i = 0, a = r->accounts; i < r->naccounts && n < JMAP_ACCOUNTS_MAX; i++, a += k + 1) {
		k = strlen(a);
		if ((want != NULL && strcmp(a, want) != 0) || (n > 0 && strcmp(a, buf) == 0))
			continue;
		memcpy(buf + used, a, k + 1);
		used += k + 1;
		n++;
	}
	return n;
}

/* Answers after the upstream's verdict: a refusal, or the stream. */
static enum MHD_Result
jmap_after_upstream(struct MHD_Connection *conn, const char *version,
    const struct upstream_result *r, void **req_cls)
{
	char accounts[sizeof r->accounts];
	unsigned n;

	if (r->status == 401) {
		atomic_fetch_add(&counters.auth_failures, 1);
		return reply_refused(conn, MHD_HTTP_UNAUTHORIZED,
		    "the JMAP server did not accept these credentials", "Basic realm=\"jmap\"");
	}
	if (r->status != 200)
		return reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "the JMAP server could not check the credentials (upstream unavailable)");
	if ((n = jmap_pick_accounts(conn, r, accounts)) == 0) {
		atomic_fetch_add(&counters.auth_failures, 1);
		return reply_error(conn, MHD_HTTP_FORBIDDEN, "these credentials may not read that account");
	}
	return jmap_open(conn, version, accounts, n, req_cls);
}

/* Drops a reference to a wait; the last frees it. */
static void
jmap_wait_unref(struct jmap_wait *w)
{
	if (atomic_fetch_sub(&w->refs, 1) == 1)
		free(w);
}

/* The upstream's answer (its thread): the last of it and the handler to finish goes on. */
static void
jmap_upstream_done(void *arg, const struct upstream_result *r)
{
	struct jmap_wait *w = arg;

	w->r = *r;
	if (atomic_fetch_sub(&w->wait, 1) == 1)
		conn_resume(w->conn);
	jmap_wait_unref(w);
}

/* Asks the upstream; answers now (cached) or suspends until jmap_upstream_done. */
static enum MHD_Result
jmap_start_upstream(struct MHD_Connection *conn, const char *version, void **req_cls)
{
	struct jmap_wait *w = calloc(1, sizeof *w);
	struct upstream_result r;
	enum MHD_Result ret;

	if (w == NULL)
		return MHD_NO;
	w->kind = REQ_UPSTREAM;
	w->conn = conn;
	atomic_init(&w->refs, 2);
	atomic_init(&w->wait, 2);
	if (upstream_lookup(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization"),
	    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Cookie"), &r, jmap_upstream_done,
	    w) == UPSTREAM_ANSWERED) {
		free(w);
		return jmap_after_upstream(conn, version, &r, req_cls);
	}
	*req_cls = w;	/* http_completed drops the request's reference */
	if (atomic_load(&w->wait) > 1) {
		w->suspended = true;
		MHD_suspend_connection(conn);
	}
	if (atomic_fetch_sub(&w->wait, 1) != 1)
		return MHD_YES;	/* the answer resumes it */
	if (w->suspended) {
		conn_resume(conn);
		return MHD_YES;
	}
	*req_cls = NULL;
	r = w->r;
	jmap_wait_unref(w);
	ret = jmap_after_upstream(conn, version, &r, req_cls);
	return ret;
}

/* The access handler runs again once the upstream answered. */
enum MHD_Result
jmap_resumed(struct MHD_Connection *conn, const char *version, void **req_cls)
{
	struct jmap_wait *w = *req_cls;
	struct upstream_result r = w->r;

	*req_cls = NULL;
	jmap_wait_unref(w);
	return jmap_after_upstream(conn, version, &r, req_cls);
}

/* The request is over while it waited (or just after): drops its reference. */
void
jmap_completed(void *req_cls)
{
	jmap_wait_unref(req_cls);
}

/*
 * The handler. The query is checked first. Under auth upstream, the accounts come
 * from the credentials' session; otherwise it is ?account= (auth token: by default
 * every account the token names, its sub and its channels entries), which the
 * credentials must allow as for /events/<account>.
 */
enum MHD_Result
jmap_start(struct MHD_Connection *conn, const char *version, void **req_cls)
{
	const char *account = request_arg(conn, "account"), *why, *a;
	struct stream_opts o = { .conn = conn, .fd = -1 };
	char named[JMAP_ACCOUNTS_MAX * (NAMES_CHANNEL_MAX + 1)];
	struct auth_result ar;
	unsigned i, n = 1;
	int k;
	size_t len;

	if ((why = jmap_parse(conn, &o, NULL)) != NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, why);
	if (account != NULL && !names_channel_valid(account, strlen(account)))
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "invalid account id");
	if (opt(OPT_AUTH) == AUTH_UPSTREAM)
		return jmap_start_upstream(conn, version, req_cls);
	/* auth token: every account the token names when the client names none. */
	if (account == NULL && opt(OPT_AUTH) == AUTH_TOKEN &&
	    (k = auth_token_accounts(conn, named, sizeof named, JMAP_ACCOUNTS_MAX)) > 0) {
		account = named;
		n = (unsigned)k;
	}
	if (account == NULL && opt(OPT_AUTH) == AUTH_TOKEN)
		account = "";	/* auth_subscriber words the refusal of the token */
	else if (account == NULL)
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "no account: ?account=<account id> expected");
	for (i = 0, a = account; i < n; i++, a += len + 1) {
		len = strlen(a);
		if (auth_subscriber(conn, a, len, &ar) == -1)
			return auth_refuse(conn, &ar);
	}
	if (*account == '\0')	/* a token whose sub is "": no account */
		return reply_error(conn, MHD_HTTP_BAD_REQUEST, "no account: ?account=<account id> expected");
	return jmap_open(conn, version, account, n, req_cls);
}
