/*
 * Leveled logging to stderr, one write per line so lines from several threads never
 * interleave, and escaping of untrusted bytes. Owns nothing but the current level.
 */
#include "log.h"
#include "utf8.h"

#define LOG_REPORT_MAX 8192	/* bytes of one cleaned configuration error */

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level_now = LOG_INFO;
static const char *const log_names[] = LOG_LEVEL_NAMES;

/* Sets the most verbose level written; safe from any thread. */
void
log_set_level(enum log_level level)
{
	atomic_store(&log_level_now, (int)level);
}

/* Lets callers skip costly formatting of a message that would be dropped. */
int
log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&log_level_now);
}

/* Formats one line and writes it with a single write(2) so threads cannot interleave. */
static void
log_vwrite(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	struct timespec ts;
	struct tm tm;
	int n, m;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	    tm.tm_sec, ts.tv_nsec / 1000000, log_names[level]);
	m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	n += m;
	if (n > (int)sizeof line - 2)
		n = (int)sizeof line - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
		/* Nowhere left to report a failing stderr. */
	}
}

#define LOG_FN(fn, level)				\
	void fn(const char *fmt, ...)			\
	{						\
		va_list ap;				\
		va_start(ap, fmt);			\
		log_vwrite(level, fmt, ap);		\
		va_end(ap);				\
	}

LOG_FN(log_error, LOG_ERROR)
LOG_FN(log_warn, LOG_WARN)
LOG_FN(log_info, LOG_INFO)
LOG_FN(log_debug, LOG_DEBUG)

/*
 * A configuration error quotes the file's bytes (a line of random bytes, a name with
 * escape sequences): control and non-ASCII bytes become \xNN, so a terminal or a log
 * collector sees text only. Cut at dstlen.
 */
static const char *
log_report_clean(char *dst, size_t dstlen, const char *src)
{
	return utf8_escape(dst, dstlen, src, 0x20, 0x7e);
}

/* Prints one configuration error as is, before the log is set up (-n, start-up). */
void
log_report_stderr(void *arg, const char *msg)
{
	char clean[LOG_REPORT_MAX];

	(void)arg;
	fprintf(stderr, "%s\n", log_report_clean(clean, sizeof clean, msg));
}

/* Logs one configuration error (a reload while running). */
void
log_report_error(void *arg, const char *msg)
{
	char clean[LOG_REPORT_MAX];

	(void)arg;
	log_error("%s", log_report_clean(clean, sizeof clean, msg));
}

/* Logs and exits: for start-up failures and broken invariants only. */
void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}

/* Makes peer-controlled bytes safe to put in a log line (no control bytes, bounded). */
char *
log_escape(char *dst, const char *src, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0, n = len > LOG_ESCAPE_MAX ? LOG_ESCAPE_MAX : len;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '\\' || c == '"') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		}
	}
	if (n < len) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}
