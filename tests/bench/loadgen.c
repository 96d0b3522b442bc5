/*
 * loadgen: the benchmark's load generator for ssepush and nginx+nchan. A coordinator
 * forks subscriber processes (each well under the 20,000 open-file limit) that hold
 * EventSource or long-poll subscribers over HTTP/1.1 from 127.0.0.2..127.0.0.x, and
 * publisher processes that POST timestamped, sequence-numbered payloads over
 * keep-alive connections, at full speed or paced. Everything the processes measure
 * lands in one shared anonymous mapping; the coordinator drives the phases, reads the
 * server's RSS and CPU from /proc and prints "key<TAB>value" lines. Not a test: it
 * asserts nothing, it counts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LG_MAX_WORKERS 32	/* subscriber processes */
#define LG_MAX_PUBPROCS 8
#define LG_MAX_STAGES 4
#define LG_MAX_BCAST 1024	/* per-publish fan-out is tracked for one channel only */
#define LG_HIST 1280		/* log-linear buckets: 32 per power of two (~3%) */
#define LG_READ 65536
#define LG_PAYLOAD_MAX 4096

enum server { SRV_SSEPUSH, SRV_NCHAN };
enum role { ROLE_SUB, ROLE_PUB };
enum hstate { H_STATUS, H_HEADERS, H_CHUNK_SIZE, H_CHUNK_DATA, H_CHUNK_CRLF, H_TRAILER,
	H_LENGTH, H_EOF };
enum phase { PH_INIT, PH_CONNECT, PH_STAGE0 = 10, PH_STOP = 99 };

/* One publishing stage: count publishes at rate per second (0 = full speed). */
struct stage {
	char name[16];
	long count;
	double rate;
	bool prime;		/* one publish to every channel instead of random ones */
};

/* Counters one process writes and the coordinator sums. */
struct wstats {
	uint64_t hist[LG_MAX_STAGES][LG_HIST];
	uint64_t lat_max[LG_MAX_STAGES];
	uint64_t lost, dup, resets, reconnects, http_errors, conn_errors, pub_errors;
	int64_t bcast_recv[LG_MAX_BCAST];	/* last receipt of each broadcast seq */
	uint32_t bcast_count[LG_MAX_BCAST];
};

/* The one shared mapping, created before fork. */
struct shared {
	int phase, storm;
	uint64_t connected, caught;
	uint64_t received[LG_MAX_STAGES], expected[LG_MAX_STAGES], acked[LG_MAX_STAGES];
	int pubs_done[LG_MAX_STAGES];
	int64_t pub_start[LG_MAX_STAGES], pub_end[LG_MAX_STAGES], last_recv[LG_MAX_STAGES];
	int64_t storm_at, storm_back, storm_caught;
	int64_t bcast_sent[LG_MAX_BCAST];
	struct wstats w[LG_MAX_WORKERS + LG_MAX_PUBPROCS];
	uint32_t chan_acked[];	/* last acknowledged seq of each channel */
};

/* One HTTP connection, subscriber or publisher. */
struct conn {
	int fd;
	uint8_t role, state;
	bool chunked, have_len, keepalive, live, in_event, ev_ping, ev_reset, busy, cr;
	int status;
	uint32_t idx, chan, last_seq, target;
	int64_t remain, retry_at, sent_ns;
	uint32_t pub_seq;	/* publisher: seq of the request in flight */
	uint16_t hlen, slen;
	int64_t ev_t;
	int32_t ev_s, ev_g;
	char hline[200];
	char sline[320];
	char lastid[64];
	char etag[48], lastmod[48];
};

static struct {
	enum server server;
	const char *host;
	int port, pub_port;
	long subs, channels, procs, addrs, window, pub_conns, pub_procs, payload;
	bool longpoll;
	struct stage stages[LG_MAX_STAGES];
	int nstages, storm_stage;
	double storm_after, connect_timeout, drain_timeout;
	char pids[256];
} cfg = { SRV_SSEPUSH, "127.0.0.1", 0, 0, 0, 1, 1, 1, 500, 4, 1, 120, false, { { "", 0, 0, false } },
	0, -1, 2.0, 60.0, 10.0, "" };

static struct shared *sh;
static int wid;			/* this process's slot in sh->w */
static char rbuf[LG_READ];
static int epfd;

/* Monotonic nanoseconds; the same clock in every process of this machine. */
static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Prints a message and exits (start-up errors only). */
static void
die(const char *msg)
{
	fprintf(stderr, "loadgen: %s%s%s\n", msg, errno ? ": " : "", errno ? strerror(errno) : "");
	exit(1);
}

/* Bucket of a latency in ns: exact below 32, then 32 sub-buckets per power of two. */
static int
hist_index(uint64_t v)
{
	int e, i;

	if (v < 32)
		return (int)v;
	e = 63 - __builtin_clzll(v);
	i = 32 + (e - 5) * 32 + (int)((v >> (e - 5)) & 31);
	return i < LG_HIST ? i : LG_HIST - 1;
}

/* Middle value of a bucket, in ns. */
static double
hist_value(int i)
{
	int e;

	if (i < 32)
		return i;
	e = (i - 32) / 32 + 5;
	return (double)((uint64_t)(32 + (i - 32) % 32) << (e - 5)) + (double)(1ULL << (e - 5)) / 2;
}

/* Number of subscribers on channel ch (subscriber i is on channel i % channels). */
static uint32_t
subs_on(uint32_t ch)
{
	if (cfg.subs == 0)
		return 0;
	return (uint32_t)(cfg.subs / cfg.channels + ((long)ch < cfg.subs % cfg.channels));
}

