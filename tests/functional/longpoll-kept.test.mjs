// Kept long-poll connections (broker/repoll.c): a long-poll client that asks again on
// the same connection has its next polls read by the broker itself when they are the
// first request but for the last event id, and anything else goes back to
// libmicrohttpd unread and is answered as any request. One raw socket per client, so
// that every answer is known to come on the same connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import {
  startBroker, startRedis, startRedisBroker, killAll, publishOk, waitSubscribers, waitFor,
  http, parseMetrics, metricValue, stopAll, waitRedisCount, waitHealth, WAIT,
} from './lib.mjs';

const SECRET = 'kept-long-poll-secret-0123456789abcdef';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** An HTTP/1.1 client on one socket that reads whole responses (chunked or sized) in order. */
class Kept {
  constructor(port) {
    this.buf = Buffer.alloc(0);
    this.responses = [];
    this.closed = false;
    this.sock = net.connect(port, '127.0.0.1');
    this.ready = new Promise((res, rej) => { this.sock.once('connect', res); this.sock.once('error', rej); });
    this.sock.on('data', (d) => { this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    this.sock.on('close', () => { this.closed = true; });
    this.sock.on('error', () => {});
  }

  parse() {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = this.buf.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head[0])?.[1]);
      const headers = {};
      for (const l of head.slice(1)) {
        const i = l.indexOf(':');
        headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      let pos = end + 4;
      let body = Buffer.alloc(0);
      if (headers['transfer-encoding'] === 'chunked') {
        for (;;) {
          const le = this.buf.indexOf('\r\n', pos);
          if (le < 0) return;
          const n = parseInt(this.buf.subarray(pos, le).toString('latin1'), 16);
          if (this.buf.length < le + 2 + n + 2) return;
          body = Buffer.concat([body, this.buf.subarray(le + 2, le + 2 + n)]);
          pos = le + 2 + n + 2;
          if (n === 0) break;
        }
      } else {
        const n = Number(headers['content-length'] || 0);
        if (this.buf.length < pos + n) return;
        body = this.buf.subarray(pos, pos + n);
        pos += n;
      }
      this.buf = this.buf.subarray(pos);
      const text = body.toString('utf8');
      const events = [];
      for (const block of text.split('\n\n')) {
        const id = /^id: (.*)$/m.exec(block)?.[1];
        const data = [...block.matchAll(/^data: (.*)$/gm)].map((m) => m[1]).join('\n');
        if (id !== undefined) events.push({ id, data, event: /^event: (.*)$/m.exec(block)?.[1] });
      }
      this.responses.push({ status, headers, body: text, events });
    }
  }

