/*
 * The pusher's HTTP listener (metrics_listen, off by default): GET /metrics, the
 * Prometheus text stats.c writes, and GET /healthz, 200 while Redis takes publishes and
 * 503 with the reason while it does not. It is libevent's evhttp on the daemon's one
 * event base: no thread, no other library. The broker's rule for its operations
 * endpoints applies: with metrics_secret (or metrics_secret_file) /metrics needs
 * "Authorization: Bearer <secret>"; without one only a loopback peer that carries no
 * proxy header gets it; /healthz is open to load balancers. It owns no counter.
 */
#include "pusher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <jansson.h>

#include "log.h"
#include "secret.h"
#include "redis_conn.h"

static struct evhttp *http;
static struct evhttp_bound_socket *bound;
static struct event *resume_ev;		/* re-enables accept() after an EMFILE pause */
static char secret[PUSHER_SECRET_MAX + 2];
static size_t secret_len;		/* 0: no secret, loopback peers only */
static struct ratelimit rl_accept, rl_refused;

/* Reports "WHERE: NAME: message" for directive i of c (WHERE: file:line or command line). */
__attribute__((format(printf, 6, 7)))
static void
metrics_report(const struct config *c, const char *path, int i, config_error_fn *report, void *arg,
    const char *fmt, ...)
{
	char msg[512], line[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (c->origin[i] == CONFIG_FILE && path != NULL)
		snprintf(line, sizeof line, "%s:%u: %s: %s", path, c->line[i], c->table[i].name, msg);
	else
		snprintf(line, sizeof line, "command line: %s: %s", c->table[i].name, msg);
	report(arg, line);
}

/* Reads a one-line secret file (a trailing CR/LF dropped) into secret; 0 or -1 with err. */
static int
metrics_read_secret(const char *file, char *err, size_t errlen)
{
	return secret_read_file(file, "the pusher", secret, PUSHER_SECRET_MAX, PUSHER_SECRET_MIN,
	    &secret_len, err, errlen);
}

/*
 * Checks and takes the metrics secret of c (path: the config file, or NULL): one of
 * metrics_secret and metrics_secret_file at most, a secret file (or a config file that
 * holds the secret itself) that others cannot read. Reports each error; returns their
 * number. Runs at start-up and for -n.
 */
int
metrics_check(const struct config *c, const char *path, config_error_fn *report, void *arg)
{
	const char *inline_secret = config_str(c, POPT_METRICS_SECRET);
	const char *file = config_str(c, POPT_METRICS_SECRET_FILE);
	char err[512];

	secret_len = 0;
	if (*inline_secret != '\0' && *file != '\0') {
		metrics_report(c, path, POPT_METRICS_SECRET_FILE, report, arg, "set metrics_secret or metrics_secret_file, not both");
		return 1;
	}
	if (*file != '\0' && metrics_read_secret(file, err, sizeof err) == -1) {
		metrics_report(c, path, POPT_METRICS_SECRET_FILE, report, arg, "%s", err);
		return 1;
	}
	if (*inline_secret != '\0') {
		if (c->origin[POPT_METRICS_SECRET] == CONFIG_FILE && path != NULL &&
		    secret_file_mode_ok(path, "the pusher", err, sizeof err) == -1) {
			metrics_report(c, path, POPT_METRICS_SECRET, report, arg, "%s", err);
			return 1;
		}
		secret_len = strlen(inline_secret);
		memcpy(secret, inline_secret, secret_len + 1);
	}
	return 0;
}

/* Whether a peer address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
static bool
metrics_loopback(const struct sockaddr *sa)
{
	const struct in6_addr *a;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET)
		return ntohl(((const struct sockaddr_in *)(const void *)sa)->sin_addr.s_addr) >> 24 == 127;
	if (sa->sa_family != AF_INET6)
		return false;
	a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* Compares a given secret with the configured one in time that depends only on the latter's length. */
static bool
metrics_secret_equal(const char *given)
{
	size_t glen = strlen(given), i;
	unsigned char d = glen != secret_len;

	for (i = 0; i < secret_len; i++)
		d |= (unsigned char)((i < glen ? (unsigned char)given[i] : 0) ^ (unsigned char)secret[i]);
	return d == 0;
}

/*
 * Sends an answer with its content type and body (drained). A HEAD answer gets the
 * body's Content-Length and no body (evhttp 2.1 would send it).
 */
static void
metrics_reply(struct evhttp_request *req, int code, const char *reason, const char *type, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char len[24];

	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(len, sizeof len, "%zu", evbuffer_get_length(body));
		evhttp_add_header(h, "Content-Length", len);
		evbuffer_drain(body, evbuffer_get_length(body));
	}
	evhttp_send_reply(req, code, reason, body);
}

