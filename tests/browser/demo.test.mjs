// The demo page (demo on) shows every event that arrives on its channel, whatever its
// type: the README's own curl line (?event=change) shows up, the broker's own ping and
// reset are marked as the broker's; and long lines wrap: a 5,000-character word (on a
// 200-character channel, on a phone-sized window) never makes the page scroll sideways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startBroker, killAll, launch, closeBrowsers, curlPublish, waitSubscribers, waitPage, runProcess, BWAIT,
} from './lib.mjs';

const README = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../README.md');
const ARGS = ['--demo', 'on', '--ping_min', '1', '--reconnect_ms', '200'];

let b;
let ctx;
before(async () => {
  b = await startBroker(ARGS);
  ctx = await launch();
});
after(async () => { try { await closeBrowsers(); if (b) await b.stop(); } finally { killAll(); } });

/** The README's publish example ("Try it with curl"), for a broker at url. */
function readmeCurl(url) {
  const text = readFileSync(README, 'utf8');
  const m = /^curl -d '.*' 'http:\/\/127\.0\.0\.1:8080\/publish\/[^']*\?event=change'$/m.exec(text);
  assert.ok(m, 'README.md has no `curl -d ... /publish/...?event=change` line');
  return m[0].split('http://127.0.0.1:8080').join(url);
}

/** The demo's list entry for an event, as {type, own, cls, text}. */
const entry = (page, sel) => page.locator(sel).first().evaluate((li) => ({
  type: li.dataset.type, own: li.dataset.own || null, cls: li.className, text: li.textContent,
}));

test('the README\'s curl line shows up in the demo as a change event; ping and reset are marked as the broker\'s', async () => {
  const line = readmeCurl(b.url);
  const ch = /\/publish\/([^?']+)/.exec(line)[1];
  const page = await ctx.newPage();
  await page.goto(`${b.url}/?channel=${encodeURIComponent(ch)}&ping=1`);
  await page.locator('#state', { hasText: 'open' }).waitFor({ timeout: BWAIT });
  await waitSubscribers(b, ch, 1);
  const r = await runProcess('sh', ['-c', line]);
  assert.equal(r.code, 0, `${line}: ${r.stderr}`);
  const p = JSON.parse(r.stdout);
  const data = /-d '([^']*)'/.exec(line)[1];
  await page.locator(`#events li[data-id="${p.id}"]`).waitFor({ timeout: BWAIT });
  assert.deepEqual(await entry(page, `#events li[data-id="${p.id}"]`),
    { type: 'change', own: null, cls: '', text: `${p.id}  change  ${data}` });

  // The broker's own: a ping (ping=1), and a reset once the broker restarted (its ids
  // are per process), each marked.
  await page.locator('#events li[data-type="ping"]').first().waitFor({ timeout: BWAIT });
  const ping = await entry(page, '#events li[data-type="ping"]');
  assert.equal(ping.own, 'broker');
  assert.match(ping.text, /^-  ping  broker  \{"interval":1\}$/);
  const port = b.port;
  await b.stop();
  b = await startBroker(['--listen', `127.0.0.1:${port}`, ...ARGS]);
  await page.locator('#events li[data-type="reset"]').waitFor({ timeout: BWAIT });
  const reset = await entry(page, '#events li[data-type="reset"]');
  assert.equal(reset.own, 'broker');
  assert.match(reset.cls, /\breset\b/);
  assert.match(reset.text, /^[0-9a-f]{12}-\d+  reset  broker  \{"reason":"unknown"\}$/);
  await page.locator('#state', { hasText: 'open' }).waitFor({ timeout: BWAIT });
  await page.close();
});

test('a 5,000-character word wraps: no sideways scrolling, on a phone-sized window too', async () => {
  const ch = 'c'.repeat(200);	// the longest channel name, in the header and the curl line
  const page = await ctx.newPage();
  await page.setViewportSize({ width: 360, height: 640 });
  await page.goto(`${b.url}/?channel=${ch}`);
  await page.locator('#state', { hasText: 'open' }).waitFor({ timeout: BWAIT });
  await waitSubscribers(b, ch, 1);
  const word = 'x'.repeat(5000);
  const p = await curlPublish(b, ch, word, 'change');
  const li = page.locator(`#events li[data-id="${p.id}"]`);
  await li.waitFor({ timeout: BWAIT });
  const m = await page.evaluate((id) => {
    const el = document.querySelector(`#events li[data-id="${id}"]`);
    return {
      scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
      liScroll: el.scrollWidth, liClient: el.clientWidth, liHeight: el.getBoundingClientRect().height,
      line: parseFloat(getComputedStyle(el).lineHeight) || 20, text: el.textContent.length,
    };
  }, p.id);
  assert.ok(m.scrollWidth <= m.innerWidth, `the page is ${m.scrollWidth} px wide in a ${m.innerWidth} px window`);
  assert.ok(m.liScroll <= m.liClient, `the entry overflows: ${JSON.stringify(m)}`);
  assert.ok(m.liHeight > 20 * m.line, `the word is not wrapped onto many lines: ${JSON.stringify(m)}`);
  assert.ok(m.text >= 5000, 'the whole word is in the page');
  await waitPage(page, () => document.documentElement.scrollWidth <= window.innerWidth, null, BWAIT, 'no sideways scroll');
  await page.close();
});
