/*
 * Parsing of the `redis` directive, shared by the broker and the pusher:
 * redis://[:password@]host:port[/db] or unix:/path[?db=N]. Leaf module: libc only.
 */
#ifndef SSEPUSH_REDIS_URL_H
#define SSEPUSH_REDIS_URL_H

#include <stddef.h>

struct redis_url {
	char host[128];		/* empty for a UNIX socket */
	int port;
	char path[108];		/* UNIX socket path, or empty */
	char password[128];	/* empty if none */
	int db;
};

/* Fills u from text; returns 0, or -1 with the reason in err. */
int redis_url_parse(const char *text, struct redis_url *u, char *err, size_t errlen);

#endif
