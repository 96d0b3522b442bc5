// Redis behind Sentinel: a primary, replicas and three sentinels (Debian's
// redis-server and redis-sentinel on free ports, a short down-after-milliseconds so a
// failover takes seconds); brokers and the pusher on the sentinel:// URL, subscribers
// on every broker, a publisher at a steady rate; the primary SIGKILLed. With
// redis_min_replicas 1 every publish that got 200 reaches every subscriber once, in
// order; /healthz goes 503 and back to 200 by itself; a broker started during the
// outage comes up by itself. Without it the figures are reported (what a failover
// costs then). The pub/sub connection killed alone (CLIENT KILL TYPE pubsub), or gone
// silent behind a proxy (open, nothing passing), is found (the latter by the probe) and
// resubscribed with nothing lost. Only processes started here are signalled, by pid.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  killAll, startBroker, startRedis, startRedisBroker, startSentinelGroup, subscribeReady, publish,
  publishOk, redisCommand, waitHealth, waitFor, http, compareStreamIds, WAIT, stopAll, sleep, freePort,
} from './lib.mjs';
import { startPusher, mailDatagram, sendDatagrams } from './pusher-lib.mjs';

after(killAll);

const RECOVER = 30000;	// failover (down-after 1000 ms, election, promotion) plus reconnect backoff, generously

/** Publishes data-0, data-1, ... round-robin through brokers every `every` ms until stop(); records every answer. */
function publisher(brokers, ch, every = 20) {
  const pub = { accepted: [], refused: [], errors: [], stopped: false };
  pub.done = (async () => {
    for (let i = 0; !pub.stopped; i++) {
      const b = brokers[i % brokers.length];
      const data = `p${i}`;
      const start = Date.now();
      try {
        const r = await publish(b, ch, data, { timeout: WAIT });
        if (r.status === 200) pub.accepted.push({ id: r.json.id, data, at: start });
        else pub.refused.push({ status: r.status, retryAfter: r.headers['retry-after'], body: r.body, data, at: start });
      } catch (e) {
        pub.errors.push({ error: e.message, data, at: start });
      }
      await sleep(every);
    }
  })();
  pub.stop = async () => { pub.stopped = true; await pub.done; };
  return pub;
}

/** Polls /healthz of b every 25 ms until stop(); records the statuses seen, with times. */
function healthWatch(b) {
  const w = { seen: [], stopped: false };
  w.done = (async () => {
    while (!w.stopped) {
      try {
        const r = await http(b.publishPort, '/healthz');
        const last = w.seen[w.seen.length - 1];
        if (!last || last.status !== r.status) w.seen.push({ status: r.status, at: Date.now(), body: r.body });
      } catch { /* the broker is busy: try again */ }
      await sleep(25);
    }
  })();
  w.stop = async () => { w.stopped = true; await w.done; };
  return w;
}

/** What a subscriber got of the accepted events: missing, duplicated, out of order. */
function delivery(s, accepted) {
  const got = s.events().filter((e) => e.event !== 'reset').map((e) => e.id);
  const want = new Set(accepted.map((a) => a.id));
  const mine = got.filter((id) => want.has(id));
  const seen = new Set();
  const dup = mine.filter((id) => (seen.has(id) ? true : (seen.add(id), false)));
  const missing = accepted.filter((a) => !seen.has(a.id)).map((a) => a.id);
  let disorder = 0;
  for (let i = 1; i < got.length; i++) if (compareStreamIds(got[i - 1], got[i]) >= 0) disorder++;
  const resets = s.events().filter((e) => e.event === 'reset');
  return { got: got.length, missing, dup, disorder, resets: resets.length, resetData: resets.map((e) => `${e.id} ${e.data}`) };
}

/**
 * The failover scenario; returns the figures. minReplicas is passed to both brokers and
 * the pusher.
 */
