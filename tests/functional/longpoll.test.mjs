// Long-poll, via the X-Long-Poll: Yes header and via ?closeafter=event: pending events
// are all sent and the response ends; with nothing pending the request is held until one
// publish (sent, then end), or until the ping interval passes (a ping, then end).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, openStream, publishOk, waitSubscribers,
} from './lib.mjs';

let b;
before(async () => { b = await startBroker(['--ping_min', '1']); });
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

const modes = [
  ['X-Long-Poll: Yes', (ch, q = '') => ({ path: `/events/${ch}${q ? `?${q}` : ''}`, headers: { 'X-Long-Poll': 'Yes' } })],
  ['closeafter=event', (ch, q = '') => ({ path: `/events/${ch}?closeafter=event${q ? `&${q}` : ''}`, headers: {} })],
];

for (const [name, req] of modes) {
  const tag = name.startsWith('X') ? 'hdr' : 'qry';

  test(`${name}: pending events are all sent, then the response ends`, async () => {
    const ch = `lp-pending-${tag}`;
    const p1 = await publishOk(b, ch, 'e1');
    const p2 = await publishOk(b, ch, 'e2', { query: { event: 'change' } });
    const p3 = await publishOk(b, ch, 'line a\nline b');
    const r = req(ch);
    const s = await openStream(b.port, r.path, { headers: { ...r.headers, 'Last-Event-ID': p1.id } });
    assert.equal(s.status, 200);
    assert.equal(s.headers['content-type'], 'text/event-stream; charset=utf-8');
    const end = await s.waitEnd();
    assert.ok(end.clean, `long-poll response did not end cleanly: ${s.describe()}`);
    assert.deepEqual(s.events().map((e) => [e.id, e.event, e.data]), [
      [p2.id, 'change', 'e2'],
      [p3.id, undefined, 'line a\nline b'],
    ]);
    assert.equal(s.pings().length, 0);
  });

  test(`${name}: nothing pending -> held until one publish, which ends it`, async () => {
    const ch = `lp-held-${tag}`;
    const r = req(ch);
    const s = await openStream(b.port, r.path, { headers: r.headers });
    try {
      await waitSubscribers(b, ch, 1);
      assert.ok(!s.ended && !s.closed, `long-poll ended before any event: ${s.describe()}`);
      const p = await publishOk(b, ch, 'wake up', { query: { event: 'change' } });
      assert.equal(p.subscribers, 1);
      const end = await s.waitEnd();
      assert.ok(end.clean, `response did not end cleanly: ${s.describe()}`);
      assert.deepEqual(s.events().map((e) => [e.id, e.event, e.data]), [[p.id, 'change', 'wake up']]);
      await waitSubscribers(b, ch, 0);
    } finally { s.close(); }
  });

  test(`${name}: a chain of polls with the last id misses nothing`, async () => {
    const ch = `lp-chain-${tag}`;
    const p0 = await publishOk(b, ch, 'start');
    let last = p0.id;
    const got = [];
    const sent = [];
    for (let i = 0; i < 4; i++) {
      // Two events published while no poll is open: the next poll gets both at once.
      sent.push((await publishOk(b, ch, `a${i}`)).id);
      sent.push((await publishOk(b, ch, `b${i}`)).id);
      const r = req(ch);
      const s = await openStream(b.port, r.path, { headers: { ...r.headers, 'Last-Event-ID': last } });
      await s.waitEnd();
      const ids = s.events().map((e) => e.id);
      assert.ok(ids.length >= 1, `poll ${i} returned no event: ${s.describe()}`);
      got.push(...ids);
      last = ids[ids.length - 1];
      // Drain whatever is left (if the broker sends one event per poll).
      for (let k = 0; k < 4 && last !== sent[sent.length - 1]; k++) {
        const r2 = req(ch);
        const s2 = await openStream(b.port, r2.path, { headers: { ...r2.headers, 'Last-Event-ID': last } });
        await s2.waitEnd();
        const more = s2.events().map((e) => e.id);
        assert.ok(more.length >= 1, `drain poll returned no event: ${s2.describe()}`);
        got.push(...more);
        last = more[more.length - 1];
      }
    }
    assert.deepEqual(got, sent);
  });

  test(`${name}: nothing arrives -> a ping after the interval, then the end`, async () => {
    const ch = `lp-ping-${tag}`;
    const r = req(ch, 'ping=1');
    const s = await openStream(b.port, r.path, { headers: r.headers });
    const end = await s.waitEnd(10000);
    assert.ok(end.clean, `response did not end cleanly: ${s.describe()}`);
    const pings = s.pings();
    assert.equal(pings.length, 1, s.describe());
    assert.equal(pings[0].id, undefined, 'a ping carries no id');
    assert.deepEqual(JSON.parse(pings[0].data), { interval: 1 });
    assert.equal(s.events().length, 0);
  });
}

test('closeafter=state behaves as long-poll', async () => {
  const ch = 'lp-state';
  const s = await openStream(b.port, `/events/${ch}?closeafter=state`);
  try {
    await waitSubscribers(b, ch, 1);
    const p = await publishOk(b, ch, 'state');
    const end = await s.waitEnd();
    assert.ok(end.clean, s.describe());
    assert.deepEqual(s.events().map((e) => e.id), [p.id]);
  } finally { s.close(); }
});

test('closeafter=no is a normal stream that stays open after events', async () => {
  const ch = 'lp-no';
  const s = await openStream(b.port, `/events/${ch}?closeafter=no`);
  try {
    await waitSubscribers(b, ch, 1);
    await publishOk(b, ch, 'one');
    await publishOk(b, ch, 'two');
    const ev = await s.waitEvents(2);
    assert.deepEqual(ev.map((e) => e.data), ['one', 'two']);
    assert.ok(!s.ended && !s.closed, 'stream ended after events');
    assert.equal((await waitSubscribers(b, ch, 1)).subscribers, 1);
  } finally { s.close(); }
});

test('long-poll with an unknown last id: the reset is sent and the response ends', async () => {
  const ch = 'lp-reset';
  const p = await publishOk(b, ch, 'x');
  const s = await openStream(b.port, `/events/${ch}?closeafter=event`, { headers: { 'Last-Event-ID': '000000000000-99999999' } });
  const end = await s.waitEnd();
  assert.ok(end.clean, s.describe());
  const ev = s.events();
  assert.equal(ev.length, 1, s.describe());
  assert.equal(ev[0].event, 'reset');
  assert.equal(ev[0].id, p.id);
  assert.equal(JSON.parse(ev[0].data).reason, 'unknown');
});

test('long-poll with last_event_id in the query (first request of a page)', async () => {
  const ch = 'lp-query-id';
  const p1 = await publishOk(b, ch, 'one');
  const p2 = await publishOk(b, ch, 'two');
  const s = await openStream(b.port, `/events/${ch}?closeafter=event&last_event_id=${encodeURIComponent(p1.id)}`);
  const end = await s.waitEnd();
  assert.ok(end.clean, s.describe());
  assert.deepEqual(s.events().map((e) => [e.id, e.data]), [[p2.id, 'two']]);
});
