// The JMAP push endpoint (RFC 8620 section 7.3) against the real broker, each rule as its
// own test: types, closeafter=state, ping clamping (both ends) and ping=0, no id on
// pings, state ids and Last-Event-ID reconnects (equal, older, unreadable), the query's
// refusals, and, with Redis, a reconnect to another broker answered from the state the
// pusher keeps in Redis. States are fed as jmap-state publishes (what the pusher does).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  startBroker, killAll, openStream, publishOk, publish, waitSubscribers, http, assertJsonError,
  startRedis, startRedisBroker, redisCommand, stopAll, waitRedisCount, runBroker,
} from './lib.mjs';

const PATH = '/jmap/eventsource/';
let b;
before(async () => { b = await startBroker(['--ping_min', '1', '--ping_max', '3']); });
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

let seq = 0;
/** A fresh account id per test. */
const account = (name) => `${name}${++seq}`;
/** Publishes states to an account, as the pusher does. */
const feed = (broker, acct, states) => publishOk(broker, acct, JSON.stringify(states), { query: { event: 'jmap-state' } });
/** The StateChange events of a stream, parsed, with their ids. */
const changes = (s) => s.events().filter((f) => f.event === 'state').map((f) => ({ id: f.id, ...JSON.parse(f.data) }));
/**
 * Opens a JMAP stream on an account; waits until the broker counts `subscribers` on it
 * (0: do not wait, for a response that may end at once or a broker on Redis).
 */
async function jmap(broker, acct, query = 'types=*&closeafter=no&ping=0', headers = {}, { subscribers = 1, path = PATH } = {}) {
  const s = await openStream(broker.port, `${path}?account=${acct}&${query}`, { headers });
  assert.equal(s.status, 200, s.describe());
  assert.match(s.headers['content-type'], /^text\/event-stream/);
  if (subscribers > 0) await waitSubscribers(broker, acct, subscribers);
  return s;
}

test('a state change is one event: state, a StateChange of the account, an id', async () => {
  const a = account('one');
  await feed(b, a, { Email: '4', Mailbox: '4' });
  const s = await jmap(b, a);
  try {
    await feed(b, a, { Email: '5', Mailbox: '5', Thread: '5' });
    await s.waitFor((x) => changes(x).length === 1, 5000, 'a state event');
    const [c] = changes(s);
    assert.deepEqual(c, { id: `s1:${a};Email=5,Mailbox=5,Thread=5`, '@type': 'StateChange', changed: { [a]: { Email: '5', Mailbox: '5', Thread: '5' } } });
    assert.ok(!/event: jmap-state/.test(s.raw()), 'the pusher\'s own event went out as is');
  } finally { s.close(); }
});

test('types: only the requested types are pushed, and no event when none of them changed', async () => {
  const a = account('types');
  const s = await jmap(b, a, 'types=Email,Thread&closeafter=no&ping=0');
  try {
    await feed(b, a, { Mailbox: '9', Quota: '9' });	// none requested: no event
    await feed(b, a, { Email: '9', Mailbox: '10' });
    await s.waitFor((x) => changes(x).length >= 1, 5000, 'a state event');
    await feed(b, a, { Email: '10' });
    await s.waitFor((x) => changes(x).length >= 2, 5000, 'a second state event');
    const c = changes(s);
    assert.equal(c.length, 2, s.describe());
    assert.deepEqual(c[0].changed, { [a]: { Email: '9' } });
    assert.deepEqual(c[1].changed, { [a]: { Email: '10' } });
    // The id carries the full state, the types not pushed included.
    assert.equal(c[1].id, `s1:${a};Email=10,Mailbox=10,Quota=9`);
  } finally { s.close(); }
});