/* Raises an int64 in shared memory to v if it is lower. */
static void
atomic_max64(int64_t *p, int64_t v)
{
	int64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);

	while (cur < v && !__atomic_compare_exchange_n(p, &cur, v, false, __ATOMIC_RELAXED,
	    __ATOMIC_RELAXED))
		;
}

/* Lowers an int64 in shared memory to v if it is higher or unset (0). */
static void
atomic_min64(int64_t *p, int64_t v)
{
	int64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);

	while ((cur == 0 || cur > v) && !__atomic_compare_exchange_n(p, &cur, v, false,
	    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static int
phase(void)
{
	return __atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE);
}

/* ---- connections ---- */

/* Opens a non-blocking connection to port from 127.0.0.src (0 = no bind). */
static int
conn_open(int port, int src)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (src > 0) {
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		a.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)src);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) == -1) {
			close(fd);
			return -1;
		}
	}
	a.sin_port = htons((uint16_t)port);
	inet_pton(AF_INET, cfg.host, &a.sin_addr);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) == -1 && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Writes a whole small request; waits out a full socket buffer (rare here). */
static int
write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR || errno == ENOTCONN)) {
			struct timespec ts = { 0, 200000 };
			nanosleep(&ts, NULL);
			continue;
		}
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Resets the response parser for the next response on c. */
static void
http_reset(struct conn *c)
{
	c->state = H_STATUS;
	c->chunked = c->have_len = false;
	c->keepalive = true;
	c->status = 0;
	c->hlen = c->slen = 0;
	c->remain = 0;
	c->in_event = c->ev_ping = c->ev_reset = c->cr = false;
	c->ev_t = 0;
	c->ev_s = c->ev_g = -1;
}

