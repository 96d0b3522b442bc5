// The pusher's metrics listener (metrics_listen): /metrics has every figure of the
// stats line as ssepush_pusher_* with HELP and TYPE and the datagram-to-publish
// histogram, counts a datagram sent to the notify socket, and passes promtool (Debian's
// prometheus package); /healthz is 200 while Redis takes publishes and 503 with a JSON
// reason while the test's own redis-server (on a free TCP port) is stopped; the
// broker's rule for operations endpoints (a Bearer secret, or loopback peers only).
// The broker's /metrics passes promtool too, standalone and in Redis mode.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  killAll, tempDir, startBroker, startRedis, runProcess, http, parseMetrics, metricValue,
  assertJsonError, waitFor, publishOk, subscribeReady, WAIT,
} from './lib.mjs';
import { PUSHER, startPusher, sendDatagrams, mailDatagram } from './pusher-lib.mjs';

after(killAll);

const SECRET = 'a-metrics-secret-of-more-than-32-bytes-0123456789';

/** Runs promtool check metrics on a /metrics body; asserts it passes. */
async function promtool(text, what) {
  let r;
  try {
    r = await runProcess('promtool', ['check', 'metrics'], WAIT, text);
  } catch (e) {
    assert.fail(`promtool not runnable (${e.message}): install Debian's prometheus (packaging/install-deps.sh test)`);
  }
  assert.equal(r.code, 0, `promtool check metrics of ${what} failed:\n${r.stdout}${r.stderr}\n--- body:\n${text}`);
  assert.equal(`${r.stdout}${r.stderr}`.trim(), '', `promtool warned about ${what}:\n${r.stdout}${r.stderr}`);
}

/** Starts a pusher on a private notify socket with a metrics listener on a free port. */
async function pusherWithMetrics(redisUrl, extra = []) {
  const dir = tempDir();
  const sock = path.join(dir, 'notify.sock');
  const p = await startPusher(['--notify_socket', sock, '--redis', redisUrl, '--coalesce_ms', '20',
    '--metrics_listen', '127.0.0.1:0', ...extra]);
  const m = /metrics: listening on 127\.0\.0\.1:(\d+)/.exec(p.stderr());
  assert.ok(m, `no "metrics: listening on" line before ready:\n${p.stderr()}`);
  p.sock = sock;
  p.metricsPort = Number(m[1]);
  return p;
}

/** The metric name /metrics uses for a key of the stats line. */
function metricName(key, samples) {
  for (const n of [`ssepush_pusher_${key}_total`, `ssepush_pusher_${key}`, `ssepush_pusher_${key}_up`]) {
    if (samples.some((s) => s.name === n)) return n;
  }
  return null;
}

