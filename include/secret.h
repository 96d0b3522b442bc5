/*
 * Secrets kept in files, for both daemons: a file that others may read (or group or
 * others may write) is refused, one its group may read is warned about, and the
 * secret is one line of a bounded length. Leaf module: libc and the log.
 */
#ifndef SSEPUSH_SECRET_H
#define SSEPUSH_SECRET_H

#include <stddef.h>

/*
 * Checks the file's mode: 0, or -1 with the reason in err. who names the daemon in the
 * warning about a group-readable file ("the broker").
 */
int secret_file_mode_ok(const char *file, const char *who, char *err, size_t errlen);
/*
 * Reads a one-line secret of min to max bytes (trailing CR/LF dropped) into buf (max + 2
 * bytes) after the mode check; returns 0 with its length in *len, or -1 with err.
 */
int secret_read_file(const char *file, const char *who, char *buf, size_t max, size_t min,
    size_t *len, char *err, size_t errlen);

#endif
