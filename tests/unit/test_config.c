/*
 * Unit tests for the generic configuration engine (common/config.c): value parsing for
 * every type with its bounds, file syntax and error reporting, command-line overrides
 * and precedence, reload checks, formatting, and the print-defaults round trip.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static const char *const auth_choices[] = { "none", "token", "proxy", NULL };

/* Requires a ':' so the check callback path is exercised. */
static int check_listen(const char *value, char *err, size_t errlen)
{
	if (strchr(value, ':') == NULL) {
		snprintf(err, errlen, "'%s' has no ':port'", value);
		return -1;
	}
	return 0;
}

enum {
	D_PING, D_WORKERS, D_OFFSET, D_MAX_BODY, D_DAEMONIZE, D_AUTH, D_LISTEN, D_MOTD,
	D_BANNER, D_COUNT
};

static const struct config_directive table[] = {
	{ "ping_interval", CONFIG_SECONDS, 30, 86400, "30s", NULL, true, NULL,
	  "Seconds between keep-alive pings" },
	{ "workers", CONFIG_INT, 1, 64, "4", NULL, false, NULL, "Worker threads" },
	{ "offset", CONFIG_INT, -100, 100, "-5", NULL, true, NULL, "Signed offset" },
	{ "max_body", CONFIG_SIZE, 1024, 1LL << 30, "64k", NULL, false, NULL,
	  "Largest request body" },
	{ "daemonize", CONFIG_BOOL, 0, 1, "off", NULL, false, NULL, "Run in the background" },
	{ "auth", CONFIG_ENUM, 0, 0, "none", auth_choices, false, NULL, "Publisher auth" },
	{ "listen", CONFIG_STRING, 1, 255, "127.0.0.1:8080", NULL, false, check_listen,
	  "Address and port" },
	{ "motd", CONFIG_STRING, 0, 64, "", NULL, true, NULL, "Greeting, may be empty" },
	{ "banner", CONFIG_STRING, 0, 128, "say \"hi\" # \\o/", NULL, true, NULL,
	  "Banner with awkward characters" },
};

/* Collects reported messages so tests can assert on them. */
struct sink {
	char *msg[128];
	int n;
};

static void sink_report(void *arg, const char *msg)
{
	struct sink *s = arg;

	if (s->n < 128)
		s->msg[s->n++] = strdup(msg);
}

static void sink_clear(struct sink *s)
{
	for (int k = 0; k < s->n; k++)
		free(s->msg[k]);
	s->n = 0;
}

static char tmp_dir[] = "/tmp/test_config.XXXXXX";

