// Runs in the test process: nginx in front, the way the package is deployed. nginx (a child process,
// config and files in a temp dir) proxies to a Fastify and an Express app in one process
// (test/fixtures/transfer-app.ts) through two `upstream` blocks with `keepalive`; clients load it while
// the app reboots 3 times. With transferConnections nginx loses no request and opens no upstream
// connection after its first ones; without it, it opens new ones at each reboot.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { Pool } from 'undici'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, ports: { fastify: number, express: number }, parent: number | null }
interface Drained extends FixtureEvent { apps: Array<{ name: string, transferred: number, forced: number, kept: Record<string, number> }> }

const APPS = ['fastify', 'express'] as const
/** Upstream connections nginx opens to each app before the first reboot (and loops per app: never more in flight). */
const CONNECTIONS = 8

/** The nginx binary: on PATH, or in the sbin directories a non-root PATH often lacks. */
function nginxBinary (): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']
  for (const dir of dirs) {
    const file = path.join(dir, 'nginx')
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return file
    } catch {}
  }
  return undefined
}

/** Pids whose parent is `pid` (nginx's workers). */
function childrenOf (pid: number): number[] {
  const found: number[] = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // The fields after the command name (which may hold spaces and parentheses): state, ppid, ...
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) found.push(Number(entry))
    } catch {}
  }
  return found
}

interface Nginx { port: number, errorLog: () => string, accessLog: () => string[] }

/**
 * Starts nginx in front of the two apps: its listening socket is made here on port 0 and passed at fd
 * 3 (nginx's own inheritance, env NGINX="3;", as in its binary upgrade), so the port is known before it
 * starts and nothing can take it. Resolves once nginx answers; stops it (master, then any worker) in teardown.
 */
async function startNginx (t: ExecutionContext, bin: string, ports: Listening['ports']): Promise<Nginx> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-nginx-'))
  const listener = net.createServer()
  await new Promise<void>((resolve) => { listener.listen(0, '127.0.0.1', resolve) })
  const port = (listener.address() as net.AddressInfo).port
  const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd
  const file = (name: string): string => path.join(dir, name)
  const upstream = (app: string, p: number): string => `
    upstream ${app} {
      server 127.0.0.1:${p};
      keepalive 16;
      keepalive_requests 1000000;
    }`
  const location = (app: string): string => `
      location /${app}/ {
        proxy_pass http://${app}/;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
      }`
  // Run by root, nginx's worker would run as nobody, which cannot enter the temp dir.
  const user = process.getuid?.() === 0 ? 'user root;' : ''
  fs.writeFileSync(file('nginx.conf'), `
daemon off;
master_process on;
worker_processes 1;
${user}
pid ${file('nginx.pid')};
error_log ${file('error.log')} warn;
events { worker_connections 512; }
http {
  log_format upstream '$status "$upstream_status" "$upstream_addr"';
  access_log ${file('access.log')} upstream;
  client_body_temp_path ${file('client_body')};
  proxy_temp_path ${file('proxy')};
  fastcgi_temp_path ${file('fastcgi')};
  uwsgi_temp_path ${file('uwsgi')};
  scgi_temp_path ${file('scgi')};
  keepalive_requests 1000000;
  ${upstream('fastify', ports.fastify)}
  ${upstream('express', ports.express)}
  server {
    listen 127.0.0.1:${port};
    location = /ready { return 200 "ready\\n"; }
    ${location('fastify')}
    ${location('express')}
  }
}
`)
  const child: ChildProcess = spawn(bin, ['-p', `${dir}/`, '-c', file('nginx.conf'), '-e', file('error.log')], {
    env: { ...process.env, NGINX: '3;' },
    stdio: ['ignore', 'pipe', 'pipe', fd]
  })
  let output = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { output += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { output += d })
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => { resolve() })
    child.once('error', (err) => { output += err.message; resolve() })
  })
  const read = (name: string): string => { try { return fs.readFileSync(file(name), 'utf8') } catch { return '' } }
  let workers: number[] = []
  t.teardown(async () => {
    const master = child.pid
    if (master !== undefined) {
      workers = [...workers, ...childrenOf(master)]
      // SIGTERM: nginx's fast shutdown; the master waits for its worker, then exits.
      try { process.kill(master, 'SIGTERM') } catch {}
      let timer: NodeJS.Timeout | undefined
      await Promise.race([exited, new Promise((resolve) => { timer = setTimeout(resolve, 10_000) })])
      clearTimeout(timer)
      for (const pid of [master, ...workers]) {
        if (isAlive(pid)) try { process.kill(pid, 'SIGKILL') } catch {}
      }
    }
    fs.rmSync(dir, { recursive: true, force: true })
  })
  // Only nginx accepts from now on.
  await new Promise<void>((resolve) => { listener.close(() => { resolve() }) })
  // Ready: nginx answers a request of its own (the connection waits in the accept queue until it
  // does), or it exits, or 20 s pass.
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 })
  let timer: NodeJS.Timeout | undefined
  try {
    const answered = pool.request({ path: '/ready', method: 'GET' }).then(async (r) => ({ status: r.statusCode, body: await r.body.text() }))
    const r = await Promise.race([
      answered,
      exited.then(() => { throw new Error(`nginx exited at start: ${output}${read('error.log')}`) }),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`nginx did not answer within 20 s: ${output}${read('error.log')}`)) }, 20_000) })
    ])
    if (r.status !== 200) throw new Error(`nginx answered /ready with ${r.status}: ${r.body}`)
  } finally {
    clearTimeout(timer)
    await pool.destroy()
  }
  workers = childrenOf(child.pid as number)
  return {
    port,
    errorLog: () => read('error.log'),
    accessLog: () => read('access.log').split('\n').filter((l) => l !== '')
  }
}

