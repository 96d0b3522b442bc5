// Harness for the web push tests: a VAPID key written by the broker's own
// --webpush-genkey, the npm web-push-testing push service (it checks VAPID with
// jsonwebtoken and decrypts with http_ece) served on a loopback port of this process,
// and a test push service of our own that decrypts every message with http_ece, keeps
// the request's headers, and answers with the statuses a test scripts (410, 429 with
// Retry-After, 500, ...). Both listen on 127.0.0.1 only and are closed by the test.

import { createRequire } from 'node:module';
import { createECDH, randomBytes } from 'node:crypto';
import { writeFileSync, chmodSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';

import { runBroker, tempDir, freePort, waitFor, WAIT } from './lib.mjs';

const require = createRequire(import.meta.url);
const ece = require('http_ece');

/** Writes a fresh VAPID key (from ssepush-broker --webpush-genkey, mode 0600) and returns its path. */
export async function vapidKeyFile(dir = tempDir()) {
  const r = await runBroker(['--webpush-genkey']);
  assert.equal(r.code, 0, `--webpush-genkey failed: ${r.stderr}`);
  assert.match(r.stdout, /^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/);
  const p = path.join(dir, 'vapid.pem');
  writeFileSync(p, r.stdout, { mode: 0o600 });
  chmodSync(p, 0o600);
  return p;
}

/** Broker arguments for web push on with the given allowed origins (and a store in dir). */
export function webpushArgs(keyFile, origins, extra = {}) {
  const o = {
    webpush: 'on',
    webpush_vapid_key_file: keyFile,
    webpush_subject: 'mailto:ops@example.com',
    webpush_endpoints: origins.join(' '),
    ...extra,
  };
  if (!('webpush_store' in o) && !('redis' in o)) o.webpush_store = path.join(tempDir(), 'webpush.json');
  return Object.entries(o).filter(([, v]) => v !== undefined).flatMap(([k, v]) => [`--${k}`, String(v)]);
}

/**
 * Listens on 127.0.0.1 on a free port; resolves the port. The server does not keep
 * the test process alive (unref), so a failed test that never closes it still ends.
 */
async function listenLoopback(server) {
  const port = await freePort();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  server.unref();
  return port;
}

/**
 * The web-push-testing service (its express app and model, unchanged) on a loopback
 * port. Returns {origin, subscribe(applicationServerKey) -> {endpoint, keys, clientHash},
 * messages(clientHash), expire(clientHash), close()}.
 */
export async function startWebPushTesting() {
  const { PushApiModel } = require('web-push-testing/src/PushApiModel.js');
  const Server = require('web-push-testing/src/server.js');
  const model = new PushApiModel();
  const srv = new Server(model, 0);
  srv.setRequestHandlers();
  const server = http.createServer(srv._app);
  const port = await listenLoopback(server);
  const origin = `http://127.0.0.1:${port}`;
  model.notifyUrl = `${origin}/notify/`;
  const post = async (p, body) => {
    const r = await fetch(`${origin}${p}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body ?? {}) });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch { json = text; }
    return { status: r.status, json };
  };
  return {
    origin,
    async subscribe(applicationServerKey) {
      const r = await post('/subscribe', { userVisibleOnly: 'true', applicationServerKey });
      assert.equal(r.status, 200, `web-push-testing /subscribe: ${JSON.stringify(r.json)}`);
      return r.json.data;
    },
    async messages(clientHash) {
      const r = await post('/get-notifications', { clientHash });
      assert.equal(r.status, 200, `get-notifications: ${JSON.stringify(r.json)}`);
      return r.json.data.messages;
    },
    async expire(clientHash) {
      const r = await post(`/expire-subscription/${clientHash}`);
      assert.equal(r.status, 200);
    },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/**
 * A push service of our own: each subscription gets a user agent key pair and auth
 * secret; every POST to /push/<name> is recorded with its headers and decrypted with
 * http_ece (aes128gcm). plan(name, [status or {status, headers}], ...) scripts the
 * answers (then 201). Returns {origin, subscription(name), received(name), plan, hold, close}.
 * hold(name): requests to name are kept unanswered until release().
 */
export async function startDecryptingService() {
  const subs = new Map();
  const sub = (name) => {
    if (!subs.has(name)) {
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      subs.set(name, { ecdh, auth: randomBytes(16), got: [], plan: [], held: null });
    }
    return subs.get(name);
  };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const m = /^\/push\/([A-Za-z0-9_-]+)$/.exec(req.url);
      if (!m || req.method !== 'POST') { res.writeHead(404).end(); return; }
      const s = sub(m[1]);
      const body = Buffer.concat(chunks);
      let plaintext = null;
      let error = null;
      try {
        plaintext = ece.decrypt(body, { version: 'aes128gcm', privateKey: s.ecdh, authSecret: s.auth }).toString('utf8');
      } catch (e) { error = e.message; }
      const answer = s.plan.length > 0 ? s.plan.shift() : 201;
      const a = typeof answer === 'number' ? { status: answer, headers: {} } : answer;
      s.got.push({ headers: req.headers, body, plaintext, error, status: a.status, at: Date.now() });
      const reply = () => res.writeHead(a.status, a.headers).end();
      if (s.held) s.held.push(reply); else reply();
    });
  });
  const port = await listenLoopback(server);
  const origin = `http://127.0.0.1:${port}`;
  return {
    origin,
    /** The PushSubscription JSON a browser would hand out for name. */
    subscription(name) {
      const s = sub(name);
      return { endpoint: `${origin}/push/${name}`, expirationTime: null,
        keys: { p256dh: s.ecdh.getPublicKey().toString('base64url'), auth: s.auth.toString('base64url') } };
    },
    received: (name) => sub(name).got,
    plan(name, ...answers) { sub(name).plan.push(...answers); },
    hold(name) { sub(name).held = []; },
    release(name) { const h = sub(name).held; sub(name).held = null; for (const f of h || []) f(); },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

/** POST /webpush/<channel> with a subscription (plus extra fields); resolves the http() result. */
export async function register(b, channel, subscription, extra = {}, headers = {}) {
  const r = await fetch(`${b.url}/webpush/${channel}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof subscription === 'string' ? subscription : JSON.stringify({ ...subscription, ...extra }),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, headers: r.headers, body: text, json };
}

/** Registers and asserts 201; returns the id. */
export async function registerOk(b, channel, subscription, extra = {}, headers = {}) {
  const r = await register(b, channel, subscription, extra, headers);
  assert.equal(r.status, 201, `register on ${channel}: ${r.status} ${r.body}`);
  assert.match(r.json.id, /^[A-Za-z0-9_-]{22}$/);
  return r.json.id;
}

/** Waits until fn() returns a truthy value (bounded), like waitFor. */
export function until(fn, what, ms = WAIT * 2) {
  return waitFor(fn, ms, what, null, 25);
}