/* Writes content to a fresh file in the temp dir; path receives its name. */
static void write_temp(const char *content, size_t len, char *path, size_t pathlen)
{
	int fd;

	snprintf(path, pathlen, "%s/cfg.XXXXXX", tmp_dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(tmp_dir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	return rmdir(tmp_dir);
}

/* Copies string literals into a writable, NULL-terminated argv; free with free_argv. */
static char **make_argv(const char *const *src, int n)
{
	char **argv = calloc((size_t)n + 1, sizeof *argv);

	assert_non_null(argv);
	for (int k = 0; k < n; k++) {
		argv[k] = strdup(src[k]);
		assert_non_null(argv[k]);
	}
	return argv;
}

static void free_argv(char **argv)
{
	for (int k = 0; argv[k] != NULL; k++)
		free(argv[k]);
	free(argv);
}

/* Loads text as a config file into c and returns config_load_file's result. */
static int load_text(struct config *c, const char *text, struct sink *s, char *path, size_t pathlen)
{
	int rc;

	write_temp(text, strlen(text), path, pathlen);
	rc = config_load_file(c, path, sink_report, s);
	assert_int_equal(unlink(path), 0);
	return rc;
}

struct value_case {
	const char *name;
	const char *value;
	bool ok;
	long long want;		/* integer types when ok */
	const char *text;	/* STRING value when ok; error substring when not */
};

static const struct value_case value_cases[] = {
	{ "ping_interval", "30", true, 30, NULL },
	{ "ping_interval", "45s", true, 45, NULL },
	{ "ping_interval", "2m", true, 120, NULL },
	{ "ping_interval", "1h", true, 3600, NULL },
	{ "ping_interval", "1d", true, 86400, NULL },
	{ "ping_interval", "99999", false, 0, "ping_interval: 99999 is above the maximum 86400" },
	{ "ping_interval", "29", false, 0, "ping_interval: 29 is below the minimum 30" },
	{ "ping_interval", "2d", false, 0, "ping_interval: 2d (172800) is above the maximum 86400" },
	{ "ping_interval", "10x", false, 0, "ping_interval: '10x' is not a valid duration" },
	{ "ping_interval", "1H", false, 0, "is not a valid duration" },
	{ "ping_interval", "-60", false, 0, "is not a valid duration" },
	{ "ping_interval", "", false, 0, "ping_interval: empty value" },
	{ "ping_interval", "s", false, 0, "is not a valid duration" },
	{ "workers", "1", true, 1, NULL },
	{ "workers", "64", true, 64, NULL },
	{ "workers", "007", true, 7, NULL },
	{ "workers", "0", false, 0, "workers: 0 is below the minimum 1" },
	{ "workers", "65", false, 0, "workers: 65 is above the maximum 64" },
	{ "workers", "4x", false, 0, "workers: '4x' is not a valid integer" },
	{ "workers", " 4", false, 0, "is not a valid integer" },
	{ "workers", "+4", false, 0, "is not a valid integer" },
	{ "workers", "-1", false, 0, "is not a valid integer" },
	{ "workers", "4k", false, 0, "is not a valid integer" },
	{ "workers", "99999999999999999999", false, 0, "is out of range" },
	{ "workers", "9223372036854775807", false, 0, "is above the maximum 64" },
	{ "offset", "-100", true, -100, NULL },
	{ "offset", "100", true, 100, NULL },
	{ "offset", "-101", false, 0, "offset: -101 is below the minimum -100" },
	{ "offset", "-", false, 0, "is not a valid integer" },
	{ "offset", "--5", false, 0, "is not a valid integer" },
	{ "max_body", "1024", true, 1024, NULL },
	{ "max_body", "64k", true, 65536, NULL },
	{ "max_body", "64K", true, 65536, NULL },
	{ "max_body", "1m", true, 1048576, NULL },
	{ "max_body", "3M", true, 3145728, NULL },
	{ "max_body", "1g", true, 1073741824, NULL },
	{ "max_body", "2G", false, 0, "max_body: 2G (2147483648) is above the maximum 1073741824" },
	{ "max_body", "1023", false, 0, "max_body: 1023 is below the minimum 1024" },
	{ "max_body", "64kb", false, 0, "max_body: '64kb' is not a valid size" },
	{ "max_body", "k", false, 0, "is not a valid size" },
	{ "max_body", "9007199254740992g", false, 0, "is out of range" },
	{ "daemonize", "on", true, 1, NULL },
	{ "daemonize", "off", true, 0, NULL },
	{ "daemonize", "yes", true, 1, NULL },
	{ "daemonize", "no", true, 0, NULL },
	{ "daemonize", "true", true, 1, NULL },
	{ "daemonize", "false", true, 0, NULL },
	{ "daemonize", "1", true, 1, NULL },
	{ "daemonize", "0", true, 0, NULL },
	{ "daemonize", "ON", true, 1, NULL },
	{ "daemonize", "Yes", true, 1, NULL },
	{ "daemonize", "FALSE", true, 0, NULL },
	{ "daemonize", "2", false, 0, "daemonize: '2' is not a boolean" },
	{ "daemonize", "enable", false, 0, "is not a boolean" },
	{ "daemonize", "", false, 0, "daemonize: empty value" },
	{ "auth", "none", true, 0, NULL },
	{ "auth", "token", true, 1, NULL },
	{ "auth", "proxy", true, 2, NULL },
	{ "auth", "foo", false, 0, "auth: 'foo' is not one of none, token, proxy" },
	{ "auth", "", false, 0, "auth: empty value" },
	{ "listen", "0.0.0.0:80", true, 0, "0.0.0.0:80" },
	{ "listen", "", false, 0, "listen: length 0 is below the minimum 1" },
	{ "listen", "noport", false, 0, "listen: 'noport' has no ':port'" },
	{ "motd", "", true, 0, "" },
	{ "motd", "hello world", true, 0, "hello world" },
	{ "motd", "tab\there", true, 0, "tab\there" },
	{ "motd", "line\nbreak", false, 0, "motd: control characters are not allowed" },
	{ "motd", "0123456789012345678901234567890123456789012345678901234567890123", true, 0,
	  "0123456789012345678901234567890123456789012345678901234567890123" },
	{ "motd", "01234567890123456789012345678901234567890123456789012345678901234", false, 0,
	  "motd: length 65 is above the maximum 64" },
	{ "nosuch", "1", false, 0, "unknown directive 'nosuch'" },
};

/* Every case in value_cases either sets the value or fails with the expected message. */
static void test_set_value_cases(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof value_cases / sizeof value_cases[0]; k++) {
		const struct value_case *vc = &value_cases[k];
		struct config *c = config_new(table, D_COUNT);
		char err[256] = "";
		int rc, i;

		assert_non_null(c);
		rc = config_set(c, vc->name, vc->value, CONFIG_FILE, err, sizeof err);
		if (!vc->ok) {
			if (rc != -1 || strstr(err, vc->text) == NULL)
				fail_msg("case %zu %s='%s': rc %d err '%s', wanted '%s'", k, vc->name,
				    vc->value, rc, err, vc->text);
			config_free(c);
			continue;
		}
		if (rc != 0)
			fail_msg("case %zu %s='%s': unexpected error '%s'", k, vc->name, vc->value, err);
		i = config_find(c, vc->name);
		assert_int_equal(c->origin[i], CONFIG_FILE);
		if (table[i].type == CONFIG_STRING)
			assert_string_equal(config_str(c, i), vc->text);
		else if (config_int(c, i) != vc->want)
			fail_msg("case %zu %s='%s': got %lld, wanted %lld", k, vc->name, vc->value,
			    config_int(c, i), vc->want);
		config_free(c);
	}
}

/* A failed set leaves the previous value in place. */
static void test_set_failure_keeps_value(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	char err[256];

	(void)state;
	assert_non_null(c);
	assert_int_equal(config_set(c, "workers", "8", CONFIG_ARGV, err, sizeof err), 0);
	assert_int_equal(config_set(c, "workers", "99", CONFIG_FILE, err, sizeof err), -1);
	assert_int_equal(config_int(c, D_WORKERS), 8);
	assert_int_equal(c->origin[D_WORKERS], CONFIG_ARGV);
	assert_int_equal(config_set(c, "motd", "a", CONFIG_FILE, err, sizeof err), 0);
	assert_int_equal(config_set(c, "motd", "b", CONFIG_FILE, err, sizeof err), 0);
	assert_string_equal(config_str(c, D_MOTD), "b");
	config_free(c);
}

/* config_new holds the table defaults, all with origin DEFAULT. */
static void test_new_defaults(void **state)
{
	struct config *c = config_new(table, D_COUNT);

	(void)state;
	assert_non_null(c);
	assert_int_equal(config_int(c, D_PING), 30);
	assert_int_equal(config_int(c, D_WORKERS), 4);
	assert_int_equal(config_int(c, D_OFFSET), -5);
	assert_int_equal(config_int(c, D_MAX_BODY), 65536);
	assert_int_equal(config_int(c, D_DAEMONIZE), 0);
	assert_int_equal(config_int(c, D_AUTH), 0);
	assert_string_equal(config_str(c, D_LISTEN), "127.0.0.1:8080");
	assert_string_equal(config_str(c, D_MOTD), "");
	assert_string_equal(config_str(c, D_BANNER), "say \"hi\" # \\o/");
	for (int i = 0; i < D_COUNT; i++) {
		assert_int_equal(c->origin[i], CONFIG_DEFAULT);
		assert_int_equal(c->line[i], 0);
	}
	assert_int_equal(config_find(c, "auth"), D_AUTH);
	assert_int_equal(config_find(c, "aut"), -1);
	assert_int_equal(config_find(c, "authx"), -1);
	assert_string_equal(config_str(c, D_WORKERS), "");
	assert_int_equal(config_int(c, D_LISTEN), 0);
	assert_int_equal(config_int(c, -1), 0);
	assert_string_equal(config_str(c, D_COUNT), "");
	config_free(c);
	config_free(NULL);
}

/* A table whose default does not parse, or with a duplicate name, is refused. */
static void test_new_bad_default(void **state)
{
	static const struct config_directive bad_int[] = {
		{ "n", CONFIG_INT, 0, 10, "abc", NULL, false, NULL, "x" },
	};
	static const struct config_directive bad_range[] = {
		{ "n", CONFIG_INT, 0, 10, "11", NULL, false, NULL, "x" },
	};
	static const struct config_directive bad_enum[] = {
		{ "e", CONFIG_ENUM, 0, 0, "other", auth_choices, false, NULL, "x" },
	};
	static const struct config_directive dup[] = {
		{ "n", CONFIG_INT, 0, 10, "1", NULL, false, NULL, "x" },
		{ "n", CONFIG_INT, 0, 10, "1", NULL, false, NULL, "x" },
	};
	static const struct config_directive bad_check[] = {
		{ "l", CONFIG_STRING, 0, 10, "nope", NULL, false, check_listen, "x" },
	};

	(void)state;
	assert_null(config_new(bad_int, 1));
	assert_null(config_new(bad_range, 1));
	assert_null(config_new(bad_enum, 1));
	assert_null(config_new(dup, 2));
	assert_null(config_new(bad_check, 1));
}

/* Comments, quotes, escapes, trailing comments and blanks are handled as documented. */
static void test_file_syntax(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256];
	const char *text =
	    "# full-line comment\n"
	    "   \t# indented comment\n"
	    "\n"
	    "   \n"
	    "workers 8\n"
	    "listen \"0.0.0.0:9000\"   # trailing comment\n"
	    "motd \"hello # not a comment\"\n"
	    "  ping_interval\t 5m   # five minutes\n"
	    "max_body   128k   \n"
	    "daemonize yes\r\n"
	    "banner \"say \\\"hi\\\" \\\\ \\n\"\n"
	    "auth token#suffix-is-value # but this is a comment\n";

	(void)state;
	assert_non_null(c);
	assert_int_equal(load_text(c, text, &s, path, sizeof path), 1);
	assert_int_equal(s.n, 1);
	assert_non_null(strstr(s.msg[0], ":12: auth: 'token#suffix-is-value' is not one of"));
	assert_int_equal(config_int(c, D_WORKERS), 8);
	assert_string_equal(config_str(c, D_LISTEN), "0.0.0.0:9000");
	assert_string_equal(config_str(c, D_MOTD), "hello # not a comment");
	assert_int_equal(config_int(c, D_PING), 300);
	assert_int_equal(config_int(c, D_MAX_BODY), 131072);
	assert_int_equal(config_int(c, D_DAEMONIZE), 1);
	assert_string_equal(config_str(c, D_BANNER), "say \"hi\" \\ \\n");
	assert_int_equal(c->origin[D_WORKERS], CONFIG_FILE);
	assert_int_equal(c->line[D_WORKERS], 5);
	assert_int_equal(c->line[D_DAEMONIZE], 10);
	assert_int_equal(c->origin[D_AUTH], CONFIG_DEFAULT);
	assert_int_equal(c->origin[D_OFFSET], CONFIG_DEFAULT);
	sink_clear(&s);
	config_free(c);
}

