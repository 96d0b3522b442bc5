// A full broker is a pause for Chromium, not a failure. For each limit (max_connections,
// max_channels, max_subscribers_per_channel), filled by raw streams from the test, three
// pages subscribe and are refused: the browser's own EventSource (no ssepush.js),
// ssepush.js on EventSource, and ssepush.js long-polling with fetch. The broker answers
// them with its 200 stream of only `retry:` (counted in ssepush_refused_total): the
// native EventSource fires open then error and never stays CLOSED, ssepush.js never
// reports 'failed' (on EventSource the browser retried by itself; long-poll waited
// the `retry:` delay). Once the test makes room, every page gets in by itself and
// receives an event published after that. The three limits run side by side.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, launch, closeBrowsers, openClient, openNative, waitLog, waitPage, curlPublish,
  waitSubscribers, subscribe, waitPreamble, waitFor, http, metric, BWAIT,
} from './lib.mjs';

const REFUSED_WAIT = 20000;	// a retry is 5-7.5 s; max_channels also waits for a sweep (5 s)

let ctx;
const brokers = [];
before(async () => { ctx = await launch(); });
after(async () => {
  try { await closeBrowsers(); for (const b of brokers) await b.stop(); } finally { killAll(); }
});

/**
 * Fills a broker's limit with raw streams (fill), opens the three pages (each on its
 * channel from channels), waits until each was refused, makes room, and checks that each
 * page gets in by itself and gets an event published after that.
 */
async function scenario({ name, args, fill, channels, reason, makeRoom }) {
  const b = await startBroker(args);
  brokers.push(b);
  const fillers = [];
  for (const p of fill) fillers.push(await subscribe(b, p));
  for (const f of fillers) await waitPreamble(f);
  const refusedBefore = await metric(b, 'ssepush_refused_total', `{reason="${reason}"}`);

  const native = await openNative(ctx, b.url, `/events/${channels.native}`, ['change']);
  const es = await openClient(ctx, b.url, `/events/${channels.es}`, {}, { types: ['change'] });
  const lp = await openClient(ctx, b.url, `/events/${channels.lp}`, { longPoll: true });

  // Refused: told to retry, and still trying.
  await waitPage(native, () => window.seen.some((e) => e.type === 'error'), null, BWAIT, `${name}: native EventSource refused`);
  await waitPage(es, () => window.states.includes('connecting'), null, BWAIT, `${name}: ssepush.js (EventSource) refused`);
  await waitPage(lp, () => window.states.includes('waiting'), null, BWAIT, `${name}: ssepush.js (long-poll) refused`);
  const firstError = await native.evaluate(() => window.seen.find((e) => e.type === 'error'));
  assert.equal(firstError.state, 0, `${name}: the native EventSource's state after the refusal: ${JSON.stringify(firstError)}`);
  assert.deepEqual(await native.evaluate(() => window.seen[0]), { type: 'open', state: 1, data: null, id: null },
    `${name}: the refusal is a 200 stream, so EventSource opened first`);
  const lpWait = (await lp.evaluate(() => window.stateLog.find((x) => x.state === 'waiting'))).info;
  assert.equal(lpWait.reason, 'retry', `${name}: long-poll waited for ${JSON.stringify(lpWait)}`);
  assert.ok(lpWait.delay >= 5000 && lpWait.delay <= 7500, `${name}: long-poll waited ${lpWait.delay} ms, not the broker's 5-7.5 s`);
  const refused = await metric(b, 'ssepush_refused_total', `{reason="${reason}"}`);
  assert.ok(refused >= refusedBefore + 3, `${name}: ssepush_refused_total{reason="${reason}"} ${refusedBefore} -> ${refused}`);

  await makeRoom(b, fillers);

  // In by itself, and an event published now arrives.
  await waitPage(native, () => window.es.readyState === 1 && window.seen.filter((e) => e.type === 'open').length >= 2, null, REFUSED_WAIT,
    `${name}: the native EventSource to get in by itself`);
  await waitPage(es, () => window.push.state === 'open' && window.stateLog.length >= 3, null, REFUSED_WAIT, `${name}: ssepush.js (EventSource) in`);
  await waitPage(lp, () => window.push.state === 'open', null, REFUSED_WAIT, `${name}: ssepush.js (long-poll) in`);
  const per = new Map();
  for (const ch of Object.values(channels)) per.set(ch, (per.get(ch) || 0) + 1);
  for (const [ch, n] of per) await waitSubscribers(b, ch, n, REFUSED_WAIT);
  const sent = {};
  for (const ch of per.keys()) sent[ch] = await curlPublish(b, ch, `room on ${ch}`, 'change');
  await waitPage(native, (id) => window.seen.some((e) => e.type === 'change' && e.id === id), sent[channels.native].id, BWAIT,
    `${name}: the event in the native page`);
  assert.deepEqual(await waitLog(es, 1), [['change', sent[channels.es].id, `room on ${channels.es}`]]);
  assert.deepEqual(await waitLog(lp, 1), [['change', sent[channels.lp].id, `room on ${channels.lp}`]]);

  // Never CLOSED, never failed; on EventSource, ssepush.js left the retrying to the browser.
  const nseen = await native.evaluate(() => window.seen);
  assert.ok(nseen.every((e) => e.state !== 2), `${name}: the native EventSource was CLOSED: ${JSON.stringify(nseen)}`);
  const ess = await es.evaluate(() => ({ states: window.states, connects: window.push.connects, failures: window.failures }));
  assert.deepEqual(ess.failures, []);
  assert.ok(!ess.states.includes('failed') && !ess.states.includes('waiting'), `${name}: ssepush.js states ${ess.states}`);
  assert.equal(ess.connects, 1, `${name}: ssepush.js made its own EventSource again`);
  const lps = await lp.evaluate(() => ({ log: window.stateLog, failures: window.failures }));
  assert.deepEqual(lps.failures, []);
  for (const x of lps.log.filter((y) => y.state === 'waiting' || y.state === 'failed')) {
    assert.ok(x.state === 'waiting' && x.info.reason === 'retry', `${name}: long-poll ${JSON.stringify(x)}`);
  }
  for (const p of [native, es, lp]) {
    assert.deepEqual(p.errors || [], []);
    await p.close();
  }
}

