/*
 * ssepush-pusher: command-line flags, configuration loading and reload, start-up, the
 * one libevent loop everything runs on (notify socket, Redis, metrics listener), signals (as libevent events: the handlers only
 * write to libevent's pipe), and the bounded shutdown that publishes what it can.
 */
#include "pusher.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log.h"

struct config *pusher_config;
struct pusher_counters pusher_counters;
struct event_base *pusher_base;
struct queue pusher_queue;

static const char *config_path;
static int override_argc;
static char **override_argv;
static bool verbose;
static uint64_t stop_deadline;
static struct event *stop_ev;

/* Milliseconds on the monotonic clock. */
uint64_t
pusher_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* An integer directive of the live config. */
long long
popt(enum popt o)
{
	return config_int(pusher_config, (int)o);
}

/* A string directive of the live config (borrowed until the next reload). */
const char *
popt_str(enum popt o)
{
	return config_str(pusher_config, (int)o);
}

/* Prints usage and every directive with its default. */
static void
usage(FILE *out)
{
	fprintf(out, "usage: ssepush-pusher [-f file] [-n] [-v] [-V] [-h] [--directive value ...]\n"
	    "  -f file  read this configuration file\n"
	    "  -n       check the configuration, print \"configuration OK\" and exit\n"
	    "  -v       log at debug level\n"
	    "  -V       print the version and exit\n"
	    "  -h       print this help and the directives\n\n");
	config_print_defaults(pusher_directives, POPT_COUNT, out);
}

/* Builds a config from the defaults, the command-line overrides and the file. */
static struct config *
load_config(config_error_fn *report)
{
	return config_load(pusher_directives, POPT_COUNT, config_path, override_argc, override_argv,
	    report, NULL);
}

/* Applies the values that follow from the config (log level, queue bound, stats timer). */
static void
apply_config(void)
{
	log_set_level(verbose ? LOG_DEBUG : (enum log_level)popt(POPT_LOG_LEVEL));
	pusher_queue.max = (size_t)popt(POPT_QUEUE_MAX);
}

/*
 * SIGHUP: validates the file and a coalescer built from it before anything changes;
 * then takes every reloadable value (directives that need a restart keep theirs and
 * are reported) and swaps the coalescer, closing the open windows into the queue.
 */
static void
reload(void)
{
	struct config *fresh = load_config(log_report_error);
	struct coalesce_config cc;
	struct coalesce *nc = NULL;
	char err[160];
	int i;

	if (fresh != NULL) {
		options_coalesce_config(fresh, &cc);
		if ((nc = coalesce_new(&cc, err, sizeof err)) == NULL)
			log_error("coalesce: %s", err);
	}
	if (nc == NULL) {
		config_free(fresh);
		log_error("reload: failed, keeping old config");
		return;
	}
	config_reload_check(pusher_config, fresh, log_report_error, NULL);
	for (i = 0; i < POPT_COUNT; i++) {
		union config_value v;

		if (!pusher_directives[i].reloadable)
			continue;
		v = pusher_config->values[i];
		pusher_config->values[i] = fresh->values[i];
		fresh->values[i] = v;	/* fresh frees the old value */
	}
	config_free(fresh);
	input_set_coalescer(nc);
	apply_config();
	stats_reschedule();
	pub_kick();
	log_info("reload: ok");
}

/* Publishes what is queued until the queue is empty or the grace time is over. */
static void
on_stop_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (pusher_queue.len == 0 || pusher_now_ms() >= stop_deadline)
		event_base_loopbreak(pusher_base);
}

/* SIGTERM/SIGINT: stop reading, close every window, then give Redis a bounded time. */
static void
begin_stop(void)
{
	struct timeval tick = { 0, 20000 };

	if (stop_ev != NULL)
		return;
	log_info("terminating");
	input_close();
	stop_deadline = pusher_now_ms() + PUSHER_STOP_GRACE_MS;
	if ((stop_ev = event_new(pusher_base, -1, EV_PERSIST, on_stop_tick, NULL)) == NULL ||
	    event_add(stop_ev, &tick) == -1)
		event_base_loopbreak(pusher_base);
}

