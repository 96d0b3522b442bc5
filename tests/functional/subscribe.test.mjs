// Subscribe: stream headers, preamble, framing of payloads and event types, channel
// names (percent-encoding, length), live-only delivery without a last event id.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startBroker, killAll, subscribe, subscribeReady, publishOk, waitPreamble, waitSubscribers, openStream,
  getJson, waitFor,
} from './lib.mjs';

let b;
before(async () => { b = await startBroker(['--reconnect_ms', '2000']); });
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

test('stream response headers and preamble', async () => {
  const s = await subscribe(b, '/events/hdr');
  try {
    assert.equal(s.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.match(s.headers['cache-control'] || '', /(^|,\s*)no-cache(\s*,|$)/);
    assert.equal(s.headers['x-accel-buffering'], 'no');
    // The preamble is flushed at once, before any event exists.
    await waitPreamble(s);
    const m = /^retry: (\d+)\n: ssepush\n\n/.exec(s.raw());
    assert.ok(m, `stream does not start with "retry: N\\n: ssepush\\n\\n": ${JSON.stringify(s.raw())}`);
    const retry = Number(m[1]);
    // reconnect_ms 2000 plus 0-50% jitter.
    assert.ok(retry >= 2000 && retry <= 3000, `retry ${retry} not within [2000, 3000]`);
    assert.equal(s.events().length, 0);
  } finally { s.close(); }
});

test('retry jitter is drawn per stream (not one constant for everyone)', async () => {
  const seen = new Set();
  for (let i = 0; i < 12 && seen.size < 2; i++) {
    const s = await subscribe(b, '/events/jitter');
    await waitPreamble(s);
    seen.add(s.frames[0].retry);
    s.close();
  }
  assert.ok(seen.size >= 2, `12 streams all got the same retry value ${[...seen]}`);
});

test('default message type has no event line; typed events have one', async () => {
  const s = await subscribeReady(b, 'frm');
  try {
    const p1 = await publishOk(b, 'frm', '{"a":1}');
    const p2 = await publishOk(b, 'frm', 'x', { query: { event: 'change' } });
    const p3 = await publishOk(b, 'frm', 'y', { headers: { 'X-Event': 'mail.new_1-x' } });
    const ev = await s.waitEvents(3);
    assert.deepEqual(ev.map((f) => [f.id, f.event, f.data]), [
      [p1.id, undefined, '{"a":1}'],
      [p2.id, 'change', 'x'],
      [p3.id, 'mail.new_1-x', 'y'],
    ]);
    assert.ok(s.raw().includes(`\n\nid: ${p1.id}\ndata: {"a":1}\n\n`), `raw framing of a message event: ${JSON.stringify(s.raw())}`);
    assert.ok(s.raw().includes(`\n\nid: ${p2.id}\nevent: change\ndata: x\n\n`), `raw framing of a typed event: ${JSON.stringify(s.raw())}`);
  } finally { s.close(); }
});

test('a payload is split on CRLF, LF and lone CR into several data lines', async () => {
  const s = await subscribeReady(b, 'lines');
  try {
    const p = await publishOk(b, 'lines', 'one\r\ntwo\nthree\rfour');
    const [e] = await s.waitEvents(1);
    assert.equal(e.id, p.id);
    assert.deepEqual(e.dataLines, ['one', 'two', 'three', 'four']);
    assert.ok(s.raw().includes(`id: ${p.id}\ndata: one\ndata: two\ndata: three\ndata: four\n\n`),
      `raw framing: ${JSON.stringify(s.raw())}`);
    // No CR may survive in the stream body: it would end a line for the client.
    assert.ok(!s.raw().includes('\r'), 'a CR reached the stream');
  } finally { s.close(); }
});

test('UTF-8 payloads arrive intact', async () => {
  const s = await subscribeReady(b, 'utf8');
  try {
    const text = '{"subject":"Grüße ✓ 𝄞 日本"}';
    await publishOk(b, 'utf8', text);
    const [e] = await s.waitEvents(1);
    assert.equal(e.data, text);
  } finally { s.close(); }
});

test('percent-encoded channel alice%40example.com is the channel alice@example.com', async () => {
  const s = await subscribe(b, '/events/alice%40example.com');
  try {
    await waitSubscribers(b, 'alice%40example.com', 1);
    const p1 = await publishOk(b, 'alice%40example.com', 'encoded');
    assert.equal(p1.channel, 'alice@example.com');
    assert.equal(p1.subscribers, 1);
    const p2 = await publishOk(b, 'alice@example.com', 'literal');
    assert.equal(p2.channel, 'alice@example.com');
    assert.equal(p2.subscribers, 1);
    const ev = await s.waitEvents(2);
    assert.deepEqual(ev.map((f) => f.data), ['encoded', 'literal']);
  } finally { s.close(); }
});

test('all allowed channel characters and a 200-byte channel are accepted', async () => {
  const ch = 'Az09._~@+=-';
  const s1 = await subscribe(b, `/events/${encodeURIComponent(ch)}`);
  const long = 'c'.repeat(200);
  const s2 = await subscribe(b, `/events/${long}`);
  try {
    await waitSubscribers(b, long, 1);
    const p = await publishOk(b, long, 'long');
    assert.equal(p.subscribers, 1);
    const [e] = await s2.waitEvents(1);
    assert.equal(e.data, 'long');
    const p2 = await publishOk(b, encodeURIComponent(ch), 'chars');
    assert.equal(p2.channel, ch);
    const [e2] = await s1.waitEvents(1);
    assert.equal(e2.data, 'chars');
  } finally { s1.close(); s2.close(); }
});

test('without a last event id a subscriber gets live events only', async () => {
  await publishOk(b, 'live', 'before');
  const s = await subscribeReady(b, 'live');
  try {
    await waitPreamble(s);
    const p = await publishOk(b, 'live', 'after');
    const ev = await s.waitEvents(1);
    assert.equal(ev[0].data, 'after', 'an event from before the subscription was sent');
    assert.equal(ev[0].id, p.id);
  } finally { s.close(); }
});

test('events go to their own channel only, and to every subscriber of it', async () => {
  const a1 = await subscribeReady(b, 'chan-a');
  const a2 = await subscribeReady(b, 'chan-a', '', 2);
  const other = await subscribeReady(b, 'chan-b');
  try {
    const p = await publishOk(b, 'chan-a', 'for a');
    assert.equal(p.subscribers, 2);
    await a1.waitEvents(1);
    await a2.waitEvents(1);
    const q = await publishOk(b, 'chan-b', 'for b');
    assert.equal(q.subscribers, 1);
    const [e] = await other.waitEvents(1);
    assert.equal(e.data, 'for b', 'the other channel received an event of chan-a');
    assert.equal(a1.events().length, 1);
    assert.equal(a2.events().length, 1);
  } finally { a1.close(); a2.close(); other.close(); }
});

test('event ids look like <12 hex>-<seq> and their seq grows', async () => {
  const s = await openStream(b.port, '/events/seq');
  try {
    await waitSubscribers(b, 'seq', 1);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await publishOk(b, 'seq', `n${i}`)).id);
    const ev = await s.waitEvents(5);
    assert.deepEqual(ev.map((f) => f.id), ids);
    for (const id of ids) assert.match(id, /^[0-9a-f]{12}-\d+$/);
    const seqs = ids.map((id) => Number(id.split('-')[1]));
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1], `ids do not increase: ${ids}`);
  } finally { s.close(); }
});

