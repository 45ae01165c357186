// Runs in the test process: reboots fixture apps for real (test/fixtures/reboot-app.ts).
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { runLoad } from '../tools/load'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, ports: Record<string, number>, parent: number | null }

interface Got { status: number, pid: number, body: string, connection: string | undefined, reused: boolean }

/** GET on a fresh connection, or on `agent`'s (a keep-alive agent: a `Connection: close` reply is then the server's doing). */
function get (port: number, p = '/', socketPath?: string, agent: http.Agent | false = false): Promise<Got> {
  return new Promise((resolve, reject) => {
    const opts: http.RequestOptions = socketPath === undefined ? { host: '127.0.0.1', port, path: p, agent } : { socketPath, path: p, agent }
    const req = http.get(opts, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, pid: Number(res.headers['x-pid']), body, connection: res.headers.connection, reused: req.reusedSocket }) })
    })
    req.on('error', reject)
  })
}

function post (port: number, p: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: 'POST', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve(JSON.parse(body) as Record<string, unknown>) })
    })
    req.on('error', reject)
    req.end()
  })
}

/**
 * Starts the fixture and a request on it, on a keep-alive connection, that the app answers only once
 * its drain has started; resolves once the app is running that request.
 */
async function withSlowRequest (t: ExecutionContext): Promise<{ f: Fixture, first: Listening, port: number, slow: Promise<Got>, agent: http.Agent }> {
  const f = startFixture(t, 'reboot-app')
  const first = await f.waitFor('listening') as Listening
  const port = first.ports.a as number
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  const slow = get(port, '/slow?hold=drain', undefined, agent)
  await f.waitFor((e) => e.event === 'slow-started' && e.pid === first.pid)
  return { f, first, port, slow, agent }
}

/** Line index of the first event of `pid` matching `match` (-1 if none). */
function lineOf (f: Fixture, pid: number, match: (e: FixtureEvent) => boolean): number {
  return f.lines.findIndex((e) => e.pid === pid && match(e))
}

/** Sends SIGUSR2 to `pid` and waits until its successor listens and the old process drained. */
async function rebootBySignal (f: Fixture, pid: number): Promise<Listening> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === pid)
  return next
}

test('5 reboots under load lose no request; the pid changes, the port stays, nothing is left behind', async (t) => {
  const f = startFixture(t, 'reboot-app')
  const first = await f.waitFor('listening') as Listening
  const port = first.ports.a as number
  const url = `http://127.0.0.1:${port}/`
  const keepAlive = runLoad({ url, connections: 20, mode: 'keep-alive', durationMs: 60_000 })
  const fresh = runLoad({ url, connections: 1, mode: 'new-connection', durationMs: 60_000 })
  const pids = [first.pid]
  let current = first
  for (let i = 0; i < 5; i++) {
    current = await rebootBySignal(f, current.pid)
    t.is(current.ports.a, port, 'the successor serves the same port')
    pids.push(current.pid)
  }
  keepAlive.stop()
  fresh.stop()
  const [a, b] = await Promise.all([keepAlive.result, fresh.result])
  t.is(new Set(pids).size, 6, 'six distinct pids')
  for (const r of [a, b]) {
    t.is(r.failed, 0, JSON.stringify(r.causes))
    t.is(r.sent, r.answered)
    t.true(r.answered > 0)
  }
  t.true(a.pids.length >= 2, `keep-alive load saw pids ${a.pids.join(',')}`)
  process.kill(current.pid, 'SIGTERM')
  await f.closed
  for (const pid of pids) t.false(isAlive(pid), `pid ${pid} is gone`)
})