test('a state that is not newer (equal, older: an intermediate MOVE state) pushes nothing', async () => {
  const a = account('older');
  await feed(b, a, { Email: '20' });
  const s = await jmap(b, a);
  try {
    await feed(b, a, { Email: '20' });
    await feed(b, a, { Email: '19' });
    await feed(b, a, { Email: '21' });
    await s.waitFor((x) => changes(x).length >= 1, 5000, 'a state event');
    assert.deepEqual(changes(s).map((c) => c.changed[a]), [{ Email: '21' }]);
  } finally { s.close(); }
});

test('types=* pushes every type; an empty types list pushes none', async () => {
  const a = account('star');
  const all = await jmap(b, a, 'types=*&closeafter=no&ping=0');
  const none = await jmap(b, a, 'types=&closeafter=no&ping=0', {}, { subscribers: 2 }).catch((e) => { all.close(); throw e; });
  try {
    await feed(b, a, { CalendarEvent: '3', Email: '3' });
    await all.waitFor((x) => changes(x).length >= 1, 5000, 'a state event');
    assert.deepEqual(changes(all)[0].changed, { [a]: { CalendarEvent: '3', Email: '3' } });
    assert.deepEqual(changes(none), []);
  } finally { all.close(); none.close(); }
});

test('closeafter=state: the response ends after one state event, not after a ping', async () => {
  const a = account('close');
  const s = await jmap(b, a, 'types=*&closeafter=state&ping=1');
  try {
    await s.waitPings(2, 10000);
    assert.ok(!s.ended && !s.closed, `a ping ended the closeafter=state response: ${s.describe()}`);
    await feed(b, a, { Email: '1' });
    await s.waitEnd(5000);
    assert.equal(changes(s).length, 1, s.describe());
    assert.ok(s.ended, 'the response did not end cleanly');
  } finally { s.close(); }
});

test('closeafter=no (and absent) streams on after a state event', async () => {
  const a = account('stream');
  const s = await jmap(b, a, 'types=*&ping=0');
  try {
    await feed(b, a, { Email: '1' });
    await feed(b, a, { Email: '2' });
    await s.waitFor((x) => changes(x).length >= 2, 5000, 'two state events');
    assert.ok(!s.ended && !s.closed);
  } finally { s.close(); }
});

test('ping: data {"interval":N}, no id; clamped up to ping_min and down to ping_max, however large', async () => {
  for (const [ping, used] of [['1', 1], ['2', 2], ['99999', 3], ['123456789012345678901234567890', 3]]) {
    const s = await jmap(b, account('ping'), `types=*&closeafter=no&ping=${ping}`);
    try {
      await s.waitPings(1, 10000);
      for (const p of s.pings()) {
        assert.equal(p.id, undefined, `a ping carries an id: ${s.describe()}`);
        assert.equal(p.data, `{"interval":${used}}`, `ping=${ping}`);
      }
      assert.ok(!/id: [^\n]*\nevent: ping/.test(s.raw()));
    } finally { s.close(); }
  }
  const c = await startBroker(['--ping_min', '2', '--ping_max', '5']);
  try {
    const s = await jmap(c, account('pingmin'), 'types=*&closeafter=no&ping=1');
    try {
      await s.waitPings(1, 10000);
      assert.equal(s.pings()[0].data, '{"interval":2}');
    } finally { s.close(); }
  } finally { await c.stop(); }
});

test('ping=0 sends no pings (while a default stream on the same broker gets them)', async () => {
  const c = await startBroker(['--ping_interval', '1', '--ping_min', '1']);
  try {
    const a = account('ping0');
    const off = await jmap(c, a, 'types=*&closeafter=no&ping=0');
    const on = await jmap(c, a, 'types=*&closeafter=no', {}, { subscribers: 2 });
    try {
      await on.waitPings(3, 10000);
      assert.equal(off.pings().length, 0, off.describe());
      assert.ok(!off.ended && !off.closed);
    } finally { off.close(); on.close(); }
  } finally { await c.stop(); }
});

