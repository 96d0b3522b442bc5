// Interest (the publish script's first block): a publish, through a broker or straight
// into Redis as the pusher does, for a channel that no live broker counts a subscriber
// for and that holds no history stores nothing and answers subscribers 0; a channel
// with a subscriber, or one that had one within history_ttl, is stored as before, so
// replay is unaffected; once such a history expires, nothing is stored again.
// A real redis-server per test; only processes started here are signalled, by pid.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  killAll, startRedis, startRedisBroker, subscribe, subscribeReady, publishOk, redisPublish, redisCommand,
  waitRedisCount, waitFor, stopAll,
} from './lib.mjs';

after(killAll);

test('no subscriber and no history: nothing stored, subscribers 0; with a subscriber or recent history: stored and replayed as before', async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r, ['--history_ttl', '2']);
  const B = await startRedisBroker(r, ['--history_ttl', '2']);
  const streams = [];
  try {
    const nobody = await publishOk(A, 'nobody', 'x');
    assert.equal(nobody.subscribers, 0);
    assert.equal(nobody.id, '0-0', 'a publish that stored nothing answers id 0-0');
    const direct = await redisPublish(r.target, 'nobody-direct', 'y', { history_ttl: 2 });
    assert.deepEqual(direct, { id: '0-0', subscribers: 0 }, 'the pusher\'s way: nothing stored');
    const keys = await redisCommand(r.target, 'KEYS', 'ssepush:*nobody*');
    assert.deepEqual(keys, [], 'keys written for channels nobody subscribed to');

    // A subscriber on B: stored, delivered.
    const ch = 'someone';
    const s = await subscribeReady(B, ch);
    streams.push(s);
    await waitRedisCount(r, ch, 1);
    const e1 = await publishOk(A, ch, 'e1');
    assert.equal(e1.subscribers, 1);
    assert.notEqual(e1.id, '0-0');
    await s.waitFor((x) => x.events().some((e) => e.id === e1.id), undefined, 'e1');
    s.close();
    await waitRedisCount(r, ch, 0);
    // Gone, but the history is recent: e2 is stored, and a reconnect with e1 gets it.
    const e2 = await publishOk(A, ch, 'e2');
    assert.equal(e2.subscribers, 0);
    assert.notEqual(e2.id, '0-0', 'a channel with recent history stopped being stored');
    const back = await subscribe(A, `/events/${ch}`, { headers: { 'Last-Event-ID': e1.id } });
    streams.push(back);
    const [f] = await back.waitEvents(1);
    assert.equal(f.id, e2.id, `replay after e1: ${back.describe()}`);
    back.close();
    await waitRedisCount(r, ch, 0);
    // Once the history expired (history_ttl 2 s after the last publish that had a subscriber), nothing is stored.
    await waitFor(async () => (await redisCommand(r.target, 'EXISTS', `ssepush:h:${ch}`)) === 0, 10000,
      'the history to expire');
    const e3 = await publishOk(A, ch, 'e3');
    assert.equal(e3.id, '0-0', 'stored after the history expired with no subscriber');
    assert.equal(await redisCommand(r.target, 'EXISTS', `ssepush:h:${ch}`), 0);
  } finally { await stopAll([A, B], r, streams); }
});
