// Harness for the ssepush-broker functional tests: starts the real binary on a
// loopback port the kernel picks, speaks raw HTTP/1.1 to it (so framing, chunked
// endings and error headers are seen byte for byte), parses SSE frames, and runs
// curl. Every wait is a bounded poll that fails with a message saying what it was
// waiting for. Only processes started here are ever signalled, by pid.

import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));

export const BROKER = process.env.SSEPUSH_BROKER
  ? path.resolve(process.env.SSEPUSH_BROKER)
  : path.resolve(here, '../../build/ssepush-broker');

// Timeouts are generous so that the ASan+UBSan build on a busy 2-core machine passes;
// they bound waits, they never measure speed.
export const START_TIMEOUT = 10000;
export const STOP_TIMEOUT = 10000;
export const WAIT = 5000;

const children = new Set();	// every process spawned here that may still run
const brokersByPort = new Map();	// port -> broker object, for diagnostics

/** Says what happened to the broker on a port (for a refused connection's message). */
function brokerNote(port) {
  const b = brokersByPort.get(port);
  if (!b) return '';
  const x = b.exitInfo();
  const tail = b.stderr().split('\n').slice(-8).join('\n');
  return x ? ` [broker pid ${b.pid} on port ${port} had exited: code ${x.code}, signal ${x.signal}; stderr tail:\n${tail}]`
    : ` [broker pid ${b.pid} on port ${port} still running]`;
}
const tempDirs = new Set();

/** Kills (SIGKILL, by pid) every process this file started that still runs; removes temp dirs. */
export function killAll() {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  children.clear();
  for (const d of tempDirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* ignore */ }
  }
  tempDirs.clear();
}
process.on('exit', killAll);

/** Returns a fresh private temporary directory, removed by killAll(). */
export function tempDir() {
  const d = mkdtempSync(path.join(tmpdir(), 'ssepush-ft-'));
  tempDirs.add(d);
  return d;
}

/** Writes a config file into a private temp dir and returns its path. */
export function writeConfig(text, name = 'ssepush-broker.conf') {
  const p = path.join(tempDir(), name);
  writeFileSync(p, text);
  return p;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Resolves with what p resolves to, or null after ms; the timer is cleared once p wins,
 * so a bound that was not needed does not keep the test process alive.
 */
export function within(p, ms) {
  let t;
  const timeout = new Promise((r) => { t = setTimeout(() => r(null), ms); });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/**
 * Polls fn (sync or async) every `every` ms until it returns a truthy value, which is
 * returned; throws "timed out after N ms waiting for WHAT" (plus detail()) otherwise.
 */
export async function waitFor(fn, timeoutMs = WAIT, what = 'condition', detail = null, every = 20) {
  const deadline = Date.now() + timeoutMs;
  let lastErr = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      lastErr = null;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      let msg = `timed out after ${timeoutMs} ms waiting for ${what}`;
      if (lastErr) msg += `; last error: ${lastErr.message}`;
      if (detail) msg += `; ${typeof detail === 'function' ? detail() : detail}`;
      throw new Error(msg);
    }
    await sleep(every);
  }
}

/** Returns true when stderr text shows a sanitizer report. */
export function sanitizerReport(text) {
  return /AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:/.test(text);
}

/** Waits until a spawned child exits; resolves {code, signal}, or null on timeout. */
function waitExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(null), timeoutMs);
    child.once('exit', (code, signal) => { clearTimeout(t); resolve({ code, signal }); });
  });
}

/** Splits "host:port" / "[v6]:port" into {host, port}. */
function splitAddr(addr) {
  const m = /^\[?(.*?)\]?:(\d+)$/.exec(addr);
  if (!m) throw new Error(`cannot parse listen address "${addr}"`);
  return { host: m[1], port: Number(m[2]) };
}

/**
 * Starts the broker with `--listen 127.0.0.1:0` (unless args name --listen) plus args.
 * opts.config: text of a config file, written to a private temp dir and passed with -f
 * (its path is returned as configPath). Waits for "ready: listening on ADDR" (and
 * "publish: listening on ADDR" when publish_listen is given).
 * Returns {pid, port, url, host, publishPort, publishUrl, configPath, stderr(), stdout(),
 *          waitLog(re, ms), signal(sig), stop(), exited()}.
 */