test('Last-Event-ID equal to the current state: no event at once; later changes still come', async () => {
  const a = account('equal');
  await feed(b, a, { Email: '7', Mailbox: '7' });
  const s = await jmap(b, a, 'types=*&closeafter=no&ping=0', { 'Last-Event-ID': `s1:${a};Email=7,Mailbox=7` });
  try {
    await feed(b, a, { Thread: '7' });
    await s.waitFor((x) => changes(x).length >= 1, 5000, 'a state event');
    assert.deepEqual(changes(s).map((c) => c.changed[a]), [{ Thread: '7' }]);
  } finally { s.close(); }
  // closeafter=state with an equal id waits instead of answering at once.
  const w = await jmap(b, a, 'types=*&closeafter=state&ping=1', { 'Last-Event-ID': `s1:${a};Email=7,Mailbox=7,Thread=7` });
  try {
    await w.waitPings(1, 5000);
    assert.deepEqual(changes(w), []);
    assert.ok(!w.ended);
  } finally { w.close(); }
});

test('Last-Event-ID older than the current state: one StateChange naming exactly the types that differ', async () => {
  const a = account('older-id');
  await feed(b, a, { Email: '3', Mailbox: '3', Quota: '1' });
  const first = await jmap(b, a);
  let id;
  try {
    await feed(b, a, { Email: '4', Mailbox: '4' });
    await first.waitFor((x) => changes(x).length >= 1, 5000, 'a state event');
    id = changes(first)[0].id;
  } finally { first.close(); }
  await feed(b, a, { Email: '6', Quota: '2' });	// while the client was away
  const s = await jmap(b, a, 'types=Email,Mailbox&closeafter=state&ping=0', { 'Last-Event-ID': id }, { subscribers: 0 });
  try {
    await s.waitEnd(5000);
    const c = changes(s);
    assert.equal(c.length, 1, s.describe());
    assert.deepEqual(c[0].changed, { [a]: { Email: '6' } }, 'Mailbox did not change; Quota was not asked for');
    assert.equal(c[0].id, `s1:${a};Email=6,Mailbox=4,Quota=2`);
  } finally { s.close(); }
});

test('an unreadable Last-Event-ID gets a StateChange of every requested type', async () => {
  const a = account('unreadable');
  await feed(b, a, { Email: '8', Mailbox: '8', Thread: '8' });
  for (const id of ['garbage', '65e5519b412e-1', `s1:someone-else;Email=8`, `s1:${a};Email`]) {
    const s = await jmap(b, a, 'types=Email,Thread,Calendar&closeafter=state&ping=0', { 'Last-Event-ID': id }, { subscribers: 0 });
    try {
      await s.waitEnd(5000);
      const c = changes(s);
      assert.equal(c.length, 1, `${id}: ${s.describe()}`);
      assert.deepEqual(c[0].changed, { [a]: { Email: '8', Thread: '8' } });
    } finally { s.close(); }
  }
});

test('the query is checked: bad types, closeafter, ping, no account; POST; the state type is reserved', async () => {
  for (const [q, what] of [
    ['account=x&types=Email,,Mailbox', 'invalid types'], ['account=x&types=Em%20ail', 'invalid types'],
    ['account=x&closeafter=event', 'invalid closeafter'], ['account=x&ping=-1', 'invalid ping'],
    ['account=x&ping=soon', 'invalid ping'], ['types=*', 'no account'], ['account=a/b', 'invalid account'],
  ]) {
    const r = await http(b.port, `${PATH}?${q}`);
    assertJsonError(r, 400, q);
    assert.match(JSON.parse(r.body).error, new RegExp(what), q);
  }
  const p = await http(b.port, `${PATH}?account=x`, { method: 'POST', body: 'x' });
  assert.equal(p.status, 405);
  const r = await publish(b, 'x', '{}', { query: { event: 'state' } });
  assertJsonError(r, 400, 'event=state');
});

