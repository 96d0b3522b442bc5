/*
 * ssepush-broker: command-line flags, configuration loading and reload, start-up,
 * signal handling in one thread, and the orderly shutdown that ends every stream
 * before the daemons stop.
 */
#include "broker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "channel.h"
#include "fanout.h"
#include "log.h"
#include "repoll.h"
#include "upstream.h"
#include "stream.h"
#include "webpush.h"

static void
main_repoll_event(void *r, uint32_t events)
{
	repoll_event(r, events);
}

/* The watcher's calls into the layers above it. */
static const struct watcher_hooks watcher_hooks = {
	.end_taken = subscribe_end_taken,
	.repoll_event = main_repoll_event,
	.repoll_tick = repoll_tick,
	.repoll_reap = repoll_reap,
	.repoll_close_all = repoll_close_all,
};

static const char *config_path;
static int override_argc;
static char **override_argv;
static const char *mint_channel, *mint_session, *mint_ttl;	/* --mint-token */

/* Prints usage and every directive with its default. */
static void
usage(FILE *out)
{
	fprintf(out, "usage: ssepush-broker [-f file] [-n] [-v] [-V] [-h] [--directive value ...]\n"
	    "       ssepush-broker [-f file] --mint-token CHANNEL [--session S] [--ttl SECONDS]\n"
	    "       ssepush-broker --webpush-genkey\n"
	    "  -f file  read this configuration file\n"
	    "  -n       check the configuration, print \"configuration OK\" and exit\n"
	    "  -v       log at debug level\n"
	    "  -V       print the version and exit\n"
	    "  -h       print this help and the directives\n"
	    "  --mint-token CHANNEL  print a subscriber token signed with token_secret\n"
	    "           (--session: its sid; --ttl: seconds it stays valid, default 3600)\n"
	    "  --webpush-genkey  print a new VAPID key (PEM P-256) for webpush_vapid_key_file\n\n");
	config_print_defaults(broker_directives, OPT_COUNT, out);
}

/* Builds a config from the defaults, the command-line overrides and the file, then
 * checks what only the broker knows (auth and listen addresses, secrets on disk). */
static struct config *
load_config(config_error_fn *report)
{
	struct config *c = config_load(broker_directives, OPT_COUNT, config_path, override_argc,
	    override_argv, report, NULL);

	/* both checks run, so one run reports every error */
	if (c != NULL && ((auth_check_config(c, config_path, report, NULL) != 0) |
	    (webpush_check_config(c, config_path, report, NULL) != 0))) {
		config_free(c);
		return NULL;
	}
	if (c != NULL)
		jmap_check_config(c);
	return c;
}

/* Re-reads the configuration on SIGHUP; an invalid file leaves everything as it was. */
static void
reload(void)
{
	struct config *fresh = load_config(log_report_error);
	int i;

	if (fresh == NULL) {
		log_error("reload: failed, keeping old config");
		return;
	}
	config_reload_check(broker_config, fresh, log_report_error, NULL);
	for (i = 0; i < OPT_COUNT; i++)
		if (broker_directives[i].reloadable && broker_directives[i].type != CONFIG_STRING)
			broker_config->values[i].i = fresh->values[i].i;
	config_free(fresh);
	options_snapshot(broker_config);
	log_info("reload: ok");
}

/* Seeds the retry jitter. */
static void
init_random(void)
{
	unsigned seed;

	if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		fatal("getrandom: %s", strerror(errno));
	srandom(seed);
}

/*
 * Direct writes rely on how one libmicrohttpd version treats suspended connections
 * (broker.h, threads and locks): under another, they are turned off.
 */
static void
check_mhd_version(void)
{
	const char *v = MHD_get_version();

	if (v != NULL && strcmp(v, BROKER_MHD_VERSION) == 0) {
		request_check_lines(true);
		return;
	}
	log_warn("libmicrohttpd %s is not %s, whose handling of suspended connections direct writes were checked against: direct writes are off",
	    v != NULL ? v : "(unknown)", BROKER_MHD_VERSION);
	subscribe_allow_direct(false);
}

/* Every open file is a subscriber: take the hard limit. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur < (rlim_t)opt(OPT_MAX_CONNECTIONS) + 64)
		log_warn("open file limit %llu is below max_connections %lld: connections beyond it are refused",
		    (unsigned long long)rl.rlim_cur, opt(OPT_MAX_CONNECTIONS));
}

/* Ends every stream cleanly, waits for them (bounded), then stops the daemons. */
static void
shutdown_broker(void)
{
	struct timespec ms20 = { 0, 20 * 1000 * 1000 };
	int waited = 0;

	log_info("terminating");
	shard_quiesce_all();
	webpush_stop();		/* registration requests it holds get their answers and resume */
	bus->stop();		/* requests waiting on Redis get their answers and resume */
	upstream_stop();	/* requests waiting for auth upstream get 503 and resume */
	stream_end_all(false);
	shard_run_served();	/* this thread runs the bus's daemon from here */
	while (atomic_load(&counters.streams) > 0 && waited < BROKER_STOP_GRACE_MS) {
		nanosleep(&ms20, NULL);
		shard_run_served();
		waited += 20;
		/* Streams that started while we walked; at the end of the grace, cut the rest
		 * (MHD must not stop with a suspended connection). */
		stream_end_all(waited >= BROKER_STOP_GRACE_MS - 500);
	}
	repoll_stop();		/* nothing goes back to the loops from here */
	shard_stop_all();
	fanout_stop();		/* after the last publisher: the bus's thread and every loop are gone */
	watcher_stop();
	channel_table_free();
}

