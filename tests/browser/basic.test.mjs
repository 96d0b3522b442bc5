// ssepush.js in a page: served by the broker as a classic script and an ES module,
// events published with curl appear in the page (types, multi-line data, UTF-8), and
// the demo page (only with `demo on`) shows its state and live events and publishes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, http, BWAIT,
} from './lib.mjs';

let b;
let ctx;
before(async () => {
  b = await startBroker(['--demo', 'on']);
  ctx = await launch();
});
after(async () => {
  try { await closeBrowsers(); if (b) await b.stop(); } finally { killAll(); }
});

test('GET /ssepush.js and /ssepush.mjs: JavaScript with an ETag; 304 when it matches', async () => {
  for (const p of ['/ssepush.js', '/ssepush.mjs']) {
    const r = await http(b.port, p);
    assert.equal(r.status, 200, `${p}: ${r.status}`);
    assert.equal(r.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.match(r.headers['cache-control'] || '', /max-age=\d+/);
    assert.match(r.headers.etag || '', /^"[0-9a-f]+-[0-9a-f]+"$/);
    const again = await http(b.port, p, { headers: { 'If-None-Match': r.headers.etag } });
    assert.equal(again.status, 304, `${p} with If-None-Match: ${again.status}`);
  }
  const js = await http(b.port, '/ssepush.js');
  assert.match(js.body, /SsePush/);
});

test('events published with curl appear in the page, in order, each once', async () => {
  const ch = 'basic-curl';
  const page = await openClient(ctx, b.url, `/events/${ch}`, {}, { types: ['change'] });
  await waitPage(page, () => window.push.state === 'open', null, BWAIT, 'the client to be open');
  await waitSubscribers(b, ch, 1);
  const sent = [
    ['message', 'plain'],
    ['change', '{"folder":"INBOX","n":1}'],
    ['message', 'line one\nline two'],
    ['change', 'Grüße ✓'],
  ];
  const ids = [];
  for (const [type, data] of sent) ids.push((await curlPublish(b, ch, data, type === 'message' ? null : type)).id);
  const log = await waitLog(page, sent.length);
  assert.deepEqual(log, sent.map(([type, data], i) => [type, ids[i], data]));
  assert.equal(await page.evaluate(() => window.push.lastEventId), ids.at(-1));
  assert.deepEqual(page.errors || [], []);
  await page.close();
});

test('ssepush.mjs works as an ES module import', async () => {
  const page = await ctx.newPage();
  await page.route(`${b.url}/t/module.html`, (r) => r.fulfill({
    contentType: 'text/html',
    body: `<script type="module">
import SsePush, { SsePush as Named } from '/ssepush.mjs';
window.log = [];
window.same = SsePush === Named && typeof SsePush === 'function';
window.push = new SsePush('/events/basic-module');
push.on('message', (e) => log.push(e.data));
</script>`,
  }));
  await page.goto(`${b.url}/t/module.html`);
  await waitPage(page, () => window.push && window.push.state === 'open', null, BWAIT, 'the module client to be open');
  assert.equal(await page.evaluate(() => window.same), true);
  await waitSubscribers(b, 'basic-module', 1);
  await curlPublish(b, 'basic-module', 'via module');
  await waitPage(page, () => window.log.join(',') === 'via module', null, BWAIT, 'the event in the module page');
  await page.close();
});

test('the demo page: state, live events from curl, and its form publishes', async () => {
  const ch = 'demo-page';
  const page = await ctx.newPage();
  await page.goto(`${b.url}/?channel=${ch}`);
  await page.locator('#state', { hasText: 'open' }).waitFor({ timeout: BWAIT });
  await waitSubscribers(b, ch, 1);
  const p = await curlPublish(b, ch, 'from curl');
  await page.locator(`#events li[data-id="${p.id}"]`, { hasText: 'from curl' }).waitFor({ timeout: BWAIT });

  await page.fill('#data', '{"from":"the form"}');
  await page.fill('#event', 'message');
  await page.click('button[type=submit]');
  await page.locator('#result', { hasText: 'delivered to 1 subscriber' }).waitFor({ timeout: BWAIT });
  const li = page.locator('#events li', { hasText: '{"from":"the form"}' });
  await li.waitFor({ timeout: BWAIT });
  assert.equal(await li.count(), 1);
  assert.match(await li.getAttribute('data-id'), /^[0-9a-f]{12}-\d+$/);

  // A custom type from the form: the page starts listening to it before publishing.
  await page.fill('#event', 'change');
  await page.fill('#data', 'typed');
  await page.click('button[type=submit]');
  await page.locator('#events li[data-type="change"]', { hasText: 'typed' }).waitFor({ timeout: BWAIT });
  await page.close();
});

test('without demo on, / is 404 and /ssepush.js is still served', async () => {
  const plain = await startBroker([]);
  try {
    assert.equal((await http(plain.port, '/')).status, 404);
    assert.equal((await http(plain.port, '/demo.html')).status, 404);
    assert.equal((await http(plain.port, '/ssepush.js')).status, 200);
  } finally {
    await plain.stop();
  }
});
