/*
 * Unit tests for the `redis` directive's parser (common/redis_url.c): both accepted
 * forms with every optional part, the fields left empty for the other form, each
 * rejected shape (scheme, user name, host:port, port range and syntax, database range,
 * unix path, lengths at and past their bounds, trailing bytes), and error texts that
 * never repeat the password.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

#define SECRET "s3cr3t-pw"

/* Parses text, which must be accepted, into *u. */
static void parse_ok(const char *text, struct redis_url *u)
{
	char err[160] = "";

	if (redis_url_parse(text, u, err, sizeof err) != 0) {
		print_error("'%s' rejected: %s\n", text, err);
		fail();
	}
}

/* Parses text, which must be rejected with an error containing want (and no password). */
static void parse_bad(const char *text, const char *want)
{
	struct redis_url u;
	char err[160] = "";

	if (redis_url_parse(text, &u, err, sizeof err) != -1) {
		print_error("'%s' accepted\n", text);
		fail();
	}
	if (strstr(err, want) == NULL) {
		print_error("'%s': error '%s' lacks '%s'\n", text, err, want);
		fail();
	}
	assert_null(strstr(err, SECRET));
}

/* A string of n copies of c (n < 1024). */
static const char *repeat(char c, size_t n)
{
	static char buf[1024];

	assert_true(n < sizeof buf);
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

/* redis://host:port: host and port, the rest zero. */
static void test_tcp_plain(void **state)
{
	struct redis_url u;

	(void)state;
	parse_ok("redis://127.0.0.1:6379", &u);
	assert_string_equal(u.host, "127.0.0.1");
	assert_int_equal(u.port, 6379);
	assert_string_equal(u.path, "");
	assert_string_equal(u.password, "");
	assert_int_equal(u.db, 0);
	parse_ok("redis://redis.example.com:1", &u);
	assert_string_equal(u.host, "redis.example.com");
	assert_int_equal(u.port, 1);
	parse_ok("redis://h:65535", &u);
	assert_int_equal(u.port, 65535);
}

/* redis://:pw@host:port/db, with the optional parts one at a time. */
static void test_tcp_password_db(void **state)
{
	struct redis_url u;

	(void)state;
	parse_ok("redis://:" SECRET "@10.0.0.5:6379/3", &u);
	assert_string_equal(u.host, "10.0.0.5");
	assert_int_equal(u.port, 6379);
	assert_string_equal(u.password, SECRET);
	assert_int_equal(u.db, 3);
	assert_string_equal(u.path, "");
	parse_ok("redis://:pw@h:6379", &u);
	assert_string_equal(u.password, "pw");
	assert_int_equal(u.db, 0);
	parse_ok("redis://h:6379/0", &u);
	assert_string_equal(u.password, "");
	assert_int_equal(u.db, 0);
	parse_ok("redis://h:6379/1000000", &u);
	assert_int_equal(u.db, 1000000);
	/* The last '@' ends the password, so a password may hold '@' and ':'. */
	parse_ok("redis://:a@b:c@h:7/2", &u);
	assert_string_equal(u.password, "a@b:c");
	assert_string_equal(u.host, "h");
	assert_int_equal(u.port, 7);
	assert_int_equal(u.db, 2);
}

/* unix:/path and unix:/path?db=N: the path, no host or port. */
static void test_unix(void **state)
{
	struct redis_url u;

	(void)state;
	parse_ok("unix:/run/redis/redis.sock", &u);
	assert_string_equal(u.path, "/run/redis/redis.sock");
	assert_string_equal(u.host, "");
	assert_int_equal(u.port, 0);
	assert_string_equal(u.password, "");
	assert_int_equal(u.db, 0);
	parse_ok("unix:/tmp/r.sock?db=2", &u);
	assert_string_equal(u.path, "/tmp/r.sock");
	assert_int_equal(u.db, 2);
	parse_ok("unix:/s?db=0", &u);
	assert_int_equal(u.db, 0);
	parse_ok("unix:/s?db=1000000", &u);
	assert_int_equal(u.db, 1000000);
}

/* Anything but the two schemes, spelled exactly. */
static void test_scheme(void **state)
{
	(void)state;
	parse_bad("", "not a redis://");
	parse_bad("127.0.0.1:6379", "not a redis://");
	parse_bad("rediss://:" SECRET "@h:6380", "not a redis://");
	parse_bad("REDIS://h:6379", "not a redis://");
	parse_bad("redis:/h:6379", "not a redis://");
	parse_bad("tcp://h:6379", "not a redis://");
	parse_bad("unix", "not a redis://");
	parse_bad("/run/redis.sock", "not a redis://");
}

/* Ports: 1-65535 in decimal digits only, never empty. */
static void test_bad_ports(void **state)
{
	(void)state;
	parse_bad("redis://h:0", "bad port");
	parse_bad("redis://h:65536", "bad port");
	parse_bad("redis://h:99999", "bad port");
	parse_bad("redis://h:", "bad port");
	parse_bad("redis://h:/3", "bad port");
	parse_bad("redis://h:abc", "bad port");
	parse_bad("redis://h:63a9", "bad port");
	parse_bad("redis://h:-1", "bad port");
	parse_bad("redis://h:+6379", "bad port");
	parse_bad("redis://h: 6379", "bad port");
	parse_bad("redis://:" SECRET "@h:0", "bad port");
}

/* A missing port or host, and a colon that belongs to the database part. */
static void test_missing_port(void **state)
{
	(void)state;
	parse_bad("redis://localhost", "host:port expected");
	parse_bad("redis://localhost/3", "host:port expected");
	parse_bad("redis://h/3:4", "host:port expected");
	parse_bad("redis://:6379", "host:port expected");
	parse_bad("redis://", "host:port expected");
	parse_bad("redis://:" SECRET "@h", "host:port expected");
	parse_bad("redis://:" SECRET "@:6379", "host:port expected");
}

/* Databases 0-1000000, digits only, after exactly one '/'. */
static void test_bad_db(void **state)
{
	(void)state;
	parse_bad("redis://h:6379/1000001", "bad database number");
	parse_bad("redis://h:6379/-1", "bad database number");
	parse_bad("redis://h:6379/", "bad database number");
	parse_bad("redis://h:6379/x", "bad database number");
	parse_bad("redis://:" SECRET "@h:6379/99999999999", "bad database number");
	parse_bad("unix:/s?db=1000001", "only ?db=N");
	parse_bad("unix:/s?db=-1", "only ?db=N");
	parse_bad("unix:/s?db=", "only ?db=N");
	parse_bad("unix:/s?db=x", "only ?db=N");
}

/* The password goes as :password@, never after a user name. */
static void test_user_name(void **state)
{
	(void)state;
	parse_bad("redis://default:" SECRET "@h:6379", "no user name");
	parse_bad("redis://user@h:6379", "no user name");
	parse_bad("redis://" SECRET "@h:6379", "no user name");
}

/* A unix socket path is absolute and not empty. */
static void test_unix_path(void **state)
{
	(void)state;
	parse_bad("unix:", "absolute socket path");
	parse_bad("unix:run/redis.sock", "absolute socket path");
	parse_bad("unix:./redis.sock", "absolute socket path");
	parse_bad("unix:?db=2", "absolute socket path");
	parse_bad("unix:~/redis.sock", "absolute socket path");
}

/* host < 128 bytes, path < 108, password < 128: the last that fits and the first that does not. */
static void test_lengths(void **state)
{
	struct redis_url u;
	char text[1100];

	(void)state;
	snprintf(text, sizeof text, "redis://%s:6379", repeat('h', sizeof u.host - 1));
	parse_ok(text, &u);
	assert_int_equal(strlen(u.host), sizeof u.host - 1);
	snprintf(text, sizeof text, "redis://%s:6379", repeat('h', sizeof u.host));
	parse_bad(text, "host:port expected");
	snprintf(text, sizeof text, "redis://%s:6379", repeat('h', 1000));
	parse_bad(text, "host:port expected");

	snprintf(text, sizeof text, "unix:/%s", repeat('p', sizeof u.path - 2));
	parse_ok(text, &u);
	assert_int_equal(strlen(u.path), sizeof u.path - 1);
	snprintf(text, sizeof text, "unix:/%s", repeat('p', sizeof u.path - 1));
	parse_bad(text, "absolute socket path");
	snprintf(text, sizeof text, "unix:/%s?db=1", repeat('p', 1000));
	parse_bad(text, "absolute socket path");

	snprintf(text, sizeof text, "redis://:%s@h:6379", repeat('w', sizeof u.password - 1));
	parse_ok(text, &u);
	assert_int_equal(strlen(u.password), sizeof u.password - 1);
	snprintf(text, sizeof text, "redis://:%s@h:6379", repeat('w', sizeof u.password));
	parse_bad(text, "redis URL");
	snprintf(text, sizeof text, "redis://:%s%s@h:6379", SECRET, repeat('w', 900));
	parse_bad(text, "redis URL");
}

/* Bytes after a complete URL are refused, not ignored. */
static void test_trailing(void **state)
{
	(void)state;
	parse_bad("redis://h:6379x", "bad port");
	parse_bad("redis://h:6379 ", "bad port");
	parse_bad("redis://h:6379?db=2", "bad port");
	parse_bad("redis://h:6379/3x", "bad database number");
	parse_bad("redis://h:6379/3/", "bad database number");
	parse_bad("redis://h:6379/3 ", "bad database number");
	parse_bad("redis://:" SECRET "@h:6379/3#", "bad database number");
	parse_bad("unix:/s?db=2x", "only ?db=N");
	parse_bad("unix:/s?db=2&timeout=1", "only ?db=N");
	parse_bad("unix:/s?password=" SECRET, "only ?db=N");
	parse_bad("unix:/s?", "only ?db=N");
}

/*
 * The whole port is checked (digits past the seventh were once cut off, reading
 * "redis://h:000063799" as port 637), and so are the host and an empty password.
 */
static void test_long_port(void **state)
{
	(void)state;
	parse_bad("redis://h:000063799", "bad port");
	parse_bad("redis://:@h:1", "password must be");
	parse_bad("redis:// h:1", "host must be");
	parse_bad("redis://[::1]:6379", "host must be");
}

/* sentinel:// with one and several sentinels, a password, a database and every bad shape. */
static void test_sentinel(void **state)
{
	struct redis_url u;

	(void)state;
	parse_ok("sentinel://127.0.0.1:26379/mymaster", &u);
	assert_string_equal(u.master, "mymaster");
	assert_int_equal(u.nsentinels, 1);
	assert_string_equal(u.sentinels[0].host, "127.0.0.1");
	assert_int_equal(u.sentinels[0].port, 26379);
	assert_string_equal(u.host, "");
	assert_string_equal(u.path, "");
	parse_ok("sentinel://:" SECRET "@a:1,b.example:2,10.0.0.3:3/m-1.x_y?db=4", &u);
	assert_string_equal(u.password, SECRET);
	assert_int_equal(u.nsentinels, 3);
	assert_string_equal(u.sentinels[1].host, "b.example");
	assert_int_equal(u.sentinels[2].port, 3);
	assert_string_equal(u.master, "m-1.x_y");
	assert_int_equal(u.db, 4);
	parse_ok("sentinel://a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8/m", &u);
	assert_int_equal(u.nsentinels, 8);
	parse_bad("sentinel://a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9/m", "at most 8 sentinels");
	parse_bad("sentinel://a:1", "/<master-name> expected");
	parse_bad("sentinel://a:1/", "master name");
	parse_bad("sentinel://a:1/m/x", "master name");
	parse_bad("sentinel://a:1,/m", "host:port expected");
	parse_bad("sentinel://a:1,b/m", "host:port expected");
	parse_bad("sentinel://a:0/m", "bad port");
	parse_bad("sentinel://a:1/m?db=x", "only ?db=N");
	parse_bad("sentinel://:" SECRET "@a:99999/m", "bad port");
}

/* Lists: blank-separated, in order, bounded, no server twice, errors naming the position. */
static void test_list(void **state)
{
	struct redis_url u[REDIS_URL_SHARDS_MAX];
	char err[160] = "", desc[256];
	size_t n = 0;

	(void)state;
	assert_int_equal(redis_url_parse_list("  redis://a:1 \tunix:/s?db=2 sentinel://c:3,d:4/m ", u,
	    REDIS_URL_SHARDS_MAX, &n, err, sizeof err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(u[0].host, "a");
	assert_string_equal(u[1].path, "/s");
	assert_string_equal(u[2].master, "m");
	redis_url_describe(&u[2], desc, sizeof desc);
	assert_string_equal(desc, "sentinel m via c:3");
	redis_url_describe(&u[1], desc, sizeof desc);
	assert_string_equal(desc, "unix:/s");
	assert_int_equal(redis_url_parse_list("redis://a:1 redis://a:1", u, 4, &n, err, sizeof err), -1);
	assert_non_null(strstr(err, "same Redis"));
	assert_int_equal(redis_url_parse_list("redis://a:1/1 redis://a:1/2", u, 4, &n, err, sizeof err), 0);
	assert_int_equal(redis_url_parse_list("redis://a:1 redis://b:2 redis://c:3", u, 2, &n, err, sizeof err), -1);
	assert_non_null(strstr(err, "at most 2"));
	assert_int_equal(redis_url_parse_list("redis://a:1 redis://:" SECRET "@b", u, 4, &n, err, sizeof err), -1);
	assert_non_null(strstr(err, "URL 2: "));
	assert_null(strstr(err, SECRET));
	assert_int_equal(redis_url_parse_list("  ", u, 4, &n, err, sizeof err), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_plain),
		cmocka_unit_test(test_tcp_password_db),
		cmocka_unit_test(test_unix),
		cmocka_unit_test(test_scheme),
		cmocka_unit_test(test_bad_ports),
		cmocka_unit_test(test_missing_port),
		cmocka_unit_test(test_bad_db),
		cmocka_unit_test(test_user_name),
		cmocka_unit_test(test_unix_path),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_trailing),
		cmocka_unit_test(test_long_port),
		cmocka_unit_test(test_sentinel),
		cmocka_unit_test(test_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
