/*
 * Builds a man page from its template at build time: every "@VERSION@" becomes the
 * daemon's version, "@DATE@" the date of SOURCE_DATE_EPOCH (or today), and a line that
 * is only "@DIRECTIVES@" the daemon's whole directive table (config_print_man), so the
 * pages list exactly what "-h" lists. It owns no text of the pages.
 * usage: mangen broker|pusher < template > page
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mangen.h"

#define MANGEN_LINE_MAX 4096

/* Writes one template line with its @VERSION@ and @DATE@ replaced. */
static void
mangen_line(const char *line, const char *version, const char *date, FILE *out)
{
	const char *p = line, *at;

	while ((at = strchr(p, '@')) != NULL) {
		fwrite(p, 1, (size_t)(at - p), out);
		if (strncmp(at, "@VERSION@", 9) == 0) {
			fputs(version, out);
			p = at + 9;
		} else if (strncmp(at, "@DATE@", 6) == 0) {
			fputs(date, out);
			p = at + 6;
		} else {
			putc('@', out);
			p = at + 1;
		}
	}
	fputs(p, out);
}

/* The page date: SOURCE_DATE_EPOCH (reproducible builds, set by dpkg) or now, UTC. */
static void
mangen_date(char *buf, size_t len)
{
	const char *e = getenv("SOURCE_DATE_EPOCH");
	time_t t = e != NULL && *e != '\0' ? (time_t)strtoll(e, NULL, 10) : time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

int
main(int argc, char **argv)
{
	const struct config_directive *table;
	const char *version;
	char line[MANGEN_LINE_MAX], date[32];
	size_t count;

	if (argc != 2 || (strcmp(argv[1], "broker") != 0 && strcmp(argv[1], "pusher") != 0)) {
		fprintf(stderr, "usage: mangen broker|pusher < template > page\n");
		return 2;
	}
	table = argv[1][0] == 'b' ? mangen_broker(&count, &version) : mangen_pusher(&count, &version);
	mangen_date(date, sizeof date);
	while (fgets(line, sizeof line, stdin) != NULL) {
		if (strcmp(line, "@DIRECTIVES@\n") == 0)
			config_print_man(table, count, stdout);
		else
			mangen_line(line, version, date, stdout);
	}
	if (ferror(stdin) || fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "mangen: read or write error\n");
		return 1;
	}
	return 0;
}
