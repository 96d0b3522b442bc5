// ssepush-pusher with jmap_states on, against a real redis-server and a real broker:
// Cyrus 3.6.1's own jmapStates datagrams (tests/fixtures/cyrus-jmapstates) go into the
// notify socket; the account's state hash in Redis holds the highest committed states
// and a jmap-state event naming what grew reaches the account's channel, once per
// window; states that did not grow publish nothing; jmap_states off publishes none.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { killAll, redisCommand } from './lib.mjs';
import {
  sendDatagrams, subscribePrimed, startStack,
} from './pusher-lib.mjs';

after(killAll);

const here = path.dirname(fileURLToPath(import.meta.url));
const JSONL = path.resolve(here, '../fixtures/cyrus-jmapstates/events.jsonl');

/** The captured datagrams, rebuilt as the fixture README says. */
function jmapDatagrams() {
  return readFileSync(JSONL, 'utf8').trim().split('\n').map((l) => {
    const d = JSON.parse(l);
    return Buffer.from([d.method, d.class, '', '', '', '0', JSON.stringify(d.message), ''].join('\0'), 'utf8');
  });
}

/** The same datagram with other jmapStates.Email and Quota values (a later MailboxModseq). */
function modseq(email, quota = email) {
  const d = JSON.parse(readFileSync(JSONL, 'utf8').trim().split('\n')[6]);
  d.message['vnd.fastmail.jmapStates'].Email = String(email);
  d.message['vnd.fastmail.jmapStates'].Quota = String(quota);
  return Buffer.from([d.method, d.class, '', '', '', '0', JSON.stringify(d.message), ''].join('\0'), 'utf8');
}

/** The stack of pusher-lib.mjs, with the JMAP state updates on unless pusherArgs says otherwise. */
async function stack(pusherArgs = ['--jmap_states', 'on']) {
  const s = await startStack(pusherArgs);
  return { ...s, target: { sock: s.redis.sock } };
}

const states = (s) => s.events().filter((f) => f.event === 'jmap-state').map((f) => JSON.parse(f.data));
const hash = async (t, account) => {
  const flat = await redisCommand(t, 'HGETALL', `ssepush:j:${account}`);
  const o = {};
  for (let i = 0; i < flat.length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
};

test('a delivery\'s datagrams become one jmap-state event with the committed (highest) states; Redis keeps them', async () => {
  const s = await stack();
  try {
    const alice = await subscribePrimed(s.broker, 'alice');
    await sendDatagrams(s.sock, jmapDatagrams());
    await alice.waitFor((x) => states(x).length >= 1, 5000, 'a jmap-state event');
    const want = { Email: '7', EmailDelivery: '5', Mailbox: '7', Quota: '6', Thread: '7' };
    assert.deepEqual(states(alice)[0], want);
    assert.deepEqual(await hash(s.target, 'alice'), want);
    // The plain change event is still published beside it.
    await alice.waitFor((x) => x.events().some((f) => f.event === 'change'), 5000, 'the change event');
    // A later MailboxModseq with a lower Email state (the intermediate one of a MOVE) and a
    // higher Quota: only Quota grew, so only Quota is published and stored.
    await sendDatagrams(s.sock, [modseq(6, 9)]);
    await alice.waitFor((x) => states(x).length >= 2, 5000, 'a second jmap-state event');
    assert.deepEqual(states(alice)[1], { Quota: '9' });
    assert.deepEqual(await hash(s.target, 'alice'), { ...want, Quota: '9' });
    // Nothing grew: nothing is published (the counter says the window was seen).
    await sendDatagrams(s.sock, [modseq(7, 9)]);
    await s.pusher.waitStats((st) => st.datagrams === 9 && st.queue_depth === 0 && st.jmap_unchanged === 1, 5000);
    await sendDatagrams(s.sock, [modseq(8, 9)]);
    await alice.waitFor((x) => states(x).length >= 3, 5000, 'a third jmap-state event');
    assert.deepEqual(states(alice)[2], { Email: '8', Mailbox: '8', Thread: '8' }, 'the window of 7/9 published something');
    const st = await s.pusher.stats();
    assert.equal(st.jmap_updates, 3);
    assert.equal(st.jmap_unchanged, 1);
    assert.equal(st.jmap_dropped, 0);
  } finally { await s.stop(); }
});

test('jmap_states off (the default): no jmap-state event, no state hash', async () => {
  const s = await stack([]);
  try {
    const alice = await subscribePrimed(s.broker, 'alice');
    await sendDatagrams(s.sock, jmapDatagrams());
    await alice.waitFor((x) => x.events().some((f) => f.event === 'change'), 5000, 'the change event');
    await s.pusher.waitStats((st) => st.queue_depth === 0 && st.published >= 1, 5000);
    assert.deepEqual(states(alice), []);
    assert.deepEqual(await hash(s.target, 'alice'), {});
  } finally { await s.stop(); }
});