export async function startBroker(args = [], opts = {}) {
  assert.ok(existsSync(BROKER), `broker binary not found at ${BROKER} (set SSEPUSH_BROKER)`);
  const argv = [];
  let configPath = null;
  if (opts.config !== undefined) {
    configPath = writeConfig(opts.config);
    argv.push('-f', configPath);
  }
  if (!args.includes('--listen')) argv.push('--listen', '127.0.0.1:0');
  argv.push(...args);
  const wantPublish = args.includes('--publish_listen');

  const child = spawn(BROKER, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env || {}) } });
  children.add(child);
  let err = '';
  let out = '';
  child.stderr.setEncoding('utf8');
  child.stdout.setEncoding('utf8');
  child.stderr.on('data', (d) => { err += d; });
  child.stdout.on('data', (d) => { out += d; });
  let exitInfo = null;
  const exitPromise = new Promise((resolve) => {
    child.once('exit', (code, signal) => { exitInfo = { code, signal }; resolve(exitInfo); });
  });

  const ready = await waitFor(() => {
    if (exitInfo) {
      throw new Error(`broker exited (code ${exitInfo.code}, signal ${exitInfo.signal}) before ready; args ${JSON.stringify(argv)}; stderr:\n${err}`);
    }
    const m = /ready: listening on (\S+)/.exec(err);
    if (!m) return null;
    if (wantPublish && !/publish: listening on (\S+)/.test(err)) return null;
    return m[1];
  }, opts.startTimeout || START_TIMEOUT, 'the broker\'s "ready: listening on" line', () => `args ${JSON.stringify(argv)}; stderr so far:\n${err}`, 10).catch((e) => {
    if (!exitInfo) { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }
    throw e;
  });

  const { host, port } = splitAddr(ready);
  const b = {
    pid: child.pid,
    child,
    host: '127.0.0.1',
    port,
    url: `http://127.0.0.1:${port}`,
    listenHost: host,
    configPath,
    args: argv,
    stderr: () => err,
    stdout: () => out,
    exitInfo: () => exitInfo,
  };
  b.publishPort = port;
  if (wantPublish) {
    const pm = /publish: listening on (\S+)/.exec(err);
    b.publishPort = splitAddr(pm[1]).port;
  }
  b.publishUrl = `http://127.0.0.1:${b.publishPort}`;
  brokersByPort.set(port, b);
  brokersByPort.set(b.publishPort, b);

  /** Waits for a log line matching re in stderr text after `from` (an offset). */
  b.waitLog = (re, ms = WAIT, from = 0) =>
    waitFor(() => re.exec(err.slice(from)), ms, `log line ${re}`, () => `stderr:\n${err}`);

  /** Sends a signal to this broker (by pid). */
  b.signal = (sig) => { if (!exitInfo) process.kill(child.pid, sig); };

  /** Resolves {code, signal} when the broker exits (or null after ms). */
  b.exited = (ms = STOP_TIMEOUT) => within(exitPromise, ms);

  /**
   * SIGTERM, wait for exit; asserts exit code 0 and no sanitizer report in stderr.
   * Returns the full stderr.
   */
  b.stop = async () => {
    if (!exitInfo) process.kill(child.pid, 'SIGTERM');
    const r = await waitExit(child, STOP_TIMEOUT);
    if (!r) {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      throw new Error(`broker pid ${child.pid} did not exit within ${STOP_TIMEOUT} ms of SIGTERM; stderr:\n${err}`);
    }
    await new Promise((r2) => setImmediate(r2));	// let the last stderr chunk land
    children.delete(child);
    assert.equal(r.signal, null, `broker killed by signal ${r.signal}; stderr:\n${err}`);
    assert.equal(r.code, 0, `broker exit code ${r.code} after SIGTERM; stderr:\n${err}`);
    assert.ok(!sanitizerReport(err), `sanitizer report in broker stderr:\n${err}`);
    return err;
  };
  return b;
}

/** Runs the broker binary to completion (for -n, -h, -V); returns {code, signal, stdout, stderr}. */
export function runBroker(argv, timeoutMs = STOP_TIMEOUT) {
  return runProcess(BROKER, argv, timeoutMs);
}

/** Runs a program to completion with a time bound; returns {code, signal, stdout, stderr}. */
export function runProcess(file, argv, timeoutMs = STOP_TIMEOUT, input = null) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: [input === null ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    if (input !== null) child.stdin.end(input);
    const t = setTimeout(() => {
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`${file} ${argv.join(' ')} did not finish within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (e) => { clearTimeout(t); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(t);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Starts a long-running process (curl -N ...) and collects its output.
 * Returns {pid, stdout(), stderr(), exited(ms), kill(sig)}.
 */
export function spawnProcess(file, argv) {
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  let exitInfo = null;
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const done = new Promise((resolve) => child.on('close', (code, signal) => {
    exitInfo = { code, signal };
    children.delete(child);
    resolve(exitInfo);
  }));
  return {
    pid: child.pid,
    stdout: () => stdout,
    stderr: () => stderr,
    exitInfo: () => exitInfo,
    exited: (ms = STOP_TIMEOUT) => within(done, ms),
    kill: (sig = 'SIGTERM') => { if (!exitInfo) process.kill(child.pid, sig); },
  };
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 over a net socket.

/** Parses "HTTP/1.1 200 OK\r\nName: v\r\n..." into {status, reason, headers (lower-case keys)}. */
function parseHead(text) {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
  const headers = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  return { status: Number(m[1]), reason: m[2], headers };
}

/**
 * Incremental HTTP response reader: feeds bytes, exposes head, decoded body bytes and
 * whether the body ended as the framing says (terminating chunk or full length).
 */
class ResponseReader {
  constructor(onBody) {
    this.buf = Buffer.alloc(0);
    this.head = null;
    this.mode = null;		// 'chunked' | 'length' | 'close'
    this.remaining = 0;
    this.complete = false;	// body ended by its framing (clean end)
    this.onBody = onBody;
    this.chunkState = 'size';
    this.informational = [];	// 1xx heads seen
  }

  feed(data) {
    this.buf = Buffer.concat([this.buf, data]);
    for (;;) {
      if (!this.head) {
        const i = this.buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = parseHead(this.buf.subarray(0, i).toString('latin1'));
        this.buf = this.buf.subarray(i + 4);
        if (head.status >= 100 && head.status < 200) { this.informational.push(head); continue; }
        this.head = head;
        const te = (head.headers['transfer-encoding'] || '').toLowerCase();
        if (te.includes('chunked')) this.mode = 'chunked';
        else if (head.headers['content-length'] !== undefined) {
          this.mode = 'length';
          this.remaining = Number(head.headers['content-length']);
          if (this.remaining === 0) this.complete = true;
        } else this.mode = 'close';
        continue;
      }
      if (this.complete) { this.buf = Buffer.alloc(0); return; }
      if (this.mode === 'close') {
        if (this.buf.length) { this.onBody(this.buf); this.buf = Buffer.alloc(0); }
        return;
      }
      if (this.mode === 'length') {
        const n = Math.min(this.remaining, this.buf.length);
        if (n) { this.onBody(this.buf.subarray(0, n)); this.buf = this.buf.subarray(n); this.remaining -= n; }
        if (this.remaining === 0) this.complete = true;
        return;
      }
      // chunked
      if (this.chunkState === 'size') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const size = parseInt(this.buf.subarray(0, i).toString('latin1').split(';')[0], 16);
        if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(this.buf.subarray(0, i).toString('latin1'))}`);
        this.buf = this.buf.subarray(i + 2);
        if (size === 0) { this.chunkState = 'trailer'; continue; }
        this.remaining = size;
        this.chunkState = 'data';
        continue;
      }
      if (this.chunkState === 'data') {
        const n = Math.min(this.remaining, this.buf.length);
        if (n) { this.onBody(this.buf.subarray(0, n)); this.buf = this.buf.subarray(n); this.remaining -= n; }
        if (this.remaining > 0) return;
        this.chunkState = 'crlf';
        continue;
      }
      if (this.chunkState === 'crlf') {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        this.chunkState = 'size';
        continue;
      }
      if (this.chunkState === 'trailer') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const line = this.buf.subarray(0, i);
        this.buf = this.buf.subarray(i + 2);
        if (line.length === 0) { this.complete = true; return; }
        continue;
      }
    }
  }
}

