/*
 * Connections before they are settled: every connection is "pending" from its accept
 * (or the end of its previous request) until a response is queued for it or it
 * becomes a stream. A pending connection must finish its request (head and body)
 * within header_timeout, counted once, not per byte, or the watcher shuts its socket
 * down; at most max_pending_per_address of them may come from one address (trusted
 * proxies exempt), and all of them together take at most half of the files that no
 * settled connection holds, never less than what max_connections streams leave over.
 * That keeps slowloris-style clients from filling the process's files, and still lets
 * a reconnect storm through: every client of a restarted broker is pending at once,
 * and a fixed reserve (the file limit minus max_connections) refused most of them.
 * Per-connection state is a slot indexed by the socket, so a settled stream costs
 * nothing here.
 */
#include "broker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "cidr.h"
#include "log.h"

#define CONN_SLOTS 65536		/* sockets above this are not limited (the file limit is lower) */
#define CONN_BUCKETS 16384		/* per-address counts, by a keyed hash of the address */

struct conn_slot {
	struct MHD_Connection *conn;	/* NULL when free */
	uint32_t deadline;		/* monotonic second the request must be done by */
	uint16_t bucket;		/* its address's count */
	bool pending, exempt;
};

static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn_slot slots[CONN_SLOTS];	/* under conn_lock */
static uint16_t pending_by_bucket[CONN_BUCKETS];	/* under conn_lock */
static unsigned pending_total;			/* under conn_lock */
static unsigned open_total;			/* connections in slots, under conn_lock */
static unsigned open_peak;			/* most of them since the last memory trim, under conn_lock */
static unsigned adopted_total;			/* taken streams' sockets (no slot: MHD let go), under conn_lock */
static int max_fd;				/* highest slot in use, under conn_lock */
static unsigned pending_cap;			/* set once at start: the floor of the cap */
static unsigned file_budget;			/* set once at start: files connections may use */
static uint64_t hash_key;			/* set once at start */
static const struct cidr_list *trusted;		/* set once at start: exempt peers */
static _Atomic(struct MHD_Daemon *) served;	/* set once at start: the daemon the bus's thread runs */
static void (*_Atomic served_resumed)(void);

/* Sizes the global cap from the file limit (streams keep max_connections of the files); proxies are exempt. */
void
conn_init(const struct cidr_list *proxies)
{
	struct rlimit rl;
	long long nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long long)rl.rlim_cur : 1024;
	long long cap = nofile - opt(OPT_MAX_CONNECTIONS) - 64;

	trusted = proxies;
	pending_cap = cap < 256 ? 256 : cap > 1000000 ? 1000000 : (unsigned)cap;
	file_budget = nofile - 64 < 256 ? 256 : nofile - 64 > 4000000 ? 4000000 : (unsigned)(nofile - 64);
	hash_key = (uint64_t)clock_ns() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)random();
}

/* A keyed FNV-1a of the address bytes, so that nobody can aim at another address's count. */
static uint16_t
conn_bucket(const struct sockaddr *sa)
{
	const unsigned char *p;
	size_t n, i;
	uint64_t h = 1469598103934665603ULL ^ hash_key;

	if (sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET6) {
		p = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		n = 16;
	} else {
		p = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		n = 4;
	}
	for (i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return (uint16_t)((h ^ (h >> 32)) % CONN_BUCKETS);
}

/* Trusted proxies hold many connections for many clients: no per-address limit for them. */
static bool
conn_exempt(const struct sockaddr *sa)
{
	return sa != NULL && trusted != NULL && trusted->n > 0 && cidr_list_match_addr(trusted, sa);
}

/* Whether one more pending connection from this bucket fits (conn_lock held). */
static bool
conn_room(uint16_t bucket)
{
	unsigned settled = open_total - pending_total + adopted_total;
	unsigned spare = file_budget > settled ? (file_budget - settled) / 2 : 0;

	return pending_total < (spare > pending_cap ? spare : pending_cap) &&
	    pending_by_bucket[bucket] < (unsigned)opt(OPT_MAX_PENDING_PER_ADDRESS);
}

/* libmicrohttpd's accept policy: a new connection is closed at once when there is no room. */
enum MHD_Result
conn_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	bool ok;

	(void)cls;
	(void)addrlen;
	if (conn_exempt(addr))
		return MHD_YES;
	pthread_mutex_lock(&conn_lock);
	ok = conn_room(conn_bucket(addr));
	pthread_mutex_unlock(&conn_lock);
	if (!ok)
		atomic_fetch_add(&counters.pending_refused, 1);
	return ok ? MHD_YES : MHD_NO;
}

/* The slot of a connection's socket, or -1. */
static int
conn_fd(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

	return ci != NULL && ci->connect_fd >= 0 && ci->connect_fd < CONN_SLOTS ? ci->connect_fd : -1;
}

/* Makes a slot pending with a fresh deadline (conn_lock held). */
static void
conn_make_pending(struct conn_slot *s)
{
	s->deadline = clock_sec() + (uint32_t)opt(OPT_HEADER_TIMEOUT);
	if (s->pending)
		return;
	s->pending = true;
	if (!s->exempt) {
		pending_by_bucket[s->bucket]++;
		pending_total++;
	}
}

/* Settles a slot (conn_lock held). */
static void
conn_settle_slot(struct conn_slot *s)
{
	if (!s->pending)
		return;
	s->pending = false;
	if (!s->exempt) {
		pending_by_bucket[s->bucket]--;
		pending_total--;
	}
}

