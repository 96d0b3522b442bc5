// A real EventSource client (npm "eventsource", WHATWG semantics): what page script
// sees. Events, typed events and pings arrive; after the broker restarts on the same
// port the client reconnects by itself with Last-Event-ID, sees `reset`, then new events.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import {
  startBroker, killAll, publishOk, waitSubscribers, waitFor,
} from './lib.mjs';

after(killAll);

/** Opens an EventSource recording every event a page would see, in order. */
function record(url, types = []) {
  const es = new EventSource(url);
  const seen = [];
  const push = (e) => seen.push({ type: e.type, data: e.data, lastEventId: e.lastEventId });
  es.addEventListener('message', push);
  for (const t of types) es.addEventListener(t, push);
  es.addEventListener('open', () => seen.push({ type: 'open' }));
  es.addEventListener('error', () => seen.push({ type: 'error' }));
  return { es, seen };
}

const only = (seen, types) => seen.filter((e) => types.includes(e.type));

test('EventSource receives messages, typed events and pings', { timeout: 30000 }, async () => {
  const b = await startBroker(['--ping_min', '1']);
  const { es, seen } = record(`${b.url}/events/es1?ping=1`, ['change', 'ping']);
  try {
    await waitFor(() => es.readyState === EventSource.OPEN, 5000, 'EventSource to open');
    await waitSubscribers(b, 'es1', 1);
    const p1 = await publishOk(b, 'es1', '{"folder":"INBOX"}');
    const p2 = await publishOk(b, 'es1', 'two\nlines', { query: { event: 'change' } });
    await waitFor(() => only(seen, ['message', 'change']).length >= 2, 5000, 'two events', () => JSON.stringify(seen));
    assert.deepEqual(only(seen, ['message', 'change']), [
      { type: 'message', data: '{"folder":"INBOX"}', lastEventId: p1.id },
      { type: 'change', data: 'two\nlines', lastEventId: p2.id },
    ]);
    // Pings are real events that script can listen to.
    await waitFor(() => only(seen, ['ping']).length >= 1, 10000, 'a ping event', () => JSON.stringify(seen));
    const ping = only(seen, ['ping'])[0];
    assert.deepEqual(JSON.parse(ping.data), { interval: 1 });
    assert.equal(es.readyState, EventSource.OPEN);
    assert.equal(only(seen, ['error']).length, 0, JSON.stringify(seen));
  } finally { es.close(); await b.stop(); }
});

test('after a broker restart on the same port the client reconnects by itself and gets reset', { timeout: 60000 }, async () => {
  const a = await startBroker(['--reconnect_ms', '500']);
  const port = a.port;
  const { es, seen } = record(`${a.url}/events/es-restart`, ['reset', 'change']);
  let b = null;
  try {
    await waitSubscribers(a, 'es-restart', 1);
    const p1 = await publishOk(a, 'es-restart', 'before restart');
    await waitFor(() => only(seen, ['message']).length === 1, 5000, 'the first event', () => JSON.stringify(seen));

    await a.stop();
    // The client noticed the end of the stream and is trying again by itself.
    await waitFor(() => only(seen, ['error']).length >= 1, 10000, 'the client to see the stream end', () => JSON.stringify(seen));
    assert.notEqual(es.readyState, EventSource.CLOSED, 'the client gave up after the stream ended');

    b = await startBroker(['--listen', `127.0.0.1:${port}`, '--reconnect_ms', '500']);
    assert.equal(b.port, port);
    // Nothing is done to the client: it reconnects on its own.
    await waitSubscribers(b, 'es-restart', 1, 15000);
    await waitFor(() => es.readyState === EventSource.OPEN, 5000, 'the client to be open again');
    // It sent Last-Event-ID (p1's id), which the new broker does not know: a reset.
    await waitFor(() => only(seen, ['reset']).length >= 1, 5000, 'a reset event', () => JSON.stringify(seen));
    const p2 = await publishOk(b, 'es-restart', 'after restart', { query: { event: 'change' } });
    assert.equal(p2.subscribers, 1);
    await waitFor(() => only(seen, ['change']).length >= 1, 5000, 'the new event', () => JSON.stringify(seen));

    const user = only(seen, ['message', 'reset', 'change']);
    assert.equal(user.length, 3, `what the page saw: ${JSON.stringify(user)}`);
    assert.deepEqual(user[0], { type: 'message', data: 'before restart', lastEventId: p1.id });
    assert.equal(user[1].type, 'reset');
    assert.equal(JSON.parse(user[1].data).reason, 'unknown');
    assert.deepEqual(user[2], { type: 'change', data: 'after restart', lastEventId: p2.id });
    assert.notEqual(p2.id.split('-')[0], p1.id.split('-')[0], 'the restarted broker reuses the old boot id');
    // The client went open -> error (broker gone) -> open again.
    const states = seen.filter((e) => e.type === 'open' || e.type === 'error').map((e) => e.type);
    assert.equal(states[0], 'open');
    assert.equal(states[states.length - 1], 'open');
  } finally {
    es.close();
    if (b) await b.stop();
  }
});

test('the reset carries the channel\'s last id, so a later reconnect resumes without another reset', { timeout: 60000 }, async () => {
  const a = await startBroker(['--reconnect_ms', '500']);
  const port = a.port;
  let b = null;
  let c = null;
  const { es, seen } = record(`${a.url}/events/es-chain`, ['reset']);
  try {
    await waitSubscribers(a, 'es-chain', 1);
    await publishOk(a, 'es-chain', 'on a');
    await waitFor(() => only(seen, ['message']).length === 1, 5000, 'the first event');
    await a.stop();
    b = await startBroker(['--listen', `127.0.0.1:${port}`, '--reconnect_ms', '500']);
    const known = await publishOk(b, 'es-chain', 'published on b while the client was away');
    await waitSubscribers(b, 'es-chain', 1, 15000);
    await waitFor(() => only(seen, ['reset']).length === 1, 5000, 'a reset', () => JSON.stringify(seen));
    const reset = only(seen, ['reset'])[0];
    assert.equal(reset.lastEventId, known.id, 'reset id is not the channel\'s last id');
    // The client follows on from the reset's id: the next event, nothing older.
    const next = await publishOk(b, 'es-chain', 'next');
    await waitFor(() => only(seen, ['message']).some((e) => e.lastEventId === next.id), 5000, 'the next event');
    assert.ok(!only(seen, ['message']).some((e) => e.lastEventId === known.id), 'an event older than the reset was replayed after it');
    await b.stop();
    b = null;
    // A channel the third broker never saw: the old id still gets a reset.
    c = await startBroker(['--listen', `127.0.0.1:${port}`, '--reconnect_ms', '500']);
    await waitSubscribers(c, 'es-chain', 1, 15000);
    await waitFor(() => only(seen, ['reset']).length === 2, 5000, 'a second reset after the second restart', () => JSON.stringify(seen));
  } finally {
    es.close();
    if (b) await b.stop();
    if (c) await c.stop();
  }
});
