// The broker restarts on the same port: the page reconnects by itself. History lives in
// the broker's memory and ids are per process (<boot>-<seq>), so the reconnect names an
// id the new process does not know: the client surfaces `event: reset` to the
// application (which re-syncs) and then receives new events, none twice. (A broker that
// keeps history across restarts, through Redis, would replay instead; not built yet.)
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, BWAIT,
} from './lib.mjs';

after(async () => { try { await closeBrowsers(); } finally { killAll(); } });

test('broker restart: reconnect by itself, reset surfaced, new events once each', async () => {
  const ch = 'restart';
  let b = await startBroker(['--reconnect_ms', '200']);
  const port = b.port;
  const ctx = await launch();
  // retryDelay short so that the test does not depend on the browser retrying by itself.
  const page = await openClient(ctx, b.url, `/events/${ch}`, { retryDelay: 300, retryMax: 1000 });
  await waitSubscribers(b, ch, 1);
  const e1 = await curlPublish(b, ch, 'before restart');
  await waitLog(page, 1);

  await b.stop();
  await waitPage(page, () => window.push.state !== 'open', null, BWAIT, 'the client to notice the broker went away');
  b = await startBroker(['--listen', `127.0.0.1:${port}`, '--reconnect_ms', '200']);
  await waitSubscribers(b, ch, 1, BWAIT);
  await waitPage(page, () => window.resets.length === 1, null, BWAIT, 'the reset to reach the application');
  const reset = (await page.evaluate(() => window.resets))[0];
  assert.equal(reset.reason, 'unknown');

  const e2 = await curlPublish(b, ch, 'after restart 1');
  const e3 = await curlPublish(b, ch, 'after restart 2');
  assert.notEqual(e2.id.split('-')[0], e1.id.split('-')[0], 'a new process has a new boot id');
  const log = await waitLog(page, 4);
  assert.deepEqual(log, [
    ['message', e1.id, 'before restart'],
    ['reset', reset.id, JSON.stringify({ reason: 'unknown' })],
    ['message', e2.id, 'after restart 1'],
    ['message', e3.id, 'after restart 2'],
  ]);
  assert.equal(await page.evaluate(() => window.push.lastEventId), e3.id);
  // Still exactly one connection, and nothing arrives twice later on.
  const stats = await waitSubscribers(b, ch, 1);
  assert.equal(stats.subscribers, 1);
  await b.stop();
});
