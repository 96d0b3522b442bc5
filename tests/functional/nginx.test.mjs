// The shipped nginx examples (packaging/nginx/*.conf) in front of the real broker in
// auth proxy mode, with a tiny application written here as the auth backend: an
// authenticated client gets an event published after its stream opened, an
// unauthenticated one is refused, long-poll works through nginx, and a subscribe sent
// straight to the broker from an untrusted address is refused; a broker restart behind
// nginx is a retry for EventSource, not a failure. nginx runs from its own
// prefix in a temp dir, on a free port, in the foreground, and is stopped by pid.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { NGINX, startApp, startNginx } from './nginx-lib.mjs';
import {
  startBroker, killAll, http, openStream, waitPreamble, waitSubscribers, publishOk,
  assertJsonError, waitFor, freePort, WAIT,
} from './lib.mjs';

let b;
let app;
const nginx = {};
before(async () => {
  assert.ok(NGINX, 'nginx not found: install Debian nginx-light (packaging/install-deps.sh test)');
  app = await startApp();
  b = await startBroker(['--auth', 'proxy', '--trusted_proxies', '127.0.0.1', '--ping_min', '1']);
  nginx.a = await startNginx('auth_request.conf', b.port, app.port);
  nginx.b = await startNginx('x_accel_redirect.conf', b.port, app.port);
});
after(async () => {
  try {
    for (const n of Object.values(nginx)) await n.stop();
    if (b) await b.stop();
  } finally {
    if (app) await app.close();
    killAll();
  }
});

// Each pattern: how a user opens its stream through nginx.
const patterns = [
  ['auth_request', 'a', (user, q = '') => `/events/${user}${q}`],
  ['X-Accel-Redirect', 'b', (user, q = '') => `/push/stream${q}`],
];

for (const [name, key, pathFor] of patterns) {
  test(`${name}: an authenticated client gets an event published after its stream opened`, async () => {
    const user = `live-${key}`;
    const s = await openStream(nginx[key].port, pathFor(user), { headers: { Cookie: `app_session=ok:${user}` } });
    try {
      assert.equal(s.status, 200, s.describe());
      assert.equal(s.headers['content-type'], 'text/event-stream; charset=utf-8');
      await waitPreamble(s);	// the preamble came through unbuffered
      await waitSubscribers(b, user, 1);
      const p = await publishOk(b, user, `{"for":"${user}"}`, { query: { event: 'change' } });
      assert.equal(p.subscribers, 1);
      const ev = await s.waitEvents(1, WAIT);
      assert.deepEqual([ev[0].id, ev[0].event, ev[0].data], [p.id, 'change', `{"for":"${user}"}`]);
    } finally { s.close(); }
  });

  test(`${name}: an unauthenticated client is refused`, async () => {
    const r = await http(nginx[key].port, pathFor(`anon-${key}`));
    assert.equal(r.status, 401, `${r.status} ${r.body}`);
    const st = await http(b.publishPort, `/stats/anon-${key}`);
    assert.equal(st.status, 404, 'a refused client reached the broker');
  });

  test(`${name}: long-poll through nginx is held until an event, then ends`, async () => {
    const user = `poll-${key}`;
    const s = await openStream(nginx[key].port, pathFor(user), { headers: { Cookie: `app_session=ok:${user}`, 'X-Long-Poll': 'Yes' } });
    try {
      assert.equal(s.status, 200, s.describe());
      await waitSubscribers(b, user, 1);
      assert.ok(!s.ended && !s.closed, `long-poll ended before any event: ${s.describe()}`);
      const p = await publishOk(b, user, 'wake up');
      const end = await s.waitEnd();
      assert.ok(end.clean, `long-poll through nginx did not end cleanly: ${s.describe()}`);
      assert.deepEqual(s.events().map((e) => [e.id, e.data]), [[p.id, 'wake up']]);
    } finally { s.close(); }
  });
}

test('auth_request: a logged-in user cannot open another user\'s channel', async () => {
  const r = await http(nginx.a.port, '/events/victim', { headers: { Cookie: 'app_session=ok:mallory' } });
  assert.equal(r.status, 403, `${r.status} ${r.body}`);
});