/* Case-insensitive header name match; returns the value (spaces skipped) or NULL. */
static const char *
header_value(const char *line, const char *name)
{
	size_t n = strlen(name);

	if (strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	line += n + 1;
	while (*line == ' ')
		line++;
	return line;
}

/* ---- subscribers ---- */

static struct conn *subs;	/* this worker's subscribers */
static long nsubs;
static uint32_t *todo;		/* subscribers waiting to (re)connect */
static long ntodo, inflight;

/* Sends the subscribe request (stream or long-poll) on a connected socket. */
static int
sub_request(struct conn *c)
{
	char req[512];
	int n;
	bool nchan = cfg.server == SRV_NCHAN;

	if (cfg.longpoll && nchan)
		n = snprintf(req, sizeof req, "GET /lp/bench%u HTTP/1.1\r\nHost: %s\r\n%s%s%s%s%s%s\r\n",
		    c->chan, cfg.host,
		    c->etag[0] ? "If-None-Match: " : "", c->etag, c->etag[0] ? "\r\n" : "",
		    c->lastmod[0] ? "If-Modified-Since: " : "", c->lastmod, c->lastmod[0] ? "\r\n" : "");
	else
		n = snprintf(req, sizeof req, "GET /events/bench%u%s HTTP/1.1\r\nHost: %s\r\n"
		    "Accept: text/event-stream\r\n%s%s%s%s\r\n", c->chan,
		    cfg.longpoll ? "?closeafter=event&ping=0" : "", cfg.host,
		    cfg.longpoll ? "X-Long-Poll: Yes\r\n" : "",
		    c->lastid[0] ? "Last-Event-ID: " : "", c->lastid, c->lastid[0] ? "\r\n" : "");
	http_reset(c);
	return write_all(c->fd, req, (size_t)n);
}

/* Queues a subscriber for (re)connection after delay_ms. */
static void
sub_schedule(struct conn *c, int delay_ms)
{
	c->retry_at = now_ns() + (int64_t)delay_ms * 1000000;
	todo[ntodo++] = (uint32_t)(c - subs);
}

/* Drops a subscriber's connection; a live one leaves the connected count. */
static void
sub_close(struct conn *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (c->live)
		__atomic_fetch_sub(&sh->connected, 1, __ATOMIC_RELAXED);
	else
		inflight--;
	c->live = false;
}

/* Connection trouble: close and retry shortly, as an EventSource would. */
static void
sub_fail(struct conn *c, bool http_error)
{
	struct wstats *w = &sh->w[wid];

	if (http_error)
		w->http_errors++;
	else
		w->conn_errors++;
	sub_close(c);
	sub_schedule(c, 100);
}

/* Marks a storm survivor caught up once it has every event acknowledged before the drop. */
static void
sub_check_caught(struct conn *c)
{
	if (c->target != UINT32_MAX && c->live && c->last_seq >= c->target) {
		c->target = UINT32_MAX;
		__atomic_fetch_add(&sh->caught, 1, __ATOMIC_RELAXED);
		atomic_max64(&sh->storm_caught, now_ns());
	}
}

/* Accounts one received event: latency, order, loss and duplicates by sequence number. */
static void
sub_event(struct conn *c, int64_t t, int32_t s, int32_t g)
{
	struct wstats *w = &sh->w[wid];
	int64_t now = now_ns(), lat = now - t;

	if (s < 0 || g < 0 || g >= LG_MAX_STAGES)
		return;
	if ((uint32_t)s <= c->last_seq) {
		w->dup++;
		return;
	}
	if ((uint32_t)s > c->last_seq + 1)
		w->lost += (uint32_t)s - c->last_seq - 1;
	c->last_seq = (uint32_t)s;
	if (lat < 0)
		lat = 0;
	w->hist[g][hist_index((uint64_t)lat)]++;
	if ((uint64_t)lat > w->lat_max[g])
		w->lat_max[g] = (uint64_t)lat;
	__atomic_fetch_add(&sh->received[g], 1, __ATOMIC_RELAXED);
	atomic_max64(&sh->last_recv[g], now);
	if (cfg.channels == 1 && s < LG_MAX_BCAST) {
		if (now > w->bcast_recv[s])
			w->bcast_recv[s] = now;
		w->bcast_count[s]++;
	}
	sub_check_caught(c);
}

/* Reads t, s and g out of a payload {"t":..,"s":..,"g":..,...}. */
static void
parse_payload(const char *p, int64_t *t, int32_t *s, int32_t *g)
{
	const char *q;

	*t = (q = strstr(p, "\"t\":")) ? strtoll(q + 4, NULL, 10) : 0;
	*s = (q = strstr(p, "\"s\":")) ? (int32_t)strtol(q + 4, NULL, 10) : -1;
	*g = (q = strstr(p, "\"g\":")) ? (int32_t)strtol(q + 4, NULL, 10) : -1;
}

/* One complete SSE line of the body; a blank line dispatches the event. */
static void
sse_line(struct conn *c, const char *l)
{
	const char *v;

	if (*l == '\0') {
		if (c->in_event && !c->ev_ping)
			sub_event(c, c->ev_t, c->ev_s, c->ev_g);
		if (c->ev_reset)
			sh->w[wid].resets++;
		c->in_event = c->ev_ping = c->ev_reset = false;
		return;
	}
	if (strncmp(l, "data:", 5) == 0) {
		v = l[5] == ' ' ? l + 6 : l + 5;
		parse_payload(v, &c->ev_t, &c->ev_s, &c->ev_g);
		c->in_event = true;
	} else if (strncmp(l, "id:", 3) == 0) {
		v = l[3] == ' ' ? l + 4 : l + 3;
		snprintf(c->lastid, sizeof c->lastid, "%s", v);
	} else if (strncmp(l, "event:", 6) == 0) {
		v = l[6] == ' ' ? l + 7 : l + 6;
		c->ev_ping = strcmp(v, "ping") == 0;
		c->ev_reset = strcmp(v, "reset") == 0;
		if (c->ev_reset)
			c->ev_ping = true;	/* not a payload event */
	}
}

/* Feeds decoded body bytes: SSE lines, or a raw nchan long-poll message. */
static void
body_bytes(struct conn *c, const char *p, size_t n)
{
	size_t i;

	if (c->role == ROLE_PUB)
		return;
	if (cfg.longpoll && cfg.server == SRV_NCHAN) {
		for (i = 0; i < n && c->slen < sizeof c->sline - 1; i++)
			c->sline[c->slen++] = p[i];
		return;
	}
	for (i = 0; i < n; i++) {
		if (p[i] == '\n' && c->cr) {
			c->cr = false;		/* the LF of a CRLF */
			continue;
		}
		c->cr = p[i] == '\r';
		if (p[i] == '\n' || p[i] == '\r') {
			c->sline[c->slen] = '\0';
			sse_line(c, c->sline);
			c->slen = 0;
		} else if (c->slen < sizeof c->sline - 1)
			c->sline[c->slen++] = p[i];
	}
}

/* A response header line (status line first); a blank line starts the body. */
static void
http_header(struct conn *c, const char *l)
{
	const char *v;

	if (c->state == H_STATUS) {
		c->status = (strncmp(l, "HTTP/1.", 7) == 0) ? atoi(l + 9) : 999;
		if (strncmp(l, "HTTP/1.0", 8) == 0)
			c->keepalive = false;
		c->state = H_HEADERS;
		return;
	}
	if (*l != '\0') {
		if ((v = header_value(l, "Transfer-Encoding")) && strstr(v, "chunked"))
			c->chunked = true;
		else if ((v = header_value(l, "Content-Length"))) {
			c->have_len = true;
			c->remain = strtoll(v, NULL, 10);
		} else if ((v = header_value(l, "Connection")) && strncasecmp(v, "close", 5) == 0)
			c->keepalive = false;
		else if ((v = header_value(l, "Etag")))
			snprintf(c->etag, sizeof c->etag, "%s", v);
		else if ((v = header_value(l, "Last-Modified")))
			snprintf(c->lastmod, sizeof c->lastmod, "%s", v);
		return;
	}
	c->state = c->chunked ? H_CHUNK_SIZE : c->have_len ? H_LENGTH : H_EOF;
}

/* Counts a subscriber as connected (once per connection). */
static void
sub_live(struct conn *c)
{
	if (c->live)
		return;
	c->live = true;
	inflight--;
	__atomic_fetch_add(&sh->connected, 1, __ATOMIC_RELAXED);
	if (c->target != UINT32_MAX && sh->storm)
		atomic_max64(&sh->storm_back, now_ns());
	sub_check_caught(c);
}

/* A response is complete: returns false when the connection must be closed. */
static bool response_done(struct conn *c);

/* Called once the headers are in; returns false when the connection was closed. */
static bool
headers_done(struct conn *c)
{
	if (c->role == ROLE_PUB)
		return true;
	if (c->status != 200) {
		if (cfg.longpoll && cfg.server == SRV_NCHAN && (c->status == 304 || c->status == 408))
			return true;	/* long-poll timeout: ask again */
		sub_fail(c, true);
		return false;
	}
	sub_live(c);
	return true;
}

/*
 * Parses bytes of an HTTP/1.1 response (status, headers, then chunked, sized or
 * EOF-delimited body), possibly several responses in a row. Returns false once the
 * connection was closed.
 */
static bool
http_feed(struct conn *c, const char *p, size_t n)
{
	size_t i = 0, k;

	while (i < n) {
		switch (c->state) {
		case H_STATUS: case H_HEADERS: case H_CHUNK_SIZE: case H_CHUNK_CRLF: case H_TRAILER:
			if (p[i] != '\n') {
				if (p[i] != '\r' && c->hlen < sizeof c->hline - 1)
					c->hline[c->hlen++] = p[i];
				i++;
				break;
			}
			i++;
			c->hline[c->hlen] = '\0';
			c->hlen = 0;
			if (c->state == H_STATUS || c->state == H_HEADERS) {
				http_header(c, c->hline);
				if (c->state != H_HEADERS && c->state != H_STATUS) {
					if (!headers_done(c))
						return false;
					if (c->state == H_LENGTH && c->remain == 0 && !response_done(c))
						return false;
				}
			} else if (c->state == H_CHUNK_SIZE) {
				c->remain = strtoll(c->hline, NULL, 16);
				c->state = c->remain > 0 ? H_CHUNK_DATA : H_TRAILER;
			} else if (c->state == H_CHUNK_CRLF) {
				c->state = H_CHUNK_SIZE;
			} else if (c->hline[0] == '\0') {	/* end of trailer */
				if (!response_done(c))
					return false;
			}
			break;
		case H_CHUNK_DATA: case H_LENGTH:
			k = n - i;
			if ((int64_t)k > c->remain)
				k = (size_t)c->remain;
			body_bytes(c, p + i, k);
			i += k;
			c->remain -= (int64_t)k;
			if (c->remain == 0) {
				if (c->state == H_CHUNK_DATA)
					c->state = H_CHUNK_CRLF;
				else if (!response_done(c))
					return false;
			}
			break;
		case H_EOF:
			body_bytes(c, p + i, n - i);
			i = n;
			break;
		}
	}
	return true;
}

/* Starts connections while fewer than `window` are in flight. */
static void
sub_open_some(void)
{
	int64_t now = now_ns();
	long i;
	struct conn *c;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };

	for (i = 0; i < ntodo && inflight < cfg.window;) {
		c = &subs[todo[i]];
		if (c->retry_at > now) {
			i++;
			continue;
		}
		todo[i] = todo[--ntodo];
		c->fd = conn_open(cfg.port, 2 + (int)(c->idx % (uint32_t)cfg.addrs));
		inflight++;
		if (c->fd < 0) {
			sh->w[wid].conn_errors++;
			inflight--;
			sub_schedule(c, 100);
			continue;
		}
		c->busy = false;	/* request not sent yet: waiting for connect */
		ev.data.ptr = c;
		epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
	}
}

