// Auth against the real broker: subscriber tokens minted by `--mint-token` and, for the
// bad cases, crafted here with node:crypto (so alg none, RS256, HS384, bad signature,
// expired, nbf, other channel, oversized are real tokens); every way a token may arrive;
// each refusal with its status, JSON reason and metrics label; tokens kept out of logs;
// X-Forwarded-For only from trusted proxies; auth proxy; publisher secrets; secret files
// and their permissions; start-up refusal of auth none off loopback; CORS.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startBroker, killAll, runBroker, http, openStream, subscribe, waitPreamble, waitSubscribers,
  publishOk, publish, parseMetrics, assertJsonError, tempDir, writeConfig, spawnProcess,
} from './lib.mjs';

const SECRET = 'test-token-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const PUB_SECRET = 'test-publish-secret-0123456789abcdefghijklmnopqrstuvwxyz';
const now = () => Math.floor(Date.now() / 1000);
const b64 = (o) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o)).toString('base64url');

/** Builds a JWT: header and claims objects, signed with HMAC (hash, key); sig: override. */
function craft(header, claims, { key = SECRET, hash = 'sha256', sig } = {}) {
  const input = `${b64(header)}.${b64(claims)}`;
  const s = sig !== undefined ? sig : crypto.createHmac(hash, key).update(input).digest('base64url');
  return `${input}.${s}`;
}
const HS256 = { alg: 'HS256', typ: 'JWT' };

/** Mints a token with the broker's own --mint-token. */
async function mint(channel, extra = [], secret = SECRET) {
  const r = await runBroker(['--mint-token', channel, ...extra, '--token_secret', secret]);
  assert.equal(r.code, 0, `--mint-token failed: ${r.stderr}`);
  const tok = r.stdout.trim();
  assert.match(tok, /^[\w-]+\.[\w-]+\.[\w-]+$/, `not a JWT: ${r.stdout}`);
  return tok;
}

/** The auth failure counters by reason label. */
async function authFailures(b, headers = {}) {
  const r = await http(b.publishPort, '/metrics', { headers });
  assert.equal(r.status, 200, `/metrics: ${r.status} ${r.body}`);
  const out = {};
  for (const s of parseMetrics(r.body)) {
    const m = /reason="([a-z_]+)"/.exec(s.labels);
    if (s.name === 'ssepush_auth_failures_total' && m) out[m[1]] = s.value;
  }
  return out;
}

let b;
before(async () => {
  b = await startBroker(['-v', '--auth', 'token', '--token_secret', SECRET,
    '--trusted_proxies', '127.0.0.1, ::1']);
});
after(async () => { try { if (b) await b.stop(); } finally { killAll(); } });

/** Subscribes with a token given one way, publishes, and expects the event. */
async function roundTrip(channel, pathSuffix, headers) {
  const s = await subscribe(b, `/events/${channel}${pathSuffix}`, { headers });
  try {
    await waitPreamble(s);
    await waitSubscribers(b, channel, 1);
    const p = await publishOk(b, channel, `hello ${channel}`);
    assert.equal(p.subscribers, 1);
    const ev = await s.waitEvents(1);
    assert.deepEqual([ev[0].id, ev[0].data], [p.id, `hello ${channel}`]);
  } finally { s.close(); }
  await waitSubscribers(b, channel, 0);
}

test('a minted token is accepted as Authorization: Bearer, ?token= and cookie ssepush_token', async () => {
  const tok = await mint('tok-bearer');
  await roundTrip('tok-bearer', '', { Authorization: `Bearer ${tok}` });
  const tok2 = await mint('tok-query');
  await roundTrip('tok-query', `?token=${tok2}`, {});
  const tok3 = await mint('tok-cookie');
  await roundTrip('tok-cookie', '', { Cookie: `theme=dark; ssepush_token=${tok3}; other=1` });
});

