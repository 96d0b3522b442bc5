/*
 * The publish primitive's server-side scripts and the helpers around them. The
 * scripts are the only writers of channel history, so history and live delivery
 * cannot diverge: the event is appended and announced in one atomic step.
 */
#include "redis_keys.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * KEYS: history stream, counts hash, notify channel, web push registrations hash.
 * ARGV: maxlen, ttl_ms, type, session, exclude_session, origin, data, alive key prefix,
 * web push queue stream.
 * Returns {id, subscribers}: the subscribers on live brokers the event is for.
 *
 * The first block is the interest check: a channel that no live broker counts a
 * subscriber for (live) and that holds no history stores nothing and is announced to
 * no one; it answers {"0-0", 0}. A per-channel key that means interest too (say, a
 * push registration) is checked there, on the channel's shard (include/redis_shard.h),
 * by setting interest. The history's TTL is renewed only by publishes that found a
 * live subscriber, so a channel nobody subscribed to within history_ttl stops being
 * stored once its history expires.
 */
const char bus_publish_script[] =
"-- interest: begin\n"
"local n, live, reached = 0, 0, {}\n"
"local f = redis.call('HGETALL', KEYS[2])\n"
"for i = 1, #f, 2 do\n"
"  local b, s, o = string.match(f[i], '^([^|]*)|([^|]*)|(.*)$')\n"
"  local c = tonumber(f[i + 1]) or 0\n"
"  if b == nil or c <= 0 or redis.call('EXISTS', ARGV[8] .. b) == 0 then\n"
"    redis.call('HDEL', KEYS[2], f[i])\n"
"  else\n"
"    live = live + c\n"
"    if (ARGV[4] == '' or s == ARGV[4]) and (ARGV[5] == '' or s ~= ARGV[5]) and\n"
"        (ARGV[6] == '' or not string.find(',' .. o .. ',', ',' .. ARGV[6] .. ',', 1, true)) then\n"
"      n = n + c\n"
"      reached[#reached + 1] = s\n"
"    end\n"
"  end\n"
"end\n"
"local interest = live > 0 or redis.call('EXISTS', KEYS[1]) == 1 or\n"
"  (KEYS[4] ~= nil and redis.call('EXISTS', KEYS[4]) == 1)\n"
"if not interest then return {'0-0', 0} end\n"
"-- interest: end\n"
"local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',\n"
"  't', ARGV[3], 's', ARGV[4], 'x', ARGV[5], 'o', ARGV[6], 'd', ARGV[7])\n"
"local t = redis.call('TIME')\n"
"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
"redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', now - tonumber(ARGV[2])))\n"
"if live > 0 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
"redis.call('PUBLISH', KEYS[3], id .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4] .. '\\n' ..\n"
"  ARGV[5] .. '\\n' .. ARGV[6] .. '\\n' .. ARGV[7])\n"
"-- web push (broker/webpush_redis.c): a channel with registrations queues the event\n"
"-- for one sender among the brokers (a consumer group); n and r (the sessions whose streams\n"
"-- got it) let webpush_when offline skip the registrations that are online\n"
"if KEYS[4] ~= nil and ARGV[9] ~= nil and redis.call('EXISTS', KEYS[4]) == 1 then\n"
"  redis.call('XADD', ARGV[9], 'MAXLEN', '~', '100000', '*', 'k', KEYS[4], 'i', id,\n"
"    't', ARGV[3], 's', ARGV[4], 'x', ARGV[5], 'd', ARGV[7], 'n', n,\n"
"    'r', #reached > 0 and (',' .. table.concat(reached, ',') .. ',') or '')\n"
"end\n"
"-- end of web push\n"
"return {id, n}\n";

/*
 * KEYS: history stream. ARGV: last id seen ("" = none, just report the newest), max
 * entries, and "sync" when a broker resyncs its ring (else "").
 * Returns {status, last_id, entries[, base]}: status ok, expired (events after the id are
 * gone: trimmed, or the stream was lost and created again) or unknown (newer than
 * anything published). For a sync, expired also carries what is still retained (the
 * newest max entries) and base, the id just before them, so that a broker can reset its
 * subscribers to base and still deliver everything published after the loss. An id counts as a position in the stream only if it is 0-0 with nothing
 * ever deleted, the newest deleted id, or at least the first retained entry: an older
 * id belongs to an earlier life of the stream (a Redis restart without persistence, or
 * an expired history), and what followed it there is lost. So does an id inside the
 * retained range that the stream does not hold: one that only an earlier primary had
 * (published, not replicated, then a failover), whatever the new primary added since.
 */
