// Every error status with its JSON {"error"} body and headers: 400, 404, 405 (+Allow),
// 413 (decided from Content-Length, also for curl with Expect: 100-continue), 415,
// 429 (max_subscribers_per_channel), 503 + Retry-After (max_connections, max_channels) for
// clients that do not read event streams (curl, monitoring: Accept */*); an EventSource
// is told to retry instead (refusals.test.mjs).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  startBroker, killAll, http, publish, publishOk, assertJsonError, openStream, subscribe,
  subscribeReady, waitFor, runProcess, tempDir, waitSubscribers, waitPreamble, WAIT,
} from './lib.mjs';

let b;
before(async () => {
  b = await startBroker(['--max_message_size', '1k', '--max_subscribers_per_channel', '2', '--log_level', 'debug']);
});
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

const badChannels = [
  ['space', 'a%20b'],
  ['slash', 'a%2Fb'],
  ['bang', 'a!b'],
  ['percent-encoded NUL', 'a%00b'],
  ['non-ASCII', 'caf%C3%A9'],
  ['201 bytes', 'x'.repeat(201)],
  ['quote', 'a%22b'],
];

test('400 for a bad channel on subscribe', async () => {
  for (const [what, ch] of badChannels) {
    // Read it as a stream, so that a wrongly accepted channel fails at once with its status.
    const s = await openStream(b.port, `/events/${ch}`);
    if (s.status === 200) s.close(); else await s.waitEnd();
    assertJsonError({ status: s.status, headers: s.headers, body: s.raw(), json: s.json() }, 400, `GET /events/ ${what}`);
  }
});

test('400 for a bad channel on publish', async () => {
  for (const [what, ch] of badChannels) {
    const r = await publish(b, ch, 'x');
    assertJsonError(r, 400, `POST /publish/ ${what}`);
  }
});

test('400 for a bad event type (query and X-Event)', async () => {
  for (const ev of ['bad type', 'a/b', 'T'.repeat(65), 'caf\u00e9', 'a:b']) {
    const r = await publish(b, 'evbad', 'x', { query: { event: ev } });
    assertJsonError(r, 400, `event=${ev}`);
  }
  const r = await publish(b, 'evbad', 'x', { headers: { 'X-Event': 'has space' } });
  assertJsonError(r, 400, 'X-Event: has space');
});

test('400 for a bad query value on subscribe', async () => {
  for (const q of ['ping=abc', 'ping=-5', 'closeafter=sometimes']) {
    const r = await http(b.port, `/events/qv?${q}`);
    assertJsonError(r, 400, `GET /events/qv?${q}`);
  }
});

test('404 for unknown paths', async () => {
  for (const p of ['/', '/nope', '/eventsx/a', '/events', '/publishx/a']) {
    const r = await http(b.port, p);
    assertJsonError(r, 404, `GET ${p}`);
  }
});

test('405 with Allow for a wrong method', async () => {
  const cases = [
    ['POST', '/events/m', 'GET'],
    ['DELETE', '/events/m', 'GET'],
    ['GET', '/publish/m', 'POST'],
    ['PUT', '/publish/m', 'POST'],
    ['GET', '/publish', 'POST'],
    ['POST', '/healthz', 'GET'],
    ['POST', '/metrics', 'GET'],
    ['POST', '/stats', 'GET'],
  ];
  for (const [method, p, allowed] of cases) {
    const port = p.startsWith('/events') ? b.port : b.publishPort;
    const r = await http(port, p, { method, body: method === 'GET' || method === 'DELETE' ? null : 'x' });
    assertJsonError(r, 405, `${method} ${p}`);
    const allow = (r.headers.allow || '').split(/\s*,\s*/);
    assert.ok(allow.includes(allowed), `${method} ${p}: Allow "${r.headers.allow}" lacks ${allowed}`);
    assert.ok(!allow.includes(method), `${method} ${p}: Allow "${r.headers.allow}" lists the refused method`);
  }
});

test('413 for a body over max_message_size; exactly the limit is accepted', async () => {
  const ok = await publish(b, 'big', 'a'.repeat(1024));
  assert.equal(ok.status, 200, ok.body);
  const r = await publish(b, 'big', 'a'.repeat(1025));
  assertJsonError(r, 413, '1025-byte body with max_message_size 1k');
});

test('413 is decided from Content-Length before the body is sent', async () => {
  // Send only the head announcing 100000 bytes; the answer must come without the body.
  const head = 'POST /publish/big HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n';
  const r = await http(b.publishPort, '/publish/big', { raw: Buffer.from(head) });
  assertJsonError(r, 413, 'head-only request with Content-Length 100000');
});

test('413 for an oversized chunked body (no Content-Length)', async () => {
  const chunk = 'b'.repeat(700);
  const body = `${(700).toString(16)}\r\n${chunk}\r\n${(700).toString(16)}\r\n${chunk}\r\n0\r\n\r\n`;
  const raw = Buffer.from(`POST /publish/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n${body}`);
  const r = await http(b.publishPort, '/publish/big', { raw });
  assertJsonError(r, 413, 'chunked body of 1400 bytes');
});

test('413 with curl and Expect: 100-continue: the body is never sent', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'body');
  writeFileSync(file, 'c'.repeat(200000));
  const r = await runProcess('curl', ['-sS', '-v', '--max-time', '10', '--expect100-timeout', '5',
    '-H', 'Expect: 100-continue', '-H', 'Content-Type: text/plain',
    '--data-binary', `@${file}`, '-o', path.join(dir, 'out'), '-w', '%{http_code}',
    `http://127.0.0.1:${b.publishPort}/publish/big`], 20000);
  assert.equal(r.stdout, '413', `curl status ${r.stdout}; stderr ${r.stderr}`);
  assert.ok(!/HTTP\/1\.1 100 Continue/.test(r.stderr), `the broker sent 100 Continue for an oversized body:\n${r.stderr}`);
  assert.ok(!/upload completely sent|We are completely uploaded/.test(r.stderr), `curl uploaded the body:\n${r.stderr}`);
  const { readFileSync } = await import('node:fs');
  const body = JSON.parse(readFileSync(path.join(dir, 'out'), 'utf8'));
  assert.equal(typeof body.error, 'string');
});

