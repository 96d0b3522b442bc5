// Web push in Redis mode: registrations live in Redis (made on one broker, used by
// another), events from any broker and from the shared publish script (as the pusher
// writes them) reach the push queue stream, two brokers in one consumer group send
// each message once, webpush_when offline counts streams on every broker, and when
// the sending broker is SIGKILLed before the push service answered, the other one
// takes the entry over and sends it.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  startRedis, startRedisBroker, publishOk, redisPublish, redisCommand, subscribeReady, waitRedisCount,
  stopAll, WAIT, redisShardOf, waitHealth,
} from './lib.mjs';
import { vapidKeyFile, webpushArgs, startDecryptingService, registerOk, register, until } from './webpush-lib.mjs';

/** Ids of the events a subscription's messages carried, in arrival order. */
const ids = (got) => got.map((m) => JSON.parse(m.plaintext).id);

/**
 * Redis, a decrypting push service, and two brokers on both with web push (registrations
 * in Redis); runs fn({ r, dec, a, b }), then stops them all.
 */
async function withTwoBrokers(fn) {
  const r = await startRedis();
  const dec = await startDecryptingService();
  const args = webpushArgs(await vapidKeyFile(), [dec.origin], { webpush_store: undefined });
  const a = await startRedisBroker(r, args);
  const b = await startRedisBroker(r, args);
  try {
    await fn({ r, dec, a, b });
  } finally {
    try { await stopAll([a, b], r); } finally { await dec.close(); }
  }
}