/* Drops every subscriber and queues it to reconnect with its Last-Event-ID. */
static void
sub_storm(void)
{
	long i;
	struct conn *c;

	for (i = 0; i < nsubs; i++) {
		c = &subs[i];
		c->target = __atomic_load_n(&sh->chan_acked[c->chan], __ATOMIC_RELAXED);
		if (c->fd < 0)
			continue;	/* already queued */
		sub_close(c);
		sub_schedule(c, 0);
	}
}

/* Readable (or writable once, after connect) subscriber socket. */
static void
sub_io(struct conn *c, uint32_t events)
{
	ssize_t n;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	if (!c->busy) {
		int err = 0;
		socklen_t len = sizeof err;
		if ((events & (EPOLLERR | EPOLLHUP)) ||
		    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 || err != 0) {
			sub_fail(c, false);
			return;
		}
		if (!(events & EPOLLOUT))
			return;
		c->busy = true;
		epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
		if (sub_request(c) == -1)
			sub_fail(c, false);
		else if (cfg.longpoll)
			sub_live(c);	/* a held request sends nothing until an event */
		return;
	}
	n = read(c->fd, rbuf, sizeof rbuf);
	if (n > 0) {
		http_feed(c, rbuf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* EOF: end of an EOF-delimited body, or the server dropped us. */
	if (c->state == H_EOF && c->live)
		response_done(c);
	if (c->fd >= 0) {
		sh->w[wid].reconnects++;
		sub_close(c);
		sub_schedule(c, 0);
	}
}

/* A subscriber response ended: long-poll asks again, a stream reconnects. */
static bool
sub_response_done(struct conn *c)
{
	int64_t t;
	int32_t s, g;

	if (cfg.longpoll && cfg.server == SRV_NCHAN && c->status == 200 && c->slen > 0) {
		c->sline[c->slen] = '\0';
		parse_payload(c->sline, &t, &s, &g);
		sub_event(c, t, s, g);
	}
	if (!cfg.longpoll) {
		sh->w[wid].reconnects++;
		sub_close(c);
		sub_schedule(c, 0);
		return false;
	}
	if (!c->keepalive) {
		sub_close(c);
		c->live = false;
		sub_schedule(c, 0);
		return false;
	}
	if (sub_request(c) == -1) {
		sub_fail(c, false);
		return false;
	}
	return true;
}

/* Adds the seq-based losses still open at the end (events acknowledged, never seen). */
static void
sub_final_count(void)
{
	long i;
	uint32_t acked;

	for (i = 0; i < nsubs; i++) {
		acked = sh->chan_acked[subs[i].chan];
		if (acked > subs[i].last_seq)
			sh->w[wid].lost += acked - subs[i].last_seq;
	}
}

/* A subscriber process: holds its share of subscribers until told to stop. */
static void
sub_worker(long first, long count)
{
	struct epoll_event evs[256];
	long i;
	int n, j, storm_seen = 0;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	nsubs = count;
	subs = calloc((size_t)count, sizeof *subs);
	todo = calloc((size_t)count + 1, sizeof *todo);
	if (subs == NULL || todo == NULL || epfd < 0)
		die("subscriber set-up");
	for (i = count - 1; i >= 0; i--) {
		subs[i].fd = -1;
		subs[i].idx = (uint32_t)(first + i);
		subs[i].chan = (uint32_t)((first + i) % cfg.channels);
		subs[i].target = UINT32_MAX;
		subs[i].role = ROLE_SUB;
		todo[ntodo++] = (uint32_t)i;
	}
	while (phase() < PH_CONNECT)
		usleep(1000);
	while (phase() != PH_STOP) {
		if (__atomic_load_n(&sh->storm, __ATOMIC_ACQUIRE) && !storm_seen) {
			storm_seen = 1;
			sub_storm();
		}
		if (ntodo > 0)
			sub_open_some();
		n = epoll_wait(epfd, evs, 256, 5);
		for (j = 0; j < n; j++)
			sub_io(evs[j].data.ptr, evs[j].events);
	}
	sub_final_count();
	exit(0);
}

/* ---- publishers ---- */

static struct conn *pubs;
static long npubs, pub_base;	/* this process's connections and the first global index */

/* Connects a publisher connection (blocking, then non-blocking). */
static void
pub_connect(struct conn *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	struct sockaddr_in a = { .sin_family = AF_INET };
	int one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a.sin_port = htons((uint16_t)cfg.pub_port);
	inet_pton(AF_INET, cfg.host, &a.sin_addr);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a) == -1)
		die("publisher connect");
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	fcntl(c->fd, F_SETFL, O_NONBLOCK);
	epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
	http_reset(c);
	c->busy = false;
}

