// A refusal retrying cannot fix stops ssepush.js: 400 (bad channel), 401/403 (auth), 404
// and 405, on each transport. The client reports state 'failed' with the status and the
// broker's JSON reason through onstate and onerror, and sends nothing more: the page's
// clock (Playwright's fake timers) is run an hour ahead and the browser says it is back
// online, and not one more request reaches the broker (its ssepush_rejected_total, and
// the page's own requests, are counted). Only push.start() tries again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, runBroker, metric, waitFor, BWAIT,
} from './lib.mjs';

const SECRET = 'browser-tests-token-secret-0123456789abcdef';

let b;
let ctx;
before(async () => {
  b = await startBroker(['--auth', 'token', '--token_secret', SECRET]);
  ctx = await launch();
  // One clock for the whole context, installed and paused before any page loads.
  await ctx.clock.install({ time: new Date('2030-01-01T00:00:00Z') });	// time flows until the pause
  await ctx.clock.pauseAt(new Date('2030-01-01T01:00:00Z'));
});
after(async () => { try { await closeBrowsers(); if (b) await b.stop(); } finally { killAll(); } });

/** A subscriber token for channel, minted by the broker. */
async function mint(channel) {
  const r = await runBroker(['--mint-token', channel, '--token_secret', SECRET]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** Records the requests a page sends to the broker (not the page itself, not /ssepush.js). */
function recordRequests(page) {
  const list = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (!u.pathname.startsWith('/t/') && u.pathname !== '/ssepush.js') list.push(`${r.resourceType()} ${u.pathname}`);
  });
  return list;
}

/**
 * Opens a client (options, opts as openClient) that must fail for good with status and
 * reason; asserts what it reports and that `requests` (eventsource/fetch pairs) reached
 * the broker; then runs the page clock an hour ahead and fires `online`, and asserts
 * that nothing more was sent. Returns {page, reqs}.
 */
async function assertStops({ path, options = {}, opts = {}, status, reason, requests, route = null }) {
  const page = await ctx.newPage();
  const reqs = recordRequests(page);
  if (route) await page.route(route.url, route.handler);
  const rejected = await metric(b, 'ssepush_rejected_total');
  await openClient(ctx, b.url, path, options, { ...opts, page });
  await waitPage(page, () => window.push.state === 'failed', null, BWAIT, `the client to fail (${status})`);
  const want = { status, reason };
  const got = await page.evaluate(() => ({
    error: window.push.error, failures: window.failures, last: window.stateLog.at(-1), states: window.states,
  }));
  assert.deepEqual(got.error, want);
  assert.deepEqual(got.failures, [want], 'onerror called once with the status and the reason');
  assert.deepEqual(got.last.info, want, 'onstate(\'failed\', {status, reason})');
  assert.ok(!got.states.includes('waiting'), `no retry was scheduled: ${got.states}`);
  await waitFor(() => reqs.length >= requests.length, BWAIT, 'the requests', () => reqs.join(', '));
  assert.deepEqual(reqs, requests);
  const fromBroker = route ? 0 : requests.length;
  await waitFor(async () => (await metric(b, 'ssepush_rejected_total')) === rejected + fromBroker, BWAIT,
    `the broker to have refused ${fromBroker} request(s)`);

  // An hour later, back online: still nothing.
  await ctx.clock.runFor(3600000);
  await page.evaluate(() => window.dispatchEvent(new Event('online')));
  await ctx.clock.runFor(3600000);
  const after = await page.evaluate(() => ({ state: window.push.state, connects: window.push.connects, timers: Object.keys(window.push._timers) }));
  assert.deepEqual(after, { state: 'failed', connects: 1, timers: [] });
  // A request sent after all of that reaches the broker after anything sent before it.
  await page.evaluate(() => fetch('/healthz?marker'));
  await waitFor(() => reqs.includes('fetch /healthz'), BWAIT, 'the marker request');
  assert.deepEqual(reqs, [...requests, 'fetch /healthz'], 'a request after the refusal');
  assert.equal(await metric(b, 'ssepush_rejected_total'), rejected + fromBroker, 'the broker refused more requests');
  return { page, reqs };
}

