// Redis faults: a broker started while Redis is down starts, reports itself unready,
// answers publishes with 503 + Retry-After and recovers by itself; Redis killed with
// SIGKILL while subscribers on two brokers are connected and events are published
// continuously, then restarted with persistence: every accepted event reaches every
// subscriber once, in order; restarted without persistence (history lost): subscribers
// and reconnecting clients get `event: reset` instead of a silent gap.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  killAll, openStream, redisServer, startRedis, startRedisBroker, subscribe, subscribeReady, publish, publishOk,
  redisPublish, redisCommand, waitRedisCount, waitHealth, compareStreamIds, waitFor, http, sleep,
  assertJsonError, stopAll,
} from './lib.mjs';

after(killAll);

const RECOVER = 20000;	// reconnect backoff tops out at 5 s (plus jitter); a generous bound

/** Asserts a publish refused because Redis is down: 503, Retry-After, JSON error. */
function assertDown503(p, what) {
  assertJsonError(p, 503, what);
  assert.match(p.headers['retry-after'] || '', /^\d+$/, `${what}: Retry-After ${p.headers['retry-after']}`);
}

/** Asserts /healthz is 503 with a JSON reason naming Redis. */
async function assertUnhealthy(b, what) {
  const h = await http(b.publishPort, '/healthz');
  assertJsonError(h, 503, `${what}: /healthz`);
  assert.match(h.json.error, /redis/i, `${what}: /healthz reason ${h.body}`);
}

/** Broker log lines mentioning Redis (for failure messages). */
const redisLog = (b) => b.stderr().split('\n').filter((l) => /redis/.test(l)).join('\n');

test('Redis down at broker start: the broker starts unready, refuses publishes with 503, then recovers by itself', async () => {
  const r = await redisServer();	// not started yet
  const A = await startRedisBroker(r, [], { waitBus: false });
  let B = null;
  const streams = [];
  try {
    assert.ok(!/redis: connected as broker/.test(A.stderr()), 'connected with no Redis running');
    await assertUnhealthy(A, 'Redis never started');
    const p = await publish(A, 'early', 'x');
    assertDown503(p, 'publish with Redis down');

    // A subscriber that comes while Redis is down: if the broker takes it, it must be
    // served once Redis is back; if it refuses, that is a 503 with Retry-After for a
    // client that does not read event streams, and for an EventSource a 200 that only
    // says when to retry, then ends (refusals.test.mjs has the details).
    const early = await openStream(A.port, '/events/early');
    streams.push(early);
    const refusedSse = early.status === 200 && /^retry: \d+\n/.test(early.raw()) &&
      await early.waitEnd().then(() => early.events().length === 0, () => false);
    const earlyOk = early.status === 200 && !refusedSse;
    if (!earlyOk && !refusedSse) {
      assert.equal(early.status, 503, `subscribe with Redis down: status ${early.status}`);
      assert.match(early.headers['retry-after'] || '', /^\d+$/, 'subscribe refused with Redis down: no Retry-After');
    }
    const curlEarly = await openStream(A.port, '/events/early', { headers: { Accept: '*/*' } });
    streams.push(curlEarly);
    if (curlEarly.status !== 200) {
      await curlEarly.waitEnd();
      assertDown503({ status: curlEarly.status, headers: curlEarly.headers, body: curlEarly.raw(), json: curlEarly.json() },
        'curl-style subscribe with Redis down');
    }

    await r.start();
    await A.waitLog(/redis: connected as broker [0-9a-f]+/, RECOVER);
    await waitHealth(A, 200, RECOVER);
    B = await startRedisBroker(r);

    const s = earlyOk ? early : await subscribeReady(A, 'early');
    if (!earlyOk) streams.push(s);
    await waitRedisCount(r, 'early', 1, RECOVER);
    const e1 = await publishOk(B, 'early', 'after-recovery');
    assert.equal(e1.subscribers, 1, 'count after recovery');
    const e2 = await publishOk(A, 'early', 'on-A');
    await s.waitFor((x) => x.events().some((e) => e.id === e2.id), undefined, 'both events');
    assert.deepEqual(s.events().map((e) => [e.id, e.data]), [[e1.id, 'after-recovery'], [e2.id, 'on-A']], s.describe());
  } finally { await stopAll(B ? [A, B] : [A], r, streams); }
});

/**
 * Publishes p1, p2, ... sequentially, alternating brokers, until stopped; records every
 * answer. Non-200 answers must be 503 + Retry-After (checked by the caller).
 */