/* Sends one publish to channel ch with the next seq of that channel. */
static void
pub_send(struct conn *c, uint32_t ch, uint32_t seq, int g)
{
	char body[LG_PAYLOAD_MAX + 128], req[LG_PAYLOAD_MAX + 512];
	int64_t t = now_ns();
	int blen, rlen;

	blen = snprintf(body, sizeof body, "{\"t\":%" PRId64 ",\"s\":%u,\"g\":%d,\"c\":%u,\"x\":\"",
	    t, seq, g, ch);
	while (blen < cfg.payload - 2 && blen < LG_PAYLOAD_MAX)
		body[blen++] = 'x';
	body[blen++] = '"';
	body[blen++] = '}';
	rlen = snprintf(req, sizeof req, "POST /publish/bench%u HTTP/1.1\r\nHost: %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%.*s",
	    ch, cfg.host, blen, blen, body);
	c->chan = ch;
	c->pub_seq = seq;
	c->sent_ns = t;
	c->busy = true;
	http_reset(c);
	if (cfg.channels == 1 && seq < LG_MAX_BCAST)
		sh->bcast_sent[seq] = t;
	if (write_all(c->fd, req, (size_t)rlen) == -1)
		die("publisher write");
}

static int cur_stage;
static uint32_t *pub_next_seq;	/* per channel, for the channels this process owns */

/* A publish was answered: a 2xx counts it as acknowledged. */
static bool
pub_response_done(struct conn *c)
{
	c->busy = false;
	c->state = H_STATUS;	/* nothing more on this connection until the next request */
	if (c->status >= 200 && c->status < 300) {
		__atomic_store_n(&sh->chan_acked[c->chan], c->pub_seq, __ATOMIC_RELAXED);
		__atomic_fetch_add(&sh->expected[cur_stage], subs_on(c->chan), __ATOMIC_RELAXED);
		__atomic_fetch_add(&sh->acked[cur_stage], 1, __ATOMIC_RELAXED);
	} else {
		sh->w[wid].pub_errors++;
	}
	if (!c->keepalive) {
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
		close(c->fd);
		pub_connect(c);
	}
	return true;
}

static bool
response_done(struct conn *c)
{
	return c->role == ROLE_PUB ? pub_response_done(c) : sub_response_done(c);
}

/* Picks the channel of a connection's next publish: it owns channels g, g+C, g+2C... */
static uint32_t
pub_channel(long gidx, long j, bool prime)
{
	long owned = (cfg.channels - gidx + cfg.pub_conns - 1) / cfg.pub_conns;

	if (owned <= 0)
		return UINT32_MAX;
	if (prime)
		return (uint32_t)(gidx + (j % owned) * cfg.pub_conns);
	return (uint32_t)(gidx + (random() % owned) * cfg.pub_conns);
}

/* Runs one stage on this process's connections: quota each, paced per connection. */
static void
pub_stage(int g)
{
	const struct stage *st = &cfg.stages[g];
	struct epoll_event evs[64];
	long i, quota[LG_MAX_PUBPROCS * 64], sent[LG_MAX_PUBPROCS * 64], left;
	double interval = st->rate > 0 ? 1e9 * (double)cfg.pub_conns / st->rate : 0;
	int64_t start = now_ns(), now, next;
	int n, j, timeout;
	uint32_t ch;

	cur_stage = g;
	for (i = 0; i < npubs; i++) {
		long gi = pub_base + i;
		if (st->prime)
			quota[i] = (cfg.channels - gi + cfg.pub_conns - 1) / cfg.pub_conns;
		else
			quota[i] = st->count / cfg.pub_conns + (gi < st->count % cfg.pub_conns);
		if (quota[i] < 0)
			quota[i] = 0;
		sent[i] = 0;
	}
	atomic_min64(&sh->pub_start[g], start);
	for (;;) {
		now = now_ns();
		next = INT64_MAX;
		left = 0;
		for (i = 0; i < npubs; i++) {
			struct conn *c = &pubs[i];
			int64_t due = start + (int64_t)(interval * ((double)sent[i] +
			    (double)(pub_base + i) / (double)cfg.pub_conns));
			if (sent[i] < quota[i] || c->busy)
				left++;
			if (c->busy || sent[i] >= quota[i])
				continue;
			if (due > now) {
				if (due < next)
					next = due;
				continue;
			}
			ch = pub_channel(pub_base + i, sent[i], st->prime);
			if (ch == UINT32_MAX) {
				quota[i] = 0;
				continue;
			}
			pub_send(c, ch, ++pub_next_seq[ch], g);
			sent[i]++;
		}
		if (left == 0 || phase() == PH_STOP)
			break;
		timeout = next == INT64_MAX ? 5 : (int)((next - now) / 1000000);
		if (timeout > 5)
			timeout = 5;
		n = epoll_wait(epfd, evs, 64, timeout);
		for (j = 0; j < n; j++) {
			struct conn *c = evs[j].data.ptr;
			ssize_t r = read(c->fd, rbuf, sizeof rbuf);
			if (r > 0)
				http_feed(c, rbuf, (size_t)r);
			else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				sh->w[wid].pub_errors++;
				epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				pub_connect(c);
			}
		}
	}
	atomic_max64(&sh->pub_end[g], now_ns());
	__atomic_fetch_add(&sh->pubs_done[g], 1, __ATOMIC_RELEASE);
}