/** SIGUSR2 to `pid`; resolves with the successor's 'listening' line once the old process drained. */
async function reboot (f: Fixture, pid: number): Promise<{ next: Listening, drained: Drained }> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid) as Listening
  f.track(next.pid)
  const drained = await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === pid) as Drained
  return { next, drained }
}

interface LoadResult { sent: number, answered: number, failed: string[], pids: Set<number> }

/**
 * Requests to `/<app>/` through nginx from `loops` loops until `stop()` (at most `max` each): half back to
 * back, half pausing 100-300 ms between requests (the moment an idle upstream connection is closed).
 * Every status but 200 counts as failed (nginx answers 502 for a request it lost upstream).
 */
function load (p: Pool, app: string, loops: number, max = 5000): { stop: () => Promise<LoadResult> } {
  let running = true
  const r: LoadResult = { sent: 0, answered: 0, failed: [], pids: new Set() }
  const one = async (pausing: boolean): Promise<void> => {
    for (let i = 0; running && i < max; i++) {
      r.sent++
      try {
        const res = await p.request({ path: `/${app}/`, method: 'GET' })
        const body = await res.body.text()
        if (res.statusCode === 200) {
          r.answered++
          r.pids.add(Number(res.headers['x-pid']))
        } else r.failed.push(`status ${res.statusCode}: ${body.slice(0, 80)}`)
      } catch (err) {
        r.failed.push((err as Error).message)
      }
      if (pausing) await new Promise((resolve) => { setTimeout(resolve, 100 + Math.random() * 200) })
    }
  }
  const all = Promise.all(Array.from({ length: loops }, async (_, i) => { await one(i % 2 === 1) }))
  return {
    stop: async () => {
      running = false
      await all
      return r
    }
  }
}

/** The upstream connections the apps got, in order: `app:remotePort` (nginx's side of each connection). */
const connectionKeys = (lines: readonly FixtureEvent[]): string[] =>
  lines.filter((e) => e.event === 'connection').map((e) => `${String(e.app)}:${String(e.remotePort)}`)

interface Run { failed: string[], openedPerReboot: number[], transferred: number[], retried: string[], errors: string[] }

