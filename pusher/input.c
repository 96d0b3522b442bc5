/*
 * The notify socket and what happens to a datagram: binding it (or taking the socket
 * Cyrus master hands over on fd 0), draining it without ever waiting on anything else,
 * parsing, folding into the coalescer, and moving closed windows into the Redis queue
 * (where a full queue drops them, counted and logged). It does not talk to Redis.
 */
#include "pusher.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int sock = -1;
static bool bound_path;			/* we created the socket file (unlink it at exit) */
static struct event *read_ev, *window_ev;
static struct coalesce *coal;
static struct coalesce_stats coal_base;	/* counters of coalescers replaced on reload */
static char describe[160];
static char buf[NOTIFY_DATAGRAM_MAX + 1];	/* one byte more to see an oversized datagram */
static struct notify_msg msg;
static struct ratelimit rl_bad, rl_drop_user, rl_queue, rl_recv, rl_jmap;
static struct jmap_windows *jw;		/* jmap_states on: the accounts' open windows */

/* What the pusher reads from, for the ready line. */
const char *
input_describe(void)
{
	return describe;
}

/* The live coalescer (borrowed). */
struct coalesce *
input_coalescer(void)
{
	return coal;
}

/* Sums the counters of the live coalescer and of every one it replaced. */
void
input_coalesce_stats(struct coalesce_stats *out)
{
	const struct coalesce_stats *s = coalesce_stats(coal);

	*out = coal_base;
	out->added += s->added;
	out->filtered += s->filtered;
	out->shared_skipped += s->shared_skipped;
	out->dropped_users += s->dropped_users;
	out->bad_channel += s->bad_channel;
	out->mailbox_overflow += s->mailbox_overflow;
	out->emitted += s->emitted;
	out->nomem += s->nomem;
}

/* Moves one closed window into the queue, or counts and logs its loss. */
static void
input_enqueue(struct coalesce_event *ev, uint64_t now)
{
	uint64_t n;

	if (queue_push(&pusher_queue, ev) == 0) {
		pusher_counters.queued++;
		return;
	}
	pusher_counters.queue_dropped++;
	if (ratelimit_pass(&rl_queue, now, &n))
		log_warn("queue full (%zu change events waiting for Redis, queue_max %lld): dropped the change "
		    "for \"%s\" (%" PRIu64 " dropped in all, %" PRIu64 " such lines suppressed)",
		    pusher_queue.len, popt(POPT_QUEUE_MAX), ev->channel, pusher_counters.queue_dropped, n);
}

/* Hands every JMAP window due at now to the queue (a full queue drops it, counted and logged). */
static void
input_flush_jmap(uint64_t now)
{
	struct jmap_update u;
	uint64_t n;

	while (jw != NULL && jmap_windows_pop_due(jw, now, &u) == 1) {
		log_debug("jmap: states of \"%s\": %u notifications", u.channel, u.notifications);
		if (queue_push_jmap(&pusher_queue, &u) == 0) {
			pusher_counters.queued++;
			continue;
		}
		pusher_counters.queue_dropped++;
		if (ratelimit_pass(&rl_queue, now, &n))
			log_warn("queue full (%zu events waiting for Redis, queue_max %lld): dropped the JMAP "
			    "states of \"%s\" (%" PRIu64 " such lines suppressed)", pusher_queue.len,
			    popt(POPT_QUEUE_MAX), u.channel, n);
	}
}

/* Hands every window due at now (COALESCE_NEVER: all of them) to the queue. */
static void
input_flush(uint64_t now)
{
	struct coalesce_event ev = { 0 };
	int r;

	input_flush_jmap(now);
	while ((r = coalesce_pop_due(coal, now, &ev)) != 0) {
		if (r == 1) {
			log_debug("change for \"%s\": %u notifications", ev.channel, ev.notifications);
			input_enqueue(&ev, now == COALESCE_NEVER ? pusher_now_ms() : now);
		} else {
			log_error("coalesce: %s", coalesce_error(coal));
		}
		coalesce_event_clear(&ev);
	}
	pub_kick();
}

/* Arms the window timer for the earliest open window. */
static void
input_schedule(uint64_t now)
{
	uint64_t next = coalesce_next_deadline(coal);
	struct timeval tv;

	if (jw != NULL && jmap_windows_next_deadline(jw) < next)
		next = jmap_windows_next_deadline(jw);

	if (next == COALESCE_NEVER) {
		event_del(window_ev);
		return;
	}
	next = next > now ? next - now : 0;
	tv.tv_sec = (time_t)(next / 1000);
	tv.tv_usec = (suseconds_t)(next % 1000) * 1000;
	event_add(window_ev, &tv);
}