/** Builds request bytes: method, path, headers object, body (string|Buffer|null). */
function buildRequest(method, reqPath, port, headers = {}, body = null, { connectionClose = true, noContentLength = false } = {}) {
  const lines = [`${method} ${reqPath} HTTP/1.1`, `Host: 127.0.0.1:${port}`];
  const have = new Set(Object.keys(headers).map((k) => k.toLowerCase()));
  if (connectionClose && !have.has('connection')) lines.push('Connection: close');
  const bodyBuf = body === null ? null : Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  if (bodyBuf !== null && !noContentLength && !have.has('content-length') && !have.has('transfer-encoding')) {
    lines.push(`Content-Length: ${bodyBuf.length}`);
  }
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  return bodyBuf ? Buffer.concat([head, bodyBuf]) : head;
}

/**
 * One HTTP request on a fresh connection (Connection: close unless given).
 * opts: {method, headers, body, port, timeout, raw (Buffer to send instead of a built request),
 *        localAddress (source address to connect from, e.g. 127.0.0.2)}.
 * Resolves {status, headers, body (string), json (parsed or undefined), complete, informational}.
 */
export function http(port, reqPath, opts = {}) {
  const method = opts.method || 'GET';
  const timeout = opts.timeout || WAIT;
  const bytes = opts.raw || buildRequest(method, reqPath, port, opts.headers || {}, opts.body ?? null);
  return new Promise((resolve, reject) => {
    const chunks = [];
    const rr = new ResponseReader((b) => chunks.push(Buffer.from(b)));
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: opts.localAddress });
    let settled = false;
    const finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) return reject(err);
      if (!rr.head) return reject(new Error(`${method} ${reqPath}: connection closed without a response`));
      const body = Buffer.concat(chunks).toString('utf8');
      let json;
      try { json = JSON.parse(body); } catch { json = undefined; }
      resolve({ status: rr.head.status, headers: rr.head.headers, body, json, complete: rr.complete, informational: rr.informational });
    };
    const timer = setTimeout(() => finish(new Error(`${method} ${reqPath}: no complete response within ${timeout} ms (got ${rr.head ? `status ${rr.head.status}` : 'no head'})`)), timeout);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d) => {
      try { rr.feed(d); } catch (e) { finish(e); return; }
      if (rr.head && rr.complete) finish();
    });
    sock.on('error', (e) => {
      if (rr.head) finish();
      else { e.message += brokerNote(port); finish(e); }
    });
    sock.on('close', () => finish());
  });
}

/** GET helper returning parsed JSON, asserting a 200. */
export async function getJson(port, reqPath) {
  const r = await http(port, reqPath);
  assert.equal(r.status, 200, `GET ${reqPath}: status ${r.status}, body ${r.body}`);
  assert.ok(r.json !== undefined, `GET ${reqPath}: body is not JSON: ${r.body}`);
  return r.json;
}

/**
 * POST /publish/<channel> (channel used as given in the path) on the broker's publish
 * address. query: object of query parameters; headers: extra headers.
 * Resolves the http() result.
 */
export function publish(b, channel, data, { query = {}, headers = {}, timeout } = {}) {
  const qs = new URLSearchParams(query).toString();
  const p = `/publish/${channel}${qs ? `?${qs}` : ''}`;
  return http(b.publishPort, p, { method: 'POST', headers: { 'Content-Type': 'text/plain; charset=utf-8', ...headers }, body: data, timeout });
}