const char bus_replay_script[] =
"local function parse(id)\n"
"  local ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"
"  if ms == nil then return nil end\n"
"  return {tonumber(ms), tonumber(seq)}\n"
"end\n"
"local function less(a, b)\n"
"  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])\n"
"end\n"
"local function lost(last, maxdel)\n"
"  if ARGV[3] ~= 'sync' then return {'expired', last, {}} end\n"
"  local n = tonumber(ARGV[2])\n"
"  local r = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', n + 1)\n"
"  local base = maxdel\n"
"  if #r > n then base = r[n + 1][1]; r[n + 1] = nil end\n"
"  local e = {}\n"
"  for i = #r, 1, -1 do e[#e + 1] = r[i] end\n"
"  return {'expired', last, e, base}\n"
"end\n"
"if redis.call('EXISTS', KEYS[1]) == 0 then\n"
"  if ARGV[1] == '' or ARGV[1] == '0-0' then return {'ok', '0-0', {}} end\n"
"  if parse(ARGV[1]) == nil then return {'unknown', '0-0', {}} end\n"
"  return lost('0-0', '0-0')\n"
"end\n"
"local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
"local last, maxdel, first = '0-0', '0-0', nil\n"
"for i = 1, #info, 2 do\n"
"  if info[i] == 'last-generated-id' then last = info[i + 1]\n"
"  elseif info[i] == 'max-deleted-entry-id' then maxdel = info[i + 1]\n"
"  elseif info[i] == 'first-entry' and type(info[i + 1]) == 'table' then first = info[i + 1][1] end\n"
"end\n"
"if ARGV[1] == '' then return {'ok', last, {}} end\n"
"local from = parse(ARGV[1])\n"
"if from == nil or less(parse(last), from) then return {'unknown', last, {}} end\n"
"local md = parse(maxdel)\n"
"if less(from, md) then return lost(last, maxdel) end\n"
"local exact = not less(md, from)\n"
"if not exact and first ~= nil and less(from, parse(first)) then return lost(last, maxdel) end\n"
"if not exact and first == nil and ARGV[1] ~= last then return lost(last, maxdel) end\n"
"if not exact and #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then return lost(last, maxdel) end\n"
"local e = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])\n"
"if #e > 0 and e[#e][1] ~= last then return lost(last, maxdel) end\n"
"return {'ok', last, e}\n";

/*
 * KEYS: counts hash. ARGV: broker id, then field/count pairs. Replaces every count of
 * this broker on the channel (after a (re)subscription), so stale fields cannot linger.
 */
const char bus_counts_script[] =
"local f = redis.call('HKEYS', KEYS[1])\n"
"local p = ARGV[1] .. '|'\n"
"for i = 1, #f do\n"
"  if string.sub(f[i], 1, #p) == p then redis.call('HDEL', KEYS[1], f[i]) end\n"
"end\n"
"for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end\n"
"return 1\n";

/* Key names are built in one place so both daemons agree on the layout. */
size_t
bus_key(char *out, size_t outlen, const char *prefix, enum bus_key tag, const char *name)
{
	int n = snprintf(out, outlen, "%s%c:%s", prefix, (char)tag, name);

	return n < 0 || (size_t)n >= outlen ? 0 : (size_t)n;
}

/* The web push queue stream, "<prefix>wq": one per Redis server (shard), read by the brokers' senders. */
size_t
bus_webpush_queue_key(char *out, size_t outlen, const char *prefix)
{
	int n = snprintf(out, outlen, "%swq", prefix);

	return n < 0 || (size_t)n >= outlen ? 0 : (size_t)n;
}