test('ping_min above 30 or ping_max below 300 (RFC 8620 bounds) is a warning, not an error', async () => {
  for (const args of [['--ping_max', '200'], ['--ping_min', '31']]) {
    const m = await runBroker(['-n', ...args]);
    assert.equal(m.code, 0, m.stderr);
    assert.match(m.stderr, /warn .*RFC 8620 wants ping_min at most 30 and ping_max at least 300/, args.join(' '));
  }
  for (const args of [[], ['--ping_max', '200', '--jmap_eventsource_path', '']]) {
    const m = await runBroker(['-n', ...args]);
    assert.equal(m.code, 0, m.stderr);
    assert.doesNotMatch(m.stderr, /RFC 8620/, args.join(' '));
  }
});

test('jmap_eventsource_path moves the endpoint; empty turns it off; a bad path is a config error', async () => {
  const c = await startBroker(['--jmap_eventsource_path', '/push/jmap']);
  try {
    const a = account('path');
    const s = await jmap(c, a, 'types=*', {}, { path: '/push/jmap' });
    try {
      await feed(c, a, { Email: '1' });
      await s.waitFor((x) => changes(x).length >= 1, 5000, 'a state event');
    } finally { s.close(); }
    assert.equal((await http(c.port, `${PATH}?account=x`)).status, 404);
  } finally { await c.stop(); }
  const d = await startBroker(['--jmap_eventsource_path', '']);
  try {
    assert.equal((await http(d.port, `${PATH}?account=x`)).status, 404);
  } finally { await d.stop(); }
  for (const bad of ['jmap', '/events/jmap', '/publish', '/a b', '/a?b']) {
    const m = await runBroker(['-n', '--jmap_eventsource_path', bad]);
    assert.notEqual(m.code, 0, bad);
    assert.match(m.stderr, /jmap_eventsource_path/, bad);
  }
});

test('auth upstream: needs upstream_session_url; no credentials 401; upstream unreachable 503 + Retry-After; /events/ 403', async () => {
  const m = await runBroker(['-n', '--auth', 'upstream']);
  assert.notEqual(m.code, 0);
  assert.match(m.stderr, /auth upstream needs upstream_session_url/);
  const bad = await runBroker(['-n', '--auth', 'upstream', '--upstream_session_url', 'ftp://x/']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /upstream_session_url/);
  // Port 1 on loopback: nothing listens, the connection is refused at once.
  const c = await startBroker(['--auth', 'upstream', '--upstream_session_url', 'http://127.0.0.1:1/jmap/', '--upstream_timeout', '2000']);
  try {
    const none = await http(c.port, `${PATH}?types=*`);
    assertJsonError(none, 401, 'no credentials');
    assert.match(none.headers['www-authenticate'] || '', /^Basic/);
    const down = await http(c.port, `${PATH}?types=*`, { headers: { Authorization: 'Basic YWxpY2U6c2VjcmV0' } });
    assertJsonError(down, 503, 'upstream down');
    assert.ok(down.headers['retry-after'], 'no Retry-After');
    const q = await http(c.port, `${PATH}?types=Em%20ail`, { headers: { Authorization: 'Basic YWxpY2U6c2VjcmV0' } });
    assertJsonError(q, 400, 'a bad query is refused before the upstream is asked');
    const ev = await http(c.port, '/events/alice', { headers: { Authorization: 'Basic YWxpY2U6c2VjcmV0' } });
    assertJsonError(ev, 403, '/events/ under auth upstream');
  } finally { await c.stop(); }
});

