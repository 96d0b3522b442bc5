// Redis mode without silent loss: an event published the moment a fresh channel's
// stream has its 200 and preamble reaches that stream and is counted, whichever broker
// takes the publish; Redis frozen with SIGSTOP makes /healthz and publishes answer 503
// + Retry-After within seconds (redis_timeout), and after SIGCONT every accepted event
// reaches every subscriber once, in order, with no reset; Redis killed and restarted
// empty: after the one reset, every event published after the restart is delivered,
// also those published through one broker while the other was still reconnecting.
// A real redis-server per test (TCP, a free port); only processes started here are
// signalled, by pid.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  killAll, openStream, waitPreamble, startBroker, startRedis, startRedisBroker, subscribeReady,
  publish, publishOk, redisCommand, waitRedisCount, waitHealth, compareStreamIds, waitFor, http, sleep,
  WAIT, stopAll,
} from './lib.mjs';

after(killAll);

const RECOVER = 20000;	// reconnect backoff tops out at 5 s (plus jitter); a generous bound

/** A publish that never rejects: {status (0 on a client error), json, headers, body, error, start, end, ms}. */
async function timedPublish(b, ch, data, timeout = WAIT) {
  const start = Date.now();
  let res;
  try {
    const p = await publish(b, ch, data, { timeout });
    res = { status: p.status, json: p.json, headers: p.headers, body: p.body };
  } catch (e) {
    res = { status: 0, headers: {}, error: e.message };
  }
  const end = Date.now();
  return { ...res, start, end, ms: end - start };
}

/** "A 3, B 5" from a list of broker names. */
function byBroker(names, list) {
  return names.map((n) => `${n} ${list.filter((x) => x === n).length}`).join(', ');
}

// ---------------------------------------------------------------------------
// 1. Fresh channels: subscribe, publish at once.

const FRESH_WINDOW = 50;	// streams open at once
const FRESH_SETTLE = 3000;	// per stream: its fence event (see below) must arrive within this
const FRESH_BUDGET = 10000;	// overall for the streams still open after the loop
const FRESH_HARD = 40000;	// and for all waits of one run, so a broken broker cannot stretch it

/**
 * For n fresh channels: opens GET /events/<ch> on `sub`, waits for its 200 head and
 * preamble only, then publishes one event at once through pubs[i % pubs.length].
 * Before a stream is closed a second ("fence") event is published on its channel
 * through the same broker and awaited: events on a channel arrive in order, so once
 * the fence is in, the first event is either there (once) or lost, and a duplicate
 * of it would have come before the fence. Returns the figures and a summary line.
 */
