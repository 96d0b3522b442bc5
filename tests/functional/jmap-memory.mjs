// Measures the broker's memory per idle JMAP stream (not a test: run by hand, see
// README "JMAP push"): N idle streams on /jmap/eventsource/ (each its own account, a
// state fed first, types=*), and N that follow two accounts each (a token naming its own
// and a shared one), against N idle /events/ streams, as the growth of the broker's
// VmRSS divided by N. Usage: node jmap-memory.mjs [N]
import net from 'node:net';
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startBroker, publishOk, waitFor, killAll } from './lib.mjs';

const N = Number(process.argv[2] || 2000);
const rss = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);

const SECRET = 'jmap-memory-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function token(claims) {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${input}.${crypto.createHmac('sha256', SECRET).update(input).digest('base64url')}`;
}

async function open(port, paths) {
  const socks = [];
  let ok = 0;
  for (const p of paths) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('data', (d) => { if (!s.seen && /^HTTP\/1\.1 200/.test(d.toString())) { s.seen = true; ok++; } });
    s.on('error', () => {});
    s.write(`GET ${p} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
    socks.push(s);
  }
  await waitFor(() => ok === paths.length, 60000, `${paths.length} streams`, () => `${ok} open`);
  return socks;
}

async function measure(kind) {
  const auth = kind === 'jmap2' ? ['--auth', 'token', '--token_secret', SECRET] : [];
  const b = await startBroker(['--max_connections', String(N + 100), '--ping_interval', '0', '--max_pending_per_address', '1000000', ...auth], {});
  try {
    const paths = [];
    for (let i = 0; i < N; i++) {
      if (kind === 'jmap') {
        await publishOk(b, `acct${i}`, JSON.stringify({ Email: String(1000 + i), Mailbox: String(1000 + i), Thread: String(1000 + i) }), { query: { event: 'jmap-state' } });
        paths.push(`/jmap/eventsource/?account=acct${i}&types=*&closeafter=no&ping=0`);
      } else if (kind === 'jmap2') {
        for (const a of [`acct${i}`, `shared${i}`]) await publishOk(b, a, JSON.stringify({ Email: String(1000 + i), Mailbox: String(1000 + i) }), { query: { event: 'jmap-state' } });
        paths.push(`/jmap/eventsource/?types=*&closeafter=no&ping=0&token=${token({ sub: `acct${i}`, channels: [`shared${i}`], exp: Math.floor(Date.now() / 1000) + 3600 })}`);
      } else paths.push(`/events/acct${i}`);
    }
    await new Promise((r) => setTimeout(r, 500));
    const before = rss(b.pid);
    const socks = await open(b.port, paths);
    await new Promise((r) => setTimeout(r, 1000));
    const after = rss(b.pid);
    console.log(`${kind}: ${N} idle streams: VmRSS ${before} kB -> ${after} kB: ${((after - before) * 1024 / N).toFixed(0)} bytes per stream`);
    for (const s of socks) s.destroy();
  } finally { await b.stop(); }
}

try {
  await measure('events');
  await measure('jmap');
  await measure('jmap2');
} finally { killAll(); }