test('auth token: every account the token names (sub and channels) without ?account=; ?account= must be granted', async () => {
  const secret = 'jmap-token-secret-0123456789abcdefghijklmnopqrstuvwxyz';
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const jwt = (claims) => {
    const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
    return `${input}.${crypto.createHmac('sha256', secret).update(input).digest('base64url')}`;
  };
  const exp = Math.floor(Date.now() / 1000) + 600;
  const c = await startBroker(['--auth', 'token', '--token_secret', secret]);
  try {
    const a = account('tok');
    const other = account('tok');
    await feed(c, a, { Email: '1' });
    for (const tok of [jwt({ sub: a, exp }), jwt({ channels: [a, other], exp })]) {
      const r = await openStream(c.port, `${PATH}?types=*&closeafter=state&ping=0`, { headers: { Authorization: `Bearer ${tok}`, 'Last-Event-ID': 'x' } });
      try {
        assert.equal(r.status, 200, r.describe());
        await r.waitEnd(5000);
        assert.deepEqual(changes(r).map((x) => x.changed), [{ [a]: { Email: '1' } }]);
      } finally { r.close(); }
    }
    // The second token names two accounts: its stream follows both (the id has both).
    const both = await openStream(c.port, `${PATH}?types=*&closeafter=state&ping=0`, { headers: { Authorization: `Bearer ${jwt({ channels: [a, other], exp })}` } });
    try {
      assert.equal(both.status, 200, both.describe());
      await waitSubscribers(c, other, 1);
      await feed(c, other, { Email: '2' });
      await both.waitEnd(5000);
      assert.deepEqual(changes(both), [{ id: `s1:${a};Email=1/${other};Email=2`, '@type': 'StateChange', changed: { [other]: { Email: '2' } } }]);
    } finally { both.close(); }
    const tok = jwt({ channels: [a], exp });
    const granted = await openStream(c.port, `${PATH}?account=${other}&types=*`, { headers: { Authorization: `Bearer ${tok}` } });
    granted.close();
    assert.equal(granted.status, 403, 'an account the token does not grant');
    assertJsonError(await http(c.port, `${PATH}?types=*`), 401, 'no token');
    assertJsonError(await http(c.port, `${PATH}?types=*`, { headers: { Authorization: `Bearer ${jwt({ exp })}` } }), 401, 'a token naming no account');
  } finally { await c.stop(); }
});