test('403 (token for another channel), EventSource: failed with the reason, nothing more; start() with a good token gets in', async () => {
  const bad = await mint('someone-else');
  const good = await mint('perm-403');
  const { page, reqs } = await assertStops({
    path: '/events/perm-403',
    opts: { init: `window.tok = ${JSON.stringify(bad)}; window.SSEPUSH_EXTRA = { getToken: () => window.tok };` },
    status: 403,
    reason: 'token does not grant this channel',
    // EventSource does not say why it closed: one fetch of the same URL tells.
    requests: ['eventsource /events/perm-403', 'fetch /events/perm-403'],
  });
  await page.evaluate((t) => { window.tok = t; window.push.start(); }, good);
  await waitPage(page, () => window.push.state === 'open', null, BWAIT, 'the client to open after start()');
  assert.equal(await page.evaluate(() => window.push.error), null);
  await waitSubscribers(b, 'perm-403', 1);
  const e = await curlPublish(b, 'perm-403', 'after start');
  assert.deepEqual(await waitLog(page, 1), [['message', e.id, 'after start']]);
  assert.equal(reqs.filter((r) => r.startsWith('eventsource')).length, 2);
  // close() stops it; start() again resumes after the last id it saw (replayed).
  await page.evaluate(() => window.push.close());
  await waitSubscribers(b, 'perm-403', 0);
  const e2 = await curlPublish(b, 'perm-403', 'while closed');
  await page.evaluate(() => window.push.start());
  assert.deepEqual(await waitLog(page, 2), [['message', e.id, 'after start'], ['message', e2.id, 'while closed']]);
  assert.deepEqual((await page.evaluate(() => window.states)).slice(-3), ['closed', 'connecting', 'open']);
  await page.close();
});

test('400 (bad channel name), long-poll: failed with the broker\'s reason, one request only', async () => {
  const { page } = await assertStops({
    path: '/events/bad%20channel',
    options: { longPoll: true, token: await mint('x') },
    status: 400,
    reason: 'invalid channel name',
    requests: ['fetch /events/bad%20channel'],
  });
  await page.close();
});

test('401 (no token), fetch stream: failed with the broker\'s reason, one request only', async () => {
  const { page } = await assertStops({
    path: '/events/perm-401',
    options: { allTypes: true },
    status: 401,
    reason: 'token required (Authorization: Bearer, ?token= or cookie ssepush_token)',
    requests: ['fetch /events/perm-401'],
  });
  await page.close();
});

test('404 (unknown path), EventSource: failed with the broker\'s reason', async () => {
  const { page } = await assertStops({
    path: '/no/such/path',
    status: 404,
    reason: 'not found',
    requests: ['eventsource /no/such/path', 'fetch /no/such/path'],
  });
  await page.close();
});

test('405 from a proxy in front, long-poll: failed with its reason', async () => {
  const { page } = await assertStops({
    path: '/events/perm-405',
    options: { longPoll: true },
    status: 405,
    reason: 'method not allowed',
    requests: ['fetch /events/perm-405'],
    route: {
      url: `${b.url}/events/**`,
      handler: (r) => r.fulfill({ status: 405, contentType: 'application/json', headers: { Allow: 'POST' }, body: '{"error":"method not allowed"}' }),
    },
  });
  await page.close();
});

test('shared tabs: the leader\'s refusal reaches the follower (state, error, onerror); the follower\'s start() tries again', async () => {
  const bad = await mint('someone-else');
  const init = `window.SSEPUSH_EXTRA = { getToken: () => ${JSON.stringify(bad)} };`;
  const t1 = await openClient(ctx, b.url, '/events/perm-shared', { shared: true }, { init });
  await waitPage(t1, () => window.push.role === 'leader' && window.push.state === 'failed', null, BWAIT, 'tab 1 to lead and fail');
  const t2 = await openClient(ctx, b.url, '/events/perm-shared', { shared: true }, { init });
  await waitPage(t2, () => window.push.role === 'follower' && window.push.state === 'failed', null, BWAIT, 'tab 2 to follow and show the failure');
  const want = { status: 403, reason: 'token does not grant this channel' };
  assert.deepEqual(await t2.evaluate(() => [window.push.error, window.failures]), [want, [want]]);
  assert.equal(await t2.evaluate(() => window.push.connects), 0);
  const rejected = await metric(b, 'ssepush_rejected_total');
  await t2.evaluate(() => window.push.start());
  await waitPage(t1, () => window.push.connects === 2 && window.push.state === 'failed', null, BWAIT, 'the leader to try again and fail');
  await waitFor(async () => (await metric(b, 'ssepush_rejected_total')) === rejected + 2, BWAIT, 'the leader\'s second try at the broker');
  await waitPage(t2, () => window.failures.length === 2, null, BWAIT, 'the follower to hear of the second refusal');
  await t1.close();
  await t2.close();
});
