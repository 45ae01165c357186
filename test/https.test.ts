// Runs in the test process: the core API on a plain https.Server, with real TLS clients. The
// certificate in test/fixtures/tls is self-signed for 127.0.0.1 (made once with openssl, 100 years).
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { once } from 'node:events'
import fs from 'node:fs'
import type http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import path from 'node:path'
import { setImmediate as nextTurn } from 'node:timers/promises'
import tls from 'node:tls'
import { createGraceful, exitCodes, type GracefulHandle } from '../index'
import { closedAt, connectError, handled, rawConnect, silent, within } from './helpers/servers'

// Compiled to dist/test: the PEM files stay in the source tree.
const TLS_DIR = path.join(__dirname, '..', '..', 'test', 'fixtures', 'tls')
const key = fs.readFileSync(path.join(TLS_DIR, 'key.pem'))
const cert = fs.readFileSync(path.join(TLS_DIR, 'cert.pem'))

interface Served {
  handle: GracefulHandle
  server: https.Server
  port: number
  origin: string
  /** Resolves once `n` /slow requests are in the handler. */
  whenSlow: (n: number) => Promise<void>
  /** Answers every held (`/slow?hold=1`) request now in the handler; returns how many. */
  release: () => number
  /** Resolves once `n` TLS handshakes have completed on the server. */
  whenSecure: (n: number) => Promise<void>
}

/**
 * An https.Server tracked with the core API before it listens; '/' -> 'ok', '/slow?ms=N' -> 'slow'
 * after N ms, '/slow?hold=1' -> 'slow' once the test calls `release()`.
 */
async function serve (t: ExecutionContext, timeout?: number): Promise<Served> {
  const handle = createGraceful({ exit: false, signals: false, logger: silent, ...(timeout === undefined ? {} : { timeout }) })
  let slow = 0
  let secure = 0
  const timers = new Set<NodeJS.Timeout>()
  const held = new Set<() => void>()
  const sockets = new Set<net.Socket>()
  const server = https.createServer({ key, cert }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://x')
    if (url.pathname !== '/slow') { res.end('ok'); return }
    slow++
    server.emit('probe')
    if (url.searchParams.has('hold')) {
      const answer = (): void => { held.delete(answer); res.end('slow') }
      held.add(answer)
      res.once('close', () => { held.delete(answer) })
      return
    }
    const timer = setTimeout(() => { timers.delete(timer); res.end('slow') }, Number(url.searchParams.get('ms') ?? 1000))
    timers.add(timer)
    res.once('close', () => { clearTimeout(timer); timers.delete(timer) })
  })
  server.on('connection', (s: net.Socket) => { sockets.add(s); s.once('close', () => { sockets.delete(s) }) })
  server.on('secureConnection', () => { secure++; server.emit('probe') })
  handle.attach(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    for (const timer of timers) clearTimeout(timer)
    for (const s of sockets) s.destroy()
    await handle.close(0)
    if (server.listening) server.close()
  })
  const until = (ok: () => boolean): Promise<void> => new Promise((resolve) => {
    const check = (): void => {
      if (!ok()) return
      server.removeListener('probe', check)
      resolve()
    }
    server.on('probe', check)
    check()
  })
  const port = (server.address() as net.AddressInfo).port
  return {
    handle,
    server,
    port,
    origin: `https://127.0.0.1:${port}`,
    whenSlow: (n) => until(() => slow >= n),
    whenSecure: (n) => until(() => secure >= n),
    release: () => {
      const list = [...held]
      for (const answer of list) answer()
      return list.length
    }
  }
}

function agent (t: ExecutionContext): https.Agent {
  const a = new https.Agent({ keepAlive: true, maxSockets: 1, ca: cert })
  t.teardown(() => { a.destroy() })
  return a
}

interface Answer { status: number, connection: string | undefined, body: string, at: number }

function get (url: string, a: https.Agent, onSocket?: (s: net.Socket) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent: a }, (res: http.IncomingMessage) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.once('end', () => { resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body, at: performance.now() }) })
      res.once('error', reject)
    })
    req.once('error', reject)
    if (onSocket !== undefined) req.once('socket', onSocket)
  })
}

test.serial('https + core API: in-flight request gets 200 + connection: close, idle TLS connections closed after the grace, forced 0', async (t) => {
  const s = await serve(t)
  // An idle keep-alive TLS connection: its request answered, the socket kept by the agent.
  let idle: net.Socket | undefined
  const warm = await get(`${s.origin}/`, agent(t), (sock) => { idle = sock })
  t.deepEqual([warm.status, warm.connection, warm.body], [200, 'keep-alive', 'ok'])
  // A TLS connection that completed its handshake and never sent a request.
  const quiet = tls.connect({ host: '127.0.0.1', port: s.port, ca: cert })
  quiet.on('error', () => {})
  t.teardown(() => { quiet.destroy() })
  await once(quiet, 'secureConnect')
  // A TCP connection that never sent a byte (not even a ClientHello).
  const mute = await rawConnect(t, s.port)
  // A request in flight.
  // A request in flight, held in the handler until the test releases it.
  const [inFlight] = handled([get(`${s.origin}/slow?hold=1`, agent(t))]) as [Promise<Answer>]
  await within(10_000, 'the slow request in the handler', s.whenSlow(1))
  await within(10_000, 'three TLS handshakes done', s.whenSecure(3))
  const closes = [idle as net.Socket, quiet, mute].map(closedAt)

  const t0 = performance.now()
  const shutdown = s.handle.shutdown(10_000)
  await nextTurn()
  t.false(s.server.listening)
  t.is((await within(5000, 'a refused connection', connectError(s.port))).code, 'ECONNREFUSED')
  // Closed by the idle reaper while the request is still held: not when the drain ends, and not at its
  // deadline (10 s away; this guard fails first).
  const closedTimes = await within(8000, 'idle TLS connections closed by the server', Promise.all(closes))
  t.is(s.release(), 1, 'the slow request was still in the handler when the idle connections closed')
  const answer = await within(10_000, 'the slow answer', inFlight)
  const result = await within(10_000, 'the shutdown', shutdown)

  t.deepEqual([answer.status, answer.connection, answer.body], [200, 'close', 'slow'])
  for (const at of closedTimes) {
    // (A lower bound only: a loaded machine makes it later, never earlier.)
    t.true(at - t0 >= 200, `closed ${Math.round(at - t0)} ms after the drain started, before the grace`)
    t.true(at < answer.at, 'idle connections closed while the slow request was still running')
  }
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
  t.is(result.apps[0]?.idleClosed, 3)
  t.is(result.apps[0]?.forced, 0)
})

test.serial('https + core API: handle.close() cuts a request slower than the deadline and reports it', async (t) => {
  const s = await serve(t, 300)
  // Never released: it can only be cut.
  const cut = get(`${s.origin}/slow?hold=1`, agent(t)).then(() => 'answered', (err: NodeJS.ErrnoException) => err.code)
  await within(10_000, 'the slow request in the handler', s.whenSlow(1))
  const t0 = performance.now()
  const unit = await s.handle.close()
  const elapsed = performance.now() - t0
  t.is(await cut, 'ECONNRESET')
  t.is(unit.forced, 1)
  t.true(elapsed >= 250, `the deadline was not waited for (${Math.round(elapsed)} ms)`)
  t.false(s.server.listening)
})
