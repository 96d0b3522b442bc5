// Redis mode, several brokers as one service: a publish on any broker or straight into
// Redis (the shared publish script, as the pusher calls it) reaches subscribers on every
// broker with the same Redis stream id; the count in the answer is the total across
// brokers after the session / origin filters; a client that moves to another broker
// with Last-Event-ID gets exactly what it missed; old and future ids get a reset; a
// broker killed with SIGKILL stops being counted. A real redis-server per test.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  killAll, startRedis, startRedisBroker, subscribe, subscribeReady, publishOk, redisPublish,
  redisCommand, waitRedisCount, compareStreamIds, waitFor, http, stopAll,
} from './lib.mjs';

after(killAll);

const STREAM_ID = /^\d+-\d+$/;

/** [id, data] of a stream's events. */
const idData = (s) => s.events().map((e) => [e.id, e.data]);

test('a publish on one broker and one straight into Redis reach every broker; the count is the total, after filters', async () => {
  const r = await startRedis();
  const [A, B, C] = [await startRedisBroker(r), await startRedisBroker(r), await startRedisBroker(r)];
  const streams = [];
  try {
    const ch = 'multi@example.com';
    const sA = await subscribeReady(A, ch, '?session=s1');
    const sB1 = await subscribeReady(B, ch, '?session=s1');
    const sB2 = await subscribeReady(B, ch, '?session=s2', 2);
    const sC = await subscribeReady(C, ch, '?origin=o1');
    streams.push(sA, sB1, sB2, sC);
    await waitRedisCount(r, ch, 4);

    const expect = new Map([[sA, []], [sB1, []], [sB2, []], [sC, []]]);
    const sent = (p, data, to) => { for (const s of to) expect.get(s).push([p.id, data]); };

    const p1 = await publishOk(A, ch, 'from-A');
    assert.match(p1.id, STREAM_ID, `id ${p1.id} is not a Redis stream id`);
    assert.equal(p1.subscribers, 4, 'count of a publish on A is not the total of all brokers');
    sent(p1, 'from-A', [sA, sB1, sB2, sC]);

    const p2 = await redisPublish(r.target, ch, 'from-redis');
    assert.match(p2.id, STREAM_ID);
    assert.equal(p2.subscribers, 4, 'the shared publish script does not count every broker');
    sent(p2, 'from-redis', [sA, sB1, sB2, sC]);

    const p3 = await publishOk(B, ch, 'only-s1', { query: { session: 's1' } });
    assert.equal(p3.subscribers, 2, 'session=s1 count (one on A, one on B)');
    sent(p3, 'only-s1', [sA, sB1]);

    const p4 = await publishOk(C, ch, 'not-s1', { query: { exclude_session: 's1' } });
    assert.equal(p4.subscribers, 2, 'exclude_session=s1 count (s2 on B, no session on C)');
    sent(p4, 'not-s1', [sB2, sC]);

    const p5 = await publishOk(A, ch, 'from-o1', { query: { origin: 'o1' } });
    assert.equal(p5.subscribers, 3, 'origin=o1 count (the subscriber on C produces o1 itself)');
    sent(p5, 'from-o1', [sA, sB1, sB2]);

    const p6 = await redisPublish(r.target, ch, 'redis-s2', { session: 's2' });
    assert.equal(p6.subscribers, 1, 'session=s2 count through the shared script');
    sent(p6, 'redis-s2', [sB2]);

    const p7 = await publishOk(B, ch, 'nobody', { query: { session: 's9' } });
    assert.equal(p7.subscribers, 0);

    const p8 = await publishOk(C, ch, 'end');
    assert.equal(p8.subscribers, 4);
    sent(p8, 'end', [sA, sB1, sB2, sC]);

    const ids = [p1, p2, p3, p4, p5, p6, p7, p8].map((p) => p.id);
    for (let i = 1; i < ids.length; i++) assert.equal(compareStreamIds(ids[i - 1], ids[i]), -1, `ids not increasing: ${ids}`);

    for (const [s, want] of expect) {
      await s.waitFor((x) => x.events().some((e) => e.id === p8.id), undefined, 'the last event');
      assert.deepEqual(idData(s), want, `events on ${s.path}: ${s.describe()}`);
      assert.ok(s.events().every((e) => e.event === undefined), `an event with a type on ${s.path}`);
    }

    // Types travel through Redis too.
    const p9 = await publishOk(A, ch, '{"n":1}', { query: { event: 'change' } });
    const p10 = await redisPublish(r.target, ch, 'line1\nline2', { type: 'change' });
    for (const s of [sB1, sC]) {
      await s.waitFor((x) => x.events().some((e) => e.id === p10.id), undefined, 'the typed events');
      const last = s.events().slice(-2);
      assert.deepEqual(last.map((e) => [e.id, e.event, e.dataLines]),
        [[p9.id, 'change', ['{"n":1}']], [p10.id, 'change', ['line1', 'line2']]], s.describe());
    }
  } finally { await stopAll([A, B, C], r, streams); }
});