test('a failing successor is rolled back: the old process keeps serving; a healthy one then succeeds', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-reboot-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const modeFile = path.join(dir, 'mode')
  const f = startFixture(t, 'reboot-app', { env: { MODE_FILE: modeFile, REBOOT_TIMEOUT: '10000' } })
  const first = await f.waitFor('listening') as Listening
  const port = first.ports.a as number
  const load = runLoad({ url: `http://127.0.0.1:${port}/`, connections: 5, mode: 'keep-alive', durationMs: 60_000 })
  const expected: Record<string, string> = { throw: 'ERR_GRACEFUL_SUCCESSOR_EXITED', exit0: 'ERR_GRACEFUL_SUCCESSOR_EXITED', hang: 'ERR_GRACEFUL_SUCCESSOR_TIMEOUT' }
  for (const [mode, code] of Object.entries(expected)) {
    fs.writeFileSync(modeFile, mode)
    const spawned = f.lines.length
    const res = await post(port, '/reboot')
    const successor = f.lines.slice(spawned).find((e) => e.event === 'handoff' && e.step === 'spawned')
    f.track(successor?.other as number)
    t.is(res.ok, false, mode)
    t.is(res.code, code, `${mode}: ${String(res.message)}`)
    if (mode === 'exit0') t.regex(String(res.message), /exited with code 0/)
    const after = await get(port)
    t.is(after.status, 200)
    t.is(after.pid, first.pid, `${mode}: still served by the old process`)
  }
  fs.writeFileSync(modeFile, 'healthy')
  const ok = await post(port, '/reboot')
  t.is(ok.ok, true, JSON.stringify(ok))
  f.track(ok.successor as number)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === first.pid)
  load.stop()
  const r = await load.result
  t.is(r.failed, 0, JSON.stringify(r.causes))
  t.deepEqual(r.pids.slice(0, 1), [first.pid])
  t.is((await get(port)).pid, ok.successor as number)
  process.kill(ok.successor as number, 'SIGTERM')
  await f.closed
})

test('a second reboot while one is in flight is refused at once', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-reboot-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const modeFile = path.join(dir, 'mode')
  fs.writeFileSync(modeFile, 'hang')
  const f = startFixture(t, 'reboot-app', { env: { MODE_FILE: modeFile, REBOOT_TIMEOUT: '3000' } })
  const first = await f.waitFor('listening') as Listening
  const port = first.ports.a as number
  const one = post(port, '/reboot')
  // The successor is spawned and will never be ready: a second reboot now must be refused.
  const spawned = await f.waitFor((e) => e.event === 'handoff' && e.step === 'spawned')
  f.track(spawned.other as number)
  const two = await post(port, '/reboot')
  t.is(two.ok, false)
  t.is(two.code, 'ERR_GRACEFUL_REBOOT_IN_PROGRESS')
  t.is((await one).code, 'ERR_GRACEFUL_SUCCESSOR_TIMEOUT')
})

test('two apps in one process: both ports are served by the successor', async (t) => {
  const f = startFixture(t, 'reboot-app', { env: { SECOND_APP: '1' } })
  const first = await f.waitFor('listening') as Listening
  const next = await rebootBySignal(f, first.pid)
  t.deepEqual(next.ports, first.ports)
  const [a, b] = await Promise.all([get(first.ports.a as number), get(first.ports.b as number)])
  t.deepEqual([a.status, b.status], [200, 200])
  t.deepEqual([a.pid, b.pid], [next.pid, next.pid])
  t.regex(b.body, /"app":"b"/)
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})

