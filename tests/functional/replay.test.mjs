// Replay and reset: Last-Event-ID header and ?last_event_id= replay exactly the missed
// events, then live ones; unknown ids, ids older than the history, ids older than
// history_ttl and ids from before a restart get `event: reset`; a publish racing a
// reconnect leaves no gap and no duplicate.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, subscribe, publishOk, waitSubscribers, openStream, waitFor, seqOf, http,
} from './lib.mjs';

after(killAll);

/** Publishes n events e1..en on ch; returns their answers. */
async function publishN(b, ch, n, prefix = 'e') {
  const out = [];
  for (let i = 1; i <= n; i++) out.push(await publishOk(b, ch, `${prefix}${i}`));
  return out;
}

/** Asserts the first event frame of s is a reset with this id and reason. */
async function assertReset(s, id, reason) {
  const [first] = await s.waitEvents(1);
  assert.equal(first.event, 'reset', `first event is not a reset: ${s.describe()}`);
  assert.equal(first.id, id, `reset id ${first.id} is not the channel's last id ${id}`);
  const data = JSON.parse(first.data);
  assert.equal(data.reason, reason, `reset reason ${first.data}`);
  return first;
}

test('replay with Last-Event-ID and with last_event_id: exactly the missed events, then live', async () => {
  const b = await startBroker();
  try {
    for (const how of ['header', 'query']) {
      const ch = `rp-${how}`;
      const p = await publishN(b, ch, 5);
      const s = how === 'header'
        ? await subscribe(b, `/events/${ch}`, { headers: { 'Last-Event-ID': p[1].id } })
        : await subscribe(b, `/events/${ch}?last_event_id=${encodeURIComponent(p[1].id)}`);
      try {
        const replayed = await s.waitEvents(3);
        assert.deepEqual(replayed.map((e) => [e.id, e.data]), p.slice(2).map((x, i) => [x.id, `e${i + 3}`]));
        await waitSubscribers(b, ch, 1);
        const live = await publishOk(b, ch, 'live');
        assert.equal(live.subscribers, 1);
        const all = await s.waitEvents(4);
        assert.deepEqual(all.map((e) => e.id), [...p.slice(2).map((x) => x.id), live.id], `${how}: ${s.describe()}`);
        assert.ok(!all.some((e) => e.event === 'reset'), 'a reset was sent for a known id');
      } finally { s.close(); }
    }
  } finally { await b.stop(); }
});

test('the newest id replays nothing, then live', async () => {
  const b = await startBroker();
  try {
    const p = await publishN(b, 'rp-newest', 3);
    const s = await subscribe(b, '/events/rp-newest', { headers: { 'Last-Event-ID': p[2].id } });
    try {
      await waitSubscribers(b, 'rp-newest', 1);
      const live = await publishOk(b, 'rp-newest', 'live');
      const ev = await s.waitEvents(1);
      assert.deepEqual(ev.map((e) => e.id), [live.id]);
    } finally { s.close(); }
  } finally { await b.stop(); }
});

test('the header wins over nothing and the query works for a first page load', async () => {
  const b = await startBroker();
  try {
    const p = await publishN(b, 'rp-both', 3);
    // Both given (the browser sends the header on its own reconnect): same id, one replay.
    const s = await subscribe(b, `/events/rp-both?last_event_id=${encodeURIComponent(p[0].id)}`, { headers: { 'Last-Event-ID': p[0].id } });
    try {
      const ev = await s.waitEvents(2);
      assert.deepEqual(ev.map((e) => e.id), [p[1].id, p[2].id]);
    } finally { s.close(); }
  } finally { await b.stop(); }
});

test('reset "unknown" for an id this broker never issued, then live', async () => {
  const b = await startBroker();
  try {
    const p = await publishN(b, 'rs-unk', 2);
    const boot = p[0].id.split('-')[0];
    const other = boot === '000000000000' ? '111111111111' : '000000000000';
    for (const bad of ['garbage', `${other}-1`, `${boot}-${seqOf(p[1].id) + 1000}`]) {
      const s = await subscribe(b, '/events/rs-unk', { headers: { 'Last-Event-ID': bad } });
      try {
        await assertReset(s, p[1].id, 'unknown');
        await waitSubscribers(b, 'rs-unk', 1);
        const live = await publishOk(b, 'rs-unk', `after ${bad}`);
        const ev = await s.waitEvents(2);
        assert.deepEqual(ev.map((e) => e.id), [p[1].id, live.id], `after reset for ${bad}: ${s.describe()}`);
        p[1] = live;
      } finally { s.close(); }
      await waitSubscribers(b, 'rs-unk', 0);
    }
  } finally { await b.stop(); }
});

