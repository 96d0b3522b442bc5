// End to end with a real Cyrus IMAP (Debian's cyrus-imapd), sandboxed as in
// tests/fixtures/cyrus-notify/README.md: its own config dir, loopback ports picked per
// run, its own master (in its own session: master's SIGTERM signals its process group).
// Cyrus sends to the pusher, the pusher publishes through Redis, a broker delivers to
// SSE subscribers. The imapd.conf event lines are taken from packaging/cyrus/imapd.conf.
// Skipped (with the reason) when the Cyrus binaries are absent or we are not root.

import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startBroker, tempDir, killAll, runProcess, waitFor, sleep,
} from './lib.mjs';
import {
  PUSHER, startRedis, startPusher, subscribePrimed, changes, changesBeforeMarker,
  BROKER_OPTS,
} from './pusher-lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const CYRUS_BIN = '/usr/lib/cyrus/bin';
const masters = new Set();

function skipReason() {
  if (!existsSync(`${CYRUS_BIN}/master`) || !existsSync(`${CYRUS_BIN}/imapd`) || !existsSync(`${CYRUS_BIN}/lmtpd`)) {
    return `Cyrus binaries not found in ${CYRUS_BIN} (apt-get install cyrus-imapd sasl2-bin; make test-deps does it)`;
  }
  if (!existsSync('/usr/sbin/saslpasswd2')) return 'saslpasswd2 not found (apt-get install sasl2-bin)';
  if (process.getuid() !== 0) return 'needs root (the sandbox is chowned to the cyrus user)';
  return null;
}
const SKIP = skipReason();
if (SKIP) console.log(`# skipping the Cyrus end-to-end tests: ${SKIP}`);

after(async () => {
  for (const m of masters) await stopMaster(m);
  killAll();
});

/** A free loopback TCP port (closed again at once). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

/** A line-oriented text client over TCP (IMAP and LMTP both fit). */
async function lineClient(port) {
  const sock = net.connect({ host: '127.0.0.1', port });
  let buf = '';
  const lines = [];
  let waiter = null;
  sock.setEncoding('latin1');
  sock.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\r\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 2); }
    if (waiter) waiter();
  });
  sock.on('error', () => { if (waiter) waiter(); });
  await new Promise((r, j) => { sock.once('connect', r); sock.once('error', j); });
  const c = {
    write: (t) => sock.write(t),
    /** Next line, waiting up to ms. */
    line: async (ms = 10000) => {
      const end = Date.now() + ms;
      while (lines.length === 0) {
        if (Date.now() > end || sock.destroyed) throw new Error(`no line from port ${port} within ${ms} ms`);
        await new Promise((r) => { waiter = r; setTimeout(r, 50); });
        waiter = null;
      }
      return lines.shift();
    },
    close: () => sock.destroy(),
  };
  return c;
}

/** IMAP: sends "tag cmd", returns {ok, tagged, untagged}. */
let tagN = 0;
async function imapCmd(c, cmd) {
  const tag = `t${++tagN}`;
  c.write(`${tag} ${cmd}\r\n`);
  const untagged = [];
  for (;;) {
    const l = await c.line();
    if (l.startsWith(`${tag} `)) return { ok: l.startsWith(`${tag} OK`), tagged: l, untagged };
    untagged.push(l);
  }
}

async function imapLogin(port, user) {
  const c = await lineClient(port);
  assert.match(await c.line(), /^\* OK/);
  const r = await imapCmd(c, `LOGIN ${user} secret`);
  assert.ok(r.ok, `LOGIN ${user}: ${r.tagged}`);
  const m = /SESSIONID=<([^>]+)>/.exec(r.tagged);
  return { c, session: m ? m[1] : null };
}

/** Reads one LMTP/SMTP reply (multi-line: "250-..."); returns its last line. */
async function smtpReply(c) {
  for (;;) {
    const l = await c.line();
    if (/^\d{3} /.test(l)) return l;
  }
}

/** One LMTP connection; deliver(rcpt, n) sends n messages; returns a closer. */
async function lmtp(port) {
  const c = await lineClient(port);
  assert.match(await smtpReply(c), /^220/);
  c.write('LHLO test.example\r\n');
  assert.match(await smtpReply(c), /^250/);
  let n = 0;
  return {
    async deliver(rcpt, count = 1) {
      for (let i = 0; i < count; i++) {
        n++;
        c.write('MAIL FROM:<bob@localhost>\r\n');
        assert.match(await smtpReply(c), /^250/);
        c.write(`RCPT TO:<${rcpt}@localhost>\r\n`);
        assert.match(await smtpReply(c), /^250/);
        c.write('DATA\r\n');
        assert.match(await smtpReply(c), /^354/);
        c.write(`From: bob@localhost\r\nTo: ${rcpt}@localhost\r\nSubject: test ${n}\r\nMessage-ID: <m${n}.${Date.now()}@test>\r\n\r\nhello ${n}\r\n.\r\n`);
        assert.match(await smtpReply(c), /^250/, `delivery ${n} to ${rcpt}`);
      }
    },
    close() { c.write('QUIT\r\n'); c.close(); },
  };
}