test('two brokers on one Redis: registrations shared, each event sent once, pusher-style publishes too', async () => {
  await withTwoBrokers(async ({ r, dec, a, b }) => {
    await a.waitLog(/webpush: redis connected/);
    await b.waitLog(/webpush: redis connected/);
    const id = await registerOk(a, 'alice', dec.subscription('r1'));
    const hash = await redisCommand(r.target, 'HGETALL', 'ssepush:w:alice');
    assert.equal(hash[0], id, 'the registration is in Redis');
    assert.equal(JSON.parse(hash[1]).endpoint, dec.subscription('r1').endpoint);
    const sent = [];
    for (let i = 0; i < 20; i++) sent.push((await publishOk(i % 2 ? a : b, 'alice', `e${i}`)).id);
    sent.push((await redisPublish(r.target, 'alice', 'from the pusher')).id);
    await until(() => dec.received('r1').length >= sent.length, `${sent.length} messages`, WAIT * 3);
    // Each message once (wait a little longer for a duplicate that should never come).
    await until(async () => (await redisCommand(r.target, 'XLEN', 'ssepush:wq')) === 0, 'the queue drained and acknowledged');
    await until(async () => {
      const p = await redisCommand(r.target, 'XPENDING', 'ssepush:wq', 'webpush');
      return p[0] === 0;
    }, 'nothing pending in the group');
    assert.deepEqual([...ids(dec.received('r1'))].sort(), [...sent].sort());
    const fromPusher = dec.received('r1').map((m) => JSON.parse(m.plaintext)).find((m) => m.id === sent.at(-1));
    assert.equal(fromPusher.data, 'from the pusher');	// two senders: arrival order is not publish order
    // Both brokers are consumers of the one group. Redis 7.0 makes a sender a consumer
    // only once a read of it returns entries, or at its heartbeat's XAUTOCLAIM (within
    // WEBPUSH_HEARTBEAT_MS): one sender may have taken all 21 entries by now.
    let consumers = null;
    await until(async () => {
      consumers = await redisCommand(r.target, 'XINFO', 'CONSUMERS', 'ssepush:wq', 'webpush');
      return consumers.length === 2;
    }, 'both senders in the group');
    assert.equal(consumers.length, 2, `consumers: ${JSON.stringify(consumers)}`);
    // DELETE through the other broker; then nothing more is sent.
    const del = await fetch(`${b.url}/webpush/alice/${id}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.equal(await redisCommand(r.target, 'EXISTS', 'ssepush:w:alice'), 0);
    await publishOk(a, 'alice', 'after delete');
    assert.equal(await redisCommand(r.target, 'XLEN', 'ssepush:wq'), 0, 'a channel without registrations queues nothing');
    // The limit holds across brokers.
    for (let i = 0; i < 3; i++) await registerOk(i % 2 ? a : b, 'full', dec.subscription(`f${i}`));
    const over = await fetch(`${a.url}/webpush/full`, { method: 'POST', body: JSON.stringify(dec.subscription('f9')) });
    assert.equal(over.status, 201, 'under the default limit of 20');
  });
});

test('webpush_when offline: a stream on the other broker counts', async () => {
  await withTwoBrokers(async ({ r, dec, a, b }) => {
    await a.waitLog(/webpush: redis connected/);
    await registerOk(a, 'bob', dec.subscription('o1'));
    const s = await subscribeReady(b, 'bob');
    await waitRedisCount(r, 'bob', 1);
    const seen = await publishOk(a, 'bob', 'a stream got it');
    assert.equal(seen.subscribers, 1);
    s.close();
    await waitRedisCount(r, 'bob', 0);
    const p = await publishOk(a, 'bob', 'offline');
    await until(() => dec.received('o1').length === 1, 'the offline event');
    assert.deepEqual(ids(dec.received('o1')), [p.id]);
  });
});

test('webpush_when offline per session across brokers: a stream of session s1 on one broker keeps s1 quiet, not s2', async () => {
  await withTwoBrokers(async ({ r, dec, a, b }) => {
    await a.waitLog(/webpush: redis connected/);
    await registerOk(a, 'gina', dec.subscription('g1'), { session: 's1' });
    await registerOk(a, 'gina', dec.subscription('g2'), { session: 's2' });
    const s = await subscribeReady(b, 'gina', '?session=s1');
    await waitRedisCount(r, 'gina', 1);
    const p1 = await publishOk(a, 'gina', 's1 is online on the other broker');
    assert.equal(p1.subscribers, 1);
    await until(() => dec.received('g2').length === 1, 's2 pushed');
    s.close();
    await waitRedisCount(r, 'gina', 0);
    const p2 = await publishOk(a, 'gina', 'nobody online');
    await until(() => dec.received('g1').length === 1 && dec.received('g2').length === 2, 'the offline event on both');
    assert.deepEqual(ids(dec.received('g1')), [p2.id]);
    assert.deepEqual(ids(dec.received('g2')), [p1.id, p2.id]);
  });
});

test('two shards: registrations live on their channel\'s shard, each shard\'s queue is read, every event sent once', async () => {
  const rs = [await startRedis(), await startRedis()];
  const urls = rs.map((x) => x.url).join(' ');
  const dec = await startDecryptingService();
  const args = webpushArgs(await vapidKeyFile(), [dec.origin], { webpush_store: undefined });
  const a = await startRedisBroker({ url: urls }, args, { waitBus: false });
  const b = await startRedisBroker({ url: urls }, args, { waitBus: false });
  try {
    for (const x of [a, b]) await waitHealth(x, 200, 20000);
    await a.waitLog(/webpush: redis shard 1 connected/);
    await b.waitLog(/webpush: redis shard 1 connected/);
    // One channel on each shard.
    const names = [null, null];
    for (let i = 0; names.includes(null); i++) {
      const n = `shardpush${i}`;
      if (names[redisShardOf(n, 2)] === null) names[redisShardOf(n, 2)] = n;
    }
    const sent = [[], []];
    for (const [shard, ch] of names.entries()) {
      await registerOk(shard === 0 ? a : b, ch, dec.subscription(`sh${shard}`));
      for (const [i, r] of rs.entries()) {
        const n = await redisCommand(r.target, 'HLEN', `ssepush:w:${ch}`);
        assert.equal(n, i === shard ? 1 : 0, `${ch}: registrations on shard ${i} (want only on ${shard})`);
      }
      for (let k = 0; k < 3; k++) sent[shard].push((await publishOk(k % 2 ? a : b, ch, `${ch}-${k}`)).id);
    }
    await until(() => dec.received('sh0').length >= 3 && dec.received('sh1').length >= 3, 'both shards\' events pushed');
    for (const shard of [0, 1]) assert.deepEqual(ids(dec.received(`sh${shard}`)).sort(), [...sent[shard]].sort());
    await until(async () => (await redisCommand(rs[0].target, 'XLEN', 'ssepush:wq')) === 0 &&
      (await redisCommand(rs[1].target, 'XLEN', 'ssepush:wq')) === 0, 'both queues acknowledged and emptied');
  } finally {
    try { await stopAll([a, b], null); } finally {
      for (const r of rs) await r.stop();
      await dec.close();
    }
  }
});

test('SIGKILL of the sending broker before the push service answered: the other broker sends it', async () => {
  const r = await startRedis();
  const dec = await startDecryptingService();
  const key = await vapidKeyFile();
  const args = webpushArgs(key, [dec.origin], { webpush_reclaim: 2, webpush_store: undefined });
  const a = await startRedisBroker(r, args);
  let b;
  try {
    await a.waitLog(/webpush: redis connected/);
    await registerOk(a, 'carol', dec.subscription('k1'));
    dec.hold('k1');
    const p = await publishOk(a, 'carol', 'must arrive');
    await until(() => dec.received('k1').length === 1, 'a holds the request open');
    b = await startRedisBroker(r, args);
    await b.waitLog(/webpush: redis connected/);
    const pending = await redisCommand(r.target, 'XPENDING', 'ssepush:wq', 'webpush');
    assert.equal(pending[0], 1, 'the entry is pending with a');
    a.signal('SIGKILL');
    await a.exited();
    dec.release('k1');
    await until(() => dec.received('k1').length === 2, 'b takes the entry over and sends it', WAIT * 3);
    assert.deepEqual(ids(dec.received('k1')), [p.id, p.id]);
    assert.equal(dec.received('k1')[1].status, 201);
    await b.waitLog(/taking over queue entry/);
    await until(async () => (await redisCommand(r.target, 'XPENDING', 'ssepush:wq', 'webpush'))[0] === 0,
      'b acknowledged it');
    // Nothing more: a third copy never comes once b acknowledged.
    await publishOk(b, 'carol', 'next');
    await until(() => dec.received('k1').length === 3, 'the next event, once');
    assert.equal(JSON.parse(dec.received('k1')[2].plaintext).data, 'next');
    const bad = await register(b, 'carol', { endpoint: 'https://evil.example.com/x', keys: dec.subscription('k1').keys });
    assert.equal(bad.status, 400);
  } finally {
    try { await stopAll(b ? [b] : [], r); } finally { await dec.close(); }
  }
});