/* Plain values keep a '#' not preceded by a blank; "" gives an empty string. */
static void test_file_hash_and_empty(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256];

	(void)state;
	assert_non_null(c);
	assert_int_equal(load_text(c, "motd a#b c\nbanner \"\"\n", &s, path, sizeof path), 0);
	assert_int_equal(s.n, 0);
	assert_string_equal(config_str(c, D_MOTD), "a#b c");
	assert_string_equal(config_str(c, D_BANNER), "");
	assert_int_equal(load_text(c, "motd x\"y\" z", &s, path, sizeof path), 0);
	assert_string_equal(config_str(c, D_MOTD), "x\"y\" z");
	sink_clear(&s);
	config_free(c);
}

/* One run reports every error with its line number and still applies the good lines. */
static void test_file_all_errors(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256], want[512];
	const char *text =
	    "workers 8\n"			/* 1 ok */
	    "bogus 1\n"				/* 2 unknown */
	    "workers 9\n"			/* 3 duplicate */
	    "ping_interval 99999\n"		/* 4 above max */
	    "listen\n"				/* 5 no value */
	    "# fine\n"				/* 6 */
	    "auth foo\n"			/* 7 bad enum */
	    "motd \"unterminated\n"		/* 8 */
	    "motd \"a\" b\n"			/* 9 */
	    "daemonize # only a comment\n"	/* 10 no value */
	    "offset 7\n";			/* 11 ok */
	static const char *const expect[] = {
	    ":2: unknown directive 'bogus'",
	    ":3: 'workers' already set at line 1",
	    ":4: ping_interval: 99999 is above the maximum 86400",
	    ":5: directive 'listen' needs a value",
	    ":7: auth: 'foo' is not one of none, token, proxy",
	    ":8: motd: unterminated quote",
	    ":9: motd: unexpected text after the closing quote",
	    ":10: directive 'daemonize' needs a value",
	};
	int n = (int)(sizeof expect / sizeof expect[0]);

	(void)state;
	assert_non_null(c);
	assert_int_equal(load_text(c, text, &s, path, sizeof path), n);
	assert_int_equal(s.n, n);
	for (int k = 0; k < n; k++) {
		snprintf(want, sizeof want, "%s%s", path, expect[k]);
		assert_string_equal(s.msg[k], want);
	}
	assert_int_equal(config_int(c, D_WORKERS), 8);
	assert_int_equal(config_int(c, D_OFFSET), 7);
	assert_int_equal(c->line[D_OFFSET], 11);
	assert_int_equal(config_int(c, D_PING), 30);
	sink_clear(&s);
	config_free(c);
}

