/* The channel-to-shard mapping (jump consistent hash over FNV-1a), for both daemons. */
#include "redis_shard.h"

#include "fnv.h"

/* FNV-1a (fnv.h): stable across platforms and versions, so the mapping never moves. */
uint64_t
redis_shard_hash(const char *s, size_t len)
{
	return fnv1a(s, len);
}

/*
 * Jump consistent hash: a pseudo-random walk seeded by the key, whose last jump below
 * nshards is the bucket; growing nshards only ever moves a key to the new bucket.
 */
unsigned
redis_shard_of(const char *channel, size_t len, unsigned nshards)
{
	uint64_t key = redis_shard_hash(channel, len);
	int64_t b = -1, j = 0;

	if (nshards <= 1)
		return 0;
	while (j < (int64_t)nshards) {
		b = j;
		key = key * UINT64_C(2862933555777941757) + 1;
		j = (int64_t)((double)(b + 1) * ((double)(UINT64_C(1) << 31) / (double)((key >> 33) + 1)));
	}
	return (unsigned)b;
}
