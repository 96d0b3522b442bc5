// Tabs of one origin share one connection (shared: true): the tab holding the Web Lock
// connects and relays events on a BroadcastChannel. The broker sees one subscriber;
// both tabs get every event; closing the leader tab hands the connection to the other,
// which resumes from the last id it saw, so nothing is lost or repeated.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, sleep, http, BWAIT,
} from './lib.mjs';

let b;
before(async () => { b = await startBroker([]); });
after(async () => { try { await closeBrowsers(); if (b) await b.stop(); } finally { killAll(); } });

test('two tabs share one connection, both receive; closing the leader hands over', async () => {
  const ch = 'tabs';
  const ctx = await launch();
  const t1 = await openClient(ctx, b.url, `/events/${ch}`, { shared: true }, { types: ['change'] });
  await waitPage(t1, () => window.push.role === 'leader' && window.push.state === 'open', null, BWAIT, 'tab 1 to lead');
  const t2 = await openClient(ctx, b.url, `/events/${ch}`, { shared: true }, { types: ['change'] });
  await waitPage(t2, () => window.push.role === 'follower' && window.push.state === 'open', null, BWAIT,
    'tab 2 to follow and see the leader\'s state');
  await waitSubscribers(b, ch, 1);
  await sleep(300);	// give a wrongly opened second connection time to show up
  const st = await http(b.publishPort, `/stats/${ch}`);
  assert.equal(st.json.subscribers, 1, `one connection for two tabs: ${st.body}`);
  assert.equal(await t2.evaluate(() => window.push.connects), 0);

  const e1 = await curlPublish(b, ch, 'one', 'change');
  const e2 = await curlPublish(b, ch, 'two');
  const want = [['change', e1.id, 'one'], ['message', e2.id, 'two']];
  assert.deepEqual(await waitLog(t1, 2), want);
  assert.deepEqual(await waitLog(t2, 2), want);

  await t1.close();
  const e3 = await curlPublish(b, ch, 'during the hand-over');
  await waitPage(t2, () => window.push.role === 'leader', null, BWAIT, 'tab 2 to take over');
  await waitSubscribers(b, ch, 1);
  const e4 = await curlPublish(b, ch, 'after the hand-over');
  const log = await waitLog(t2, 4);
  assert.deepEqual(log, [...want, ['message', e3.id, 'during the hand-over'], ['message', e4.id, 'after the hand-over']]);
  assert.equal(await t2.evaluate(() => window.push.connects), 1);

  // A third tab joins the new leader rather than opening its own connection.
  const t3 = await openClient(ctx, b.url, `/events/${ch}`, { shared: true });
  await waitPage(t3, () => window.push.role === 'follower' && window.push.state === 'open', null, BWAIT, 'tab 3 to follow');
  const e5 = await curlPublish(b, ch, 'to both');
  assert.deepEqual((await waitLog(t3, 1)).at(-1), ['message', e5.id, 'to both']);
  assert.deepEqual((await waitLog(t2, 5)).at(-1), ['message', e5.id, 'to both']);
  assert.equal((await http(b.publishPort, `/stats/${ch}`)).json.subscribers, 1);
  await ctx.close();
});
