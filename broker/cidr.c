/*
 * Address ranges: parsing IPv4/IPv6 addresses with an optional prefix length, lists of
 * them, and prefix matching of socket or textual addresses. Owns no state beyond what
 * the caller passes in.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t cidr_v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

/* Reads a decimal prefix length of at most max; returns it, or -1. */
static int
cidr_bits(const char *s, size_t len, int max)
{
	int v = 0;
	size_t i;

	if (len == 0 || len > 3 || (len > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? v : -1;
}

/* Parses a bare numeric address into family and bytes; returns 0 or -1. */
static int
cidr_addr(const char *s, size_t len, uint8_t *family, uint8_t addr[16])
{
	char buf[CIDR_TEXT_MAX];

	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, addr) == 1) {
		*family = 6;
		return 0;
	}
	return -1;
}

/* Clears the host bits so that "10.1.2.3/8" and "10.0.0.0/8" are the same range. */
static void
cidr_mask(struct cidr *c)
{
	unsigned i, total = c->family == 4 ? 32 : 128;

	for (i = c->bits; i < total; i++)
		c->addr[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
}

/* Parses one range item. */
int
cidr_parse(const char *s, size_t len, struct cidr *out)
{
	const char *slash = memchr(s, '/', len);
	size_t alen = slash != NULL ? (size_t)(slash - s) : len;
	int bits;

	if (cidr_addr(s, alen, &out->family, out->addr) == -1)
		return -1;
	if (slash == NULL) {
		out->bits = out->family == 4 ? 32 : 128;
		return 0;
	}
	bits = cidr_bits(slash + 1, len - alen - 1, out->family == 4 ? 32 : 128);
	if (bits < 0)
		return -1;
	out->bits = (uint8_t)bits;
	cidr_mask(out);
	return 0;
}

/* Splits on commas and blanks; each item must parse. */
int
cidr_list_parse(const char *text, struct cidr_list *l, char *err, size_t errlen)
{
	const char *p = text;
	size_t n;

	l->n = 0;
	for (;;) {
		p += strspn(p, ", \t");
		if (*p == '\0')
			return 0;
		n = strcspn(p, ", \t");
		if (l->n == CIDR_LIST_MAX) {
			snprintf(err, errlen, "more than %d address ranges", CIDR_LIST_MAX);
			return -1;
		}
		if (cidr_parse(p, n, &l->item[l->n]) == -1) {
			snprintf(err, errlen, "'%.*s' is not an IPv4 or IPv6 address or addr/bits range",
			    (int)(n > CIDR_TEXT_MAX ? CIDR_TEXT_MAX : n), p);
			return -1;
		}
		l->n++;
		p += n;
	}
}

/* Whether the first c->bits bits of addr equal the range's network. */
static bool
cidr_prefix_equal(const struct cidr *c, const uint8_t *addr)
{
	unsigned whole = c->bits / 8, rest = c->bits % 8;
	uint8_t m;

	if (memcmp(c->addr, addr, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	m = (uint8_t)(0xff00u >> rest);
	return (c->addr[whole] & m) == (addr[whole] & m);
}

/* Matches an address of a family; a v4-mapped v6 address is matched as IPv4. */
static bool
cidr_list_match(const struct cidr_list *l, uint8_t family, const uint8_t addr[16])
{
	size_t i;

	if (family == 6 && memcmp(addr, cidr_v4_mapped, sizeof cidr_v4_mapped) == 0) {
		family = 4;
		addr += 12;
	}
	for (i = 0; i < l->n; i++)
		if (l->item[i].family == family && cidr_prefix_equal(&l->item[i], addr))
			return true;
	return false;
}

/* Textual form: the X-Forwarded-For items are matched this way. */
bool
cidr_list_match_text(const struct cidr_list *l, const char *s, size_t len)
{
	uint8_t family, addr[16];

	if (cidr_addr(s, len, &family, addr) == -1)
		return false;
	return cidr_list_match(l, family, addr);
}

/* Copies a socket address into family and bytes; returns 0 or -1 (not IP). */
static int
cidr_from_sockaddr(const struct sockaddr *sa, uint8_t *family, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
		*family = 4;
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
		*family = 6;
		return 0;
	}
	return -1;
}

/* Socket form: the peer of a connection. */
bool
cidr_list_match_addr(const struct cidr_list *l, const struct sockaddr *sa)
{
	uint8_t family, addr[16];

	if (cidr_from_sockaddr(sa, &family, addr) == -1)
		return false;
	return cidr_list_match(l, family, addr);
}

/* Loopback is 127.0.0.0/8 and ::1 (and the v4-mapped form of the former). */
bool
cidr_is_loopback(const struct sockaddr *sa)
{
	static const struct cidr_list lo = { 2, {
		{ 4, 8, { 127 } },
		{ 6, 128, { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 } },
	} };

	return cidr_list_match_addr(&lo, sa);
}
