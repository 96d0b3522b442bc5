// ssepush.js's retry timings against its README, on the page's clock: Playwright's
// fake timers are installed and paused before the page loads, so the page's time moves
// only when the test says (clock.runFor fires every timer due on the way, in order).
// What is asserted is when the client schedules its next try and that it makes it
// exactly then (push.connects, counted synchronously in the page), never how long
// anything took on the wall clock. The README's numbers, with the default options:
// - a dead connection is one silent for max(1.2 x 300 s, 300 s + 2 s) = 360 s;
// - it is reconnected at once; if that one does not get through either, the next try
//   comes after 30 s plus up to 50%, then 60-90 s, 120-180 s, 240-300 s, then 300 s
//   (retryMax) each time; a connection that opens starts the count again;
// - EventSource CLOSED (a proxy's 502) and long-poll's 429/503: the same delays;
// - a `retry:` line (the broker's "refused for now") is the wait before the next
//   long-poll or fetch-stream request, exactly.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launchBrowser, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, startRelay, subscribe, waitPreamble, waitFor, metric, BWAIT,
} from './lib.mjs';

const WATCHDOG = 360000;	// max(1.2 x 300 s, 300 s + 2 s)
const RETRY = 30000;		// retryDelay
const RETRY_MAX = 300000;	// retryMax
const JITTER = 0.5;		// retryJitter
const T0 = new Date('2030-01-01T00:00:00Z').getTime();

/** The README's window for the n-th delayed try (n = 0 for the first): [min, max] ms. */
function windowOf(n) {
  const base = Math.min(RETRY_MAX, RETRY * 2 ** n);
  return [base, Math.min(RETRY_MAX, base * (1 + JITTER))];
}

const relays = [];
const brokers = [];
after(async () => {
  try {
    await closeBrowsers();
    for (const r of relays) await r.close();
    for (const b of brokers) await b.stop();
  } finally { killAll(); }
});

/**
 * A tab whose clock is installed and paused at T0 before the client page loads. The
 * clock belongs to the browser context, so each such tab gets a context of its own.
 */
let browser;
async function pausedPage() {
  browser = browser || await launchBrowser();
  const page = await (await browser.newContext()).newPage();
  await page.clock.install({ time: T0 - 3600000 });	// time flows until the pause
  await page.clock.pauseAt(T0);
  return page;
}

const client = (page) => page.evaluate(() => ({
  state: window.push.state, connects: window.push.connects, reconnects: window.push.reconnects.slice(),
  last: window.stateLog.at(-1) || null, now: Date.now(),
}));

/**
 * Runs the page clock ms - 1 ahead and checks that the client has not tried again, then
 * 1 more and checks that it has (connects went up by one).
 */
async function assertTriesAt(page, ms, what) {
  const before = await client(page);
  await page.clock.runFor(ms - 1);
  const early = await client(page);
  assert.equal(early.connects, before.connects, `${what}: a try before ${ms} ms: ${JSON.stringify(early)}`);
  await page.clock.runFor(1);
  const due = await client(page);
  assert.equal(due.connects, before.connects + 1, `${what}: no try at ${ms} ms: ${JSON.stringify(due)}`);
  return due;
}

/** Runs the page clock to the watchdog and returns the wait it scheduled (state 'waiting'). */
async function waitAfterWatchdog(page, what) {
  const s0 = await client(page);
  await page.clock.runFor(WATCHDOG - 1);
  const s1 = await client(page);
  assert.notEqual(s1.state, 'waiting', `${what}: gave up before the watchdog: ${JSON.stringify(s1)}`);
  assert.equal(s1.connects, s0.connects, `${what}: tried again before the watchdog: ${JSON.stringify(s1)}`);
  await page.clock.runFor(1);
  const s = await client(page);
  assert.equal(s.state, 'waiting', `${what}: not waiting after the watchdog: ${JSON.stringify(s)}`);
  assert.equal(s.last.info.reason, 'ping timeout', JSON.stringify(s.last));
  return s.last.info.delay;
}

