/*
 * Unit tests for the address-range matcher (broker/cidr.c): item and list parsing with
 * their errors, IPv4 and IPv6 prefix matching, v4-mapped addresses, loopback.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "cidr.h"

/* Parses a list that must be valid. */
static void
parse_ok(const char *text, struct cidr_list *l)
{
	char err[256] = "";

	assert_int_equal(cidr_list_parse(text, l, err, sizeof err), 0);
	assert_string_equal(err, "");
}

/* Matches a textual address against a list. */
static bool
match(const struct cidr_list *l, const char *ip)
{
	return cidr_list_match_text(l, ip, strlen(ip));
}

static void
test_items(void **state)
{
	struct cidr c;

	(void)state;
	assert_int_equal(cidr_parse("10.0.0.1", 8, &c), 0);
	assert_int_equal(c.family, 4);
	assert_int_equal(c.bits, 32);
	assert_int_equal(cidr_parse("10.1.2.3/8", 10, &c), 0);
	assert_int_equal(c.bits, 8);
	assert_int_equal(c.addr[1], 0);		/* host bits cleared */
	assert_int_equal(cidr_parse("::1", 3, &c), 0);
	assert_int_equal(c.family, 6);
	assert_int_equal(c.bits, 128);
	assert_int_equal(cidr_parse("fd00::/8", 8, &c), 0);
	assert_int_equal(cidr_parse("0.0.0.0/0", 9, &c), 0);
	assert_int_equal(c.bits, 0);
	assert_int_equal(cidr_parse("10.0.0.0/33", 11, &c), -1);
	assert_int_equal(cidr_parse("::/129", 6, &c), -1);
	assert_int_equal(cidr_parse("10.0.0.0/", 9, &c), -1);
	assert_int_equal(cidr_parse("10.0.0.0/08", 11, &c), -1);
	assert_int_equal(cidr_parse("10.0.0.0/-1", 11, &c), -1);
	assert_int_equal(cidr_parse("example.com", 11, &c), -1);
	assert_int_equal(cidr_parse("10.0.0", 6, &c), -1);
	assert_int_equal(cidr_parse("", 0, &c), -1);
	/* length is honoured: only "10.0.0.1" of the longer text is read */
	assert_int_equal(cidr_parse("10.0.0.1/8", 8, &c), 0);
	assert_int_equal(c.bits, 32);
}

static void
test_lists(void **state)
{
	struct cidr_list l;
	char err[256] = "";

	(void)state;
	parse_ok("", &l);
	assert_int_equal(l.n, 0);
	parse_ok(" 127.0.0.1, 10.0.0.0/8\t::1 ,fd00::/8 ", &l);
	assert_int_equal(l.n, 4);
	assert_int_equal(cidr_list_parse("127.0.0.1, nope", &l, err, sizeof err), -1);
	assert_non_null(strstr(err, "'nope'"));
	assert_int_equal(cidr_list_parse("1.2.3.4/40", &l, err, sizeof err), -1);
	assert_non_null(strstr(err, "'1.2.3.4/40'"));
}

static void
test_list_too_long(void **state)
{
	char text[CIDR_LIST_MAX * 12 + 32] = "", err[256] = "";
	struct cidr_list l;
	int i;

	(void)state;
	for (i = 0; i <= CIDR_LIST_MAX; i++)
		strcat(text, "10.0.0.1 ");
	assert_int_equal(cidr_list_parse(text, &l, err, sizeof err), -1);
	assert_non_null(strstr(err, "more than"));
}

static void
test_match(void **state)
{
	struct cidr_list l;

	(void)state;
	parse_ok("127.0.0.1 10.0.0.0/8 192.168.1.128/25 2001:db8::/32 fe80::1", &l);
	assert_true(match(&l, "127.0.0.1"));
	assert_false(match(&l, "127.0.0.2"));
	assert_true(match(&l, "10.255.1.2"));
	assert_false(match(&l, "11.0.0.1"));
	assert_true(match(&l, "192.168.1.200"));
	assert_false(match(&l, "192.168.1.127"));
	assert_true(match(&l, "2001:db8:1::5"));
	assert_false(match(&l, "2001:db9::5"));
	assert_true(match(&l, "fe80::1"));
	assert_false(match(&l, "fe80::2"));
	assert_true(match(&l, "::ffff:10.1.1.1"));	/* v4-mapped matches v4 */
	assert_false(match(&l, "not an address"));
	assert_false(match(&l, ""));
	parse_ok("0.0.0.0/0", &l);
	assert_true(match(&l, "203.0.113.9"));
	assert_false(match(&l, "::1"));		/* families do not mix */
}

static void
test_sockaddr(void **state)
{
	struct cidr_list l;
	struct sockaddr_in in = { .sin_family = AF_INET };
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
	struct sockaddr un = { .sa_family = AF_UNIX };

	(void)state;
	parse_ok("127.0.0.1 ::1", &l);
	inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
	assert_true(cidr_list_match_addr(&l, (struct sockaddr *)&in));
	assert_true(cidr_is_loopback((struct sockaddr *)&in));
	inet_pton(AF_INET, "127.0.0.2", &in.sin_addr);
	assert_false(cidr_list_match_addr(&l, (struct sockaddr *)&in));
	assert_true(cidr_is_loopback((struct sockaddr *)&in));
	inet_pton(AF_INET, "192.0.2.1", &in.sin_addr);
	assert_false(cidr_is_loopback((struct sockaddr *)&in));
	inet_pton(AF_INET6, "::1", &in6.sin6_addr);
	assert_true(cidr_list_match_addr(&l, (struct sockaddr *)&in6));
	assert_true(cidr_is_loopback((struct sockaddr *)&in6));
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
	assert_true(cidr_list_match_addr(&l, (struct sockaddr *)&in6));
	assert_true(cidr_is_loopback((struct sockaddr *)&in6));
	inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
	assert_false(cidr_is_loopback((struct sockaddr *)&in6));
	assert_false(cidr_list_match_addr(&l, &un));
	assert_false(cidr_is_loopback(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_items),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_list_too_long),
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_sockaddr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
