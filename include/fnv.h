/*
 * FNV-1a, 64 bits: the one string hash of both daemons (channel tables, the Redis
 * shard mapping, the pusher's per-owner tables). Simple and stable across platforms
 * and versions, so the shard mapping never moves with a rebuild; spread is good enough
 * for names, which are short and drawn from a fixed alphabet. Header only, libc only.
 */
#ifndef SSEPUSH_FNV_H
#define SSEPUSH_FNV_H

#include <stddef.h>
#include <stdint.h>

/* The 64-bit FNV-1a hash of len bytes. */
static inline uint64_t
fnv1a(const char *s, size_t len)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

#endif