test('a dead connection: reconnect at once; when that hangs too, 30-45 s, then doubling to 5 min; an open connection starts again', async () => {
  const ch = 'retry-dead';
  const b = await startBroker([]);
  brokers.push(b);
  const relay = await startRelay(b.port);
  relays.push(relay);
  const page = await pausedPage();
  await openClient(page.context(), relay.url, `/events/${ch}`, {}, { page });	// the defaults
  await waitPage(page, () => window.push.state === 'open', null, BWAIT, 'the client to open');
  await waitSubscribers(b, ch, 1);
  assert.equal(await page.evaluate(() => window.push._interval), 300);

  // The NAT box forgets the mapping: nothing arrives, nothing errors.
  relay.blackhole();
  const first = await client(page);
  await page.clock.runFor(WATCHDOG - 1);
  assert.equal((await client(page)).connects, 1, 'reconnected before 360 s of silence');
  await page.clock.runFor(1);
  let s = await client(page);
  assert.equal(s.connects, 2, `no reconnect at once after 360 s: ${JSON.stringify(s)}`);
  assert.deepEqual(s.reconnects, ['ping timeout']);
  assert.equal(s.state, 'connecting');
  assert.equal(s.now - first.now, WATCHDOG);

  // That reconnect hangs too (black-holed): each further try waits the README's window.
  const delays = [];
  for (let n = 0; n < 5; n++) {
    const d = await waitAfterWatchdog(page, `try ${n + 2}`);
    const [lo, hi] = windowOf(n);
    assert.ok(Number.isInteger(d) && d >= lo && d <= hi, `wait ${n + 1} is ${d} ms, not in [${lo}, ${hi}] (README)`);
    delays.push(d);
    if (n < 4) await assertTriesAt(page, d, `wait ${n + 1}`);
  }
  assert.equal(delays[4], RETRY_MAX, `capped at retryMax: ${delays}`);

  // The network is back: the next try opens, gets its events, and the count starts again.
  relay.restore();
  await assertTriesAt(page, delays[4], 'the try after the network came back');
  // (Open means the broker holds the stream; the black-holed first one is still counted.)
  await waitPage(page, () => window.push.state === 'open', null, BWAIT, 'the client to open again');
  const e = await curlPublish(b, ch, 'back');
  assert.deepEqual(await waitLog(page, 1), [['message', e.id, 'back']]);
  relay.blackhole();
  await page.clock.runFor(WATCHDOG);
  s = await client(page);
  assert.equal(s.state, 'connecting', `again a reconnect at once: ${JSON.stringify(s)}`);
  const d = await waitAfterWatchdog(page, 'after the count started again');
  const [lo, hi] = windowOf(0);
  assert.ok(d >= lo && d <= hi, `first wait after an open connection is ${d} ms, not in [${lo}, ${hi}]`);
  assert.deepEqual(page.errors || [], []);
  await page.context().close();
});

test('EventSource CLOSED by a 502 and long-poll 503/429: 30-45 s, then 60-90 s; then they get through', async () => {
  const b = await startBroker([]);
  brokers.push(b);
  const run = async (name, status, options) => {
    const ch = `retry-${name}`;
    const page = await pausedPage();
    let refuse = true;
    const seen = [];
    // A proxy in front that answers status while "the broker is unreachable".
    await page.route(`${b.url}/events/**`, (r) => {
      seen.push(r.request().resourceType());
      if (!refuse) return r.continue();
      return r.fulfill({ status, contentType: 'application/json', headers: { 'Retry-After': '5' }, body: '{"error":"down"}' });
    });
    await openClient(page.context(), b.url, `/events/${ch}`, options, { page });
    const delays = [];
    for (let n = 0; n < 2; n++) {
      await waitPage(page, () => window.push.state === 'waiting', null, BWAIT, `${name}: the client to wait`);
      const s = await client(page);
      const [lo, hi] = windowOf(n);
      assert.equal(s.last.info.reason, 'closed', JSON.stringify(s.last));
      assert.ok(s.last.info.delay >= lo && s.last.info.delay <= hi, `${name}: wait ${n + 1} is ${s.last.info.delay}, not in [${lo}, ${hi}]`);
      assert.equal(s.connects, n + 1);
      delays.push(s.last.info.delay);
      if (n === 1) refuse = false;
      await assertTriesAt(page, s.last.info.delay, `${name}: wait ${n + 1}`);
    }
    await waitPage(page, () => window.push.state === 'open', null, BWAIT, `${name}: the client to get through`);
    await waitSubscribers(b, ch, 1);
    const e = await curlPublish(b, ch, 'through');
    assert.deepEqual(await waitLog(page, 1), [['message', e.id, 'through']]);
    assert.deepEqual(await page.evaluate(() => window.failures), [], `${name}: a temporary refusal reported as a failure`);
    assert.equal(await page.evaluate(() => window.stateLog.some((x) => x.state === 'failed')), false);
    await page.context().close();
    return seen;
  };
  const [es, lp503, lp429] = await Promise.all([
    run('es', 502, {}),
    run('lp503', 503, { longPoll: true }),
    run('lp429', 429, { longPoll: true }),
  ]);
  // EventSource CLOSED: one EventSource request and one fetch to learn the status, per try.
  assert.deepEqual(es.slice(0, 4), ['eventsource', 'fetch', 'eventsource', 'fetch'], `requests: ${es}`);
  assert.deepEqual(lp503.slice(0, 2), ['fetch', 'fetch'], `requests: ${lp503}`);
  assert.deepEqual(lp429.slice(0, 2), ['fetch', 'fetch'], `requests: ${lp429}`);
});