test('reset "expired" for an id older than history_size', async () => {
  const b = await startBroker(['--history_size', '2']);
  try {
    const p = await publishN(b, 'rs-old', 5);
    const s = await subscribe(b, '/events/rs-old', { headers: { 'Last-Event-ID': p[0].id } });
    try {
      await assertReset(s, p[4].id, 'expired');
      await waitSubscribers(b, 'rs-old', 1);
      const live = await publishOk(b, 'rs-old', 'live');
      const ev = await s.waitEvents(2);
      assert.deepEqual(ev.map((e) => e.id), [p[4].id, live.id], 'events before the reset were replayed after it');
    } finally { s.close(); }
    // An id still inside the history (e5; the ring now holds e5 and "live") replays
    // normally: "live", then new events.
    const s2 = await subscribe(b, '/events/rs-old', { headers: { 'Last-Event-ID': p[4].id } });
    try {
      const [first] = await s2.waitEvents(1);
      await waitSubscribers(b, 'rs-old', 1);
      const live2 = await publishOk(b, 'rs-old', 'live2');
      const ev = await s2.waitEvents(2);
      assert.equal(first.event, undefined, `reset for an id inside the history: ${s2.describe()}`);
      assert.deepEqual(ev.map((e) => [e.event, e.data]), [[undefined, 'live'], [undefined, 'live2']]);
      assert.equal(ev[1].id, live2.id);
    } finally { s2.close(); }
  } finally { await b.stop(); }
});

test('reset "expired" once the id is older than history_ttl', async () => {
  const b = await startBroker(['--history_ttl', '1']);
  try {
    const p = await publishN(b, 'rs-ttl', 2);
    // Right away the id is in the history: e2 is replayed.
    const s0 = await subscribe(b, '/events/rs-ttl', { headers: { 'Last-Event-ID': p[0].id } });
    const [first] = await s0.waitEvents(1);
    s0.close();
    assert.deepEqual([first.event, first.id], [undefined, p[1].id], 'immediate replay within history_ttl');
    // Once e2 is older than 1 s, reconnecting with e1 gets a reset (poll, bounded).
    let last = null;
    await waitFor(async () => {
      const s = await subscribe(b, '/events/rs-ttl', { headers: { 'Last-Event-ID': p[0].id } });
      try {
        const [f] = await s.waitEvents(1);
        last = f;
        return f.event === 'reset';
      } finally { s.close(); }
    }, 8000, 'a reset once the history expired', () => `last first frame: ${JSON.stringify(last)}`, 300);
    assert.equal(last.id, p[1].id);
    assert.equal(JSON.parse(last.data).reason, 'expired');
  } finally { await b.stop(); }
});

test('after a broker restart an old id gets a reset (never a silent gap)', async () => {
  const a = await startBroker();
  const old = await publishOk(a, 'rs-restart', 'before restart');
  await a.stop();
  const b = await startBroker();
  try {
    const fresh = await publishOk(b, 'rs-restart', 'after restart');
    assert.notEqual(fresh.id.split('-')[0], old.id.split('-')[0], 'the boot part of ids did not change across a restart');
    const s = await subscribe(b, '/events/rs-restart', { headers: { 'Last-Event-ID': old.id } });
    try {
      await assertReset(s, fresh.id, 'unknown');
      await waitSubscribers(b, 'rs-restart', 1);
      const live = await publishOk(b, 'rs-restart', 'live');
      const ev = await s.waitEvents(2);
      assert.deepEqual(ev.map((e) => e.id), [fresh.id, live.id]);
    } finally { s.close(); }
  } finally { await b.stop(); }
});

test('events are kept for replay even when nobody listens', async () => {
  const b = await startBroker();
  try {
    const first = await publishOk(b, 'rp-nobody', 'x0');
    assert.equal(first.subscribers, 0);
    const rest = await publishN(b, 'rp-nobody', 3, 'y');
    const s = await subscribe(b, '/events/rp-nobody', { headers: { 'Last-Event-ID': first.id } });
    try {
      const ev = await s.waitEvents(3);
      assert.deepEqual(ev.map((e) => e.data), ['y1', 'y2', 'y3']);
    } finally { s.close(); }
  } finally { await b.stop(); }
});

