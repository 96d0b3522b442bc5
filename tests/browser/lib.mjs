// Harness for the browser tests: Debian's chromium driven by playwright-core (its own
// browser download is not used), a fresh profile in a private temp dir per browser,
// test pages served under the broker's (or the relay's, or nginx's) origin by request
// interception (so /ssepush.js, /events and /publish are the real broker's), a TCP relay
// that can turn into a NAT black hole, and the shipped nginx examples in front of a
// broker. Brokers come from ../functional/lib.mjs. Waits are bounded polls on
// observable state; nothing measures speed.

import net from 'node:net';
import httpServer from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import {
  tempDir, waitFor, runProcess, spawnProcess, freePort, http, parseMetrics, START_TIMEOUT, STOP_TIMEOUT,
} from '../functional/lib.mjs';

export * from '../functional/lib.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const BWAIT = 15000;	// generous: ASan broker, 2 cores, a real browser

const contexts = new Set();

/**
 * Launches chromium headless with a fresh user-data-dir (a private temp dir) and
 * returns its one browser context (pages in it are tabs of one profile).
 */
export async function launch() {
  const ctx = await chromium.launchPersistentContext(tempDir(), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  contexts.add(ctx);
  return ctx;
}

/**
 * Launches chromium headless as a browser in which newContext() gives independent
 * contexts (own cookies, own clock), cheaper than a browser each; Playwright gives it
 * a fresh temporary profile and removes it on close. Returns the Browser.
 */
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  contexts.add(browser);
  return browser;
}

/** Closes every browser launched here. */
export async function closeBrowsers() {
  for (const ctx of contexts) {
    try { await ctx.close(); } catch { /* already gone */ }
  }
  contexts.clear();
}

/**
 * Opens a tab at <origin>/t/<name>.html, a page that loads the real /ssepush.js from
 * that origin and runs `new SsePush(path, options)` as window.push, logging into
 * window.log ({type, id, data} per event, resets included), window.resets,
 * window.states, window.stateLog ({state, info, t} with t the page clock's Date.now())
 * and window.failures (onerror's arguments). opts.init: a function run in the page
 * before any script (e.g. to delete EventSource, or to set window.SSEPUSH_EXTRA: more
 * options, such as functions, merged into options). opts.page: reuse this page.
 * opts.script: more script run after the client is made. Returns the page.
 */
export async function openClient(ctx, origin, path, options = {}, opts = {}) {
  const page = opts.page || await ctx.newPage();
  const name = `client-${Math.random().toString(36).slice(2)}`;
  const body = `<!doctype html><meta charset="utf-8"><title>${name}</title>
<script src="/ssepush.js"></script>
<script>
window.log = []; window.resets = []; window.states = []; window.stateLog = []; window.failures = [];
window.push = new SsePush(${JSON.stringify(path)}, Object.assign(${JSON.stringify(options)}, window.SSEPUSH_EXTRA || {}));
push.onstate = (s, info) => { states.push(s); stateLog.push({ state: s, info: info || null, t: Date.now() }); };
push.onerror = (e) => failures.push(e);
push.onreset = (r) => resets.push(r);
push.on('*', (e) => log.push({ type: e.type, id: e.id, data: e.data }));
for (const t of ${JSON.stringify(opts.types || [])}) push.on(t, () => {});
${opts.script || ''}
</script>`;
  await page.route(`${origin}/t/${name}.html`, (r) => r.fulfill({ contentType: 'text/html; charset=utf-8', body }));
  if (opts.init) await page.addInitScript(opts.init);
  page.on('pageerror', (e) => { page.errors = (page.errors || []).concat(String(e)); });
  await page.goto(`${origin}/t/${name}.html`);
  return page;
}

/** The events a client page logged (without pings), as [type, id, data]. */
export async function pageLog(page) {
  return (await page.evaluate(() => window.log)).map((e) => [e.type, e.id, e.data]);
}

/** Waits until a page logged at least n events; returns the log. */
export function waitLog(page, n, ms = BWAIT, what = `${n} event(s) in the page`) {
  let last = [];
  return waitFor(async () => {
    last = await pageLog(page);
    return last.length >= n ? last : null;
  }, ms, what, () => `page log: ${JSON.stringify(last)}; state ${page.url()}`, 50);
}

