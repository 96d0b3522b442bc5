// End to end with a real Cyrus (Debian's cyrus-imapd, and cyrus-caldav for its httpd
// with JMAP), sandboxed (cyrus-lib.mjs), with packaging/cyrus/imapd.conf's event lines
// as amended by packaging/cyrus/imapd-jmap.conf. Cyrus -> ssepush-pusher (jmap_states on)
// -> Redis -> ssepush-broker (auth upstream against Cyrus's own session object) behind
// the shipped nginx example packaging/nginx/jmap.conf, which sends the eventSourceUrl to
// the broker and the rest to Cyrus. A JMAP client reads the session object through
// nginx, fills its eventSourceUrl template and opens it with an EventSource (the
// `eventsource` package) and the same Basic credentials. For an LMTP delivery, an IMAP
// flag change, a move, a delete and a delivery into Junk, the state event's Email and
// Mailbox states equal what Cyrus answers to Email/get and Mailbox/get right after. A
// folder carol shares with alice puts carol's account in alice's session: the same one
// stream follows it, and a delivery there gives carol's account's states as JMAP answers.
// Also: wrong or no credentials are 401, another user's account 403, and with the
// upstream down a cached credential still streams while an unknown one gets 503.
// Skipped (with the reason) when the Cyrus binaries are absent or we are not root.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EventSource } from 'eventsource';
import { startBroker, killAll, waitFor, http, openStream } from './lib.mjs';
import { startRedis, startPusher } from './pusher-lib.mjs';
import { startNginx, NGINX } from './nginx-lib.mjs';
import {
  cyrusSkipReason, makeCyrus, runMaster, stopMasters, imapLogin, imapCmd, lmtpDeliver,
  jmapGet, jmapCall, basic,
} from './cyrus-lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SKIP = cyrusSkipReason() || (NGINX ? null : 'nginx not found (apt-get install nginx-light)');
if (SKIP) console.log(`# skipping the JMAP Cyrus end-to-end test: ${SKIP}`);

after(async () => { await stopMasters(); killAll(); });

/** imapd.conf's event lines with imapd-jmap.conf's lines replacing those of the same name. */
function shippedJmapLines(sock) {
  const read = (f) => readFileSync(path.resolve(here, '../../packaging/cyrus', f), 'utf8').split('\n')
    .filter((l) => /^[a-z_]+:/.test(l));
  const lines = new Map();
  for (const l of read('imapd.conf')) if (/^(event_\w+|notifysocket):/.test(l)) lines.set(l.split(':')[0], l);
  for (const l of read('imapd-jmap.conf')) lines.set(l.split(':')[0], l);
  assert.ok(lines.get('event_extra_params').includes('vnd.fastmail.jmapStates'));
  lines.set('notifysocket', `notifysocket: ${sock}`);
  return [...lines.values()].join('\n');
}

/** Email/get and Mailbox/get states of an account, as Cyrus's JMAP answers them to alice. */
async function cyrusStates(cy, accountId = 'alice') {
  const r = await jmapCall(cy, [['Email/get', { accountId, ids: [] }, 'e'], ['Mailbox/get', { accountId, ids: [] }, 'm']]);
  return { Email: r[0][1].state, Mailbox: r[1][1].state };
}

/** The full state of an account a state event's id says the client has (one segment per account). */
function idState(id, account = 'alice') {
  assert.ok((id || '').startsWith('s1:'), `not a state id: ${id}`);
  const seg = id.slice(3).split('/').find((x) => x.startsWith(`${account};`));
  assert.ok(seg !== undefined, `no state of ${account} in the id ${id}`);
  return Object.fromEntries(seg.slice(account.length + 1).split(',').filter(Boolean).map((kv) => kv.split('=')));
}