async function freshChannels(sub, pubs, n, tag) {
  const names = pubs.map(([name]) => name);
  const rows = [];
  const open = [];
  const streams = [];
  const hardEnd = Date.now() + FRESH_HARD;

  const settle = async (row, deadline) => {
    const fence = await timedPublish(row.b, row.ch, `fence-${tag}-${row.i}`);
    row.fence = fence.status === 200 ? fence.json : null;
    const target = row.fence ? row.fence.id : row.pub.json?.id;
    if (target) {
      await waitFor(() => row.s.events().some((e) => e.id === target), Math.max(0, Math.min(deadline, hardEnd) - Date.now()),
        `event ${target}`).catch(() => { row.timedOut = true; });
    }
    row.events = row.s.events().map((e) => ({ id: e.id, event: e.event, data: e.data }));
    row.s.close();
  };

  try {
    for (let i = 0; i < n; i++) {
      const ch = `fresh-${tag}-${i}`;
      const [name, b] = pubs[i % pubs.length];
      const s = await openStream(sub.port, `/events/${ch}`);
      streams.push(s);
      assert.equal(s.status, 200, `GET /events/${ch}: status ${s.status}; ${s.describe()}`);
      await waitPreamble(s);
      const data = `ev-${tag}-${i}`;
      const pub = await timedPublish(b, ch, data);
      const row = { i, ch, name, b, s, data, pub };
      rows.push(row);
      open.push(row);
      if (open.length >= FRESH_WINDOW) await settle(open.shift(), Date.now() + FRESH_SETTLE);
    }
    const deadline = Date.now() + FRESH_BUDGET;
    await Promise.all(open.splice(0).map((row) => settle(row, deadline)));
  } finally {
    for (const s of streams) s.close();
  }

  const f = { n, lost: [], dup: [], count: [], refused: [], other: [], counts: {} };
  for (const row of rows) {
    const { pub, events, name } = row;
    if (pub.status !== 200 || !pub.json || typeof pub.json.id !== 'string') {
      f.refused.push(name);
      f.other.push(`${row.ch} on ${name}: publish answered ${pub.status} ${pub.body ?? pub.error}`);
      continue;
    }
    const sc = pub.json.subscribers;
    if (sc !== 1) { f.count.push(name); f.counts[sc] = (f.counts[sc] || 0) + 1; }
    const first = events.filter((e) => e.id === pub.json.id);
    if (first.length === 0) f.lost.push(name);
    if (first.length > 1) f.dup.push(name);
    const why = [];
    const fenceId = row.fence ? row.fence.id : null;
    const extra = events.filter((e) => e.id !== pub.json.id && e.id !== fenceId);
    if (extra.length) why.push(`${extra.length} other event(s)`);
    if (first.some((e) => e.data !== row.data || e.event !== undefined)) why.push('the event with other data or a type');
    if (!row.fence) why.push('fence publish refused');
    else if (row.timedOut) why.push(`fence not received within ${FRESH_SETTLE} ms`);
    else if (first.length && events.findIndex((e) => e.id === pub.json.id) > events.findIndex((e) => e.id === fenceId)) why.push('the event after the fence');
    if (why.length) {
      f.other.push(`${row.ch} on ${name}: ${why.join(', ')}; published ${pub.json.id}, fence ${fenceId}, got ${JSON.stringify(events.map((e) => [e.id, e.event ?? 'message', e.data]))}`);
    }
  }
  const counts = Object.entries(f.counts).map(([k, v]) => `${v}x ${k}`).join(', ');
  f.summary = `lost ${f.lost.length} of ${n} (${byBroker(names, f.lost)}), duplicated ${f.dup.length} (${byBroker(names, f.dup)}), `
    + `count != 1: ${f.count.length} (${byBroker(names, f.count)}${counts ? `; ${counts}` : ''}), refused ${f.refused.length}, `
    + `other problems ${f.other.length}${f.other.length ? `:\n  ${f.other.slice(0, 5).join('\n  ')}` : ''}`;
  return f;
}

/** Asserts the figures of freshChannels() show nothing lost, doubled, miscounted or otherwise wrong. */
function assertFresh(f) {
  assert.ok(f.lost.length === 0 && f.dup.length === 0 && f.count.length === 0 && f.refused.length === 0 && f.other.length === 0,
    f.summary);
}

test('fresh channels: an event published right after a stream\'s 200 reaches it, and is counted (Redis, two brokers)', async (t) => {
  const r = await startRedis({ tcp: true });
  const A = await startRedisBroker(r);
  const B = await startRedisBroker(r);
  try {
    const f = await freshChannels(A, [['A', A], ['B', B]], 300, `r${process.pid}`);
    t.diagnostic(f.summary);
    assertFresh(f);
  } finally { await stopAll([A, B], r); }
});

test('fresh channels: an event published right after a stream\'s 200 reaches it, and is counted (standalone)', async (t) => {
  const A = await startBroker();
  try {
    const f = await freshChannels(A, [['A', A]], 100, `s${process.pid}`);
    t.diagnostic(f.summary);
    assertFresh(f);
  } finally { await stopAll([A], null); }
});

// ---------------------------------------------------------------------------
// 2. Redis frozen (SIGSTOP): the link's timeout turns a silent Redis into 503s.

