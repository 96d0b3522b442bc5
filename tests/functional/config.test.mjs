// Configuration: -n with valid and invalid files (every error as file:line: message in
// one run), -f files, --directive overrides that win over the file, -h / -V.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {
  startBroker, killAll, runBroker, writeConfig, subscribe, waitPreamble, tempDir,
} from './lib.mjs';

after(killAll);

const allDirectives = `# every directive named in the contract, with a valid value
listen 127.0.0.1:0
publish_listen 127.0.0.1:0
auth none
ping_interval 300
ping_min 30
ping_max 900
reconnect_ms 5000
history_size 100
history_ttl 600
max_connections 1000
max_subscribers_per_channel 100
max_message_size 64k

max_channels 10000
max_batch 100
tcp_keepalive off
tcp_keepidle 60
tcp_keepintvl 10
tcp_keepcnt 5
threads 2
log_level info
connection_memory 8k
`;

test('-n accepts a file using every directive and prints "configuration OK"', async () => {
  const f = writeConfig(allDirectives);
  const r = await runBroker(['-n', '-f', f]);
  assert.equal(r.code, 0, `exit ${r.code}; stdout ${r.stdout}; stderr ${r.stderr}`);
  assert.match(r.stdout + r.stderr, /configuration OK/);
});

test('-n accepts comments, blank lines, quoted values and unit suffixes', async () => {
  const f = writeConfig('# comment\n\n   # indented comment\nlog_level "warn"\nhistory_ttl 10m   # trailing comment\nmax_message_size 1m\nping_max 1h\n');
  const r = await runBroker(['-n', '-f', f]);
  assert.equal(r.code, 0, `exit ${r.code}; ${r.stdout}${r.stderr}`);
  assert.match(r.stdout + r.stderr, /configuration OK/);
});

test('-n without a file checks the defaults', async () => {
  const r = await runBroker(['-n']);
  assert.equal(r.code, 0, `exit ${r.code}; ${r.stdout}${r.stderr}`);
  assert.match(r.stdout + r.stderr, /configuration OK/);
});

test('-n reports every error of a file as file:line: message, exit 1', async () => {
  const f = writeConfig([
    'ping_interval 60',		// 1 ok
    'no_such_directive 5',	// 2 unknown directive
    '# comment',		// 3
    'history_size banana',	// 4 not a number
    'ping_interval 30',		// 5 given twice
    'log_level shouting',	// 6 not a choice
    'tcp_keepalive maybe',	// 7 not a boolean
    'max_batch -3',		// 8 below the minimum
    'reconnect_ms 99999999999999999999',	// 9 out of range
    '',
  ].join('\n'));
  const r = await runBroker(['-n', '-f', f]);
  const out = r.stdout + r.stderr;
  assert.equal(r.code, 1, `exit ${r.code}; ${out}`);
  assert.doesNotMatch(out, /configuration OK/);
  for (const line of [2, 4, 5, 6, 7, 8, 9]) {
    assert.ok(out.includes(`${f}:${line}: `), `no "${f}:${line}: message" error in:\n${out}`);
  }
  for (const line of [1, 3]) assert.ok(!out.includes(`${f}:${line}: `), `a valid line ${line} was reported:\n${out}`);
  assert.match(out, /no_such_directive/);
  assert.match(out, /banana|history_size/);
});

test('-n with a missing file fails with exit 1', async () => {
  const missing = path.join(tempDir(), 'does-not-exist.conf');
  const r = await runBroker(['-n', '-f', missing]);
  assert.equal(r.code, 1, `exit ${r.code}; ${r.stdout}${r.stderr}`);
  assert.ok((r.stdout + r.stderr).includes(missing), r.stdout + r.stderr);
});

test('-n rejects a bad --directive on the command line', async () => {
  for (const args of [['--ping_interval', 'soon'], ['--no_such_directive', '1'], ['--log_level', 'loud']]) {
    const r = await runBroker(['-n', ...args]);
    assert.equal(r.code, 1, `${args.join(' ')}: exit ${r.code}; ${r.stdout}${r.stderr}`);
    assert.ok((r.stdout + r.stderr).includes(args[0].slice(2)), `${args.join(' ')}: error does not name the directive: ${r.stdout}${r.stderr}`);
  }
});

test('the broker refuses to start with an invalid file', async () => {
  const f = writeConfig('ping_interval banana\n');
  const r = await runBroker(['-f', f, '--listen', '127.0.0.1:0']);
  assert.notEqual(r.code, 0, 'the broker ran with an invalid config');
  assert.ok((r.stdout + r.stderr).includes(`${f}:1: `), r.stdout + r.stderr);
});

test('a directive from the file is used (reconnect_ms -> retry)', async () => {
  const b = await startBroker([], { config: 'reconnect_ms 1000\n' });
  try {
    const s = await subscribe(b, '/events/cfg');
    await waitPreamble(s);
    const retry = Number(s.frames[0].retry);
    assert.ok(retry >= 1000 && retry <= 1500, `retry ${retry} not within [1000, 1500]`);
    s.close();
  } finally { await b.stop(); }
});

test('--directive on the command line wins over the file', async () => {
  const b = await startBroker(['--reconnect_ms', '3000'], { config: 'reconnect_ms 1000\nlisten 127.0.0.1:1\n' });
  try {
    assert.notEqual(b.port, 1, 'listen from the file won over --listen');
    const s = await subscribe(b, '/events/cfg2');
    await waitPreamble(s);
    const retry = Number(s.frames[0].retry);
    assert.ok(retry >= 3000 && retry <= 4500, `retry ${retry} not within [3000, 4500]`);
    s.close();
  } finally { await b.stop(); }
});

test('--directive=value form works too', async () => {
  const b = await startBroker(['--reconnect_ms=2000']);
  try {
    const s = await subscribe(b, '/events/cfg3');
    await waitPreamble(s);
    const retry = Number(s.frames[0].retry);
    assert.ok(retry >= 2000 && retry <= 3000, `retry ${retry} not within [2000, 3000]`);
    s.close();
  } finally { await b.stop(); }
});

test('-h lists the directives with their defaults; -V prints a version', async () => {
  const h = await runBroker(['-h']);
  assert.equal(h.code, 0, h.stderr);
  const text = h.stdout + h.stderr;
  for (const d of ['ping_interval', 'ping_min', 'ping_max', 'history_size', 'max_connections', 'tcp_keepalive', 'publish_listen']) {
    assert.match(text, new RegExp(`\\b${d}\\b`), `-h does not mention ${d}`);
  }
  assert.match(text, /ping_interval\s+300\b/);
  const v = await runBroker(['-V']);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout + v.stderr, /\d+\.\d+/);
});

test('a config line of random bytes is reported escaped, never raw', async () => {
  const p = writeConfig(Buffer.from([0x01, 0x02, 0xff, 0x1b, 0x5b, 0x33, 0x31, 0x6d, 0x20, 0x78, 0x0a]).toString('latin1'));
  const r = await runBroker(['-n', '-f', p]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /:1: unknown directive '\\x01\\x02\\x(ff|c3\\xbf)\\x1b\[31m'/, JSON.stringify(r.stderr));
  assert.ok(!/[\x00-\x08\x0b-\x1f\x7f]/.test(r.stderr), `raw control bytes in the report: ${JSON.stringify(r.stderr)}`);
});