test('JMAP push from a real Cyrus through nginx: delivery, flag, move, delete, Junk and a shared account give the states JMAP answers', { skip: SKIP || false, timeout: 120000 }, async () => {
  const cy = await makeCyrus(shippedJmapLines('@T@/run/notify.sock'));
  const redis = await startRedis(path.join(cy.T, 'redis.sock'));
  const broker = await startBroker(['--redis', redis.url, '--auth', 'upstream',
    '--upstream_session_url', `http://127.0.0.1:${cy.http}/jmap/`, '--upstream_cache_ttl', '60']);
  const pusher = await startPusher(['--notify_socket', cy.notify, '--notify_socket_group', 'mail',
    '--redis', redis.url, '--coalesce_ms', '100', '--jmap_states', 'on']);
  await pusher.waitLog(/redis: connected/);
  const master = await runMaster(cy);
  const nginx = await startNginx('jmap.conf', broker.port, cy.http);
  const admin = await imapLogin(cy.imap, 'admin');
  assert.ok((await imapCmd(admin, 'CREATE user/alice')).ok);
  // carol (who never logs in) shares a folder with alice: alice's session then lists
  // carol's account too, and alice's one stream follows both.
  assert.ok((await imapCmd(admin, 'CREATE user/carol')).ok);
  assert.ok((await imapCmd(admin, 'CREATE user/carol/Shared')).ok);
  assert.ok((await imapCmd(admin, 'SETACL user/carol/Shared alice lrs')).ok, 'SETACL user/carol/Shared alice lrs');
  assert.ok((await imapCmd(admin, 'SETACL user/carol/Shared anyone p')).ok, 'SETACL user/carol/Shared anyone p');
  await imapCmd(admin, 'LOGOUT');
  admin.close();
  const imap = await imapLogin(cy.imap, 'alice');
  assert.ok((await imapCmd(imap, 'CREATE Archive')).ok);
  assert.ok((await imapCmd(imap, 'CREATE Junk (USE (\\Junk))')).ok, 'CREATE Junk with \\Junk');
  // Plus-addressed delivery (alice+Junk) needs the post right on the folder.
  assert.ok((await imapCmd(imap, 'SETACL Junk anyone p')).ok, 'SETACL Junk anyone p');
  let es;
  try {
    // The client's view: the session object through nginx, and its eventSourceUrl template.
    // Cyrus's httpd answers before its JMAP session is ready (seen once in CI: a session
    // without accounts, right after start): wait for alice's account to be listed.
    let last = null;
    const session = await waitFor(async () => {
      const r = await fetch(`${nginx.url}/jmap/`, { headers: { Authorization: basic('alice') } });
      last = `${r.status} ${await r.text()}`;
      const s = r.status === 200 ? JSON.parse(last.slice(4)) : null;
      return s && s.accounts && s.accounts.alice ? s : null;
    }, 10000, 'the JMAP session object through nginx to list alice\'s account', () => `last answer: ${last}`);
    assert.ok(session.accounts.alice, JSON.stringify(session.accounts));
    assert.ok(session.accounts.carol, `carol's shared account is not in alice's session: ${JSON.stringify(session.accounts)}`);
    const url = new URL(session.eventSourceUrl.replace('{types}', '*').replace('{closeafter}', 'no').replace('{ping}', '300'), nginx.url);
    assert.equal(url.pathname, '/jmap/eventsource/');
    const got = [];
    es = new EventSource(url.href, {
      fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, Authorization: basic('alice') } }),
    });
    es.addEventListener('state', (e) => got.push({ at: Date.now(), id: e.lastEventId, ...JSON.parse(e.data) }));
    await waitFor(() => es.readyState === EventSource.OPEN, 10000, 'the EventSource to open');

    // One stream for both accounts: its ids hold a segment for each.
    const step = async (what, action, account = 'alice') => {
      const before = got.length;
      const t0 = Date.now();
      await action();
      const acted = Date.now();
      // Wait for the state event(s) of this change; then they must match Cyrus's JMAP.
      let jmap;
      await waitFor(async () => {
        if (!got.slice(before).some((e) => e.changed[account])) return false;
        jmap = await cyrusStates(cy, account);
        const last = idState(got[got.length - 1].id, account);
        return last.Email === jmap.Email && last.Mailbox === jmap.Mailbox;
      }, 10000, `${what}: the state event to carry Email/get's and Mailbox/get's states of ${account}`,
      () => `events ${JSON.stringify(got.slice(before))}, JMAP ${JSON.stringify(jmap)}`, 100);
      const first = got[before];
      assert.equal(first['@type'], 'StateChange');
      assert.deepEqual(Object.keys(first.changed), [account], `${what}: the first event names another account: ${JSON.stringify(first)}`);
      assert.ok(first.changed[account].Email, `${what}: the first event names no Email state: ${JSON.stringify(first)}`);
      // The last event of the step is exactly what JMAP answers (checked by the wait); the
      // measured delay goes to the log, not into an assertion.
      console.log(`# ${what}: state event ${got[got.length - 1].at - acted} ms after the action ended (${acted - t0} ms), ${got.length - before} event(s)`);
      return got.slice(before);
    };

    const delivery = await step('LMTP delivery', () => lmtpDeliver(cy.lmtp, 'alice', 'first'));
    assert.ok(delivery.some((e) => e.changed.alice.EmailDelivery), `no EmailDelivery on a delivery: ${JSON.stringify(delivery)}`);
    assert.ok((await imapCmd(imap, 'SELECT INBOX')).ok);
    const flag = await step('IMAP flag change', () => imapCmd(imap, 'STORE 1 +FLAGS (\\Flagged)'));
    assert.ok(flag.every((e) => !e.changed.alice.EmailDelivery), 'a flag change changed EmailDelivery');
    await step('LMTP delivery 2', () => lmtpDeliver(cy.lmtp, 'alice', 'second'));
    await step('IMAP MOVE', () => imapCmd(imap, 'MOVE 1 Archive'));
    await step('delete (STORE \\Deleted + EXPUNGE)', async () => {
      assert.ok((await imapCmd(imap, 'STORE 1 +FLAGS (\\Deleted)')).ok);
      assert.ok((await imapCmd(imap, 'EXPUNGE')).ok);
    });
    const junk = await step('delivery into Junk', () => lmtpDeliver(cy.lmtp, 'alice+Junk', 'spam'));
    assert.ok(junk.length >= 1);
    const inJunk = await imapCmd(imap, 'STATUS Junk (MESSAGES)');
    assert.match(inJunk.untagged.join('\n'), /MESSAGES 1/, 'the message did not land in Junk');
    // A delivery into the folder carol shares reaches alice's stream as carol's account's states.
    await step('LMTP delivery into the folder carol shares', () => lmtpDeliver(cy.lmtp, 'carol+Shared', 'shared'), 'carol');
    assert.ok(got.every((e) => Object.keys(e.changed).length === 1), 'an event named both accounts');

    // Wrong credentials: 401 from the upstream is 401 here; none at all too.
    const bad = await http(nginx.port, '/jmap/eventsource/?types=*&closeafter=no&ping=0', { headers: { Authorization: `Basic ${Buffer.from('alice:wrong').toString('base64')}` } });
    assert.equal(bad.status, 401, bad.body);
    const none = await http(nginx.port, '/jmap/eventsource/?types=*&closeafter=no&ping=0');
    assert.equal(none.status, 401, none.body);
    // Another user's account is not alice's to read.
    const other = await http(nginx.port, '/jmap/eventsource/?types=*&account=bob', { headers: { Authorization: basic('alice') } });
    assert.equal(other.status, 403, other.body);
  } finally {
    if (es) es.close();
    imap.close();
  }
  // The upstream down: a cached credential still gets its stream (upstream_cache_ttl),
  // one not in the cache gets 503 with Retry-After.
  await stopMasters();
  const cached = await openStream(broker.port, '/jmap/eventsource/?types=*&closeafter=no&ping=0', { headers: { Authorization: basic('alice') } });
  assert.equal(cached.status, 200, cached.describe());
  cached.close();
  const down = await http(broker.port, '/jmap/eventsource/?types=*', { headers: { Authorization: basic('bob') } });
  assert.equal(down.status, 503, down.body);
  assert.ok(down.headers['retry-after'], 'no Retry-After');
  await nginx.stop();
  await pusher.stop();
  await broker.stop();
  await redis.stop();
  void master;
});
