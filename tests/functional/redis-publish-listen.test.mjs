// publish_listen in Redis mode: its daemon has no thread of its own and the Redis
// thread runs it (bus->serve), so a publish is read, sent to Redis, answered and
// written back on one thread. What that thread must still do as a loop would:
// publishes from many keep-alive connections at once, each answered with its own id
// and delivered once, in order; refusals while Redis is down; streams, HTTP/1.0
// streams (resumed from other threads too: the watcher's pings) and long-polls on that
// port; libmicrohttpd's own idle timeout (request_timeout), which only its timer runs;
// and SIGTERM with publishes waiting on a frozen Redis: each gets its 503.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import nodeHttp from 'node:http';
import net from 'node:net';
import {
  killAll, startRedis, redisServer, startRedisBroker, subscribeReady, openStream, publish, publishOk, waitRedisCount,
  waitHealth, waitFor, http, assertJsonError, stopAll, compareStreamIds,
} from './lib.mjs';

after(killAll);

const PUB = ['--publish_listen', '127.0.0.1:0'];

/** POSTs on a keep-alive agent; resolves {status, json, body, socket}. */
function agentPost(agent, port, path, body) {
  return new Promise((resolve, reject) => {
    const req = nodeHttp.request({ host: '127.0.0.1', port, path, method: 'POST', agent,
      headers: { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, body: text, json, socket: req.socket });
      });
    });
    req.setTimeout(10000, () => req.destroy(new Error(`POST ${path}: no answer within 10 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

test('publish_listen in Redis mode: 400 publishes from 8 keep-alive connections on two brokers are each answered with their own id and reach subscribers on both brokers once, in order', { timeout: 60000 }, async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r, PUB);
  const B = await startRedisBroker(r, PUB);
  const agents = [];
  const streams = [];
  try {
    assert.notEqual(A.publishPort, A.port, 'the publish port is its own');
    for (const b of [A, B]) streams.push(await subscribeReady(b, 'pl'));
    await waitRedisCount(r, 'pl', 2);
    const N = 400;
    const sockets = new Set();
    for (const b of [A, B]) agents.push(new nodeHttp.Agent({ keepAlive: true, maxSockets: 4 }));
    // Each publisher sends its own run in order (one at a time on its agent), all four
    // runs of a broker at once: the Redis thread serves them interleaved.
    const runs = [];
    for (let k = 0; k < 8; k++) {
      const b = k < 4 ? A : B;
      const agent = agents[k < 4 ? 0 : 1];
      runs.push((async () => {
        const got = [];
        for (let i = 0; i < N / 8; i++) {
          const p = await agentPost(agent, b.publishPort, '/publish/pl', `${k}:${i}`);
          assert.equal(p.status, 200, `publish ${k}:${i}: ${p.status} ${p.body}`);
          assert.equal(p.json.subscribers, 2, `publish ${k}:${i}: ${p.body}`);
          sockets.add(p.socket);
          got.push(p.json.id);
        }
        return got;
      })());
    }
    const ids = (await Promise.all(runs)).flat();
    assert.equal(new Set(ids).size, N, 'every publish has an id of its own');
    assert.ok(sockets.size <= 8, `the agents kept their connections (${sockets.size} sockets for ${N} publishes)`);
    for (const s of streams) {
      const evs = await s.waitEvents(N, 15000);
      assert.equal(evs.length, N, s.describe());
      assert.deepEqual(new Set(evs.map((e) => e.id)), new Set(ids), 'the events are the publishes');
      for (let i = 1; i < evs.length; i++)
        assert.equal(compareStreamIds(evs[i - 1].id, evs[i].id), -1, `out of order at ${i}: ${evs[i - 1].id}, ${evs[i].id}`);
      // Each publisher's own run arrives in the order it was sent.
      for (let k = 0; k < 8; k++) {
        const mine = evs.filter((e) => e.data.startsWith(`${k}:`)).map((e) => Number(e.data.split(':')[1]));
        assert.deepEqual(mine, [...Array(N / 8).keys()], `publisher ${k}'s run`);
      }
    }
    // A batch on the same port, and the operations it serves.
    const batch = await http(A.publishPort, '/publish', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify([{ channel: 'pl', data: 'b1' }, { channel: 'pl', data: 'b2' }]) });
    assert.equal(batch.status, 200, batch.body);
    assert.equal(batch.json.results.length, 2, batch.body);
    for (const s of streams) await s.waitFor((x) => x.events().some((e) => e.data === 'b2'), 5000, 'the batch');
    assert.equal((await http(A.publishPort, '/healthz')).status, 200);
  } finally {
    for (const a of agents) a.destroy();
    await stopAll([A, B], r, streams);
  }
});

test('publish_listen in Redis mode: with Redis gone a publish gets 503 + Retry-After and a JSON reason there, and works again once Redis is back', { timeout: 60000 }, async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r, PUB);
  const streams = [];
  try {
    const s = await subscribeReady(A, 'down');
    streams.push(s);
    await publishOk(A, 'down', 'before');
    await r.stop();
    await waitHealth(A, 503, 10000);
    const p = await publish(A, 'down', 'while down');
    assertJsonError(p, 503, 'publish with Redis gone');
    assert.match(p.headers['retry-after'] || '', /^\d+$/, `Retry-After: ${p.headers['retry-after']}`);
    await r.start();
    await waitHealth(A, 200, 20000);
    await waitRedisCount(r, 'down', 1, 20000);
    const e = await publishOk(A, 'down', 'after');
    await s.waitFor((x) => x.events().some((f) => f.id === e.id), 10000, 'the event after the restart');
    assert.ok(!s.events().some((f) => f.data === 'while down'), 'a refused publish was delivered');
  } finally { await stopAll([A], r, streams); }
});