/* A publisher process: its connections run each stage when the coordinator says so. */
static void
pub_worker(long first, long count)
{
	int g;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	npubs = count;
	pub_base = first;
	pubs = calloc((size_t)count, sizeof *pubs);
	pub_next_seq = calloc((size_t)cfg.channels, sizeof *pub_next_seq);
	if (pubs == NULL || pub_next_seq == NULL || epfd < 0)
		die("publisher set-up");
	srandom((unsigned)(getpid() ^ now_ns()));
	for (g = 0; g < count; g++) {
		pubs[g].role = ROLE_PUB;
		pub_connect(&pubs[g]);
	}
	for (g = 0; g < cfg.nstages; g++) {
		while (phase() < PH_STAGE0 + g)
			usleep(500);
		if (phase() == PH_STOP)
			break;
		pub_stage(g);
	}
	while (phase() != PH_STOP)
		usleep(1000);
	exit(0);
}

/* ---- coordinator ---- */

/* Sums VmRSS (kB) over the server pids. */
static long
server_rss_kb(void)
{
	char path[64], line[256], list[256], *tok, *save = NULL;
	long sum = 0;
	FILE *f;

	snprintf(list, sizeof list, "%s", cfg.pids);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		snprintf(path, sizeof path, "/proc/%s/status", tok);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof line, f))
			if (strncmp(line, "VmRSS:", 6) == 0)
				sum += atol(line + 6);
		fclose(f);
	}
	return sum;
}

/* Sums utime+stime (seconds) over the server pids. */
static double
server_cpu_s(void)
{
	char path[64], buf[1024], list[256], *tok, *save = NULL, *p;
	double sum = 0;
	unsigned long ut, st;
	FILE *f;

	snprintf(list, sizeof list, "%s", cfg.pids);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		snprintf(path, sizeof path, "/proc/%s/stat", tok);
		if ((f = fopen(path, "r")) == NULL)
			continue;
		if (fgets(buf, sizeof buf, f) && (p = strrchr(buf, ')')) &&
		    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
			sum += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
		fclose(f);
	}
	return sum;
}

/* Prints one result line. */
static void
put(const char *prefix, const char *key, double v)
{
	printf("%s%s\t%.6g\n", prefix, key, v);
}

/* Percentile of the merged histogram of stage g, in ms. */
static double
percentile(const uint64_t *h, uint64_t total, double q)
{
	uint64_t want = (uint64_t)((double)total * q), acc = 0;
	int i;

	if (total == 0)
		return -1;
	if (want >= total)
		want = total - 1;
	for (i = 0; i < LG_HIST; i++) {
		acc += h[i];
		if (acc > want)
			return hist_value(i) / 1e6;
	}
	return -1;
}

static int nworkers;

/* Prints the figures of one stage. */
static void
report_stage(int g, double cpu)
{
	static uint64_t h[LG_HIST];
	char pre[32];
	uint64_t total = 0, mx = 0;
	int i, k;
	double pub_s = (double)(sh->pub_end[g] - sh->pub_start[g]) / 1e9;
	double del_s = (double)(sh->last_recv[g] - sh->pub_start[g]) / 1e9;

	memset(h, 0, sizeof h);
	for (k = 0; k < nworkers; k++) {
		for (i = 0; i < LG_HIST; i++)
			h[i] += sh->w[k].hist[g][i];
		if (sh->w[k].lat_max[g] > mx)
			mx = sh->w[k].lat_max[g];
	}
	for (i = 0; i < LG_HIST; i++)
		total += h[i];
	snprintf(pre, sizeof pre, "%s.", cfg.stages[g].name);
	put(pre, "published", (double)sh->acked[g]);
	put(pre, "pub_rate", pub_s > 0 ? (double)sh->acked[g] / pub_s : 0);
	put(pre, "expected", (double)sh->expected[g]);
	put(pre, "received", (double)sh->received[g]);
	if (total > 0) {
		put(pre, "p50_ms", percentile(h, total, 0.50));
		put(pre, "p90_ms", percentile(h, total, 0.90));
		put(pre, "p99_ms", percentile(h, total, 0.99));
		put(pre, "max_ms", (double)mx / 1e6);
		put(pre, "deliv_rate", del_s > 0 ? (double)sh->received[g] / del_s : 0);
	}
	put(pre, "cpu_s", cpu);
	/* Per delivered event: with one subscriber a channel, per publish (and, long-poll, per re-poll). */
	if (sh->received[g] > 0)
		put(pre, "cpu_us_per_event", cpu / (double)sh->received[g] * 1e6);
}