/* Sends {"error": msg} (or {"status":"ok"} for a 200) as JSON. */
static void
metrics_reply_json(struct evhttp_request *req, int code, const char *reason, const char *msg)
{
	struct evbuffer *body = evbuffer_new();
	json_t *j = code == 200 ? json_pack("{s:s}", "status", "ok") : json_pack("{s:s}", "error", msg);
	char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

	if (body != NULL && text != NULL && evbuffer_add(body, text, strlen(text)) == 0)
		metrics_reply(req, code, reason, "application/json", body);
	else
		evhttp_send_error(req, 500, "Internal Server Error");
	free(text);
	json_decref(j);
	evbuffer_free(body);
}

/*
 * Whether this request may read /metrics: the Bearer secret when one is set, otherwise
 * a loopback peer without X-Forwarded-For, X-Real-IP or Forwarded (a proxy on this host
 * must not make the world local). Answers the refusal itself (401 or 403).
 */
static bool
metrics_allowed(struct evhttp_request *req)
{
	static const char *const relayed[] = { "X-Forwarded-For", "X-Real-IP", "Forwarded" };
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *auth = evhttp_find_header(in, "Authorization"), *why;
	char *peer = NULL;
	ev_uint16_t peer_port = 0;
	uint64_t n;
	size_t i;
	bool local;

	evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &peer_port);
	if (secret_len > 0) {
		if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0 && metrics_secret_equal(auth + 7))
			return true;
		why = auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0 ?
		    "metrics secret required (Authorization: Bearer)" : "wrong metrics secret";
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
		metrics_reply_json(req, 401, "Unauthorized", why);
	} else {
		local = metrics_loopback(evhttp_connection_get_addr(evhttp_request_get_connection(req)));
		for (i = 0; i < sizeof relayed / sizeof relayed[0]; i++)
			if (evhttp_find_header(in, relayed[i]) != NULL)
				local = false;
		if (local)
			return true;
		why = "/metrics needs metrics_secret, or a loopback peer when none is set";
		metrics_reply_json(req, 403, "Forbidden", why);
	}
	if (ratelimit_pass(&rl_refused, pusher_now_ms(), &n))
		log_warn("metrics: refused /metrics to %s: %s (%" PRIu64 " such lines suppressed)",
		    peer != NULL ? peer : "?", why, n);
	return false;
}

/* GET /metrics. */
static void
metrics_on_metrics(struct evhttp_request *req)
{
	struct evbuffer *body;

	if (!metrics_allowed(req))
		return;
	if ((body = evbuffer_new()) == NULL || stats_prometheus(body) == -1)
		evhttp_send_error(req, 500, "Internal Server Error");
	else
		metrics_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
	evbuffer_free(body);
}

/* GET /healthz: whether change events reach Redis now. */
static void
metrics_on_healthz(struct evhttp_request *req)
{
	char why[REDIS_CONN_WHY_MAX + 16];

	if (pub_up()) {
		metrics_reply_json(req, 200, "OK", NULL);
		return;
	}
	snprintf(why, sizeof why, "redis: %s", pub_error());
	metrics_reply_json(req, 503, "Service Unavailable", why);
}