/** Publishes and asserts a 200 JSON answer; returns the parsed {channel, id, subscribers}. */
export async function publishOk(b, channel, data, opts) {
  const r = await publish(b, channel, data, opts);
  assert.equal(r.status, 200, `publish to ${channel}: status ${r.status}, body ${r.body}`);
  assert.ok(r.json && typeof r.json.id === 'string', `publish to ${channel}: no id in ${r.body}`);
  return r.json;
}

/** Returns the numeric sequence of an id "<boot>-<seq>". */
export function seqOf(id) {
  const m = /-(\d+)$/.exec(id);
  assert.ok(m, `id ${JSON.stringify(id)} does not end in -<decimal seq>`);
  return Number(m[1]);
}

/** Polls /stats/<channel> until "subscribers" equals n; returns the stats object. */
export function waitSubscribers(b, channel, n, ms = WAIT) {
  let last = null;
  return waitFor(async () => {
    const r = await http(b.publishPort, `/stats/${channel}`);
    last = `${r.status} ${r.body}`;
    return r.status === 200 && r.json && r.json.subscribers === n ? r.json : null;
  }, ms, `/stats/${channel} to show subscribers ${n}`, () => `last answer: ${last}`, 25);
}

// ---------------------------------------------------------------------------
// SSE stream reader over a raw socket.

/**
 * Streaming SSE parser: lines end at CRLF, LF or CR; a blank line ends a block.
 * Every non-empty block becomes a frame {id, event, data, dataLines, retry, comments}
 * (id/event/retry undefined when absent; data is dataLines joined with "\n").
 */
export class SseParser {
  constructor(onFrame) {
    this.text = '';
    this.onFrame = onFrame;
    this.cur = null;
  }

  feed(text) {
    this.text += text;
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.text);
      if (!m) return;
      // A CR at the very end may be the first half of CRLF: wait for more.
      if (m[0] === '\r' && m.index === this.text.length - 1) return;
      const line = this.text.slice(0, m.index);
      this.text = this.text.slice(m.index + m[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === '') {
      if (this.cur) this.onFrame(this.cur);
      this.cur = null;
      return;
    }
    if (!this.cur) this.cur = { id: undefined, event: undefined, data: undefined, dataLines: [], retry: undefined, comments: [] };
    const f = this.cur;
    if (line.startsWith(':')) { f.comments.push(line.slice(1).replace(/^ /, '')); return; }
    const i = line.indexOf(':');
    const name = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') { f.dataLines.push(value); f.data = f.dataLines.join('\n'); } else if (name === 'id') f.id = value;
    else if (name === 'event') f.event = value;
    else if (name === 'retry') f.retry = value;
    else (f.unknown ||= []).push(line);
  }
}

/** True for a ping frame. */
export const isPing = (f) => f.event === 'ping';
/** True for a frame that is an event (has data or a type), not a ping. */
export const isEvent = (f) => (f.dataLines.length > 0 || f.event !== undefined) && !isPing(f);

/**
 * Opens GET <reqPath> on a raw socket and reads it as an SSE stream.
 * opts: {port, headers, timeout (for the response head), localAddress (source address)}.
 * Resolves once the response head is in, with a stream object:
 *   status, headers, raw() (decoded body text), frames (all blocks), events() (no pings),
 *   pings(), ended (clean end by framing), closed (socket closed), localPort,
 *   waitFor(pred(stream), ms, what), waitEvents(n, ms), waitEnd(ms), close().
 */
export function openStream(port, reqPath, opts = {}) {
  const timeout = opts.timeout || WAIT;
  return new Promise((resolve, reject) => {
    const s = {
      status: 0, headers: {}, frames: [], bodyText: '', ended: false, closed: false, error: null, path: reqPath,
    };
    const decoder = new TextDecoder('utf-8');
    const parser = new SseParser((f) => { f.at = Date.now(); s.frames.push(f); });
    const rr = new ResponseReader((b) => {
      const t = decoder.decode(b, { stream: true });
      s.bodyText += t;
      parser.feed(t);
    });
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: opts.localAddress });
    s.socket = sock;
    let resolved = false;
    const timer = setTimeout(() => {
      if (!resolved) { resolved = true; sock.destroy(); reject(new Error(`GET ${reqPath}: no response head within ${timeout} ms`)); }
    }, timeout);
    sock.on('connect', () => {
      s.localPort = sock.localPort;
      sock.write(buildRequest('GET', reqPath, port, { Accept: 'text/event-stream', ...(opts.headers || {}) }, null, { connectionClose: false }));
    });
    sock.on('data', (d) => {
      try { rr.feed(d); } catch (e) { s.error = e; sock.destroy(); }
      if (rr.head && !resolved) {
        resolved = true;
        clearTimeout(timer);
        s.status = rr.head.status;
        s.headers = rr.head.headers;
        resolve(s);
      }
      if (rr.complete && !s.ended) { s.ended = true; sock.end(); }
    });
    sock.on('error', (e) => { if (!resolved) e.message += brokerNote(port); s.error = e; });
    sock.on('close', () => {
      s.closed = true;
      if (!resolved) { resolved = true; clearTimeout(timer); reject(new Error(`GET ${reqPath}: connection closed before a response head${s.error ? ` (${s.error.message})` : ''}`)); }
    });

    s.raw = () => s.bodyText;
    s.events = () => s.frames.filter(isEvent);
    s.pings = () => s.frames.filter(isPing);
    s.json = () => { try { return JSON.parse(s.bodyText); } catch { return undefined; } };
    s.describe = () => {
      const tail = s.frames.slice(-4).map((f) => `${f.id ?? '-'}/${f.event ?? (f.dataLines.length ? 'message' : f.retry !== undefined ? 'retry' : 'comment')}`);
      const body = s.bodyText.length > 1500 ? `...${JSON.stringify(s.bodyText.slice(-300))}` : JSON.stringify(s.bodyText);
      return `stream ${reqPath}: status ${s.status}, ended ${s.ended}, closed ${s.closed}, ${s.frames.length} frames (last: ${tail.join(' ')}), ${s.bodyText.length} body chars: ${body}`;
    };
    s.waitFor = (pred, ms = WAIT, what = 'condition') => waitFor(() => pred(s), ms, `${what} on ${reqPath}`, s.describe, 10);
    s.waitEvents = (n, ms = WAIT) => s.waitFor((x) => x.events().length >= n && x.events(), ms, `${n} event(s)`).then(() => s.events());
    s.waitPings = (n, ms = WAIT) => s.waitFor((x) => x.pings().length >= n, ms, `${n} ping(s)`).then(() => s.pings());
    /** Waits until the response ended or the socket closed; returns {clean}. */
    s.waitEnd = (ms = WAIT) => s.waitFor((x) => x.ended || x.closed, ms, 'the response to end').then(() => ({ clean: s.ended }));
    s.close = () => { sock.destroy(); };
  });
}