/* libmicrohttpd's connection notifications: counts them, and tracks the pending ones. */
void
conn_notify(void *cls, struct MHD_Connection *conn, void **socket_cls,
    enum MHD_ConnectionNotificationCode toe)
{
	const union MHD_ConnectionInfo *ci;
	int fd = conn_fd(conn);
	struct conn_slot *s;

	(void)cls;
	(void)socket_cls;
	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
		atomic_fetch_add(&counters.connections, 1);
	else
		atomic_fetch_sub(&counters.connections, 1);
	if (fd < 0)
		return;
	pthread_mutex_lock(&conn_lock);
	s = &slots[fd];
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		if (s->conn == NULL && ++open_total > open_peak)
			open_peak = open_total;
		s->conn = conn;
		s->pending = false;
		s->bucket = conn_bucket(ci != NULL ? ci->client_addr : NULL);
		s->exempt = ci != NULL && conn_exempt(ci->client_addr);
		conn_make_pending(s);
		if (fd > max_fd)
			max_fd = fd;
	} else if (s->conn == conn) {
		conn_settle_slot(s);
		s->conn = NULL;
		open_total--;
	}
	pthread_mutex_unlock(&conn_lock);
}

/* A response was queued or a stream began: the request is no longer pending. */
void
conn_settled(struct MHD_Connection *conn)
{
	int fd = conn_fd(conn);

	if (fd < 0)
		return;
	pthread_mutex_lock(&conn_lock);
	if (slots[fd].conn == conn)
		conn_settle_slot(&slots[fd]);
	pthread_mutex_unlock(&conn_lock);
}

/* A request ended on a connection that stays open: the next one has header_timeout to arrive. */
void
conn_request_done(struct MHD_Connection *conn)
{
	int fd = conn_fd(conn);

	if (fd < 0)
		return;
	pthread_mutex_lock(&conn_lock);
	if (slots[fd].conn == conn)
		conn_make_pending(&slots[fd]);
	pthread_mutex_unlock(&conn_lock);
}

/*
 * Whether at least drop of the connections libmicrohttpd held at its peak since the
 * last yes are gone (closed, or taken over as streams: each left a freed
 * connection_memory pool behind); the peak is kept at every accept, so a burst that
 * comes and goes between two of the watcher's looks still counts.
 */
bool
conn_trim_due(unsigned drop)
{
	bool due;

	pthread_mutex_lock(&conn_lock);
	due = open_peak - open_total >= drop;
	if (due)
		open_peak = open_total;
	pthread_mutex_unlock(&conn_lock);
	return due;
}

/*
 * A taken stream holds its socket (delta 1) or closed it (-1): still a file spent, and
 * still an open connection (MHD's close notification took its own count off).
 */
void
conn_adopt(int delta)
{
	if (delta > 0)
		atomic_fetch_add(&counters.connections, 1);
	else
		atomic_fetch_sub(&counters.connections, 1);
	pthread_mutex_lock(&conn_lock);
	adopted_total = (unsigned)((int)adopted_total + delta);
	pthread_mutex_unlock(&conn_lock);
}

/* Names the daemon that has no thread of its own (bus->serve) and who runs it on a resume. */
void
conn_served(struct MHD_Daemon *d, void (*resumed)(void))
{
	atomic_store(&served_resumed, resumed);
	atomic_store(&served, d);
}

/*
 * Resumes a suspended connection: every resume of the broker goes through here. A
 * daemon with a thread of its own is woken by libmicrohttpd itself; one without has no
 * inter-thread channel (libmicrohttpd drops MHD_USE_ITC there), so its runner is told.
 */
void
conn_resume(struct MHD_Connection *conn)
{
	struct MHD_Daemon *d = atomic_load_explicit(&served, memory_order_acquire);
	const union MHD_ConnectionInfo *ci = d != NULL ? MHD_get_connection_info(conn, MHD_CONNECTION_INFO_DAEMON) : NULL;
	bool of_served = ci != NULL && ci->daemon == d;

	/* Asked first: once resumed, the connection is its loop's again and may be gone. */
	MHD_resume_connection(conn);
	if (of_served)
		atomic_load(&served_resumed)();
}

/* Queues a response and settles the connection: every answer of the broker goes through here. */
enum MHD_Result
conn_queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r)
{
	enum MHD_Result ret = MHD_queue_response(conn, status, r);

	if (ret == MHD_YES)
		conn_settled(conn);
	return ret;
}

/*
 * The watcher's check: shuts down the socket of every pending connection past its
 * deadline, so libmicrohttpd sees the end and closes it. Under conn_lock, which the
 * close notification also takes, so a socket is never shut down after its slot was
 * given up (its number may belong to another connection by then).
 */
void
conn_expire(uint32_t now)
{
	int fd;
	unsigned n = 0;

	if (opt(OPT_HEADER_TIMEOUT) == 0)
		return;
	pthread_mutex_lock(&conn_lock);
	for (fd = 0; fd <= max_fd; fd++)
		if (slots[fd].conn != NULL && slots[fd].pending && (int32_t)(now - slots[fd].deadline) >= 0) {
			slots[fd].deadline = now + 3600;	/* once */
			if (shutdown(fd, SHUT_RDWR) == 0)
				n++;
		}
	pthread_mutex_unlock(&conn_lock);
	if (n > 0) {
		atomic_fetch_add(&counters.header_timeouts, n);
		log_debug("header_timeout: closed %u connection(s) that did not finish a request in time", n);
	}
}