/* A command-line value survives the file, but the file's value is still validated. */
static void test_file_argv_wins(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256];
	static const char *const args[] = { "--workers", "16", "--motd=from argv" };
	char **argv = make_argv(args, 3);

	(void)state;
	assert_non_null(c);
	assert_int_equal(config_load_args(c, 3, argv, sink_report, &s), 0);
	assert_int_equal(load_text(c, "workers 8\nmotd file\nauth proxy\n", &s, path, sizeof path), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(config_int(c, D_WORKERS), 16);
	assert_int_equal(c->origin[D_WORKERS], CONFIG_ARGV);
	assert_int_equal(c->line[D_WORKERS], 0);
	assert_string_equal(config_str(c, D_MOTD), "from argv");
	assert_int_equal(config_int(c, D_AUTH), 2);
	assert_int_equal(c->origin[D_AUTH], CONFIG_FILE);

	assert_int_equal(load_text(c, "workers 999\nworkers 2\n", &s, path, sizeof path), 2);
	assert_int_equal(s.n, 2);
	assert_non_null(strstr(s.msg[0], ":1: workers: 999 is above the maximum 64"));
	assert_non_null(strstr(s.msg[1], ":2: 'workers' already set at line 1"));
	assert_int_equal(config_int(c, D_WORKERS), 16);
	free_argv(argv);
	sink_clear(&s);
	config_free(c);
}