/** Opens a stream and asserts status 200 and the stream preamble (retry + comment). */
export async function subscribe(b, reqPath, opts = {}) {
  const s = await openStream(b.port, reqPath, opts);
  assert.equal(s.status, 200, `GET ${reqPath}: status ${s.status}; body ${s.bodyText}`);
  return s;
}

/** Waits until a stream's preamble (the first block, retry + comment) has arrived. */
export function waitPreamble(s, ms = WAIT) {
  return s.waitFor((x) => x.frames.length >= 1 && x.frames[0].retry !== undefined, ms, 'the retry/comment preamble');
}

/** Subscribes and waits until /stats/<channel> counts n subscribers (so a publish reaches it). */
export async function subscribeReady(b, channel, query = '', n = 1, opts = {}) {
  const s = await subscribe(b, `/events/${channel}${query}`, opts);
  await waitSubscribers(b, channel, n);
  return s;
}

/** Parses a Prometheus text body into [{name, labels, value}] (throws on a malformed line). */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`malformed metrics line: ${JSON.stringify(line)}`);
    out.push({ name: m[1], labels: m[2] || '', value: Number(m[3]) });
  }
  return out;
}

/** Sums the samples of one metric name. */
export function metricValue(samples, name) {
  const s = samples.filter((x) => x.name === name);
  assert.ok(s.length > 0, `metric ${name} not found`);
  return s.reduce((a, x) => a + x.value, 0);
}

/** Asserts an error answer: status, JSON content type, {"error": non-empty string}. */
export function assertJsonError(r, status, what = '') {
  assert.equal(r.status, status, `${what}: expected status ${status}, got ${r.status}, body ${r.body}`);
  assert.match(r.headers['content-type'] || '', /^application\/json/, `${what}: content-type ${r.headers['content-type']}`);
  assert.ok(r.json && typeof r.json.error === 'string' && r.json.error.length > 0, `${what}: body is not {"error":"..."}: ${r.body}`);
}

// ---------------------------------------------------------------------------
// Redis: a real redis-server per test on a unix socket in a private temp dir (no port
// races), a minimal RESP client, and the shared publish primitive called straight
// into Redis the way the pusher does (EVALSHA of the script text in common/redis_keys.c).

export const REDIS_SERVER = process.env.SSEPUSH_REDIS_SERVER || 'redis-server';
export const REDIS_SENTINEL = process.env.SSEPUSH_REDIS_SENTINEL || 'redis-sentinel';

/** Parses one RESP2 reply from buf at off; returns {value, end} or null when incomplete. */
function respParse(buf, off = 0) {
  const nl = buf.indexOf('\r\n', off);
  if (nl < 0) return null;
  const t = String.fromCharCode(buf[off]);
  const line = buf.subarray(off + 1, nl).toString('utf8');
  const next = nl + 2;
  if (t === '+') return { value: line, end: next };
  if (t === '-') { const e = new Error(line); e.redis = true; return { value: e, end: next }; }
  if (t === ':') return { value: Number(line), end: next };
  if (t === '$') {
    const n = Number(line);
    if (n < 0) return { value: null, end: next };
    if (buf.length < next + n + 2) return null;
    return { value: buf.subarray(next, next + n).toString('utf8'), end: next + n + 2 };
  }
  if (t === '*') {
    const n = Number(line);
    if (n < 0) return { value: null, end: next };
    const out = [];
    let p = next;
    for (let i = 0; i < n; i++) {
      const r = respParse(buf, p);
      if (!r) return null;
      out.push(r.value);
      p = r.end;
    }
    return { value: out, end: p };
  }
  throw new Error(`bad RESP type byte ${JSON.stringify(t)}`);
}

