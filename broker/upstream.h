/*
 * auth upstream (upstream.c): credentials checked by the JMAP server's session object,
 * cached per credential, fetched on a thread of its own so that no event loop waits.
 */
#ifndef SSEPUSH_UPSTREAM_H
#define SSEPUSH_UPSTREAM_H

#include <stddef.h>

#include "names.h"

#define UPSTREAM_KEY_LEN 32		/* SHA-256 */
#define UPSTREAM_ACCOUNTS_MAX 16	/* account ids kept from one session object */

/* What the upstream said about a credential. */
struct upstream_result {
	unsigned status;		/* 200 (accounts below), 401 (refused), 503 (no usable answer) */
	unsigned naccounts;
	char primary[NAMES_CHANNEL_MAX + 1];	/* primaryAccounts' mail account, or "" */
	char accounts[1024];		/* naccounts NUL-terminated ids, one after the other */
};

/* A lookup's answer, on the upstream thread (r is borrowed for the call). */
typedef void upstream_done(void *arg, const struct upstream_result *r);

/* upstream_lookup()'s results. */
enum { UPSTREAM_ANSWERED = 0, UPSTREAM_PENDING = 1 };

int upstream_start(void);
void upstream_stop(void);
/*
 * Checks a request's Authorization and Cookie values (NULL: none). Answers at once
 * from the cache, for a missing credential or when no request can be made (*r filled,
 * UPSTREAM_ANSWERED, done never called), or returns UPSTREAM_PENDING and calls done
 * exactly once later, on the upstream thread (also when the broker stops: 503).
 */
int upstream_lookup(const char *authorization, const char *cookie, struct upstream_result *r,
    upstream_done *done, void *arg);
int upstream_parse_session(const char *body, size_t len, struct upstream_result *r);

#endif
