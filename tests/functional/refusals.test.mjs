// Refusals a browser can retry: when a subscribe is refused for a while (max_connections,
// max_channels, max_subscribers_per_channel, or Redis unavailable), a client that
// accepts text/event-stream gets a 200 event stream carrying only `retry:` (the delay)
// and a comment saying why, then its end, because WHATWG EventSource fails for good on
// any other status and ignores Retry-After; a real EventSource client (npm eventsource)
// then comes back by itself once there is room and gets its events. Other clients (curl,
// monitoring) keep getting 429/503 with Retry-After and a JSON reason (errors.test.mjs).
// Each refusal is counted in ssepush_refused_total{reason}.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import {
  startBroker, killAll, openStream, subscribe, waitPreamble, publishOk, waitFor, http,
  parseMetrics, redisServer, startRedisBroker, assertJsonError, waitSubscribers,
} from './lib.mjs';

after(killAll);

const RETRY_MIN = 5000;		// BROKER_RETRY_MS
const RETRY_MAX = 7500;		// plus up to 50% jitter

/** ssepush_refused_total{reason="..."} on a broker. */
async function refused(b, reason) {
  const m = await http(b.publishPort, '/metrics');
  assert.equal(m.status, 200, m.body);
  const s = parseMetrics(m.body).find((x) => x.name === 'ssepush_refused_total' && x.labels === `{reason="${reason}"}`);
  assert.ok(s, `no ssepush_refused_total{reason="${reason}"} in /metrics:\n${m.body}`);
  return s.value;
}

/**
 * Asserts an EventSource-style request was refused for a while the way EventSource
 * retries: 200, text/event-stream, only a retry line (5-7.5 s) and a comment naming why,
 * then the end of the response; Retry-After too.
 */
async function assertRetryRefusal(b, reqPath, why, what) {
  const s = await openStream(b.port, reqPath);
  try {
    await s.waitEnd();
    assert.equal(s.status, 200, `${what}: status ${s.status}, body ${s.raw()}`);
    assert.match(s.headers['content-type'] || '', /^text\/event-stream/, `${what}: content-type ${s.headers['content-type']}`);
    assert.match(s.headers['retry-after'] || '', /^\d+$/, `${what}: Retry-After ${s.headers['retry-after']}`);
    const m = /^retry: (\d+)\n: ssepush: refused for now \((.*)\); retry in \1 ms\n\n$/.exec(s.raw());
    assert.ok(m, `${what}: body is not a retry line and a comment: ${JSON.stringify(s.raw())}`);
    const retry = Number(m[1]);
    assert.ok(retry >= RETRY_MIN && retry <= RETRY_MAX, `${what}: retry ${retry} not in [${RETRY_MIN}, ${RETRY_MAX}]`);
    assert.match(m[2], why, `${what}: reason "${m[2]}"`);
    assert.ok(s.events().length === 0, `${what}: a refusal carried events: ${s.describe()}`);
  } finally { s.close(); }
}

/** A real EventSource that records what a page would see. */
function record(url) {
  const es = new EventSource(url);
  const seen = [];
  es.addEventListener('message', (e) => seen.push({ type: 'message', data: e.data }));
  es.addEventListener('open', () => seen.push({ type: 'open' }));
  es.addEventListener('error', () => seen.push({ type: 'error', state: es.readyState }));
  return { es, seen };
}

/**
 * The limit is reached: a raw EventSource-style request gets the retry refusal (and is
 * counted); a real EventSource client keeps trying by itself (never CLOSED), and once
 * makeRoom() frees a place it opens and gets an event published after that.
 */
async function limitScenario(b, { fullPath, reason, why, makeRoom, channel }) {
  const before = await refused(b, reason);
  await assertRetryRefusal(b, fullPath, why, `${reason} reached`);
  assert.equal(await refused(b, reason), before + 1, `ssepush_refused_total{reason="${reason}"} did not count the refusal`);
  const { es, seen } = record(`${b.url}${fullPath}`);
  try {
    // Refused at least once, the client must still be trying, not failed for good.
    await waitFor(() => seen.some((e) => e.type === 'error'), 10000, 'the EventSource to see the refusal');
    assert.notEqual(es.readyState, EventSource.CLOSED, `EventSource gave up after the refusal: ${JSON.stringify(seen)}`);
    // The refusal is a 200 that ends: EventSource fires open, then error, and reconnects.
    assert.equal(seen.find((e) => e.type === 'error').state, EventSource.CONNECTING,
      `EventSource is not reconnecting after the refusal: ${JSON.stringify(seen)}`);
    assert.ok(await refused(b, reason) >= before + 2, 'the EventSource\'s refusal was not counted');
    await makeRoom();
    await waitFor(() => es.readyState === EventSource.OPEN, RETRY_MAX + 5000, 'the EventSource to come back by itself once there was room',
      () => JSON.stringify(seen));
    await waitSubscribers(b, channel, 1);
    const p = await publishOk(b, channel, 'after-room');
    await waitFor(() => seen.some((e) => e.type === 'message' && e.data === 'after-room'), 5000, 'the event after the retry');
    assert.ok(p.subscribers >= 1, `publish counted ${p.subscribers}`);
  } finally { es.close(); }
}

