// Redis sharding: three redis-servers, brokers and the pusher given all three URLs.
// Each channel's keys live on the shard that common/redis_shard.c names (checked
// against the same function written in lib.mjs), channels spread over all three,
// cross-broker delivery, counts and replay work on each, the pusher's events land on
// the right shard; one shard SIGKILLed: its channels' publishes get 503 + Retry-After,
// /healthz names it, the other channels go on untouched; restarted, its channels
// recover by themselves. Only processes started here are signalled, by pid.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  killAll, startRedis, startRedisBroker, subscribeReady, subscribe, publish, publishOk, redisCommand,
  waitHealth, waitFor, waitRedisCount, redisShardOf, http, stopAll, writeConfig, runBroker, runProcess,
} from './lib.mjs';
import { startPusher, mailDatagram, sendDatagrams, PUSHER } from './pusher-lib.mjs';

after(killAll);

const RECOVER = 20000;

/** The first names "<prefix><i>" that land on each of n shards, k per shard. */
function namesPerShard(prefix, n, k) {
  const out = Array.from({ length: n }, () => []);
  for (let i = 0; out.some((l) => l.length < k); i++) {
    const name = `${prefix}${i}`;
    const s = redisShardOf(name, n);
    if (out[s].length < k) out[s].push(name);
  }
  return out;
}

test('three shards: channels spread, each on its shard; delivery, counts and replay on each; the pusher maps users the same way', async () => {
  const rs = [await startRedis(), await startRedis(), await startRedis()];
  const urls = rs.map((r) => r.url).join(' ');
  const A = await startRedisBroker({ url: urls }, [], { waitBus: false });
  const B = await startRedisBroker({ url: urls }, [], { waitBus: false });
  const streams = [];
  let pusher = null;
  try {
    for (const b of [A, B]) await waitHealth(b, 200, RECOVER);
    // 60 channel names: every shard gets some.
    const spread = [0, 0, 0];
    for (let i = 0; i < 60; i++) spread[redisShardOf(`user${i}@example.com`, 3)]++;
    assert.ok(spread.every((x) => x >= 10), `60 channels over 3 shards: ${spread}`);

    const per = namesPerShard('chan', 3, 2);
    for (const [shard, names] of per.entries()) {
      for (const ch of names) {
        const s = await subscribeReady(B, ch);
        streams.push(s);
        await waitRedisCount(rs[shard], ch, 1);
        const p = await publishOk(A, ch, `to-${ch}`);
        assert.equal(p.subscribers, 1, `${ch} on shard ${shard}: counted subscribers`);
        await s.waitFor((x) => x.events().some((e) => e.id === p.id), undefined, `${ch}: the event through A`);
        for (const [i, r] of rs.entries()) {
          const has = await redisCommand(r.target, 'EXISTS', `ssepush:h:${ch}`);
          assert.equal(has, i === shard ? 1 : 0, `${ch}: history key on shard ${i} (want only on ${shard})`);
        }
        // Replay on the other broker from the first event.
        const p2 = await publishOk(B, ch, `second-${ch}`);
        const back = await subscribe(A, `/events/${ch}`, { headers: { 'Last-Event-ID': p.id } });
        streams.push(back);
        const [f] = await back.waitEvents(1);
        assert.equal(f.id, p2.id, `${ch}: replay on A after ${p.id}: ${back.describe()}`);
        back.close();
        s.close();
      }
    }
    // Every broker's liveness key is on every shard (each shard's publish script checks it there).
    for (const r of rs) {
      const keys = await redisCommand(r.target, 'KEYS', 'ssepush:b:*');
      assert.equal(keys.length, 2, `liveness keys on a shard: ${JSON.stringify(keys)}`);
    }

    // The pusher, on the same three URLs, publishes each user's change on the user's shard.
    const dir = mkdtempSync(path.join(tmpdir(), 'ssepush-shards-'));
    const sock = path.join(dir, 'notify.sock');
    pusher = await startPusher(['--notify_socket', sock, '--redis', urls, '--coalesce_ms', '0']);
    const users = namesPerShard('mailuser', 3, 1).map((l) => l[0]);
    const subs = [];
    for (const u of users) { const s = await subscribeReady(A, u); subs.push(s); streams.push(s); }
    await sendDatagrams(sock, users.map((u) => mailDatagram(u)));
    for (const [i, s] of subs.entries()) {
      await s.waitFor((x) => x.events().some((e) => e.event === 'change'), 10000, `the change event of ${users[i]}`);
      assert.equal(await redisCommand(rs[i].target, 'EXISTS', `ssepush:h:${users[i]}`), 1, `${users[i]}: history on shard ${i}`);
    }
  } finally {
    if (pusher) await pusher.stop();
    await stopAll([A, B], null, streams);
    for (const r of rs) if (r.running()) await r.stop();
  }
});

