// Runs in the test process: in-process Fastify and Express servers behind one small interface, so the
// drain scenarios are written once and run against both adapters; plus small socket helpers.
import { EventEmitter, once } from 'node:events'
import http from 'node:http'
import net from 'node:net'
import type { ExecutionContext } from 'ava'
import express from 'express'
import Fastify from 'fastify'
import graceful, { expressGraceful, type GracefulOptions, type Logger, type ShutdownResult, type UnitResult } from '../../index'

/** A logger that drops everything (Express and plain servers log to stderr by default). */
export const silent: Logger = { info: () => {}, warn: () => {}, error: () => {} }

/**
 * A started server with the routes `/` ("ok"), `/slow?ms=N` ("slow" after N ms), `/stream?ms=N`
 * (headers and "first " at once, "last" after N ms; counted by `slowInFlight` too), `/held` (answered
 * "held" when the test says: `heldHead`, `releaseHeld`) and `POST /effect` (a side effect: counts, then
 * answers "effect <count>"). With `?hold=1` instead of `ms`, /slow and /stream wait for `release()`,
 * not for a duration: a test decides when they answer (e.g. once it has seen what must happen while
 * they are in flight).
 */
export interface Started {
  readonly framework: 'fastify' | 'express'
  readonly port: number
  /** `http://127.0.0.1:<port>` */
  readonly origin: string
  readonly server: http.Server
  /** Process-wide shutdown (every app registered in this process), never exits. */
  shutdown: (ms?: number) => Promise<ShutdownResult>
  /** Per-app close: Fastify's `app.close()` (deadline: the `timeout` option); Express's `app.graceful.close()`. */
  close: () => Promise<UnitResult | undefined>
  /** Connections the server has accepted so far. */
  accepted: () => number
  /** Resolves once the server has accepted `n` connections in total. */
  whenAccepted: (n: number) => Promise<void>
  /** `/slow` requests the handler has started and not yet answered. */
  slowInFlight: () => number
  /** Resolves once `n` `/slow` requests are in the handler at the same time. */
  whenSlowInFlight: (n: number) => Promise<void>
  /** Resolves once `n` `/held` requests are waiting in the handler. */
  whenHeld: (n: number) => Promise<void>
  /** Stores and sends the head of the oldest waiting `/held` response (`content-length: 4`). */
  heldHead: () => void
  /** Ends the oldest waiting `/held` response with "held". */
  releaseHeld: () => void
  /** `POST /effect` handlers run so far. */
  effects: () => number
  /** Resolves once `n` `POST /effect` handlers have run. */
  whenEffects: (n: number) => Promise<void>
  /** "METHOD url" of every request Node's server handed to the app ('request' events), in order. */
  requests: () => readonly string[]
  /** Answers every held (`?hold=1`) request now in the handler; returns how many. */
  release: () => number
}

export interface ServerBuilder {
  readonly name: 'fastify' | 'express'
  /** Starts a server on 127.0.0.1:0 with `{ exit: false, signals: false }` forced; torn down in `t.teardown`. */
  start: (t: ExecutionContext, options?: GracefulOptions) => Promise<Started>
}

/** Counters shared by both builders: accepted connections and /slow requests in the handler. */
class Probe extends EventEmitter {
  accepted = 0
  slow = 0
  effects = 0
  /** `/held` responses waiting, oldest first. */
  readonly parked: http.ServerResponse[] = []
  readonly requests: string[] = []
  readonly sockets = new Set<net.Socket>()
  readonly timers = new Set<NodeJS.Timeout>()
  /** Answers of held requests, waiting for `release()`. */
  readonly held = new Set<() => void>()

  watch (server: net.Server): void {
    server.on('connection', (s: net.Socket) => {
      this.accepted++
      this.sockets.add(s)
      s.once('close', () => { this.sockets.delete(s) })
      this.emit('change')
    })
    server.on('request', (req: http.IncomingMessage) => { this.requests.push(`${req.method ?? ''} ${req.url ?? ''}`) })
  }