  /** Sends one long-poll request for channel, with Last-Event-ID when lastId is given. */
  poll(channel, lastId, extra = '', accept = 'text/event-stream') {
    this.sock.write(`GET /events/${channel}?closeafter=event&ping=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `${accept ? `Accept: ${accept}\r\n` : ''}X-Long-Poll: Yes\r\n${extra}` +
      `${lastId ? `Last-Event-ID: ${lastId}\r\n` : ''}\r\n`);
  }

  /** The nth response (0-based), once it is whole. */
  response(n, ms = WAIT) {
    return waitFor(() => this.responses[n] || null, ms, `response ${n} on the kept connection`,
      () => `got ${this.responses.length}, closed ${this.closed}, unparsed ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`, 5);
  }

  close() { this.sock.destroy(); }
}

async function metric(b, name) {
  const r = await http(b.publishPort, '/metrics');
  assert.equal(r.status, 200);
  return metricValue(parseMetrics(r.body), name);
}

let b;
before(async () => { b = await startBroker([]); });
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

test('a chain of polls on one connection: the broker reads the next ones itself, every event once and in order', async () => {
  const ch = 'kept-chain';
  const reads = await metric(b, 'ssepush_longpoll_reads_total');
  const back = await metric(b, 'ssepush_longpoll_handed_back_total');
  const c = new Kept(b.port);
  await c.ready;
  const want = [];
  let last = null;
  let between = false;
  try {
    for (let i = 0; i < 20; i++) {
      c.poll(ch, last);
      if (!between) {
        await waitSubscribers(b, ch, 1);
        const p = await publishOk(b, ch, `e${i}`);
        assert.equal(p.subscribers, 1);
        want.push([p.id, `e${i}`]);
      }
      const r = await c.response(i);
      assert.equal(r.status, 200, `poll ${i}: ${r.body}`);
      assert.equal(r.headers['content-type'], 'text/event-stream; charset=utf-8');
      assert.equal(r.headers['transfer-encoding'], 'chunked');
      assert.equal(r.events.length, 1, `poll ${i}: ${r.body}`);
      last = r.events[0].id;
      // Every third round an event comes between two polls: the answered poll counts no
      // more, and the next poll gets the event from the channel's history at once.
      between = i % 3 === 0;
      if (between) {
        await waitSubscribers(b, ch, 0);
        const q = await publishOk(b, ch, `between${i}`);
        assert.equal(q.subscribers, 0);
        want.push([q.id, `between${i}`]);
      }
    }
    const got = c.responses.flatMap((x) => x.events.map((e) => [e.id, e.data]));
    assert.deepEqual(got, want.slice(0, 20));
    assert.ok(!c.closed, 'the connection stayed open');
    assert.equal(await metric(b, 'ssepush_longpoll_reads_total') - reads, 19, 'polls 2 to 20 read by the broker');
    assert.equal(await metric(b, 'ssepush_longpoll_handed_back_total') - back, 0);
  } finally { c.close(); }
});

test('a next request that is not the same poll goes back to libmicrohttpd and is answered as any, on the same connection', async () => {
  const ch = 'kept-other';
  const back = await metric(b, 'ssepush_longpoll_handed_back_total');
  const reads = await metric(b, 'ssepush_longpoll_reads_total');
  const c = new Kept(b.port);
  await c.ready;
  try {
    c.poll(ch);
    await waitSubscribers(b, ch, 1);
    const p1 = await publishOk(b, ch, 'one');
    assert.deepEqual((await c.response(0)).events.map((e) => e.data), ['one']);
    // Another header: the broker cannot vouch for it, libmicrohttpd reads it.
    c.poll(ch, p1.id, 'X-Trace: 1\r\n');
    await waitSubscribers(b, ch, 1);
    const p2 = await publishOk(b, ch, 'two');
    const r2 = await c.response(1);
    assert.equal(r2.status, 200);
    assert.deepEqual(r2.events.map((e) => [e.id, e.data]), [[p2.id, 'two']]);
    assert.equal(await metric(b, 'ssepush_longpoll_handed_back_total') - back, 1);
    // Another resource on the same connection.
    c.sock.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const r3 = await c.response(2);
    assert.equal(r3.status, 200);
    assert.deepEqual(JSON.parse(r3.body), { status: 'ok' });
    // A bad request: libmicrohttpd's answer, and the next client is not affected.
    const d = new Kept(b.port);
    await d.ready;
    d.poll(ch, p2.id);
    await waitSubscribers(b, ch, 1);
    const e = new Kept(b.port);
    await e.ready;
    e.poll(ch, p2.id);
    await waitSubscribers(b, ch, 2);
    const p3 = await publishOk(b, ch, 'three');
    assert.equal(p3.subscribers, 2);
    await d.response(0);
    await e.response(0);
    d.sock.write('GET /events/kept-other?closeafter=event HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n');
    const bad = await d.response(1);
    assert.equal(bad.status, 400, `status ${bad.status}: ${bad.body}`);
    e.poll(ch, p3.id);
    await waitSubscribers(b, ch, 1);
    const p4 = await publishOk(b, ch, 'four');
    assert.deepEqual((await e.response(1)).events.map((x) => [x.id, x.data]), [[p4.id, 'four']]);
    assert.ok(await metric(b, 'ssepush_longpoll_reads_total') - reads >= 1, 'e\'s second poll was read by the broker');
    d.close();
    e.close();
  } finally { c.close(); }
});

test('a poll sent before the previous answer (pipelined) is read once that answer is out', async () => {
  const ch = 'kept-pipelined';
  const c = new Kept(b.port);
  await c.ready;
  try {
    c.poll(ch);
    await waitSubscribers(b, ch, 1);
    const p1 = await publishOk(b, ch, 'first');
    await c.response(0);
    c.poll(ch, p1.id);
    await waitSubscribers(b, ch, 1);
    // The third poll comes while the second waits for its event.
    c.poll(ch, p1.id);
    await waitFor(async () => (await metric(b, 'ssepush_longpoll_reads_total')) > 0, WAIT, 'the second poll read');
    const p2 = await publishOk(b, ch, 'second');
    assert.equal(p2.subscribers, 1);
    const r1 = await c.response(1);
    assert.deepEqual(r1.events.map((e) => [e.id, e.data]), [[p2.id, 'second']]);
    // The third asked from p1: it gets p2 again from the history, as asked.
    const r2 = await c.response(2);
    assert.deepEqual(r2.events.map((e) => [e.id, e.data]), [[p2.id, 'second']]);
    assert.ok(!c.closed);
  } finally { c.close(); }
});

test('a client hanging up between two polls leaves nothing behind', async () => {
  const ch = 'kept-hangup';
  const c = new Kept(b.port);
  await c.ready;
  c.poll(ch);
  await waitSubscribers(b, ch, 1);
  await publishOk(b, ch, 'x');
  await c.response(0);
  await waitSubscribers(b, ch, 0);
  let open = await metric(b, 'ssepush_connections');
  c.close();
  await waitFor(async () => (await metric(b, 'ssepush_connections')) <= open - 1, WAIT, 'the connection gone');
  // And one hanging up while its poll waits.
  const d = new Kept(b.port);
  await d.ready;
  d.poll(ch);
  await waitSubscribers(b, ch, 1);
  await publishOk(b, ch, 'y');
  await d.response(0);
  d.poll(ch);
  await waitSubscribers(b, ch, 1);
  open = await metric(b, 'ssepush_connections');
  d.close();
  await waitSubscribers(b, ch, 0);
  await waitFor(async () => (await metric(b, 'ssepush_connections')) <= open - 1, WAIT, 'the connection gone');
});

test('a kept connection idle past header_timeout is closed; SIGTERM ends one idle and one waiting', async () => {
  const k = await startBroker(['--header_timeout', '1']);
  try {
    const timeouts = await metric(k, 'ssepush_header_timeouts_total');
    const c = new Kept(k.port);
    await c.ready;
    c.poll('kept-idle');
    await waitSubscribers(k, 'kept-idle', 1);
    await publishOk(k, 'kept-idle', 'x');
    await c.response(0);
    await waitFor(() => c.closed, 5000, 'the idle kept connection closed by the broker');
    assert.equal(await metric(k, 'ssepush_header_timeouts_total') - timeouts, 1);
    const idle = new Kept(k.port);
    const waiting = new Kept(k.port);
    await idle.ready;
    await waiting.ready;
    idle.poll('kept-idle');
    await waitSubscribers(k, 'kept-idle', 1);
    await publishOk(k, 'kept-idle', 'y');
    await idle.response(0);
    waiting.poll('kept-idle');
    await waitSubscribers(k, 'kept-idle', 1);
    await k.stop();
    await waitFor(() => idle.closed && waiting.closed, WAIT, 'both connections closed at SIGTERM');
    const w = waiting.responses[0];
    assert.ok(w && w.status === 200 && w.events.length === 0, 'the waiting poll got its end before the close');
  } finally { if (!k.exitInfo()) await k.stop(); }
});

test('token auth: each poll the broker reads checks the token again; an expired one gets 401 from libmicrohttpd', async () => {
  const t = await startBroker(['--auth', 'token', '--token_secret', SECRET]);
  try {
    // A token that the broker's 30 s leeway on exp still takes for a second or two.
    const exp = Math.floor(Date.now() / 1000) - 28;
    const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'kept-token', exp })}`;
    const tok = `${input}.${crypto.createHmac('sha256', SECRET).update(input).digest('base64url')}`;
    const c = new Kept(t.port);
    await c.ready;
    const auth = `Authorization: Bearer ${tok}\r\n`;
    c.poll('kept-token', null, auth);
    await waitSubscribers(t, 'kept-token', 1);
    const p1 = await publishOk(t, 'kept-token', 'a');
    assert.equal((await c.response(0)).status, 200);
    const reads = await metric(t, 'ssepush_longpoll_reads_total');
    c.poll('kept-token', p1.id, auth);
    await waitSubscribers(t, 'kept-token', 1);
    const p2 = await publishOk(t, 'kept-token', 'b');
    assert.deepEqual((await c.response(1)).events.map((e) => e.data), ['b']);
    assert.equal(await metric(t, 'ssepush_longpoll_reads_total') - reads, 1);
    await waitFor(() => Date.now() / 1000 > exp + 31, 5000, 'the token past its leeway');
    c.poll('kept-token', p2.id, auth);
    const r = await c.response(2);
    assert.equal(r.status, 401, `status ${r.status}: ${r.body}`);
    assert.match(JSON.parse(r.body).error, /expired/);
    c.close();
  } finally { await t.stop(); }
});