const STALL_ARGS = ['--redis_timeout', '1000'];	// connect and reply timeout of the Redis link, ms
const STALL_MS = 4000;		// how long Redis stays stopped
const STALL_BOUND = 3500;	// /healthz 503 and a publish's 503 within this of the SIGSTOP

/**
 * Publishes p1, p2, ... sequentially, alternating brokers, until stopped; records every
 * attempt with its timing (a client timeout of 10 s, so a publish that hangs is seen).
 */
function startPublisher(brokers, ch) {
  const st = { all: [], accepted: [], refused: [], stop: false, n: 0 };
  st.done = (async () => {
    while (!st.stop) {
      st.n++;
      const data = `p${st.n}`;
      const [name, b] = brokers[st.n % brokers.length];
      const p = await timedPublish(b, ch, data, 10000);
      const rec = { data, name, start: p.start, end: p.end, ms: p.ms, status: p.status };
      st.all.push(rec);
      if (p.status === 200) st.accepted.push({ ...rec, id: p.json.id });
      else st.refused.push({ ...rec, retryAfter: p.headers['retry-after'], body: p.body ?? p.error });
      // Pace the loop while publishes fail at once (Redis unusable); not a readiness wait.
      if (p.status !== 200) await sleep(10);
    }
  })();
  return st;
}

/**
 * Polls /healthz on b from now until `until` (ms since the epoch), each request bounded
 * by the time left; stops at the first 503 whose JSON error names Redis. Returns the
 * samples {at (ms after t0 the answer came), ms (request time), status, body}.
 */
async function watchUnhealthy(b, t0, until) {
  const samples = [];
  while (Date.now() < until) {
    const start = Date.now();
    let s;
    try {
      const h = await http(b.publishPort, '/healthz', { timeout: Math.max(50, until - start) });
      s = { status: h.status, body: h.body, json: h.json };
    } catch (e) {
      s = { status: 0, body: e.message };
    }
    const end = Date.now();
    samples.push({ at: end - t0, ms: end - start, status: s.status, body: s.body });
    if (s.status === 503 && s.json && typeof s.json.error === 'string' && /redis/i.test(s.json.error)) break;
    await sleep(25);	// poll pacing
  }
  return samples;
}

/** One line about a /healthz watch: when it turned 503 (or what it answered instead). */
function healthLine(name, samples) {
  const last = samples[samples.length - 1];
  const slowest = Math.max(0, ...samples.map((x) => x.ms));
  const ok = last && last.status === 503;
  return `/healthz on ${name}: ${ok ? `503 at +${last.at} ms` : `no 503 (last: ${last ? `${last.status} at +${last.at} ms` : 'none'})`}, `
    + `${samples.length} request(s), slowest ${slowest} ms${ok ? `, body ${last.body}` : ''}`;
}

/** Asserts a subscriber got every accepted event exactly once, in id order, and no reset. */
function assertAllDelivered(s, accepted, what) {
  const ev = s.events();
  const resets = ev.filter((e) => e.event === 'reset');
  assert.equal(resets.length, 0, `${what}: reset(s) ${JSON.stringify(resets.map((e) => [e.id, e.data]))}; ${s.describe()}`);
  const ids = ev.map((e) => e.id);
  const seen = new Set();
  const twice = ids.filter((id) => seen.has(id) || !seen.add(id));
  assert.deepEqual(twice, [], `${what}: id(s) delivered more than once; got ${ev.length} events`);
  for (let i = 1; i < ids.length; i++) {
    assert.equal(compareStreamIds(ids[i - 1], ids[i]), -1, `${what}: event ${i} id ${ids[i]} not after ${ids[i - 1]} (out of order)`);
  }
  const byId = new Map(ev.map((e) => [e.id, e.data]));
  const missing = accepted.filter((a) => byId.get(a.id) !== a.data);
  assert.deepEqual(missing.map((a) => `${a.id}=${a.data}`), [], `${what}: accepted events missing (or with other data); got ${ev.length} events, ${accepted.length} accepted`);
}