async function failover(t, minReplicas) {
  const g = await startSentinelGroup({ replicas: 2 });
  const extra = ['--redis_min_replicas', String(minReplicas), '--redis_timeout', '1000'];
  const brokers = [];
  const streams = [];
  const watches = [];
  let pub = null;
  let pusher = null;
  const dir = mkdtempSync(path.join(tmpdir(), 'ssepush-sentinel-'));
  const sock = path.join(dir, 'notify.sock');
  try {
    const A = await startRedisBroker({ url: g.url }, extra);
    const B = await startRedisBroker({ url: g.url }, extra);
    brokers.push(A, B);
    pusher = await startPusher(['--notify_socket', sock, '--redis', g.url, '--coalesce_ms', '0',
      '--redis_min_replicas', String(minReplicas)]);
    await pusher.waitLog(/redis: connected/, 10000);
    const ch = 'failover';
    for (const b of brokers) {
      streams.push(await subscribeReady(b, ch));
      streams.push(await subscribeReady(b, 'alice'));
    }
    // The pusher's path works before the failover.
    await sendDatagrams(sock, [mailDatagram('alice', 'before')]);
    for (const s of streams.filter((_, i) => i % 2 === 1)) await s.waitEvents(1, 10000);

    watches.push(healthWatch(A), healthWatch(B));
    pub = publisher(brokers, ch);
    await waitFor(() => pub.accepted.length >= 30, 10000, '30 accepted publishes before the failover');
    const old = await g.primary();
    const tKill = Date.now();
    await old.kill();
    // A broker started during the outage (its first connects fail or find the dead primary).
    const C = await startBroker(['--redis', g.url, ...extra]);
    brokers.push(C);
    watches.push(healthWatch(C));
    for (const b of [A, B, C]) await waitHealth(b, 200, RECOVER);
    const tHealthy = Date.now();
    const now = await g.primary();
    assert.notEqual(now.port, old.port, 'the sentinels still name the killed primary');
    const sC = await subscribeReady(C, ch);
    streams.push(sC);
    const atHealthy = pub.accepted.length;
    await waitFor(() => pub.accepted.length >= atHealthy + 30, RECOVER, '30 accepted publishes after the failover',
      () => `refused: ${JSON.stringify(pub.refused.slice(-3))}`);
    await pub.stop();
    await sendDatagrams(sock, [mailDatagram('alice', 'after')]);
    for (const s of streams.filter((_, i) => i % 2 === 1 && i < 4)) {
      await s.waitFor((x) => x.events().filter((e) => e.event === 'change').length >= 2, RECOVER,
        'the pusher\'s change event after the failover');
    }
    for (const w of watches) await w.stop();

    const accepted = pub.accepted;
    const last = accepted[accepted.length - 1];
    const subs = [streams[0], streams[2]];
    for (const s of subs) {
      await s.waitFor((x) => x.events().some((e) => e.id === last.id), 10000, `the last accepted event ${last.id}`).catch(() => {});
    }
    const figures = {
      minReplicas,
      healthyMs: tHealthy - tKill,
      accepted: accepted.length,
      acceptedBeforeKill: accepted.filter((a) => a.at < tKill).length,
      refused: pub.refused.length,
      refusedStatuses: [...new Set(pub.refused.map((r) => r.status))],
      errors: pub.errors.length,
      subscribers: subs.map((s) => delivery(s, accepted)),
      health: watches.map((w) => w.seen.map((x) => x.status)),
      refusedWithoutRetryAfter: pub.refused.filter((r) => r.status !== 503 || !/^\d+$/.test(r.retryAfter || '')).length,
    };
    t.diagnostic(`redis_min_replicas ${minReplicas}: healthy ${figures.healthyMs} ms after the SIGKILL; `
      + `publishes accepted ${figures.accepted} (${figures.acceptedBeforeKill} before the kill), refused ${figures.refused} `
      + `(${figures.refusedStatuses.join(',')}), errors ${figures.errors}; per subscriber: `
      + figures.subscribers.map((d) => `got ${d.got}, missing ${d.missing.length}, duplicated ${d.dup.length}, out of order ${d.disorder}, resets ${d.resets}`).join('; ')
      + `; /healthz seen ${JSON.stringify(figures.health)}`);
    // Late subscriber on C gets what is published from now on.
    const late = await publishOk(A, ch, 'late');
    await sC.waitFor((x) => x.events().some((e) => e.id === late.id), 10000, 'an event on the broker started during the outage');
    figures.stderr = brokers.map((b) => b.stderr());
    if (process.env.SSEPUSH_TEST_DEBUG) t.diagnostic(JSON.stringify(figures.subscribers.map((d) => d.resetData)) + ' ' + JSON.stringify(subs[0].events().map((e) => [e.id, e.event, e.data])));
    if (process.env.SSEPUSH_TEST_DEBUG) for (const e of figures.stderr) t.diagnostic(e.split('\n').filter((l) => /redis|sentinel|reset|lost|warn|error/.test(l) && !/ debug /.test(l)).join('\n'));
    return figures;
  } finally {
    if (pub) await pub.stop();
    for (const w of watches) await w.stop();
    if (pusher) await pusher.stop();
    await stopAll(brokers, null, streams);
    await g.stop();
  }
}