test('the broker\'s retry: refusal (max_connections): long-poll and fetch stream wait exactly its delay, then get in', async () => {
  const b = await startBroker(['--max_connections', '2']);
  brokers.push(b);
  const fillers = [await subscribe(b, '/events/filler-1'), await subscribe(b, '/events/filler-2')];
  for (const f of fillers) await waitPreamble(f);
  const open = async (name, options) => {
    const page = await pausedPage();
    const bodies = [];
    page.on('response', (r) => {
      if (r.url().includes(`/events/${name}`)) bodies.push(r.text().catch(() => null));
    });
    await openClient(page.context(), b.url, `/events/${name}`, options, { page });
    await waitPage(page, () => window.push.state === 'waiting', null, BWAIT, `${name}: the client to wait`);
    const s = await client(page);
    const body = await bodies[0];
    const m = /^retry: (\d+)\n: ssepush: refused for now \(too many connections\)/.exec(body || '');
    assert.ok(m, `${name}: the broker's answer: ${JSON.stringify(body)}`);
    assert.deepEqual(s.last.info, { delay: Number(m[1]), reason: 'retry' }, `${name}: ${JSON.stringify(s.last)}`);
    assert.ok(Number(m[1]) >= 5000 && Number(m[1]) <= 7500);
    return { page, delay: Number(m[1]) };
  };
  const [lp, fs] = await Promise.all([open('refused-lp', { longPoll: true }), open('refused-fs', { allTypes: true })]);
  assert.equal(await fs.page.evaluate(() => window.push.transport), 'fetch');
  // Still full: the next try is at exactly the delay, and is told to wait again.
  for (const c of [lp, fs]) {
    await assertTriesAt(c.page, c.delay, 'the retry: delay');
    await waitPage(c.page, () => window.push.state === 'waiting' && window.push.connects === 2, null, BWAIT, 'refused again');
    c.delay = (await client(c.page)).last.info.delay;
  }
  for (const f of fillers) f.close();
  // Let the broker reap them first: a try it refuses again would wait for the page clock.
  await waitFor(async () => (await metric(b, 'ssepush_subscribers')) === 0, BWAIT, 'the fillers to be gone');
  for (const [c, ch] of [[lp, 'refused-lp'], [fs, 'refused-fs']]) {
    await assertTriesAt(c.page, c.delay, 'the retry: delay after room was made');
    await waitPage(c.page, () => window.push.state === 'open', null, BWAIT, `${ch}: in once there is room`);
    await waitSubscribers(b, ch, 1);
    const e = await curlPublish(b, ch, 'in', 'change');
    assert.deepEqual(await waitLog(c.page, 1), [['change', e.id, 'in']]);
    const states = await c.page.evaluate(() => window.stateLog.map((x) => x.state));
    assert.ok(!states.includes('failed'), `${ch}: ${states}`);
    await c.page.context().close();
  }
});

test('a fetch stream that ends waits its preamble\'s retry: (as EventSource does), also while the broker is down', async () => {
  let b = await startBroker(['--reconnect_ms', '7000']);
  const port = b.port;
  const ch = 'retry-preamble';
  const page = await pausedPage();
  await openClient(page.context(), b.url, `/events/${ch}`, { allTypes: true }, { page });
  await waitPage(page, () => window.push.state === 'open', null, BWAIT, 'the client to open');
  await waitSubscribers(b, ch, 1);
  await b.stop();
  await waitPage(page, () => window.push.state === 'waiting', null, BWAIT, 'the client to wait after the stream ended');
  let s = await client(page);
  const d = s.last.info.delay;
  assert.equal(s.last.info.reason, 'retry');
  assert.ok(d >= 7000 && d <= 10500, `reconnect_ms 7000 plus up to 50%: ${d}`);
  // The broker is down: connection refused, so it waits the same retry: again.
  await assertTriesAt(page, d, 'the preamble\'s retry');
  await waitPage(page, () => window.push.state === 'waiting', null, BWAIT, 'the client to wait after connection refused');
  s = await client(page);
  assert.deepEqual(s.last.info, { delay: d, reason: 'retry' });
  b = await startBroker(['--listen', `127.0.0.1:${port}`]);
  brokers.push(b);
  await assertTriesAt(page, d, 'the retry with the broker back');
  await waitPage(page, () => window.push.state === 'open', null, BWAIT, 'the client to open again');
  await waitSubscribers(b, ch, 1);
  await page.context().close();
});
