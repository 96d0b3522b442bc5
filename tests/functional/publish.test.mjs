// Publish: the JSON answer and its subscriber count, the session / exclude_session /
// origin filters, event types, and the batch form.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, subscribeReady, publish, publishOk, http, assertJsonError, seqOf,
} from './lib.mjs';

let b;
before(async () => { b = await startBroker(['--max_batch', '3']); });
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

test('publish answers application/json {channel, id, subscribers}', async () => {
  const r = await publish(b, 'pub0', '{"x":1}');
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'] || '', /^application\/json/);
  assert.deepEqual(Object.keys(r.json).sort(), ['channel', 'id', 'subscribers']);
  assert.equal(r.json.channel, 'pub0');
  assert.equal(r.json.subscribers, 0);
  assert.match(r.json.id, /^[0-9a-f]{12}-\d+$/);
  const r2 = await publishOk(b, 'pub0', 'again');
  assert.ok(seqOf(r2.id) > seqOf(r.json.id), `second id ${r2.id} not after ${r.json.id}`);
  assert.equal(r2.id.split('-')[0], r.json.id.split('-')[0], 'boot part of the id changed within one process');
});

test('subscriber count in the answer: 0, 1, 2, and back', async () => {
  assert.equal((await publishOk(b, 'cnt', 'a')).subscribers, 0);
  const s1 = await subscribeReady(b, 'cnt');
  assert.equal((await publishOk(b, 'cnt', 'b')).subscribers, 1);
  const s2 = await subscribeReady(b, 'cnt', '', 2);
  assert.equal((await publishOk(b, 'cnt', 'c')).subscribers, 2);
  assert.deepEqual((await s1.waitEvents(2)).map((e) => e.data), ['b', 'c']);
  assert.deepEqual((await s2.waitEvents(1)).map((e) => e.data), ['c']);
  s1.close();
  s2.close();
});

test('session filter delivers only to that session; exclude_session skips it', async () => {
  const a = await subscribeReady(b, 'sess', '?session=s1');
  const c = await subscribeReady(b, 'sess', '?session=s2', 2);
  try {
    const p1 = await publishOk(b, 'sess', 'only-s1', { query: { session: 's1' } });
    assert.equal(p1.subscribers, 1);
    const p2 = await publishOk(b, 'sess', 'not-s1', { query: { exclude_session: 's1' } });
    assert.equal(p2.subscribers, 1);
    const p3 = await publishOk(b, 'sess', 'all');
    assert.equal(p3.subscribers, 2);
    const ea = await a.waitEvents(2);
    const ec = await c.waitEvents(2);
    assert.deepEqual(ea.map((e) => e.data), ['only-s1', 'all']);
    assert.deepEqual(ec.map((e) => e.data), ['not-s1', 'all']);
    const p4 = await publishOk(b, 'sess', 'nobody', { query: { session: 's9' } });
    assert.equal(p4.subscribers, 0);
  } finally { a.close(); c.close(); }
});

test('origin filter: ?origin=a,b does not get origin=b, does get origin=c and no origin', async () => {
  const s = await subscribeReady(b, 'orig', '?origin=a,b');
  try {
    const pb = await publishOk(b, 'orig', 'from-b', { query: { origin: 'b' } });
    assert.equal(pb.subscribers, 0);
    const pa = await publishOk(b, 'orig', 'from-a', { query: { origin: 'a' } });
    assert.equal(pa.subscribers, 0);
    const pc = await publishOk(b, 'orig', 'from-c', { query: { origin: 'c' } });
    assert.equal(pc.subscribers, 1);
    const pn = await publishOk(b, 'orig', 'no-origin');
    assert.equal(pn.subscribers, 1);
    const ev = await s.waitEvents(2);
    assert.deepEqual(ev.map((e) => e.data), ['from-c', 'no-origin']);
    assert.deepEqual(ev.map((e) => e.id), [pc.id, pn.id]);
  } finally { s.close(); }
});

test('event type from the query and from X-Event; 64-char type is accepted', async () => {
  const s = await subscribeReady(b, 'types');
  try {
    const t64 = 'T'.repeat(64);
    await publishOk(b, 'types', '1', { query: { event: t64 } });
    await publishOk(b, 'types', '2', { headers: { 'X-Event': 'state.change-2_x' } });
    await publishOk(b, 'types', '3', { query: { event: 'message' } });
    const ev = await s.waitEvents(3);
    assert.deepEqual(ev.map((e) => e.event), [t64, 'state.change-2_x', undefined]);
    assert.ok(!/event: message\n/.test(s.raw()), 'type "message" must be sent without an event: line');
  } finally { s.close(); }
});