test('a token with a channels array grants each channel it names', async () => {
  const tok = craft(HS256, { channels: ['chx-a', 'chx-b'], exp: now() + 600 });
  await roundTrip('chx-b', `?token=${tok}`, {});
  const r = await http(b.port, `/events/chx-c?token=${tok}`);
  assertJsonError(r, 403, 'channel not in the array');
});

test('the token sid wins over ?session=', async () => {
  const ch = 'tok-sid';
  const tok = await mint(ch, ['--session', 'sess-1', '--ttl', '600']);
  const s = await subscribe(b, `/events/${ch}?session=sess-2`, { headers: { Authorization: `Bearer ${tok}` } });
  try {
    await waitSubscribers(b, ch, 1);
    const other = await publishOk(b, ch, 'for sess-2', { query: { session: 'sess-2' } });
    assert.equal(other.subscribers, 0, 'an event for ?session= reached a subscriber whose token says sess-1');
    const mine = await publishOk(b, ch, 'for sess-1', { query: { session: 'sess-1' } });
    assert.equal(mine.subscribers, 1);
    const ev = await s.waitEvents(1);
    assert.equal(ev[0].data, 'for sess-1');
  } finally { s.close(); }
});

// [name, how to send it (path suffix, headers), status, error text, metrics label]
function refusals() {
  const ch = 'victim';
  const exp = now() + 600;
  const good = { sub: ch, exp };
  const big = { sub: ch, exp, pad: 'x'.repeat(2100) };
  const tamper = craft(HS256, { sub: 'other', exp }).split('.');
  return [
    ['no token at all', '', {}, 401, 'token required (Authorization: Bearer, ?token= or cookie ssepush_token)', 'missing'],
    ['garbage', '?token=not-a-token', {}, 401, 'malformed token', 'malformed'],
    ['JSON that is not JSON', `?token=${b64('{"alg":"HS256"')}.${b64('x')}.${b64('y')}`, {}, 401, 'malformed token', 'malformed'],
    ['Authorization that is not Bearer', '', { Authorization: 'Basic dXNlcjpwYXNz' }, 401, 'Authorization header must be Bearer <token>', 'malformed'],
    ['alg none, no signature', `?token=${craft({ alg: 'none' }, good, { sig: '' })}`, {}, 401, 'unsigned token (alg none) refused', 'alg_none'],
    ['alg none with an HMAC signature', `?token=${craft({ alg: 'none', typ: 'JWT' }, good)}`, {}, 401, 'unsigned token (alg none) refused', 'alg_none'],
    ['alg RS256 signed with the secret as HMAC key', `?token=${craft({ alg: 'RS256', typ: 'JWT' }, good)}`, {}, 401, 'token algorithm not accepted (HS256 required)', 'alg'],
    ['alg HS384 with the right secret', `?token=${craft({ alg: 'HS384', typ: 'JWT' }, good, { hash: 'sha384' })}`, {}, 401, 'token algorithm not accepted (HS256 required)', 'alg'],
    ['signed with another secret', `?token=${craft(HS256, good, { key: 'another-secret-of-enough-length-0123456789' })}`, {}, 401, 'bad token signature', 'signature'],
    ['claims swapped under a valid signature', `?token=${craft(HS256, good).split('.')[0]}.${tamper[1]}.${craft(HS256, good).split('.')[2]}`, {}, 401, 'bad token signature', 'signature'],
    ['expired', `?token=${craft(HS256, { sub: ch, exp: now() - 3600 })}`, {}, 401, 'token expired', 'expired'],
    ['not yet valid (nbf)', `?token=${craft(HS256, { sub: ch, exp: now() + 7200, nbf: now() + 3600 })}`, {}, 401, 'token not yet valid', 'not_yet_valid'],
    ['no exp claim', `?token=${craft(HS256, { sub: ch })}`, {}, 401, 'token has no exp claim', 'claims'],
    ['no sub and no channels', `?token=${craft(HS256, { exp })}`, {}, 401, 'token names no channel (sub or channels claim)', 'claims'],
    ['an invalid sid', `?token=${craft(HS256, { sub: ch, exp, sid: 'bad sid!' })}`, {}, 401, 'token sid claim is not a valid session', 'claims'],
    ['a token for another channel', '', { Authorization: `Bearer ${craft(HS256, { sub: 'someone-else', exp })}` }, 403, 'token does not grant this channel', 'channel'],
    ['an oversized token (over max_token_size 2k)', '', { Authorization: `Bearer ${craft(HS256, big)}` }, 401, 'token too large', 'too_large'],
  ];
}

