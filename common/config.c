/*
 * Generic configuration engine: owns the parsing and validation of directive values
 * (integers, booleans, sizes, durations, enums, strings) against a caller-supplied
 * table, the reading of "directive value" files and "--directive value" command-line
 * arguments with precise error reports, the precedence rule (command line beats file
 * beats default), reload comparison, and writing values and defaults back out in
 * config-file syntax. It knows no directive of its own and depends only on libc.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIG_MSG_MAX 1024	/* longest single error message we build */

/* State of one config_load_file run, shared by the per-line helpers. */
struct config_load {
	struct config *c;
	const char *path;
	config_error_fn *report;
	void *arg;
	unsigned lineno;
	int errors;
	bool stop;		/* too many errors: give up on the rest of the file */
	unsigned *seen;		/* per directive: line that set it in this file, or 0 */
};

/* Appends formatted text to a NUL-terminated buffer without ever overflowing it. */
__attribute__((format(printf, 3, 4)))
static void config_append(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strnlen(buf, len);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* Formats a message and hands it to the caller's reporter, which may be NULL. */
__attribute__((format(printf, 3, 4)))
static void config_report(config_error_fn *report, void *arg, const char *fmt, ...)
{
	char msg[CONFIG_MSG_MAX + 512];
	va_list ap;

	if (report == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	report(arg, msg);
}

/* Blanks separate names from values and are trimmed; CR is one so CRLF files work. */
static bool config_is_blank(int ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Accumulates decimal digits by hand so overflow is detected exactly. */
static int config_scan_digits(const char **sp, long long *out)
{
	const char *s = *sp;
	long long v = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		int d = *s - '0';

		if (v > (LLONG_MAX - d) / 10)
			return -2;
		v = v * 10 + d;
	}
	*sp = s;
	*out = v;
	return 0;
}

/* Returns the multiplier for a unit suffix of a SIZE or SECONDS value, or 0 if invalid. */
static long long config_suffix(enum config_type type, const char *s)
{
	if (*s == '\0')
		return 1;
	if (s[1] != '\0')
		return 0;
	if (type == CONFIG_SIZE) {
		switch (tolower((unsigned char)*s)) {
		case 'k': return 1024LL;
		case 'm': return 1024LL * 1024;
		case 'g': return 1024LL * 1024 * 1024;
		default: return 0;
		}
	}
	if (type == CONFIG_SECONDS) {
		switch (*s) {
		case 's': return 1;
		case 'm': return 60;
		case 'h': return 3600;
		case 'd': return 86400;
		default: return 0;
		}
	}
	return 0;
}

/* Names what a numeric type expects, so syntax errors tell the user how to fix them. */
static const char *config_numeric_hint(enum config_type type)
{
	switch (type) {
	case CONFIG_SIZE:
		return "is not a valid size (a number with an optional k, m or g suffix)";
	case CONFIG_SECONDS:
		return "is not a valid duration (a number with an optional s, m, h or d suffix)";
	default:
		return "is not a valid integer";
	}
}

/* Parses INT, SIZE and SECONDS text strictly: no blanks, no '+', no trailing garbage. */
static int config_parse_number(const struct config_directive *d, const char *text,
    long long *out, char *err, size_t errlen)
{
	const char *s = text;
	bool neg = false;
	long long v, mult;
	int rc;

	if (*s == '-' && d->min < 0) {
		neg = true;
		s++;
	}
	rc = config_scan_digits(&s, &v);
	if (rc == -2) {
		snprintf(err, errlen, "%s: '%s' is out of range", d->name, text);
		return -1;
	}
	mult = rc == 0 ? config_suffix(d->type, s) : 0;
	if (mult == 0) {
		snprintf(err, errlen, "%s: '%s' %s", d->name, text, config_numeric_hint(d->type));
		return -1;
	}
	if (v > LLONG_MAX / mult) {
		snprintf(err, errlen, "%s: '%s' is out of range", d->name, text);
		return -1;
	}
	*out = neg ? -(v * mult) : v * mult;
	return 0;
}

/* Checks a number against its bounds, echoing the converted value when a suffix hid it. */
static int config_check_bounds(const struct config_directive *d, const char *text,
    long long v, char *err, size_t errlen)
{
	char shown[64];
	char plain[32];

	snprintf(plain, sizeof plain, "%lld", v);
	if (strcmp(plain, text) == 0)
		snprintf(shown, sizeof shown, "%s", plain);
	else
		snprintf(shown, sizeof shown, "%.30s (%lld)", text, v);
	if (v > d->max) {
		snprintf(err, errlen, "%s: %s is above the maximum %lld", d->name, shown, d->max);
		return -1;
	}
	if (v < d->min) {
		snprintf(err, errlen, "%s: %s is below the minimum %lld", d->name, shown, d->min);
		return -1;
	}
	return 0;
}

/* Accepts the usual spellings of a boolean, in any case. */
static int config_parse_bool(const struct config_directive *d, const char *text,
    long long *out, char *err, size_t errlen)
{
	static const char *const yes[] = { "on", "yes", "true", "1" };
	static const char *const no[] = { "off", "no", "false", "0" };

	for (size_t k = 0; k < sizeof yes / sizeof yes[0]; k++) {
		if (strcasecmp(text, yes[k]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(text, no[k]) == 0) {
			*out = 0;
			return 0;
		}
	}
	snprintf(err, errlen, "%s: '%s' is not a boolean (use on/off, yes/no, true/false or 1/0)",
	    d->name, text);
	return -1;
}

/* Maps an enum name to its index (case-insensitively) and lists the choices on error. */
static int config_parse_enum(const struct config_directive *d, const char *text,
    long long *out, char *err, size_t errlen)
{
	if (d->choices == NULL) {
		snprintf(err, errlen, "%s: enum directive has no choices", d->name);
		return -1;
	}
	for (size_t k = 0; d->choices[k] != NULL; k++) {
		if (strcasecmp(text, d->choices[k]) == 0) {
			*out = (long long)k;
			return 0;
		}
	}
	snprintf(err, errlen, "%s: '%s' is not one of ", d->name, text);
	for (size_t k = 0; d->choices[k] != NULL; k++)
		config_append(err, errlen, "%s%s", k > 0 ? ", " : "", d->choices[k]);
	return -1;
}

/* Validates a string (length, no control characters, custom check) and takes a copy. */
static int config_parse_string(const struct config_directive *d, const char *text,
    char **out, char *err, size_t errlen)
{
	long long n = (long long)strlen(text);
	char why[256] = "";

	if (n > d->max || n < d->min) {
		snprintf(err, errlen, "%s: length %lld is %s the %s %lld", d->name, n,
		    n > d->max ? "above" : "below", n > d->max ? "maximum" : "minimum",
		    n > d->max ? d->max : d->min);
		return -1;
	}
	for (const char *p = text; *p != '\0'; p++) {
		if (iscntrl((unsigned char)*p) && *p != '\t') {
			snprintf(err, errlen, "%s: control characters are not allowed", d->name);
			return -1;
		}
	}
	if (d->check != NULL && d->check(text, why, sizeof why) < 0) {
		snprintf(err, errlen, "%s: %s", d->name, why[0] != '\0' ? why : "invalid value");
		return -1;
	}
	*out = strdup(text);
	if (*out == NULL) {
		snprintf(err, errlen, "%s: out of memory", d->name);
		return -1;
	}
	return 0;
}

/* Turns text into a typed value; the one parser shared by defaults, files and argv. */
static int config_parse(const struct config_directive *d, const char *text,
    union config_value *out, char *err, size_t errlen)
{
	if (d->type == CONFIG_STRING)
		return config_parse_string(d, text, &out->s, err, errlen);
	if (*text == '\0') {
		snprintf(err, errlen, "%s: empty value", d->name);
		return -1;
	}
	switch (d->type) {
	case CONFIG_BOOL:
		return config_parse_bool(d, text, &out->i, err, errlen);
	case CONFIG_ENUM:
		return config_parse_enum(d, text, &out->i, err, errlen);
	case CONFIG_INT:
	case CONFIG_SIZE:
	case CONFIG_SECONDS:
		if (config_parse_number(d, text, &out->i, err, errlen) < 0)
			return -1;
		return config_check_bounds(d, text, out->i, err, errlen);
	default:
		snprintf(err, errlen, "%s: unknown directive type", d->name);
		return -1;
	}
}

/* Validates text for directive i and, if store is set, replaces the current value. */
static int config_apply(struct config *c, size_t i, const char *text,
    enum config_origin origin, bool store, char *err, size_t errlen)
{
	const struct config_directive *d = &c->table[i];
	union config_value v;

	if (config_parse(d, text, &v, err, errlen) < 0)
		return -1;
	if (!store) {
		if (d->type == CONFIG_STRING)
			free(v.s);
		return 0;
	}
	if (d->type == CONFIG_STRING)
		free(c->values[i].s);
	c->values[i] = v;
	c->origin[i] = (unsigned char)origin;
	c->line[i] = 0;
	return 0;
}

/* Looks a name up by length so callers can pass a slice of a line or argument. */
static int config_find_n(const struct config *c, const char *name, size_t len)
{
	for (size_t i = 0; i < c->count; i++) {
		const char *n = c->table[i].name;

		if (strncmp(n, name, len) == 0 && n[len] == '\0')
			return (int)i;
	}
	return -1;
}

/* Allocates the per-directive arrays; a zero count still gets valid pointers. */
static struct config *config_alloc(const struct config_directive *table, size_t count)
{
	struct config *c = calloc(1, sizeof *c);
	size_t n = count > 0 ? count : 1;

	if (c == NULL)
		return NULL;
	c->table = table;
	c->count = count;
	c->values = calloc(n, sizeof *c->values);
	c->origin = calloc(n, sizeof *c->origin);
	c->line = calloc(n, sizeof *c->line);
	if (c->values == NULL || c->origin == NULL || c->line == NULL) {
		config_free(c);
		return NULL;
	}
	return c;
}

/* Defaults go through the same parser as user input, so a bad table fails early. */
struct config *config_new(const struct config_directive *table, size_t count)
{
	struct config *c = config_alloc(table, count);
	char err[CONFIG_MSG_MAX];

	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < count; i++) {
		const char *def = table[i].def != NULL ? table[i].def : "";

		if (table[i].name == NULL || config_find_n(c, table[i].name,
		    strlen(table[i].name)) != (int)i) {
			config_free(c);
			return NULL;
		}
		if (config_apply(c, i, def, CONFIG_DEFAULT, true, err, sizeof err) < 0) {
			config_free(c);
			return NULL;
		}
	}
	return c;
}

/* Releases the owned strings along with the arrays. */
void config_free(struct config *c)
{
	if (c == NULL)
		return;
	if (c->values != NULL) {
		for (size_t i = 0; i < c->count; i++) {
			if (c->table[i].type == CONFIG_STRING)
				free(c->values[i].s);
		}
	}
	free(c->values);
	free(c->origin);
	free(c->line);
	free(c);
}

/* Public lookup by full name, used by daemons to resolve their indexes once. */
int config_find(const struct config *c, const char *name)
{
	if (c == NULL || name == NULL)
		return -1;
	return config_find_n(c, name, strlen(name));
}

/* Sets unconditionally: precedence between origins is the loaders' business. */
int config_set(struct config *c, const char *name, const char *value,
    enum config_origin origin, char *err, size_t errlen)
{
	char scratch[CONFIG_MSG_MAX];
	int i;

	if (err == NULL || errlen == 0) {
		err = scratch;
		errlen = sizeof scratch;
	}
	err[0] = '\0';
	i = config_find(c, name);
	if (i < 0) {
		snprintf(err, errlen, "unknown directive '%s'", name != NULL ? name : "");
		return -1;
	}
	if (value == NULL)
		value = "";
	return config_apply(c, (size_t)i, value, origin, true, err, errlen);
}

/* Counts a file error, reports it, and stops the run once there are too many. */
__attribute__((format(printf, 2, 3)))
static void config_load_error(struct config_load *ld, const char *fmt, ...)
{
	char msg[CONFIG_MSG_MAX];
	va_list ap;

	ld->errors++;
	if (ld->errors > CONFIG_MAX_ERRORS) {
		config_report(ld->report, ld->arg, "%s: too many errors, giving up", ld->path);
		ld->stop = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	config_report(ld->report, ld->arg, "%s:%u: %s", ld->path, ld->lineno, msg);
}

/* Reads one line without its newline; overlong lines are consumed whole but flagged. */
static int config_read_line(FILE *f, char *buf, size_t size, bool *too_long, bool *has_nul)
{
	size_t n = 0;
	bool any = false;
	int ch;

	*too_long = false;
	*has_nul = false;
	while ((ch = getc(f)) != EOF) {
		any = true;
		if (ch == '\n')
			break;
		if (ch == '\0')
			*has_nul = true;
		if (n + 1 < size)
			buf[n++] = (char)ch;
		else
			*too_long = true;
	}
	buf[n] = '\0';
	return any ? 0 : -1;
}

/* Removes the quotes and \" \\ escapes of a quoted value in place; why says what failed. */
static int config_unquote(char *s, const char **why)
{
	char *w = s;
	const char *r = s + 1;
	const char *after;

	for (;;) {
		if (*r == '\0') {
			*why = "unterminated quote";
			return -1;
		}
		if (*r == '\\' && (r[1] == '"' || r[1] == '\\')) {
			*w++ = r[1];
			r += 2;
		} else if (*r == '"') {
			break;
		} else {
			*w++ = *r++;
		}
	}
	after = ++r;
	while (config_is_blank(*r))
		r++;
	if (*r != '\0' && !(*r == '#' && r > after)) {
		*why = "unexpected text after the closing quote";
		return -1;
	}
	*w = '\0';
	return 0;
}

/* Extracts the value from the rest of a line: trailing comment cut, trimmed, unquoted. */
static int config_line_value(char *s, const char **why)
{
	size_t n;

	if (*s == '"')
		return config_unquote(s, why);
	for (char *p = s + 1; *p != '\0'; p++) {
		if (*p == '#' && config_is_blank(p[-1])) {
			*p = '\0';
			break;
		}
	}
	n = strlen(s);
	while (n > 0 && config_is_blank(s[n - 1]))
		s[--n] = '\0';
	return 0;
}

/* Applies one "name value" line, honouring duplicates and command-line precedence. */
static void config_load_directive(struct config_load *ld, int i, char *value)
{
	struct config *c = ld->c;
	const char *name = c->table[i].name;
	char err[CONFIG_MSG_MAX];
	bool store;

	if (ld->seen[i] != 0) {
		config_load_error(ld, "'%s' already set at line %u", name, ld->seen[i]);
		return;
	}
	ld->seen[i] = ld->lineno;
	store = c->origin[i] != CONFIG_ARGV;
	if (config_apply(c, (size_t)i, value, CONFIG_FILE, store, err, sizeof err) < 0) {
		config_load_error(ld, "%s", err);
		return;
	}
	if (store)
		c->line[i] = ld->lineno;
}

/* Splits a raw line into directive and value and reports whatever is wrong with it. */
static void config_load_line(struct config_load *ld, char *line)
{
	char *name = line, *rest;
	const char *why = NULL;
	size_t len;
	int i;

	while (config_is_blank(*name))
		name++;
	if (*name == '\0' || *name == '#')
		return;
	for (len = 0; name[len] != '\0' && !config_is_blank(name[len]); len++)
		;
	rest = name + len;
	while (config_is_blank(*rest))
		rest++;
	i = config_find_n(ld->c, name, len);
	if (i < 0) {
		config_load_error(ld, "unknown directive '%.*s'", (int)len, name);
		return;
	}
	if (*rest == '\0' || *rest == '#') {
		config_load_error(ld, "directive '%s' needs a value", ld->c->table[i].name);
		return;
	}
	if (config_line_value(rest, &why) < 0) {
		config_load_error(ld, "%s: %s", ld->c->table[i].name, why);
		return;
	}
	config_load_directive(ld, i, rest);
}

/* Runs the line loop of config_load_file once the file is open. */
static void config_load_stream(struct config_load *ld, FILE *f)
{
	char line[CONFIG_MAX_LINE + 1];
	bool too_long, has_nul;

	while (!ld->stop && config_read_line(f, line, sizeof line, &too_long, &has_nul) == 0) {
		ld->lineno++;
		if (too_long)
			config_load_error(ld, "line too long (more than %d bytes)", CONFIG_MAX_LINE);
		else if (has_nul)
			config_load_error(ld, "NUL byte in line");
		else
			config_load_line(ld, line);
	}
}

/* Reads a whole file so that one run reports every mistake in it. */
int config_load_file(struct config *c, const char *path, config_error_fn *report, void *arg)
{
	struct config_load ld = { .c = c, .path = path, .report = report, .arg = arg };
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		config_report(report, arg, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	ld.seen = calloc(c->count > 0 ? c->count : 1, sizeof *ld.seen);
	if (ld.seen == NULL) {
		fclose(f);
		config_report(report, arg, "%s: out of memory", path);
		return -1;
	}
	config_load_stream(&ld, f);
	if (!ld.stop && ferror(f)) {
		ld.errors++;
		config_report(report, arg, "%s: read error: %s", path, strerror(errno));
	}
	fclose(f);
	free(ld.seen);
	return ld.errors;
}

/* Handles one "--name[=value]" argument; returns how many argv slots it consumed. */
static int config_load_arg(struct config *c, int argc, char **argv, int k,
    config_error_fn *report, void *arg, int *errors)
{
	const char *name = argv[k] + 2;
	const char *eq = strchr(name, '=');
	size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
	const char *value = eq != NULL ? eq + 1 : (k + 1 < argc ? argv[k + 1] : NULL);
	int used = eq != NULL ? 1 : 2;
	char err[CONFIG_MSG_MAX];
	int i = config_find_n(c, name, len);

	if (value == NULL) {
		config_report(report, arg, "command line: --%.*s needs a value", (int)len, name);
		(*errors)++;
		return 1;
	}
	if (i < 0) {
		config_report(report, arg, "command line: --%.*s: unknown directive '%.*s'",
		    (int)len, name, (int)len, name);
		(*errors)++;
		return used;
	}
	if (config_apply(c, (size_t)i, value, CONFIG_ARGV, true, err, sizeof err) < 0) {
		config_report(report, arg, "command line: %s", err);
		(*errors)++;
	}
	return used;
}

/* Command-line overrides; anything not starting with "--" is a caller mistake. */
int config_load_args(struct config *c, int argc, char **argv, config_error_fn *report, void *arg)
{
	int errors = 0;
	int k = 0;

	while (k < argc) {
		const char *a = argv[k];

		if (strncmp(a, "--", 2) != 0 || a[2] == '\0' || a[2] == '=') {
			config_report(report, arg, "command line: unexpected argument '%s'", a);
			errors++;
			k++;
			continue;
		}
		k += config_load_arg(c, argc, argv, k, report, arg, &errors);
	}
	return errors;
}

/* Out-of-range or string lookups yield 0 rather than crashing the daemon. */
long long config_int(const struct config *c, int i)
{
	if (c == NULL || i < 0 || (size_t)i >= c->count || c->table[i].type == CONFIG_STRING)
		return 0;
	return c->values[i].i;
}

/* Never returns NULL so callers can print or compare without checks. */
const char *config_str(const struct config *c, int i)
{
	if (c == NULL || i < 0 || (size_t)i >= c->count || c->table[i].type != CONFIG_STRING)
		return "";
	return c->values[i].s != NULL ? c->values[i].s : "";
}

/* Compares one value with awareness of its type: strings by content, others by number. */
static bool config_value_equal(const struct config_directive *d, const union config_value *a,
    const union config_value *b)
{
	if (d->type == CONFIG_STRING)
		return strcmp(a->s != NULL ? a->s : "", b->s != NULL ? b->s : "") == 0;
	return a->i == b->i;
}

/* Only restart-bound changes matter on SIGHUP; reloadable ones are just taken. */
int config_reload_check(const struct config *live, const struct config *fresh,
    config_error_fn *report, void *arg)
{
	size_t n = live->count < fresh->count ? live->count : fresh->count;
	int changed = 0;

	for (size_t i = 0; i < n; i++) {
		const struct config_directive *d = &live->table[i];

		if (d->reloadable || config_value_equal(d, &live->values[i], &fresh->values[i]))
			continue;
		config_report(report, arg, "%s: cannot change on reload (restart needed)", d->name);
		changed++;
	}
	return changed;
}

/* A value needs quotes when a plain write would not read back as the same text. */
static bool config_needs_quotes(const char *s)
{
	if (*s == '\0')
		return true;
	for (const char *p = s; *p != '\0'; p++) {
		if (config_is_blank(*p) || *p == '#' || *p == '"')
			return true;
	}
	return false;
}

/* Writes a value to a file in config syntax, quoting and escaping only when needed. */
static void config_fput_value(const char *s, FILE *out)
{
	if (!config_needs_quotes(s)) {
		fputs(s, out);
		return;
	}
	putc('"', out);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			putc('\\', out);
		putc(*p, out);
	}
	putc('"', out);
}

/* Writes the "(type, range; reloadability)" line that documents one directive. */
static void config_fput_describe(const struct config_directive *d, FILE *out)
{
	switch (d->type) {
	case CONFIG_INT:
		fprintf(out, "# (integer, %lld to %lld", d->min, d->max);
		break;
	case CONFIG_BOOL:
		fputs("# (boolean, on or off", out);
		break;
	case CONFIG_SIZE:
		fprintf(out, "# (size in bytes, %lld to %lld, suffix k, m or g", d->min, d->max);
		break;
	case CONFIG_SECONDS:
		fprintf(out, "# (seconds, %lld to %lld, suffix s, m, h or d", d->min, d->max);
		break;
	case CONFIG_ENUM:
		fputs("# (one of ", out);
		for (size_t k = 0; d->choices != NULL && d->choices[k] != NULL; k++)
			fprintf(out, "%s%s", k > 0 ? ", " : "", d->choices[k]);
		break;
	case CONFIG_STRING:
		fprintf(out, "# (string, %lld to %lld bytes", d->min, d->max);
		break;
	}
	fprintf(out, "; %s)\n", d->reloadable ? "reloadable" : "restart needed");
}

/* Output is itself a valid config file, so it doubles as a template. */
void config_print_defaults(const struct config_directive *table, size_t count, FILE *out)
{
	for (size_t i = 0; i < count; i++) {
		const struct config_directive *d = &table[i];

		if (d->help != NULL)
			fprintf(out, "# %s\n", d->help);
		config_fput_describe(d, out);
		fprintf(out, "%s ", d->name);
		config_fput_value(d->def != NULL ? d->def : "", out);
		fputs("\n\n", out);
	}
}

/* Writes text for a roff line: backslashes and hyphens escaped, a leading . or ' guarded. */
static void config_fput_roff(const char *s, FILE *out)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", out);
	for (const char *p = s; *p != '\0'; p++) {
		if (*p == '\\')
			fputs("\\e", out);
		else if (*p == '-')
			fputs("\\-", out);
		else
			putc(*p, out);
	}
}

/* Writes the type, bounds, default and reloadability of one directive as a roff sentence. */
static void config_fput_man_describe(const struct config_directive *d, FILE *out)
{
	const char *def = d->def != NULL ? d->def : "";
	char text[160] = "";

	switch (d->type) {
	case CONFIG_INT:
		snprintf(text, sizeof text, "Integer, %lld to %lld", d->min, d->max);
		break;
	case CONFIG_BOOL:
		snprintf(text, sizeof text, "Boolean, on or off");
		break;
	case CONFIG_SIZE:
		snprintf(text, sizeof text, "Size in bytes, %lld to %lld, with an optional suffix k, m or g",
		    d->min, d->max);
		break;
	case CONFIG_SECONDS:
		snprintf(text, sizeof text, "Seconds, %lld to %lld, with an optional suffix s, m, h or d",
		    d->min, d->max);
		break;
	case CONFIG_ENUM:
		snprintf(text, sizeof text, "One of ");
		break;
	case CONFIG_STRING:
		snprintf(text, sizeof text, "String, %lld to %lld bytes", d->min, d->max);
		break;
	}
	config_fput_roff(text, out);
	for (size_t k = 0; d->type == CONFIG_ENUM && d->choices != NULL && d->choices[k] != NULL; k++) {
		fprintf(out, "%s\\fB", k > 0 ? ", " : "");
		config_fput_roff(d->choices[k], out);
		fputs("\\fR", out);
	}
	if (*def == '\0') {
		fputs("; default: empty", out);
	} else {
		fputs("; default: \\fB", out);
		config_fput_roff(def, out);
		fputs("\\fR", out);
	}
	fprintf(out, "; %s.\n", d->reloadable ? "reloadable (SIGHUP)" : "a change needs a restart");
}

/*
 * The directive list of a man page: one .TP paragraph per directive (its name in bold,
 * the help, then type, bounds, default and reloadability), from the same table as
 * config_print_defaults, so the page cannot drift from "-h".
 */
void config_print_man(const struct config_directive *table, size_t count, FILE *out)
{
	for (size_t i = 0; i < count; i++) {
		const struct config_directive *d = &table[i];

		fputs(".TP\n.B ", out);
		config_fput_roff(d->name, out);
		putc('\n', out);
		if (d->help != NULL && *d->help != '\0') {
			config_fput_roff(d->help, out);
			fputs(d->help[strlen(d->help) - 1] == '.' ? "\n.br\n" : ".\n.br\n", out);
		}
		config_fput_man_describe(d, out);
	}
}

/* Copies a string value into buf in config syntax, truncating safely. */
static void config_format_string(const char *s, char *buf, size_t len)
{
	size_t n = 0;
	bool quote = config_needs_quotes(s);

	if (quote && n + 1 < len)
		buf[n++] = '"';
	for (const char *p = s; *p != '\0' && n + 1 < len; p++) {
		if (quote && (*p == '"' || *p == '\\')) {
			if (n + 2 >= len)
				break;
			buf[n++] = '\\';
		}
		buf[n++] = *p;
	}
	if (quote && n + 1 < len)
		buf[n++] = '"';
	buf[n] = '\0';
}

/* Mirrors the file syntax so a formatted value can be read back unchanged. */
void config_format(const struct config *c, int i, char *buf, size_t len)
{
	const struct config_directive *d;
	long long v;

	if (buf == NULL || len == 0)
		return;
	buf[0] = '\0';
	if (c == NULL || i < 0 || (size_t)i >= c->count)
		return;
	d = &c->table[i];
	v = c->values[i].i;
	switch (d->type) {
	case CONFIG_STRING:
		config_format_string(config_str(c, i), buf, len);
		break;
	case CONFIG_BOOL:
		snprintf(buf, len, "%s", v ? "on" : "off");
		break;
	case CONFIG_ENUM:
		snprintf(buf, len, "%s", d->choices != NULL ? d->choices[v] : "");
		break;
	default:
		snprintf(buf, len, "%lld", v);
		break;
	}
}

/* The start-up and reload sequence shared by both daemons. */
struct config *
config_load(const struct config_directive *table, size_t count, const char *path, int argc,
    char **argv, config_error_fn *report, void *arg)
{
	struct config *c = config_new(table, count);
	int errors;

	if (c == NULL) {
		if (report != NULL)
			report(arg, "the directive table has an invalid default");
		return NULL;
	}
	errors = config_load_args(c, argc, argv, report, arg);
	if (path != NULL && config_load_file(c, path, report, arg) != 0)
		errors++;
	if (errors > 0) {
		config_free(c);
		return NULL;
	}
	return c;
}