test('a channel with more subscribers than the direct-write limit (256) gets every event, in order, on every stream', async () => {
  // Small channels are written straight to the socket by the publisher; a big fan-out is
  // split between the publisher and the fan-out helper threads (one run of the list
  // each). Both must deliver the same bytes, and the publish must count every run.
  const c = await startBroker(['--threads', '4']);
  const streams = [];
  try {
    for (let i = 0; i < 300; i++) streams.push(await subscribe(c, '/events/crowd'));
    await waitSubscribers(c, 'crowd', 300);
    const ids = [];
    for (const d of ['one', 'two\nlines', 'three']) {
      const p = await publishOk(c, 'crowd', d);
      assert.equal(p.subscribers, 300);
      ids.push(p.id);
    }
    for (const s of streams) {
      const got = await s.waitEvents(3);
      assert.deepEqual(got.map((e) => [e.id, e.data]), [[ids[0], 'one'], [ids[1], 'two\nlines'], [ids[2], 'three']]);
    }
  } finally {
    for (const s of streams) s.close();
    await c.stop();
  }
});

test('a subscriber that stops reading and comes back gets every event in order (a direct write that leaves a rest finishes once the socket drains)', { timeout: 60000 }, async () => {
  // 300 x 60 KB is far more than loopback socket buffers hold: the publishing thread's
  // direct writes leave a rest, the watcher must learn when the socket takes more, and
  // the events queued behind the rest must follow it without a gap or a reset.
  const c = await startBroker(['--history_size', '1000']);
  try {
    const s = await subscribeReady(c, 'drain');
    s.socket.pause();
    const pad = 'x'.repeat(60000);
    const ids = [];
    for (let i = 0; i < 300; i++) ids.push((await publishOk(c, 'drain', `${i}:${pad}`)).id);
    s.socket.resume();
    const got = await s.waitEvents(300, 30000);
    assert.equal(got.length, 300);
    assert.deepEqual(got.map((e) => e.id), ids);
    assert.deepEqual(got.map((e) => e.data.split(':')[0]), ids.map((_, i) => String(i)));
    assert.equal(s.frames.filter((f) => f.event === 'reset').length, 0);
    s.close();
  } finally {
    await c.stop();
  }
});

