// ssepush-pusher against a real redis-server and a real broker: fixture datagrams from a
// real Cyrus go into the notify socket, coalesced change events come out of the broker's
// SSE streams. Also: malformed input, Redis away (buffer, resend), the queue bound,
// flags, reload, and the shutdown flush.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { existsSync } from 'node:fs';
import {
  tempDir, killAll, runProcess, writeConfig, sleep,
} from './lib.mjs';
import {
  PUSHER, fixture, fixtures, mailDatagram, eventJson, sendDatagrams, startRedis, startPusher,
  subscribePrimed, changes, changesBeforeMarker, startStack,
} from './pusher-lib.mjs';

after(killAll);

test('an LMTP delivery burst becomes one change event on the owner\'s channel, none elsewhere', async () => {
  const s = await startStack();
  const alice = await subscribePrimed(s.broker, 'alice');
  const bob = await subscribePrimed(s.broker, 'bob');
  // rich/004-006: MailboxModseq, MessageNew, MAIL for alice's INBOX (one LMTP delivery).
  await sendDatagrams(s.sock, ['004-MailboxModseq.bin', '005-MessageNew.bin', '006-MAIL.bin'].map((f) => fixture('rich', f)));
  await alice.waitFor((x) => changes(x).length >= 1, 5000, 'a change event');
  const [ev] = changes(alice);
  assert.equal(ev.user, 'alice');
  assert.equal(ev.notifications, 3);
  assert.deepEqual(ev.events, ['MAIL', 'MailboxModseq', 'MessageNew']);
  assert.equal(ev.mailboxes.length, 1);
  assert.equal(ev.mailboxes[0].name, 'INBOX');
  assert.equal(typeof ev.mailboxes[0].uidnext, 'number');
  assert.equal(ev.origin, undefined, 'a MAIL datagram has no session, so the window has no origin');
  assert.deepEqual(await changesBeforeMarker(s.broker, alice, 'alice'), [ev].map(({ id, ...rest }) => rest), 'exactly one change');
  assert.deepEqual(await changesBeforeMarker(s.broker, bob, 'bob'), []);
  const st = await s.pusher.stats();
  assert.equal(st.datagrams, 3);
  assert.equal(st.published, 1);
  assert.equal(st.queue_depth, 0);
  assert.equal(st.redis, 'up');
  await s.stop();
});

test('the whole rich capture: one change per owner, origin only when one session did it all', async () => {
  const s = await startStack(['--coalesce_ms', '300']);
  const streams = {};
  for (const u of ['alice', 'bob', 'john.doe']) streams[u] = await subscribePrimed(s.broker, u);
  await sendDatagrams(s.sock, fixtures('rich'));
  await streams['john.doe'].waitFor((x) => changes(x).length >= 1, 5000, 'john.doe\'s change');
  await streams.alice.waitFor((x) => changes(x).length >= 1, 5000, 'alice\'s change');
  const a = changes(streams.alice);
  assert.equal(a.length, 1);
  assert.ok(a[0].mailboxes.some((m) => m.name === 'INBOX'));
  assert.ok(a[0].events.includes('MessageNew') && !a[0].events.includes('Login'), 'Login/Logout are off by default');
  const st = await s.pusher.waitStats((x) => x.windows_open === 0 && x.queue_depth === 0);
  assert.equal(st.datagrams, fixtures('rich').length);
  assert.equal(st.parse_errors, 0);
  await s.stop();
});

test('origin: the session that made the change is skipped, another session of the user is not', async () => {
  const s = await startStack();
  // rich/012-013: alice STORE +FLAGS (\Seen) from one IMAP session.
  const bufs = ['012-MessageRead.bin', '013-MailboxModseq.bin'].map((f) => fixture('rich', f));
  const sid = eventJson(bufs[0])['vnd.cmu.sessionId'];
  assert.equal(eventJson(bufs[1])['vnd.cmu.sessionId'], sid);
  const own = await subscribePrimed(s.broker, 'alice', `?origin=${encodeURIComponent(sid)}`);
  const other = await subscribePrimed(s.broker, 'alice', '?origin=some-other-session');
  await sendDatagrams(s.sock, bufs);
  await other.waitFor((x) => changes(x).length >= 1, 5000, 'the change at the other session');
  assert.equal(changes(other)[0].origin, sid);
  assert.deepEqual(await changesBeforeMarker(s.broker, own, 'alice'), [], 'the originating session got its own change');
  await s.stop();
});

test('malformed datagrams are counted and logged escaped; the daemon keeps going', async () => {
  const s = await startStack(['--coalesce_ms', '50']);
  const alice = await subscribePrimed(s.broker, 'alice');
  const good = fixture('rich', '005-MessageNew.bin');
  const bad = [
    Buffer.from('no nul at all\x01\x1b[31m'),				// truncated, control bytes
    Buffer.from('pusher\0EVENT\0\0\0\0' + '2\0{}\0'),			// wrong nopt
    Buffer.from('pusher\0EVENT\0\0\0\0' + '0\0{"event":\0'),		// bad JSON
    Buffer.concat([Buffer.from('mailpush\0MAIL\0\0al'), Buffer.from([0xff, 0xfe]), Buffer.from('ice\0INBOX\x000\0x\0')]),	// invalid UTF-8
    Buffer.alloc(70000, 0x41),						// oversized
    good.subarray(0, good.length - 20),				// cut short
  ];
  await sendDatagrams(s.sock, [...bad, good]);
  await alice.waitFor((x) => changes(x).length >= 1, 5000, 'the change after the bad datagrams');
  const st = await s.pusher.stats();
  assert.equal(st.parse_errors, bad.length);
  assert.equal(st.datagrams, bad.length + 1);
  const log = s.pusher.stderr();
  assert.match(log, /malformed datagram \(19 bytes, 1 in all, 0 such lines suppressed\): .*"no nul at all\\x01\\x1b\[31m"/);
  assert.ok(!/\x1b/.test(log), 'a raw control byte reached the log');
  await s.stop();
});