  park (res: http.ServerResponse): void {
    this.parked.push(res)
    this.emit('change')
  }

  heldHead (): void {
    const res = this.parked[0]
    if (res === undefined) throw new Error('no /held request is waiting')
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '4' })
    res.flushHeaders()
  }

  releaseHeld (): void {
    const res = this.parked.shift()
    if (res === undefined) throw new Error('no /held request is waiting')
    res.end('held')
  }

  effect (): string {
    this.effects++
    this.emit('change')
    return `effect ${this.effects}`
  }

  /** Answers after `ms` unless the response closes first (a cut request must not leave a timer behind). */
  slowly (ms: number, res: http.ServerResponse, answer: () => void): void {
    this.slow++
    this.emit('change')
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      this.slow--
      clearTimeout(timer)
      this.timers.delete(timer)
    }
    const timer = setTimeout(() => { finish(); answer() }, ms)
    this.timers.add(timer)
    res.once('close', finish)
  }

  /** Answers on `release()` unless the response closes first (a cut request is forgotten). */
  hold (res: http.ServerResponse, answer: () => void): void {
    this.slow++
    this.emit('change')
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      this.slow--
      this.held.delete(go)
    }
    const go = (): void => { finish(); answer() }
    this.held.add(go)
    res.once('close', finish)
  }

  release (): number {
    const list = [...this.held]
    for (const go of list) go()
    return list.length
  }

  /** `/slow` and `/stream`: held when the query says `hold`, else answered after `ms`. */
  later (query: unknown, res: http.ServerResponse, answer: () => void): void {
    if ((query as { hold?: unknown } | undefined)?.hold !== undefined) this.hold(res, answer)
    else this.slowly(slowMs(query), res, answer)
  }

  until (ok: () => boolean): Promise<void> {
    if (ok()) return Promise.resolve()
    return new Promise((resolve) => {
      const check = (): void => {
        if (!ok()) return
        this.removeListener('change', check)
        resolve()
      }
      this.on('change', check)
    })
  }

  /** Teardown: cancel handler timers and destroy every server-side socket (upgraded ones too). */
  destroyAll (): void {
    for (const timer of this.timers) clearTimeout(timer)
    this.timers.clear()
    this.held.clear()
    for (const s of this.sockets) s.destroy()
  }
}

/** Writes the head and a first chunk now, the last chunk after `ms` (or on `release()` with `hold`). */
function stream (probe: Probe, query: unknown, res: http.ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/plain' })
  res.write('first ')
  probe.later(query, res, () => { res.end('last') })
}

function slowMs (query: unknown): number {
  const ms = Number((query as { ms?: unknown } | undefined)?.ms ?? 1000)
  return Number.isFinite(ms) ? Math.min(Math.max(ms, 0), 60_000) : 1000
}

function started (
  t: ExecutionContext,
  framework: Started['framework'],
  server: http.Server,
  probe: Probe,
  shutdown: Started['shutdown'],
  close: Started['close']
): Started {
  const port = (server.address() as net.AddressInfo).port
  t.teardown(async () => {
    probe.destroyAll()
    await close()
  })
  return {
    framework,
    port,
    origin: `http://127.0.0.1:${port}`,
    server,
    shutdown,
    close,
    accepted: () => probe.accepted,
    whenAccepted: (n) => probe.until(() => probe.accepted >= n),
    slowInFlight: () => probe.slow,
    whenSlowInFlight: (n) => probe.until(() => probe.slow >= n),
    whenHeld: (n) => probe.until(() => probe.parked.length >= n),
    heldHead: () => { probe.heldHead() },
    releaseHeld: () => { probe.releaseHeld() },
    effects: () => probe.effects,
    whenEffects: (n) => probe.until(() => probe.effects >= n),
    requests: () => [...probe.requests],
    release: () => probe.release()
  }
}