test('batch publish: every item published, results in order', async () => {
  const x = await subscribeReady(b, 'bx');
  const y = await subscribeReady(b, 'by');
  try {
    const body = JSON.stringify([
      { channel: 'bx', data: 'plain string' },
      { channel: 'by', event: 'change', data: { n: 1, list: [1, 2] } },
      { channel: 'bnone', data: 'nobody' },
    ]);
    const r = await http(b.publishPort, '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['content-type'] || '', /^application\/json/);
    assert.ok(Array.isArray(r.json.results), r.body);
    assert.deepEqual(r.json.results.map((x2) => [x2.channel, x2.subscribers]), [['bx', 1], ['by', 1], ['bnone', 0]]);
    for (const it of r.json.results) assert.match(it.id, /^[0-9a-f]{12}-\d+$/);
    const [ex] = await x.waitEvents(1);
    const [ey] = await y.waitEvents(1);
    assert.deepEqual([ex.id, ex.event, ex.data], [r.json.results[0].id, undefined, 'plain string']);
    assert.deepEqual([ey.id, ey.event, ey.data], [r.json.results[1].id, 'change', '{"n":1,"list":[1,2]}']);
  } finally { x.close(); y.close(); }
});

test('batch items honour session and origin', async () => {
  const s = await subscribeReady(b, 'bsess', '?session=k1&origin=o1');
  try {
    const body = JSON.stringify([
      { channel: 'bsess', data: 'wrong session', session: 'k2' },
      { channel: 'bsess', data: 'own origin', origin: 'o1' },
      { channel: 'bsess', data: 'right session', session: 'k1' },
    ]);
    const r = await http(b.publishPort, '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(r.json.results.map((x) => x.subscribers), [0, 0, 1]);
    const ev = await s.waitEvents(1);
    assert.equal(ev[0].data, 'right session');
  } finally { s.close(); }
});

test('batch with one bad item: 400 naming it and nothing published', async () => {
  const s = await subscribeReady(b, 'bgood');
  try {
    for (const bad of [
      [{ channel: 'bgood', data: 'first' }, { channel: 'bad channel!', data: 'x' }],
      [{ channel: 'bgood', data: 'first' }, { channel: 'bgood', event: 'bad type', data: 'x' }],
      [{ channel: 'bgood', data: 'first' }, { data: 'no channel' }],
    ]) {
      const r = await http(b.publishPort, '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(bad) });
      assertJsonError(r, 400, `batch ${JSON.stringify(bad)}`);
      assert.match(r.json.error, /1/, `error does not name index 1: ${r.json.error}`);
    }
    for (const notArray of ['{"channel":"bgood","data":"x"}', '[{"channel":"bgood"', 'nonsense']) {
      const r = await http(b.publishPort, '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: notArray });
      assertJsonError(r, 400, `batch body ${notArray}`);
    }
    // Nothing of the rejected batches reached the channel: the first event the
    // subscriber sees is this marker.
    const m = await publishOk(b, 'bgood', 'marker');
    assert.equal(m.subscribers, 1);
    const [e] = await s.waitEvents(1);
    assert.equal(e.data, 'marker', 'an item of a rejected batch was published');
  } finally { s.close(); }
});

test('batch over max_batch is refused and nothing is published', async () => {
  const s = await subscribeReady(b, 'bmax');
  try {
    const items = [1, 2, 3, 4].map((i) => ({ channel: 'bmax', data: `i${i}` }));
    const r = await http(b.publishPort, '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(items) });
    assert.ok(r.status >= 400 && r.status < 500, `status ${r.status} for 4 items with max_batch 3`);
    assert.ok(r.json && typeof r.json.error === 'string', r.body);
    const ok = await http(b.publishPort, '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(items.slice(0, 3)) });
    assert.equal(ok.status, 200, ok.body);
    const ev = await s.waitEvents(3);
    assert.deepEqual(ev.map((e) => e.data), ['i1', 'i2', 'i3']);
  } finally { s.close(); }
});
