// Starts what the browser tests need, for real: the backend under gunicorn with sign-in on, the built
// frontend, a local Cognito user pool (bin/local-cognito: moto's server), an OTLP receiver, the X-Ray
// daemon stand-in (as strict as X-Ray), and Debian's Chromium. Everything listens on 127.0.0.1 and is
// stopped by `stop()`.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

export const FRONTEND_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const REPO_ROOT = path.resolve(FRONTEND_DIR, '..');
export const BACKEND_DIR = path.join(REPO_ROOT, 'backend-flask');
export const OUTPUT_DIR = path.join(REPO_ROOT, 'test-output', 'e2e');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

export function progress(message) {
  process.stderr.write(`[e2e ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** A port free right now on 127.0.0.1. */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

/** Poll `check` until it returns a truthy value or `timeoutMs` passes; then throw with `what`. */
export async function waitFor(what, check, { timeoutMs = 30000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
}

/** A child process whose output is kept (and shown on failure); `stop()` ends its process group. */
class Child {
  constructor(name, command, args, options) {
    this.name = name;
    this.output = [];
    this.proc = spawn(command, args, { ...options, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = once(this.proc, 'exit');
    this.stdoutLines = readline.createInterface({ input: this.proc.stdout });
    readline.createInterface({ input: this.proc.stderr }).on('line', (line) => this.keep(line));
    this.proc.on('error', (error) => this.keep(`spawn error: ${error.message}`));
  }

  keep(line) {
    this.output.push(line);
    if (this.output.length > 400) this.output.shift();
  }

  get running() {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  tail(lines = 40) {
    return this.output.slice(-lines).join('\n');
  }

  async stop(timeoutMs = 15000) {
    if (!this.running) return;
    try {
      process.kill(-this.proc.pid, 'SIGTERM');
    } catch {
      return;
    }
    const timer = setTimeout(() => {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, timeoutMs);
    await this.exited;
    clearTimeout(timer);
  }
}

async function run(name, command, args, options) {
  const child = new Child(name, command, args, options);
  child.stdoutLines.on('line', (line) => child.keep(line));
  const [code] = await child.exited;
  if (code !== 0) throw new Error(`${name} failed (exit ${code}):\n${child.tail()}`);
}

/** Build the frontend into `outDir` with the backend URL (and `env`) baked in, as `npm run build` does. */
export async function buildFrontend(backendUrl, outDir, env = {}) {
  progress(`building the frontend for ${backendUrl}`);
  await run('vite build', process.execPath, [
    path.join(FRONTEND_DIR, 'node_modules/vite/bin/vite.js'),
    'build',
    '--outDir',
    outDir,
    '--emptyOutDir',
    '--logLevel',
    'warn',
  ], { cwd: FRONTEND_DIR, env: { ...process.env, ...env, VITE_BACKEND_URL: backendUrl } });
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
};

/** Serve a built single-page app: files as they are, every other path gets index.html. */
export async function serveStatic(root, port) {
  const server = http.createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    let file = path.join(root, path.normalize(pathname));
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      file = path.join(root, 'index.html');
    }
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  };
}

/**
 * Run one of the backend's stand-ins (`python -m <module> --port 0`): its first JSON line says where
 * it listens, every later JSON line goes to `onRecord`. Resolves with that first line and the child.
 */
function startStandIn(name, module, onRecord) {
  return startReporting(name, path.join(BACKEND_DIR, '.venv/bin/python'), ['-m', module, '--port', '0'], onRecord);
}

/** Run `command`, whose first JSON line on stdout says it is ready; as `startStandIn`. */
async function startReporting(name, command, args, onRecord = () => {}) {
  const child = new Child(name, command, args, {
    cwd: BACKEND_DIR,
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  let ready;
  let info;
  let timer;
  const started = new Promise((resolve) => (ready = resolve));
  child.stdoutLines.on('line', (line) => {
    let parsed;
    try {
      parsed = JSON.parse(line);
    } catch {
      child.keep(line);
      return;
    }
    if (info === undefined) {
      info = parsed;
      ready(parsed);
    } else {
      onRecord(parsed);
    }
  });
  await Promise.race([
    started,
    child.exited.then(() => {
      throw new Error(`the ${name} exited before it was ready:\n${child.tail()}`);
    }),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the ${name} did not start`)), 30000);
    }),
  ])
    .catch(async (error) => {
      await child.stop();
      throw error;
    })
    .finally(() => clearTimeout(timer));
  return { info, child };
}

/** The OTLP receiver from the backend's test support; collects every span it prints. */
export async function startOtlpReceiver() {
  const spans = [];
  const { info, child } = await startStandIn('OTLP receiver', 'tests.support.otlp_receiver', (span) =>
    spans.push(span),
  );
  progress(`OTLP receiver at ${info.url}`);
  return { url: info.url, spans, child, stop: () => child.stop() };
}