test('CORS: with cors_origins, the JMAP path answers a preflight for GET with Authorization and Last-Event-ID, and its stream names the origin', async () => {
  const origin = 'https://mail.example';
  const c = await startBroker(['--cors_origins', origin]);
  try {
    const p = await http(c.port, PATH, { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization, last-event-id' } });
    assert.equal(p.status, 204, p.body);
    assert.equal(p.headers['access-control-allow-origin'], origin);
    assert.equal(p.headers['access-control-allow-methods'], 'GET');
    assert.match(p.headers['access-control-allow-headers'], /Authorization/);
    assert.match(p.headers['access-control-allow-headers'], /Last-Event-ID/);
    const s = await jmap(c, account('cors'), 'types=*', { Origin: origin });
    s.close();
    assert.equal(s.headers['access-control-allow-origin'], origin);
  } finally { await c.stop(); }
});

test('Redis: a reconnect to another broker gets what differs from the state kept in Redis', async () => {
  const r = await startRedis();
  const b1 = await startRedisBroker(r);
  const b2 = await startRedisBroker(r);
  const streams = [];
  try {
    const a = account('redis');
    // The pusher's merge script keeps the full state in <prefix>j:<account>.
    await redisCommand(r.target, 'HSET', `ssepush:j:${a}`, 'Email', '10', 'Mailbox', '10');
    const s1 = await jmap(b1, a, undefined, {}, { subscribers: 0 });
    streams.push(s1);
    await waitRedisCount(r, a, 1);
    await redisCommand(r.target, 'HSET', `ssepush:j:${a}`, 'Email', '11');
    await feed(b2, a, { Email: '11' });
    await s1.waitFor((x) => changes(x).length >= 1, 5000, 'a state event through Redis');
    assert.deepEqual(changes(s1)[0], { id: `s1:${a};Email=11,Mailbox=10`, '@type': 'StateChange', changed: { [a]: { Email: '11' } } });
    await redisCommand(r.target, 'HSET', `ssepush:j:${a}`, 'Mailbox', '12', 'Thread', '12');
    const s2 = await jmap(b2, a, 'types=*&closeafter=state&ping=0', { 'Last-Event-ID': changes(s1)[0].id }, { subscribers: 0 });
    streams.push(s2);
    await s2.waitEnd(5000);
    assert.deepEqual(changes(s2).map((c) => c.changed[a]), [{ Mailbox: '12', Thread: '12' }]);
  } finally { await stopAll([b1, b2], r, streams); }
});

test('Redis: an HTTP publish of jmap-state is kept in Redis as the pusher\'s are: a reconnect to another broker is answered from it', async () => {
  const r = await startRedis();
  const b1 = await startRedisBroker(r);
  const b2 = await startRedisBroker(r);
  const streams = [];
  try {
    const a = account('redis-http');
    await feed(b1, a, { Email: '30', Mailbox: '30', Note: 'x7' });
    // Decimal states are merged (the script compares decimals); others only go out.
    assert.deepEqual(await redisCommand(r.target, 'HGETALL', `ssepush:j:${a}`), ['Email', '30', 'Mailbox', '30']);
    await feed(b1, a, { Email: '29' });	// older: the stored state stays
    await feed(b1, a, { Email: '31' });
    assert.deepEqual(await redisCommand(r.target, 'HGETALL', `ssepush:j:${a}`), ['Email', '31', 'Mailbox', '30']);
    const s = await jmap(b2, a, 'types=*&closeafter=state&ping=0', { 'Last-Event-ID': `s1:${a};Email=30,Mailbox=30` }, { subscribers: 0 });
    streams.push(s);
    await s.waitEnd(5000);
    assert.deepEqual(changes(s), [{ id: `s1:${a};Email=31,Mailbox=30`, '@type': 'StateChange', changed: { [a]: { Email: '31' } } }]);
  } finally { await stopAll([b1, b2], r, streams); }
});

/** A signed subscriber token (HS256) for the tests of several accounts. */
const ACCT_SECRET = 'jmap-accounts-secret-0123456789abcdefghijklmnopqrstuvwxyz';
function accountsToken(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ exp: Math.floor(Date.now() / 1000) + 600, ...claims })}`;
  return `${input}.${crypto.createHmac('sha256', ACCT_SECRET).update(input).digest('base64url')}`;
}

/** Opens the token's JMAP stream (no ?account=) and waits until each account counts it. */
async function jmapAccounts(broker, tok, accts, query = 'types=*&closeafter=no&ping=0', headers = {}, { count = true } = {}) {
  const s = await openStream(broker.port, `${PATH}?${query}`, { headers: { Authorization: `Bearer ${tok}`, ...headers } });
  assert.equal(s.status, 200, s.describe());
  if (count) for (const x of accts) await waitSubscribers(broker, x, 1);
  return s;
}

test('several accounts: one stream follows every account the credentials name; each change names its account; the id holds all', async () => {
  const c = await startBroker(['--auth', 'token', '--token_secret', ACCT_SECRET]);
  try {
    const [a, x, y] = [account('own'), account('shared'), account('other')];
    await feed(c, a, { Email: '3', Mailbox: '3' });
    await feed(c, x, { Email: '40' });
    const tok = accountsToken({ sub: a, channels: [a, x] });
    const s = await jmapAccounts(c, tok, [a, x]);
    try {
      await feed(c, x, { Email: '41' });
      await s.waitFor((v) => changes(v).length >= 1, 5000, 'the shared account\'s change');
      await publishOk(c, x, 'not a state', { query: { event: 'change' } });	// no StateChange
      await feed(c, y, { Email: '9' });	// an account the token does not name
      await feed(c, a, { Email: '4' });
      await s.waitFor((v) => changes(v).length >= 2, 5000, 'the own account\'s change');
      assert.deepEqual(changes(s), [
        { id: `s1:${a};Email=3,Mailbox=3/${x};Email=41`, '@type': 'StateChange', changed: { [x]: { Email: '41' } } },
        { id: `s1:${a};Email=4,Mailbox=3/${x};Email=41`, '@type': 'StateChange', changed: { [a]: { Email: '4' } } },
      ]);
      // One connection: the broker counts one stream, and a subscriber on each account.
      assert.equal((await waitSubscribers(c, a, 1)).subscribers, 1);
      assert.equal((await waitSubscribers(c, x, 1)).subscribers, 1);
    } finally { s.close(); }
    // Closed: both accounts' channels let it go.
    await waitSubscribers(c, a, 0);
    await waitSubscribers(c, x, 0);
  } finally { await c.stop(); }
});

test('several accounts: a leg on a channel big enough for the fan-out helpers gets its change, as every stream there does', { timeout: 60000 }, async () => {
  // A channel of more than 256 subscribers has its list split between the publisher and
  // the helper threads: a helper may feed a leg, which takes its JMAP stream's own
  // channel lock under the account's (held by the publisher meanwhile).
  const c = await startBroker(['--auth', 'token', '--token_secret', ACCT_SECRET]);
  const streams = [];
  try {
    const [a, x] = [account('own'), account('crowd')];
    await feed(c, a, { Email: '1' });
    await feed(c, x, { Email: '1' });
    // First in, so last in the list: the leg is in the last run, a helper's.
    const multi = await jmapAccounts(c, accountsToken({ sub: a, channels: [a, x] }), [a, x]);
    streams.push(multi);
    const one = accountsToken({ sub: x, channels: [x] });
    for (let i = 0; i < 300; i++) streams.push(await jmapAccounts(c, one, [x], undefined, {}, { count: false }));
    await waitSubscribers(c, x, 301);
    await waitSubscribers(c, a, 1);
    for (const round of ['2', '3']) {
      const p = await feed(c, x, { Email: round });
      assert.equal(p.subscribers, 301);
    }
    for (const s of streams) {
      await s.waitFor((v) => changes(v).length >= 2, 10000, 'both changes of the crowded account');
      assert.deepEqual(changes(s).map((e) => e.changed), [{ [x]: { Email: '2' } }, { [x]: { Email: '3' } }]);
    }
    assert.equal(changes(multi)[1].id, `s1:${a};Email=1/${x};Email=3`);
  } finally {
    for (const s of streams) s.close();
    await c.stop();
  }
});

test('several accounts: a reconnect is told exactly what differs, per account, in one StateChange', async () => {
  const c = await startBroker(['--auth', 'token', '--token_secret', ACCT_SECRET, '--ping_min', '1']);
  try {
    const [a, x] = [account('own'), account('shared')];
    await feed(c, a, { Email: '5', Mailbox: '5' });
    await feed(c, x, { Email: '7', Mailbox: '7' });
    const tok = accountsToken({ sub: a, channels: [x] });
    const id = `s1:${a};Email=5,Mailbox=5/${x};Email=7,Mailbox=7`;
    // Equal: nothing at once (closeafter=state waits, pings go on).
    const eq = await jmapAccounts(c, tok, [a, x], 'types=*&closeafter=state&ping=1', { 'Last-Event-ID': id });
    try {
      await eq.waitPings(1, 5000);
      assert.deepEqual(changes(eq), []);
      assert.ok(!eq.ended);
    } finally { eq.close(); }
    await waitSubscribers(c, x, 0);
    await feed(c, x, { Email: '8' });	// while the client was away
    const s = await jmapAccounts(c, tok, [a, x], 'types=Email&closeafter=state&ping=0', { 'Last-Event-ID': id }, { count: false });
    try {
      await s.waitEnd(5000);
      assert.deepEqual(changes(s), [{ id: `s1:${a};Email=5,Mailbox=5/${x};Email=8,Mailbox=7`, '@type': 'StateChange', changed: { [x]: { Email: '8' } } }]);
    } finally { s.close(); }
    // An id that says nothing of one account (an id of one account): that account's every
    // requested type; the other is told only what differs (nothing here).
    const one = await jmapAccounts(c, tok, [a, x], 'types=*&closeafter=state&ping=0', { 'Last-Event-ID': `s1:${a};Email=5,Mailbox=5` }, { count: false });
    try {
      await one.waitEnd(5000);
      assert.deepEqual(changes(one).map((v) => v.changed), [{ [x]: { Email: '8', Mailbox: '7' } }]);
    } finally { one.close(); }
    // Unreadable: every requested type of every account.
    const bad = await jmapAccounts(c, tok, [a, x], 'types=Mailbox&closeafter=state&ping=0', { 'Last-Event-ID': 'garbage' }, { count: false });
    try {
      await bad.waitEnd(5000);
      assert.deepEqual(changes(bad).map((v) => v.changed), [{ [a]: { Mailbox: '5' }, [x]: { Mailbox: '7' } }]);
    } finally { bad.close(); }
    // ?account= narrows the stream to that one account.
    const only = await openStream(c.port, `${PATH}?account=${x}&types=*&closeafter=state&ping=0`, { headers: { Authorization: `Bearer ${tok}` } });
    try {
      assert.equal(only.status, 200, only.describe());
      await waitSubscribers(c, x, 1);
      assert.equal((await waitSubscribers(c, a, 0)).subscribers, 0);
      await feed(c, x, { Email: '9' });
      await only.waitEnd(5000);
      assert.deepEqual(changes(only), [{ id: `s1:${x};Email=9,Mailbox=7`, '@type': 'StateChange', changed: { [x]: { Email: '9' } } }]);
    } finally { only.close(); }
  } finally { await c.stop(); }
});

test('several accounts with Redis: the states come through Redis, and a reconnect to another broker gets what differs', async () => {
  const r = await startRedis();
  const b1 = await startRedisBroker(r, ['--auth', 'token', '--token_secret', ACCT_SECRET]);
  const b2 = await startRedisBroker(r, ['--auth', 'token', '--token_secret', ACCT_SECRET]);
  const streams = [];
  try {
    const [a, x] = [account('redis-own'), account('redis-shared')];
    await redisCommand(r.target, 'HSET', `ssepush:j:${a}`, 'Email', '10');
    await redisCommand(r.target, 'HSET', `ssepush:j:${x}`, 'Email', '20');
    const tok = accountsToken({ sub: a, channels: [x] });
    const s1 = await jmapAccounts(b1, tok, [a, x], undefined, {}, { count: false });
    streams.push(s1);
    await waitRedisCount(r, a, 1);
    await waitRedisCount(r, x, 1);
    await redisCommand(r.target, 'HSET', `ssepush:j:${x}`, 'Email', '21');
    await feed(b2, x, { Email: '21' });
    await s1.waitFor((v) => changes(v).length >= 1, 5000, 'a state event through Redis');
    assert.deepEqual(changes(s1)[0], { id: `s1:${a};Email=10/${x};Email=21`, '@type': 'StateChange', changed: { [x]: { Email: '21' } } });
    await redisCommand(r.target, 'HSET', `ssepush:j:${a}`, 'Email', '11');
    const s2 = await jmapAccounts(b2, tok, [a, x], 'types=*&closeafter=state&ping=0', { 'Last-Event-ID': changes(s1)[0].id }, { count: false });
    streams.push(s2);
    await s2.waitEnd(5000);
    assert.deepEqual(changes(s2).map((v) => v.changed), [{ [a]: { Email: '11' } }]);
  } finally { await stopAll([b1, b2], r, streams); }
});
