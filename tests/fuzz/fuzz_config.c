/*
 * libFuzzer target for configuration files: common/config.c's config_load() of a whole
 * file with the broker's directive table (broker/options.c: every type, bound and check
 * function, listen, cors_origins, redis and trusted_proxies among them). The input is
 * the file; it is written to one memfd, created once, and read back through
 * /proc/self/fd. Invariants: nothing crashes or leaks; a load that reports nothing
 * returns a config and one that reports returns NULL; every error config.c hands its
 * reporter is "PATH:LINE: message" with LINE within the file's lines (the one summary
 * "PATH: too many errors, giving up" aside, which comes after CONFIG_MAX_ERRORS
 * errors), and messages come in line order; what common/log.c's reporter then writes
 * (log_report_error, fd 2 captured) is printable ASCII only; a loaded config written
 * back with config_format loads again, silently, to the same values. Build and run
 * with `make fuzz`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sanitizer/common_interface_defs.h>

#include "broker.h"
#include "config.h"
#include "log.h"

#define FUZZ_CONFIG_MAX 65536	/* bytes of one file: a dozen lines of CONFIG_MAX_LINE and more */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int file = -1;		/* the memfd holding the input */
static char path[64];		/* /proc/self/fd/N */
static int saved_stderr = -1;	/* the real stderr, while fd 2 is the capture */
static int capture = -1;	/* where log_report_error's lines go */

/* What the reporter sees of one run. */
struct seen {
	unsigned lines;		/* lines in the input */
	unsigned last;		/* line of the previous report */
	unsigned reports;
	int gave_up;
};

/* Puts stderr back (so a report is seen) and aborts, so libFuzzer records the input. */
static void
check(int ok)
{
	if (ok)
		return;
	if (saved_stderr >= 0)
		dup2(saved_stderr, STDERR_FILENO);
	abort();
}

/* One memfd for all runs, and fd 2 saved for the sanitizers. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if ((file = memfd_create("fuzz_config", 0)) == -1 ||
	    (capture = memfd_create("fuzz_config_log", 0)) == -1 ||
	    (saved_stderr = dup(STDERR_FILENO)) == -1)
		abort();
	snprintf(path, sizeof path, "/proc/self/fd/%d", file);
	__sanitizer_set_report_fd((void *)(intptr_t)saved_stderr);
	log_set_level(LOG_ERROR);
	return 0;
}

/* Sends one message through log.c's reporter with fd 2 captured; checks what it wrote. */
static void
check_logged(const char *msg)
{
	char buf[4096];
	ssize_t n, i;

	check(ftruncate(capture, 0) == 0 && lseek(capture, 0, SEEK_SET) == 0);
	check(dup2(capture, STDERR_FILENO) == STDERR_FILENO);
	log_report_error(NULL, msg);
	check(dup2(saved_stderr, STDERR_FILENO) == STDERR_FILENO);
	n = pread(capture, buf, sizeof buf, 0);
	check(n > 1 && n < (ssize_t)sizeof buf && buf[n - 1] == '\n');
	for (i = 0; i < n - 1; i++)
		check(buf[i] >= 0x20 && buf[i] <= 0x7e);
}

/* The reporter: "PATH:LINE: message", LINE within the input, in order. */
static void
reporter(void *arg, const char *msg)
{
	struct seen *s = arg;
	size_t plen = strlen(path);
	const char *p = msg + plen + 1;
	unsigned long line;
	char *end;

	s->reports++;
	check(strncmp(msg, path, plen) == 0 && msg[plen] == ':');
	check_logged(msg);
	if (strcmp(p, " too many errors, giving up") == 0) {
		check(!s->gave_up && s->reports == CONFIG_MAX_ERRORS + 1);
		s->gave_up = 1;
		return;
	}
	check(!s->gave_up);
	check(*p >= '1' && *p <= '9');
	line = strtoul(p, &end, 10);
	check(end[0] == ':' && end[1] == ' ' && end[2] != '\0');
	check(line >= 1 && line <= s->lines);
	check(line >= s->last);
	s->last = (unsigned)line;
}

/* Lines as config.c counts them: each LF ends one; bytes after the last LF are one more. */
static unsigned
count_lines(const uint8_t *data, size_t size)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < size; i++)
		n += data[i] == '\n';
	return n + (size > 0 && data[size - 1] != '\n');
}

/* A reporter for the reload of a written-back config: there must be nothing to report. */
static void
no_report(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
	check(0);
}

/*
 * A loaded config written back with config_format, one "name value" line per
 * directive, loads again to the same values (config_format mirrors the file syntax).
 */
static void
check_round_trip(const struct config *c)
{
	char text[4096];
	struct config *again;
	FILE *f;
	size_t i;

	check(ftruncate(file, 0) == 0);
	check((f = fopen(path, "w")) != NULL);
	for (i = 0; i < c->count; i++) {
		config_format(c, (int)i, text, sizeof text);
		fprintf(f, "%s %s\n", c->table[i].name, text);
	}
	check(fclose(f) == 0);
	check((again = config_load(c->table, c->count, path, 0, NULL, no_report, NULL)) != NULL);
	for (i = 0; i < c->count; i++)
		check(c->table[i].type == CONFIG_STRING ?
		    strcmp(config_str(c, (int)i), config_str(again, (int)i)) == 0 :
		    config_int(c, (int)i) == config_int(again, (int)i));
	config_free(again);
}

/* Writes the input to the memfd and loads it. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct seen s = { 0, 0, 0, 0 };
	struct config *c;

	if (size > FUZZ_CONFIG_MAX)
		return 0;
	check(ftruncate(file, 0) == 0);
	check(pwrite(file, data, size, 0) == (ssize_t)size);
	s.lines = count_lines(data, size);
	c = config_load(broker_directives, OPT_COUNT, path, 0, NULL, reporter, &s);
	check((c != NULL) == (s.reports == 0));
	if (c != NULL) {
		check_round_trip(c);
		config_free(c);
	}
	return 0;
}