/**
 * The backend's X-Ray daemon stand-in: every document it takes lands in `documents`, every one X-Ray
 * would refuse in `rejected` (with the rules it breaks).
 */
export async function startXRayListener() {
  const documents = [];
  const rejected = [];
  const { info, child } = await startStandIn('X-Ray listener', 'tests.support.xray_listener', (record) => {
    if (record.document) documents.push(record.document);
    else rejected.push(record);
  });
  progress(`X-Ray listener at ${info.daemon_address}`);
  return { daemonAddress: info.daemon_address, documents, rejected, child, stop: () => child.stop() };
}

/**
 * The local Cognito user pool from `bin/local-cognito` (moto's cognito-idp server): the seed users with
 * their development password. `info.env` holds the backend's and the frontend's variables for it.
 */
export async function startLocalCognito() {
  const { info, child } = await startReporting('local Cognito', path.join(REPO_ROOT, 'bin/local-cognito'), [
    '--port',
    '0',
  ]);
  progress(`local Cognito at ${info.endpoint}: pool ${info.user_pool_id}`);
  return { ...info, child, stop: () => child.stop() };
}

/** Only the frontend's variables (VITE_*) of `env`. */
export function frontendEnv(env) {
  return Object.fromEntries(Object.entries(env).filter(([name]) => name.startsWith('VITE_')));
}

/** Only the backend's variables (not VITE_*) of `env`. */
export function backendEnv(env) {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('VITE_')));
}

/** The real backend under gunicorn on a fresh SQLite database; resolves once it answers. */
export async function startBackend({ port, frontendUrl, dbDir, env = {} }) {
  const url = `http://127.0.0.1:${port}`;
  progress(`starting the backend at ${url}`);
  const child = new Child('backend', path.join(BACKEND_DIR, '.venv/bin/gunicorn'), [
    '-c',
    'gunicorn.conf.py',
    'app:app',
  ], {
    cwd: BACKEND_DIR,
    env: {
      ...process.env,
      GUNICORN_BIND: `127.0.0.1:${port}`,
      DATABASE_URL: `sqlite:///${path.join(dbDir, 'e2e.db')}`,
      FRONTEND_URL: frontendUrl,
      BACKEND_URL: url,
      CRUDDUR_ENV: 'development', // seeds the new database: the pages have content
      ...env,
    },
  });
  const accessLog = [];
  child.stdoutLines.on('line', (line) => {
    child.keep(line);
    if (line.includes('"cruddur.access"')) {
      try {
        accessLog.push(JSON.parse(line));
      } catch {
        // not a JSON line
      }
    }
  });
  try {
    await waitFor('the backend health check', async () => {
      if (!child.running) throw new Error(`the backend exited:\n${child.tail()}`);
      const response = await fetch(`${url}/api/health-check`);
      return response.ok;
    }, { timeoutMs: 45000 });
  } catch (error) {
    await child.stop();
    throw error;
  }
  return { url, child, accessLog, stop: () => child.stop() };
}

/** Start receiver, X-Ray listener, local Cognito, backend, built frontend; `stop()` ends all of them, whatever started. */
export async function startStack() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cruddur-e2e-'));
  const stoppers = [];
  const stack = {
    tmp,
    async stop() {
      for (const [name, stopper] of stoppers.reverse()) {
        const started = Date.now();
        await stopper().catch((error) => progress(`stopping ${name}: ${error.message}`));
        progress(`stopped ${name} in ${Date.now() - started} ms`);
      }
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
  try {
    const [backendPort, frontendPort] = [await freePort(), await freePort()];
    stack.frontendUrl = `http://127.0.0.1:${frontendPort}`;
    stack.receiver = await startOtlpReceiver();
    stoppers.push(['the OTLP receiver', stack.receiver.stop]);
    stack.xray = await startXRayListener();
    stoppers.push(['the X-Ray listener', stack.xray.stop]);
    stack.cognito = await startLocalCognito();
    stoppers.push(['the local Cognito', stack.cognito.stop]);
    const backendUrl = `http://127.0.0.1:${backendPort}`;
    const dist = path.join(tmp, 'dist');
    const [backend] = await Promise.all([
      startBackend({
        port: backendPort,
        frontendUrl: stack.frontendUrl,
        dbDir: tmp,
        env: {
          ...backendEnv(stack.cognito.env),
          OTEL_EXPORTER_OTLP_ENDPOINT: stack.receiver.url,
          AWS_XRAY_DAEMON_ADDRESS: stack.xray.daemonAddress,
        },
      }).then((started) => {
        stoppers.push(['the backend', started.stop]);
        return started;
      }),
      buildFrontend(backendUrl, dist, frontendEnv(stack.cognito.env)),
    ]);
    stack.backend = backend;
    const frontend = await serveStatic(dist, frontendPort);
    stoppers.push(['the frontend server', frontend.close]);
    progress(`frontend at ${stack.frontendUrl}`);
    return stack;
  } catch (error) {
    await stack.stop();
    throw error;
  }
}