test('Redis stalled with SIGSTOP: /healthz and publishes answer 503 + Retry-After within a few seconds; after SIGCONT nothing accepted is lost or doubled', async (t) => {
  const r = await startRedis({ tcp: true });
  let A = null;
  let B = null;
  const streams = [];
  let pub = null;
  let stopped = false;
  const cont = () => { if (stopped) { process.kill(r.pid, 'SIGCONT'); stopped = false; } };
  try {
    A = await startRedisBroker(r, STALL_ARGS);
    B = await startRedisBroker(r, STALL_ARGS);
    const ch = 'stall';
    const sA = await subscribeReady(A, ch);
    const sB = await subscribeReady(B, ch);
    streams.push(sA, sB);
    await waitRedisCount(r, ch, 2);

    pub = startPublisher([['A', A], ['B', B]], ch);
    await waitFor(() => pub.accepted.length >= 20, 10000, '20 accepted publishes before the stall');

    // Freeze Redis: its sockets stay open and silent, as with a hung host or a paused VM.
    const t0 = Date.now();
    process.kill(r.pid, 'SIGSTOP');
    stopped = true;
    const until = t0 + STALL_BOUND;
    const probes = Promise.all([timedPublish(A, ch, 'probe-A', 10000), timedPublish(B, ch, 'probe-B', 10000)]);
    const watches = Promise.all([watchUnhealthy(A, t0, until), watchUnhealthy(B, t0, until)]);
    await sleep(t0 + STALL_MS - Date.now());	// the length of the fault, not a readiness wait
    const tCont = Date.now();
    cont();
    const [[probeA, probeB], [healthA, healthB]] = await Promise.all([probes, watches]);

    // Each violation is recorded and the test goes on, so one run shows all of them.
    const problems = [];
    const probeLine = (name, p) => `probe publish on ${name} sent at the SIGSTOP: ${p.status} after ${p.ms} ms`
      + ` (${p.end >= tCont ? `${p.end - tCont} ms after the SIGCONT at +${tCont - t0} ms` : 'while Redis was stopped'}), Retry-After ${p.headers['retry-after']}`;
    const timing = [probeLine('A', probeA), probeLine('B', probeB),
      healthLine('A', healthA), healthLine('B', healthB),
    ];
    for (const [name, h] of [['A', healthA], ['B', healthB]]) {
      const last = h[h.length - 1];
      if (!last || last.status !== 503 || last.at > STALL_BOUND) problems.push(`/healthz on ${name} did not answer 503 naming Redis within ${STALL_BOUND} ms of the SIGSTOP: ${healthLine(name, h)}`);
    }
    for (const [name, p] of [['A', probeA], ['B', probeB]]) {
      const bad = p.status !== 503 || !/^\d+$/.test(p.headers['retry-after'] || '') || !(p.json && typeof p.json.error === 'string');
      if (bad || p.ms > STALL_BOUND) problems.push(`${probeLine(name, p)}, body ${p.body ?? p.error} (want 503 + Retry-After + JSON error within ${STALL_BOUND} ms)`);
    }

    const fail = () => assert.fail(`while Redis was stopped for ${STALL_MS} ms (${timing.join('; ')}):\n- ${problems.join('\n- ')}`);
    try {
      await waitHealth(A, 200, RECOVER);
      await waitHealth(B, 200, RECOVER);
      const atRecovery = pub.accepted.length;
      await waitFor(() => pub.accepted.length >= atRecovery + 20, 10000, '20 accepted publishes after SIGCONT',
        () => `refused so far: ${JSON.stringify(pub.refused.slice(-3))}`);
    } catch (e) {
      problems.push(`after the SIGCONT: ${e.message}`);
      fail();
    }
    pub.stop = true;
    await pub.done;

    // The publisher's attempts while Redis was stopped: each answered, and soon.
    const during = pub.all.filter((x) => x.end >= t0 && x.start < tCont);
    const slow = during.filter((x) => x.end - Math.max(x.start, t0) > STALL_BOUND);
    timing.push(`publisher during the stall: ${during.length} attempt(s), ${during.filter((x) => x.status === 503).length} answered 503, `
      + `slowest ${Math.max(0, ...during.map((x) => x.end - Math.max(x.start, t0)))} ms after the SIGSTOP or its start`);
    for (const l of timing) t.diagnostic(l);
    if (slow.length) problems.push(`publisher: ${slow.length} publish(es) answered more than ${STALL_BOUND} ms after the SIGSTOP or their start: ${JSON.stringify(slow.slice(0, 3))}`);
    for (const x of pub.refused) {
      if (x.status !== 503 || !/^\d+$/.test(x.retryAfter || '')) problems.push(`publisher: a publish answered other than 200 or 503 + Retry-After: ${JSON.stringify(x)}`);
    }

    const accepted = [...pub.accepted];
    for (const [name, p] of [['A', probeA], ['B', probeB]]) if (p.status === 200) accepted.push({ id: p.json.id, data: `probe-${name}` });
    accepted.sort((x, y) => compareStreamIds(x.id, y.id));
    const last = accepted[accepted.length - 1];
    for (const [name, s] of [['A', sA], ['B', sB]]) {
      try {
        assert.ok(!s.closed && !s.ended, `stream on ${name} was closed during the stall: ${s.describe()}`);
        await s.waitFor((x) => x.events().some((e) => e.id === last.id), 10000, `the last accepted event ${last.id}`);
        assertAllDelivered(s, accepted, `subscriber on ${name}`);
        for (const e of s.events()) {
          if (!accepted.some((a) => a.id === e.id)) assert.match(e.data, /^(p\d+|probe-[AB])$/, `subscriber on ${name}: unexpected event ${e.id} ${e.data}`);
        }
      } catch (e) { problems.push(e.message); }
    }
    if (problems.length) fail();
  } finally {
    cont();
    if (pub) { pub.stop = true; await pub.done; }
    await stopAll([A, B].filter(Boolean), r, streams);
  }
});