/** Encodes a command (array of strings/numbers/Buffers) as a RESP array of bulk strings. */
function respEncode(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a), 'utf8');
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Sends commands (each an array of arguments) on one fresh connection to a Redis at
 * {sock} or {port}; resolves the array of replies (a Redis error reply is an Error
 * object in the array, not a rejection). Rejects on connection errors and timeout.
 */
export function redisPipeline(target, commands, timeout = WAIT) {
  return new Promise((resolve, reject) => {
    const sock = target.sock ? net.connect({ path: target.sock }) : net.connect({ host: '127.0.0.1', port: target.port });
    let buf = Buffer.alloc(0);
    const replies = [];
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(replies);
    };
    const timer = setTimeout(() => finish(new Error(`redis: no reply within ${timeout} ms to ${JSON.stringify(commands.map((c) => c[0]))}`)), timeout);
    sock.on('connect', () => sock.write(Buffer.concat(commands.map(respEncode))));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      try {
        for (;;) {
          const r = respParse(buf, 0);
          if (!r) break;
          replies.push(r.value);
          buf = buf.subarray(r.end);
          if (replies.length === commands.length) { finish(); return; }
        }
      } catch (e) { finish(e); }
    });
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(new Error(`redis: connection closed after ${replies.length} of ${commands.length} replies`)));
  });
}

/** One command; resolves its reply, rejects on a Redis error reply too. */
export async function redisCommand(target, ...args) {
  const [r] = await redisPipeline(target, [args]);
  if (r instanceof Error) throw new Error(`redis ${args[0]}: ${r.message}`);
  return r;
}

/** Picks a TCP port that was free a moment ago (for Redis over TCP). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Describes a redis-server without starting it: a private dir, a unix socket in it
 * (or a TCP port with opts.tcp), `--save ""`, and with opts.persist an append-only
 * file fsynced on every write. Returns {dir, sock, port, url, target, start(), stop(),
 * kill(), restart({persist}), running(), log()}; url is what --redis takes.
 * Every process goes into the same cleanup set as the brokers (killed by pid).
 */
export async function redisServer(opts = {}) {
  const dir = tempDir();
  const r = {
    dir,
    persist: !!opts.persist,
    sock: opts.tcp ? null : path.join(dir, 'redis.sock'),
    port: opts.tcp ? await freePort() : 0,
    child: null,
    pid: null,
    logText: '',
    exitInfo: null,
  };
  r.url = r.sock ? `unix:${r.sock}` : `redis://127.0.0.1:${r.port}`;
  r.target = r.sock ? { sock: r.sock } : { port: r.port };
  r.log = () => r.logText;
  r.running = () => !!r.child && r.exitInfo === null;

  /** Starts redis-server (again, same socket and dir) and waits until it answers PING. */
  r.start = async ({ persist = r.persist } = {}) => {
    assert.ok(!r.running(), 'redis-server is already running');
    r.persist = persist;
    const argv = ['--port', String(r.port), '--bind', '127.0.0.1', '--save', '', '--dir', dir,
      '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'notice',
      '--appendonly', persist ? 'yes' : 'no'];
    if (persist) argv.push('--appendfsync', 'always');
    if (r.sock) argv.push('--unixsocket', r.sock, '--unixsocketperm', '700');
    if (opts.args) argv.push(...opts.args);
    if (!persist) {
      // Starting without persistence means starting empty, whatever an earlier run left.
      for (const f of ['appendonlydir', 'appendonly.aof', 'dump.rdb']) rmSync(path.join(dir, f), { recursive: true, force: true });
    }
    const child = spawn(REDIS_SERVER, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    r.child = child;
    r.pid = child.pid;
    r.exitInfo = null;
    const mine = { exit: null };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { r.logText += d; });
    child.stderr.on('data', (d) => { r.logText += d; });
    child.on('error', (e) => { r.logText += `spawn error: ${e.message}\n`; mine.exit = { code: -1, signal: null }; r.exitInfo = mine.exit; });
    child.once('exit', (code, signal) => {
      mine.exit = { code, signal };
      if (r.child === child) r.exitInfo = mine.exit;
      children.delete(child);
    });
    await waitFor(async () => {
      if (mine.exit) throw new Error(`redis-server exited (${JSON.stringify(mine.exit)}) before answering PING; log:\n${r.logText}`);
      return (await redisCommand(r.target, 'PING')) === 'PONG';
    }, START_TIMEOUT, 'redis-server to answer PING', () => `log:\n${r.logText}`, 25).catch((e) => {
      if (!mine.exit) { try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ } }
      throw e;
    });
    return r;
  };

  const waitGone = async (sig) => {
    const child = r.child;
    if (!child || r.exitInfo) return r.exitInfo;
    process.kill(child.pid, sig);
    const x = await waitExit(child, STOP_TIMEOUT);
    if (!x) throw new Error(`redis-server pid ${child.pid} did not exit within ${STOP_TIMEOUT} ms of ${sig}`);
    return x;
  };
  /** SIGTERM (a clean shutdown), waits for the exit. */
  r.stop = () => waitGone('SIGTERM');
  /** SIGKILL (a crash: nothing flushed that was not already), waits for the exit. */
  r.kill = () => waitGone('SIGKILL');
  /** Starts it again on the same socket/port and dir (persist: keep the AOF and load it). */
  r.restart = async (o = {}) => { if (r.running()) await r.stop(); return r.start(o); };
  return r;
}