/** The event lines of the shipped imapd.conf snippet, with notifysocket pointed at sock. */
function shippedEventLines(sock) {
  const text = readFileSync(path.resolve(here, '../../packaging/cyrus/imapd.conf'), 'utf8');
  const lines = text.split('\n').filter((l) => /^(event_\w+|notifysocket):/.test(l));
  assert.ok(lines.some((l) => l.startsWith('event_extra_params:') && l.includes('vnd.cmu.sessionId')));
  return lines.map((l) => (l.startsWith('notifysocket:') ? `notifysocket: ${sock}` : l)).join('\n');
}

/**
 * Builds the sandbox (config, users admin/alice/bob, ownership) in a fresh directory and
 * starts master. services: extra cyrus.conf SERVICES lines. Returns {T, imap, lmtp, notify, master}.
 */
async function startCyrus(extraServices = '') {
  const T = tempDir();
  chmodSync(T, 0o755);			// the cyrus user must traverse it
  for (const d of ['conf/db', 'conf/socket', 'conf/proc', 'conf/log', 'conf/lock', 'conf/quota', 'conf/user',
    'conf/sieve', 'spool', 'sieve', 'run/proc', 'run/lock']) mkdirSync(path.join(T, d), { recursive: true });
  const imap = await freePort();
  const lmtpPort = await freePort();
  const notify = path.join(T, 'run/notify.sock');
  writeFileSync(path.join(T, 'imapd.conf'), `configdirectory: ${T}/conf
defaultpartition: default
partition-default: ${T}/spool
sievedir: ${T}/sieve
proc_path: ${T}/run/proc
mboxname_lockpath: ${T}/run/lock
lmtpsocket: ${T}/run/lmtp.sock
idlesocket: ${T}/run/idle.sock
servername: localhost
syslog_prefix: ssepushtest
altnamespace: yes
unixhierarchysep: yes
virtdomains: off
lmtp_downcase_rcpt: yes
admins: admin
allowplaintext: yes
sasl_mech_list: PLAIN LOGIN
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: ${T}/sasldb2
hashimapspool: false
conversations: no
duplicatesuppression: 0
${shippedEventLines(notify)}
`);
  const C = `-C ${T}/imapd.conf`;
  writeFileSync(path.join(T, 'cyrus.conf'), `START {
  recover cmd="ctl_cyrusdb ${C} -r"
}
SERVICES {
  imap cmd="imapd ${C}" listen="127.0.0.1:${imap}" prefork=0
  lmtp cmd="lmtpd ${C} -a" listen="127.0.0.1:${lmtpPort}" prefork=0
${extraServices.replaceAll('@T@', T)}
}
EVENTS {
}
`);
  for (const u of ['admin', 'alice', 'bob']) {
    const r = await runProcess('/usr/sbin/saslpasswd2', ['-p', '-c', '-f', `${T}/sasldb2`, '-u', 'localhost', u], 10000, 'secret');
    assert.equal(r.code, 0, `saslpasswd2 ${u}: ${r.stderr}`);
  }
  const r = await runProcess('chown', ['-R', 'cyrus:mail', T]);
  assert.equal(r.code, 0, r.stderr);
  return { T, imap, lmtp: lmtpPort, notify };
}

/** Starts master in its own session and waits until IMAP accepts. */
async function runMaster(cy) {
  const log = path.join(cy.T, 'master.log');
  const m = spawn(`${CYRUS_BIN}/master`, ['-C', `${cy.T}/imapd.conf`, '-M', `${cy.T}/cyrus.conf`,
    '-p', `${cy.T}/run/master.pid`, '-L', log], { detached: true, stdio: 'ignore' });
  const x = { child: m, log, exit: new Promise((r) => m.once('exit', r)) };
  masters.add(x);
  await waitFor(() => new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: cy.imap });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  }), 15000, 'Cyrus IMAP to accept', () => (existsSync(log) ? readFileSync(log, 'utf8') : ''), 50);
  return x;
}

async function stopMaster(x) {
  if (!masters.has(x)) return;
  masters.delete(x);
  if (x.child.exitCode === null && x.child.signalCode === null) {
    try { process.kill(x.child.pid, 'SIGTERM'); } catch { /* gone */ }
    const r = await Promise.race([x.exit, sleep(10000).then(() => 'timeout')]);
    if (r === 'timeout') try { process.kill(x.child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

async function adminCreate(port, boxes) {
  const { c } = await imapLogin(port, 'admin');
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
  const l = await lmtp(cy.lmtp);
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
  const { c: ic, session } = await imapLogin(cy.imap, 'alice');
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
  const l = await lmtp(cy.lmtp);
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