test('curl with Expect: 100-continue and a small body publishes', async () => {
  const s = await subscribeReady(b, 'expect');
  try {
    const r = await runProcess('curl', ['-sS', '--max-time', '10', '-H', 'Expect: 100-continue',
      '--data-binary', 'hello via curl', `http://127.0.0.1:${b.publishPort}/publish/expect?event=curl`], 20000);
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.subscribers, 1);
    const [e] = await s.waitEvents(1);
    assert.deepEqual([e.event, e.data], ['curl', 'hello via curl']);
  } finally { s.close(); }
});

test('415 for a body that is not valid UTF-8', async () => {
  const bad = [
    ['lone 0xff', Buffer.from([0x7b, 0xff, 0x7d])],
    ['truncated sequence', Buffer.from([0x61, 0xe2, 0x82])],
    ['overlong slash', Buffer.from([0xc0, 0xaf])],
    ['UTF-16 surrogate', Buffer.from([0xed, 0xa0, 0x80])],
    ['above U+10FFFF', Buffer.from([0xf4, 0x90, 0x80, 0x80])],
  ];
  for (const [what, body] of bad) {
    const r = await publish(b, 'utf', body);
    assertJsonError(r, 415, what);
  }
  const ok = await publish(b, 'utf', Buffer.from('€ 𝄞', 'utf8'));
  assert.equal(ok.status, 200, ok.body);
});

/** What curl sends: not an EventSource, so refusals come as JSON errors. */
const CURL = { Accept: '*/*' };

test('429 beyond max_subscribers_per_channel; a place frees when one leaves', async () => {
  const s1 = await subscribeReady(b, 'full');
  const s2 = await subscribeReady(b, 'full', '', 2);
  const s3 = await openStream(b.port, '/events/full', { headers: CURL });
  try {
    await s3.waitEnd();
    assertJsonError({ status: s3.status, headers: s3.headers, body: s3.raw(), json: s3.json() }, 429, 'third subscriber');
    const other = await subscribe(b, '/events/not-full');
    other.close();
    s1.close();
    await waitSubscribers(b, 'full', 1);
    const s4 = await subscribe(b, '/events/full');
    s4.close();
  } finally { s1.close(); s2.close(); s3.close(); }
});

test('503 with Retry-After at max_connections; accepted again after a close', async () => {
  const c = await startBroker(['--max_connections', '2']);
  const open = [];
  try {
    open.push(await subscribe(c, '/events/c1'));
    open.push(await subscribe(c, '/events/c2'));
    for (const s of open) await waitPreamble(s);
    const s3 = await openStream(c.port, '/events/c3', { headers: CURL });
    await s3.waitEnd();
    const r = { status: s3.status, headers: s3.headers, body: s3.raw(), json: s3.json() };
    assertJsonError(r, 503, 'third stream with max_connections 2');
    assert.match(r.headers['retry-after'] || '', /^\d+$/, `Retry-After: ${r.headers['retry-after']}`);
    open[0].close();
    await waitFor(async () => {
      const s = await openStream(c.port, '/events/c4', { headers: CURL });
      const okNow = s.status === 200;
      s.close();
      return okNow;
    }, WAIT, 'a stream to be accepted after one closed');
  } finally {
    for (const s of open) s.close();
    await c.stop();
  }
});

test('503 with Retry-After at max_channels', async () => {
  const c = await startBroker(['--max_channels', '2']);
  const open = [];
  try {
    open.push(await subscribe(c, '/events/k1'));
    open.push(await subscribe(c, '/events/k2'));
    const s3 = await openStream(c.port, '/events/k3', { headers: CURL });
    await s3.waitEnd();
    const r = { status: s3.status, headers: s3.headers, body: s3.raw(), json: s3.json() };
    assertJsonError(r, 503, 'third channel with max_channels 2');
    assert.match(r.headers['retry-after'] || '', /^\d+$/, `Retry-After: ${r.headers['retry-after']}`);
    // An existing channel still takes subscribers.
    const again = await subscribe(c, '/events/k1');
    open.push(again);
  } finally {
    for (const s of open) s.close();
    await c.stop();
  }
});

test('untrusted bytes are escaped in the log', async () => {
  const from = b.stderr().length;
  const r = await http(b.port, '/events/%1B%5B31mevil%0Afake%20log%20line');
  assertJsonError(r, 400, 'channel with ESC and LF');
  await publish(b, 'log%1B', 'x');
  // Let any logging of those requests land, then check no raw control byte got through.
  await publishOk(b, 'logmarker', 'x');
  const text = b.stderr().slice(from);
  assert.ok(!text.includes('\x1b'), `raw ESC in the log: ${JSON.stringify(text)}`);
  assert.ok(!/\nfake log line/.test(text), `a client-controlled newline split a log line: ${JSON.stringify(text)}`);
});

test('a garbage request does not harm the broker', async () => {
  await new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port: b.port }, () => sock.end('\x00\x01GARBAGE /\r\n\r\n'));
    sock.on('data', () => {});
    sock.on('close', resolve);
    sock.on('error', resolve);
  });
  const r = await publishOk(b, 'alive', 'still here');
  assert.equal(r.channel, 'alive');
});
