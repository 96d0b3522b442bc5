// Long-poll fallback: with EventSource deleted before ssepush.js loads, the client polls
// with fetch (?closeafter=event plus last_event_id, in a loop) and receives the same
// events in the same order as an EventSource client of the same channel.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, waitLog, waitPage, curlPublish,
  waitSubscribers, BWAIT,
} from './lib.mjs';

let b;
before(async () => { b = await startBroker(['--ping_min', '1']); });
after(async () => { try { await closeBrowsers(); if (b) await b.stop(); } finally { killAll(); } });

for (const [name, pageOpts, clientOpts] of [
  ['EventSource deleted from the page', { init: () => { delete window.EventSource; } }, {}],
  ['longPoll: true', {}, { longPoll: true }],
]) {
  test(`long-poll (${name}) gets the same events in the same order as EventSource`, async () => {
    const ch = `lp-${clientOpts.longPoll ? 'opt' : 'noes'}`;
    const ctx = await launch();
    const fetches = [];
    ctx.on('request', (r) => { if (r.url().includes('closeafter=')) fetches.push(r.url()); });
    const es = await openClient(ctx, b.url, `/events/${ch}`, {}, { types: ['change'] });
    const lp = await openClient(ctx, b.url, `/events/${ch}`, { ...clientOpts, ping: 2 }, pageOpts);
    assert.equal(await es.evaluate(() => window.push.transport), 'eventsource');
    assert.equal(await lp.evaluate(() => window.push.transport), 'longpoll');
    await waitSubscribers(b, ch, 2);
    const sent = [];
    for (let i = 0; i < 8; i++) {
      const type = i % 3 === 1 ? 'change' : null;
      const data = i === 5 ? 'two\nlines' : `n${i}`;
      const p = await curlPublish(b, ch, data, type);
      sent.push([type || 'message', p.id, data]);
    }
    const want = sent;
    assert.deepEqual(await waitLog(es, want.length), want);
    assert.deepEqual(await waitLog(lp, want.length), want);
    // It held one request per answer and resumed from the last id it saw.
    assert.ok(fetches.length >= 2, `long-poll requests: ${fetches.join(' ')}`);
    for (const u of fetches) assert.equal(new URL(u).searchParams.get('closeafter'), 'event');
    const ids = sent.map((e) => e[1]);
    assert.equal(new URL(fetches[0]).searchParams.get('last_event_id'), null, 'the first request is live only');
    for (const u of fetches.slice(1)) {
      assert.ok(ids.includes(new URL(u).searchParams.get('last_event_id')),
        `every later request resumes after an id it received: ${u}`);
    }
    // Idle: the held request ends with a ping and the loop goes on, still delivering.
    await waitPage(lp, () => window.push._interval === 2, null, BWAIT, 'a long-poll ping');
    const p = await curlPublish(b, ch, 'after idle');
    const log = await waitLog(lp, want.length + 1);
    assert.deepEqual(log.at(-1), ['message', p.id, 'after idle']);
    assert.equal(log.length, want.length + 1);
    assert.deepEqual(lp.errors || [], []);
    await ctx.close();
  });
}