/* Median fan-out time of the broadcasts (publish sent to the last subscriber's receipt). */
static void
report_fanout(void)
{
	static double ft[LG_MAX_BCAST];
	int n = 0, s, k, a, b;
	int64_t last;
	double tmp;

	for (s = 1; s < LG_MAX_BCAST; s++) {
		if (sh->bcast_sent[s] == 0)
			continue;
		last = 0;
		for (k = 0; k < nworkers; k++)
			if (sh->w[k].bcast_recv[s] > last)
				last = sh->w[k].bcast_recv[s];
		if (last > sh->bcast_sent[s])
			ft[n++] = (double)(last - sh->bcast_sent[s]) / 1e6;
	}
	if (n == 0)
		return;
	for (a = 1; a < n; a++)
		for (b = a; b > 0 && ft[b - 1] > ft[b]; b--) {
			tmp = ft[b];
			ft[b] = ft[b - 1];
			ft[b - 1] = tmp;
		}
	put("", "fanout_ms", ft[n / 2]);
	put("", "fanout_rate", (double)cfg.subs / (ft[n / 2] / 1e3));
}

/* Sleeps a few milliseconds. */
static void
nap(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/* Waits until a stage's deliveries are all in, or nothing arrived for drain_timeout. */
static void
wait_drain(int g)
{
	uint64_t seen = 0, r;
	int64_t quiet = now_ns();

	for (;;) {
		r = __atomic_load_n(&sh->received[g], __ATOMIC_RELAXED);
		if (r >= __atomic_load_n(&sh->expected[g], __ATOMIC_RELAXED))
			return;
		if (r != seen) {
			seen = r;
			quiet = now_ns();
		} else if (now_ns() - quiet > (int64_t)(cfg.drain_timeout * 1e9))
			return;
		nap(2);
	}
}

/* Runs one stage: go, optional reconnect storm, wait for publishers, drain. */
static void
run_stage(int g)
{
	int64_t t0;
	double cpu0 = server_cpu_s();

	__atomic_store_n(&sh->phase, PH_STAGE0 + g, __ATOMIC_RELEASE);
	t0 = now_ns();
	while (__atomic_load_n(&sh->pubs_done[g], __ATOMIC_ACQUIRE) < cfg.pub_procs) {
		if (g == cfg.storm_stage && !sh->storm &&
		    now_ns() - t0 > (int64_t)(cfg.storm_after * 1e9)) {
			sh->storm_at = now_ns();
			__atomic_store_n(&sh->storm, 1, __ATOMIC_RELEASE);
		}
		nap(2);
	}
	wait_drain(g);
	report_stage(g, server_cpu_s() - cpu0);
}

/* Waits for the storm's subscribers to be back and caught up (bounded). */
static void
report_storm(void)
{
	int64_t limit = now_ns() + (int64_t)(cfg.connect_timeout * 1e9);

	if (!sh->storm)
		return;
	while ((__atomic_load_n(&sh->caught, __ATOMIC_RELAXED) < (uint64_t)cfg.subs ||
	    __atomic_load_n(&sh->connected, __ATOMIC_RELAXED) < (uint64_t)cfg.subs) &&
	    now_ns() < limit)
		nap(5);
	put("", "storm_back", (double)sh->connected);
	put("", "storm_caught", (double)sh->caught);
	put("", "storm_reconnect_s", sh->storm_back > 0 ? (double)(sh->storm_back - sh->storm_at) / 1e9 : -1);
	put("", "storm_caughtup_s", sh->storm_caught > 0 && sh->caught >= (uint64_t)cfg.subs ?
	    (double)(sh->storm_caught - sh->storm_at) / 1e9 : -1);
}

/* Connects every subscriber and reports the connect rate and memory per subscriber. */
static void
run_connect(void)
{
	int64_t t0 = now_ns(), limit = t0 + (int64_t)(cfg.connect_timeout * 1e9), t1;
	long rss0 = server_rss_kb(), rss1;
	double cpu0 = server_cpu_s(), cpu;
	uint64_t c;

	__atomic_store_n(&sh->phase, PH_CONNECT, __ATOMIC_RELEASE);
	while ((c = __atomic_load_n(&sh->connected, __ATOMIC_RELAXED)) < (uint64_t)cfg.subs &&
	    now_ns() < limit)
		nap(2);
	t1 = now_ns();
	put("", "connected", (double)c);
	put("", "connect_s", (double)(t1 - t0) / 1e9);
	put("", "connect_rate", (double)c / ((double)(t1 - t0) / 1e9));
	nap(1000);	/* let the server finish what the last connections started */
	rss1 = server_rss_kb();
	put("", "rss_before_kb", (double)rss0);
	put("", "rss_after_kb", (double)rss1);
	/* The server's CPU for the connections (and the idle second after them). */
	cpu = server_cpu_s() - cpu0;
	put("", "connect_cpu_s", cpu);
	if (c > 0) {
		put("", "rss_per_sub_kb", (double)(rss1 - rss0) / (double)c);
		put("", "cpu_us_per_conn", cpu / (double)c * 1e6);
	}
}

/* Sums the per-process counters and prints them; reaps the children. */
static void
report_totals(void)
{
	uint64_t t[7] = { 0 };
	int k, st;

	__atomic_store_n(&sh->phase, PH_STOP, __ATOMIC_RELEASE);
	while (wait(&st) > 0)
		;
	for (k = 0; k < nworkers + (int)cfg.pub_procs; k++) {
		t[0] += sh->w[k].lost;
		t[1] += sh->w[k].dup;
		t[2] += sh->w[k].resets;
		t[3] += sh->w[k].reconnects;
		t[4] += sh->w[k].http_errors;
		t[5] += sh->w[k].conn_errors;
		t[6] += sh->w[k].pub_errors;
	}
	put("", "lost", (double)t[0]);
	put("", "dup", (double)t[1]);
	put("", "resets", (double)t[2]);
	put("", "reconnects", (double)t[3]);
	put("", "sub_http_errors", (double)t[4]);
	put("", "sub_conn_errors", (double)t[5]);
	put("", "pub_errors", (double)t[6]);
}

/* Parses --stage name:count:rate[:prime]. */
static void
parse_stage(const char *v)
{
	struct stage *st;
	char buf[128], *p, *q;

	if (cfg.nstages >= LG_MAX_STAGES)
		die("too many stages");
	st = &cfg.stages[cfg.nstages++];
	snprintf(buf, sizeof buf, "%s", v);
	if ((p = strchr(buf, ':')) == NULL)
		die("--stage name:count:rate[:prime]");
	*p++ = '\0';
	snprintf(st->name, sizeof st->name, "%.15s", buf);
	st->count = strtol(p, &q, 10);
	st->rate = *q == ':' ? strtod(q + 1, &q) : 0;
	st->prime = strstr(q, "prime") != NULL;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen --port P [--server ssepush|nchan] [--pub-port P] [--subs N]\n"
	    "  [--channels K] [--procs M] [--addrs X] [--window W] [--longpoll]\n"
	    "  [--pub-conns C] [--pub-procs Q] [--payload BYTES]\n"
	    "  [--stage name:count:rate[:prime]]... [--storm-stage NAME --storm-after SEC]\n"
	    "  [--pids PID,PID] [--connect-timeout SEC] [--drain-timeout SEC]\n"
	    "Subscribers bind 127.0.0.2..127.0.0.(1+X); rate 0 publishes at full speed.\n"
	    "Prints key<TAB>value lines: connect rate, server RSS per subscriber, and per\n"
	    "stage publishes, deliveries, latency percentiles, rates and server CPU.\n");
	exit(2);
}