test('every refusal has its own status, JSON reason and metrics label', async () => {
  for (const [name, suffix, headers, status, error, label] of refusals()) {
    const before = await authFailures(b);
    const r = await http(b.port, `/events/victim${suffix}`, { headers });
    assertJsonError(r, status, name);
    assert.equal(r.json.error, error, `${name}: error text`);
    if (status === 401) assert.match(r.headers['www-authenticate'] || '', /^Bearer realm="ssepush"/, `${name}: WWW-Authenticate`);
    const afterCount = await authFailures(b);
    assert.equal(afterCount[label], (before[label] || 0) + 1, `${name}: auth_failures_total{reason="${label}"} did not go up by one`);
  }
  // No refused request became a subscriber.
  const st = await http(b.publishPort, '/stats/victim');
  assert.ok(st.status === 404 || st.json.subscribers === 0, `victim has subscribers: ${st.body}`);
});

test('refusals are logged with the reason, never with the token', async () => {
  const leaked = [];
  for (const [, suffix, headers] of refusals()) {
    const tok = (suffix.match(/token=([^&]+)/) || [])[1] || (headers.Authorization || '').replace(/^Bearer /, '');
    if (tok && tok.length > 20) leaked.push(tok);
  }
  const good = await mint('log-check');
  await roundTrip('log-check', `?token=${good}`, {});
  leaked.push(good);
  await b.waitLog(/auth: refused subscribe to victim from 127\.0\.0\.1: expired/);
  const log = b.stderr();
  for (const t of leaked) {
    for (const part of t.split('.').filter((p) => p.length > 16)) {
      assert.ok(!log.includes(part), `a token part appears in the log: ${part.slice(0, 24)}...`);
    }
  }
});

test('X-Forwarded-For names the client only when the peer is a trusted proxy', async () => {
  const bad = craft(HS256, { sub: 'xff', exp: now() - 3600 });
  const from = b.stderr().length;
  let r = await http(b.port, `/events/xff?token=${bad}`, { headers: { 'X-Forwarded-For': '198.51.100.7, 203.0.113.9' } });
  assertJsonError(r, 401, 'trusted peer');
  await b.waitLog(/auth: refused subscribe to xff from 203\.0\.113\.9: expired/, undefined, from);
  // A client that lists the proxy itself after its own address: the proxy hop is skipped.
  r = await http(b.port, `/events/xff?token=${bad}`, { headers: { 'X-Forwarded-For': '192.0.2.44, 127.0.0.1' } });
  await b.waitLog(/auth: refused subscribe to xff from 192\.0\.2\.44: expired/, undefined, from);
  const from2 = b.stderr().length;
  r = await http(b.port, `/events/xff?token=${bad}`, { localAddress: '127.0.0.2', headers: { 'X-Forwarded-For': '198.51.100.99' } });
  assertJsonError(r, 401, 'untrusted peer');
  await b.waitLog(/auth: refused subscribe to xff from 127\.0\.0\.2: expired/, undefined, from2);
  assert.ok(!b.stderr().includes('198.51.100.99'), 'X-Forwarded-For from an untrusted peer was believed');
});

