// Helpers for the ssepush-pusher functional tests: a private redis-server on a UNIX
// socket, the pusher binary (waits for its "ready" line, stops it with SIGTERM and checks
// the exit), datagrams sent to a UNIX datagram socket (Node cannot: a python3 one-liner
// does it), fixture datagrams, and the counters of the "stats:" line (SIGUSR1).
// Everything is started through lib.mjs's spawnProcess, so killAll() cleans up.

import { readFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import {
  spawnProcess, runProcess, waitFor, sanitizerReport, subscribe, waitPreamble, publishOk,
  startBroker, tempDir, START_TIMEOUT, STOP_TIMEOUT, WAIT,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

export const PUSHER = process.env.SSEPUSH_PUSHER
  ? path.resolve(process.env.SSEPUSH_PUSHER)
  : path.resolve(here, '../../build/ssepush-pusher');
export const FIXTURES = path.resolve(here, '../fixtures/cyrus-notify');

/* Options for startBroker in these tests: none beyond the defaults (leak checks on). */
export const BROKER_OPTS = {};

/** The bytes of one fixture datagram, e.g. fixture('rich', '005-MessageNew.bin'). */
export function fixture(dir, name) {
  return readFileSync(path.join(FIXTURES, dir, name));
}

/** Every fixture file of a directory whose name matches re, in order. */
export function fixtures(dir, re = /\.bin$/) {
  return readdirSync(path.join(FIXTURES, dir)).filter((f) => re.test(f)).sort().map((f) => fixture(dir, f));
}

/** A MAIL-class datagram as lmtpd sends it, for recipient user. */
export function mailDatagram(user, subject = 'hi') {
  return Buffer.from(`mailpush\0MAIL\0\0${user}\0INBOX\x000\0Subject: ${subject}\n\0`, 'utf8');
}

/** The JSON of an EVENT datagram (for its session id and so on). */
export function eventJson(buf) {
  const parts = buf.toString('utf8').split('\0');
  return JSON.parse(parts[6 + Number(parts[5])]);
}

/** Sends each Buffer as one datagram to the UNIX datagram socket at sockPath. */
export async function sendDatagrams(sockPath, bufs) {
  const script = 'import socket,sys,json,base64\n'
    + 's=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\n'
    + 's.setsockopt(socket.SOL_SOCKET,socket.SO_SNDBUF,1<<20)\n'
    + 'for b in json.load(sys.stdin): s.sendto(base64.b64decode(b),sys.argv[1])\n';
  const r = await runProcess('python3', ['-c', script, sockPath], STOP_TIMEOUT,
    JSON.stringify(bufs.map((b) => b.toString('base64'))));
  assert.equal(r.code, 0, `datagram sender failed: ${r.stderr}`);
}

/*
 * Starts redis-server on the UNIX socket sockPath (no TCP). Persistence is on (an
 * fsync per write), as in a deployment that keeps history across Redis restarts: a
 * restart in these tests must not lose events, so subscribers must see the changes
 * themselves (a Redis that lost its history makes the broker send a reset instead).
 */
export async function startRedis(sockPath) {
  const p = spawnProcess('redis-server', ['--port', '0', '--unixsocket', sockPath, '--unixsocketperm', '777',
    '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--dir', path.dirname(sockPath)]);
  await waitFor(() => {
    if (p.exitInfo()) throw new Error(`redis-server exited: ${p.stdout()} ${p.stderr()}`);
    return /[Rr]eady to accept connections/.test(p.stdout());
  }, START_TIMEOUT, 'redis-server "ready to accept connections"', () => p.stdout());
  return {
    sock: sockPath,
    url: `unix:${sockPath}`,
    stop: async () => { p.kill('SIGKILL'); await p.exited(); },
  };
}

/**
 * Starts the pusher with args; waits for "ready: listening on". Returns {pid, stderr(),
 * waitLog(re, ms, from), signal(sig), stats(), stop()}; stop() sends SIGTERM and asserts
 * a clean exit (code 0, no sanitizer report).
 */
export async function startPusher(args) {
  assert.ok(existsSync(PUSHER), `pusher binary not found at ${PUSHER} (set SSEPUSH_PUSHER)`);
  const p = spawnProcess(PUSHER, args);
  await waitFor(() => {
    if (p.exitInfo()) throw new Error(`pusher exited (${JSON.stringify(p.exitInfo())}) before ready: ${p.stderr()}`);
    return /ready: listening on/.test(p.stderr());
  }, START_TIMEOUT, 'the pusher\'s "ready: listening on" line', () => p.stderr());
  const x = {
    pid: p.pid,
    stderr: p.stderr,
    signal: (sig) => p.kill(sig),
    exited: p.exited,
    waitLog: (re, ms = WAIT, from = 0) => waitFor(() => re.exec(p.stderr().slice(from)), ms, `pusher log line ${re}`, () => p.stderr()),
  };
  /** Asks for a stats line (SIGUSR1) and returns its counters as numbers (redis as a string). */
  x.stats = async () => {
    const from = p.stderr().length;
    p.kill('SIGUSR1');
    const m = await x.waitLog(/stats: signal (.*)\n/, WAIT, from);
    const out = {};
    for (const kv of m[1].split(' ')) {
      const [k, v] = kv.split('=');
      out[k] = /^\d+$/.test(v) ? Number(v) : v;
    }
    return out;
  };
  /** Polls the stats until pred(stats) holds; returns them. */
  x.waitStats = (pred, ms = WAIT, what = 'pusher counters') => {
    let last = null;
    return waitFor(async () => { last = await x.stats(); return pred(last) && last; }, ms, what, () => JSON.stringify(last), 50);
  };
  x.stop = async () => {
    p.kill('SIGTERM');
    const r = await p.exited(STOP_TIMEOUT);
    assert.ok(r, `pusher did not exit within ${STOP_TIMEOUT} ms of SIGTERM: ${p.stderr()}`);
    assert.equal(r.signal, null, `pusher killed by ${r.signal}: ${p.stderr()}`);
    assert.equal(r.code, 0, `pusher exit code ${r.code}: ${p.stderr()}`);
    assert.ok(!sanitizerReport(p.stderr()), `sanitizer report in pusher stderr:\n${p.stderr()}`);
    return p.stderr();
  };
  return x;
}

/**
 * Redis, a broker on it and a pusher on it (coalesce_ms 200, then pusherArgs), in one
 * private directory; the pusher's datagram socket is `sock`. stop() stops all three.
 */
export async function startStack(pusherArgs = []) {
  const dir = tempDir();
  const redis = await startRedis(path.join(dir, 'redis.sock'));
  const broker = await startBroker(['--redis', redis.url], BROKER_OPTS);
  await waitFor(async () => (await fetch(`${broker.url}/healthz`)).status === 200, 5000, 'broker /healthz 200');
  const sock = path.join(dir, 'notify');
  const pusher = await startPusher(['--notify_socket', sock, '--redis', redis.url, '--coalesce_ms', '200', ...pusherArgs]);
  await pusher.waitLog(/redis: connected/);
  return {
    dir, redis, broker, pusher, sock,
    stop: async () => { await pusher.stop(); await broker.stop(); await redis.stop(); },
  };
}

/**
 * Subscribes to /events/<channel><query> and proves the Redis path to it is live: a
 * "primer" event published through the broker must arrive first. Returns the stream.
 */
export async function subscribePrimed(b, channel, query = '') {
  const s = await subscribe(b, `/events/${channel}${query}`);
  await waitPreamble(s);
  await waitFor(async () => {
    await publishOk(b, channel, 'primer', { query: { event: 'primer' } });
    await new Promise((r) => setTimeout(r, 50));
    return s.events().some((f) => f.event === 'primer');
  }, WAIT, `the primer event on ${channel}${query}`, s.describe, 100);
  return s;
}

/** The change events a stream received, payloads parsed. */
export function changes(s) {
  return s.events().filter((f) => f.event === 'change').map((f) => ({ id: f.id, ...JSON.parse(f.data) }));
}

/**
 * Proves a stream got no change by now: publishes a "marker" event and waits for it;
 * returns the change events seen before the marker.
 */
export async function changesBeforeMarker(b, s, channel) {
  const tag = `marker-${Date.now()}-${Math.random()}`;
  await publishOk(b, channel, tag, { query: { event: 'marker' } });
  await s.waitFor((x) => x.events().some((f) => f.event === 'marker' && f.data === tag), WAIT, 'the marker event');
  const ev = s.events();
  const i = ev.findIndex((f) => f.event === 'marker' && f.data === tag);
  return ev.slice(0, i).filter((f) => f.event === 'change').map((f) => JSON.parse(f.data));
}