test('Redis mode: every poll the broker reads is joined through Redis, and counted', async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r);
  const B = await startRedisBroker(r);
  try {
    const c = new Kept(A.port);
    await c.ready;
    let last = null;
    for (let i = 0; i < 5; i++) {
      c.poll('kept-redis', last);
      await waitRedisCount(r, 'kept-redis', 1);
      const p = await publishOk(B, 'kept-redis', `r${i}`);
      assert.equal(p.subscribers, 1, 'the poll is counted in Redis before its 200');
      const res = await c.response(i);
      assert.deepEqual(res.events.map((e) => [e.id, e.data]), [[p.id, `r${i}`]]);
      last = p.id;
    }
    assert.ok(await metric(A, 'ssepush_longpoll_reads_total') >= 4);
    c.close();
  } finally { await stopAll([A, B], r); }
});

test('Redis mode, Redis down: a poll the broker read is refused as libmicrohttpd would (retry stream or 503), and the connection stays', async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r, ['--redis_timeout', '1000']);
  try {
    const es = new Kept(A.port);
    const plain = new Kept(A.port);
    await es.ready;
    await plain.ready;
    es.poll('kept-down');
    plain.poll('kept-down', null, '', null);
    await waitRedisCount(r, 'kept-down', 2);
    const p = await publishOk(A, 'kept-down', 'before');
    assert.equal(p.subscribers, 2);
    await es.response(0);
    await plain.response(0);
    const reads = await metric(A, 'ssepush_longpoll_reads_total');
    await r.stop();
    await waitHealth(A, 503, 10000);
    es.poll('kept-down', p.id);
    plain.poll('kept-down', p.id, '', null);
    const a = await es.response(1, 10000);
    assert.equal(a.status, 200, `EventSource refusal: ${a.status} ${a.body}`);
    assert.match(a.headers['retry-after'] || '', /^\d+$/);
    assert.match(a.body, /^retry: \d+\n: ssepush: refused for now \(.*redis.*\)/);
    const b2 = await plain.response(1, 10000);
    assert.equal(b2.status, 503, `plain refusal: ${b2.status} ${b2.body}`);
    assert.match(b2.headers['content-type'] || '', /^application\/json/);
    assert.match(b2.headers['retry-after'] || '', /^\d+$/);
    assert.match(JSON.parse(b2.body).error, /redis/);
    assert.equal(await metric(A, 'ssepush_longpoll_reads_total') - reads, 2, 'both read by the broker');
    assert.ok(!es.closed && !plain.closed, 'the connections stay for the next poll');
    es.close();
    plain.close();
  } finally { await stopAll([A], r); }
});