test('X-Accel-Redirect: the internal location cannot be requested from outside', async () => {
  const r = await http(nginx.b.port, '/_ssepush/events/victim');
  assert.equal(r.status, 404, `${r.status} ${r.body}`);
});

test('auth proxy: a subscribe straight to the broker from an untrusted address is refused', async () => {
  const r = await http(b.port, '/events/live-a', { localAddress: '127.0.0.2' });
  assertJsonError(r, 403, 'direct subscribe from 127.0.0.2');
  assert.equal(r.json.error, 'subscribe only through a trusted proxy');
});

// A broker restart behind each example: while the broker is down nginx answers its own
// 502, which the examples turn into a 200 event stream that only says when to retry, so
// that a real EventSource (npm eventsource) keeps trying by itself and gets its events
// again once a broker is back on the same address. ssepush.js is served through nginx.
for (const [name, key, pathFor] of patterns) {
  test(`${name}: a broker restart behind nginx: EventSource is told to retry, then gets events again by itself`, { timeout: 40000 }, async () => {
    const port = await freePort();
    const args = ['--auth', 'proxy', '--trusted_proxies', '127.0.0.1', '--listen', `127.0.0.1:${port}`];
    let b2 = await startBroker(args);
    const n = await startNginx(key === 'a' ? 'auth_request.conf' : 'x_accel_redirect.conf', port, app.port);
    const user = `restart-${key}`;
    const url = `http://127.0.0.1:${n.port}${pathFor(user)}`;
    const headers = { Cookie: `app_session=ok:${user}` };
    const es = new EventSource(url, { fetch: (u, init) => fetch(u, { ...init, headers: { ...init.headers, ...headers } }) });
    const seen = [];
    es.addEventListener('message', (e) => seen.push({ type: 'message', data: e.data }));
    es.addEventListener('error', () => seen.push({ type: 'error', state: es.readyState }));
    try {
      const js = await http(n.port, '/ssepush.js');
      assert.equal(js.status, 200, `/ssepush.js through nginx: ${js.status}`);
      assert.match(js.headers['content-type'] || '', /javascript/, `/ssepush.js content-type ${js.headers['content-type']}`);
      await waitFor(() => es.readyState === EventSource.OPEN, 10000, 'the EventSource to open through nginx');
      await waitSubscribers(b2, user, 1);
      await publishOk(b2, user, 'before');
      await waitFor(() => seen.some((e) => e.data === 'before'), WAIT, 'the first event');

      await b2.stop();
      // What nginx answers now, for a client that reads event streams.
      const down = await openStream(n.port, pathFor(user), { headers });
      await down.waitEnd();
      assert.equal(down.status, 200, `nginx with the broker down: ${down.describe()}`);
      assert.match(down.headers['content-type'] || '', /^text\/event-stream/, down.describe());
      const m = /^retry: (\d+)\n/.exec(down.raw());
      assert.ok(m && Number(m[1]) >= 5000 && Number(m[1]) <= 7500, `no retry of 5-7.5 s: ${JSON.stringify(down.raw())}`);
      await waitFor(() => seen.some((e) => e.type === 'error'), 10000, 'the EventSource to notice the broker is gone');
      assert.notEqual(es.readyState, EventSource.CLOSED, `EventSource gave up with the broker down: ${JSON.stringify(seen)}`);
      // Let it be refused at least once more by nginx, still trying.
      const errors = seen.filter((e) => e.type === 'error').length;
      await waitFor(() => seen.filter((e) => e.type === 'error').length > errors, 10000, 'another retry while the broker is down');
      assert.notEqual(es.readyState, EventSource.CLOSED, `EventSource gave up: ${JSON.stringify(seen)}`);

      b2 = await startBroker(args);
      await waitFor(() => es.readyState === EventSource.OPEN, 15000, 'the EventSource to come back by itself', () => JSON.stringify(seen));
      await waitSubscribers(b2, user, 1, 10000);
      await publishOk(b2, user, 'after');
      await waitFor(() => seen.some((e) => e.data === 'after'), WAIT, 'the event after the restart', () => JSON.stringify(seen));
    } finally {
      es.close();
      await n.stop();
      await b2.stop();
    }
  });
}