/* Lines over CONFIG_MAX_LINE are rejected whole and line counting continues. */
static void test_file_long_line(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256];
	size_t len = CONFIG_MAX_LINE + 200;
	char *text = malloc(len + 64);

	(void)state;
	assert_non_null(c);
	assert_non_null(text);
	/* Exactly CONFIG_MAX_LINE bytes of comment is accepted. */
	memset(text, '#', CONFIG_MAX_LINE);
	strcpy(text + CONFIG_MAX_LINE, "\nworkers 3\n");
	assert_int_equal(load_text(c, text, &s, path, sizeof path), 0);
	assert_int_equal(config_int(c, D_WORKERS), 3);
	assert_int_equal(c->line[D_WORKERS], 2);
	/* One byte more is an error, even for a directive line. */
	memcpy(text, "motd ", 5);
	memset(text + 5, 'x', CONFIG_MAX_LINE - 4);
	strcpy(text + CONFIG_MAX_LINE + 1, "\nworkers 5\n");
	assert_int_equal(load_text(c, text, &s, path, sizeof path), 1);
	assert_int_equal(s.n, 1);
	assert_non_null(strstr(s.msg[0], ":1: line too long"));
	assert_int_equal(config_int(c, D_WORKERS), 5);
	assert_int_equal(c->line[D_WORKERS], 2);
	assert_string_equal(config_str(c, D_MOTD), "");
	free(text);
	sink_clear(&s);
	config_free(c);
}

/* A NUL byte inside a line is an error, not a silent truncation. */
static void test_file_nul_byte(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256];
	static const char text[] = "motd ab\0cd\nworkers 2";	/* no final newline */

	(void)state;
	assert_non_null(c);
	write_temp(text, sizeof text - 1, path, sizeof path);
	assert_int_equal(config_load_file(c, path, sink_report, &s), 1);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(s.n, 1);
	assert_non_null(strstr(s.msg[0], ":1: NUL byte"));
	assert_string_equal(config_str(c, D_MOTD), "");
	assert_int_equal(config_int(c, D_WORKERS), 2);
	sink_clear(&s);
	config_free(c);
}

/* After CONFIG_MAX_ERRORS reports, one "too many errors" message ends the run. */
static void test_file_too_many_errors(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256];
	char *text = malloc(80 * 8 + 1);
	int rc;

	(void)state;
	assert_non_null(c);
	assert_non_null(text);
	text[0] = '\0';
	for (int k = 0; k < 80; k++)
		strcat(text, "bogus 1\n");
	rc = load_text(c, text, &s, path, sizeof path);
	assert_true(rc > CONFIG_MAX_ERRORS);
	assert_int_equal(s.n, CONFIG_MAX_ERRORS + 1);
	assert_non_null(strstr(s.msg[0], ":1: unknown directive 'bogus'"));
	assert_non_null(strstr(s.msg[CONFIG_MAX_ERRORS - 1], ":50: unknown directive"));
	assert_non_null(strstr(s.msg[CONFIG_MAX_ERRORS], "too many errors"));
	free(text);
	sink_clear(&s);
	config_free(c);
}