test('--mint-token: usage errors, and a token from another secret is refused', async () => {
  let r = await runBroker(['--mint-token', 'alice']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /token_secret/);
  r = await runBroker(['--session', 's1']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /--mint-token/);
  r = await runBroker(['--mint-token', 'bad channel!', '--token_secret', SECRET]);
  assert.equal(r.code, 1);
  r = await runBroker(['--mint-token', 'alice', '--ttl', 'soon', '--token_secret', SECRET]);
  assert.equal(r.code, 1);
  const foreign = await mint('alice', [], 'some-other-secret-that-is-long-enough-0123');
  const x = await http(b.port, `/events/alice?token=${foreign}`);
  assertJsonError(x, 401, 'foreign secret');
  assert.equal(x.json.error, 'bad token signature');
});

test('curl with a minted token, as the README shows', async () => {
  const tok = await mint('curl-user', ['--ttl', '60']);
  const c = spawnProcess('curl', ['-sN', '-H', `Authorization: Bearer ${tok}`, `${b.url}/events/curl-user`]);
  try {
    await waitSubscribers(b, 'curl-user', 1);
    await publishOk(b, 'curl-user', '{"folder":"INBOX"}', { query: { event: 'change' } });
    await waitSubscribers(b, 'curl-user', 1);
    const deadline = Date.now() + 5000;
    while (!c.stdout().includes('data: {"folder":"INBOX"}') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.match(c.stdout(), /event: change\ndata: \{"folder":"INBOX"\}/);
  } finally { c.kill(); await c.exited(); }
});

test('auth proxy: only trusted_proxies may subscribe', async () => {
  const p = await startBroker(['--auth', 'proxy', '--trusted_proxies', '127.0.0.1']);
  try {
    const ok = await subscribe(p, '/events/proxied');
    ok.close();
    const r = await http(p.port, '/events/proxied', { localAddress: '127.0.0.2' });
    assertJsonError(r, 403, 'untrusted peer');
    assert.equal(r.json.error, 'subscribe only through a trusted proxy');
    assert.equal((await authFailures(p)).untrusted_peer, 1);
  } finally { await p.stop(); }
});

test('publishers: Bearer publish_secret guards /publish, /metrics and /stats, not /healthz', async () => {
  const p = await startBroker(['--publish_secret', PUB_SECRET]);
  try {
    let r = await publish(p, 'pub', 'x');
    assertJsonError(r, 401, 'no secret');
    assert.equal(r.json.error, 'publish secret required (Authorization: Bearer)');
    r = await publish(p, 'pub', 'x', { headers: { Authorization: `Bearer ${PUB_SECRET.slice(0, -1)}X` } });
    assertJsonError(r, 401, 'wrong secret');
    assert.equal(r.json.error, 'wrong publish secret');
    r = await publish(p, 'pub', 'x', { headers: { Authorization: `Bearer ${PUB_SECRET}extra` } });
    assertJsonError(r, 401, 'longer secret');
    r = await http(p.publishPort, '/publish', { method: 'POST', body: '[{"channel":"a","data":"x"}]' });
    assertJsonError(r, 401, 'batch without secret');
    r = await publish(p, 'pub', 'x', { headers: { Authorization: `Bearer ${PUB_SECRET}` } });
    assert.equal(r.status, 200, r.body);
    assertJsonError(await http(p.publishPort, '/metrics'), 401, '/metrics without secret');
    assertJsonError(await http(p.publishPort, '/stats'), 401, '/stats without secret');
    assert.equal((await http(p.publishPort, '/healthz')).status, 200);
    const m = await authFailures(p, { Authorization: `Bearer ${PUB_SECRET}` });
    assert.equal(m.publish_secret, 6);
    assert.ok(!p.stderr().includes(PUB_SECRET.slice(0, 20)), 'the publish secret appears in the log');
  } finally { await p.stop(); }
});

test('publishers: with no secret only local peers may publish', async () => {
  // A loopback peer relaying for someone else (a proxy on this host) is not local.
  let r = await publish(b, 'pub-local', 'x', { headers: { 'X-Forwarded-For': '203.0.113.5' } });
  assertJsonError(r, 403, 'relayed publish');
  r = await publish(b, 'pub-local', 'x', { headers: { 'X-Real-IP': '203.0.113.5' } });
  assertJsonError(r, 403, 'relayed publish (X-Real-IP)');
  assert.equal((await publish(b, 'pub-local', 'x')).status, 200);
  // A peer address that is not loopback (this host's own LAN address, when it has one).
  const lan = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
  if (lan) {
    r = await http(b.publishPort, '/publish/pub-local', { method: 'POST', body: 'x', localAddress: lan.address });
    assertJsonError(r, 403, `publish from ${lan.address}`);
    assert.match(r.json.error, /publish_secret/);
  }
});

test('auth none is refused on a non-loopback listen address; auth token or proxy need their settings', async () => {
  let r = await runBroker(['-n', '--listen', '0.0.0.0:0']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /listen 0\.0\.0\.0:0 is not a loopback address and auth is none.*set auth token/);
  r = await runBroker(['-n', '--listen', '[::]:0']);
  assert.equal(r.code, 1);
  r = await runBroker(['-n', '--listen', '[::1]:0']);
  assert.equal(r.code, 0, r.stderr);
  r = await runBroker(['-n', '--listen', '0.0.0.0:0', '--auth', 'token', '--token_secret', SECRET]);
  assert.equal(r.code, 0, r.stderr);
  r = await runBroker(['-n', '--auth', 'token']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /auth token needs token_secret/);
  r = await runBroker(['-n', '--auth', 'proxy']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /auth proxy needs trusted_proxies/);
  r = await runBroker(['-n', '--token_secret', 'short']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /at least 32 bytes/);
  r = await runBroker(['-n', '--trusted_proxies', '10.0.0.0/8, 10.0.0.300']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /'10\.0\.0\.300'/);
});

test('secrets in files: token_secret_file works; secret files and configs readable by others are refused', async () => {
  const dir = tempDir();
  const file = path.join(dir, 'token.secret');
  writeFileSync(file, `${SECRET}\n`);
  chmodSync(file, 0o600);
  const conf = path.join(dir, 'broker.conf');
  writeFileSync(conf, `auth token\ntoken_secret_file ${file}\n`);
  let r = await runBroker(['-n', '-f', conf]);
  assert.equal(r.code, 0, r.stderr);
  // A token minted from the file's secret is accepted by the broker using the inline one.
  r = await runBroker(['-f', conf, '--mint-token', 'file-user']);
  assert.equal(r.code, 0, r.stderr);
  const ok = await subscribe(b, `/events/file-user?token=${r.stdout.trim()}`);
  ok.close();

  chmodSync(file, 0o644);
  r = await runBroker(['-n', '-f', conf]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`${conf}:2: .*token\\.secret holds a secret but is readable by other users \\(mode 644\\)`));
  chmodSync(file, 0o640);
  r = await runBroker(['-n', '-f', conf]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /readable by its group/);

  const inline = writeConfig(`publish_secret ${PUB_SECRET}\n`);
  chmodSync(inline, 0o644);
  r = await runBroker(['-n', '-f', inline]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /:1: .*holds a secret but is readable by other users.*publish_secret_file/);
  chmodSync(inline, 0o600);
  r = await runBroker(['-n', '-f', inline]);
  assert.equal(r.code, 0, r.stderr);

  writeFileSync(conf, `token_secret ${SECRET}\ntoken_secret_file ${file}\n`);
  chmodSync(conf, 0o600);
  r = await runBroker(['-n', '-f', conf]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /set token_secret or token_secret_file, not both/);
});