/* Routes one request; anything but GET or HEAD of /metrics and /healthz is refused. */
static void
metrics_on_request(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	bool known;

	(void)arg;
	path = path != NULL ? path : "";
	known = strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0;
	if (!known) {
		metrics_reply_json(req, 404, "Not Found", "not found (GET /metrics or /healthz)");
	} else if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		metrics_reply_json(req, 405, "Method Not Allowed", "method not allowed (GET or HEAD)");
	} else if (path[1] == 'm') {
		metrics_on_metrics(req);
	} else {
		metrics_on_healthz(req);
	}
}

/* accept() failed (EMFILE and the like): pause it instead of spinning on the readable socket. */
static void
metrics_on_accept_error(struct evconnlistener *l, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { PUSHER_ACCEPT_PAUSE_MS / 1000, (PUSHER_ACCEPT_PAUSE_MS % 1000) * 1000 };
	uint64_t n;

	(void)arg;
	evconnlistener_disable(l);
	event_add(resume_ev, &tv);
	if (ratelimit_pass(&rl_accept, pusher_now_ms(), &n))
		log_warn("metrics: accept: %s: paused for %d ms (%" PRIu64 " such lines suppressed)",
		    evutil_socket_error_to_string(err), PUSHER_ACCEPT_PAUSE_MS, n);
}

/* The accept() pause is over. */
static void
metrics_on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (bound != NULL)
		evconnlistener_enable(evhttp_bound_socket_get_listener(bound));
}

/* The address the listener got (the kernel's port for port 0), as host:port or [v6]:port. */
static void
metrics_describe(char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
			port = ntohs(s6->sin6_port);
		} else {
			const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
			port = ntohs(s4->sin_port);
		}
	}
	snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);
}

/* Binds metrics_listen when it is set and logs "metrics: listening on ADDR"; 0 or -1 (logged). */
int
metrics_start(void)
{
	const char *v = popt_str(POPT_METRICS_LISTEN);
	char host[64], err[160], addr[INET6_ADDRSTRLEN + 8];
	unsigned port;

	if (*v == '\0')
		return 0;
	if (options_split_listen(v, host, sizeof host, &port, err, sizeof err) == -1) {
		log_error("metrics_listen: %s", err);
		return -1;
	}
	if ((http = evhttp_new(pusher_base)) == NULL ||
	    (resume_ev = evtimer_new(pusher_base, metrics_on_resume, NULL)) == NULL) {
		log_error("metrics_listen %s: out of memory", v);
		return -1;
	}
	evhttp_set_timeout(http, PUSHER_HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(http, PUSHER_HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(http, PUSHER_HTTP_MAX_BODY);
	/* Every method is parsed, so that the refusal is ours (405 with JSON), not evhttp's page. */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, metrics_on_request, NULL);
	if ((bound = evhttp_bind_socket_with_handle(http, host, (ev_uint16_t)port)) == NULL) {
		log_error("metrics_listen %s: %s", v, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(bound), metrics_on_accept_error);
	metrics_describe(addr, sizeof addr);
	if (secret_len == 0 && strncmp(host, "127.", 4) != 0 && strcmp(host, "::1") != 0)
		log_warn("metrics_listen %s is not a loopback address and no metrics_secret is set: "
		    "/metrics answers 403 to every peer but this host's", v);
	log_info("metrics: listening on %s", addr);
	return 0;
}

/* Closes the listener and every connection it holds (at exit); safe when it never started. */
void
metrics_stop(void)
{
	if (http != NULL)
		evhttp_free(http);
	if (resume_ev != NULL)
		event_free(resume_ev);
	http = NULL;
	bound = NULL;
	resume_ev = NULL;
	explicit_bzero(secret, sizeof secret);
	secret_len = 0;
}