/* A missing file is reported with the system's reason and returns -1. */
static void test_file_cannot_open(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[300], want[400];

	(void)state;
	assert_non_null(c);
	snprintf(path, sizeof path, "%s/does-not-exist.conf", tmp_dir);
	assert_int_equal(config_load_file(c, path, sink_report, &s), -1);
	assert_int_equal(s.n, 1);
	snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
	assert_string_equal(s.msg[0], want);
	assert_int_equal(config_load_file(c, path, NULL, NULL), -1);
	sink_clear(&s);
	config_free(c);
}

/* Both argument forms set values with origin ARGV. */
static void test_args_forms(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	static const char *const args[] = { "--workers", "8", "--auth=proxy", "--motd=",
	    "--listen=a:1", "--banner", "x=y", "--daemonize=on", "--offset", "-7", "--workers",
	    "9" };
	char **argv = make_argv(args, 12);

	(void)state;
	assert_non_null(c);
	assert_int_equal(config_load_args(c, 12, argv, sink_report, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(config_int(c, D_WORKERS), 9);
	assert_int_equal(config_int(c, D_AUTH), 2);
	assert_string_equal(config_str(c, D_MOTD), "");
	assert_string_equal(config_str(c, D_LISTEN), "a:1");
	assert_string_equal(config_str(c, D_BANNER), "x=y");
	assert_int_equal(config_int(c, D_DAEMONIZE), 1);
	assert_int_equal(config_int(c, D_OFFSET), -7);
	assert_int_equal(c->origin[D_WORKERS], CONFIG_ARGV);
	assert_int_equal(c->origin[D_MOTD], CONFIG_ARGV);
	assert_int_equal(c->origin[D_PING], CONFIG_DEFAULT);
	assert_int_equal(config_load_args(c, 0, NULL, sink_report, &s), 0);
	assert_int_equal(s.n, 0);
	free_argv(argv);
	config_free(c);
}

/* Every command-line mistake is reported and counted; good arguments still apply. */
static void test_args_errors(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	static const char *const args[] = { "--foo", "1", "stray", "--workers=0", "--bar=2",
	    "--", "--auth", "proxy", "-x", "--listen" };
	char **argv = make_argv(args, 10);
	static const char *const expect[] = {
		"command line: --foo: unknown directive 'foo'",
		"command line: unexpected argument 'stray'",
		"command line: workers: 0 is below the minimum 1",
		"command line: --bar: unknown directive 'bar'",
		"command line: unexpected argument '--'",
		"command line: unexpected argument '-x'",
		"command line: --listen needs a value",
	};

	(void)state;
	assert_non_null(c);
	assert_int_equal(config_load_args(c, 10, argv, sink_report, &s), 7);
	assert_int_equal(s.n, 7);
	for (int k = 0; k < 7; k++)
		assert_string_equal(s.msg[k], expect[k]);
	assert_int_equal(config_int(c, D_AUTH), 2);
	assert_int_equal(config_int(c, D_WORKERS), 4);
	free_argv(argv);
	sink_clear(&s);
	config_free(c);
}

/* Only changed, non-reloadable directives are reported and counted. */
static void test_reload_check(void **state)
{
	struct config *live = config_new(table, D_COUNT);
	struct config *fresh = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char err[256];

	(void)state;
	assert_non_null(live);
	assert_non_null(fresh);
	assert_int_equal(config_reload_check(live, fresh, sink_report, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(config_set(fresh, "ping_interval", "60", CONFIG_FILE, err, sizeof err), 0);
	assert_int_equal(config_set(fresh, "motd", "new", CONFIG_FILE, err, sizeof err), 0);
	assert_int_equal(config_set(fresh, "auth", "none", CONFIG_FILE, err, sizeof err), 0);
	assert_int_equal(config_set(fresh, "max_body", "65536", CONFIG_FILE, err, sizeof err), 0);
	assert_int_equal(config_set(fresh, "listen", "127.0.0.1:8080", CONFIG_FILE, err,
	    sizeof err), 0);
	assert_int_equal(config_reload_check(live, fresh, sink_report, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(config_set(fresh, "workers", "16", CONFIG_FILE, err, sizeof err), 0);
	assert_int_equal(config_set(fresh, "listen", "1.2.3.4:5", CONFIG_FILE, err, sizeof err), 0);
	assert_int_equal(config_reload_check(live, fresh, sink_report, &s), 2);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.msg[0], "workers: cannot change on reload (restart needed)");
	assert_string_equal(s.msg[1], "listen: cannot change on reload (restart needed)");
	assert_int_equal(config_reload_check(live, fresh, NULL, NULL), 2);
	sink_clear(&s);
	config_free(live);
	config_free(fresh);
}

/* Values format in file syntax, quoting strings only when needed. */
static void test_format(void **state)
{
	struct config *c = config_new(table, D_COUNT);
	char buf[128], err[256];

	(void)state;
	assert_non_null(c);
	config_format(c, D_WORKERS, buf, sizeof buf);
	assert_string_equal(buf, "4");
	config_format(c, D_OFFSET, buf, sizeof buf);
	assert_string_equal(buf, "-5");
	config_format(c, D_MAX_BODY, buf, sizeof buf);
	assert_string_equal(buf, "65536");
	config_format(c, D_PING, buf, sizeof buf);
	assert_string_equal(buf, "30");
	config_format(c, D_DAEMONIZE, buf, sizeof buf);
	assert_string_equal(buf, "off");
	assert_int_equal(config_set(c, "daemonize", "yes", CONFIG_FILE, err, sizeof err), 0);
	config_format(c, D_DAEMONIZE, buf, sizeof buf);
	assert_string_equal(buf, "on");
	assert_int_equal(config_set(c, "auth", "TOKEN", CONFIG_FILE, err, sizeof err), 0);
	config_format(c, D_AUTH, buf, sizeof buf);
	assert_string_equal(buf, "token");
	config_format(c, D_LISTEN, buf, sizeof buf);
	assert_string_equal(buf, "127.0.0.1:8080");
	config_format(c, D_MOTD, buf, sizeof buf);
	assert_string_equal(buf, "\"\"");
	config_format(c, D_BANNER, buf, sizeof buf);
	assert_string_equal(buf, "\"say \\\"hi\\\" # \\\\o/\"");
	assert_int_equal(config_set(c, "motd", "a#b", CONFIG_FILE, err, sizeof err), 0);
	config_format(c, D_MOTD, buf, sizeof buf);
	assert_string_equal(buf, "\"a#b\"");
	config_format(c, D_LISTEN, buf, 4);
	assert_string_equal(buf, "127");
	config_format(c, D_BANNER, buf, 3);
	assert_string_equal(buf, "\"s");
	config_format(c, -1, buf, sizeof buf);
	assert_string_equal(buf, "");
	config_free(c);
}

/* Reads a whole stream into a malloc'd string. */
static char *slurp(FILE *f)
{
	size_t cap = 1 << 16, n;
	char *buf = malloc(cap);

	assert_non_null(buf);
	rewind(f);
	n = fread(buf, 1, cap - 1, f);
	buf[n] = '\0';
	return buf;
}

/* print_defaults documents each directive and reads back as exactly the defaults. */
static void test_print_defaults_round_trip(void **state)
{
	struct config *defaults = config_new(table, D_COUNT);
	struct config *loaded = config_new(table, D_COUNT);
	struct sink s = { .n = 0 };
	char path[256], a[256], b[256];
	FILE *f;
	char *text;
	int fd;
	static const char *const changes[][2] = {
		{ "ping_interval", "1h" }, { "workers", "9" }, { "offset", "3" },
		{ "max_body", "1m" }, { "daemonize", "on" }, { "auth", "proxy" },
		{ "listen", "x:1" }, { "motd", "m" }, { "banner", "x" },
	};

	(void)state;
	assert_non_null(defaults);
	assert_non_null(loaded);
	/* Make the loaded config differ first so the file visibly restores each value. */
	for (size_t k = 0; k < sizeof changes / sizeof changes[0]; k++)
		assert_int_equal(config_set(loaded, changes[k][0], changes[k][1], CONFIG_DEFAULT,
		    a, sizeof a), 0);
	config_format(loaded, D_BANNER, b, sizeof b);
	assert_string_equal(b, "x");
	snprintf(path, sizeof path, "%s/defaults.XXXXXX", tmp_dir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w+");
	assert_non_null(f);
	config_print_defaults(table, D_COUNT, f);
	fflush(f);
	text = slurp(f);
	fclose(f);
	assert_non_null(strstr(text, "# Seconds between keep-alive pings\n"
	    "# (seconds, 30 to 86400, suffix s, m, h or d; reloadable)\n"
	    "ping_interval 30s\n\n"));
	assert_non_null(strstr(text, "# Worker threads\n# (integer, 1 to 64; restart needed)\n"
	    "workers 4\n\n"));
	assert_non_null(strstr(text, "# (one of none, token, proxy; restart needed)\nauth none\n"));
	assert_non_null(strstr(text, "# (boolean, on or off; restart needed)\ndaemonize off\n"));
	assert_non_null(strstr(text, "# (size in bytes, 1024 to 1073741824, suffix k, m or g; "
	    "restart needed)\nmax_body 64k\n"));
	assert_non_null(strstr(text, "# (string, 0 to 64 bytes; reloadable)\nmotd \"\"\n"));
	assert_non_null(strstr(text, "\nbanner \"say \\\"hi\\\" # \\\\o/\"\n"));
	assert_int_equal(config_load_file(loaded, path, sink_report, &s), 0);
	assert_int_equal(s.n, 0);
	for (int i = 0; i < D_COUNT; i++) {
		assert_int_equal(loaded->origin[i], CONFIG_FILE);
		config_format(defaults, i, a, sizeof a);
		config_format(loaded, i, b, sizeof b);
		assert_string_equal(a, b);
	}
	assert_string_equal(config_str(loaded, D_BANNER), "say \"hi\" # \\o/");
	assert_int_equal(config_int(loaded, D_MAX_BODY), 65536);
	assert_int_equal(unlink(path), 0);
	free(text);
	config_free(defaults);
	config_free(loaded);
}

/* print_man: one .TP paragraph per directive, roff-escaped, with type, default and reloadability. */
static void test_print_man(void **state)
{
	char *text = NULL;
	size_t len = 0, paragraphs = 0;
	FILE *f = open_memstream(&text, &len);

	(void)state;
	assert_non_null(f);
	config_print_man(table, D_COUNT, f);
	fclose(f);
	assert_non_null(strstr(text, ".TP\n.B ping_interval\nSeconds between keep\\-alive pings.\n.br\n"
	    "Seconds, 30 to 86400, with an optional suffix s, m, h or d; default: \\fB30s\\fR; "
	    "reloadable (SIGHUP).\n"));
	assert_non_null(strstr(text, ".B offset\nSigned offset.\n.br\nInteger, \\-100 to 100; default: "
	    "\\fB\\-5\\fR; reloadable (SIGHUP).\n"));
	assert_non_null(strstr(text, "One of \\fBnone\\fR, \\fBtoken\\fR, \\fBproxy\\fR; default: \\fBnone\\fR;"));
	assert_non_null(strstr(text, "Boolean, on or off; default: \\fBoff\\fR;"));
	assert_non_null(strstr(text, ".B motd\nGreeting, may be empty.\n.br\nString, 0 to 64 bytes; default: empty;"));
	/* A backslash in a default is roff's \e, not an escape. */
	assert_non_null(strstr(text, "default: \\fBsay \"hi\" # \\eo/\\fR;"));
	for (const char *p = text; (p = strstr(p, ".TP\n.B ")) != NULL; p++)
		paragraphs++;
	assert_int_equal(paragraphs, D_COUNT);
	free(text);
}

/* config_load: defaults, then argv, then the file, the command line winning; NULL on any error. */
static void test_load_sequence(void **state)
{
	static const char file[] = "workers 8\nping_interval 1m\n";
	static const char *const args[] = { "--workers", "16" };
	static const char *const bad[] = { "--workers", "0" };
	char path[256], **argv = make_argv(args, 2), **badv = make_argv(bad, 2);
	struct sink s = { .n = 0 };
	struct config *c;

	(void)state;
	write_temp(file, sizeof file - 1, path, sizeof path);
	c = config_load(table, sizeof table / sizeof table[0], path, 2, argv, sink_report, &s);
	assert_non_null(c);
	assert_int_equal(s.n, 0);
	assert_int_equal(config_int(c, config_find(c, "workers")), 16);		/* argv wins */
	assert_int_equal(config_int(c, config_find(c, "ping_interval")), 60);	/* file */
	assert_int_equal(config_int(c, config_find(c, "offset")), -5);		/* default */
	config_free(c);
	c = config_load(table, sizeof table / sizeof table[0], path, 2, badv, sink_report, &s);
	assert_null(c);
	assert_true(s.n >= 1);
	sink_clear(&s);
	assert_int_equal(unlink(path), 0);
	free_argv(argv);
	free_argv(badv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_value_cases),
		cmocka_unit_test(test_set_failure_keeps_value),
		cmocka_unit_test(test_new_defaults),
		cmocka_unit_test(test_new_bad_default),
		cmocka_unit_test(test_file_syntax),
		cmocka_unit_test(test_file_hash_and_empty),
		cmocka_unit_test(test_file_all_errors),
		cmocka_unit_test(test_file_argv_wins),
		cmocka_unit_test(test_file_long_line),
		cmocka_unit_test(test_file_nul_byte),
		cmocka_unit_test(test_file_too_many_errors),
		cmocka_unit_test(test_file_cannot_open),
		cmocka_unit_test(test_args_forms),
		cmocka_unit_test(test_args_errors),
		cmocka_unit_test(test_load_sequence),
		cmocka_unit_test(test_reload_check),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_print_defaults_round_trip),
		cmocka_unit_test(test_print_man),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