describe('each limit, hit by Chromium', { concurrency: true }, () => {
  test('max_connections: refused with retry:, in by itself once streams close', { timeout: 60000 }, () => scenario({
    name: 'max_connections',
    args: ['--max_connections', '3'],
    fill: ['/events/mc-f1', '/events/mc-f2', '/events/mc-f3'],
    channels: { native: 'mc-native', es: 'mc-es', lp: 'mc-lp' },
    reason: 'max_connections',
    makeRoom: async (b, fillers) => { for (const f of fillers) f.close(); },
  }));

  test('max_channels: refused with retry:, in by itself once channels are swept', { timeout: 60000 }, () => scenario({
    name: 'max_channels',
    args: ['--max_channels', '3'],
    fill: ['/events/kc-f1', '/events/kc-f2', '/events/kc-f3'],
    channels: { native: 'kc-native', es: 'kc-es', lp: 'kc-lp' },
    reason: 'max_channels',
    makeRoom: async (b, fillers) => {
      for (const f of fillers) f.close();
      for (const ch of ['kc-f1', 'kc-f2', 'kc-f3']) {
        await waitFor(async () => (await http(b.publishPort, `/stats/${ch}`)).status === 404, REFUSED_WAIT, `channel ${ch} to be swept`);
      }
    },
  }));

  test('max_subscribers_per_channel: refused with retry:, in by itself once subscribers leave', { timeout: 60000 }, () => scenario({
    name: 'max_subscribers_per_channel',
    args: ['--max_subscribers_per_channel', '3'],
    fill: ['/events/full', '/events/full', '/events/full'],
    channels: { native: 'full', es: 'full', lp: 'full' },
    reason: 'max_subscribers_per_channel',
    makeRoom: async (b, fillers) => { for (const f of fillers) f.close(); },
  }));
});
