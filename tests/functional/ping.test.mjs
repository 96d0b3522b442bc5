// Pings: `event: ping` + `data: {"interval":N}` with no id, repeated while idle,
// postponed by events, clamped to [ping_min, ping_max], disabled by ?ping=0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, subscribe, subscribeReady, publishOk, sleep, openStream,
} from './lib.mjs';

let b;
before(async () => { b = await startBroker(['--ping_min', '1', '--ping_max', '2']); });
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

/** Asserts every ping frame of s is exactly the ping of interval n. */
function assertPings(s, n) {
  for (const p of s.pings()) {
    assert.equal(p.id, undefined, `a ping carries an id: ${JSON.stringify(p)}`);
    assert.equal(p.data, `{"interval":${n}}`);
  }
  const raw = s.raw();
  const count = raw.split(`event: ping\ndata: {"interval":${n}}\n\n`).length - 1;
  assert.equal(count, s.pings().length, `raw ping framing differs: ${JSON.stringify(raw)}`);
  assert.ok(!/id: [^\n]*\nevent: ping/.test(raw), 'an id line precedes a ping');
}

test('?ping=1 sends pings repeatedly while idle', { timeout: 30000 }, async () => {
  const s = await subscribe(b, '/events/pg1?ping=1');
  try {
    await s.waitPings(3, 10000);
    assertPings(s, 1);
    assert.ok(!s.ended && !s.closed, 'the stream ended');
    // Pings are events, not comments: the only comment is the preamble's.
    assert.deepEqual(s.frames.flatMap((f) => f.comments), ['ssepush']);
  } finally { s.close(); }
});

test('--ping_interval 1 gives pings without ?ping', { timeout: 30000 }, async () => {
  const c = await startBroker(['--ping_interval', '1', '--ping_min', '1']);
  try {
    const s = await subscribe(c, '/events/pgdef');
    try {
      await s.waitPings(2, 10000);
      assertPings(s, 1);
    } finally { s.close(); }
  } finally { await c.stop(); }
});

test('?ping above ping_max is clamped to ping_max', { timeout: 30000 }, async () => {
  const s = await subscribe(b, '/events/pgmax?ping=60');
  try {
    await s.waitPings(1, 10000);
    assertPings(s, 2);
  } finally { s.close(); }
});

test('?ping far above ping_max (99999, and more digits than fit in 64 bits) is clamped, not refused', { timeout: 30000 }, async () => {
  for (const v of ['99999', '86401', '000000000000000000099999', '99999999999999999999999999']) {
    const s = await subscribe(b, `/events/pgbig?ping=${v}`);
    try {
      await s.waitPings(1, 10000);
      assertPings(s, 2);
    } finally { s.close(); }
  }
});

test('?ping that is not a decimal number is still 400', { timeout: 30000 }, async () => {
  for (const v of ['-1', '1.5', 'x', '', '%2B5', '1e3']) {
    const s = await openStream(b.port, `/events/pgbad?ping=${v}`);
    try {
      assert.equal(s.status, 400, `?ping=${v}: ${s.describe()}`);
    } finally { s.close(); }
  }
});

test('?ping below ping_min is clamped to ping_min', { timeout: 30000 }, async () => {
  const c = await startBroker(['--ping_min', '2', '--ping_max', '5']);
  try {
    const s = await subscribe(c, '/events/pgmin?ping=1');
    try {
      await s.waitPings(1, 10000);
      assertPings(s, 2);
    } finally { s.close(); }
  } finally { await c.stop(); }
});

test('?ping=0 disables pings', { timeout: 30000 }, async () => {
  const c = await startBroker(['--ping_interval', '1', '--ping_min', '1']);
  try {
    const off = await subscribe(c, '/events/pgoff?ping=0');
    const on = await subscribe(c, '/events/pgoff');
    try {
      // While the default subscriber gets three pings, the ?ping=0 one gets none.
      await on.waitPings(3, 10000);
      assert.equal(off.pings().length, 0, off.describe());
      assert.ok(!off.ended && !off.closed, 'the ?ping=0 stream ended');
    } finally { off.close(); on.close(); }
  } finally { await c.stop(); }
});

test('events postpone pings; the ping comes once events stop', { timeout: 40000 }, async () => {
  const c = await startBroker(['--ping_min', '1', '--ping_max', '10']);
  try {
    const s = await subscribeReady(c, 'pgpost', '?ping=3');
    try {
      // An event every 300 ms for 5 s (well past the 3 s interval): no ping.
      for (let i = 0; i < 17; i++) {
        await publishOk(c, 'pgpost', `e${i}`);
        await sleep(300);
      }
      await s.waitEvents(17);
      assert.equal(s.pings().length, 0, `a ping was sent although events kept coming: ${s.describe()}`);
      // Then silence: a ping follows the last event.
      await s.waitPings(1, 10000);
      assertPings(s, 3);
      const lastEvent = s.frames.findLastIndex((f) => f.dataLines.length && f.event !== 'ping');
      const firstPing = s.frames.findIndex((f) => f.event === 'ping');
      assert.ok(firstPing > lastEvent, 'ping frame arrived before the last event');
    } finally { s.close(); }
  } finally { await c.stop(); }
});

test('a ping goes to an idle subscriber even while other subscribers get events', { timeout: 30000 }, async () => {
  const busy = await subscribeReady(b, 'pgbusy', '?ping=2');
  const idle = await subscribe(b, '/events/pgidle?ping=1');
  try {
    for (let i = 0; i < 40 && idle.pings().length < 2; i++) {
      await publishOk(b, 'pgbusy', `e${i}`);
      await sleep(150);
    }
    await idle.waitPings(2, 10000);
    assertPings(idle, 1);
    assert.equal(busy.pings().length, 0, busy.describe());
  } finally { busy.close(); idle.close(); }
});

test('pings are not sent sooner than the interval (allowing one 1 s timer slot)', { timeout: 30000 }, async () => {
  const s = await subscribe(b, '/events/pgspacing?ping=2');
  try {
    await s.waitFor((x) => x.frames.length >= 1, 5000, 'the preamble');
    const t0 = s.frames[0].at;
    await s.waitPings(3, 15000);
    const times = [t0, ...s.pings().map((p) => p.at)];
    for (let i = 1; i < times.length; i++) {
      assert.ok(times[i] - times[i - 1] >= 900, `ping ${i} came ${times[i] - times[i - 1]} ms after the previous frame with interval 2 s`);
    }
  } finally { s.close(); }
});
