// End to end with a real Cyrus IMAP (Debian's cyrus-imapd), sandboxed as in
// tests/fixtures/cyrus-notify/README.md (cyrus-lib.mjs, here without httpd): its own
// config dir, loopback ports picked per run, its own master (in its own session:
// master's SIGTERM signals its process group).
// Cyrus sends to the pusher, the pusher publishes through Redis, a broker delivers to
// SSE subscribers. The imapd.conf event lines are taken from packaging/cyrus/imapd.conf.
// Skipped (with the reason) when the Cyrus binaries are absent or we are not root.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBroker, tempDir, killAll, waitFor } from './lib.mjs';
import {
  PUSHER, startRedis, startPusher, subscribePrimed, changes, changesBeforeMarker,
  BROKER_OPTS,
} from './pusher-lib.mjs';
import {
  cyrusSkipReason, makeCyrus, runMaster, stopMaster, stopMasters, imapLogin, imapCmd, lmtpSession,
} from './cyrus-lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SKIP = cyrusSkipReason({ http: false });
if (SKIP) console.log(`# skipping the Cyrus end-to-end tests: ${SKIP}`);

after(async () => {
  await stopMasters();
  killAll();
});

/** The event lines of the shipped imapd.conf snippet, with notifysocket in the sandbox. */
function shippedEventLines() {
  const text = readFileSync(path.resolve(here, '../../packaging/cyrus/imapd.conf'), 'utf8');
  const lines = text.split('\n').filter((l) => /^(event_\w+|notifysocket):/.test(l));
  assert.ok(lines.some((l) => l.startsWith('event_extra_params:') && l.includes('vnd.cmu.sessionId')));
  return lines.map((l) => (l.startsWith('notifysocket:') ? 'notifysocket: @T@/run/notify.sock' : l)).join('\n');
}

/** The sandbox (cyrus-lib.mjs) with the shipped event lines, no httpd; services: extra cyrus.conf lines. */
function startCyrus(services = '') {
  return makeCyrus(`conversations: no\n${shippedEventLines()}`, { http: false, services });
}

async function adminCreate(port, boxes) {
  const c = await imapLogin(port, 'admin');
  for (const b of boxes) assert.ok((await imapCmd(c, `CREATE ${b}`)).ok, `CREATE ${b}`);
  await imapCmd(c, 'LOGOUT');
  c.close();
}

