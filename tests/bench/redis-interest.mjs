// Interest, measured: Redis memory and CPU per publish when 100,000 users change once
// each and 1,000 of them are connected (one subscriber each, on one real broker), with
// the publish script of a given git revision (default: main, before interest) and the
// one in this tree. Publishes go straight into Redis as the pusher sends them (EVALSHA,
// pipelined). Run by hand: node tests/bench/redis-interest.mjs [REV]
// (SSEPUSH_BROKER as for the functional tests). Prints one line per script.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  killAll, startRedis, startRedisBroker, subscribeReady, redisCommand, redisPipeline, cStringLiteral,
  waitRedisCount, stopAll,
} from '../functional/lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const USERS = Number(process.env.USERS || 100000);
const CONNECTED = Number(process.env.CONNECTED || 1000);
const BATCH = 2000;

/** used_memory and used_cpu_user + used_cpu_sys (seconds) from INFO. */
async function usage(r) {
  const info = await redisCommand(r.target, 'INFO', 'all');
  const get = (k) => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(info)[1]);
  return { mem: get('used_memory'), cpu: get('used_cpu_user') + get('used_cpu_sys') };
}

/** Runs the scenario with one script text; returns the figures. */
async function run(label, script) {
  const r = await startRedis();
  const b = await startRedisBroker(r, ['--max_connections', String(CONNECTED + 100)]);
  const streams = [];
  try {
    for (let i = 0; i < CONNECTED; i++) streams.push(await subscribeReady(b, `user${i * (USERS / CONNECTED)}`));
    await waitRedisCount(r, `user${(CONNECTED - 1) * (USERS / CONNECTED)}`, 1, 20000);
    const sha = createHash('sha1').update(script, 'utf8').digest('hex');
    await redisCommand(r.target, 'SCRIPT', 'LOAD', script);
    const before = await usage(r);
    let stored = 0;
    for (let i = 0; i < USERS; i += BATCH) {
      const cmds = [];
      for (let u = i; u < Math.min(USERS, i + BATCH); u++) {
        const ch = `user${u}`;
        cmds.push(['EVALSHA', sha, 3, `ssepush:h:${ch}`, `ssepush:n:${ch}`, `ssepush:c:${ch}`, 100, 600000,
          'change', '', '', `cyrus-${u}`, `{"user":"${ch}","mailboxes":[{"name":"INBOX","events":["MAIL"]}],"events":["MAIL"]}`,
          'ssepush:b:']);
      }
      const replies = await redisPipeline(r.target, cmds, 60000);
      for (const x of replies) {
        if (x instanceof Error) throw x;
        if (x[0] !== '0-0') stored++;
      }
    }
    const after = await usage(r);
    const keys = await redisCommand(r.target, 'DBSIZE');
    const line = `${label}: ${USERS} publishes, ${CONNECTED} connected: stored ${stored}, keys ${keys}, `
      + `Redis memory +${((after.mem - before.mem) / 1048576).toFixed(1)} MiB (${Math.round((after.mem - before.mem) / USERS)} B per publish), `
      + `CPU ${((after.cpu - before.cpu) * 1e6 / USERS).toFixed(1)} us per publish`;
    console.log(line);
  } finally {
    await stopAll([b], r, streams);
  }
}

const rev = process.argv[2] || 'main';
const old = execFileSync('git', ['-C', path.resolve(here, '../..'), 'show', `${rev}:common/redis_keys.c`], { encoding: 'utf8' });
const now = readFileSync(path.resolve(here, '../../common/redis_keys.c'), 'utf8');
try {
  await run(`publish script of ${rev}`, cStringLiteral(old, 'bus_publish_script'));
  await run('publish script of this tree', cStringLiteral(now, 'bus_publish_script'));
} finally {
  killAll();
}
