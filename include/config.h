/*
 * Generic configuration engine shared by ssepush-broker and ssepush-pusher.
 * It owns parsing of "directive value" files and "--directive value" command-line
 * overrides against a table of directives (type, bounds, default, help, reloadable).
 * It does not know any directive itself: each daemon passes its own table.
 * Leaf module: includes only libc.
 */
#ifndef SSEPUSH_CONFIG_H
#define SSEPUSH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CONFIG_MAX_LINE 4096	/* longest accepted config line, bytes */
#define CONFIG_MAX_ERRORS 50	/* stop reporting after this many errors in one file */

enum config_type {
	CONFIG_INT,		/* decimal integer within [min, max] */
	CONFIG_BOOL,		/* on/off, yes/no, true/false, 1/0; stored as 0/1 */
	CONFIG_SIZE,		/* bytes, optional k/m/g suffix (1024-based), within [min, max] */
	CONFIG_SECONDS,		/* seconds, optional s/m/h/d suffix, within [min, max] */
	CONFIG_ENUM,		/* one of choices[]; stored as the index */
	CONFIG_STRING,		/* any text, length within [min, max] bytes */
};

/* Validates a value beyond type and bounds; returns 0, or -1 with a message in err. */
typedef int config_check_fn(const char *value, char *err, size_t errlen);

struct config_directive {
	const char *name;
	enum config_type type;
	long long min;		/* INT/SIZE/SECONDS: lowest value; STRING: shortest length */
	long long max;		/* INT/SIZE/SECONDS: highest value; STRING: longest length */
	const char *def;	/* default, written as in a config file ("" for empty string) */
	const char *const *choices;	/* ENUM only: NULL-terminated list */
	bool reloadable;	/* SIGHUP may change it */
	config_check_fn *check;	/* optional extra validation, NULL if none */
	const char *help;	/* one line */
};

union config_value {
	long long i;		/* INT, BOOL, SIZE, SECONDS, ENUM */
	char *s;		/* STRING: owned by the config */
};

enum config_origin { CONFIG_DEFAULT, CONFIG_FILE, CONFIG_ARGV };

struct config {
	const struct config_directive *table;	/* borrowed */
	size_t count;
	union config_value *values;		/* count entries */
	unsigned char *origin;			/* count entries, enum config_origin */
	unsigned *line;				/* count entries: file line that set it, or 0 */
};

/* Reports one error message (already formatted, no newline). */
typedef void config_error_fn(void *arg, const char *msg);

/* Returns a new config holding every default, or NULL (bad table default or ENOMEM). */
struct config *config_new(const struct config_directive *table, size_t count);
/* Frees a config; accepts NULL. */
void config_free(struct config *c);
/* Returns the index of a directive, or -1 if the name is unknown. */
int config_find(const struct config *c, const char *name);
/*
 * Sets one directive from text as origin says. Returns 0, or -1 with a message in err
 * (for example "unknown directive 'foo'" or "ping_interval: 99999 is above 86400").
 */
int config_set(struct config *c, const char *name, const char *value,
    enum config_origin origin, char *err, size_t errlen);
/*
 * Reads a file of "directive value" lines ('#' starts a comment at line start or after
 * blanks; the value is the rest of the line, trimmed, optionally in double quotes).
 * Reports every error as "path:line: message" through report and goes on, so one run
 * shows all of them. A directive given twice in the file is an error. A directive
 * already set from the command line keeps its command-line value. Returns the number
 * of errors (0 on success), or -1 if the file cannot be opened (reported).
 */
int config_load_file(struct config *c, const char *path, config_error_fn *report, void *arg);
/*
 * Applies "--directive value" and "--directive=value" pairs from argv[0..argc-1] (the
 * caller strips its own flags first). Reports "command line: message" errors; returns
 * their number.
 */
int config_load_args(struct config *c, int argc, char **argv, config_error_fn *report, void *arg);
/*
 * Builds a config the way both daemons start: the table's defaults, then the
 * "--directive value" overrides of argv, then the file at path (NULL: none), where the
 * command line wins. Reports every error through report; returns NULL if there was any.
 */
struct config *config_load(const struct config_directive *table, size_t count, const char *path,
    int argc, char **argv, config_error_fn *report, void *arg);
/* Returns the integer value (INT, BOOL, SIZE, SECONDS, ENUM) of directive index i. */
long long config_int(const struct config *c, int i);
/* Returns the string value of directive index i (borrowed; never NULL). */
const char *config_str(const struct config *c, int i);
/*
 * Compares a freshly loaded config with the live one for a reload: for every directive
 * whose value differs and that is not reloadable, reports "NAME: cannot change on reload
 * (restart needed)" and counts it. Returns that count.
 */
int config_reload_check(const struct config *live, const struct config *fresh,
    config_error_fn *report, void *arg);
/* Prints every directive with its default and help, as a commented config file. */
void config_print_defaults(const struct config_directive *table, size_t count, FILE *out);
/* Prints every directive as a roff .TP paragraph for a man page (name, help, type, default). */
void config_print_man(const struct config_directive *table, size_t count, FILE *out);
/* Formats the value of directive i as it would be written in a file. */
void config_format(const struct config *c, int i, char *buf, size_t len);

#endif