test('a publish racing a reconnect: no gap and no duplicate', { timeout: 120000 }, async () => {
  const b = await startBroker(['--history_size', '5000']);
  const ch = 'race';
  let stop = false;
  try {
    const published = [];
    const received = [];
    const errors = [];
    // The first subscriber is in place before anything is published, so the union of
    // what it and its reconnects receive must be exactly everything published.
    let s = await openStream(b.port, `/events/${ch}`);
    assert.equal(s.status, 200);
    await waitSubscribers(b, ch, 1);
    // Four concurrent publishers (bounded: at most 600 events each) until the
    // reconnect loop below is done.
    const publishers = [0, 1, 2, 3].map(async (w) => {
      for (let i = 0; i < 600 && !stop; i++) {
        try {
          published.push((await publishOk(b, ch, `w${w}-${i}`)).id);
        } catch (e) { errors.push(e); return; }
      }
    });
    const allDone = Promise.all(publishers);

    let last = null;
    const ROUNDS = 40;
    for (let round = 0; round < ROUNDS; round++) {
      // Keep the stream for a few events (bounded wait), then drop it abruptly.
      const want = 1 + (round % 4);
      await s.waitFor((x) => x.events().length >= want, 5000, `${want} events in round ${round}`).catch(() => {});
      s.close();
      for (const e of s.events()) {
        assert.notEqual(e.event, 'reset', `unexpected reset during the race: ${JSON.stringify(e)}`);
        received.push(e.id);
      }
      if (received.length) last = received[received.length - 1];
      s = await openStream(b.port, `/events/${ch}`, { headers: last ? { 'Last-Event-ID': last } : {} });
      assert.equal(s.status, 200);
    }
    stop = true;
    await allDone;
    assert.equal(errors.length, 0, `publish errors: ${errors.map((e) => e.message)}`);
    // The last connection collects everything after the last id received.
    const sortedPublished = [...published].sort((x, y) => seqOf(x) - seqOf(y));
    const lastPublished = sortedPublished[sortedPublished.length - 1];
    try {
      if (last !== lastPublished) {
        await s.waitFor((x) => x.events().some((e) => e.id === lastPublished), 10000, `the last published id ${lastPublished}`);
      }
      for (const e of s.events()) {
        assert.notEqual(e.event, 'reset', `unexpected reset: ${JSON.stringify(e)}`);
        received.push(e.id);
      }
    } finally { s.close(); }

    assert.ok(published.length >= ROUNDS, `only ${published.length} events were published during the race`);
    const dup = received.filter((id, i) => received.indexOf(id) !== i);
    assert.deepEqual(dup, [], 'duplicate events across reconnects');
    const missing = sortedPublished.filter((id) => !received.includes(id));
    assert.deepEqual(missing, [], `events lost across reconnects (received ${received.length} of ${published.length})`);
    assert.deepEqual(received, sortedPublished, 'events out of order across reconnects');
  } finally { stop = true; await b.stop(); }
});

test('replay works across many reconnects of a long-lived client (sequential)', async () => {
  const b = await startBroker();
  try {
    let last = (await publishOk(b, 'rp-seq', 'start')).id;
    for (let i = 0; i < 10; i++) {
      const p = await publishOk(b, 'rp-seq', `m${i}`);
      const s = await openStream(b.port, '/events/rp-seq', { headers: { 'Last-Event-ID': last } });
      const [e] = await s.waitEvents(1);
      s.close();
      assert.deepEqual([e.id, e.data], [p.id, `m${i}`]);
      last = e.id;
    }
    const st = await http(b.publishPort, '/stats/rp-seq');
    assert.equal(st.status, 200);
  } finally { await b.stop(); }
});

test('a subscriber that falls behind the history gets reset "lagged", never a silent gap', { timeout: 90000 }, async () => {
  const b = await startBroker(['--history_size', '2']);
  try {
    const ch = 'lag';
    const s = await openStream(b.port, `/events/${ch}`);
    assert.equal(s.status, 200);
    await waitSubscribers(b, ch, 1);
    // Stop reading: the kernel buffers fill (about 4 MB here), then the broker's cursor
    // falls behind a 2-event history.
    s.socket.pause();
    const payload = 'p'.repeat(60000);
    let lastId = null;
    for (let i = 0; i < 300; i++) lastId = (await publishOk(b, ch, `${i} ${payload}`)).id;
    s.socket.resume();
    try {
      await s.waitFor((x) => x.closed || x.frames.some((f) => f.id === lastId), 20000, `the last id ${lastId} or the end`);
    } catch (e) {
      const st = await http(b.publishPort, `/stats/${ch}`);
      e.message = `the lagging stream neither caught up nor was closed (broker /stats/${ch}: ${st.body}): ${e.message}`;
      throw e;
    }
    const frames = s.frames.filter((f) => f.id !== undefined).map((f) => ({ id: f.id, event: f.event, data: f.data, conn: 1 }));
    let second = null;
    if (!frames.some((f) => f.id === lastId)) {
      // Cut in the middle of an event: the reconnect with Last-Event-ID gets the reset.
      const last = frames.filter((f) => f.event !== 'reset').pop();
      second = await openStream(b.port, `/events/${ch}`, { headers: last ? { 'Last-Event-ID': last.id } : {} });
      try {
        await second.waitFor((x) => x.frames.some((f) => f.id === lastId), 10000, `the last id ${lastId} after reconnecting`);
        for (const f of second.frames) if (f.id !== undefined) frames.push({ id: f.id, event: f.event, data: f.data, conn: 2 });
      } finally { second.close(); }
    }
    s.close();
    const resets = frames.filter((f) => f.event === 'reset');
    assert.ok(resets.length >= 1, `no reset although the subscriber fell ~300 events behind a 2-event history (got ${frames.length} frames)`);
    for (const r of resets) {
      const reason = JSON.parse(r.data).reason;
      if (r.conn === 1) assert.equal(reason, 'lagged', `reset on the lagging stream: ${r.data}`);
      else assert.ok(['lagged', 'expired'].includes(reason), `reset on reconnect: ${r.data}`);
    }
    // No silent gap: each event follows the frame before it (event or reset) directly.
    for (let i = 1; i < frames.length; i++) {
      const prev = frames[i - 1];
      const cur = frames[i];
      if (cur.event === 'reset') continue;
      assert.equal(seqOf(cur.id), seqOf(prev.id) + 1, `silent gap between ${prev.id} (${prev.event || 'message'}) and ${cur.id}`);
    }
  } finally { await b.stop(); }
});