test('a client that moves to another broker with Last-Event-ID gets exactly what it missed', async () => {
  const r = await startRedis();
  const [A, B, C] = [await startRedisBroker(r), await startRedisBroker(r), await startRedisBroker(r)];
  const streams = [];
  try {
    const ch = 'mover';
    const s1 = await subscribeReady(A, ch);
    streams.push(s1);
    await waitRedisCount(r, ch, 1);
    const e1 = await publishOk(A, ch, 'e1');
    await s1.waitEvents(1);
    s1.close();

    // Missed while away: published on B (no subscriber there), on C, and straight into Redis.
    const e2 = await publishOk(B, ch, 'e2');
    const e3 = await publishOk(C, ch, 'e3');
    const e4 = await redisPublish(r.target, ch, 'e4');

    // B has never held the channel: the replay comes from Redis.
    const s2 = await subscribe(B, `/events/${ch}`, { headers: { 'Last-Event-ID': e1.id } });
    streams.push(s2);
    await s2.waitEvents(3);
    await waitRedisCount(r, ch, 1);
    const e5 = await publishOk(C, ch, 'e5');
    assert.equal(e5.subscribers, 1);
    await s2.waitFor((x) => x.events().some((e) => e.id === e5.id), undefined, 'the live event e5');
    assert.deepEqual(idData(s2), [[e2.id, 'e2'], [e3.id, 'e3'], [e4.id, 'e4'], [e5.id, 'e5']], s2.describe());
    assert.ok(!s2.events().some((e) => e.event === 'reset'), 'reset for an id still in the history');
    s2.close();

    // C already holds the channel (a subscriber of its own): replay across what its ring
    // has and what it does not.
    const other = await subscribeReady(C, ch);
    streams.push(other);
    const e6 = await publishOk(A, ch, 'e6');
    const e7 = await redisPublish(r.target, ch, 'e7');
    const s3 = await subscribe(C, `/events/${ch}`, { headers: { 'Last-Event-ID': e4.id } });
    streams.push(s3);
    await s3.waitEvents(3);
    const e8 = await publishOk(B, ch, 'e8');
    await s3.waitFor((x) => x.events().some((e) => e.id === e8.id), undefined, 'the live event e8');
    assert.deepEqual(idData(s3), [[e5.id, 'e5'], [e6.id, 'e6'], [e7.id, 'e7'], [e8.id, 'e8']], s3.describe());
  } finally { await stopAll([A, B, C], r, streams); }
});

test('moving between brokers while events are published on all three: no gap, no duplicate', async () => {
  const r = await startRedis();
  const brokers = [await startRedisBroker(r), await startRedisBroker(r), await startRedisBroker(r)];
  const streams = [];
  try {
    const ch = 'race';
    const accepted = [];
    let stop = false;
    let n = 0;
    const pub = (async () => {
      while (!stop) {
        n++;
        const data = `r${n}`;
        // Every third event goes straight into Redis.
        const p = n % 3 === 0 ? await redisPublish(r.target, ch, data) : await publishOk(brokers[n % 3], ch, data);
        accepted.push([p.id, data]);
      }
    })();
    const got = [];
    try {
      let lastId = null;
      // Hop A -> B -> C -> A -> B, each time after a few events, with Last-Event-ID.
      for (let hop = 0; hop < 5; hop++) {
        const b = brokers[hop % 3];
        const s = await subscribe(b, `/events/${ch}`, lastId ? { headers: { 'Last-Event-ID': lastId } } : {});
        streams.push(s);
        if (!lastId) {
          // A first connection gets live events only: start from the first one it sees.
          await s.waitEvents(1, 10000);
        }
        const before = s.events().length;
        await s.waitFor((x) => x.events().length >= before + 5, 10000, 'five more events');
        s.close();
        const ev = s.events();
        assert.ok(!ev.some((e) => e.event === 'reset'), `reset on hop ${hop}: ${s.describe()}`);
        got.push(...ev.map((e) => [e.id, e.data]));
        lastId = ev[ev.length - 1].id;
      }
    } finally {
      stop = true;
      await pub;
    }
    const start = accepted.findIndex(([id]) => id === got[0][0]);
    assert.ok(start >= 0, `first received id ${got[0][0]} was never accepted`);
    const endAt = accepted.findIndex(([id]) => id === got[got.length - 1][0]);
    assert.deepEqual(got, accepted.slice(start, endAt + 1), 'events across the hops are not exactly the published ones, in order');
  } finally { await stopAll(brokers, r, streams); }
});

