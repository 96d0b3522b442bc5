/*
 * The libmicrohttpd daemons: `threads` subscriber daemons sharing the listen port
 * through SO_REUSEPORT (each with its own epoll thread and its own, shorter, suspended
 * list, which is what a resume walks), and an optional publish daemon on
 * publish_listen. Owns starting, quiescing and stopping them.
 */
#include "broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"

#define SHARD_BACKLOG 4096
#define SHARD_PUBLISH_MEMORY (32 * 1024)	/* publishers send bigger headers and bodies */
#define SHARD_PUBLISH_MAX 8			/* publish daemons, at most (one per core) */

static struct MHD_Daemon *daemons[BROKER_MAX_SHARDS + SHARD_PUBLISH_MAX];
static MHD_socket quiesced[BROKER_MAX_SHARDS + SHARD_PUBLISH_MAX];	/* closed after the stop */
static int ndaemons, nquiesced;
static struct MHD_Daemon *served;	/* publish_listen's daemon, run by the bus's thread (bus->serve) */
static char listen_addr[80], publish_addr[80];

/* Routes libmicrohttpd's own messages into our log. */
static void
shard_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	size_t n;

	(void)cls;
	vsnprintf(msg, sizeof msg, fmt, ap);
	n = strlen(msg);
	while (n > 0 && msg[n - 1] == '\n')
		msg[--n] = '\0';
	/* A head that filled the pool: 0.9.75's wording (main.c pins the version). */
	if (strstr(msg, "HTTP response code is 431") != NULL)
		request_head_too_large(HEAD_MHD_431);
	else if (strstr(msg, "failed to create response header") != NULL)
		request_head_too_large(HEAD_CLOSED);
	log_debug("libmicrohttpd: %s", msg);
}

/* Parses a checked "host:port" into a socket address. */
static void
shard_parse_addr(const char *spec, struct sockaddr_storage *ss, bool *v6)
{
	char host[64];
	const char *colon = strrchr(spec, ':');
	unsigned port = (unsigned)atoi(colon + 1);
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	snprintf(host, sizeof host, "%.*s", (int)(colon - spec), spec);
	*v6 = host[0] == '[';
	if (*v6) {
		host[strlen(host) - 1] = '\0';
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, host + 1, &in6->sin6_addr);
	} else {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		if (strcmp(host, "*") == 0)
			in->sin_addr.s_addr = htonl(INADDR_ANY);
		else
			inet_pton(AF_INET, host, &in->sin_addr);
	}
}

/* Sets the port of an address (after the kernel picked one for port 0). */
static void
shard_set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* Formats host:port of an address for the ready line. */
static void
shard_format(const struct sockaddr_storage *ss, uint16_t port, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof host);
		snprintf(buf, len, "[%s]:%u", host, port);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof host);
		snprintf(buf, len, "%s:%u", host, port);
	}
}

/*
 * Starts one daemon on addr; serves_publish selects the routes it answers. threaded:
 * with an epoll thread of its own; else whoever runs it calls MHD_run (bus->serve).
 */
static struct MHD_Daemon *
shard_daemon(struct sockaddr_storage *ss, bool v6, bool serves_publish, size_t memory, bool threaded)
{
	unsigned flags = (threaded ? MHD_USE_EPOLL_INTERNAL_THREAD : MHD_USE_EPOLL) | MHD_ALLOW_SUSPEND_RESUME |
	    MHD_USE_ITC | MHD_USE_TURBO | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
	unsigned limit = (unsigned)opt(OPT_MAX_CONNECTIONS) + 64;

	return MHD_start_daemon(flags, 0, conn_accept, NULL,
	    http_access, serves_publish ? (void *)1 : NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, shard_mhd_log, NULL,	/* first, or MHD warns */
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss,
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)SHARD_BACKLOG,
	    MHD_OPTION_CONNECTION_LIMIT, limit,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, memory,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)opt(OPT_REQUEST_TIMEOUT),
	    MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, conn_notify, NULL,
	    MHD_OPTION_UNESCAPE_CALLBACK, request_unescape, NULL,
	    MHD_OPTION_URI_LOG_CALLBACK, request_uri_log, NULL,
	    MHD_OPTION_END);
}

/*
 * Subscriber sockets are accepted with TCP_NODELAY (Linux copies it from the listening
 * socket): a taken stream's writes are the broker's, never corked, and this saves a
 * setsockopt per subscriber. libmicrohttpd assumes an accepted socket has it off; for
 * what it still sends it turns it on (a no-op) or corks, which holds data either way.
 */
