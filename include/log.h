/*
 * Logging shared by both daemons: leveled lines on stderr with a UTC timestamp, and
 * escaping of untrusted bytes before they reach a log line. It does not own where the
 * output goes (stderr, collected by systemd) or any rotation.
 */
#ifndef SSEPUSH_LOG_H
#define SSEPUSH_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

#define LOG_LEVEL_NAMES { "error", "warn", "info", "debug", NULL }
#define LOG_ESCAPE_MAX 256	/* untrusted bytes shown per log field */

/* Sets the most verbose level that is written. */
void log_set_level(enum log_level level);
/* Returns nonzero when a message at level would be written. */
int log_enabled(enum log_level level);
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Config error reporters (config_error_fn): to stderr before logging starts, to the log after. */
void log_report_stderr(void *arg, const char *msg);
void log_report_error(void *arg, const char *msg);
/* Logs at LOG_ERROR and exits 1: only at start-up or for a broken invariant. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/*
 * Writes src (len bytes, untrusted) into dst as printable ASCII: bytes outside 0x20-0x7e,
 * backslash and double quote become \xNN, \\ or \"; cut to LOG_ESCAPE_MAX input bytes
 * with "..." appended. dst must hold at least 4 * LOG_ESCAPE_MAX + 4 bytes. Returns dst.
 */
char *log_escape(char *dst, const char *src, size_t len);
#define LOG_ESCAPE_SIZE (4 * LOG_ESCAPE_MAX + 4)

#endif