/* A window closed. */
static void
input_on_window(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = pusher_now_ms();

	(void)fd;
	(void)what;
	(void)arg;
	input_flush(now);
	input_schedule(now);
}

/* Parses one datagram and folds it in; every failure is counted and logged (escaped). */
static void
input_datagram(size_t len, uint64_t now)
{
	char err[128], esc[LOG_ESCAPE_SIZE];
	unsigned flags = popt(POPT_VIRTDOMAINS) ? 0 : NOTIFY_NO_VIRTDOMAINS;
	uint64_t n;

	if (len > NOTIFY_DATAGRAM_MAX || notify_parse_flags(buf, len, flags, &msg, err, sizeof err) == -1) {
		if (len > NOTIFY_DATAGRAM_MAX)
			snprintf(err, sizeof err, "larger than %d bytes", NOTIFY_DATAGRAM_MAX);
		pusher_counters.parse_errors++;
		if (ratelimit_pass(&rl_bad, now, &n))
			log_warn("notify: malformed datagram (%zu bytes, %" PRIu64 " in all, %" PRIu64
			    " such lines suppressed): %s: \"%s\"", len, pusher_counters.parse_errors, n, err,
			    log_escape(esc, buf, len > NOTIFY_DATAGRAM_MAX ? NOTIFY_DATAGRAM_MAX : len));
		return;
	}
	if (log_enabled(LOG_DEBUG))
		log_debug("notify: %s %s owner \"%s\" mailbox \"%s\" session \"%s\"",
		    notify_class_name(msg.cls), msg.event, log_escape(esc, msg.owner, strlen(msg.owner)),
		    msg.mailbox, msg.session);
	if (jw != NULL && jmap_windows_add(jw, &msg, now) == -1) {
		pusher_counters.jmap_dropped++;
		if (ratelimit_pass(&rl_jmap, now, &n))
			log_warn("jmap: %s states for \"%s\" dropped: max_users accounts have an open window, "
			    "or channel_format gives no valid channel (%" PRIu64 " such lines suppressed)",
			    msg.event, log_escape(esc, msg.owner, strlen(msg.owner)), n);
	}
	if (coalesce_add(coal, &msg, now) == -1 && ratelimit_pass(&rl_drop_user, now, &n))
		log_warn("notify: %s event for \"%s\" dropped: %s (%" PRIu64 " such lines suppressed)",
		    msg.event, log_escape(esc, msg.owner, strlen(msg.owner)), coalesce_error(coal), n);
}

/*
 * The socket is readable: read until it is empty (or PUSHER_DRAIN_BATCH datagrams, after
 * which libevent calls again at once). Nothing in here waits: Cyrus blocks in sendto()
 * once about ten datagrams are queued.
 */
static void
input_on_readable(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = pusher_now_ms(), n;
	ssize_t len;
	int i;

	(void)what;
	(void)arg;
	for (i = 0; i < PUSHER_DRAIN_BATCH; i++) {
		/* MSG_TRUNC: the real length of a datagram larger than buf. */
		len = recv(fd, buf, sizeof buf, MSG_DONTWAIT | MSG_TRUNC);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK && ratelimit_pass(&rl_recv, now, &n))
				log_error("notify: recv: %s", strerror(errno));
			break;
		}
		pusher_counters.datagrams++;
		pusher_counters.bytes += (uint64_t)len;
		input_datagram((size_t)len, now);
	}
	/* A window of 0 ms (or one that closed meanwhile) is published right after the burst. */
	input_flush(now);
	input_schedule(now);
}

/* Makes room for the socket: a stale socket file goes, anything else is an error. */
static int
input_unlink_stale(const char *path)
{
	struct stat st;

	if (lstat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("notify_socket %s exists and is not a socket", path);
		return -1;
	}
	return unlink(path);
}

