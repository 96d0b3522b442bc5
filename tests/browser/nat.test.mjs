// The NAT black hole: the page reaches the broker through a TCP relay that suddenly
// swallows every byte both ways and closes nothing (a NAT box that forgot the mapping).
// With 1-second pings the client notices the silence, reconnects through the restored
// relay, and receives what was published meanwhile (replay with last_event_id).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, startRelay, waitFor, BWAIT,
} from './lib.mjs';

const relays = [];
after(async () => {
  try { await closeBrowsers(); for (const r of relays) await r.close(); } finally { killAll(); }
});

test('NAT black hole: missing pings detected, reconnect, events published meanwhile replayed once', async () => {
  const ch = 'nat';
  const b = await startBroker(['--ping_min', '1']);
  const relay = await startRelay(b.port);
  relays.push(relay);
  const ctx = await launch();
  const page = await openClient(ctx, relay.url, `/events/${ch}`, { ping: 1, retryDelay: 500, retryMax: 2000 });
  const requests = [];
  page.on('request', (r) => { if (r.url().includes('/events/')) requests.push(r.url()); });
  await waitSubscribers(b, ch, 1);
  const e1 = await curlPublish(b, ch, 'e1');
  await waitLog(page, 1);
  await waitPage(page, () => window.push._interval === 1, null, BWAIT, 'a ping with interval 1');

  relay.blackhole();
  const e2 = await curlPublish(b, ch, 'e2 while black-holed');	// broker still sees its subscriber
  const e3 = await curlPublish(b, ch, 'e3 while black-holed');
  assert.equal(e2.subscribers, 1);
  await waitPage(page, () => window.push.reconnects.includes('ping timeout'), null, BWAIT,
    'the client to notice the missing pings');
  assert.deepEqual(await waitLog(page, 1), [['message', e1.id, 'e1']], 'nothing got through the black hole');
  relay.restore();
  const diag = () => page.evaluate(() => JSON.stringify({ s: window.push.state, r: window.push.reconnects, c: window.push.connects, st: window.states }));
  const log = await waitLog(page, 3).catch(async (e) => { throw new Error(`${e.message}; client ${await diag()}; relay connections ${relay.connections()}`); });
  assert.deepEqual(log, [
    ['message', e1.id, 'e1'],
    ['message', e2.id, 'e2 while black-holed'],
    ['message', e3.id, 'e3 while black-holed'],
  ]);
  assert.ok(requests.some((u) => new URL(u).searchParams.get('last_event_id') === e1.id),
    `a reconnect asked for last_event_id=${e1.id}: ${requests.join(' ')}`);
  const e4 = await curlPublish(b, ch, 'e4 live');
  await waitFor(async () => (await waitLog(page, 4)).length === 4, BWAIT, 'e4');
  assert.deepEqual((await waitLog(page, 4))[3], ['message', e4.id, 'e4 live']);
  assert.equal(await page.evaluate(() => window.resets.length), 0);
  await b.stop();
});
