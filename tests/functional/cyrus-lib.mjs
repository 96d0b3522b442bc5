// A sandboxed real Cyrus (Debian's cyrus-imapd, and cyrus-caldav for its httpd with
// JMAP) for end-to-end tests, as tests/fixtures/cyrus-notify/README.md describes: its
// own config dir, loopback ports picked per run, its own master in its own session
// (master's SIGTERM signals its process group), users admin/alice/bob with password
// "secret". Clients: line-oriented IMAP and LMTP, and JMAP over HTTP with Basic auth.
// Used by pusher-cyrus.test.mjs (no httpd) and jmap-cyrus.test.mjs (with it).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { tempDir, runProcess, waitFor, sleep } from './lib.mjs';

export const CYRUS_BIN = '/usr/lib/cyrus/bin';
const masters = new Set();

/** Why the Cyrus end-to-end tests cannot run here (http: they need httpd too), or null. */
export function cyrusSkipReason({ http = true } = {}) {
  for (const b of ['master', 'imapd', 'lmtpd', ...(http ? ['httpd'] : [])]) {
    if (!existsSync(`${CYRUS_BIN}/${b}`)) return `${CYRUS_BIN}/${b} not found (apt-get install cyrus-imapd cyrus-caldav sasl2-bin; make test-deps does it)`;
  }
  if (!existsSync('/usr/sbin/saslpasswd2')) return 'saslpasswd2 not found (apt-get install sasl2-bin)';
  if (process.getuid() !== 0) return 'needs root (the sandbox is chowned to the cyrus user)';
  return null;
}

/** A free loopback TCP port (closed again at once). */
export function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
  });
}

/** A line-oriented text client over TCP (IMAP and LMTP both fit). */
export async function lineClient(port) {
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
  return {
    write: (t) => sock.write(t),
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
}

let tagN = 0;
/** IMAP: sends "tag cmd", returns {ok, tagged, untagged}. */
export async function imapCmd(c, cmd) {
  const tag = `j${++tagN}`;
  c.write(`${tag} ${cmd}\r\n`);
  const untagged = [];
  for (;;) {
    const l = await c.line();
    if (l.startsWith(`${tag} `)) return { ok: l.startsWith(`${tag} OK`), tagged: l, untagged };
    untagged.push(l);
  }
}

/** An IMAP session logged in as user; c.session is the SESSIONID Cyrus names (or null). */
export async function imapLogin(port, user) {
  const c = await lineClient(port);
  assert.match(await c.line(), /^\* OK/);
  const r = await imapCmd(c, `LOGIN ${user} secret`);
  assert.ok(r.ok, `LOGIN ${user}: ${r.tagged}`);
  const m = /SESSIONID=<([^>]+)>/.exec(r.tagged);
  c.session = m ? m[1] : null;
  return c;
}

async function smtpReply(c) {
  for (;;) {
    const l = await c.line();
    if (/^\d{3} /.test(l)) return l;
  }
}

let messageN = 0;
/**
 * One LMTP connection: deliver(rcpt, count, subject) sends count messages to rcpt (at
 * localhost), each once lmtpd said 250 to the last; close() ends it.
 */
export async function lmtpSession(port) {
  const c = await lineClient(port);
  assert.match(await smtpReply(c), /^220/);
  c.write('LHLO test.example\r\n');
  assert.match(await smtpReply(c), /^250/);
  return {
    async deliver(rcpt, count = 1, subject = 'test') {
      for (let i = 0; i < count; i++) {
        const n = ++messageN;
        c.write('MAIL FROM:<bob@localhost>\r\n');
        assert.match(await smtpReply(c), /^250/);
        c.write(`RCPT TO:<${rcpt}@localhost>\r\n`);
        assert.match(await smtpReply(c), /^250/);
        c.write('DATA\r\n');
        assert.match(await smtpReply(c), /^354/);
        c.write(`From: bob@localhost\r\nTo: ${rcpt}@localhost\r\nSubject: ${subject} ${n}\r\nMessage-ID: <m${n}.${Date.now()}@test>\r\n\r\nhello ${n}\r\n.\r\n`);
        assert.match(await smtpReply(c), /^250/, `delivery ${n} to ${rcpt}`);
      }
    },
    close() { c.write('QUIT\r\n'); c.close(); },
  };
}

/** One LMTP delivery of a message to rcpt (at localhost); resolves once lmtpd said 250. */
export async function lmtpDeliver(port, rcpt, subject = 'test') {
  const l = await lmtpSession(port);
  try {
    await l.deliver(rcpt, 1, subject);
  } finally { l.close(); }
}

/**
 * Builds a sandbox with imapd, lmtpd and (http, the default) httpd for JMAP, and
 * imapdLines appended to imapd.conf (the event settings under test, notifysocket and
 * conversations included: @T@ stands for the sandbox directory, here and in services,
 * extra cyrus.conf SERVICES lines). Returns {T, imap, lmtp, http (0 without), notify}.
 */
export async function makeCyrus(imapdLines, { http: withHttp = true, services = '' } = {}) {
  const T = tempDir();
  chmodSync(T, 0o755);
  for (const d of ['conf/db', 'conf/socket', 'conf/proc', 'conf/log', 'conf/lock', 'conf/quota', 'conf/user',
    'conf/sieve', 'spool', 'sieve', 'run/proc', 'run/lock']) mkdirSync(path.join(T, d), { recursive: true });
  const imap = await freeTcpPort();
  const lmtp = await freeTcpPort();
  const http = withHttp ? await freeTcpPort() : 0;
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
duplicatesuppression: 0
${withHttp ? 'httpallowcompress: no\nspecialusealways: yes\n' : ''}${imapdLines.replaceAll('@T@', T)}
`);
  const C = `-C ${T}/imapd.conf`;
  writeFileSync(path.join(T, 'cyrus.conf'), `START {
  recover cmd="ctl_cyrusdb ${C} -r"
}
SERVICES {
  imap cmd="imapd ${C}" listen="127.0.0.1:${imap}" prefork=0
  lmtp cmd="lmtpd ${C} -a" listen="127.0.0.1:${lmtp}" prefork=0
${withHttp ? `  http cmd="httpd ${C}" listen="127.0.0.1:${http}" prefork=0\n` : ''}${services.replaceAll('@T@', T)}
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
  return { T, imap, lmtp, http, notify };
}

/** Starts master in its own session; waits until IMAP (and HTTP, if it has it) accept and lmtpd greets. */
export async function runMaster(cy) {
  const log = path.join(cy.T, 'master.log');
  const m = spawn(`${CYRUS_BIN}/master`, ['-C', `${cy.T}/imapd.conf`, '-M', `${cy.T}/cyrus.conf`,
    '-p', `${cy.T}/run/master.pid`, '-L', log], { detached: true, stdio: 'ignore' });
  const x = { child: m, log, exit: new Promise((r) => m.once('exit', r)) };
  masters.add(x);
  for (const port of [cy.imap, cy.http].filter(Boolean)) {
    await waitFor(() => new Promise((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    }), 15000, `Cyrus to accept on ${port}`, () => (existsSync(log) ? readFileSync(log, 'utf8') : ''), 50);
  }
  // LMTP is ready once an lmtpd greets: master forks the first one on demand, and a
  // connection accepted by the kernel before that only waits in the backlog.
  const greeted = await lmtpGreeting(cy.lmtp, 30000);
  assert.ok(greeted, `Cyrus lmtpd did not greet on ${cy.lmtp} within 30 s; master log: ${existsSync(log) ? readFileSync(log, 'utf8') : ''}`);
  return x;
}

/** Whether an LMTP server on port says 220 within ms (connecting again while refused). */
async function lmtpGreeting(port, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const c = await lineClient(port);
      try {
        if ((await c.line(Math.max(1, end - Date.now()))).startsWith('220')) { c.write('QUIT\r\n'); return true; }
      } finally { c.close(); }
    } catch { /* refused, closed, or no line in time */ }
    await sleep(50);
  }
  return false;
}

