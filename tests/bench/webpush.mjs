// Web push figures (not part of make test or make bench: run by hand on a quiet machine):
//   node tests/bench/webpush.mjs [BROKER]
// 1. throughput: one channel with REGS registrations on a loopback sink that answers 201
//    (keep-alive, no decryption, so the sink is not what is measured); EVENTS publishes;
//    messages encrypted and sent per CPU second of the broker (utime+stime from /proc),
//    i.e. per core, and per wall second;
// 2. latency: one registration, events published one at a time; from the start of the
//    publish request to the sink having the push request (the 201 follows at once),
//    p50/p90/p99, and the broker's own ssepush_webpush_latency_seconds histogram.
import http from 'node:http';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
process.env.SSEPUSH_BROKER ||= process.argv[2] || path.resolve(here, '../../build/ssepush-broker');
const { startBroker, publishOk, killAll, freePort } = await import('../functional/lib.mjs');
const { vapidKeyFile, webpushArgs } = await import('../functional/webpush-lib.mjs');

const REGS = Number(process.env.REGS || 50);
const EVENTS = Number(process.env.EVENTS || 400);
const LAT = Number(process.env.LAT || 300);

let received = 0;
const waiters = [];
const sink = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    received++;
    const now = process.hrtime.bigint();
    for (const w of waiters.splice(0)) w(now);
    res.writeHead(201).end();
  });
});
const port = await freePort();
await new Promise((r) => sink.listen(port, '127.0.0.1', r));
const origin = `http://127.0.0.1:${port}`;
const b = await startBroker(webpushArgs(await vapidKeyFile(), [origin], { webpush_concurrency: 64, webpush_queue: 1000000, webpush_max_per_channel: 1000 }));
const cpu = () => { const f = readFileSync(`/proc/${b.pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
const ecdhKey = (await import('node:crypto')).createECDH('prime256v1');
ecdhKey.generateKeys();
const keys = { p256dh: ecdhKey.getPublicKey().toString('base64url'), auth: Buffer.alloc(16, 7).toString('base64url') };
for (let i = 0; i < REGS; i++) {
  const r = await fetch(`${b.url}/webpush/bench`, { method: 'POST', body: JSON.stringify({ endpoint: `${origin}/p/${i}`, keys }) });
  if (r.status !== 201) throw new Error(`register: ${r.status} ${await r.text()}`);
}
const want = REGS * EVENTS;
const c0 = cpu();
const t0 = process.hrtime.bigint();
for (let i = 0; i < EVENTS; i++) await publishOk(b, 'bench', `{"n":${i},"pad":"${'x'.repeat(200)}"}`);
while (received < want) await new Promise((r) => setTimeout(r, 5));
const wall = Number(process.hrtime.bigint() - t0) / 1e9;
const used = cpu() - c0;
console.log(`throughput: ${want} messages (${EVENTS} events x ${REGS} registrations) in ${wall.toFixed(2)} s wall, ${used.toFixed(2)} s broker CPU: ${(want / used).toFixed(0)} messages per core-second, ${(want / wall).toFixed(0)} per wall second`);

// Latency: a channel of its own with one registration.
const r1 = await fetch(`${b.url}/webpush/lat`, { method: 'POST', body: JSON.stringify({ endpoint: `${origin}/p/lat`, keys }) });
if (r1.status !== 201) throw new Error('register lat');
const lat = [];
for (let i = 0; i < LAT; i++) {
  const got = new Promise((r) => waiters.push(r));
  const s = process.hrtime.bigint();
  await publishOk(b, 'lat', `e${i}`);
  lat.push(Number((await got) - s) / 1e6);
}
lat.sort((x, y) => x - y);
const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))].toFixed(2);
console.log(`latency publish -> push request at the service (201): p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms, max ${lat.at(-1).toFixed(2)} ms over ${LAT}`);
const m = (await (await fetch(`${b.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('ssepush_webpush_latency_seconds_') || l.startsWith('ssepush_webpush_sent_total'));
console.log(m.join('\n'));
await b.stop();
sink.closeAllConnections();
sink.close();
killAll();
