/* Unit tests for common/redis_keys.c: id packing, notification parsing, the publish call layout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "redis_keys.h"

/* Packed keys keep the (ms, seq) order of stream ids and format back unchanged. */
static void
test_id_order_and_round_trip(void **state)
{
	static const char *const ids[] = { "0-0", "0-1", "1-0", "1795346882028-0",
	    "1795346882028-1", "1795346882028-1048575", "1795346882029-0" };
	uint64_t prev = 0, key;
	char buf[BUS_ID_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		assert_int_equal(bus_id_parse(ids[i], strlen(ids[i]), &key), 0);
		if (i > 0)
			assert_true(key > prev);
		prev = key;
		bus_id_format(buf, sizeof buf, key);
		assert_string_equal(buf, ids[i]);
	}
}

/* Anything that is not a usable stream id is refused. */
static void
test_id_refused(void **state)
{
	static const char *const bad[] = { "", "-", "1-", "-1", "1", "a-1", "1-a", "1-1-1",
	    " 1-1", "1-1048576", "99999999999999999999-0", "17000-1x" };
	uint64_t key;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(bus_id_parse(bad[i], strlen(bad[i]), &key), -1);
}

/* A notification splits into its five header lines and a data part that may hold newlines. */
static void
test_note_parse(void **state)
{
	static const char note[] = "5-1\nchange\ns1\n\no2\nline one\nline two";
	struct bus_note n;

	(void)state;
	assert_int_equal(bus_note_parse(note, sizeof note - 1, &n), 0);
	assert_int_equal(n.idlen, 3);
	assert_memory_equal(n.id, "5-1", 3);
	assert_memory_equal(n.type, "change", n.typelen);
	assert_memory_equal(n.session, "s1", n.sessionlen);
	assert_int_equal(n.excludelen, 0);
	assert_memory_equal(n.origin, "o2", n.originlen);
	assert_int_equal(n.datalen, strlen("line one\nline two"));
	assert_memory_equal(n.data, "line one\nline two", n.datalen);
	assert_int_equal(bus_note_parse("5-1\nchange\ns1\n", 14, &n), -1);
}

/* The publish call: KEYS and ARGV in the order the script reads them, binary-safe data. */
static void
test_publish_args(void **state)
{
	static const char data[] = "a\0b";
	struct bus_message m = { .channel = "alice@example.com", .type = NULL, .origin = "o1",
	    .data = data, .len = 3 };
	struct bus_publish_args a;
	char longname[300];

	(void)state;
	assert_int_equal(bus_publish_args(&a, "abc", "p:", 100, 600, &m), 0);
	assert_string_equal(a.argv[0], "EVALSHA");
	assert_string_equal(a.argv[1], "abc");
	assert_string_equal(a.argv[2], "4");
	assert_string_equal(a.argv[3], "p:h:alice@example.com");
	assert_string_equal(a.argv[4], "p:n:alice@example.com");
	assert_string_equal(a.argv[5], "p:c:alice@example.com");
	assert_string_equal(a.argv[6], "p:w:alice@example.com");
	assert_string_equal(a.argv[7], "100");
	assert_string_equal(a.argv[8], "600000");
	assert_string_equal(a.argv[9], "message");
	assert_string_equal(a.argv[10], "");
	assert_string_equal(a.argv[11], "");
	assert_string_equal(a.argv[12], "o1");
	assert_int_equal(a.lens[13], 3);
	assert_memory_equal(a.argv[13], data, 3);
	assert_string_equal(a.argv[14], "p:b:");
	assert_string_equal(a.argv[15], "p:wq");
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	m.channel = longname;
	assert_int_equal(bus_publish_args(&a, "abc", "p:", 100, 600, &m), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_order_and_round_trip),
		cmocka_unit_test(test_id_refused),
		cmocka_unit_test(test_note_parse),
		cmocka_unit_test(test_publish_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
