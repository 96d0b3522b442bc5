// The shipped nginx examples (packaging/nginx/*.conf) in front of a broker, for the
// functional and the browser tests: the application behind them (its auth answers) and
// nginx itself, templated with this test's ports, run from its own prefix in a temp dir
// and stopped by pid.
import httpServer from 'node:http';
import net from 'node:net';
import path from 'node:path';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  tempDir, waitFor, spawnProcess, freePort, START_TIMEOUT, STOP_TIMEOUT,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const examples = path.resolve(here, '../../packaging/nginx');
export const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p));

/**
 * Starts the application behind the examples on a free port: cookie
 * "app_session=ok:<user>" logs <user> in, whose channel is its name; /push-auth answers
 * nginx's auth_request, /push/... answers X-Accel-Redirect to /_ssepush/events/<user>
 * with the query kept. Returns {port, log, close()}.
 */
export async function startApp() {
  const log = [];
  const userOf = (req) => {
    const m = /(?:^|;\s*)app_session=ok:([a-z0-9-]+)/.exec(req.headers.cookie || '');
    return m ? m[1] : null;
  };
  const server = httpServer.createServer((req, res) => {
    const user = userOf(req);
    log.push(`${req.method} ${req.url} user=${user}`);
    if (req.url === '/push-auth') {
      const m = /^\/events\/([^/?]+)/.exec(req.headers['x-original-uri'] || '');
      res.writeHead(!user ? 401 : m && m[1] === user ? 200 : 403).end();
      return;
    }
    if (req.url.startsWith('/push/')) {
      if (!user) {
        res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"error":"log in first"}');
        return;
      }
      const q = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
      res.writeHead(200, { 'X-Accel-Redirect': `/_ssepush/events/${user}${q}` }).end();
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, log, close: () => new Promise((r) => server.close(() => r())) };
}

/**
 * Starts nginx with one shipped example, templated: its listen, broker and application
 * addresses replaced by this test's. nginx runs from its own prefix in a temp dir, in
 * the foreground, and is stopped by pid. Returns {port, url, stop(), errorLog()}.
 */
export async function startNginx(example, brokerPort, appPort) {
  assert.ok(NGINX, 'nginx not found: install Debian nginx-light (packaging/install-deps.sh test)');
  const dir = tempDir();
  const port = await freePort();
  let site = readFileSync(path.join(examples, example), 'utf8');
  for (const [from, to] of [['listen 80;', `listen 127.0.0.1:${port};`],
    ['127.0.0.1:8080', `127.0.0.1:${brokerPort}`], ['127.0.0.1:8000', `127.0.0.1:${appPort}`]]) {
    assert.ok(site.includes(from), `${example} no longer contains "${from}" (the test templates it)`);
    site = site.split(from).join(to);
  }
  writeFileSync(path.join(dir, 'site.conf'), site);
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, [
    process.getuid && process.getuid() === 0 ? 'user root;' : '',
    // One process: a test that fails before stop() has it SIGKILLed (killAll), and a
    // worker of a killed master would live on, holding the test's stdout pipe open, so
    // that the test file never ends (seen once in CI).
    'master_process off;',
    'worker_processes 1;',
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log info;`,
    'events { worker_connections 256; }',
    'http {',
    `  access_log ${dir}/access.log;`,
    `  client_body_temp_path ${dir}/client_body;`,
    `  proxy_temp_path ${dir}/proxy;`,
    `  fastcgi_temp_path ${dir}/fastcgi;`,
    `  uwsgi_temp_path ${dir}/uwsgi;`,
    `  scgi_temp_path ${dir}/scgi;`,
    `  include ${dir}/site.conf;`,
    '}', ''].join('\n'));
  const p = spawnProcess(NGINX, ['-p', dir, '-c', conf, '-e', `${dir}/error.log`, '-g', 'daemon off;']);
  const errorLog = () => { try { return readFileSync(`${dir}/error.log`, 'utf8'); } catch { return ''; } };
  await waitFor(async () => {
    if (p.exitInfo()) throw new Error(`nginx exited: ${JSON.stringify(p.exitInfo())}; ${p.stderr()} ${errorLog()}`);
    return new Promise((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port }, () => { sock.destroy(); resolve(true); });
      sock.on('error', () => resolve(false));
    });
  }, START_TIMEOUT, `nginx (${example}) to accept on port ${port}`, () => `stderr: ${p.stderr()}\nerror.log: ${errorLog()}`);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    errorLog,
    // (Polled: spawnProcess's exited() leaves its 10 s timer behind, which would keep
    // the test process alive that long after its last test.)
    stop: async () => {
      p.kill('SIGTERM');
      await waitFor(() => p.exitInfo(), STOP_TIMEOUT, `nginx pid ${p.pid} to exit after SIGTERM`);
    },
  };
}