test('one shard SIGKILLed: its channels 503 + Retry-After and /healthz names it, the others go on; restarted, its channels recover', async () => {
  const rs = [await startRedis(), await startRedis(), await startRedis()];
  const urls = rs.map((r) => r.url).join(' ');
  const A = await startRedisBroker({ url: urls }, [], { waitBus: false });
  const B = await startRedisBroker({ url: urls }, [], { waitBus: false });
  const streams = [];
  try {
    for (const b of [A, B]) await waitHealth(b, 200, RECOVER);
    const per = namesPerShard('k', 3, 1).map((l) => l[0]);
    const subs = [];
    for (const ch of per) { const s = await subscribeReady(B, ch); subs.push(s); streams.push(s); }
    await rs[1].kill();
    const h = await waitHealth(A, 503, RECOVER);
    assert.match(h.body, /shard 1/, `/healthz does not name the shard that is down: ${h.body}`);
    const down = await publish(A, per[1], 'while-down');
    assert.equal(down.status, 503, `publish to ${per[1]} on the dead shard: ${down.status} ${down.body}`);
    assert.match(down.headers['retry-after'] || '', /^\d+$/, 'no Retry-After on the 503');
    for (const i of [0, 2]) {
      const p = await publishOk(A, per[i], `up-${i}`);
      assert.equal(p.subscribers, 1, `${per[i]} on live shard ${i}: subscribers`);
      await subs[i].waitFor((x) => x.events().some((e) => e.id === p.id), undefined, `${per[i]}: delivered while shard 1 is down`);
    }
    await rs[1].start();
    for (const b of [A, B]) await waitHealth(b, 200, RECOVER);
    await waitRedisCount(rs[1], per[1], 1, RECOVER);
    const back = await publishOk(A, per[1], 'after-restart');
    assert.equal(back.subscribers, 1, 'the shard that came back counts its subscriber again');
    await subs[1].waitFor((x) => x.events().some((e) => e.id === back.id), RECOVER, `${per[1]}: delivered after the restart`);
    const ids = subs[1].events().map((e) => e.id);
    assert.ok(!ids.includes(undefined), `events without ids: ${subs[1].describe()}`);
    // The others never saw a reset.
    for (const i of [0, 2]) assert.ok(!subs[i].events().some((e) => e.event === 'reset'), `${per[i]}: a reset on a shard that never failed`);
    const stats = await http(A.publishPort, '/metrics');
    assert.match(stats.body, /ssepush_redis_shard_up\{shard="1"\} 1/, 'ssepush_redis_shard_up for shard 1');
  } finally {
    await stopAll([A, B], null, streams);
    for (const r of rs) if (r.running()) await r.stop();
  }
});

test('-n: the redis directive\'s lists and sentinel URLs are checked as file:line: message, in both daemons', async () => {
  const good = 'redis redis://127.0.0.1:6379 unix:/run/redis.sock?db=2 sentinel://10.0.0.1:26379,10.0.0.2:26379/mail?db=1\n';
  const bad = [
    ['redis redis://127.0.0.1:6379 redis://127.0.0.1:6379\n', /same Redis/],
    ['redis redis://127.0.0.1:6379 sentinel://10.0.0.1:26379\n', /URL 2: sentinel URL: \/<master-name> expected/],
    ['redis sentinel://10.0.0.1:26379/bad/name\n', /master name/],
    [`redis ${Array.from({ length: 17 }, (_, i) => `redis://127.0.0.1:${6000 + i}`).join(' ')}\n`, /at most 16 Redis URLs/],
  ];
  for (const [file, daemon] of [['broker', null], ['pusher', PUSHER]]) {
    const run = (f) => (daemon ? runProcess(daemon, ['-n', '-f', f]) : runBroker(['-n', '-f', f]));
    const ok = await run(writeConfig(good, `${file}-good.conf`));
    assert.equal(ok.code, 0, `${file}: a good list refused: ${ok.stdout}${ok.stderr}`);
    for (const [text, re] of bad) {
      const f = writeConfig(text, `${file}-bad.conf`);
      const r = await run(f);
      const out = r.stdout + r.stderr;
      assert.equal(r.code, 1, `${file}: ${text.trim().slice(0, 60)}: exit ${r.code}; ${out}`);
      assert.ok(out.includes(`${f}:1: `), `${file}: no file:line in ${out}`);
      assert.match(out, re, `${file}: ${text.trim().slice(0, 60)}`);
    }
  }
});