test('max_connections: EventSource is told to retry and comes back by itself once a stream closes', { timeout: 40000 }, async () => {
  const b = await startBroker(['--max_connections', '2']);
  const open = [];
  try {
    open.push(await subscribe(b, '/events/c1'), await subscribe(b, '/events/c2'));
    for (const s of open) await waitPreamble(s);
    await limitScenario(b, {
      fullPath: '/events/c3', channel: 'c3', reason: 'max_connections', why: /too many connections/,
      makeRoom: async () => { open.shift().close(); },
    });
  } finally { for (const s of open) s.close(); await b.stop(); }
});

test('max_channels: EventSource is told to retry and comes back by itself once a channel is gone', { timeout: 40000 }, async () => {
  // A channel with no subscriber and no history is swept within BROKER_SWEEP_SECONDS.
  const b = await startBroker(['--max_channels', '2']);
  const open = [];
  try {
    open.push(await subscribe(b, '/events/k1'), await subscribe(b, '/events/k2'));
    for (const s of open) await waitPreamble(s);
    await limitScenario(b, {
      fullPath: '/events/k3', channel: 'k3', reason: 'max_channels', why: /too many channels/,
      makeRoom: async () => {
        open.shift().close();
        await waitFor(async () => (await http(b.publishPort, '/stats/k1')).status === 404, 10000, 'channel k1 to be swept');
      },
    });
  } finally { for (const s of open) s.close(); await b.stop(); }
});

test('max_subscribers_per_channel: EventSource is told to retry and comes back by itself once one leaves', { timeout: 40000 }, async () => {
  const b = await startBroker(['--max_subscribers_per_channel', '2']);
  const open = [];
  try {
    open.push(await subscribe(b, '/events/full'), await subscribe(b, '/events/full'));
    for (const s of open) await waitPreamble(s);
    await limitScenario(b, {
      fullPath: '/events/full', channel: 'full', reason: 'max_subscribers_per_channel', why: /too many subscribers/,
      makeRoom: async () => {
        for (const s of open.splice(0)) s.close();
        await waitSubscribers(b, 'full', 0);
      },
    });
  } finally { for (const s of open) s.close(); await b.stop(); }
});

test('Redis unavailable at subscribe: EventSource is told to retry, curl gets 503; the EventSource comes back once Redis is up', { timeout: 40000 }, async () => {
  const r = await redisServer();	// not started yet
  const b = await startRedisBroker(r, [], { waitBus: false });
  try {
    const before = await refused(b, 'bus_unavailable');
    await assertRetryRefusal(b, '/events/early', /redis unavailable/, 'Redis not started');
    const curl = await openStream(b.port, '/events/early', { headers: { Accept: '*/*' } });
    await curl.waitEnd();
    assertJsonError({ status: curl.status, headers: curl.headers, body: curl.raw(), json: curl.json() }, 503, 'curl-style subscribe with Redis down');
    assert.match(curl.headers['retry-after'] || '', /^\d+$/, `Retry-After: ${curl.headers['retry-after']}`);
    assert.equal(await refused(b, 'bus_unavailable'), before + 2, 'both refusals counted');
    const { es, seen } = record(`${b.url}/events/early`);
    try {
      await waitFor(() => seen.some((e) => e.type === 'error'), 10000, 'the EventSource to see the refusal');
      assert.notEqual(es.readyState, EventSource.CLOSED, `EventSource gave up: ${JSON.stringify(seen)}`);
      await r.start();
      await waitFor(() => es.readyState === EventSource.OPEN, 25000, 'the EventSource to come back by itself once Redis was up', () => JSON.stringify(seen));
      const p = await publishOk(b, 'early', 'redis-back');
      assert.equal(p.subscribers, 1, 'the EventSource that came back is counted');
      await waitFor(() => seen.some((e) => e.type === 'message' && e.data === 'redis-back'), 5000, 'the event after Redis came back');
    } finally { es.close(); }
  } finally { await b.stop(); if (r.running()) await r.stop(); }
});