test('with several threads (daemons) one publish reaches subscribers on all of them', async () => {
  const c = await startBroker(['--threads', '4']);
  const streams = [];
  try {
    for (let i = 0; i < 24; i++) streams.push(await subscribe(c, '/events/spread'));
    await waitSubscribers(c, 'spread', 24);
    const p = await publishOk(c, 'spread', 'to all');
    assert.equal(p.subscribers, 24);
    for (const s of streams) {
      const [e] = await s.waitEvents(1);
      assert.deepEqual([e.id, e.data], [p.id, 'to all']);
    }
  } finally {
    for (const s of streams) s.close();
    await c.stop();
  }
});

// A raw socket sending bytes as given; collects every 'data' read separately.
function rawClient(port, request) {
  const c = { reads: [], closed: false };
  c.sock = net.connect({ host: '127.0.0.1', port }, () => c.sock.write(request));
  c.sock.on('data', (d) => c.reads.push(d.toString('latin1')));
  c.sock.on('close', () => { c.closed = true; });
  c.sock.on('error', () => {});
  c.text = () => c.reads.join('');
  return c;
}

test('an HTTP/1.1 stream\'s head and preamble come in one send: Date, chunked framing, then the preamble chunk', async () => {
  const c = rawClient(b.port, 'GET /events/onesend HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
  try {
    await waitFor(() => c.reads.length > 0, 5000, 'the head');
    // The broker writes the head and the first chunk with one sendmsg: one segment on loopback.
    const first = c.reads[0];
    const m = /^HTTP\/1\.1 200 OK\r\n([\s\S]*?)\r\n\r\n([0-9a-f]+)\r\nretry: \d+\n: ssepush\n\n\r\n$/.exec(first);
    assert.ok(m, `first read is not head + preamble chunk: ${JSON.stringify(first)}`);
    assert.match(m[1], /(^|\r\n)Date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT(\r\n|$)/);
    assert.match(m[1], /(^|\r\n)Transfer-Encoding: chunked(\r\n|$)/);
    assert.match(m[1], /(^|\r\n)Content-Type: text\/event-stream; charset=utf-8(\r\n|$)/);
    assert.equal(parseInt(m[2], 16), Buffer.byteLength(first.slice(first.indexOf('retry:'), -2), 'latin1'));
    await waitSubscribers(b, 'onesend', 1);
    const p = await publishOk(b, 'onesend', 'after the head');
    await waitFor(() => c.text().includes('data: after the head\n'), 5000, 'the event chunk');
    assert.ok(c.text().includes(`id: ${p.id}\n`));
  } finally { c.sock.destroy(); }
});

test('an HTTP/1.0 subscriber gets its stream unchunked, events included', async () => {
  const c = rawClient(b.port, 'GET /events/http10 HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n');
  try {
    await waitFor(() => c.text().includes(': ssepush\n\n'), 5000, 'the preamble');
    const head = c.text().slice(0, c.text().indexOf('\r\n\r\n'));
    assert.match(head, /^HTTP\/1\.[01] 200 OK/);
    assert.doesNotMatch(head, /Transfer-Encoding/i);
    assert.match(c.text(), /\r\n\r\nretry: \d+\n: ssepush\n\n$/);
    await waitSubscribers(b, 'http10', 1);
    await publishOk(b, 'http10', 'plain');
    await waitFor(() => c.text().endsWith('data: plain\n\n'), 5000, 'the unchunked event', () => JSON.stringify(c.text()));
  } finally { c.sock.destroy(); }
});

test('each open stream holds one connection in /stats, and gives it back when its client goes (streams are taken from libmicrohttpd at their 200)', async () => {
  const c = await startBroker();
  const streams = [];
  try {
    const base = (await getJson(c.port, '/stats')).connections;	// the /stats request itself
    for (let i = 0; i < 30; i++) streams.push(await subscribe(c, `/events/held${i % 3}`));
    for (let i = 0; i < 3; i++) await waitSubscribers(c, `held${i}`, 10);
    // The /stats polls above close their own connections as they go; the broker may
    // not have seen the last one go yet (one more, seen once in CI).
    let open = null;
    await waitFor(async () => (open = await getJson(c.port, '/stats')).connections === base + 30, 5000,
      'thirty stream connections and this request', () => JSON.stringify(open));
    assert.equal(open.connections, base + 30, JSON.stringify(open));
    assert.equal(open.subscribers, 30);
    for (const s of streams.splice(0, 20)) s.close();
    await waitFor(async () => (await getJson(c.port, '/stats')).connections === base + 10, 5000,
      'ten connections left', async () => JSON.stringify(await getJson(c.port, '/stats')));
    const rest = streams.filter((s) => s.path === '/events/held2');	// 4 of the 10 left
    const p = await publishOk(c, 'held2', 'to the rest');
    assert.equal(p.subscribers, rest.length);
    for (const s of rest) await s.waitEvents(1);
  } finally {
    for (const s of streams) s.close();
    await c.stop();
  }
});