/* Handles one single-letter flag; returns false for an unknown one. */
static bool
parse_flag(char f, bool *check)
{
	switch (f) {
	case 'n': *check = true; return true;
	case 'v': log_set_level(LOG_DEBUG); return true;
	case 'V': printf("ssepush-broker %s\n", BROKER_VERSION); exit(0);
	case 'h': usage(stdout); exit(0);
	default: return false;
	}
}

/* Takes --mint-token, --session and --ttl with their value; false for other arguments. */
static bool
parse_mint_flag(int argc, char **argv, int *i)
{
	const char **slot;

	if (strcmp(argv[*i], "--mint-token") == 0)
		slot = &mint_channel;
	else if (strcmp(argv[*i], "--session") == 0)
		slot = &mint_session;
	else if (strcmp(argv[*i], "--ttl") == 0)
		slot = &mint_ttl;
	else
		return false;
	if (*i + 1 >= argc) {
		fprintf(stderr, "ssepush-broker: %s needs a value\n", argv[*i]);
		exit(1);
	}
	*slot = argv[++*i];
	return true;
}

/* Prints a token for --mint-token with the loaded config's secret; returns the exit code. */
static int
mint_token(void)
{
	char *end;
	long long ttl = 3600;

	if (mint_ttl != NULL) {
		ttl = strtoll(mint_ttl, &end, 10);
		if (*mint_ttl < '0' || *mint_ttl > '9' || *end != '\0') {
			fprintf(stderr, "ssepush-broker: --ttl: '%s' is not a number of seconds\n", mint_ttl);
			return 1;
		}
	}
	if (auth_init(broker_config) == -1)
		return 1;
	return auth_mint(mint_channel, mint_session, ttl, stdout) == 0 ? 0 : 1;
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
		if (parse_mint_flag(argc, argv, &i)) {
			continue;
		} else if (strcmp(argv[i], "--webpush-genkey") == 0) {
			exit(webpush_key_print_new(stdout) == 0 ? 0 : 1);
		} else if (strncmp(argv[i], "--", 2) == 0) {
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
					fprintf(stderr, "ssepush-broker: unknown flag -%c\n", *p);
					usage(stderr);
					exit(1);
				}
		} else {
			fprintf(stderr, "ssepush-broker: unexpected argument '%s'\n", argv[i]);
			usage(stderr);
			exit(1);
		}
	}
	override_argv = rest;
	if (mint_channel == NULL && (mint_session != NULL || mint_ttl != NULL)) {
		fprintf(stderr, "ssepush-broker: --session and --ttl go with --mint-token\n");
		exit(1);
	}
	return check;
}

/* Waits for signals in the main thread: HUP reloads, TERM and INT stop. */
static void
signal_loop(const sigset_t *set)
{
	int sig;

	for (;;) {
		if (sigwait(set, &sig) != 0)
			continue;
		if (sig == SIGHUP)
			reload();
		else if (sig == SIGTERM || sig == SIGINT)
			return;
	}
}

int
main(int argc, char **argv)
{
	sigset_t set;
	bool check = parse_flags(argc, argv), verbose = false;

	verbose = log_enabled(LOG_DEBUG);
	if ((broker_config = load_config(log_report_stderr)) == NULL)
		return 1;
	if (check) {
		printf("configuration OK\n");
		config_free(broker_config);
		return 0;
	}
	if (mint_channel != NULL) {
		int rc;

		options_snapshot(broker_config);	/* max_token_lifetime bounds --ttl */
		rc = mint_token();

		auth_free();
		config_free(broker_config);
		return rc;
	}
	options_snapshot(broker_config);
	stream_set_poll_end(subscribe_end_poll);	/* stream.c is below subscribe.c */
	if (verbose)
		log_set_level(LOG_DEBUG);
	/* MHD and the reaper start threads: they must inherit a mask with these blocked. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	init_random();
	raise_nofile();
	check_mhd_version();
	if (auth_init(broker_config) == -1)
		fatal("start-up failed");
	conn_init(auth_trusted());
	/* The one place that chooses the bus: nothing else asks which one is active. */
	bus = *opt_str(OPT_REDIS) != '\0' ? &bus_redis : &bus_local;
	if (channel_table_init(bus->floor) == -1 || fanout_start() == -1 || bus->start() == -1 ||
	    watcher_start(&watcher_hooks) == -1 || upstream_start() == -1 ||
	    webpush_start() == -1 || shard_start_all() == -1)
		fatal("start-up failed");
	log_info("ready: listening on %s", shard_listen_addr());
	signal_loop(&set);
	shutdown_broker();
	auth_free();
	config_free(broker_config);
	return 0;
}