test('Cyrus end to end: LMTP delivery, skip-own-session, a 500-delivery burst with a Redis restart', { skip: SKIP || false, timeout: 60000 }, async (t) => {
  const t0 = Date.now();
  const cy = await startCyrus();
  let redis = await startRedis(path.join(cy.T, 'redis.sock'));
  const broker = await startBroker(['--redis', redis.url], BROKER_OPTS);
  await waitFor(async () => (await fetch(`${broker.url}/healthz`)).status === 200, 5000, 'broker /healthz 200');
  const pusher = await startPusher(['--notify_socket', cy.notify, '--notify_socket_group', 'mail',
    '--redis', redis.url, '--coalesce_ms', '200']);
  await pusher.waitLog(/redis: connected/);
  const master = await runMaster(cy);
  await adminCreate(cy.imap, ['user/alice', 'user/bob']);
  await pusher.waitStats((x) => x.windows_open === 0 && x.queue_depth === 0 && x.published >= 2);

  // 1. An LMTP delivery reaches alice's subscriber within a second, naming the inbox; bob gets nothing.
  const alice = await subscribePrimed(broker, 'alice');
  const bob = await subscribePrimed(broker, 'bob');
  const l = await lmtpSession(cy.lmtp);
  await l.deliver('alice');
  const delivered = Date.now();
  await alice.waitFor((x) => changes(x).length >= 1, 5000, 'alice\'s change after LMTP');
  const lag = alice.events().find((f) => f.event === 'change').at - delivered;
  assert.ok(lag < 1000, `change arrived ${lag} ms after the delivery`);
  const ch = changes(alice)[0];
  assert.equal(ch.user, 'alice');
  assert.equal(ch.mailboxes[0].name, 'INBOX');
  assert.ok(ch.events.includes('MessageNew'), JSON.stringify(ch));
  assert.equal(ch.mailboxes[0].uidnext, 2);
  assert.deepEqual(await changesBeforeMarker(broker, bob, 'bob'), []);

  // 2. A flag change over IMAP: not sent to the session that made it, sent to another.
  const ic = await imapLogin(cy.imap, 'alice');
  const { session } = ic;
  assert.ok(session, 'LOGIN reply carries SESSIONID=<...>');
  const own = await subscribePrimed(broker, 'alice', `?origin=${encodeURIComponent(session)}`);
  const other = await subscribePrimed(broker, 'alice', '?origin=webmail-session-that-did-nothing');
  assert.ok((await imapCmd(ic, 'SELECT INBOX')).ok);
  assert.ok((await imapCmd(ic, 'STORE 1 +FLAGS (\\Flagged)')).ok);
  await other.waitFor((x) => changes(x).some((c) => c.events.includes('FlagsSet')), 5000, 'the flag change at another session');
  const flagEv = changes(other).find((c) => c.events.includes('FlagsSet'));
  assert.equal(flagEv.origin, session);
  assert.deepEqual((await changesBeforeMarker(broker, own, 'alice')).filter((c) => c.events.includes('FlagsSet')), [],
    'the session that set the flag was told about it');
  await imapCmd(ic, 'LOGOUT');
  ic.close();

  // 3. 500 deliveries in a burst, Redis restarted in the middle: LMTP never stalls, far fewer
  //    events arrive, and together they cover every delivery (the last uidnext is 502).
  const before = changes(alice).length;
  const burstStart = Date.now();
  await l.deliver('alice', 250);
  await redis.stop();
  await l.deliver('alice', 250);
  redis = await startRedis(redis.sock);
  const burstMs = Date.now() - burstStart;
  l.close();
  await pusher.waitStats((x) => x.redis === 'up' && x.queue_depth === 0 && x.windows_open === 0, 20000, 'everything published after the restart');
  await alice.waitFor((x) => changes(x).some((c) => c.mailboxes.some((m) => m.name === 'INBOX' && m.uidnext === 502)), 20000,
    'the change with uidnext 502');
  const burst = changes(alice).slice(before);
  assert.ok(burst.length < 100, `${burst.length} change events for 500 deliveries`);
  const st = await pusher.stats();
  assert.equal(st.queue_dropped, 0);
  assert.equal(st.parse_errors, 0);
  t.diagnostic(`burst: 500 LMTP deliveries in ${burstMs} ms -> ${burst.length} change events; resent ${st.resent}; total ${Date.now() - t0} ms`);

  await stopMaster(master);
  await pusher.stop();
  await broker.stop();
  await redis.stop();
});

test('Cyrus master starts the pusher as its notify service (cyrus.conf line, socket on fd 4)', { skip: SKIP || false, timeout: 60000 }, async () => {
  const T0 = tempDir();
  chmodSync(T0, 0o755);
  const redis = await startRedis(path.join(T0, 'redis.sock'));
  const broker = await startBroker(['--redis', redis.url], BROKER_OPTS);
  await waitFor(async () => (await fetch(`${broker.url}/healthz`)).status === 200, 5000, 'broker /healthz 200');
  // As in packaging/cyrus/cyrus.conf, with test paths.
  const line = `  pusher cmd="${PUSHER} --notify_socket fd:4 --redis ${redis.url} --coalesce_ms 100" listen="@T@/run/notify.sock" proto="udp" prefork=1`;
  const shipped = readFileSync(path.resolve(here, '../../packaging/cyrus/cyrus.conf'), 'utf8');
  assert.match(shipped, /--notify_socket fd:4" listen="[^"]+" proto="udp" prefork=1/);
  const cy = await startCyrus(line);
  const master = await runMaster(cy);
  await waitFor(() => existsSync(master.log) && /ready: listening on fd 4 \(inherited, from Cyrus master\)/.test(readFileSync(master.log, 'utf8')),
    10000, 'the pusher started by master', () => readFileSync(master.log, 'utf8'));
  await adminCreate(cy.imap, ['user/alice']);
  const alice = await subscribePrimed(broker, 'alice');
  const l = await lmtpSession(cy.lmtp);
  await l.deliver('alice');
  l.close();
  await alice.waitFor((x) => changes(x).some((c) => c.events.includes('MessageNew')), 5000, 'the change via master\'s pusher');
  await stopMaster(master);
  const log = readFileSync(master.log, 'utf8');
  assert.match(log, /terminating/);
  assert.ok(!/AddressSanitizer|runtime error:/.test(log), log);
  await broker.stop();
  await redis.stop();
});