test('replay on another broker: an id older than the history gets reset "expired", a future id reset "unknown"', async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r, ['--history_size', '10']);
  const B = await startRedisBroker(r, ['--history_size', '10']);
  const streams = [];
  try {
    const ch = 'old';
    // A subscriber while the history is written: a channel nobody subscribes to stores
    // nothing (interest, in the publish script), and this test is about ids in a history.
    const holder = await subscribe(A, `/events/${ch}`);
    await waitRedisCount(r, ch, 1);
    const first = await publishOk(A, ch, 'first');
    // The stream is trimmed with MAXLEN ~ (whole nodes of about 100 entries), so publish
    // well past history_size for the first entries to be gone.
    let last = null;
    for (let i = 0; i < 300; i++) last = await publishOk(A, ch, `x${i}`);
    holder.close();
    await waitRedisCount(r, ch, 0);
    const head = await redisCommand(r.target, 'XRANGE', `ssepush:h:${ch}`, '-', '+', 'COUNT', 1);
    assert.ok(head.length === 1 && compareStreamIds(head[0][0], first.id) > 0,
      `precondition: Redis still holds the first event after 300 more (head ${JSON.stringify(head[0]?.[0])}, first ${first.id})`);

    const check = async (lastEventId, reason) => {
      const s = await subscribe(B, `/events/${ch}`, { headers: { 'Last-Event-ID': lastEventId } });
      streams.push(s);
      const [f] = await s.waitEvents(1);
      assert.equal(f.event, 'reset', `Last-Event-ID ${lastEventId}: first event is not a reset: ${s.describe()}`);
      assert.equal(JSON.parse(f.data).reason, reason, `Last-Event-ID ${lastEventId}: reset data ${f.data}`);
      assert.equal(f.id, last.id, `Last-Event-ID ${lastEventId}: reset id is not the channel's last id`);
      await waitFor(async () => {
        const st = await http(B.publishPort, `/stats/${ch}`);
        return st.json && st.json.subscribers === 1;
      }, undefined, 'the subscriber on B');
      await waitRedisCount(r, ch, 1);
      const live = await publishOk(A, ch, `after-${reason}`);
      assert.equal(live.subscribers, 1);
      await s.waitFor((x) => x.events().some((e) => e.id === live.id), undefined, 'the live event after the reset');
      assert.deepEqual(s.events().map((e) => e.id), [last.id, live.id], `events after the reset: ${s.describe()}`);
      last = live;
      s.close();
      await waitRedisCount(r, ch, 0);
    };
    await check(first.id, 'expired');
    // Ids after the channel's newest one (an hour later; the same millisecond, a later sequence).
    await check(`${BigInt(last.id.split('-')[0]) + 3600000n}-0`, 'unknown');
    await check(`${last.id.split('-')[0]}-999999`, 'unknown');
    await check('not-an-id', 'unknown');
  } finally { await stopAll([A, B], r, streams); }
});

test('a broker killed with SIGKILL stops being counted within seconds', async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r);
  const B = await startRedisBroker(r);
  const streams = [];
  try {
    const ch = 'dies';
    const sA = await subscribeReady(A, ch);
    const sB1 = await subscribeReady(B, ch);
    const sB2 = await subscribeReady(B, ch, '', 2);
    streams.push(sA, sB1, sB2);
    await waitRedisCount(r, ch, 3);
    assert.equal((await publishOk(A, ch, 'both')).subscribers, 3);
    B.signal('SIGKILL');
    const x = await B.exited();
    assert.ok(x && x.signal === 'SIGKILL', `broker B did not die of SIGKILL: ${JSON.stringify(x)}`);
    const seen = [];
    await waitFor(async () => {
      const p = await publishOk(A, ch, `poll${seen.length}`);
      seen.push(p.subscribers);
      return p.subscribers === 1;
    }, 10000, 'the publish count to drop to 1 after broker B was killed', () => `counts seen: ${seen}`, 250);
    for (let i = 0; i < 3; i++) assert.equal((await publishOk(A, ch, `steady${i}`)).subscribers, 1, `count came back: ${seen}`);
    const total = 1 + seen.length + 3;
    await sA.waitEvents(total);
    assert.equal(sA.events().length, total, sA.describe());
  } finally { await stopAll([A], r, streams); }
});

test('a batch far bigger than a socket buffer reaches Redis and the subscriber whole, in order (a write to Redis that leaves a rest is finished)', { timeout: 60000 }, async () => {
  // The Redis thread buffers the commands of one drain of its job queue and writes them
  // together (redis_conn_flush): the 20 x 500 KB of one batch come in a few drains of
  // megabytes each, which a loopback socket does not take at once (strace: a 5.5 MB
  // write took 5.2 MB). The rest must follow whole and in order, or events are lost,
  // cut or the batch never gets its answer.
  const r = await startRedis();
  const b = await startRedisBroker(r, ['--max_message_size', '1m', '--history_size', '100']);
  const streams = [];
  try {
    const s = await subscribeReady(b, 'bulk');
    streams.push(s);
    const pad = 'y'.repeat(500000);
    const items = Array.from({ length: 20 }, (_, i) => ({ channel: 'bulk', data: `${i}:${pad}` }));
    const res = await http(b.publishPort, '/publish', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(items), timeout: 30000,
    });
    assert.equal(res.status, 200, `batch: status ${res.status}, body ${res.body.slice(0, 200)}`);
    const ids = res.json.results.map((x) => x.id);
    assert.equal(ids.length, 20);
    const got = await s.waitEvents(20, 30000);
    assert.deepEqual(got.map((e) => e.id), ids);
    assert.deepEqual(got.map((e) => e.data), items.map((x) => x.data));
  } finally {
    await stopAll([b], r, streams);
  }
});