/** The fixture behind nginx: warm-up (nginx opens CONNECTIONS per app), then load across 3 reboots. */
async function run (t: ExecutionContext, env: Record<string, string>): Promise<Run | undefined> {
  const bin = nginxBinary()
  if (bin === undefined) {
    t.fail('nginx is not installed (Debian: apt-get install nginx; .ci/run installs it)')
    return undefined
  }
  const f = startFixture(t, 'transfer-app', { env })
  const first = await f.waitFor('listening') as Listening
  const nginx = await startNginx(t, bin, first.ports)
  const client = new Pool(`http://127.0.0.1:${nginx.port}`, { connections: 2 * CONNECTIONS, pipelining: 1, keepAliveTimeout: 60_000 })
  t.teardown(() => client.destroy())

  // Warm-up: CONNECTIONS requests in flight at once per app, each held until all have arrived, so that
  // nginx opens CONNECTIONS upstream connections to each app: as many as the load below ever has in flight.
  const gated = await Promise.all(APPS.flatMap((app) => Array.from({ length: CONNECTIONS }, async () => {
    const r = await client.request({ path: `/${app}/gate?n=${CONNECTIONS}`, method: 'GET' })
    await r.body.text()
    return r.statusCode
  })))
  t.deepEqual(new Set(gated), new Set([200]))
  const before = new Set(connectionKeys(f.lines))
  for (const app of APPS) t.is([...before].filter((k) => k.startsWith(`${app}:`)).length, CONNECTIONS, `nginx opened ${CONNECTIONS} connections to ${app}`)

  const loads = APPS.map((app) => load(client, app, CONNECTIONS))
  let pid = first.pid
  const successors: number[] = []
  const transferred: number[] = []
  for (let i = 0; i < 3; i++) {
    const { next, drained } = await reboot(f, pid)
    t.deepEqual(next.ports, first.ports)
    t.true(drained.apps.every((a) => a.forced === 0), JSON.stringify(drained.apps))
    transferred.push(drained.apps.reduce((n, a) => n + a.transferred, 0))
    pid = next.pid
    successors.push(pid)
    await f.waitFor((e) => e.event === 'handoff' && e.step === 'announced' && e.pid === pid)
  }
  const results = await Promise.all(loads.map(async (l) => await l.stop()))

  // After the last reboot nginx reaches the last successor.
  const last = await Promise.all(APPS.map(async (app) => {
    const r = await client.request({ path: `/${app}/`, method: 'GET' })
    await r.body.text()
    return [r.statusCode, Number(r.headers['x-pid'])]
  }))

  // Upstream connections nginx opened, by the process that accepted them: a connection line whose
  // key was not seen before (a connection handed over keeps nginx's port, so its key).
  const firstSeen = new Map<string, number>()
  for (const e of f.lines) {
    if (e.event !== 'connection') continue
    const k = `${String(e.app)}:${String(e.remotePort)}`
    if (!firstSeen.has(k)) firstSeen.set(k, e.pid as number)
  }
  const opened = (p: number): number => [...firstSeen.values()].filter((q) => q === p).length
  const openedPerReboot = successors.map(opened)
  const lines = f.lines.filter((e) => e.event === 'connection').length
  // What nginx saw: a request it retried on another connection has several upstream statuses.
  const retried = nginx.accessLog().filter((l) => l.includes(','))
  const errors = nginx.errorLog().split('\n').filter((l) => /\[(error|crit|alert|emerg)\]/.test(l))
  const failed = results.flatMap((r) => r.failed)
  const requests = results.reduce((n, r) => n + r.sent, 0)
  t.log(`${requests} requests, ${failed.length} failed; upstream connections before the first reboot: ${before.size}, opened to each successor: ${openedPerReboot.join(', ')}; moved at each reboot: ${transferred.join(', ')}; requests nginx retried: ${retried.length}; nginx errors: ${errors.length}`)
  for (const e of [...failed.slice(0, 5), ...errors.slice(0, 5)]) t.log(e)

  t.deepEqual(last, APPS.map(() => [200, pid]), 'nginx reaches the last successor')
  for (const [i, r] of results.entries()) {
    t.is(r.sent, r.answered + r.failed.length)
    t.true(r.pids.size >= 2, `${APPS[i]} was served by several processes: ${[...r.pids].join(' ')}`)
  }
  t.is(opened(first.pid), before.size, 'the first process accepted no connection after the warm-up')
  // The same count another way: connection lines, less the connections the old processes handed over.
  t.is(lines - transferred.reduce((a, b) => a + b, 0), firstSeen.size, 'each connection line is one accepted connection or one handed over')

  process.kill(pid, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === pid)
  return { failed, openedPerReboot, transferred, retried, errors }
}

// CI (.ci/run, CI=true) installs nginx and these tests must run there; on a developer's machine
// without nginx they are skipped, so that `npm test` works on a fresh clone.
const nginxTest = nginxBinary() === undefined && process.env.CI !== 'true' ? test.skip : test

nginxTest('nginx with upstream keepalive in front of a Fastify and an Express app in one process, 3 reboots: no request failed, no upstream connection opened after the first ones', async (t) => {
  const r = await run(t, {})
  if (r === undefined) return
  t.deepEqual(r.failed, [])
  t.deepEqual(r.openedPerReboot, [0, 0, 0], 'nginx opened no upstream connection to any successor: it uses the connections it had')
  t.true(r.transferred.every((n) => n > 0), `connections moved at each reboot: ${r.transferred.join(', ')}`)
  t.deepEqual(r.retried, [], 'nginx retried no request')
  t.deepEqual(r.errors, [], 'nginx logged no upstream error')
})

nginxTest('nginx, transferConnections: false: nginx opens new upstream connections at each reboot', async (t) => {
  const r = await run(t, { TRANSFER: 'false' })
  if (r === undefined) return
  t.deepEqual(r.transferred, [0, 0, 0])
  t.true(r.openedPerReboot.every((n) => n > 0), `opened to each successor: ${r.openedPerReboot.join(', ')}`)
  t.deepEqual(r.failed, [])
})