test('Redis away: change events wait in the queue and are delivered when it is back', async () => {
  const s = await startStack(['--coalesce_ms', '50']);
  const alice = await subscribePrimed(s.broker, 'alice');
  await s.redis.stop();
  await s.pusher.waitLog(/redis: down/);
  await sendDatagrams(s.sock, [mailDatagram('alice', 'while away')]);
  await s.pusher.waitStats((x) => x.queue_depth === 1 && x.redis === 'down', 5000, 'one queued change, Redis down');
  const redis2 = await startRedis(s.redis.sock);
  await s.pusher.waitStats((x) => x.published === 1 && x.queue_depth === 0, 10000, 'the queued change published');
  await alice.waitFor((x) => changes(x).some((c) => c.events.includes('MAIL')), 10000, 'the buffered change');
  await s.pusher.stop();
  await s.broker.stop();
  await redis2.stop();
});

test('queue bound: changes beyond queue_max are dropped, counted and logged; the rest are published later', async () => {
  const dir = tempDir();
  const sockRedis = path.join(dir, 'redis.sock');		// nothing there yet
  const sock = path.join(dir, 'notify');
  const pusher = await startPusher(['--notify_socket', sock, '--redis', `unix:${sockRedis}`, '--coalesce_ms', '0', '--queue_max', '2']);
  await sendDatagrams(sock, ['u1', 'u2', 'u3', 'u4', 'u5'].map((u) => mailDatagram(u)));
  const st = await pusher.waitStats((x) => x.changes === 5, 5000, 'five change events');
  assert.equal(st.queue_depth, 2);
  assert.equal(st.queue_dropped, 3);
  assert.equal(st.redis, 'down');
  assert.match(pusher.stderr(), /queue full \(2 change events waiting for Redis, queue_max 2\): dropped the change for "u3"/);
  const redis = await startRedis(sockRedis);
  await pusher.waitStats((x) => x.published === 2 && x.queue_depth === 0, 10000, 'the two queued changes published');
  await pusher.stop();
  await redis.stop();
});

test('SIGTERM publishes the open windows before exiting', async () => {
  const s = await startStack(['--coalesce_ms', '60000']);
  const alice = await subscribePrimed(s.broker, 'alice');
  await sendDatagrams(s.sock, [mailDatagram('alice')]);
  await s.pusher.waitStats((x) => x.windows_open === 1);
  const log = await s.pusher.stop();
  assert.match(log, /terminating/);
  await alice.waitFor((x) => changes(x).length === 1, 5000, 'the flushed change');
  assert.ok(!existsSync(s.sock), 'the socket file is removed at exit');
  await s.broker.stop();
  await s.redis.stop();
});

test('SIGHUP reloads coalesce_ms; a broken file keeps the old config', async () => {
  const dir = tempDir();
  const redis = await startRedis(path.join(dir, 'redis.sock'));
  const sock = path.join(dir, 'notify');
  const conf = writeConfig(`notify_socket ${sock}\nredis ${redis.url}\ncoalesce_ms 60000\n`, 'pusher.conf');
  const pusher = await startPusher(['-f', conf]);
  await pusher.waitLog(/redis: connected/);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(conf, `notify_socket ${sock}\nredis ${redis.url}\ncoalesce_ms 0\n`);
  let from = pusher.stderr().length;
  pusher.signal('SIGHUP');
  await pusher.waitLog(/reload: ok/, 5000, from);
  await sendDatagrams(sock, [mailDatagram('carol')]);
  await pusher.waitStats((x) => x.published === 1, 5000, 'published at once with coalesce_ms 0');
  writeFileSync(conf, `notify_socket ${sock}\nredis ${redis.url}\ncoalesce_ms fast\n`);
  from = pusher.stderr().length;
  pusher.signal('SIGHUP');
  await pusher.waitLog(/pusher\.conf:3: coalesce_ms: 'fast' is not a valid integer[\s\S]*reload: failed, keeping old config/, 5000, from);
  await pusher.stop();
  await redis.stop();
});

test('flags: -n, -V, -h, file:line errors, a path that is not a socket', async () => {
  assert.ok(existsSync(PUSHER));
  let r = await runProcess(PUSHER, ['-n']);
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'configuration OK\n');
  r = await runProcess(PUSHER, ['-V']);
  assert.match(r.stdout, /^ssepush-pusher \d+\.\d+\.\d+\n$/);
  r = await runProcess(PUSHER, ['-h']);
  assert.match(r.stdout, /\nnotify_socket \/run\/ssepush-pusher\/notify\n/);
  const conf = writeConfig('notify_socket relative/path\nevents MessageNew,Bogus!\nchannel_format %q\n', 'bad.conf');
  r = await runProcess(PUSHER, ['-n', '-f', conf]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.conf:1: notify_socket: /);
  assert.match(r.stderr, /bad\.conf:2: events: /);
  assert.match(r.stderr, /bad\.conf:3: channel_format: unknown escape/);
  const dir = tempDir();
  const file = path.join(dir, 'plainfile');
  (await import('node:fs')).writeFileSync(file, 'x');
  r = await runProcess(PUSHER, ['--notify_socket', file, '--redis', `unix:${dir}/none.sock`]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /exists and is not a socket/);
  await sleep(0);
});