test('pusher /metrics: every stats-line figure with HELP and TYPE, a datagram counted, the latency histogram, promtool clean', { timeout: 60000 }, async () => {
  const redis = await startRedis({ tcp: true });
  const p = await pusherWithMetrics(redis.url);
  await waitFor(async () => (await http(p.metricsPort, '/healthz')).status === 200, WAIT, 'pusher /healthz 200 (Redis up)');

  const before = parseMetrics((await http(p.metricsPort, '/metrics')).body);
  assert.equal(metricValue(before, 'ssepush_pusher_datagrams_total'), 0);
  await sendDatagrams(p.sock, [mailDatagram('alice')]);
  const st = await p.waitStats((s) => s.published === 1, WAIT, 'the change published');

  const r = await http(p.metricsPort, '/metrics');
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const samples = parseMetrics(r.body);
  assert.equal(metricValue(samples, 'ssepush_pusher_datagrams_total'), 1, r.body);
  assert.equal(metricValue(samples, 'ssepush_pusher_bytes_total'), mailDatagram('alice').length);
  assert.equal(metricValue(samples, 'ssepush_pusher_published_total'), 1);
  assert.equal(metricValue(samples, 'ssepush_pusher_redis_up'), 1);

  // Every key of the stats line, with the same value, HELP and the right TYPE.
  for (const [key, v] of Object.entries(st)) {
    const name = metricName(key, samples);
    assert.ok(name, `stats line figure ${key} has no ssepush_pusher_${key}[_total|_up] in /metrics:\n${r.body}`);
    const want = key === 'redis' ? (v === 'up' ? 1 : 0) : v;
    assert.equal(metricValue(samples, name), want, `${name} in /metrics vs ${key}=${v} on the stats line`);
    const type = name.endsWith('_total') ? 'counter' : 'gauge';
    assert.match(r.body, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name} has no HELP line`);
    assert.match(r.body, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), `${name} is not TYPE ${type}`);
  }
  const own = new Set(samples.map((s) => s.name).filter((n) => !n.startsWith('ssepush_pusher_publish_latency_seconds')));
  assert.equal(own.size, Object.keys(st).length, `/metrics has figures the stats line lacks: ${[...own].join(' ')}`);

  // The histogram: one observation, at least the coalescing window (20 ms) long.
  assert.match(r.body, /^# TYPE ssepush_pusher_publish_latency_seconds histogram$/m);
  assert.equal(metricValue(samples, 'ssepush_pusher_publish_latency_seconds_count'), 1);
  assert.ok(metricValue(samples, 'ssepush_pusher_publish_latency_seconds_sum') >= 0.02, r.body);
  const buckets = samples.filter((s) => s.name === 'ssepush_pusher_publish_latency_seconds_bucket');
  assert.equal(buckets.at(-1).labels, '{le="+Inf"}');
  assert.equal(buckets.at(-1).value, 1);
  assert.equal(buckets.find((b) => b.labels === '{le="0.01"}').value, 0, 'below the 20 ms window');
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets are cumulative');

  await promtool(r.body, "the pusher's /metrics");
  const head = await http(p.metricsPort, '/metrics', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  await p.stop();
  await redis.stop();
});

test('pusher /healthz: 503 with a JSON reason while Redis is stopped, 200 again once it is back', { timeout: 60000 }, async () => {
  const redis = await startRedis({ tcp: true });
  const p = await pusherWithMetrics(redis.url);
  await waitFor(async () => (await http(p.metricsPort, '/healthz')).status === 200, WAIT, 'pusher /healthz 200');
  const ok = await http(p.metricsPort, '/healthz');
  assert.match(ok.headers['content-type'], /^application\/json/);
  assert.deepEqual(ok.json, { status: 'ok' });

  await redis.stop();
  const down = await waitFor(async () => {
    const x = await http(p.metricsPort, '/healthz');
    return x.status === 503 && x;
  }, WAIT, 'pusher /healthz 503 with Redis stopped');
  assertJsonError(down, 503, 'healthz with Redis stopped');
  assert.match(down.json.error, /^redis: /);
  const m = parseMetrics((await http(p.metricsPort, '/metrics')).body);
  assert.equal(metricValue(m, 'ssepush_pusher_redis_up'), 0);

  // A datagram while Redis is down is queued, shown as queue_depth, and published later.
  await sendDatagrams(p.sock, [mailDatagram('bob')]);
  await waitFor(async () => metricValue(parseMetrics((await http(p.metricsPort, '/metrics')).body),
    'ssepush_pusher_queue_depth') === 1, WAIT, 'queue_depth 1 while Redis is down');
  await redis.start();
  await waitFor(async () => (await http(p.metricsPort, '/healthz')).status === 200, 15000, 'pusher /healthz 200 after Redis is back');
  await waitFor(async () => metricValue(parseMetrics((await http(p.metricsPort, '/metrics')).body),
    'ssepush_pusher_published_total') === 1, WAIT, 'the queued change published');
  await p.stop();
  await redis.stop();
});

test('pusher metrics auth: loopback only without a secret (proxy headers are not local), Bearer metrics_secret with one, /healthz open', { timeout: 60000 }, async () => {
  const redis = await startRedis({ tcp: true });
  const open = await pusherWithMetrics(redis.url);
  for (const h of [{ 'X-Forwarded-For': '203.0.113.9' }, { 'X-Real-IP': '203.0.113.9' }, { Forwarded: 'for=203.0.113.9' }]) {
    assertJsonError(await http(open.metricsPort, '/metrics', { headers: h }), 403, `/metrics with ${Object.keys(h)[0]}`);
  }
  assert.equal((await http(open.metricsPort, '/metrics')).status, 200);
  assertJsonError(await http(open.metricsPort, '/metrics', { method: 'POST', body: 'x' }), 405, 'POST /metrics');
  assert.equal((await http(open.metricsPort, '/metrics', { method: 'POST', body: 'x' })).headers.allow, 'GET, HEAD');
  assertJsonError(await http(open.metricsPort, '/stats'), 404, 'GET /stats');
  await open.waitLog(/metrics: refused \/metrics to 127\.0\.0\.1: .*loopback peer/);
  await open.stop();

  const dir = tempDir();
  const file = path.join(dir, 'metrics.secret');
  writeFileSync(file, `${SECRET}\n`, { mode: 0o600 });
  const p = await pusherWithMetrics(redis.url, ['--metrics_secret_file', file]);
  const none = await http(p.metricsPort, '/metrics');
  assertJsonError(none, 401, '/metrics without the secret');
  assert.equal(none.headers['www-authenticate'], 'Bearer');
  assertJsonError(await http(p.metricsPort, '/metrics', { headers: { Authorization: `Bearer ${SECRET}x` } }), 401, 'wrong secret');
  assertJsonError(await http(p.metricsPort, '/metrics', { headers: { Authorization: `Basic ${SECRET}` } }), 401, 'not Bearer');
  const good = await http(p.metricsPort, '/metrics', { headers: { Authorization: `Bearer ${SECRET}`, 'X-Forwarded-For': '203.0.113.9' } });
  assert.equal(good.status, 200, 'the secret is enough, through a proxy too');
  assert.ok(metricValue(parseMetrics(good.body), 'ssepush_pusher_datagrams_total') === 0);
  await waitFor(async () => (await http(p.metricsPort, '/healthz')).status === 200, WAIT, '/healthz needs no secret');
  await p.stop();
  await redis.stop();
});

test('pusher metrics_listen on [::1] and the secret directives checked by -n', { timeout: 60000 }, async () => {
  const redis = await startRedis({ tcp: true });
  const dir = tempDir();
  const p = await startPusher(['--notify_socket', path.join(dir, 'n.sock'), '--redis', redis.url, '--metrics_listen', '[::1]:0']);
  const port = Number(/metrics: listening on \[::1\]:(\d+)/.exec(p.stderr())[1]);
  const r = await fetch(`http://[::1]:${port}/metrics`);
  assert.equal(r.status, 200, 'an IPv6 loopback peer is local');
  await p.stop();
  await redis.stop();

  const run = (args) => runProcess(PUSHER, ['-n', ...args]);
  const loose = path.join(dir, 'loose.secret');
  writeFileSync(loose, SECRET);
  chmodSync(loose, 0o644);
  let x = await run(['--metrics_secret_file', loose]);
  assert.equal(x.code, 1, x.stdout);
  assert.match(x.stderr, /command line: metrics_secret_file: .*loose\.secret holds a secret but is readable by other users \(mode 644\); chmod 600 it/);
  chmodSync(loose, 0o600);
  x = await run(['--metrics_secret_file', loose]);
  assert.equal(x.code, 0, x.stderr);
  assert.equal(x.stdout.trim(), 'configuration OK');
  x = await run(['--metrics_secret', 'short']);
  assert.equal(x.code, 1);
  assert.match(x.stderr, /metrics_secret: a secret needs at least 32 bytes/);
  x = await run(['--metrics_secret', SECRET, '--metrics_secret_file', loose]);
  assert.equal(x.code, 1);
  assert.match(x.stderr, /set metrics_secret or metrics_secret_file, not both/);
  const conf = path.join(dir, 'pusher.conf');
  writeFileSync(conf, `metrics_listen 127.0.0.1:9101\nmetrics_secret ${SECRET}\n`);
  chmodSync(conf, 0o644);
  x = await run(['-f', conf]);
  assert.equal(x.code, 1);
  assert.match(x.stderr, new RegExp(`${conf.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: metrics_secret: .* holds a secret but is readable by other users`));
  chmodSync(conf, 0o600);
  assert.equal((await run(['-f', conf])).code, 0);
  for (const bad of ['localhost:9101', '127.0.0.1', '127.0.0.1:70000', '[::1:9101']) {
    x = await run(['--metrics_listen', bad]);
    assert.equal(x.code, 1, `metrics_listen ${bad} accepted`);
    assert.match(x.stderr, /command line: metrics_listen: /);
  }
});

test("broker /metrics passes promtool check metrics, standalone and in Redis mode", { timeout: 60000 }, async () => {
  const b = await startBroker();
  const s = await subscribeReady(b, 'alice');
  await publishOk(b, 'alice', 'x');
  await s.waitFor((x) => x.events().length >= 1, WAIT, 'the event');
  await promtool((await http(b.port, '/metrics')).body, "the standalone broker's /metrics");
  s.close();
  await b.stop();

  const redis = await startRedis();
  const rb = await startBroker(['--redis', redis.url]);
  await waitFor(async () => (await http(rb.port, '/healthz')).status === 200, WAIT, 'broker /healthz 200');
  await publishOk(rb, 'bob', 'y');
  await promtool((await http(rb.port, '/metrics')).body, "the Redis-mode broker's /metrics");
  await rb.stop();
  await redis.stop();
});