// ---------------------------------------------------------------------------
// 3. Redis restarted empty while one broker is back before the other.

/**
 * A TCP relay to Redis on `port` for one broker's link, so that the test can hold that
 * broker off while the others reconnect: while blocked it takes connections and drops
 * them at once (the broker sees its connect fail and backs off). Returns
 * {url, block(), unblock(), close()}.
 */
async function redisRelay(port) {
  const socks = new Set();
  let blocked = false;
  const srv = net.createServer((down) => {
    socks.add(down);
    down.on('close', () => socks.delete(down));
    down.on('error', () => {});
    if (blocked) { down.destroy(); return; }
    const up = net.connect({ host: '127.0.0.1', port });
    socks.add(up);
    up.on('close', () => { socks.delete(up); down.destroy(); });
    up.on('error', () => {});
    down.on('close', () => up.destroy());
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve); });
  return {
    url: `redis://127.0.0.1:${srv.address().port}`,
    block: () => { blocked = true; },
    unblock: () => { blocked = false; },
    close: () => new Promise((resolve) => { for (const x of socks) x.destroy(); srv.close(() => resolve()); }),
  };
}

test('Redis killed and restarted without persistence: after the reset, events published after the restart are delivered', async (t) => {
  const N = 40;
  const r = await startRedis({ tcp: true });
  const relay = await redisRelay(r.port);
  let A = null;
  let B = null;
  const streams = [];
  try {
    A = await startRedisBroker({ url: relay.url });	// A reaches Redis through the relay
    B = await startRedisBroker(r);
    const ch = 'reborn';
    const sA = await subscribeReady(A, ch);
    const sB = await subscribeReady(B, ch);
    const subs = [['A', sA], ['B', sB]];
    streams.push(sA, sB);
    await waitRedisCount(r, ch, 2);
    const e1 = await publishOk(A, ch, 'before-1');
    const e2 = await publishOk(B, ch, 'before-2');
    for (const [, s] of subs) await s.waitFor((x) => x.events().some((e) => e.id === e2.id), undefined, 'the events before the crash');

    relay.block();	// A stays away from the new Redis until B has published
    await r.kill();
    await waitHealth(A, 503, 10000);
    await waitHealth(B, 503, 10000);
    await r.start({ persist: false });
    assert.equal(await redisCommand(r.target, 'EXISTS', `ssepush:h:${ch}`), 0, 'precondition: the restarted Redis is empty');

    // Publish through B as soon as it is back, while A is still reconnecting.
    await waitHealth(B, 200, RECOVER);
    const aBefore = (await http(A.publishPort, '/healthz')).status;
    const sent = [];
    for (let i = 1; i <= N; i++) {
      const p = await publishOk(B, ch, `after-${i}`);
      sent.push({ id: p.id, data: `after-${i}` });
    }
    const aAfter = (await http(A.publishPort, '/healthz')).status;
    relay.unblock();
    await waitHealth(A, 200, RECOVER);

    const problems = [];
    // A last event through A once both are counted again, to know when to stop waiting.
    await waitRedisCount(r, ch, 2, RECOVER).catch((e) => problems.push(e.message));
    const fence = await publishOk(A, ch, 'fence');
    sent.push({ id: fence.id, data: 'fence' });

    const lines = [`A's /healthz (A held off by the relay) when B's ${N} publishes began: ${aBefore}, when they ended: ${aAfter}`];
    for (const [name, s] of subs) {
      await s.waitFor((x) => x.events().some((e) => e.id === fence.id), 10000, 'the fence event').catch((e) => problems.push(`${name}: ${e.message.split(';')[0]}`));
      const ev = s.events();
      const resets = ev.filter((e) => e.event === 'reset');
      const k = ev.findIndex((e) => e.event === 'reset');
      const before = (k < 0 ? ev : ev.slice(0, k)).map((e) => [e.id, e.data]);
      const afterReset = k < 0 ? [] : ev.slice(k + 1).map((e) => ({ id: e.id, data: e.data }));
      const got = new Map();
      for (const e of afterReset) got.set(e.id, (got.get(e.id) || 0) + 1);
      const missing = sent.filter((x) => !afterReset.some((e) => e.id === x.id && e.data === x.data));
      const covered = k < 0 || resets[0].id === undefined ? [] : missing.filter((x) => /^\d+-\d+$/.test(resets[0].id) && compareStreamIds(x.id, resets[0].id) <= 0);
      const twice = [...got].filter(([, c]) => c > 1).length;
      lines.push(`${name}: ${resets.length} reset(s)${k >= 0 ? ` (id ${resets[0].id}, data ${resets[0].data}, after ${k} event(s))` : ''}; `
        + `after it ${afterReset.length} event(s): missing ${missing.length} of ${sent.length} (${covered.length} of them with ids <= the reset's id), doubled ${twice}`);
      if (resets.length !== 1) problems.push(`${name}: ${resets.length} resets (want exactly one): ${s.describe()}`);
      if (JSON.stringify(before) !== JSON.stringify([[e1.id, 'before-1'], [e2.id, 'before-2']])) problems.push(`${name}: events before the reset ${JSON.stringify(before)}`);
      if (JSON.stringify(afterReset) !== JSON.stringify(sent)) {
        problems.push(`${name}: after the reset, want the ${N} events published after the restart and the fence, in order, once each; `
          + `missing ${missing.length} (${missing.slice(0, 3).map((x) => `${x.id}=${x.data}`).join(', ')}${missing.length > 3 ? ', ...' : ''}), doubled ${twice}; got ${JSON.stringify(afterReset.slice(0, 4).map((e) => e.data))}${afterReset.length > 4 ? '...' : ''}`);
      }
    }
    for (const l of lines) t.diagnostic(l);
    if (problems.length) assert.fail(`after Redis came back empty (${lines.join('; ')}):\n- ${problems.join('\n- ')}`);
  } finally {
    await relay.close();
    await stopAll([A, B].filter(Boolean), r, streams);
  }
});