function startPublisher(brokers, ch) {
  const st = { accepted: [], refused: [], stop: false, n: 0 };
  st.done = (async () => {
    while (!st.stop) {
      st.n++;
      const data = `p${st.n}`;
      const b = brokers[st.n % brokers.length];
      let res;
      try {
        res = await publish(b, ch, data, { timeout: 10000 });
      } catch (e) {
        st.refused.push({ data, status: 0, error: e.message });
        continue;
      }
      if (res.status === 200) st.accepted.push({ id: res.json.id, data, subscribers: res.json.subscribers });
      else st.refused.push({ data, status: res.status, retryAfter: res.headers['retry-after'], body: res.body });
      // Pace the loop while publishes fail at once (Redis down); not a readiness wait.
      if (res.status !== 200) await sleep(10);
    }
  })();
  return st;
}

/** Asserts a subscriber got every accepted event exactly once, in id order, and no reset. */
function assertAllDelivered(s, accepted, what) {
  const ev = s.events();
  const resets = ev.filter((e) => e.event === 'reset');
  assert.equal(resets.length, 0, `${what}: reset(s) ${JSON.stringify(resets.map((e) => [e.id, e.data]))}; ${s.describe()}`);
  const ids = ev.map((e) => e.id);
  for (let i = 1; i < ids.length; i++) {
    assert.equal(compareStreamIds(ids[i - 1], ids[i]), -1, `${what}: event ${i} id ${ids[i]} not after ${ids[i - 1]} (duplicate or out of order)`);
  }
  const byId = new Map(ev.map((e) => [e.id, e.data]));
  const missing = accepted.filter((a) => byId.get(a.id) !== a.data);
  assert.deepEqual(missing.map((a) => `${a.id}=${a.data}`), [], `${what}: accepted events missing (or with other data); got ${ev.length} events`);
}

test('Redis killed with SIGKILL and restarted with persistence: every accepted event reaches every subscriber once, in order', async () => {
  const r = await startRedis({ persist: true });
  const A = await startRedisBroker(r);
  const B = await startRedisBroker(r);
  const streams = [];
  let pub = null;
  try {
    const ch = 'crash';
    const sA = await subscribeReady(A, ch);
    const sB1 = await subscribeReady(B, ch, '?session=s1');
    const sB2 = await subscribeReady(B, ch, '', 2);
    const subs = [['A', sA], ['B1', sB1], ['B2', sB2]];
    streams.push(sA, sB1, sB2);
    await waitRedisCount(r, ch, 3);

    pub = startPublisher([A, B], ch);
    await waitFor(() => pub.accepted.length >= 20, 10000, '20 accepted publishes before the crash');
    const acceptedBefore = pub.accepted.length;
    await r.kill();

    // Down: both brokers unready, publishes refused with 503 + Retry-After; streams stay open.
    await waitHealth(A, 503, 10000);
    await waitHealth(B, 503, 10000);
    await assertUnhealthy(A, 'Redis killed');
    await assertUnhealthy(B, 'Redis killed');
    const refusedBefore = pub.refused.length;
    assertDown503(await publish(A, ch, 'while-down'), 'publish on A while Redis is down');
    assertDown503(await publish(B, ch, 'while-down'), 'publish on B while Redis is down');
    await waitFor(() => pub.refused.length > refusedBefore, 5000, 'the publisher to be refused while Redis is down');
    for (const [name, s] of subs) assert.ok(!s.closed && !s.ended, `stream ${name} was closed when Redis went away: ${s.describe()}`);
    await assertUnhealthy(A, 'still down before the restart');

    await r.start({ persist: true });
    await waitHealth(A, 200, RECOVER);
    await waitHealth(B, 200, RECOVER);
    const acceptedAtRestart = pub.accepted.length;
    await waitFor(() => pub.accepted.length >= acceptedAtRestart + 20, 10000, '20 accepted publishes after the restart',
      () => `refused so far: ${JSON.stringify(pub.refused.slice(-3))}`);
    pub.stop = true;
    await pub.done;

    for (const x of pub.refused) {
      assert.equal(x.status, 503, `a publish answered other than 200 or 503: ${JSON.stringify(x)}`);
      assert.match(x.retryAfter || '', /^\d+$/, `a 503 without Retry-After: ${JSON.stringify(x)}`);
    }
    assert.ok(pub.accepted.length > acceptedBefore, 'nothing accepted after the restart');
    const last = pub.accepted[pub.accepted.length - 1];
    for (const [name, s] of subs) {
      await s.waitFor((x) => x.events().some((e) => e.id === last.id), 10000, `the last accepted event ${last.id}`)
        .catch((e) => { throw new Error(`${e.message}\nbroker A:\n${redisLog(A)}\nbroker B:\n${redisLog(B)}`); });
      assertAllDelivered(s, pub.accepted, `subscriber ${name}`);
    }
    // Whatever the subscribers got beyond the accepted events came from this publisher
    // (a publish whose answer was lost with the connection may still have been stored).
    const acceptedIds = new Set(pub.accepted.map((a) => a.id));
    for (const [name, s] of subs) {
      for (const e of s.events()) {
        if (!acceptedIds.has(e.id)) assert.match(e.data, /^p\d+$/, `subscriber ${name}: unexpected event ${e.id} ${e.data}`);
      }
    }
    // The history survived the crash too: a client replaying from the first event gets
    // the accepted events, in order.
    const s = await subscribe(A, `/events/${ch}`, { headers: { 'Last-Event-ID': pub.accepted[0].id } });
    streams.push(s);
    await s.waitFor((x) => x.events().some((e) => e.id === last.id), 10000, 'the replay up to the last event');
    assertAllDelivered(s, pub.accepted.slice(1), 'replaying client');
  } finally {
    if (pub) { pub.stop = true; await pub.done; }
    await stopAll([A, B], r, streams);
  }
});