/**
 * A Sentinel group for tests: a primary and opts.replicas replicas (redis-server over TCP)
 * and opts.sentinels sentinels (redis-sentinel, quorum 2) monitoring it as opts.name
 * ("mymaster"), with a short down-after-milliseconds (opts.downAfterMs, 1000) so that a
 * failover takes a second or two. Waits until every sentinel knows every replica and
 * every other sentinel, so a failover can happen. Returns {name, servers (primary
 * first), sentinels, url (sentinel://...), primary(), stop()}; primary() asks a
 * sentinel which server is the primary now.
 */
export async function startSentinelGroup(opts = {}) {
  const name = opts.name ?? 'mymaster';
  const nrep = opts.replicas ?? 1;
  const nsen = opts.sentinels ?? 3;
  const downAfter = opts.downAfterMs ?? 1000;
  // The sync settings are the serving side's: the primary's, and a replica's once a
  // failover promotes it. Redis 7's default delay (5 s, for more replicas to join one
  // transfer) made a replica that came after the first transfer began wait a second
  // 5 s, past START_TIMEOUT on a loaded machine.
  const sync = ['--repl-diskless-sync', 'yes', '--repl-diskless-sync-delay', '0'];
  const primary = await startRedis({ tcp: true, args: [...sync, ...(opts.args || [])] });
  const servers = [primary];
  for (let i = 0; i < nrep; i++) {
    servers.push(await startRedis({ tcp: true, args: ['--replicaof', '127.0.0.1', String(primary.port),
      ...sync, ...(opts.args || [])] }));
  }
  await waitFor(async () => {
    const info = await redisCommand(primary.target, 'INFO', 'replication');
    return new RegExp(`connected_slaves:${nrep}\\b`).test(info) &&
      (info.match(/state=online/g) || []).length === nrep;
  }, START_TIMEOUT, `${nrep} replicas online on the primary`);
  const sentinels = [];
  for (let i = 0; i < nsen; i++) {
    const dir = tempDir();
    const port = await freePort();
    const conf = path.join(dir, 'sentinel.conf');
    writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
      `sentinel down-after-milliseconds ${name} ${downAfter}`,
      `sentinel failover-timeout ${name} 3000`, `sentinel parallel-syncs ${name} 1`, ''].join('\n'));
    const child = spawn(REDIS_SENTINEL, [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const sen = { port, target: { port }, child, pid: child.pid, logText: '', exitInfo: null };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => { sen.logText += d; });
    child.stderr.on('data', (d) => { sen.logText += d; });
    child.once('exit', (code, signal) => { sen.exitInfo = { code, signal }; children.delete(child); });
    sen.log = () => sen.logText;
    sen.stop = async () => {
      if (sen.exitInfo) return;
      process.kill(child.pid, 'SIGTERM');
      await waitExit(child, STOP_TIMEOUT);
    };
    await waitFor(async () => {
      if (sen.exitInfo) throw new Error(`redis-sentinel exited ${JSON.stringify(sen.exitInfo)}: ${sen.logText}`);
      return (await redisCommand(sen.target, 'PING')) === 'PONG';
    }, START_TIMEOUT, 'redis-sentinel to answer PING', () => sen.logText);
    sentinels.push(sen);
  }
  await waitFor(async () => {
    for (const sen of sentinels) {
      const reps = await redisCommand(sen.target, 'SENTINEL', 'REPLICAS', name);
      const others = await redisCommand(sen.target, 'SENTINEL', 'SENTINELS', name);
      if (reps.length !== nrep || others.length !== nsen - 1) return false;
    }
    return true;
  }, 20000, 'every sentinel to know every replica and every other sentinel', null, 100);
  const g = { name, servers, sentinels };
  g.url = `sentinel://${sentinels.map((x) => `127.0.0.1:${x.port}`).join(',')}/${name}`;
  /** The server the sentinels name as primary now (asked of the first one that answers). */
  g.primary = async () => {
    for (const sen of sentinels) {
      if (sen.exitInfo) continue;
      try {
        const [, port] = await redisCommand(sen.target, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name);
        return servers.find((x) => x.port === Number(port));
      } catch { /* the next one */ }
    }
    return null;
  };
  /** Stops the sentinels, then every server still running. */
  g.stop = async () => {
    for (const sen of sentinels) await sen.stop();
    for (const r of servers) if (r.running()) await r.stop();
  };
  return g;
}

const U64 = (1n << 64n) - 1n;
/**
 * The shard that holds a channel among n (common/redis_shard.c, written again here so a
 * test can check where keys land): jump consistent hash of the name's 64-bit FNV-1a.
 */
export function redisShardOf(name, n) {
  if (n <= 1) return 0;
  let key = 0xcbf29ce484222325n;
  for (const c of Buffer.from(name, 'utf8')) key = ((key ^ BigInt(c)) * 0x100000001b3n) & U64;
  let b = -1;
  let j = 0;
  while (j < n) {
    b = j;
    key = (key * 2862933555777941757n + 1n) & U64;
    j = Math.floor((b + 1) * (2147483648 / Number((key >> 33n) + 1n)));
  }
  return b;
}

/** redisServer(opts), started. */
export async function startRedis(opts = {}) {
  const r = await redisServer(opts);
  return r.start();
}

