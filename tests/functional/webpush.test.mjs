// Web push, standalone: registration (auth as subscribing, validation, the allow-list),
// delivery to the npm web-push-testing service (it verifies VAPID itself) and to a
// push service of our own that decrypts with http_ece, the headers (TTL, Urgency,
// Topic, Content-Encoding), the VAPID token verified by an independent JOSE
// implementation (npm jose), 410 removing a registration, 429 + Retry-After delaying
// the retry, 5xx retried, webpush_when offline/always, the oversized-payload notice,
// registrations surviving a restart, and the configuration checks.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

import * as jose from 'jose';

import {
  startBroker, runBroker, publishOk, tempDir, subscribeReady, http, parseMetrics, metricValue,
  WAIT,
} from './lib.mjs';
import {
  vapidKeyFile, webpushArgs, startWebPushTesting, startDecryptingService, register, registerOk, until,
} from './webpush-lib.mjs';

const require = createRequire(import.meta.url);

/** The broker's VAPID public key from GET /webpush/key. */
async function publicKey(b) {
  const r = await fetch(`${b.url}/webpush/key`);
  assert.equal(r.status, 200);
  const { key } = await r.json();
  assert.match(key, /^[A-Za-z0-9_-]{87}$/);
  return key;
}

/** How many push service answers had this status (ssepush_webpush_responses_total). */
function statusCount(samples, code) {
  return samples.filter((x) => x.name === 'ssepush_webpush_responses_total' && x.labels === `{status="${code}"}`)
    .reduce((a, x) => a + x.value, 0);
}

/** The webpush lines of /metrics, parsed. */
async function metrics(b) {
  return parseMetrics(await (await fetch(`${b.url}/metrics`)).text());
}

test('web-push-testing receives the event, decrypted and VAPID-checked by the service itself', async () => {
  const wpt = await startWebPushTesting();
  const b = await startBroker(webpushArgs(await vapidKeyFile(), [wpt.origin]));
  try {
    const sub = await wpt.subscribe(await publicKey(b));
    await registerOk(b, 'alice@example.com', sub);
    const p = await publishOk(b, 'alice@example.com', '{"mailbox":"INBOX"}', { query: { event: 'change' } });
    const got = await until(async () => { const m = await wpt.messages(sub.clientHash); return m.length > 0 && m; },
      'web-push-testing to store the message');
    assert.equal(got.length, 1);
    assert.deepEqual(JSON.parse(got[0]), { channel: 'alice@example.com', id: p.id, event: 'change', data: '{"mailbox":"INBOX"}' });
    // The service expires the subscription: it answers 410 and the registration goes.
    await wpt.expire(sub.clientHash);
    await publishOk(b, 'alice@example.com', 'two');
    await until(async () => metricValue(await metrics(b), 'ssepush_webpush_removed_total') === 1, 'the registration removed after 410');
    assert.equal(statusCount(await metrics(b), 410), 1);
    await publishOk(b, 'alice@example.com', 'three');
    assert.equal((await wpt.messages(sub.clientHash)).length, 1);
  } finally {
    try { await b.stop(); } finally { await wpt.close(); }
  }
});