export const fastifyBuilder: ServerBuilder = {
  name: 'fastify',
  async start (t, options = {}) {
    const probe = new Probe()
    const app = Fastify()
    await app.register(graceful, { ...options, exit: false, signals: false })
    probe.watch(app.server)
    app.get('/', async () => 'ok')
    app.get('/slow', (req, reply) => {
      probe.later(req.query, reply.raw, () => { void reply.send('slow') })
    })
    app.get('/stream', (req, reply) => {
      reply.hijack()
      stream(probe, req.query, reply.raw)
    })
    app.get('/held', (_req, reply) => {
      reply.hijack()
      probe.park(reply.raw)
    })
    app.post('/effect', async () => probe.effect())
    await app.listen({ port: 0, host: '127.0.0.1' })
    return started(t, 'fastify', app.server, probe,
      (ms) => app.shutdown(ms),
      async () => { await app.close(); return undefined })
  }
}

export const expressBuilder: ServerBuilder = {
  name: 'express',
  async start (t, options = {}) {
    const probe = new Probe()
    const app = expressGraceful(express(), { logger: silent, ...options, exit: false, signals: false })
    app.get('/', (_req, res) => { res.send('ok') })
    app.get('/slow', (req, res) => {
      probe.later(req.query, res, () => { res.send('slow') })
    })
    app.get('/stream', (req, res) => { stream(probe, req.query, res) })
    app.get('/held', (_req, res) => { probe.park(res) })
    app.post('/effect', (_req, res) => { res.send(probe.effect()) })
    const server = app.listen(0, '127.0.0.1') as http.Server
    probe.watch(server)
    await once(server, 'listening')
    return started(t, 'express', server, probe,
      (ms) => app.shutdown(ms),
      () => app.graceful.close())
  }
}

export const builders: readonly ServerBuilder[] = [fastifyBuilder, expressBuilder]

/** Rejects after `ms` with `what` in the message: a failure guard for `Promise.race`, never a wait. */
export function deadline (ms: number, what: string): { promise: Promise<never>, cancel: () => void } {
  let timer: NodeJS.Timeout | undefined
  const promise = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => { reject(new Error(`timed out after ${ms} ms: ${what}`)) }, ms)
  })
  promise.catch(() => {})
  return { promise, cancel: () => { clearTimeout(timer) } }
}

/** Awaits `p`, failing with `what` after `ms`. */
export async function within<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  const guard = deadline(ms, what)
  try {
    return await Promise.race([p, guard.promise])
  } finally {
    guard.cancel()
  }
}

/** A raw TCP connection to 127.0.0.1:port, destroyed in teardown; resolves once connected. */
export async function rawConnect (t: ExecutionContext, port: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  t.teardown(() => { socket.destroy() })
  await once(socket, 'connect')
  return socket
}

/** Resolves with the error of a connection attempt (or rejects if it connects). */
export function connectError (port: number): Promise<NodeJS.ErrnoException> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      reject(new Error(`connected to ${port}, expected a refusal`))
    })
    socket.once('error', (err) => { resolve(err) })
  })
}

export interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
  /** The request went out on a socket the agent had kept alive from an earlier request. */
  reused: boolean
  /** `performance.now()` when the body ended. */
  at: number
}

/** GET `origin + path` with `agent`; resolves with the complete response, rejects on a transport error. */
export function get (origin: string, path: string, agent: http.Agent, onSocket?: (s: net.Socket) => void): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get(origin + path, { agent }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.once('end', () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, reused: req.reusedSocket, at: performance.now() })
      })
      res.once('error', reject)
    })
    req.once('error', reject)
    if (onSocket !== undefined) req.once('socket', onSocket)
  })
}

/** GET `http://127.0.0.1:<port><path>` (a fresh connection unless `agent`): the status and the body parsed as JSON. */
export async function getJson<T = Record<string, unknown>> (port: number, path: string, agent: http.Agent | false = false): Promise<{ status: number, body: T }> {
  const a = await new Promise<{ status: number, text: string }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).once('end', () => { resolve({ status: res.statusCode ?? 0, text }) }).once('error', reject)
    }).once('error', reject)
  })
  return { status: a.status, body: JSON.parse(a.text) as T }
}