/** Extracts the C string literal `const char NAME[] = "..." "...";` from a C file's text. */
export function cStringLiteral(source, name) {
  const start = source.indexOf(`${name}[] =`);
  assert.ok(start >= 0, `${name} not found`);
  let i = source.indexOf('=', start) + 1;
  let out = '';
  for (;;) {
    while (/\s/.test(source[i])) i++;
    if (source[i] === ';') return out;
    assert.equal(source[i], '"', `unexpected ${JSON.stringify(source.slice(i, i + 20))} in ${name}`);
    i++;
    while (source[i] !== '"') {
      if (source[i] === '\\') {
        const c = source[i + 1];
        const map = { n: '\n', t: '\t', r: '\r', '\\': '\\', '"': '"', "'": "'", 0: '\0' };
        assert.ok(c in map, `unsupported escape \\${c} in ${name}`);
        out += map[c];
        i += 2;
      } else out += source[i++];
    }
    i++;
  }
}

/** The shared publish script's text, read from common/redis_keys.c. */
export function busPublishScript() {
  const src = readFileSync(path.resolve(here, '../../common/redis_keys.c'), 'utf8');
  return cStringLiteral(src, 'bus_publish_script');
}

/**
 * Publishes straight into Redis with the shared primitive (as the pusher does): loads
 * the script text from common/redis_keys.c (SCRIPT LOAD is idempotent; its SHA is checked
 * against sha1 of the text) and calls EVALSHA. Returns {id, subscribers}.
 * opts: {prefix ("ssepush:"), type, session, exclude_session, origin, history_size, history_ttl (s)}.
 */
export async function redisPublish(target, channel, data, opts = {}) {
  const prefix = opts.prefix ?? 'ssepush:';
  const script = busPublishScript();
  const sha = createHash('sha1').update(script, 'utf8').digest('hex');
  const loaded = await redisCommand(target, 'SCRIPT', 'LOAD', script);
  assert.equal(loaded, sha, 'SCRIPT LOAD returned a SHA other than sha1 of the script text');
  const r = await redisCommand(target, 'EVALSHA', sha, 4,
    `${prefix}h:${channel}`, `${prefix}n:${channel}`, `${prefix}c:${channel}`, `${prefix}w:${channel}`,
    opts.history_size ?? 100, (opts.history_ttl ?? 600) * 1000, opts.type ?? 'message',
    opts.session ?? '', opts.exclude_session ?? '', opts.origin ?? '', data, `${prefix}b:`,
    `${prefix}wq`);
  assert.ok(Array.isArray(r) && r.length === 2, `EVALSHA publish reply ${JSON.stringify(r)}`);
  return { id: r[0], subscribers: r[1] };
}

/** Sum of a channel's subscriber counts registered in Redis (all brokers, live or not). */
export async function redisCountSum(target, channel, prefix = 'ssepush:') {
  const flat = await redisCommand(target, 'HGETALL', `${prefix}n:${channel}`);
  let n = 0;
  for (let i = 1; i < flat.length; i += 2) n += Number(flat[i]);
  return n;
}

/** Starts a broker on Redis r (--redis r.url plus args); with opts.waitBus (default) waits for "redis: connected as broker". */
export async function startRedisBroker(r, args = [], opts = {}) {
  const b = await startBroker(['--redis', r.url, ...args], opts);
  if (opts.waitBus !== false) await b.waitLog(/redis: connected as broker [0-9a-f]+/, START_TIMEOUT);
  return b;
}

/** Compares two Redis stream ids "ms-seq" (-1, 0, 1). */
export function compareStreamIds(a, b) {
  const pa = /^(\d+)-(\d+)$/.exec(a);
  const pb = /^(\d+)-(\d+)$/.exec(b);
  assert.ok(pa && pb, `not stream ids: ${a}, ${b}`);
  const [ma, sa, mb, sb] = [BigInt(pa[1]), BigInt(pa[2]), BigInt(pb[1]), BigInt(pb[2])];
  if (ma !== mb) return ma < mb ? -1 : 1;
  if (sa !== sb) return sa < sb ? -1 : 1;
  return 0;
}

/** Waits until the counts registered in Redis for channel sum to n (every broker subscribed and counted). */
export function waitRedisCount(r, channel, n, ms = WAIT, prefix = 'ssepush:') {
  let last = null;
  return waitFor(async () => {
    last = await redisCountSum(r.target, channel, prefix);
    return last === n;
  }, ms, `the subscriber counts in Redis for ${channel} to sum to ${n}`, () => `last sum ${last}`, 25);
}

/** Polls GET /healthz on b until its status is `status`; returns the last response. */
export function waitHealth(b, status, ms = WAIT) {
  let last = null;
  return waitFor(async () => {
    last = await http(b.publishPort, '/healthz');
    return last.status === status ? last : null;
  }, ms, `/healthz on port ${b.publishPort} to answer ${status}`, () => `last: ${last ? `${last.status} ${last.body}` : 'none'}`, 25);
}

/** Stops streams, brokers and Redis (if it still runs), reporting the first failure after trying them all. */
export async function stopAll(brokers, r, streams = []) {
  for (const s of streams) s.close();
  let err = null;
  for (const b of brokers) {
    try { await b.stop(); } catch (e) { err ||= e; }
  }
  if (r) { try { if (r.running()) await r.stop(); } catch (e) { err ||= e; } }
  if (err) throw err;
}