test('Sentinel failover with redis_min_replicas 1: every publish that got 200 reaches every subscriber once, in order; /healthz 503 then 200 by itself; a broker started during the outage comes up', async (t) => {
  const f = await failover(t, 1);
  for (const [i, d] of f.subscribers.entries()) {
    assert.deepEqual(d.missing, [], `subscriber ${i}: accepted events missing`);
    assert.deepEqual(d.dup, [], `subscriber ${i}: accepted events delivered twice`);
    assert.equal(d.disorder, 0, `subscriber ${i}: events out of order`);
  }
  assert.equal(f.refusedWithoutRetryAfter, 0, 'a refused publish was not a 503 with Retry-After');
  for (const [i, seen] of f.health.entries()) {
    if (i < 2) assert.ok(seen.includes(503), `broker ${i}: /healthz never answered 503 during the failover: ${JSON.stringify(seen)}`);
    assert.equal(seen[seen.length - 1], 200, `broker ${i}: /healthz did not come back to 200: ${JSON.stringify(seen)}`);
  }
  assert.match(f.stderr[0], /sentinel: \+switch-master/, 'broker A did not see +switch-master');
});

test('Sentinel failover with redis_min_replicas 0: the brokers recover by themselves and deliver in order (figures of what may be lost)', async (t) => {
  const f = await failover(t, 0);
  for (const [i, d] of f.subscribers.entries()) {
    assert.deepEqual(d.dup, [], `subscriber ${i}: accepted events delivered twice`);
    assert.equal(d.disorder, 0, `subscriber ${i}: events out of order`);
  }
  for (const seen of f.health) assert.equal(seen[seen.length - 1], 200, `/healthz did not come back to 200: ${JSON.stringify(seen)}`);
});

