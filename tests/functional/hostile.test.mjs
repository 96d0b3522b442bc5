// Hostile clients: request-smuggling shapes (two Content-Length headers, a
// length that is not plain digits, Content-Length with Transfer-Encoding, two
// Transfer-Encoding headers) are refused with a JSON 400 and the connection closes,
// nothing published; the broker's own event types (ping, reset, state) cannot be
// published; a NUL in a single publish's data is refused as the batch form refuses it;
// an oversized batch item is 413 like an oversized single publish; slowloris clients from
// several processes and addresses cannot fill the broker (max_pending_per_address,
// header_timeout) while others are served; subscribers that never read are ended after
// request_timeout; a request head near connection_memory gets a full answer or does not
// run.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startBroker, killAll, http, publish, publishOk, assertJsonError, subscribeReady, waitFor,
  parseMetrics, spawnProcess, openStream, waitSubscribers,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

after(killAll);

/** Sends raw bytes on a fresh connection; resolves {status, headers, body, json}. */
const raw = (b, bytes) => http(b.publishPort, '/', { raw: Buffer.from(bytes, 'latin1') });

test('request-smuggling shapes get a JSON 400 and close; nothing is published', async () => {
  const b = await startBroker();
  try {
    const s = await subscribeReady(b, 'smuggle');
    const shapes = [
      ['two Content-Length', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', /more than one Content-Length/],
      ['Content-Length with Transfer-Encoding', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n', /together with Transfer-Encoding/],
      ['two Transfer-Encoding', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n1\r\na\r\n0\r\n\r\n', /more than one Transfer-Encoding/],
      ['Content-Length with leading zeros past 18 digits', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 0000000000000000001\r\n\r\na', /not a plain decimal/],
      ['a GET with two Content-Length', 'GET /events/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n', /more than one Content-Length/],
    ];
    for (const [what, bytes, why] of shapes) {
      const r = await raw(b, bytes);
      assertJsonError(r, 400, what);
      assert.match(r.json.error, why, `${what}: ${r.body}`);
      assert.equal((r.headers.connection || '').toLowerCase(), 'close', `${what}: the connection stays open after an ambiguous request`);
    }
    // Shapes libmicrohttpd 0.9.75 refuses itself, before the broker sees the request:
    // the status is right and nothing is executed, but the body is its own HTML and, for
    // a bad or overflowing length, the status line and headers come twice (its bug; see
    // the README's "Hostile clients"). Asserted here so that a change shows.
    for (const [what, bytes, status] of [
      ['Content-Length with a plus sign', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na', 400],
      ['Content-Length -1', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nab', 400],
      ['Content-Length overflowing', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nab', 413],
      ['a bad chunk size', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\na\r\n0\r\n\r\n', 400],
    ]) {
      const r = await raw(b, bytes);
      assert.equal(r.status, status, `${what}: status ${r.status}, body ${r.body}`);
      assert.equal((r.headers.connection || '').toLowerCase(), 'close', `${what}: the connection stays open`);
    }
    const st = await http(b.publishPort, '/stats/smuggle');
    assert.equal(st.json.published, 0, `a smuggling shape was published: ${st.body}`);
    assert.equal(s.events().length, 0, s.describe());
    s.close();
  } finally { await b.stop(); }
});

test('a NUL byte in the request line is a 400, never a request for the name cut at it', async () => {
  const b = await startBroker();
  try {
    for (const [what, bytes] of [
      ['subscribe', 'GET /events/ab\0cd HTTP/1.1\r\nHost: x\r\n\r\n'],
      ['publish', 'POST /publish/ab\0cd HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz'],
      ['query', 'GET /events/ab?session=s\0x HTTP/1.1\r\nHost: x\r\n\r\n'],
    ]) {
      const r = await raw(b, bytes);
      assertJsonError(r, 400, `${what} with a NUL in the request line`);
      assert.match(r.json.error, /NUL/, r.body);
    }
    const st = await http(b.publishPort, '/stats/ab');
    assert.equal(st.status, 404, `the cut name was used: ${st.body}`);
    assert.equal((await http(b.publishPort, '/healthz')).status, 200, 'plain requests still pass');
  } finally { await b.stop(); }
});

test('the broker\'s own event types cannot be published (single and batch)', async () => {
  const b = await startBroker();
  try {
    for (const t of ['ping', 'reset', 'state']) {
      const r = await publish(b, 'own', 'x', { query: { event: t } });
      assertJsonError(r, 400, `event=${t}`);
      assert.match(r.json.error, /reserved event type/, r.body);
      const h = await publish(b, 'own', 'x', { headers: { 'X-Event': t } });
      assertJsonError(h, 400, `X-Event: ${t}`);
      const batch = await http(b.publishPort, '/publish', { method: 'POST', body: JSON.stringify([{ channel: 'own', event: t, data: 'x' }]) });
      assertJsonError(batch, 400, `batch event ${t}`);
      assert.match(batch.json.error, /item 0: reserved event type/, batch.body);
    }
    // Look-alikes are fine.
    assert.equal((await publish(b, 'own', 'x', { query: { event: 'pings' } })).status, 200);
    assert.equal((await publish(b, 'own', 'x', { query: { event: 'Reset' } })).status, 200);
  } finally { await b.stop(); }
});

test('a NUL in a single publish\'s data is refused, as the batch form refuses \\u0000', async () => {
  const b = await startBroker();
  try {
    const single = await publish(b, 'nul', Buffer.from('a\0b', 'latin1'));
    assertJsonError(single, 400, 'single publish with a NUL');
    assert.match(single.json.error, /NUL/, single.body);
    const batch = await http(b.publishPort, '/publish', { method: 'POST', body: '[{"channel":"nul","data":"a\\u0000b"}]' });
    assertJsonError(batch, 400, 'batch with \\u0000');
    const st = await http(b.publishPort, '/stats/nul');
    assert.equal(st.status, 404, `something was published: ${st.body}`);
  } finally { await b.stop(); }
});

test('a batch whose JSON error quotes half a UTF-8 sequence gets a JSON 400, not a 500 (found by fuzz_batch)', async () => {
  const b = await startBroker();
  try {
    const r = await http(b.publishPort, '/publish', { method: 'POST', body: Buffer.from('["\\\u00e9"]', 'utf8') });
    assertJsonError(r, 400, 'invalid escape before a two-byte character');
    assert.match(r.json.error, /invalid JSON: invalid escape/, r.body);
  } finally { await b.stop(); }
});

test('an oversized batch item is 413, as an oversized single publish', async () => {
  const b = await startBroker(['--max_message_size', '1k']);
  try {
    const single = await publish(b, 'big', 'x'.repeat(1025));
    assertJsonError(single, 413, 'single');
    const batch = await http(b.publishPort, '/publish', { method: 'POST', body: JSON.stringify([{ channel: 'big', data: 'y' }, { channel: 'big', data: 'x'.repeat(1025) }]) });
    assertJsonError(batch, 413, 'batch item 1 over max_message_size');
    assert.match(batch.json.error, /item 1: message too large/, batch.body);
    const st = await http(b.publishPort, '/stats/big');
    assert.equal(st.status, 404, `part of a refused batch was published: ${st.body}`);
  } finally { await b.stop(); }
});

/** VmRSS of a process in KB. */
function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** A metric's value on a broker (0 when absent). */
async function metric(b, name) {
  const m = await http(b.publishPort, '/metrics');
  const s = parseMetrics(m.body).find((x) => x.name === name && x.labels === '');
  return s ? s.value : 0;
}

/** Runs slow-client.mjs; resolves its JSON summary. */
function slowClient(port, addr, count, interval, duration) {
  return new Promise((resolve, reject) => {
    const p = spawnProcess(process.execPath, [path.join(here, 'slow-client.mjs'), String(port), addr, String(count), String(interval), String(duration)]);
    p.exited(duration + 15000).then((x) => {
      if (!x || x.code !== 0) return reject(new Error(`slow client ${addr}: ${JSON.stringify(x)} ${p.stderr()}`));
      try { resolve(JSON.parse(p.stdout().trim().split('\n').pop())); } catch (e) { reject(new Error(`slow client ${addr}: ${p.stdout()} ${e.message}`)); }
    });
  });
}

test('slowloris from three addresses cannot fill the broker: pending connections are capped per address and closed after header_timeout; others are served throughout', { timeout: 60000 }, async () => {
  const b = await startBroker(['--header_timeout', '3', '--max_pending_per_address', '20']);
  try {
    const base = rssKb(b.pid);
    const attack = Promise.all(['127.0.0.2', '127.0.0.3', '127.0.0.4'].map((a) => slowClient(b.port, a, 1000, 1000, 8000)));
    // While the attack runs (its connections opened within the first second).
    await waitFor(async () => await metric(b, 'ssepush_pending_refused_total') > 0, 5000, 'connections beyond max_pending_per_address to be refused');
    const health = await http(b.publishPort, '/healthz');
    assert.equal(health.status, 200, `/healthz during the attack: ${health.status} ${health.body}`);
    const s = await subscribeReady(b, 'victim');
    const p = await publishOk(b, 'victim', 'still served');
    await s.waitFor((x) => x.events().some((e) => e.id === p.id), undefined, 'the event during the attack');
    const held = await metric(b, 'ssepush_connections');
    assert.ok(held <= 3 * 20 + 5, `the broker holds ${held} connections during the attack (3 addresses x 20 pending allowed)`);
    const peakRss = rssKb(b.pid);
    const results = await attack;
    for (const r of results) {
      assert.equal(r.stillOpen, 0, `slowloris connections still open after 8 s with header_timeout 3: ${JSON.stringify(r)}`);
      assert.ok(r.refusedEarly > 900, `most connections beyond the limit were not refused at once: ${JSON.stringify(r)}`);
    }
    const timeouts = await metric(b, 'ssepush_header_timeouts_total');
    assert.ok(timeouts >= 60, `header_timeouts_total ${timeouts}: the 60 pending connections were not closed by the deadline`);
    await waitFor(async () => await metric(b, 'ssepush_connections') <= 2, 5000, 'the attack connections to be gone');
    const after = rssKb(b.pid);
    assert.ok(after - base < 20000, `RSS grew from ${base} kB to ${after} kB (peak ${peakRss} kB) after the attack`);
    console.log(`# slowloris: 3 x 1000 connections; held at most ${held}; refused at accept ${await metric(b, 'ssepush_pending_refused_total')}; closed by header_timeout ${timeouts}; RSS ${base} -> ${peakRss} -> ${after} kB`);
    s.close();
  } finally { await b.stop(); }
});

test('subscribers that never read are ended after request_timeout, and counted', { timeout: 60000 }, async () => {
  const b = await startBroker(['--request_timeout', '2', '--max_message_size', '256k']);
  const readers = [];
  try {
    // Five streams whose client stops reading at once: the receive window fills up.
    for (let i = 0; i < 5; i++) {
      const s = await openStream(b.port, `/events/stuck${i}`);
      assert.equal(s.status, 200, s.describe());
      s.socket.pause();
      readers.push(s);
    }
    for (let i = 0; i < 5; i++) await waitSubscribers(b, `stuck${i}`, 1);
    const big = 'x'.repeat(200 * 1024);
    // Publish until a direct write to each is left half sent (the kernel buffers are full).
    for (let round = 0; round < 200; round++) {
      for (let i = 0; i < 5; i++) await publishOk(b, `stuck${i}`, big);
      const st = await Promise.all([0, 1, 2, 3, 4].map((i) => http(b.publishPort, `/stats/stuck${i}`)));
      if (round > 30 && st.every((x) => x.json && x.json.subscribers === 0)) break;
      if (await metric(b, 'ssepush_slow_readers_total') >= 5) break;
    }
    await waitFor(async () => await metric(b, 'ssepush_slow_readers_total') >= 5, 15000, 'the five stuck streams to be ended');
    for (let i = 0; i < 5; i++) await waitSubscribers(b, `stuck${i}`, 0, 5000);
    // A reading subscriber is unaffected.
    const ok = await subscribeReady(b, 'reader');
    const p = await publishOk(b, 'reader', big);
    await ok.waitFor((x) => x.events().some((e) => e.id === p.id), 10000, 'the big event for the reading subscriber');
    ok.close();
  } finally { for (const s of readers) s.close(); await b.stop(); }
});

test('a request head near connection_memory gets a full answer or is not executed, never run and then cut', { timeout: 60000 }, async () => {
  const b = await startBroker();
  try {
    let answered = 0;
    let refused = 0;
    for (const cookie of [false, true]) {
      for (let size = 1200; size < 4300; size += 13) {
        const ch = `edge${cookie ? 'c' : 'h'}${size}`;
        let hdrs = '';
        if (cookie) hdrs = `Cookie: c=${'a'.repeat(size - 80)}\r\n`;
        else {
          while (hdrs.length + 120 < size) hdrs += `X-Pad-${hdrs.length}: ${'b'.repeat(90)}\r\n`;
          hdrs += `X-Last: ${'c'.repeat(Math.max(1, size - hdrs.length - 60))}\r\n`;
        }
        const bytes = `POST /publish/${ch} HTTP/1.1\r\nHost: x\r\n${hdrs}Content-Length: 1\r\n\r\nz`;
        let r = null;
        try { r = await raw(b, bytes); } catch { r = null; }	// closed without an answer
        const st = await http(b.publishPort, `/stats/${ch}`);
        const published = st.status === 200 ? st.json.published : 0;
        if (r && r.status === 200) {
          answered++;
          assert.equal(published, 1, `${bytes.length}-byte head answered 200 but published ${published}`);
        } else {
          refused++;
          assert.equal(published, 0, `${bytes.length}-byte head (cookie ${cookie}) was published without a 200: ${r ? `${r.status} ${r.body}` : 'no answer'}`);
          if (r) assert.equal(r.status, 431, `${bytes.length}-byte head: ${r.status}`);
        }
      }
    }
    assert.ok(answered > 50 && refused > 50, `answered ${answered}, refused ${refused}: the scan missed the edge`);
  } finally { await b.stop(); }
});

/** Sends raw bytes; resolves {status} from the first status line, or null if closed without one. */
function statusLine(port, bytes) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let got = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no status line and no close within 5 s: ${JSON.stringify(got)}`)); }, 5000);
    const done = (v) => { clearTimeout(timer); sock.destroy(); resolve(v); };
    sock.on('connect', () => sock.write(Buffer.from(bytes, 'latin1')));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(got);
      if (m) done({ status: Number(m[1]) });
    });
    sock.on('error', () => {});
    sock.on('close', () => done(null));
  });
}

test('every subscribe head too large for connection_memory is counted and logged, also those libmicrohttpd closes without an answer', { timeout: 60000 }, async () => {
  const b = await startBroker();
  try {
    const seen = { 200: 0, 431: 0, closed: 0 };
    let largest = 0;
    for (let size = 1000; size < 4400; size += 11) {
      const bytes = `GET /events/edge${size} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nCookie: c=${'a'.repeat(size - 90)}\r\n\r\n`;
      const r = await statusLine(b.port, bytes);
      if (r === null) seen.closed++;
      else {
        assert.ok(r.status === 200 || r.status === 431, `${bytes.length}-byte head: status ${r.status}`);
        seen[r.status]++;
        if (r.status === 200 && bytes.length > largest) largest = bytes.length;
      }
    }
    const samples = parseMetrics((await http(b.publishPort, '/metrics')).body);
    const count = (answer) => samples.find((x) => x.name === 'ssepush_heads_too_large_total' && x.labels === `{answer="${answer}"}`).value;
    assert.ok(seen[200] > 0 && seen[431] > 0, `the scan missed the edge: ${JSON.stringify(seen)}`);
    assert.ok(count('json_431') + count('mhd_431') >= seen[431], `431 answers ${seen[431]}, counted ${count('json_431')} + ${count('mhd_431')}`);
    assert.ok(count('closed') >= seen.closed, `closed without an answer ${seen.closed}, counted ${count('closed')}`);
    await b.waitLog(/request head too large for connection_memory \(4096 bytes\)/, 5000);
    console.log(`# default connection_memory 4k: largest subscribe head accepted ${largest} bytes; ${JSON.stringify(seen)}; counted json_431 ${count('json_431')}, mhd_431 ${count('mhd_431')}, closed ${count('closed')}`);
  } finally { await b.stop(); }
});
