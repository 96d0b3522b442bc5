// Web push in Chromium: the broker's service worker (/ssepush-sw.js, served beside
// ssepush.js) receives a push delivered through the DevTools protocol
// (ServiceWorker.deliverPushMessage) and shows the notification, tagged per channel,
// and tells the open page; ssepush.js's SsePush.webPushRegister registers a real push
// service's subscription (npm web-push-testing, which checks VAPID and decrypts), and
// an event published with curl arrives there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, waitPage, curlPublish, http, waitFor, BWAIT,
} from './lib.mjs';
import { vapidKeyFile, webpushArgs, startWebPushTesting } from '../functional/webpush-lib.mjs';

let b;
let ctx;
let wpt;
before(async () => {
  wpt = await startWebPushTesting();
  b = await startBroker(webpushArgs(await vapidKeyFile(), [wpt.origin]));
  ctx = await launch();
  await ctx.grantPermissions(['notifications'], { origin: b.url });
});
after(async () => {
  try { await closeBrowsers(); if (b) await b.stop(); if (wpt) await wpt.close(); } finally { killAll(); }
});

/** A page of the broker's origin that loads the real /ssepush.js. */
async function openPage(name) {
  const page = await ctx.newPage();
  await page.route(`${b.url}/t/${name}.html`, (r) => r.fulfill({ contentType: 'text/html; charset=utf-8',
    body: `<!doctype html><meta charset="utf-8"><title>${name}</title><script src="/ssepush.js"></script>
<script>window.got = []; navigator.serviceWorker.addEventListener('message', (e) => got.push(e.data));</script>` }));
  page.on('pageerror', (e) => { page.errors = (page.errors || []).concat(String(e)); });
  await page.goto(`${b.url}/t/${name}.html`);
  return page;
}

test('GET /ssepush-sw.js is served as JavaScript beside ssepush.js', async () => {
  const r = await http(b.port, '/ssepush-sw.js');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.match(r.body, /showNotification/);
});

test('the served service worker shows a notification for a push delivered over the DevTools protocol', async () => {
  const page = await openPage('sw');
  const cdp = await ctx.newCDPSession(page);
  const regs = new Map();
  const versions = [];
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
    for (const r of e.registrations) regs.set(r.registrationId, r);
  });
  cdp.on('ServiceWorker.workerVersionUpdated', (e) => versions.push(...e.versions.map((v) => `${v.versionId}:${v.status}:${v.runningStatus}`)));
  cdp.on('ServiceWorker.workerErrorReported', (e) => versions.push(`error ${JSON.stringify(e.errorMessage)}`));
  await cdp.send('ServiceWorker.enable');
  await page.evaluate(async () => {
    await navigator.serviceWorker.register('/ssepush-sw.js');
    await navigator.serviceWorker.ready;
  });
  const reg = await waitFor(() => [...regs.values()].find((r) => r.scopeURL === `${b.url}/` && !r.isDeleted),
    BWAIT, 'the service worker registration over CDP');
  // A fresh profile's first notification can be lost while Chromium sets notifications
  // up: wait until one the page shows itself is kept (then close it), before the push.
  await waitPage(page, async () => {
    const r = await navigator.serviceWorker.ready;
    await r.showNotification('ready check', { tag: 'ready-check' });
    await new Promise((ok) => setTimeout(ok, 200));
    const n = await r.getNotifications({ tag: 'ready-check' });
    n.forEach((x) => x.close());
    return n.length > 0;
  }, null, BWAIT, 'notifications to be kept by the browser');
  await waitPage(page, async () => (await (await navigator.serviceWorker.ready).getNotifications()).length === 0,
    null, BWAIT, 'the ready check closed');
  const push = { channel: 'alice', id: 'abc-7', event: 'change', data: JSON.stringify({ title: 'Mail', body: '1 new message' }) };
  // getNotifications() is read once the worker says the notification is up, never while
  // it is being shown: Chromium deletes from its store, for good, a notification that a
  // read finds written but not yet on display (polling it lost one in CI).
  const notifications = () => page.evaluate(async () => (await (await navigator.serviceWorker.ready).getNotifications())
    .map((x) => ({ title: x.title, body: x.body, tag: x.tag, data: x.data })));
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: b.url, registrationId: reg.registrationId, data: JSON.stringify(push) });
  const got = await waitPage(page, () => window.got.length > 0 && window.got, null, BWAIT, 'the page told')
    .catch((e) => { e.message += ` versions ${versions.join(' ')}`; throw e; });
  assert.deepEqual(got, [{ ssepush: 'push', push }]);
  assert.deepEqual(await notifications(), [{ title: 'Mail', body: '1 new message', tag: 'ssepush:alice', data: push }]);
  // A newer push of the channel replaces the notification (same tag); a too-large event's notice names its id.
  const newer = { channel: 'alice', id: 'abc-8', event: 'change', truncated: true };
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: b.url, registrationId: reg.registrationId,
    data: JSON.stringify(newer) });
  await waitPage(page, () => window.got.length > 1, null, BWAIT, 'the page told of the newer push');
  assert.deepEqual(await page.evaluate(() => window.got[1]), { ssepush: 'push', push: newer });
  assert.deepEqual(await notifications(),
    [{ title: 'change', body: 'Event abc-8 (too large to show)', tag: 'ssepush:alice', data: newer }]);
  assert.deepEqual(page.errors || [], []);
  await page.close();
});

test('SsePush.webPushRegister registers a push service subscription; a published event arrives there', async () => {
  const page = await openPage('register');
  const key = (await (await fetch(`${b.url}/webpush/key`)).json()).key;
  const sub = await wpt.subscribe(key);
  const r = await page.evaluate((s) => SsePush.webPushRegister({ endpoint: s.endpoint, keys: s.keys }, { channel: 'bob', types: ['change'] }), sub);
  assert.equal(r.channel, 'bob');
  assert.match(r.id, /^[A-Za-z0-9_-]{22}$/);
  const refused = await page.evaluate(() => SsePush.webPushRegister({ endpoint: 'https://evil.example.com/x', keys: {} }, { channel: 'bob' })
    .then(() => null, (e) => ({ status: e.status, reason: e.reason })));
  assert.equal(refused.status, 400);
  assert.match(refused.reason, /allowed push service/);
  const p = await curlPublish(b, 'bob', '{"n":1}', 'change');
  const msgs = await waitFor(async () => { const m = await wpt.messages(sub.clientHash); return m.length > 0 && m; }, BWAIT, 'the push');
  assert.deepEqual(JSON.parse(msgs[0]), { channel: 'bob', id: p.id, event: 'change', data: '{"n":1}' });
  assert.equal(await page.evaluate((id) => SsePush.webPushUnregister(id, { channel: 'bob' }), r.id), null);
  const gone = await http(b.port, `/webpush/bob/${r.id}`, { method: 'DELETE' });
  assert.equal(gone.status, 404);
  await page.close();
});
