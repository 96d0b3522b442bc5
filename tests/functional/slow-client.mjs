// A slowloris client for hostile.test.mjs, run as its own process (one process may
// hold only so many files): opens COUNT connections from LOCAL_ADDRESS to PORT, sends
// the start of a request, then one more header byte every INTERVAL ms on each, for at
// most DURATION ms. Prints one JSON line when done: how many connections were made,
// how many the server closed (refusedEarly: within 300 ms of their connect), the last
// close (ms after the start) and how many are still open.
// usage: node slow-client.mjs PORT LOCAL_ADDRESS COUNT INTERVAL DURATION
import net from 'node:net';

const [port, localAddress, count, interval, duration] = process.argv.slice(2).map((v, i) => (i === 1 ? v : Number(v)));
const start = Date.now();
const socks = [];
let connected = 0;
let closed = 0;
let refusedEarly = 0;
const closedAt = [];
let opened = 0;

function open() {
  if (opened >= count) return;
  opened++;
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  let since = null;
  s.on('connect', () => {
    connected++;
    since = Date.now();
    s.write('GET /events/slow HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  });
  s.on('error', () => {});
  s.on('close', () => {
    closed++;
    const at = Date.now() - start;
    closedAt.push(at);
    if (since === null || Date.now() - since < 300) refusedEarly++;	// closed at once: refused
  });
  s.on('data', () => {});
  socks.push(s);
}
// Open them over the first second (a burst, not all in one tick).
const opener = setInterval(() => { for (let i = 0; i < Math.ceil(count / 20); i++) open(); if (opened >= count) clearInterval(opener); }, 50);
const dribble = setInterval(() => { for (const s of socks) if (!s.destroyed) s.write('a'); }, interval);
setTimeout(() => {
  clearInterval(dribble);
  clearInterval(opener);
  const stillOpen = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
  closedAt.sort((a, b) => a - b);
  process.stdout.write(JSON.stringify({ opened, connected, closed, stillOpen, refusedEarly, lastClosedMs: closedAt[closedAt.length - 1] ?? null }) + '\n');
  for (const s of socks) s.destroy();
  process.exit(0);
}, duration);