/** Stops a master (SIGTERM, then SIGKILL after 10 s). */
export async function stopMaster(x) {
  if (!masters.has(x)) return;
  masters.delete(x);
  if (x.child.exitCode === null && x.child.signalCode === null) {
    try { process.kill(x.child.pid, 'SIGTERM'); } catch { /* gone */ }
    const r = await Promise.race([x.exit, sleep(10000).then(() => 'timeout')]);
    if (r === 'timeout') try { process.kill(x.child.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

/** Stops every master this file started. */
export async function stopMasters() {
  for (const m of [...masters]) await stopMaster(m);
}

/** Basic credentials of a sandbox user. */
export const basic = (user) => `Basic ${Buffer.from(`${user}:secret`).toString('base64')}`;

/** GET of a JMAP URL on the sandbox's httpd as user; returns {status, json, text}. */
export async function jmapGet(cy, urlPath, user = 'alice') {
  const r = await fetch(`http://127.0.0.1:${cy.http}${urlPath}`, { headers: { Authorization: basic(user) }, redirect: 'manual' });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: r.status, json, text, headers: r.headers };
}

/** One JMAP API call (methodCalls) as user; returns the methodResponses. */
export async function jmapCall(cy, calls, user = 'alice') {
  const r = await fetch(`http://127.0.0.1:${cy.http}/jmap/`, {
    method: 'POST',
    headers: { Authorization: basic(user), 'Content-Type': 'application/json' },
    body: JSON.stringify({ using: ['urn:ietf:params:jmap:core', 'urn:ietf:params:jmap:mail'], methodCalls: calls }),
  });
  const text = await r.text();
  assert.equal(r.status, 200, `JMAP API: ${r.status} ${text}`);
  return JSON.parse(text).methodResponses;
}
