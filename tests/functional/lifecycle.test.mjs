// Lifecycle: SIGTERM (and SIGINT) end open streams cleanly and exit 0 with
// "terminating"; SIGHUP reloads the file without dropping streams ("reload: ok"),
// and an invalid file keeps the old config ("reload: failed, keeping old config").
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import {
  startBroker, killAll, subscribe, subscribeReady, publishOk, spawnProcess, waitFor, waitPreamble,
  sanitizerReport, openStream, waitSubscribers,
} from './lib.mjs';

after(killAll);

test('SIGTERM ends open streams cleanly (raw reader and curl) and exits 0', { timeout: 30000 }, async () => {
  const b = await startBroker();
  const s = await subscribeReady(b, 'term');
  const lp = await openStream(b.port, '/events/term-lp', { headers: { 'X-Long-Poll': 'Yes' } });
  const curl = spawnProcess('curl', ['-sS', '-N', '--max-time', '30', `${b.url}/events/term`]);
  try {
    await waitFor(() => curl.stdout().includes(': ssepush'), 5000, 'curl to get the preamble', () => curl.stderr());
    await waitSubscribers(b, 'term', 2);
    assert.equal((await publishOk(b, 'term', 'before stop')).subscribers, 2);
    await s.waitEvents(1);
    await waitFor(() => curl.stdout().includes('data: before stop'), 5000, 'curl to get the event');
    const stderr = await b.stop();	// asserts exit 0 and no sanitizer report
    assert.match(stderr, /terminating/);
    const end = await s.waitEnd();
    assert.ok(end.clean, `the stream was cut instead of ended: ${s.describe()}`);
    const lpEnd = await lp.waitEnd();
    assert.ok(lpEnd.clean, `the long-poll request was cut instead of ended: ${lp.describe()}`);
    const r = await curl.exited();
    assert.ok(r, 'curl did not exit after the broker stopped');
    // curl exits 0 only when the chunked response ended properly (18 = partial transfer).
    assert.equal(r.code, 0, `curl exit ${r.code}: ${curl.stderr()}`);
  } finally { s.close(); lp.close(); curl.kill('SIGKILL'); }
});

test('SIGINT stops the broker like SIGTERM', { timeout: 30000 }, async () => {
  const b = await startBroker();
  const s = await subscribe(b, '/events/int');
  await waitPreamble(s);
  b.signal('SIGINT');
  const r = await b.exited();
  assert.ok(r, 'broker did not exit on SIGINT');
  assert.deepEqual(r, { code: 0, signal: null }, b.stderr());
  assert.ok(!sanitizerReport(b.stderr()), b.stderr());
  const end = await s.waitEnd();
  assert.ok(end.clean, s.describe());
});

test('SIGHUP: reload keeps streams, applies ping_interval, and an invalid file keeps the old config', { timeout: 60000 }, async () => {
  const conf = (interval) => `# functional test config\nping_min 1\nping_interval ${interval}\nhistory_size 50\n`;
  const b = await startBroker([], { config: conf(300) });
  try {
    const s1 = await subscribeReady(b, 'hup');
    await waitPreamble(s1);

    // Before the reload the default interval is 300: a new stream gets no ping soon;
    // after reload with ping_interval 1 a new stream gets {"interval":1} pings.
    writeFileSync(b.configPath, conf(1));
    let from = b.stderr().length;
    b.signal('SIGHUP');
    await b.waitLog(/reload: ok/, 5000, from);
    assert.ok(!/reload: failed/.test(b.stderr().slice(from)), b.stderr());

    assert.ok(!s1.ended && !s1.closed, `the open stream was dropped by the reload: ${s1.describe()}`);
    const p = await publishOk(b, 'hup', 'after reload');
    assert.equal(p.subscribers, 1);
    const [e] = await s1.waitEvents(1);
    assert.equal(e.data, 'after reload');

    const s2 = await subscribe(b, '/events/hup2');
    await s2.waitPings(1, 10000);
    assert.equal(s2.pings()[0].data, '{"interval":1}', 'the reloaded ping_interval is not used by a new stream');
    s2.close();

    // An invalid file: the reload fails, the old (reloaded) config stays in force.
    writeFileSync(b.configPath, 'ping_min 1\nping_interval banana\nno_such_directive 1\n');
    from = b.stderr().length;
    b.signal('SIGHUP');
    await b.waitLog(/reload: failed, keeping old config/, 5000, from);
    assert.ok(!/reload: ok/.test(b.stderr().slice(from)), b.stderr());
    assert.ok(!s1.ended && !s1.closed, `the open stream was dropped by a failed reload: ${s1.describe()}`);
    const p2 = await publishOk(b, 'hup', 'after failed reload');
    assert.equal(p2.subscribers, 1);
    const ev = await s1.waitEvents(2);
    assert.equal(ev[1].data, 'after failed reload');
    const s3 = await subscribe(b, '/events/hup3');
    await s3.waitPings(1, 10000);
    assert.equal(s3.pings()[0].data, '{"interval":1}', 'the failed reload changed the ping interval');
    s3.close();
    s1.close();
  } finally { await b.stop(); }
});

test('SIGHUP with the file unchanged is a no-op reload', { timeout: 30000 }, async () => {
  const b = await startBroker([], { config: 'ping_min 1\n' });
  try {
    const s = await subscribeReady(b, 'hup-same');
    for (let i = 0; i < 3; i++) {
      const from = b.stderr().length;
      b.signal('SIGHUP');
      await b.waitLog(/reload: ok/, 5000, from);
    }
    const p = await publishOk(b, 'hup-same', 'x');
    assert.equal(p.subscribers, 1);
    await s.waitEvents(1);
    s.close();
  } finally { await b.stop(); }
});

test('SIGTERM while a stream is mid-replay still exits 0', { timeout: 30000 }, async () => {
  const b = await startBroker(['--history_size', '1000']);
  let first = null;
  for (let i = 0; i < 200; i++) {
    const r = await publishOk(b, 'term-replay', `payload ${i} ${'z'.repeat(200)}`);
    if (!first) first = r.id;
  }
  const s = await subscribe(b, '/events/term-replay', { headers: { 'Last-Event-ID': first } });
  await s.waitEvents(1);
  await b.stop();
  const end = await s.waitEnd();
  assert.ok(end.clean, `stream cut instead of ended: ${s.describe()}`);
});