test('Redis restarted without persistence: subscribers get a reset, then new events; an id from before the loss gets a reset', async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r);
  const B = await startRedisBroker(r);
  const streams = [];
  try {
    const ch = 'lost';
    const sA = await subscribeReady(A, ch);
    const sB = await subscribeReady(B, ch);
    const roam = await subscribeReady(A, ch, '', 2);
    streams.push(sA, sB, roam);
    await waitRedisCount(r, ch, 3);
    const e1 = await publishOk(A, ch, 'e1');
    await roam.waitEvents(1);
    roam.close();
    await waitRedisCount(r, ch, 2);
    // Missed by the roaming client; lost with the history below.
    const e2 = await publishOk(B, ch, 'e2');
    const e3 = await redisPublish(r.target, ch, 'e3');
    for (const s of [sA, sB]) await s.waitFor((x) => x.events().some((e) => e.id === e3.id), undefined, 'e3');

    await r.kill();
    await waitHealth(A, 503, 10000);
    await waitHealth(B, 503, 10000);
    await r.start({ persist: false });
    assert.equal(await redisCommand(r.target, 'EXISTS', `ssepush:h:${ch}`), 0, 'precondition: the restarted Redis is empty');
    await waitHealth(A, 200, RECOVER);
    await waitHealth(B, 200, RECOVER);

    // Each violation is recorded and the test goes on, so one run shows all of them.
    const problems = [];
    await Promise.all([['A', sA, A], ['B', sB, B]].map(([name, s, b]) =>
      s.waitFor((x) => x.events().length >= 4, 10000, 'a reset after the history loss')
        .catch((e) => problems.push(`subscriber on ${name}: no reset sent when the broker found the history lost (none until a new event came): ${e.message.split('\n')[0]}\n  broker ${name} log:\n${redisLog(b)}`))));
    await waitRedisCount(r, ch, 2, RECOVER);
    const e4 = await publishOk(B, ch, 'e4');
    assert.equal(e4.subscribers, 2);
    const e5 = await redisPublish(r.target, ch, 'e5');
    for (const [name, s] of [['A', sA], ['B', sB]]) {
      await s.waitFor((x) => x.events().some((e) => e.id === e5.id), undefined, 'the new events');
      const ev = s.events();
      assert.deepEqual(ev.slice(0, 3).map((e) => e.id), [e1.id, e2.id, e3.id], `${name}: ${s.describe()}`);
      assert.equal(ev[3].event, 'reset', `${name}: the event after the history loss is not a reset: ${s.describe()}`);
      assert.ok(ev[3].id !== undefined, `${name}: reset without an id`);
      assert.equal(typeof JSON.parse(ev[3].data).reason, 'string', `${name}: reset data ${ev[3].data}`);
      assert.deepEqual(ev.slice(4).map((e) => [e.id, e.data]), [[e4.id, 'e4'], [e5.id, 'e5']], `${name}: ${s.describe()}`);
    }

    // The roaming client comes back (to the other broker) with e1: e2 and e3 are gone
    // with the history, so it must get a reset, not e4 and e5 as if nothing was missed.
    const back = await subscribe(B, `/events/${ch}`, { headers: { 'Last-Event-ID': e1.id } });
    streams.push(back);
    const [f] = await back.waitEvents(1);
    if (f.event !== 'reset') {
      problems.push(`Last-Event-ID ${e1.id} from before the history loss (e2 ${e2.id} and e3 ${e3.id} were lost) on broker B, which holds the channel: no reset: ${back.describe()}`);
    } else if (f.id !== e5.id) problems.push(`reset id ${f.id} is not the channel's last id ${e5.id}: ${back.describe()}`);
    // And on a broker that never held the channel (the replay comes from Redis).
    const C = await startRedisBroker(r);
    try {
      const back2 = await subscribe(C, `/events/${ch}`, { headers: { 'Last-Event-ID': e2.id } });
      streams.push(back2);
      const [g] = await back2.waitEvents(1);
      if (g.event !== 'reset') problems.push(`Last-Event-ID ${e2.id} from before the history loss on fresh broker C: no reset: ${back2.describe()}`);
      back2.close();
    } finally { await C.stop(); }
    if (problems.length) assert.fail(`contract violations after the history loss:\n- ${problems.join('\n- ')}`);
  } finally { await stopAll([A, B], r, streams); }
});