test('the message decrypts with http_ece; headers and the VAPID token are as RFC 8030/8292 say (jose verifies it)', async () => {
  const dec = await startDecryptingService();
  const b = await startBroker(webpushArgs(await vapidKeyFile(), [dec.origin], { webpush_ttl: 3600, webpush_urgency: 'low' }));
  try {
    const key = await publicKey(b);
    await registerOk(b, 'bob', dec.subscription('bob1'));
    const p = await publishOk(b, 'bob', 'héllo wörld');
    const p2 = await publishOk(b, 'bob', '{"urgency":"high","n":2}');
    const got = await until(() => dec.received('bob1').length >= 2 && dec.received('bob1'), 'two messages');
    const [m1, m2] = got;
    assert.equal(m1.error, null, m1.error);
    assert.deepEqual(JSON.parse(m1.plaintext), { channel: 'bob', id: p.id, event: 'message', data: 'héllo wörld' });
    assert.deepEqual(JSON.parse(m2.plaintext), { channel: 'bob', id: p2.id, event: 'message', data: '{"urgency":"high","n":2}' });
    assert.equal(m1.headers['content-encoding'], 'aes128gcm');
    assert.equal(m1.headers.ttl, '3600');
    assert.equal(m1.headers.urgency, 'low');
    assert.equal(m2.headers.urgency, 'high', 'the payload names its urgency');
    assert.match(m1.headers.topic, /^[A-Za-z0-9_-]{32}$/);
    assert.equal(m1.headers.topic, m2.headers.topic, 'one Topic per channel');
    // A fresh key and salt per message.
    assert.notDeepEqual(m1.body.subarray(0, 16), m2.body.subarray(0, 16));
    assert.notDeepEqual(m1.body.subarray(21, 86), m2.body.subarray(21, 86));
    // VAPID (RFC 8292): vapid t=<JWT>, k=<the key GET /webpush/key gives>.
    const auth = /^vapid t=([^,]+), k=([A-Za-z0-9_-]+)$/.exec(m1.headers.authorization);
    assert.ok(auth, m1.headers.authorization);
    assert.equal(auth[2], key);
    const raw = Buffer.from(key, 'base64url');
    const pub = await jose.importJWK({ kty: 'EC', crv: 'P-256', x: raw.subarray(1, 33).toString('base64url'),
      y: raw.subarray(33, 65).toString('base64url') }, 'ES256');
    const { payload, protectedHeader } = await jose.jwtVerify(auth[1], pub, { algorithms: ['ES256'], audience: dec.origin });
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(payload.sub, 'mailto:ops@example.com');
    const now = Math.floor(Date.now() / 1000);
    assert.ok(payload.exp > now && payload.exp <= now + 86400, `exp ${payload.exp} within 24 h`);
    // A token signed by another key does not verify: the check can fail.
    const other = await jose.generateKeyPair('ES256');
    await assert.rejects(jose.jwtVerify(auth[1], other.publicKey, { algorithms: ['ES256'] }));
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});

test('429 with Retry-After delays the retry; 5xx is retried; 404 removes; types filter', async () => {
  const dec = await startDecryptingService();
  const b = await startBroker(webpushArgs(await vapidKeyFile(), [dec.origin], { webpush_retries: 3 }));
  try {
    await registerOk(b, 'carol', dec.subscription('c1'));
    await registerOk(b, 'carol', dec.subscription('c2'), { types: ['alert'] });
    await registerOk(b, 'carol', dec.subscription('c3'));
    dec.plan('c1', { status: 429, headers: { 'Retry-After': '2' } });
    dec.plan('c3', 503, 502);
    await publishOk(b, 'carol', 'x');
    const c1 = await until(() => dec.received('c1').length >= 2 && dec.received('c1'), 'c1 retried after its 429', WAIT * 3);
    assert.equal(c1[0].status, 429);
    assert.equal(c1[1].status, 201);
    assert.ok(c1[1].at - c1[0].at >= 1900, `the retry came ${c1[1].at - c1[0].at} ms after a Retry-After of 2 s`);
    assert.equal(c1[1].plaintext, c1[0].plaintext);
    const c3 = await until(() => dec.received('c3').length >= 3 && dec.received('c3'), 'c3 retried twice after 5xx', WAIT * 3);
    assert.deepEqual(c3.map((m) => m.status), [503, 502, 201]);
    assert.equal(dec.received('c2').length, 0, 'types [alert]: a message event is not for it');
    await publishOk(b, 'carol', 'y', { query: { event: 'alert' } });
    await until(() => dec.received('c2').length === 1, 'c2 gets the alert');
    // 404: gone for good.
    dec.plan('c2', 404);
    await publishOk(b, 'carol', 'z', { query: { event: 'alert' } });
    await until(async () => metricValue(await metrics(b), 'ssepush_webpush_removed_total') === 1, 'c2 removed after 404');
    await publishOk(b, 'carol', 'w', { query: { event: 'alert' } });
    await until(() => dec.received('c1').length >= 5, 'c1 got every event');
    assert.equal(dec.received('c2').length, 2);
    const m = await metrics(b);
    assert.ok(metricValue(m, 'ssepush_webpush_retries_total') >= 3);
    assert.equal(statusCount(m, 429), 1);
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});

test('webpush_when offline skips events an open stream received; always sends them; the session filter applies', async () => {
  const dec = await startDecryptingService();
  const key = await vapidKeyFile();
  let b = await startBroker(webpushArgs(key, [dec.origin]));
  try {
    await registerOk(b, 'dave', dec.subscription('d1'), { session: 's1' });
    const s = await subscribeReady(b, 'dave');
    await publishOk(b, 'dave', 'seen by the stream');
    s.close();
    await until(async () => (await http(b.publishPort, '/stats/dave')).json?.subscribers === 0, 'the stream gone');
    await publishOk(b, 'dave', 'nobody online', { query: { session: 's2' } });	// not this session
    const p = await publishOk(b, 'dave', 'nobody online');
    await until(() => dec.received('d1').length === 1, 'the offline event');
    assert.equal(JSON.parse(dec.received('d1')[0].plaintext).id, p.id);
  } finally {
    await b.stop();
  }
  b = await startBroker(webpushArgs(key, [dec.origin], { webpush_when: 'always' }));
  try {
    await registerOk(b, 'erin', dec.subscription('e1'));
    const s = await subscribeReady(b, 'erin');
    const p = await publishOk(b, 'erin', 'both');
    assert.equal(p.subscribers, 1);
    await until(() => dec.received('e1').length === 1, 'always: pushed although a stream got it');
    s.close();
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});

test('webpush_when offline is per session: a device is pushed to while only the user\'s other sessions have a stream open', async () => {
  const dec = await startDecryptingService();
  const b = await startBroker(webpushArgs(await vapidKeyFile(), [dec.origin]));
  const got = (sub) => dec.received(sub).map((m) => JSON.parse(m.plaintext).id);
  try {
    await registerOk(b, 'frank', dec.subscription('f1'), { session: 's1' });
    await registerOk(b, 'frank', dec.subscription('f2'), { session: 's2' });
    await registerOk(b, 'frank', dec.subscription('f0'));
    const s1 = await subscribeReady(b, 'frank', '?session=s1');
    const p1 = await publishOk(b, 'frank', 'session s1 is online');
    assert.equal(p1.subscribers, 1);
    await until(() => got('f2').length === 1, 's2 (offline) pushed while s1 has a stream');
    const anon = await subscribeReady(b, 'frank', '', 2);
    const p2 = await publishOk(b, 'frank', 'a stream without a session is online too');
    assert.equal(p2.subscribers, 2);
    s1.close();
    anon.close();
    await until(async () => (await http(b.publishPort, '/stats/frank')).json?.subscribers === 0, 'the streams gone');
    const p3 = await publishOk(b, 'frank', 'nobody online');
    await until(() => got('f0').length === 1 && got('f1').length === 1 && got('f2').length === 2, 'the offline event on all three');
    assert.deepEqual(got('f2'), [p1.id, p3.id]);	// p2: a stream without a session might be this device
    assert.deepEqual(got('f1'), [p3.id]);
    assert.deepEqual(got('f0'), [p3.id]);
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});

test('a payload over 3993 bytes becomes a short notice naming the event', async () => {
  const dec = await startDecryptingService();
  const b = await startBroker(webpushArgs(await vapidKeyFile(), [dec.origin]));
  try {
    await registerOk(b, 'frank', dec.subscription('f1'));
    const p = await publishOk(b, 'frank', 'x'.repeat(5000), { query: { event: 'big' } });
    await until(() => dec.received('f1').length === 1, 'the notice');
    const m = dec.received('f1')[0];
    assert.deepEqual(JSON.parse(m.plaintext), { channel: 'frank', id: p.id, event: 'big', truncated: true });
    assert.ok(m.body.length <= 4096);
    // 3993 bytes of plaintext at most: one that fits exactly is sent whole (4096-byte message).
    const overhead = JSON.stringify({ channel: 'frank', id: 'ID', event: 'message', data: '' }).length - 2;
    const fit = 3993 - overhead - (await publishOk(b, 'other', 'probe')).id.length;
    const p2 = await publishOk(b, 'frank', 'y'.repeat(fit));
    await until(() => dec.received('f1').length === 2, 'the exact fit');
    const m2 = dec.received("f1")[1];
    assert.ok(m2.plaintext && !JSON.parse(m2.plaintext).truncated, `fit ${fit}: ${m2.plaintext?.slice(0, 120)} len ${m2.plaintext?.length}`);
    assert.equal(JSON.parse(m2.plaintext).id, p2.id);
    assert.equal(JSON.parse(m2.plaintext).data.length, fit, 'sent whole');
    assert.equal(m2.body.length, 4096);
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});

test('registration: validation, the allow-list, private addresses, limits, DELETE, and the store across a restart', async () => {
  const dec = await startDecryptingService();
  const key = await vapidKeyFile();
  const store = path.join(tempDir(), 'store.json');
  let b = await startBroker(webpushArgs(key, [dec.origin], { webpush_store: store, webpush_max_per_channel: 2 }));
  let id;
  try {
    const good = dec.subscription('g1');
    const bad = async (body, status, re) => {
      const r = await register(b, 'gina', body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.status} ${r.body}`);
      assert.match(r.json.error, re);
    };
    await bad('not json', 400, /invalid JSON/);
    await bad({ keys: good.keys }, 400, /endpoint missing/);
    await bad({ ...good, endpoint: 'https://evil.example.com/push/x' }, 400, /not on an allowed push service/);
    await bad({ ...good, endpoint: `http://127.0.0.2:${new URL(dec.origin).port}/push/x` }, 400, /allowed push service/);
    await bad({ ...good, endpoint: `${dec.origin}@evil.example.com/x` }, 400, /not an http\(s\) URL/);
    await bad({ ...good, endpoint: `${dec.origin}/push/a b` }, 400, /not an http\(s\) URL/);
    // The key's last bits changed (off the curve); a key that ends in "AA" already gets "AE".
    const offCurve = good.keys.p256dh.slice(0, -2) + (good.keys.p256dh.endsWith('AA') ? 'AE' : 'AA');
    await bad({ ...good, keys: { ...good.keys, p256dh: offCurve } }, 400, /p256dh/);
    await bad({ ...good, keys: { ...good.keys, auth: 'AAAA' } }, 400, /auth/);
    await bad({ ...good, expirationTime: 1000 }, 400, /in the past/);
    await bad({ ...good, types: 'a,,b' }, 400, /types/);
    await bad({ ...good, session: 'bad session!' }, 400, /session/);
    const big = await register(b, 'gina', { ...good, pad: 'x'.repeat(5000) });
    assert.equal(big.status, 413);
    const badch = await register(b, 'bad%20channel', good);
    assert.equal(badch.status, 400);
    // Unknown fields are ignored; the same endpoint registered again keeps its id.
    id = await registerOk(b, 'gina', good, { whatever: 1 });
    assert.equal(await registerOk(b, 'gina', good), id);
    await registerOk(b, 'gina', dec.subscription('g2'));
    const full = await register(b, 'gina', dec.subscription('g3'));
    assert.equal(full.status, 429);
    assert.match(full.json.error, /webpush_max_per_channel/);
    const saved = JSON.parse(readFileSync(store, 'utf8'));
    assert.equal(saved.registrations.length, 2);
    // DELETE: 204, then 404.
    const del = await http(b.port, `/webpush/gina/${saved.registrations.find((r) => r.id !== id).id}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    const again = await http(b.port, `/webpush/gina/${saved.registrations.find((r) => r.id !== id).id}`, { method: 'DELETE' });
    assert.equal(again.status, 404);
    assert.equal((await http(b.port, '/webpush/gina', { method: 'GET' })).status, 405);
  } finally {
    await b.stop();
  }
  // The default list: only https on the public push services, never a private address.
  const d = await startBroker(['--webpush', 'on', '--webpush_vapid_key_file', key, '--webpush_subject', 'mailto:a@example.com',
    '--webpush_store', path.join(tempDir(), 's.json')]);
  try {
    const sub = dec.subscription('x');
    const r1 = await register(d, 'h', { ...sub, endpoint: 'https://fcm.googleapis.com/fcm/send/abc' });
    assert.equal(r1.status, 201, r1.body);
    const r2 = await register(d, 'h', { ...sub, endpoint: 'http://fcm.googleapis.com/fcm/send/abc' });
    assert.match(r2.json.error, /must be https/);
    const r3 = await register(d, 'h', { ...sub, endpoint: 'https://wns2-par02p.notify.windows.com/w/?token=x' });
    assert.equal(r3.status, 201, r3.body);
    const r4 = await register(d, 'h', { ...sub, endpoint: 'https://notify.windows.com.evil.example/w' });
    assert.equal(r4.status, 400);
  } finally {
    await d.stop();
  }
  // After a restart the registration is still there and gets the next event.
  b = await startBroker(webpushArgs(key, [dec.origin], { webpush_store: store }));
  try {
    const p = await publishOk(b, 'gina', 'after restart');
    await until(() => dec.received('g1').some((m) => m.plaintext && JSON.parse(m.plaintext).id === p.id), 'g1 after the restart');
    assert.equal(dec.received('g2').length, 0, 'the deleted one stays deleted');
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});

test('registration is authenticated exactly like subscribing (auth token)', async () => {
  const dec = await startDecryptingService();
  const dir = tempDir();
  const secret = 'k'.repeat(40);
  const b = await startBroker([...webpushArgs(await vapidKeyFile(dir), [dec.origin]), '--auth', 'token', '--token_secret', secret]);
  try {
    const sub = dec.subscription('t1');
    assert.equal((await register(b, 'ivan', sub)).status, 401);
    const mint = async (ch, extra = []) => (await runBroker(['--auth', 'token', '--token_secret', secret, '--mint-token', ch, ...extra])).stdout.trim();
    const other = await mint('someone-else');
    assert.equal((await register(b, 'ivan', sub, {}, { Authorization: `Bearer ${other}` })).status, 403);
    const tok = await mint('ivan', ['--session', 'sid7']);
    await registerOk(b, 'ivan', sub, { session: 'ignored' }, { Authorization: `Bearer ${tok}` });
    // The token's sid is the registration's session: an event for another session is not pushed.
    await publishOk(b, 'ivan', 'other', { query: { session: 'sid8' } });
    const p = await publishOk(b, 'ivan', 'mine', { query: { session: 'sid7' } });
    await until(() => dec.received('t1').length === 1, 'the sid7 event');
    assert.equal(JSON.parse(dec.received('t1')[0].plaintext).id, p.id);
    const del = await http(b.port, '/webpush/ivan/AAAAAAAAAAAAAAAAAAAAAA', { method: 'DELETE' });
    assert.equal(del.status, 401);
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});

test('configuration: webpush on needs a key, a subject and a store; bad values are file:line errors; off means 404', async () => {
  const dir = tempDir();
  const key = await vapidKeyFile(dir);
  const conf = path.join(dir, 'b.conf');
  writeFileSync(conf, 'webpush on\nwebpush_subject nobody\nwebpush_endpoints ftp://x\n');
  let r = await runBroker(['-f', conf, '-n']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`${conf}:2: webpush_subject`));
  assert.match(r.stderr, new RegExp(`${conf}:3: webpush_endpoints`));
  assert.match(r.stderr, /webpush_vapid_key_file/);
  assert.match(r.stderr, /webpush_store/);
  const loose = path.join(dir, 'loose.pem');
  writeFileSync(loose, readFileSync(key));
  chmodSync(loose, 0o644);
  r = await runBroker(['-n', '--webpush', 'on', '--webpush_subject', 'mailto:a@b', '--webpush_store', '/tmp/x',
    '--webpush_vapid_key_file', loose]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /webpush_vapid_key_file/);
  const notkey = path.join(dir, 'notkey.pem');
  writeFileSync(notkey, 'hello\n', { mode: 0o600 });
  r = await runBroker(['-n', '--webpush', 'on', '--webpush_subject', 'mailto:a@b', '--webpush_store', '/tmp/x',
    '--webpush_vapid_key_file', notkey]);
  assert.match(r.stderr, /not a PEM private key/);
  // An http: entry in the default position is refused unless exact; a wildcard cannot allow http.
  r = await runBroker(['-n', '--webpush_endpoints', 'http://*.example.com']);
  assert.equal(r.code, 1);
  r = await runBroker(['-n', '--webpush', 'on', '--webpush_subject', 'mailto:a@b', '--webpush_store', '/tmp/x',
    '--webpush_vapid_key_file', key]);
  assert.equal(r.code, 0, r.stderr);
  const b = await startBroker([]);
  try {
    const k = await http(b.port, '/webpush/key');
    assert.equal(k.status, 404);
    assert.match(k.json.error, /web push is off/);
  } finally {
    await b.stop();
  }
  // openssl's own SEC1 key (as the issue names it) loads too.
  const { execFileSync } = require('node:child_process');
  const sec1 = path.join(dir, 'sec1.pem');
  writeFileSync(sec1, execFileSync('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout']), { mode: 0o600 });
  r = await runBroker(['-n', '--webpush', 'on', '--webpush_subject', 'mailto:a@b', '--webpush_store', '/tmp/x',
    '--webpush_vapid_key_file', sec1]);
  assert.equal(r.code, 0, r.stderr);
  // With Redis no store is needed, with one server or several shards.
  r = await runBroker(['-n', '--webpush', 'on', '--webpush_subject', 'mailto:a@b', '--webpush_vapid_key_file', sec1,
    '--redis', 'redis://127.0.0.1:6390 redis://127.0.0.1:6391']);
  assert.equal(r.code, 0, r.stderr);
});

test('a page of a cors_origins origin may register (preflight, then the answer carries CORS headers)', async () => {
  const dec = await startDecryptingService();
  const b = await startBroker([...webpushArgs(await vapidKeyFile(), [dec.origin]), '--cors_origins', 'https://mail.example.com']);
  try {
    const pre = await http(b.port, '/webpush/judy', { method: 'OPTIONS', headers: { Origin: 'https://mail.example.com',
      'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://mail.example.com');
    assert.match(pre.headers['access-control-allow-methods'], /POST/);
    assert.match(pre.headers['access-control-allow-headers'], /Content-Type/);
    const other = await http(b.port, '/webpush/judy', { method: 'OPTIONS', headers: { Origin: 'https://evil.example.com' } });
    assert.equal(other.status, 403);
    const r = await register(b, 'judy', dec.subscription('j1'), {}, { Origin: 'https://mail.example.com' });
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('access-control-allow-origin'), 'https://mail.example.com');
  } finally {
    try { await b.stop(); } finally { await dec.close(); }
  }
});