test('publish_listen in Redis mode: a stream, an HTTP/1.0 stream with pings and long-polls on that port get their events', { timeout: 60000 }, async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r, [...PUB, '--ping_min', '1']);
  const streams = [];
  let raw = null;
  try {
    const s = await openStream(A.publishPort, '/events/ports');
    streams.push(s);
    assert.equal(s.status, 200, s.describe());
    // HTTP/1.0: libmicrohttpd's own stream (not taken over), resumed on every event by
    // the Redis thread and on every ping by the watcher.
    const text = [];
    raw = net.connect({ host: '127.0.0.1', port: A.publishPort },
      () => raw.write('GET /events/ports10?ping=1 HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n'));
    raw.on('data', (d) => text.push(d.toString('latin1')));
    raw.on('error', () => {});
    const all = () => text.join('');
    await waitFor(() => all().includes(': ssepush\n\n'), 5000, 'the HTTP/1.0 preamble', () => JSON.stringify(all()));
    await waitFor(() => (all().match(/event: ping\n/g) || []).length >= 2, 10000, 'two pings on the HTTP/1.0 stream', () => JSON.stringify(all()));
    await waitRedisCount(r, 'ports', 1);
    await waitRedisCount(r, 'ports10', 1);
    const e1 = await publishOk(A, 'ports', 'to the stream');
    const e2 = await publishOk(A, 'ports10', 'to the 1.0 stream');
    await s.waitFor((x) => x.events().some((f) => f.id === e1.id), 5000, 'the event');
    await waitFor(() => all().includes(`id: ${e2.id}\ndata: to the 1.0 stream\n\n`), 5000, 'the HTTP/1.0 event', () => JSON.stringify(all()));
    // Long-polls, one after another on one connection: each answered with the next event.
    const agent = new nodeHttp.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      let last = e1.id;
      for (let i = 0; i < 5; i++) {
        const poll = new Promise((resolve, reject) => {
          const req = nodeHttp.get({ host: '127.0.0.1', port: A.publishPort, path: '/events/ports', agent,
            headers: { 'X-Long-Poll': 'Yes', 'Last-Event-ID': last, Accept: 'text/event-stream' } }, (res) => {
            let b = '';
            res.setEncoding('utf8');
            res.on('data', (d) => { b += d; });
            res.on('end', () => resolve({ status: res.statusCode, body: b }));
          });
          req.setTimeout(10000, () => req.destroy(new Error('long-poll: no answer within 10 s')));
          req.on('error', reject);
        });
        await waitRedisCount(r, 'ports', 2);	// the stream and this poll
        const e = await publishOk(A, 'ports', `poll ${i}`);
        const got = await poll;
        assert.equal(got.status, 200, got.body);
        assert.ok(got.body.includes(`id: ${e.id}\n`) && got.body.includes(`data: poll ${i}\n`), `poll ${i}: ${got.body}`);
        last = e.id;
      }
    } finally { agent.destroy(); }
  } finally {
    if (raw) raw.destroy();
    await stopAll([A], r, streams);
  }
});

test('publish_listen in Redis mode: an idle keep-alive connection is closed after request_timeout (libmicrohttpd\'s timeout, run by the Redis thread\'s timer)', { timeout: 30000 }, async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r, [...PUB, '--request_timeout', '1', '--header_timeout', '0']);
  try {
    let closed = false;
    let answer = '';
    const c = net.connect({ host: '127.0.0.1', port: A.publishPort },
      () => c.write('POST /publish/idle HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx'));
    c.on('data', (d) => { answer += d.toString('latin1'); });
    c.on('close', () => { closed = true; });
    c.on('error', () => {});
    await waitFor(() => /\r\n\r\n\{[^}]*\}$/.test(answer), 5000, 'the publish answer', () => JSON.stringify(answer));
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.doesNotMatch(answer, /Connection: close/i, 'the connection was to stay open');
    // Nothing else happens on the broker now: only the timer can run the timeout.
    await waitFor(() => closed, 10000, 'the idle connection to be closed');
  } finally { await stopAll([A], r); }
});

test('publish_listen in Redis mode: SIGTERM while publishes wait on a frozen Redis answers each with 503, and the broker exits 0', { timeout: 60000 }, async () => {
  const r = await redisServer();
  await r.start();
  const A = await startRedisBroker(r, [...PUB, '--redis_timeout', '20000']);
  let frozen = false;
  try {
    await publishOk(A, 'frozen', 'warm');
    process.kill(r.pid, 'SIGSTOP');
    frozen = true;
    const pending = [];
    for (let i = 0; i < 5; i++) pending.push(publish(A, 'frozen', `p${i}`, { timeout: 15000 }));
    // Every one is read and sent, and waits for Redis (not yet answered).
    await waitFor(async () => {
      const m = await http(A.publishPort, '/metrics');
      const line = /^ssepush_connections (\d+)/m.exec(m.body);
      return line && Number(line[1]) >= 6;
    }, 5000, 'the five publishes to be waiting');
    A.signal('SIGTERM');
    const answers = await Promise.all(pending);
    for (const p of answers) {
      assertJsonError(p, 503, 'a publish waiting at SIGTERM');
    }
    const ex = await A.exited(15000);
    assert.ok(ex, `no exit after SIGTERM; stderr:\n${A.stderr()}`);
    assert.equal(ex.code, 0, `exit ${ex.code}; stderr:\n${A.stderr()}`);
  } finally {
    if (frozen) process.kill(r.pid, 'SIGCONT');
    await stopAll([A], r);
  }
});
