/*
 * Unit tests for the channel-to-shard mapping (common/redis_shard.c): stable values
 * (a change would move every deployed channel), an even spread, and the consistency
 * that makes adding a shard cheap: from n to n + 1 shards a channel either stays or
 * moves to the new shard, and about 1/(n + 1) of them move.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "redis_shard.h"

#define NAMES 20000

/* The i-th test channel name. */
static size_t name(char *buf, size_t len, unsigned i)
{
	return (size_t)snprintf(buf, len, "user%u@example.com", i);
}

/* Known values: FNV-1a's published vectors, and the mapping of a few names. */
static void test_stable(void **state)
{
	(void)state;
	assert_true(redis_shard_hash("", 0) == UINT64_C(0xcbf29ce484222325));
	assert_true(redis_shard_hash("a", 1) == UINT64_C(0xaf63dc4c8601ec8c));
	assert_true(redis_shard_hash("foobar", 6) == UINT64_C(0x85944171f73967e8));
	assert_int_equal(redis_shard_of("alice", 5, 1), 0);
	assert_int_equal(redis_shard_of("alice", 5, 0), 0);
	/* Pinned: these are what deployed brokers and pushers compute. */
	assert_int_equal(redis_shard_of("alice", 5, 2), 0);
	assert_int_equal(redis_shard_of("alice", 5, 3), 0);
	assert_int_equal(redis_shard_of("bob", 3, 3), 2);
}

/* Every shard gets close to its share. */
static void test_spread(void **state)
{
	unsigned count[8] = { 0 }, i, n;
	char buf[64];

	(void)state;
	for (n = 2; n <= 8; n++) {
		memset(count, 0, sizeof count);
		for (i = 0; i < NAMES; i++) {
			size_t len = name(buf, sizeof buf, i);
			unsigned s = redis_shard_of(buf, len, n);
			assert_true(s < n);
			count[s]++;
		}
		for (i = 0; i < n; i++) {
			assert_true(count[i] > NAMES / n * 9 / 10);
			assert_true(count[i] < NAMES / n * 11 / 10);
		}
	}
}

/* Growing by one shard moves channels only onto the new shard, about 1/(n + 1) of them. */
static void test_consistent(void **state)
{
	unsigned i, n, moved;
	char buf[64];

	(void)state;
	for (n = 1; n < 8; n++) {
		moved = 0;
		for (i = 0; i < NAMES; i++) {
			size_t len = name(buf, sizeof buf, i);
			unsigned a = redis_shard_of(buf, len, n), b = redis_shard_of(buf, len, n + 1);
			if (a != b) {
				assert_int_equal(b, n);
				moved++;
			}
		}
		assert_true(moved > NAMES / (n + 1) * 9 / 10);
		assert_true(moved < NAMES / (n + 1) * 11 / 10);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stable),
		cmocka_unit_test(test_spread),
		cmocka_unit_test(test_consistent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