/* Every signal the daemon handles. */
static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGHUP)
		reload();
	else if (sig == SIGUSR1)
		stats_log("signal");
	else
		begin_stop();
}

/* Handles one single-letter flag; returns false for an unknown one. */
static bool
parse_flag(char f, bool *check)
{
	switch (f) {
	case 'n': *check = true; return true;
	case 'v': verbose = true; return true;
	case 'V': printf("ssepush-pusher %s\n", PUSHER_VERSION); exit(0);
	case 'h': usage(stdout); exit(0);
	default: return false;
	}
}

/*
 * Parses the daemon's flags (-f FILE, -n, -v, -V, -h, in any order) and sets aside
 * every "--directive value" pair for config_load_args. Returns whether -n was given.
 */
static bool
parse_flags(int argc, char **argv)
{
	static char *rest[256];
	bool check = false;
	int i;
	const char *p;

	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "--", 2) == 0) {
			if (override_argc + 2 > (int)(sizeof rest / sizeof rest[0]))
				fatal("command line: too many arguments");
			rest[override_argc++] = argv[i];
			if (strchr(argv[i], '=') == NULL && i + 1 < argc)
				rest[override_argc++] = argv[++i];
		} else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
			config_path = argv[++i];
		} else if (argv[i][0] == '-' && argv[i][1] != '\0' && argv[i][1] != 'f') {
			for (p = argv[i] + 1; *p != '\0'; p++)
				if (!parse_flag(*p, &check)) {
					fprintf(stderr, "ssepush-pusher: unknown flag -%c\n", *p);
					usage(stderr);
					exit(1);
				}
		} else {
			fprintf(stderr, "ssepush-pusher: unexpected argument '%s'\n", argv[i]);
			usage(stderr);
			exit(1);
		}
	}
	override_argv = rest;
	return check;
}

/* Logs what SIGTERM could not publish, then frees everything. */
static void
finish(void)
{
	metrics_stop();
	pub_stop();
	if (pusher_queue.len > 0)
		log_warn("terminating: %zu change events could not be published to Redis", pusher_queue.len);
	stats_log("exit");
	queue_clear(&pusher_queue);
	input_free();
	stats_stop();
	if (stop_ev != NULL)
		event_free(stop_ev);
}

int
main(int argc, char **argv)
{
	static const int sigs[] = { SIGHUP, SIGTERM, SIGINT, SIGUSR1 };
	struct event *sig_ev[4];
	bool check = parse_flags(argc, argv);
	unsigned seed = 0;
	size_t i;

	if ((pusher_config = load_config(log_report_stderr)) == NULL)
		return 1;
	if (metrics_check(pusher_config, config_path, log_report_stderr, NULL) != 0) {
		config_free(pusher_config);
		return 1;
	}
	if (check) {
		printf("configuration OK\n");
		config_free(pusher_config);
		return 0;
	}
	apply_config();
	signal(SIGPIPE, SIG_IGN);
	if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		fatal("getrandom: %s", strerror(errno));
	srandom(seed);
	queue_init(&pusher_queue, (size_t)popt(POPT_QUEUE_MAX));
	if ((pusher_base = event_base_new()) == NULL)
		fatal("start-up failed: event_base_new");
	for (i = 0; i < 4; i++)
		if ((sig_ev[i] = evsignal_new(pusher_base, sigs[i], on_signal, NULL)) == NULL ||
		    event_add(sig_ev[i], NULL) == -1)
			fatal("start-up failed: signals");
	if (input_open() == -1 || stats_start() == -1 || pub_start() == -1 || metrics_start() == -1)
		fatal("start-up failed");
	log_info("ready: listening on %s", input_describe());
	event_base_dispatch(pusher_base);
	finish();
	for (i = 0; i < 4; i++)
		event_free(sig_ev[i]);
	event_base_free(pusher_base);
	config_free(pusher_config);
	return 0;
}