/* Binds notify_socket with its mode and group. */
static int
input_bind(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *group = popt_str(POPT_NOTIFY_SOCKET_GROUP);
	mode_t mode = (mode_t)strtol(popt_str(POPT_NOTIFY_SOCKET_MODE), NULL, 8);
	struct group *gr;

	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
	if ((sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1 ||
	    input_unlink_stale(path) == -1 || bind(sock, (struct sockaddr *)&sa, sizeof sa) == -1) {
		log_error("notify_socket %s: %s", path, strerror(errno));
		return -1;
	}
	bound_path = true;
	if (*group != '\0' && ((gr = getgrnam(group)) == NULL || chown(path, (uid_t)-1, gr->gr_gid) == -1)) {
		log_error("notify_socket %s: group %s: %s", path, group, gr == NULL ? "unknown" : strerror(errno));
		return -1;
	}
	if (chmod(path, mode) == -1) {
		log_error("notify_socket %s: chmod: %s", path, strerror(errno));
		return -1;
	}
	snprintf(describe, sizeof describe, "%s", path);
	return 0;
}

/*
 * Takes an inherited datagram socket: Cyrus master binds notifysocket for its notify
 * service and starts the service with the socket as fd 4 (its LISTEN_FD; Cyrus's own
 * services move it to fd 0 themselves) and a status pipe as fd 3, which we leave alone.
 */
static int
input_inherited(int fd)
{
	int type = 0;
	socklen_t tl = sizeof type;

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == -1 || type != SOCK_DGRAM) {
		log_error("notify_socket %s: fd %d is not a datagram socket (%s)",
		    popt_str(POPT_NOTIFY_SOCKET), fd, type ? "wrong socket type" : strerror(errno));
		return -1;
	}
	sock = fd;
	if (fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK) == -1 ||
	    fcntl(sock, F_SETFD, FD_CLOEXEC) == -1) {
		log_error("notify_socket %s: %s", popt_str(POPT_NOTIFY_SOCKET), strerror(errno));
		return -1;
	}
	snprintf(describe, sizeof describe, "fd %d (inherited%s)", fd,
	    fd == PUSHER_MASTER_FD ? ", from Cyrus master" : "");
	return 0;
}

/* Asks for a large receive buffer: bursts wait in the kernel, not in Cyrus. */
static void
input_rcvbuf(void)
{
	int want = (int)popt(POPT_NOTIFY_RCVBUF), got = 0;
	socklen_t gl = sizeof got;

	if (setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof want) == -1)
		setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &want, sizeof want);
	getsockopt(sock, SOL_SOCKET, SO_RCVBUF, &got, &gl);
	log_debug("notify: receive buffer %d bytes", got);
}

/* Opens the input, the coalescer and their events. */
int
input_open(void)
{
	struct coalesce_config cc;
	char err[160];
	const char *path = popt_str(POPT_NOTIFY_SOCKET);

	options_coalesce_config(pusher_config, &cc);
	if ((coal = coalesce_new(&cc, err, sizeof err)) == NULL) {
		log_error("coalesce: %s", err);
		return -1;
	}
	/* The window length, bound and channel_format are read once: a reload keeps them. */
	if (popt(POPT_JMAP_STATES) && (jw = jmap_windows_new(cc.coalesce_ms, cc.max_users,
	    cc.channel_format)) == NULL) {
		log_error("jmap: out of memory");
		return -1;
	}
	if ((options_socket_fd(path) >= 0 ? input_inherited(options_socket_fd(path)) : input_bind(path)) == -1)
		return -1;
	input_rcvbuf();
	if ((read_ev = event_new(pusher_base, sock, EV_READ | EV_PERSIST, input_on_readable, NULL)) == NULL ||
	    (window_ev = evtimer_new(pusher_base, input_on_window, NULL)) == NULL ||
	    event_add(read_ev, NULL) == -1)
		return -1;
	return 0;
}

/*
 * Swaps in a coalescer built from a reloaded config: the open windows of the old one are
 * closed now and queued, so nothing is lost across a reload.
 */
void
input_set_coalescer(struct coalesce *c)
{
	struct coalesce_stats s;

	input_flush(COALESCE_NEVER);
	input_coalesce_stats(&s);
	coal_base = s;
	coalesce_free(coal);
	coal = c;
	input_schedule(pusher_now_ms());
}

/* Stops reading (SIGTERM): the socket goes, open windows are closed and queued. */
void
input_close(void)
{
	if (read_ev != NULL)
		event_free(read_ev);
	read_ev = NULL;
	if (sock != -1) {
		close(sock);
		if (bound_path)
			unlink(popt_str(POPT_NOTIFY_SOCKET));
		sock = -1;
	}
	if (coal != NULL) {
		input_flush(COALESCE_NEVER);
		if (window_ev != NULL)
			event_free(window_ev);
		window_ev = NULL;
	}
}

/* Frees the coalescer (at exit, after input_close). */
void
input_free(void)
{
	coalesce_free(coal);
	coal = NULL;
	jmap_windows_free(jw);
	jw = NULL;
}