/* Reads the command line into cfg. */
static void
parse_args(int argc, char **argv)
{
	int i;
	const char *k, *v;

	for (i = 1; i < argc; i++) {
		k = argv[i];
		if (strcmp(k, "--longpoll") == 0) {
			cfg.longpoll = true;
			continue;
		}
		if (i + 1 >= argc)
			usage();
		v = argv[++i];
		if (strcmp(k, "--server") == 0)
			cfg.server = strcmp(v, "nchan") == 0 ? SRV_NCHAN : SRV_SSEPUSH;
		else if (strcmp(k, "--host") == 0) cfg.host = v;
		else if (strcmp(k, "--port") == 0) cfg.port = atoi(v);
		else if (strcmp(k, "--pub-port") == 0) cfg.pub_port = atoi(v);
		else if (strcmp(k, "--subs") == 0) cfg.subs = atol(v);
		else if (strcmp(k, "--channels") == 0) cfg.channels = atol(v);
		else if (strcmp(k, "--procs") == 0) cfg.procs = atol(v);
		else if (strcmp(k, "--addrs") == 0) cfg.addrs = atol(v);
		else if (strcmp(k, "--window") == 0) cfg.window = atol(v);
		else if (strcmp(k, "--pub-conns") == 0) cfg.pub_conns = atol(v);
		else if (strcmp(k, "--pub-procs") == 0) cfg.pub_procs = atol(v);
		else if (strcmp(k, "--payload") == 0) cfg.payload = atol(v);
		else if (strcmp(k, "--stage") == 0) parse_stage(v);
		else if (strcmp(k, "--storm-after") == 0) cfg.storm_after = atof(v);
		else if (strcmp(k, "--connect-timeout") == 0) cfg.connect_timeout = atof(v);
		else if (strcmp(k, "--drain-timeout") == 0) cfg.drain_timeout = atof(v);
		else if (strcmp(k, "--pids") == 0) snprintf(cfg.pids, sizeof cfg.pids, "%s", v);
		else if (strcmp(k, "--storm-stage") == 0) {
			int g;
			for (g = 0; g < cfg.nstages; g++)
				if (strcmp(cfg.stages[g].name, v) == 0)
					cfg.storm_stage = g;
		} else
			usage();
	}
	if (cfg.pub_port == 0)
		cfg.pub_port = cfg.port;
	if (cfg.port <= 0 || cfg.channels < 1 || cfg.procs < 1 || cfg.procs > LG_MAX_WORKERS ||
	    cfg.addrs < 1 || cfg.addrs > 250 || cfg.pub_conns < 1 || cfg.pub_procs < 1 ||
	    cfg.pub_procs > LG_MAX_PUBPROCS || cfg.pub_conns > 64 * cfg.pub_procs ||
	    cfg.subs / cfg.procs > 19000 || cfg.payload > LG_PAYLOAD_MAX)
		usage();
}

int
main(int argc, char **argv)
{
	struct rlimit rl;
	size_t size;
	long k, per;
	int g;
	double cpu0;

	parse_args(argc, argv);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	size = sizeof *sh + (size_t)cfg.channels * sizeof sh->chan_acked[0];
	sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap");
	memset(sh, 0, size);
	cpu0 = server_cpu_s();
	nworkers = cfg.subs > 0 ? (int)cfg.procs : 0;
	per = cfg.subs > 0 ? (cfg.subs + cfg.procs - 1) / cfg.procs : 0;
	for (k = 0; k < nworkers; k++) {
		long first = k * per, count = first + per > cfg.subs ? cfg.subs - first : per;
		if (fork() == 0) {
			wid = (int)k;
			sub_worker(first, count);
		}
	}
	per = (cfg.pub_conns + cfg.pub_procs - 1) / cfg.pub_procs;
	for (k = 0; k < cfg.pub_procs; k++) {
		long first = k * per, count = first + per > cfg.pub_conns ? cfg.pub_conns - first : per;
		if (fork() == 0) {
			wid = nworkers + (int)k;
			pub_worker(first, count);
		}
	}
	if (cfg.subs > 0)
		run_connect();
	for (g = 0; g < cfg.nstages; g++)
		run_stage(g);
	if (cfg.channels == 1)
		report_fanout();
	report_storm();
	put("", "cpu_s", server_cpu_s() - cpu0);
	report_totals();
	return 0;
}