test('a Unix-socket listener survives the reboot; the PID file names the successor before the old process exits', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-reboot-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const socketPath = path.join(dir, 'app.sock')
  const pidFile = path.join(dir, 'app.pid')
  const f = startFixture(t, 'reboot-app', { env: { SOCKET_PATH: socketPath, PID_FILE: pidFile } })
  const first = await f.waitFor('listening') as Listening
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(first.pid))
  t.is((await get(0, '/', socketPath)).pid, first.pid)
  process.kill(first.pid, 'SIGUSR2')
  const ready = await f.waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === first.pid)
  const successor = ready.other as number
  f.track(successor)
  // The old process reports 'ready' before it drains and exits: the PID file already names the successor.
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(successor))
  await f.exited
  const viaSocket = await get(0, '/', socketPath)
  t.is(viaSocket.status, 200)
  t.is(viaSocket.pid, successor)
  t.true(fs.existsSync(socketPath))
  process.kill(successor, 'SIGTERM')
  await f.closed
  t.false(fs.existsSync(pidFile), 'the last process removes its own PID file')
  t.false(fs.existsSync(socketPath), 'the last process removes the socket path it adopted (a fresh start would fail with EADDRINUSE)')
  // A fresh start on the same path binds.
  const again = startFixture(t, 'reboot-app', { env: { SOCKET_PATH: socketPath } })
  const fresh = await again.waitFor('listening') as Listening
  t.is((await get(0, '/', socketPath)).pid, fresh.pid)
  process.kill(fresh.pid, 'SIGTERM')
  await again.closed
  t.false(fs.existsSync(socketPath), 'a process that bound the path itself removes it too')
})

test('an in-flight request when the reboot starts completes with 200 on the old process; its connection then moves to the successor', async (t) => {
  const { f, first, port, slow, agent } = await withSlowRequest(t)
  const next = await rebootBySignal(f, first.pid)
  const r = await slow
  // Answered by the old process, during its drain, once its successor was serving: kept alive, the
  // connection moves to the successor (transferConnections), which answers the next request on it.
  t.deepEqual([r.status, r.pid, r.connection], [200, first.pid, 'keep-alive'])
  const again = await get(port, '/', undefined, agent)
  t.deepEqual([again.status, again.pid, again.reused], [200, next.pid, true])
  const ready = lineOf(f, first.pid, (e) => e.event === 'handoff' && e.step === 'ready')
  const answered = lineOf(f, first.pid, (e) => e.event === 'slow-answered')
  t.true(ready >= 0 && answered > ready, `successor ready (line ${ready}) before the slow request was answered (line ${answered})`)
  t.is((await get(port)).pid, next.pid)
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})

test('systemd socket activation: a first start with LISTEN_FDS adopts the socket at fd 3', async (t) => {
  const listener = net.createServer()
  await new Promise<void>((resolve) => { listener.listen(0, '127.0.0.1', resolve) })
  const port = (listener.address() as net.AddressInfo).port
  const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd
  const f = startFixture(t, 'reboot-app', { listenFds: [fd], env: { LISTEN_FDNAMES: 'http' } })
  const first = await f.waitFor('listening') as Listening
  // Only the fixture accepts from now on.
  await new Promise<void>((resolve) => { listener.close(() => { resolve() }) })
  t.is(first.ports.a, port, 'the app listens on the socket systemd passed, not on a port of its own')
  t.is(first.parent, null, 'not started by a reboot')
  const r = await get(port)
  t.is(r.status, 200)
  t.is(r.pid, first.pid)
  process.kill(first.pid, 'SIGTERM')
  t.deepEqual(await f.exited, { code: 0, signal: null })
})

test('stateful reboot: the successor accepts only once the old process has exited; a connection made meanwhile waits, it is not refused', async (t) => {
  const { f, first, port, slow } = await withSlowRequest(t)
  const res = await post(port, '/reboot?stateful=1')
  t.is(res.ok, true, JSON.stringify(res))
  const successor = res.successor as number
  f.track(successor)
  // The old process drains its slow request; this request waits in the accept queue meanwhile.
  const queued = get(port)
  const [s, q] = await Promise.all([slow, queued])
  t.deepEqual([s.status, s.pid, s.connection], [200, first.pid, 'close'], 'answered by the old process while it drained')
  t.deepEqual([q.status, q.pid], [200, successor])
  const drained = f.lines.findIndex((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === first.pid)
  const listening = f.lines.findIndex((e) => e.event === 'listening' && e.pid === successor)
  t.true(drained >= 0 && listening > drained, `successor listened (line ${listening}) after the old process drained (line ${drained})`)
  process.kill(successor, 'SIGTERM')
  await f.closed
})