test('the pub/sub connection killed alone (CLIENT KILL TYPE pubsub): found, resubscribed, nothing accepted lost or doubled', async () => {
  const r = await startRedis();
  const A = await startRedisBroker(r);
  const B = await startRedisBroker(r);
  const streams = [];
  let pub = null;
  try {
    const ch = 'killed-pubsub';
    for (const b of [A, B]) streams.push(await subscribeReady(b, ch));
    pub = publisher([A, B], ch);
    await waitFor(() => pub.accepted.length >= 20, 10000, '20 accepted publishes');
    const killed = await redisCommand(r.target, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
    assert.ok(killed >= 2, `CLIENT KILL TYPE pubsub killed ${killed} connections`);
    await A.waitLog(/redis: down: /, 10000);
    await B.waitLog(/redis: down: /, 10000);
    await waitFor(() => (A.stderr().match(/redis: connected as broker/g) || []).length >= 2 &&
      (B.stderr().match(/redis: connected as broker/g) || []).length >= 2, RECOVER, 'both brokers reconnected');
    const at = pub.accepted.length;
    await waitFor(() => pub.accepted.length >= at + 20, RECOVER, '20 accepted publishes after the reconnect');
    await pub.stop();
    const last = pub.accepted[pub.accepted.length - 1];
    for (const s of streams) {
      await s.waitFor((x) => x.events().some((e) => e.id === last.id), 10000, `the last accepted event ${last.id}`);
      const d = delivery(s, pub.accepted);
      assert.deepEqual(d.missing, [], 'accepted events missing');
      assert.deepEqual(d.dup, [], 'accepted events doubled');
      assert.equal(d.disorder, 0, 'events out of order');
      assert.equal(d.resets, 0, 'a reset though Redis lost nothing');
    }
  } finally {
    if (pub) await pub.stop();
    await stopAll([A, B], r, streams);
  }
});

/**
 * A TCP proxy in front of a Redis port that can silence the connections that sent a
 * SUBSCRIBE: their bytes are then dropped both ways and the sockets stay open, as a
 * pub/sub connection that died without a word (a NAT that forgot it, a half-dead peer).
 */
async function silencingProxy(targetPort) {
  const conns = [];
  const server = net.createServer((c) => {
    const up = net.connect({ host: '127.0.0.1', port: targetPort });
    const x = { c, up, silent: false, subscriber: false };
    conns.push(x);
    c.on('data', (d) => {
      if (/SUBSCRIBE/i.test(d.toString('latin1'))) x.subscriber = true;
      if (!x.silent) up.write(d);
    });
    up.on('data', (d) => { if (!x.silent) c.write(d); });
    c.on('error', () => {});
    up.on('error', () => {});
    c.on('close', () => up.destroy());
    up.on('close', () => c.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    /** Silences every open subscriber connection; returns how many. */
    silenceSubscribers: () => {
      const open = conns.filter((x) => x.subscriber && !x.c.destroyed);
      for (const x of open) x.silent = true;
      return open.length;
    },
    close: () => new Promise((resolve) => {
      for (const x of conns) { x.c.destroy(); x.up.destroy(); }
      server.close(resolve);
    }),
  };
}

test('a pub/sub connection that goes silent (open, nothing passes) is found by the probe and replaced; nothing accepted lost or doubled', async (t) => {
  const r = await startRedis({ tcp: true });
  const proxy = await silencingProxy(r.port);
  const A = await startRedisBroker({ url: `redis://127.0.0.1:${proxy.port}` }, ['--redis_timeout', '1000']);
  const B = await startRedisBroker(r);
  const streams = [];
  let pub = null;
  try {
    const ch = 'silent-pubsub';
    const sA = await subscribeReady(A, ch);
    streams.push(sA);
    pub = publisher([B], ch);
    await waitFor(() => pub.accepted.length >= 20, 10000, '20 accepted publishes');
    assert.equal(proxy.silenceSubscribers(), 1, 'the broker\'s one pub/sub connection through the proxy');
    const tSilent = Date.now();
    await A.waitLog(/redis: down: pub\/sub probe not echoed within 1000 ms/, 15000);
    const found = Date.now() - tSilent;
    await waitFor(() => (A.stderr().match(/redis: connected as broker/g) || []).length >= 2, RECOVER, 'broker A reconnected');
    const at = pub.accepted.length;
    await waitFor(() => pub.accepted.length >= at + 20, RECOVER, '20 accepted publishes after the reconnect');
    await pub.stop();
    const last = pub.accepted[pub.accepted.length - 1];
    await sA.waitFor((x) => x.events().some((e) => e.id === last.id), 10000, `the last accepted event ${last.id}`);
    const d = delivery(sA, pub.accepted);
    assert.deepEqual(d.missing, [], 'accepted events missing');
    assert.deepEqual(d.dup, [], 'accepted events doubled');
    assert.equal(d.disorder, 0, 'events out of order');
    assert.equal(d.resets, 0, 'a reset though Redis lost nothing');
    t.diagnostic(`the silent pub/sub connection was found ${found} ms after it went silent`);
  } finally {
    if (pub) await pub.stop();
    await stopAll([A, B], null, streams);
    await proxy.close();
    await r.stop();
  }
});

test('the sentinels are asked in turn: a URL whose first sentinel is down still finds the primary (broker and pusher)', async () => {
  const g = await startSentinelGroup({ replicas: 1 });
  const dead = await freePort();
  const url = g.url.replace('sentinel://', `sentinel://127.0.0.1:${dead},`);
  const dir = mkdtempSync(path.join(tmpdir(), 'ssepush-sentinel-'));
  const sock = path.join(dir, 'notify.sock');
  let A = null;
  let pusher = null;
  const streams = [];
  try {
    A = await startRedisBroker({ url });
    const s = await subscribeReady(A, 'bob');
    streams.push(s);
    const p = await publishOk(A, 'bob', 'via-the-second-sentinel');
    await s.waitFor((x) => x.events().some((e) => e.id === p.id), undefined, 'the event');
    pusher = await startPusher(['--notify_socket', sock, '--redis', url, '--coalesce_ms', '0']);
    await pusher.waitLog(/redis: connected/, 10000);
    await sendDatagrams(sock, [mailDatagram('bob')]);
    await s.waitFor((x) => x.events().some((e) => e.event === 'change'), 10000, 'the pusher\'s change event');
    const primary = await g.primary();
    assert.equal(await redisCommand(primary.target, 'EXISTS', 'ssepush:h:bob'), 1, 'the history is on the primary');
  } finally {
    if (pusher) await pusher.stop();
    await stopAll(A ? [A] : [], null, streams);
    await g.stop();
  }
});

/**
 * A TCP proxy that sends each connection on by what it says first: one that loads
 * scripts (the broker's command connection) to Redis at cmdPort, any other (its pub/sub
 * connection) to Redis at subPort - the two connections on two servers, as after a
 * failover that only one of them followed.
 */
async function splittingProxy(cmdPort, subPort) {
  const socks = [];
  const server = net.createServer((c) => {
    socks.push(c);
    let head = Buffer.alloc(0);
    let up = null;
    c.on('error', () => {});
    c.on('close', () => { if (up) up.destroy(); });
    c.on('data', (d) => {
      if (up) { up.write(d); return; }
      head = Buffer.concat([head, d]);
      const text = head.toString('latin1');
      if (!/\r\n/.test(text)) return;
      up = net.connect({ host: '127.0.0.1', port: /SCRIPT/i.test(text) ? cmdPort : subPort });
      socks.push(up);
      up.on('error', () => {});
      up.on('data', (x) => c.write(x));
      up.on('close', () => c.destroy());
      up.write(head);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    close: () => new Promise((resolve) => { for (const x of socks) x.destroy(); server.close(resolve); }),
  };
}

test('command and pub/sub connections on two different servers: the probe finds it (PUBLISH reaches nobody) and drops the link', async () => {
  const r1 = await startRedis({ tcp: true });
  const r2 = await startRedis({ tcp: true });
  const proxy = await splittingProxy(r1.port, r2.port);
  const A = await startRedisBroker({ url: `redis://127.0.0.1:${proxy.port}` }, ['--redis_timeout', '1000']);
  try {
    const re = /redis: down: pub\/sub probe: the pub\/sub connection is not subscribed on this server/g;
    await A.waitLog(re, 15000);
    // It reconnects (through the same proxy, so into the same split) and finds it again.
    await waitFor(() => (A.stderr().match(re) || []).length >= 2, 20000, 'the split found a second time',
      () => A.stderr().split('\n').filter((l) => /redis/.test(l)).slice(-5).join('\n'));
  } finally {
    await stopAll([A], null, []);
    await proxy.close();
    await r1.stop();
    await r2.stop();
  }
});