/**
 * Marks promises as handled (their rejections still reach whoever awaits them), so requests cut by
 * a teardown after a failed assertion do not add "unhandled rejection" noise. Returns the same list.
 */
export function handled<T> (list: Array<Promise<T>>): Array<Promise<T>> {
  for (const p of list) p.catch(() => {})
  return list
}

/** A keep-alive agent destroyed in teardown. */
export function keepAliveAgent (t: ExecutionContext, maxSockets: number): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets })
  t.teardown(() => { agent.destroy() })
  return agent
}

/** Resolves with `performance.now()` when `socket` closes (at once if it already has). */
export function closedAt (socket: net.Socket): Promise<number> {
  if (socket.destroyed && socket.closed) return Promise.resolve(performance.now())
  return new Promise((resolve) => { socket.once('close', () => { resolve(performance.now()) }) })
}

/** A raw HTTP/1.1 client connection: requests are written as text, so they can be pipelined. */
export interface RawClient {
  readonly socket: net.Socket
  /** Everything received so far (latin1). */
  received: () => string
  /** Resolves once `ok(received)` holds. */
  until: (ok: (text: string) => boolean) => Promise<void>
  /** Resolves with everything received, once the server has closed the connection. */
  readonly closed: Promise<string>
}

/** Connects a RawClient to 127.0.0.1:port (destroyed in teardown); resolves once connected. */
export async function rawClient (t: ExecutionContext, port: number): Promise<RawClient> {
  const socket = await rawConnect(t, port)
  let text = ''
  const events = new EventEmitter()
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => {
    text += chunk
    events.emit('data')
  })
  const closed = new Promise<string>((resolve) => { socket.once('close', () => { resolve(text) }) })
  const until = (ok: (text: string) => boolean): Promise<void> => new Promise((resolve) => {
    const check = (): void => {
      if (!ok(text)) return
      events.removeListener('data', check)
      resolve()
    }
    events.on('data', check)
    check()
  })
  return { socket, received: () => text, until, closed }
}

/** An HTTP/1.1 request head as text (`Content-Length: 0` for a POST). */
export function requestText (method: string, path: string): string {
  return `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${method === 'POST' ? 'Content-Length: 0\r\n' : ''}\r\n`
}

export interface RawResponse {
  status: number
  /** Lower-case names. */
  headers: Record<string, string>
  body: string
}

/** The complete responses in `text` (each with a Content-Length), in order; a trailing partial one is left out. */
export function parseResponses (text: string): RawResponse[] {
  const out: RawResponse[] = []
  let at = 0
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at)
    if (end === -1) return out
    const [statusLine = '', ...lines] = text.slice(at, end).split('\r\n')
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers['content-length'])
    if (!Number.isInteger(length)) throw new Error(`response without a content-length: ${statusLine}`)
    if (text.length < end + 4 + length) return out
    out.push({ status: Number(statusLine.split(' ')[1]), headers, body: text.slice(end + 4, end + 4 + length) })
    at = end + 4 + length
  }
}

/** Resolves with the next connection `server` accepts (its server-side socket). */
export async function nextAccepted (server: net.Server): Promise<net.Socket> {
  const [socket] = await once(server, 'connection') as [net.Socket]
  return socket
}

/**
 * Resolves once the server-side `socket` has received `needle`. Listening to 'data' makes Node feed
 * its HTTP parser from 'data' events too, its own listener first: when this resolves, the parser has
 * run over those bytes, and any request they completed was handed to the app.
 */
export function serverReceived (socket: net.Socket, needle: string): Promise<void> {
  let text = ''
  return new Promise((resolve) => {
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1')
      if (!text.includes(needle)) return
      socket.removeListener('data', onData)
      resolve()
    }
    socket.on('data', onData)
  })
}