test('CORS: allowed origins are echoed with credentials; preflight for publish and events', async () => {
  const origin = 'https://mail.example.com';
  const p = await startBroker(['--cors_origins', `${origin}, http://localhost:3000`]);
  try {
    const s = await openStream(p.port, '/events/cors', { headers: { Origin: origin } });
    assert.equal(s.status, 200);
    assert.equal(s.headers['access-control-allow-origin'], origin);
    assert.equal(s.headers['access-control-allow-credentials'], 'true');
    assert.match(s.headers.vary || '', /Origin/);
    s.close();
    const other = await openStream(p.port, '/events/cors', { headers: { Origin: 'https://evil.example' } });
    assert.equal(other.headers['access-control-allow-origin'], undefined);
    assert.match(other.headers.vary || '', /Origin/);
    other.close();
    let r = await publish(p, 'cors', 'x', { headers: { Origin: 'http://localhost:3000' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], 'http://localhost:3000');
    r = await http(p.publishPort, '/publish/cors', { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' } });
    assert.equal(r.status, 204, r.body);
    assert.equal(r.headers['access-control-allow-origin'], origin);
    assert.equal(r.headers['access-control-allow-credentials'], 'true');
    assert.equal(r.headers['access-control-allow-methods'], 'POST');
    assert.match(r.headers['access-control-allow-headers'], /Authorization/);
    assert.match(r.headers['access-control-allow-headers'], /Content-Type/);
    r = await http(p.port, '/events/cors', { method: 'OPTIONS', headers: { Origin: origin, 'Access-Control-Request-Method': 'GET' } });
    assert.equal(r.status, 204);
    assert.equal(r.headers['access-control-allow-methods'], 'GET');
    assert.match(r.headers['access-control-allow-headers'], /Last-Event-ID/);
    r = await http(p.publishPort, '/publish/cors', { method: 'OPTIONS', headers: { Origin: 'https://evil.example' } });
    assertJsonError(r, 403, 'preflight from another origin');
    assert.equal(r.headers['access-control-allow-origin'], undefined);
    r = await runBroker(['-n', '--cors_origins', '*']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cors_origins: '\*' is not an origin/);
  } finally { await p.stop(); }
  // Without cors_origins nothing changes: OPTIONS is a 405 and no CORS header is sent.
  const r = await http(b.publishPort, '/publish/x', { method: 'OPTIONS', headers: { Origin: origin } });
  assert.equal(r.status, 405);
  assert.equal(r.headers['access-control-allow-origin'], undefined);
});

test('a token whose header names critical extensions (crit) is refused (RFC 7515 4.1.11)', async () => {
  const tok = craft({ ...HS256, crit: ['exp-ext'], 'exp-ext': 1 }, { sub: 'crit', exp: now() + 600 });
  const before = (await authFailures(b)).malformed || 0;
  const r = await http(b.port, `/events/crit?token=${tok}`);
  assertJsonError(r, 401, 'token with crit');
  assert.match(r.json.error, /critical extensions/, r.body);
  assert.equal((await authFailures(b)).malformed, before + 1, 'refusal not counted as malformed');
  // The same token without crit is fine.
  const ok = await openStream(b.port, `/events/crit?token=${craft(HS256, { sub: 'crit', exp: now() + 600 })}`);
  assert.equal(ok.status, 200, ok.describe());
  ok.close();
});

test('a token that claims to stay valid beyond max_token_lifetime is refused (exp 1e300 is not for ever)', async () => {
  for (const exp of [1e300, now() + 31 * 86400]) {
    const r = await http(b.port, `/events/forever?token=${craft(HS256, { sub: 'forever', exp })}`);
    assertJsonError(r, 401, `exp ${exp}`);
    assert.match(r.json.error, /max_token_lifetime/, r.body);
  }
  const ok = await openStream(b.port, `/events/forever?token=${craft(HS256, { sub: 'forever', exp: now() + 29 * 86400 })}`);
  assert.equal(ok.status, 200, ok.describe());
  ok.close();
  // --mint-token stays within it too.
  const m = await runBroker(['--mint-token', 'x', '--ttl', String(31 * 86400), '--token_secret', SECRET]);
  assert.equal(m.code, 1, `minted a token beyond max_token_lifetime: ${m.stdout}`);
  assert.match(m.stderr, /max_token_lifetime/, m.stderr);
  const short = await runBroker(['--mint-token', 'x', '--ttl', '600', '--max_token_lifetime', '300', '--token_secret', SECRET]);
  assert.equal(short.code, 1, 'a --ttl above a lowered max_token_lifetime was minted');
});
