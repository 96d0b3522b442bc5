// Hostile clients, part one: request-smuggling shapes (two Content-Length headers, a
// length that is not plain digits, Content-Length with Transfer-Encoding, two
// Transfer-Encoding headers) are refused with a JSON 400 and the connection closes,
// nothing published; the broker's own event types (ping, reset, state) cannot be
// published; a NUL in a single publish's data is refused as the batch form refuses it;
// an oversized batch item is 413 like an oversized single publish.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startBroker, killAll, http, publish, assertJsonError, subscribeReady, waitFor,
} from './lib.mjs';

after(killAll);

/** Sends raw bytes on a fresh connection; resolves {status, headers, body, json}. */
const raw = (b, bytes) => http(b.publishPort, '/', { raw: Buffer.from(bytes, 'latin1') });

test('request-smuggling shapes get a JSON 400 and close; nothing is published', async () => {
  const b = await startBroker();
  try {
    const s = await subscribeReady(b, 'smuggle');
    const shapes = [
      ['two Content-Length', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', /more than one Content-Length/],
      ['Content-Length with Transfer-Encoding', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n', /together with Transfer-Encoding/],
      ['two Transfer-Encoding', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n1\r\na\r\n0\r\n\r\n', /more than one Transfer-Encoding/],
      ['Content-Length with leading zeros past 18 digits', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 0000000000000000001\r\n\r\na', /not a plain decimal/],
      ['a GET with two Content-Length', 'GET /events/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n', /more than one Content-Length/],
    ];
    for (const [what, bytes, why] of shapes) {
      const r = await raw(b, bytes);
      assertJsonError(r, 400, what);
      assert.match(r.json.error, why, `${what}: ${r.body}`);
      assert.equal((r.headers.connection || '').toLowerCase(), 'close', `${what}: the connection stays open after an ambiguous request`);
    }
    // Shapes libmicrohttpd 0.9.75 refuses itself, before the broker sees the request:
    // the status is right and nothing is executed, but the body is its own HTML and, for
    // a bad or overflowing length, the status line and headers come twice (its bug; see
    // the README's "Hostile clients"). Asserted here so that a change shows.
    for (const [what, bytes, status] of [
      ['Content-Length with a plus sign', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na', 400],
      ['Content-Length -1', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nab', 400],
      ['Content-Length overflowing', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\nab', 413],
      ['a bad chunk size', 'POST /publish/smuggle HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\na\r\n0\r\n\r\n', 400],
    ]) {
      const r = await raw(b, bytes);
      assert.equal(r.status, status, `${what}: status ${r.status}, body ${r.body}`);
      assert.equal((r.headers.connection || '').toLowerCase(), 'close', `${what}: the connection stays open`);
    }
    const st = await http(b.publishPort, '/stats/smuggle');
    assert.equal(st.json.published, 0, `a smuggling shape was published: ${st.body}`);
    assert.equal(s.events().length, 0, s.describe());
    s.close();
  } finally { await b.stop(); }
});

test('the broker\'s own event types cannot be published (single and batch)', async () => {
  const b = await startBroker();
  try {
    for (const t of ['ping', 'reset', 'state']) {
      const r = await publish(b, 'own', 'x', { query: { event: t } });
      assertJsonError(r, 400, `event=${t}`);
      assert.match(r.json.error, /reserved event type/, r.body);
      const h = await publish(b, 'own', 'x', { headers: { 'X-Event': t } });
      assertJsonError(h, 400, `X-Event: ${t}`);
      const batch = await http(b.publishPort, '/publish', { method: 'POST', body: JSON.stringify([{ channel: 'own', event: t, data: 'x' }]) });
      assertJsonError(batch, 400, `batch event ${t}`);
      assert.match(batch.json.error, /item 0: reserved event type/, batch.body);
    }
    // Look-alikes are fine.
    assert.equal((await publish(b, 'own', 'x', { query: { event: 'pings' } })).status, 200);
    assert.equal((await publish(b, 'own', 'x', { query: { event: 'Reset' } })).status, 200);
  } finally { await b.stop(); }
});

test('a NUL in a single publish\'s data is refused, as the batch form refuses \\u0000', async () => {
  const b = await startBroker();
  try {
    const single = await publish(b, 'nul', Buffer.from('a\0b', 'latin1'));
    assertJsonError(single, 400, 'single publish with a NUL');
    assert.match(single.json.error, /NUL/, single.body);
    const batch = await http(b.publishPort, '/publish', { method: 'POST', body: '[{"channel":"nul","data":"a\\u0000b"}]' });
    assertJsonError(batch, 400, 'batch with \\u0000');
    const st = await http(b.publishPort, '/stats/nul');
    assert.equal(st.status, 404, `something was published: ${st.body}`);
  } finally { await b.stop(); }
});

test('an oversized batch item is 413, as an oversized single publish', async () => {
  const b = await startBroker(['--max_message_size', '1k']);
  try {
    const single = await publish(b, 'big', 'x'.repeat(1025));
    assertJsonError(single, 413, 'single');
    const batch = await http(b.publishPort, '/publish', { method: 'POST', body: JSON.stringify([{ channel: 'big', data: 'y' }, { channel: 'big', data: 'x'.repeat(1025) }]) });
    assertJsonError(batch, 413, 'batch item 1 over max_message_size');
    assert.match(batch.json.error, /item 1: message too large/, batch.body);
    const st = await http(b.publishPort, '/stats/big');
    assert.equal(st.status, 404, `part of a refused batch was published: ${st.body}`);
  } finally { await b.stop(); }
});
