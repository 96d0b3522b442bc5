// TCP keepalive on subscriber sockets, read back with `ss -tnoi`: with tcp_keepalive on
// and tcp_keepidle 7 the broker's side of the stream shows a keepalive timer of at most
// 7 s; without the option it shows none.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, subscribe, waitPreamble, runProcess, waitFor,
} from './lib.mjs';

after(killAll);

/** Returns the `ss -tnoi` text for the broker-side socket of a subscriber. */
async function ssFor(b, s) {
  const filter = `( sport = :${b.port} and dport = :${s.localPort} )`;
  const r = await runProcess('ss', ['-tnoi', 'state', 'established', filter]);
  assert.equal(r.code, 0, `ss failed: ${r.stderr}`);
  return r.stdout;
}

/** True when ss output lists the connection (a line with both ports). */
function listed(out, b, s) {
  return out.includes(`:${b.port}`) && out.includes(`:${s.localPort}`);
}

test('tcp_keepalive on: subscriber socket has a keepalive timer bounded by tcp_keepidle', { timeout: 30000 }, async () => {
  const b = await startBroker(['--tcp_keepalive', 'on', '--tcp_keepidle', '7', '--tcp_keepintvl', '3', '--tcp_keepcnt', '4']);
  try {
    const s = await subscribe(b, '/events/ka');
    await waitPreamble(s);
    let out = '';
    await waitFor(async () => {
      out = await ssFor(b, s);
      return listed(out, b, s) && /timer:\(keepalive,/.test(out);
    }, 5000, 'a keepalive timer on the subscriber socket', () => `ss output:\n${out}`, 100);
    // ss prints the time left as e.g. "119min", "3min19sec", "45sec", "6.776ms" (6.776 s), "776ms".
    const m = /timer:\(keepalive,([^,]+),\d+\)/.exec(out);
    assert.ok(m, `cannot read the keepalive timer in:\n${out}`);
    const t = /^(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?$/.exec(m[1]);
    assert.ok(t, `unknown ss timer format ${m[1]}`);
    const total = Number(t[1] || 0) * 60 + Number(t[2] || 0) + Number(t[3] || 0) / 1000;
    assert.ok(total <= 7, `keepalive timer ${total}s is longer than tcp_keepidle 7 (default 7200 s still in force?):\n${out}`);
    s.close();
  } finally { await b.stop(); }
});

test('tcp_keepalive off (default): no keepalive timer on the subscriber socket', { timeout: 30000 }, async () => {
  const b = await startBroker();
  try {
    const s = await subscribe(b, '/events/noka');
    await waitPreamble(s);
    let out = '';
    await waitFor(async () => { out = await ssFor(b, s); return listed(out, b, s); }, 5000, 'ss to list the subscriber socket', () => out, 100);
    assert.ok(!/keepalive/.test(out), `keepalive timer without tcp_keepalive:\n${out}`);
    s.close();
  } finally { await b.stop(); }
});