/* Both daemons publish through this, so the script's KEYS/ARGV order lives here only. */
int
bus_publish_args(struct bus_publish_args *a, const char *sha, const char *prefix,
    long long history_size, long long history_ttl_s, const struct bus_message *m)
{
	int i;

	if (bus_key(a->keys[0], BUS_KEY_MAX, prefix, BUS_KEY_HISTORY, m->channel) == 0 ||
	    bus_key(a->keys[1], BUS_KEY_MAX, prefix, BUS_KEY_COUNTS, m->channel) == 0 ||
	    bus_key(a->keys[2], BUS_KEY_MAX, prefix, BUS_KEY_NOTIFY, m->channel) == 0 ||
	    bus_key(a->keys[3], BUS_KEY_MAX, prefix, BUS_KEY_WEBPUSH, m->channel) == 0 ||
	    bus_key(a->alive, BUS_KEY_MAX, prefix, BUS_KEY_ALIVE, "") == 0 ||
	    bus_webpush_queue_key(a->webpush_queue, BUS_KEY_MAX, prefix) == 0)
		return -1;
	snprintf(a->maxlen, sizeof a->maxlen, "%lld", history_size);
	snprintf(a->ttl_ms, sizeof a->ttl_ms, "%lld", history_ttl_s * 1000);
	a->argv[0] = "EVALSHA";
	a->argv[1] = sha;
	a->argv[2] = "4";
	a->argv[3] = a->keys[0];
	a->argv[4] = a->keys[1];
	a->argv[5] = a->keys[2];
	a->argv[6] = a->keys[3];
	a->argv[7] = a->maxlen;
	a->argv[8] = a->ttl_ms;
	a->argv[9] = m->type != NULL && *m->type != '\0' ? m->type : "message";
	a->argv[10] = m->session != NULL ? m->session : "";
	a->argv[11] = m->exclude_session != NULL ? m->exclude_session : "";
	a->argv[12] = m->origin != NULL ? m->origin : "";
	a->argv[13] = m->data;
	a->argv[14] = a->alive;
	a->argv[15] = a->webpush_queue;
	for (i = 0; i < BUS_PUBLISH_ARGC; i++)
		a->lens[i] = strlen(a->argv[i]);
	a->lens[13] = m->len;
	return 0;
}

/* Parses a decimal run; returns the position after it or NULL. */
static const char *
bus_number(const char *p, const char *end, uint64_t *v)
{
	const char *start = p;

	*v = 0;
	while (p < end && *p >= '0' && *p <= '9') {
		if (*v > (UINT64_MAX - 9) / 10)
			return NULL;
		*v = *v * 10 + (uint64_t)(*p++ - '0');
	}
	return p == start ? NULL : p;
}

/* Stream ids order by (ms, seq); packing keeps that order in one integer. */
int
bus_id_parse(const char *id, size_t len, uint64_t *key)
{
	const char *end = id + len, *p;
	uint64_t ms, seq;

	if ((p = bus_number(id, end, &ms)) == NULL || p == end || *p != '-' ||
	    (p = bus_number(p + 1, end, &seq)) == NULL || p != end)
		return -1;
	if (ms >= (UINT64_C(1) << (64 - BUS_SEQ_BITS)) || seq >= (UINT64_C(1) << BUS_SEQ_BITS))
		return -1;
	*key = ms << BUS_SEQ_BITS | seq;
	return 0;
}

/* The inverse of bus_id_parse. */
void
bus_id_format(char *out, size_t outlen, uint64_t key)
{
	snprintf(out, outlen, "%" PRIu64 "-%" PRIu64, key >> BUS_SEQ_BITS,
	    key & ((UINT64_C(1) << BUS_SEQ_BITS) - 1));
}

/* Cuts the next line off a notification; NULL if there is none. */
static const char *
bus_line(const char **p, const char *end, size_t *len)
{
	const char *start = *p, *nl = memchr(start, '\n', (size_t)(end - start));

	if (nl == NULL)
		return NULL;
	*len = (size_t)(nl - start);
	*p = nl + 1;
	return start;
}

/* Fields are borrowed in place; only data may contain newlines, so it comes last. */
int
bus_note_parse(const char *buf, size_t len, struct bus_note *n)
{
	const char *p = buf, *end = buf + len;

	if ((n->id = bus_line(&p, end, &n->idlen)) == NULL ||
	    (n->type = bus_line(&p, end, &n->typelen)) == NULL ||
	    (n->session = bus_line(&p, end, &n->sessionlen)) == NULL ||
	    (n->exclude_session = bus_line(&p, end, &n->excludelen)) == NULL ||
	    (n->origin = bus_line(&p, end, &n->originlen)) == NULL)
		return -1;
	n->data = p;
	n->datalen = (size_t)(end - p);
	return 0;
}
