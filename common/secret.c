/* Secrets kept in files (see include/secret.h). */
#include "secret.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"

/* The mode says who else may read or change the secret. */
int
secret_file_mode_ok(const char *file, const char *who, char *err, size_t errlen)
{
	struct stat st;

	if (stat(file, &st) == -1) {
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		return -1;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) {
		snprintf(err, errlen, "%s holds a secret but is %s by other users (mode %03o); chmod 600 it (or 640 for a dedicated group)",
		    file, (st.st_mode & S_IROTH) ? "readable" : "writable", (unsigned)(st.st_mode & 0777));
		return -1;
	}
	if (st.st_mode & S_IRGRP)
		log_warn("%s holds a secret and is readable by its group (mode %03o): make sure only %s is in it",
		    file, (unsigned)(st.st_mode & 0777), who);
	return 0;
}

/* One line: a NUL or a second line inside it is refused, not cut. */
int
secret_read_file(const char *file, const char *who, char *buf, size_t max, size_t min,
    size_t *len, char *err, size_t errlen)
{
	FILE *f;
	size_t n;

	if (secret_file_mode_ok(file, who, err, errlen) == -1)
		return -1;
	if ((f = fopen(file, "r")) == NULL) {
		snprintf(err, errlen, "cannot open %s: %s", file, strerror(errno));
		return -1;
	}
	n = fread(buf, 1, max + 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	buf[n <= max ? n : max] = '\0';
	if (n > max || memchr(buf, '\0', n) != NULL || memchr(buf, '\n', n) != NULL) {
		snprintf(err, errlen, "%s must hold one line of at most %zu bytes", file, max);
		return -1;
	}
	if (n < min) {
		snprintf(err, errlen, "the secret in %s needs at least %zu bytes (try: openssl rand -base64 48)",
		    file, min);
		return -1;
	}
	*len = n;
	return 0;
}
