// The shipped nginx examples (packaging/nginx/auth_request.conf and x_accel_redirect.conf,
// templated as ../functional/nginx.test.mjs does) in front of a broker in auth proxy
// mode, and a broker restart behind each: pages loaded from nginx's origin, with
// /ssepush.js coming through nginx, get their events again with no help once the broker
// is stopped and started on the same port. While it is down nginx answers with its
// 200 `retry:` stream: ssepush.js on EventSource sees it open and end (the browser
// retries by itself, ssepush.js never makes its own EventSource again), and ssepush.js
// reading the stream with fetch (allTypes) waits the `retry:` nginx sent. Both
// examples run side by side; every broker and nginx is started before any restart, so
// that no other process is binding a port while a broker's port is free.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, startApp, startNginx, http, BWAIT,
} from './lib.mjs';

const USER = 'nginx-user';
const RESTART_WAIT = 20000;	// the broker's retry:, then nginx's 5-7.5 s, on a busy machine
const ARGS = ['--auth', 'proxy', '--trusted_proxies', '127.0.0.1', '--reconnect_ms', '300'];

let app;
const running = [];
after(async () => {
  try {
    await closeBrowsers();
    for (const x of running) await x.stop();
    if (app) await app.close();
  } finally { killAll(); }
});

const examples = [
  { name: 'auth_request', file: 'auth_request.conf', pathFor: (user) => `/events/${user}` },
  { name: 'X-Accel-Redirect', file: 'x_accel_redirect.conf', pathFor: () => '/push/stream' },
];

test('a broker restart behind each nginx example: the pages get their events again by themselves', { timeout: 90000 }, async () => {
  app = await startApp();
  const setups = [];
  for (const ex of examples) {
    const b = await startBroker(ARGS);
    const n = await startNginx(ex.file, b.port, app.port);
    running.push(n, b);
    setups.push({ ex, b, n });
  }
  const ctx = await launch();
  // Cookies are per host, not per port: one user for both (each on its own broker).
  await ctx.addCookies([{ name: 'app_session', value: `ok:${USER}`, url: setups[0].n.url }]);
  await Promise.all(setups.map((s) => run(ctx, s)));
});

/** One example: pages on nginx's origin, a restart, events again. */
async function run(ctx, s) {
  const { ex, n } = s;
  let { b } = s;
  const user = USER;
  const port = b.port;
  const what = ex.name;
  const js = await http(n.port, '/ssepush.js');
  assert.equal(js.status, 200, `${what}: /ssepush.js through nginx: ${js.status}`);
  // The pages load /ssepush.js from nginx's origin (openClient's page has no other).
  const es = await openClient(ctx, n.url, ex.pathFor(user), {}, { types: ['change'] });
  const fs = await openClient(ctx, n.url, ex.pathFor(user), { allTypes: true });
  assert.equal(await fs.evaluate(() => window.push.transport), 'fetch');
  await waitPage(es, () => window.push.state === 'open', null, BWAIT, `${what}: EventSource page open`);
  await waitPage(fs, () => window.push.state === 'open', null, BWAIT, `${what}: fetch page open`);
  await waitSubscribers(b, user, 2);
  const e1 = await curlPublish(b, user, 'before', 'change');
  assert.deepEqual(await waitLog(es, 1), [['change', e1.id, 'before']]);
  assert.deepEqual(await waitLog(fs, 1), [['change', e1.id, 'before']]);

  await b.stop();
  const mark = await Promise.all([es, fs].map((p) => p.evaluate(() => window.stateLog.length)));
  // nginx's own answer reached both pages: a 200 that opens, then ends (EventSource),
  // and whose retry: (5-7.5 s) the fetch page waits.
  await waitPage(es, (m) => {
    const l = window.stateLog.slice(m).map((x) => x.state);
    return l.includes('open') && l.lastIndexOf('connecting') > l.indexOf('open');
  }, mark[0], RESTART_WAIT, `${what}: the EventSource page to get nginx's retry answer`);
  await waitPage(fs, (m) => window.stateLog.slice(m).some((x) => x.state === 'waiting' && x.info.delay >= 5000),
    mark[1], RESTART_WAIT, `${what}: the fetch page to wait nginx's retry:`);
  const nginxWait = (await fs.evaluate((m) => window.stateLog.slice(m).find((x) => x.info && x.info.delay >= 5000), mark[1])).info;
  assert.equal(nginxWait.reason, 'retry');
  assert.ok(nginxWait.delay <= 7500, `${what}: nginx's retry: ${nginxWait.delay}`);

  b = await startBroker(['--listen', `127.0.0.1:${port}`, ...ARGS]);
  running.push(b);
  await waitSubscribers(b, user, 2, RESTART_WAIT);
  // The new process does not know the old ids: a reset first, then the new event.
  for (const p of [es, fs]) await waitPage(p, () => window.resets.length === 1, null, BWAIT, `${what}: the reset`);
  const e2 = await curlPublish(b, user, 'after', 'change');
  for (const p of [es, fs]) {
    const log = await waitLog(p, 3);
    assert.equal(log.length, 3, `${what}: ${JSON.stringify(log)}`);
    assert.deepEqual([log[0], log[1][0], log[2]], [['change', e1.id, 'before'], 'reset', ['change', e2.id, 'after']]);
    assert.deepEqual(await p.evaluate(() => window.failures), []);
    assert.ok(!(await p.evaluate(() => window.states)).includes('failed'));
    assert.deepEqual(p.errors || [], []);
  }
  assert.equal(await es.evaluate(() => window.push.connects), 1, `${what}: ssepush.js made its own EventSource again`);
  assert.ok(!(await es.evaluate(() => window.states)).includes('waiting'), `${what}: ssepush.js scheduled a retry itself`);
  await es.close();
  await fs.close();
}