static void
shard_nodelay(struct MHD_Daemon *d)
{
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_LISTEN_FD);
	int on = 1;

	if (di == NULL || setsockopt(di->listen_fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
		log_warn("tcp nodelay on the listening socket: %s", strerror(errno));
}

/*
 * Starts `count` daemons on one port; the first one learns the port if it was 0. With
 * count 0, one daemon without a thread, which the bus's thread runs.
 */
static int
shard_start_group(const char *spec, int count, bool serves_publish, size_t memory,
    char *addr, size_t addrlen, bool nodelay)
{
	struct sockaddr_storage ss;
	const union MHD_DaemonInfo *di;
	bool v6, threaded = count > 0;
	uint16_t port = 0;
	int i;

	shard_parse_addr(spec, &ss, &v6);
	for (i = 0; i < (threaded ? count : 1); i++) {
		struct MHD_Daemon *d = shard_daemon(&ss, v6, serves_publish, memory, threaded);
		if (d == NULL) {
			log_error("cannot listen on %s: %s", spec, strerror(errno));
			return -1;
		}
		daemons[ndaemons++] = d;
		if (!threaded) {
			served = d;
			conn_served(d, bus->resumed);	/* before its runner takes it */
			if (bus->serve(d) == -1) {
				log_error("cannot run %s on the %s bus's thread", spec, bus->name);
				return -1;
			}
		}
		if (nodelay)
			shard_nodelay(d);
		if (i == 0) {
			di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
			port = di != NULL ? di->port : 0;
			shard_set_port(&ss, port);
		}
	}
	shard_format(&ss, port, addr, addrlen);
	return 0;
}

/*
 * The subscriber loops: `threads`, or one per core. Since streams are taken over at
 * their 200 (subscribe.c), a loop only sets connections up and serves long-polls, and
 * more loops than cores only add context switches to every accept (16 loops on 2 cores
 * took 1.6x the CPU per new subscriber of 2).
 */
static int
shard_loops(void)
{
	long n = opt(OPT_THREADS);

	if (n == 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > BROKER_MAX_SHARDS ? BROKER_MAX_SHARDS : (int)n;
}

/* Starts every daemon; logs "publish: listening on" for a separate publish daemon. */
int
shard_start_all(void)
{
	const char *pub = opt_str(OPT_PUBLISH_LISTEN);
	bool separate = *pub != '\0';

	if (separate) {
		/*
		 * Standalone, publishing does the direct writes to subscribers, so give it every
		 * core. A bus with a thread of its own (Redis) sends every publish from there and
		 * answers it there: that thread runs the publish daemon too (n = 0).
		 */
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		int n = bus->serve != NULL ? 0 : cpus < 1 ? 1 : cpus > SHARD_PUBLISH_MAX ? SHARD_PUBLISH_MAX : (int)cpus;

		if (shard_start_group(pub, n, true, SHARD_PUBLISH_MEMORY, publish_addr,
		    sizeof publish_addr, false) == -1)
			return -1;
		log_info("publish: listening on %s", publish_addr);
	}
	return shard_start_group(opt_str(OPT_LISTEN), shard_loops(), !separate,
	    (size_t)opt(OPT_CONNECTION_MEMORY), listen_addr, sizeof listen_addr, true);
}

/* The subscriber address with its real port, for the ready line. */
const char *
shard_listen_addr(void)
{
	return listen_addr;
}

/*
 * Stops accepting on every daemon; open connections go on. The listen sockets are
 * closed only after MHD_stop_daemon: a daemon's thread may still be taking its socket
 * out of its epoll set (libmicrohttpd's documented rule, seen as a race by TSan).
 */
void
shard_quiesce_all(void)
{
	int i;
	MHD_socket fd;

	for (i = 0; i < ndaemons; i++)
		if (daemons[i] != served && (fd = MHD_quiesce_daemon(daemons[i])) != MHD_INVALID_SOCKET)
			quiesced[nquiesced++] = fd;
}

static atomic_bool served_due;	/* a connection of it was resumed since the last run */

/* The served daemon's resume hook once the shutdown's thread runs it. */
static void
shard_served_resumed(void)
{
	atomic_store(&served_due, true);
}

/*
 * Runs the daemon the bus's thread ran, once the bus stopped (it quiesced the daemon):
 * what the shutdown answers there goes out, and its last streams end. The shutdown's
 * thread runs it from then on, again while some connection is resumed or has input
 * left (bounded: the next call goes on).
 */
void
shard_run_served(void)
{
	MHD_UNSIGNED_LONG_LONG ms;
	int i;

	if (served == NULL)
		return;
	conn_served(served, shard_served_resumed);
	for (i = 0; i < 64; i++) {
		atomic_store(&served_due, false);
		MHD_run(served);
		if (!atomic_load(&served_due) && (MHD_get_timeout(served, &ms) != MHD_YES || ms > 0))
			break;
	}
}

/* Stops every daemon; the caller resumed and ended every stream first. */
void
shard_stop_all(void)
{
	while (ndaemons > 0)
		MHD_stop_daemon(daemons[--ndaemons]);
	while (nquiesced > 0)
		close(quiesced[--nquiesced]);
}