/** Evaluates fn in the page until it returns a truthy value. */
export function waitPage(page, fn, arg, ms = BWAIT, what = 'page condition') {
  let last;
  return waitFor(async () => {
    last = await page.evaluate(fn, arg);
    return last;
  }, ms, what, () => `last value ${JSON.stringify(last)}`, 50);
}

/** Publishes with curl (as an application backend would); returns {channel, id, subscribers}. */
export async function curlPublish(b, channel, data, type = null) {
  const url = `${b.publishUrl}/publish/${encodeURIComponent(channel)}${type ? `?event=${encodeURIComponent(type)}` : ''}`;
  const r = await runProcess('curl', ['-sS', '--fail-with-body', '-H', 'Content-Type: text/plain; charset=utf-8', '--data-binary', data, url]);
  if (r.code !== 0) throw new Error(`curl publish to ${channel} failed (${r.code}): ${r.stdout} ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * A TCP relay on a free loopback port to target port, standing in for a NAT box.
 * blackhole(): from now on every existing and new connection silently swallows data
 * both ways and never closes (a forgotten mapping: no RST, no FIN). restore(): new
 * connections work again (black-holed ones stay dead, as after a real NAT timeout).
 * cut(): closes every connection (a visible network error). Returns
 * {port, url, connections(), blackhole(), restore(), cut(), close()}.
 */
export async function startRelay(targetPort) {
  const pairs = new Set();
  let dropNew = false;
  let total = 0;
  const server = net.createServer((client) => {
    total++;
    const pair = { client, upstream: null, dead: dropNew };
    pairs.add(pair);
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    pair.upstream = upstream;
    const wire = (from, to) => {
      from.on('data', (d) => { if (!pair.dead) to.write(d); });
      from.on('end', () => { if (!pair.dead) to.end(); });
      from.on('error', () => { if (!pair.dead) to.destroy(); });
      from.on('close', () => { if (!pair.dead) { to.destroy(); pairs.delete(pair); } });
    };
    wire(client, upstream);
    wire(upstream, client);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    connections: () => total,
    blackhole() { dropNew = true; for (const p of pairs) p.dead = true; },
    restore() { dropNew = false; },
    cut() { for (const p of pairs) { p.dead = false; p.client.destroy(); p.upstream.destroy(); } pairs.clear(); },
    close() {
      for (const p of pairs) { p.client.destroy(); p.upstream.destroy(); }
      pairs.clear();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Opens a tab at <origin>/t/<name>.html whose page uses the browser's own EventSource
 * (no ssepush.js) on path, recording into window.seen: {type: 'open'|'error'|'message'
 * or a listened type, state (readyState at that moment), data, id}. Returns the page.
 */
export async function openNative(ctx, origin, path, types = []) {
  const page = await ctx.newPage();
  const name = `native-${Math.random().toString(36).slice(2)}`;
  const body = `<!doctype html><meta charset="utf-8"><title>${name}</title>
<script>
window.seen = [];
window.es = new EventSource(${JSON.stringify(path)});
const note = (type, e) => seen.push({ type, state: es.readyState, data: e ? e.data : null, id: e ? e.lastEventId : null });
es.addEventListener('open', () => note('open'));
es.addEventListener('error', () => note('error'));
for (const t of ['message', ...${JSON.stringify(types)}]) es.addEventListener(t, (e) => note(t, e));
</script>`;
  await page.route(`${origin}/t/${name}.html`, (r) => r.fulfill({ contentType: 'text/html; charset=utf-8', body }));
  page.on('pageerror', (e) => { page.errors = (page.errors || []).concat(String(e)); });
  await page.goto(`${origin}/t/${name}.html`);
  return page;
}

/** One sample of the broker's /metrics (name, and labels such as '{reason="x"}'), or 0. */
export async function metric(b, name, labels = '') {
  const r = await http(b.publishPort, '/metrics');
  assert.equal(r.status, 200, `/metrics: ${r.status} ${r.body}`);
  const s = parseMetrics(r.body).find((x) => x.name === name && (x.labels || '') === labels);
  return s ? s.value : 0;
}

// ---------------------------------------------------------------------------
export * from '../functional/nginx-lib.mjs';
