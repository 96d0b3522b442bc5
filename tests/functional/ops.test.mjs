// Operations: /healthz, /metrics (Prometheus text), /stats, /stats/<channel> (404 for
// unknown), the subscriber count dropping to 0 soon after a client closes its socket,
// and publish/operations on their own listener (publish_listen).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, http, getJson, subscribe, subscribeReady, publishOk, waitSubscribers,
  waitFor, parseMetrics, metricValue, assertJsonError, spawnProcess, openStream,
} from './lib.mjs';

let b;
before(async () => { b = await startBroker(); });
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

test('/healthz answers 200 {"status":"ok"}', async () => {
  const r = await http(b.port, '/healthz');
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  assert.equal(r.json.status, 'ok');
});

test('/metrics is Prometheus text and counts subscribers and publishes', async () => {
  const m0 = await http(b.port, '/metrics');
  assert.equal(m0.status, 200);
  assert.match(m0.headers['content-type'] || '', /^text\/plain/);
  const before0 = parseMetrics(m0.body);
  for (const s of before0) assert.match(s.name, /^ssepush_/, `metric ${s.name} lacks the ssepush_ prefix`);
  assert.match(m0.body, /^# TYPE ssepush_published_total counter$/m);
  const subs0 = metricValue(before0, 'ssepush_subscribers');
  const pub0 = metricValue(before0, 'ssepush_published_total');

  const s1 = await subscribeReady(b, 'met');
  const s2 = await subscribeReady(b, 'met2');
  try {
    for (let i = 0; i < 3; i++) await publishOk(b, 'met', `m${i}`);
    const after1 = parseMetrics((await http(b.port, '/metrics')).body);
    assert.equal(metricValue(after1, 'ssepush_subscribers'), subs0 + 2);
    assert.equal(metricValue(after1, 'ssepush_published_total'), pub0 + 3);
  } finally { s1.close(); s2.close(); }
  await waitFor(async () => metricValue(parseMetrics((await http(b.port, '/metrics')).body), 'ssepush_subscribers') === subs0,
    3000, 'ssepush_subscribers to drop back after the clients closed');
});

test('/stats and /stats/<channel> report subscribers and channels', async () => {
  const st0 = await getJson(b.port, '/stats');
  assert.equal(typeof st0.subscribers, 'number');
  assert.equal(typeof st0.channels, 'number');
  const s1 = await subscribeReady(b, 'st-a');
  const s2 = await subscribeReady(b, 'st-a', '', 2);
  const s3 = await subscribeReady(b, 'st-b');
  try {
    const st = await getJson(b.port, '/stats');
    assert.equal(st.subscribers, st0.subscribers + 3);
    assert.ok(st.channels >= st0.channels + 2, `channels ${st.channels} after opening two new ones (was ${st0.channels})`);
    assert.equal((await getJson(b.port, '/stats/st-a')).subscribers, 2);
    assert.equal((await getJson(b.port, '/stats/st-b')).subscribers, 1);
    const enc = await subscribe(b, '/events/st%40x.org');
    await waitSubscribers(b, 'st%40x.org', 1);
    assert.equal((await getJson(b.port, '/stats/st@x.org')).subscribers, 1);
    enc.close();
  } finally { s1.close(); s2.close(); s3.close(); }
});

test('/stats/<unknown channel> is 404 with a JSON error', async () => {
  assertJsonError(await http(b.port, '/stats/never-seen-channel'), 404, '/stats/never-seen-channel');
  assertJsonError(await http(b.port, '/stats/bad%20name'), 400, '/stats/bad%20name');
});

test('subscriber count drops to 0 soon after the client closes its socket', async () => {
  await publishOk(b, 'gone', 'keeps the channel in history');
  for (let round = 0; round < 3; round++) {
    const s = await subscribeReady(b, 'gone');
    assert.equal((await publishOk(b, 'gone', `r${round}`)).subscribers, 1);
    await s.waitEvents(1);
    s.close();
    await waitSubscribers(b, 'gone', 0, 3000);
    assert.equal((await publishOk(b, 'gone', 'after close')).subscribers, 0);
  }
});

test('subscriber count drops when curl is killed, and for an idle long-poll', async () => {
  await publishOk(b, 'gone-curl', 'x');
  const curl = spawnProcess('curl', ['-sS', '-N', '--max-time', '30', `${b.url}/events/gone-curl`]);
  const lp = await openStream(b.port, '/events/gone-curl?closeafter=event');
  try {
    await waitSubscribers(b, 'gone-curl', 2);
    curl.kill('SIGKILL');
    await waitSubscribers(b, 'gone-curl', 1, 3000);
    lp.close();
    await waitSubscribers(b, 'gone-curl', 0, 3000);
    assert.equal((await publishOk(b, 'gone-curl', 'nobody')).subscribers, 0);
  } finally { curl.kill('SIGKILL'); lp.close(); }
});

test('many clients closing at once all leave', async () => {
  const streams = [];
  for (let i = 0; i < 50; i++) streams.push(await subscribe(b, '/events/gone-many'));
  await waitSubscribers(b, 'gone-many', 50);
  for (const s of streams) s.close();
  await waitSubscribers(b, 'gone-many', 0, 3000);
});

test('publish_listen: publish and operations on their own listener', async () => {
  const c = await startBroker(['--publish_listen', '127.0.0.1:0']);
  try {
    assert.notEqual(c.publishPort, c.port);
    const s = await subscribe(c, '/events/split');
    await waitSubscribers(c, 'split', 1);
    const p = await publishOk(c, 'split', 'via the publish listener');
    assert.equal(p.subscribers, 1);
    const [e] = await s.waitEvents(1);
    assert.equal(e.data, 'via the publish listener');
    assert.equal((await http(c.publishPort, '/healthz')).status, 200);
    assert.equal((await http(c.publishPort, '/metrics')).status, 200);
    s.close();
  } finally { await c.stop(); }
});
