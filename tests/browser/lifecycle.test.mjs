// What the browser does to a page over time, driven honestly:
// - sleep: Playwright's clock jumps 10 minutes ahead the way a laptop lid does (due
//   timers fire once, late). The client sees its timer fire far later than scheduled
//   and recreates the connection although EventSource still says OPEN. (The jump is
//   simulated; the connection itself stays healthy, so what is checked is that the
//   client reconnects on that signal, resumes with last_event_id, and repeats nothing.)
// - offline/online: Chromium's network emulation (context.setOffline). Going offline
//   does not break an open stream in Chromium, so the relay cuts the connection while
//   offline; the broker's retry: and the client's retryDelay are 10 minutes, so only the
//   `online` event can explain the prompt reconnect that follows.
// - tokens: the client asks getToken() again before reconnecting and sends the new token.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, startRelay, waitFor, BWAIT,
} from './lib.mjs';

const relays = [];
const brokers = [];
after(async () => {
  try {
    await closeBrowsers();
    for (const r of relays) await r.close();
    for (const b of brokers) await b.stop();
  } finally { killAll(); }
});

test('sleep: a timer firing 10 minutes late makes the client reconnect and resume', async () => {
  const ch = 'sleep';
  const b = await startBroker([]);
  brokers.push(b);
  const ctx = await launch();
  const page = await ctx.newPage();
  await page.clock.install();
  const urls = [];
  ctx.on('request', (r) => { if (r.url().includes(`/events/${ch}`)) urls.push(r.url()); });
  await openClient(ctx, b.url, `/events/${ch}`, {}, { page });
  await waitPage(page, () => window.push.state === 'open', null, BWAIT, 'open');
  await waitSubscribers(b, ch, 1);
  const e1 = await curlPublish(b, ch, 'before sleep');
  await waitLog(page, 1);
  assert.equal(await page.evaluate(() => window.push._es.readyState), 1);

  await page.clock.fastForward('10:00');
  await waitPage(page, () => window.push.reconnects.includes('sleep'), null, BWAIT, 'the client to detect sleep');
  await waitPage(page, () => window.push.state === 'open' && window.push.connects === 2, null, BWAIT, 'a new connection');
  assert.ok(urls.some((u) => new URL(u).searchParams.get('last_event_id') === e1.id), `resumed after e1: ${urls.join(' ')}`);
  await waitSubscribers(b, ch, 1);
  const e2 = await curlPublish(b, ch, 'after sleep');
  await waitFor(async () => (await waitLog(page, 1)).length >= 2, BWAIT, 'the event after sleep');
  assert.deepEqual(await waitLog(page, 2), [['message', e1.id, 'before sleep'], ['message', e2.id, 'after sleep']]);
  await ctx.close();
});

test('offline then online: reconnect at once on `online`, events from the offline time replayed', async () => {
  const ch = 'offline';
  const b = await startBroker(['--reconnect_ms', '600000']);
  brokers.push(b);
  const relay = await startRelay(b.port);
  relays.push(relay);
  const ctx = await launch();
  const page = await openClient(ctx, relay.url, `/events/${ch}`, { retryDelay: 600000, retryMax: 600000 });
  await waitSubscribers(b, ch, 1);
  const e1 = await curlPublish(b, ch, 'online 1');
  await waitLog(page, 1);

  await ctx.setOffline(true);
  relay.cut();
  await waitPage(page, () => window.push.state !== 'open', null, BWAIT, 'the client to lose its connection');
  await waitSubscribers(b, ch, 0);
  const e2 = await curlPublish(b, ch, 'while offline');
  assert.equal(e2.subscribers, 0);
  assert.equal((await waitLog(page, 1)).length, 1);

  await ctx.setOffline(false);
  await waitPage(page, () => window.push.reconnects.includes('online'), null, BWAIT, 'a reconnect on `online`');
  const log = await waitLog(page, 2);
  assert.deepEqual(log, [['message', e1.id, 'online 1'], ['message', e2.id, 'while offline']]);
  const e3 = await curlPublish(b, ch, 'online 2');
  assert.deepEqual((await waitLog(page, 3))[2], ['message', e3.id, 'online 2']);
  assert.equal((await waitLog(page, 3)).length, 3);
  await ctx.close();
});

test('getToken is asked again before a reconnect; the fresh token goes in ?token=', async () => {
  const ch = 'token';
  const b = await startBroker([]);
  brokers.push(b);
  const relay = await startRelay(b.port);
  relays.push(relay);
  const ctx = await launch();
  const urls = [];
  ctx.on('request', (r) => { if (r.url().includes(`/events/${ch}`)) urls.push(r.url()); });
  const page = await ctx.newPage();
  await page.addInitScript(() => {
    window.tokenCalls = 0;
    window.SSEPUSH_TEST_GET_TOKEN = () => Promise.resolve(`tok${++window.tokenCalls}`);
  });
  await page.route(`${relay.url}/t/token.html`, (r) => r.fulfill({
    contentType: 'text/html',
    body: `<script src="/ssepush.js"></script><script>
window.log = [];
window.push = new SsePush('/events/${ch}', { getToken: window.SSEPUSH_TEST_GET_TOKEN, retryDelay: 300, retryMax: 1000 });
push.on('message', (e) => log.push({ type: e.type, id: e.id, data: e.data }));
</script>`,
  }));
  await page.goto(`${relay.url}/t/token.html`);
  await waitSubscribers(b, ch, 1);
  const e1 = await curlPublish(b, ch, 'first');
  await waitLog(page, 1);
  relay.cut();
  await waitPage(page, () => window.tokenCalls >= 2 && window.push.state === 'open', null, BWAIT, 'a reconnect with a new token');
  await waitSubscribers(b, ch, 1);
  const tokens = urls.map((u) => new URL(u).searchParams.get('token'));
  assert.equal(tokens[0], 'tok1');
  const again = urls.find((u) => new URL(u).searchParams.get('token') === 'tok2');
  assert.ok(again, `a request with token=tok2: ${urls.join(' ')}`);
  assert.equal(new URL(again).searchParams.get('last_event_id'), e1.id);
  const e2 = await curlPublish(b, ch, 'second');
  assert.deepEqual(await waitLog(page, 2), [['message', e1.id, 'first'], ['message', e2.id, 'second']]);
  await ctx.close();
});
