/*
 * Address ranges for trusted_proxies: parsing "addr" and "addr/bits" items (IPv4 and
 * IPv6) and lists of them, and matching a peer address against a list. IPv4-mapped
 * IPv6 addresses (::ffff:a.b.c.d) match IPv4 ranges. Knows nothing of HTTP or config.
 * Leaf module: libc only.
 */
#ifndef SSEPUSH_CIDR_H
#define SSEPUSH_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define CIDR_LIST_MAX 64	/* ranges in one list */
#define CIDR_TEXT_MAX 64	/* bytes in one "addr/bits" item */

/* One range: family 4 or 6, the network's bytes (4 or 16 used), prefix length. */
struct cidr {
	uint8_t family;
	uint8_t bits;
	uint8_t addr[16];
};

struct cidr_list {
	size_t n;
	struct cidr item[CIDR_LIST_MAX];
};

/* Parses "addr" or "addr/bits" (len bytes, no blanks) into *out; returns 0 or -1. */
int cidr_parse(const char *s, size_t len, struct cidr *out);
/*
 * Parses a list of items separated by commas and/or blanks into *l (an empty text is
 * an empty list). Returns 0, or -1 with the reason in err (naming the bad item).
 */
int cidr_list_parse(const char *text, struct cidr_list *l, char *err, size_t errlen);
/* Whether a numeric address in text (len bytes) lies in one of the list's ranges. */
bool cidr_list_match_text(const struct cidr_list *l, const char *s, size_t len);
/* Whether a socket address (AF_INET or AF_INET6) lies in one of the list's ranges. */
bool cidr_list_match_addr(const struct cidr_list *l, const struct sockaddr *sa);
/* Whether a socket address is a loopback one (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104). */
bool cidr_is_loopback(const struct sockaddr *sa);

#endif
