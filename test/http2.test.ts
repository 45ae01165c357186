// Runs in the test process: the HTTP/2 drain (GOAWAY twice, open streams run to completion, the rest
// destroyed at the deadline) on real h2c and TLS sessions, for Fastify `http2: true` and for plain
// http2 servers given to createGraceful(); a TLS server with allowHTTP1 drains both kinds at once;
// and reboots of a Fastify h2 app under h2 load (test/fixtures/h2-app.ts). The lifecycle is
// process-wide, so the in-process tests are serial and tear their server down.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { EventEmitter, once } from 'node:events'
import fs from 'node:fs'
import type http from 'node:http'
import http2 from 'node:http2'
import https from 'node:https'
import type net from 'node:net'
import path from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import graceful, { createGraceful, exitCodes, type ShutdownResult } from '../index'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import {
  FRAME, H2Failure, REFUSED_STREAM, RawH2Client, goawayLastStream, h2Connect, h2Get, runH2Load, watchSession,
  type H2Answer, type H2LoadResult
} from './helpers/h2'
import { closedAt, handled, within } from './helpers/servers'

// Compiled to dist/test: the PEM files stay in the source tree.
const TLS_DIR = path.join(__dirname, '..', '..', 'test', 'fixtures', 'tls')
const key = fs.readFileSync(path.join(TLS_DIR, 'key.pem'))
const cert = fs.readFileSync(path.join(TLS_DIR, 'cert.pem'))

const LAST_STREAM_ID_MAX = 2 ** 31 - 1
const NO_ERROR = http2.constants.NGHTTP2_NO_ERROR
const CANCEL = http2.constants.NGHTTP2_CANCEL
/** A deadline no test reaches: a drain that waits for it fails the test's guard first. */
const LONG = 60_000

interface H2Server {
  readonly origin: string
  readonly port: number
  /** Process-wide shutdown (exit: false): drains this server. */
  shutdown: (ms: number) => Promise<ShutdownResult>
  /** Fastify's app.close() or the core handle's close(). */
  close: () => Promise<unknown>
  /** Resolves once `n` /hold requests have reached the handler. */
  whenHeld: (n: number) => Promise<void>
  /** Answers every /hold request in the handler ('held'). */
  release: () => void
  /** How many requests for `path` reached the handler. */
  handled: (path: string) => number
  /** The fields of the first log line with this message (the package logs through the app's logger). */
  logged: (msg: string) => Record<string, unknown> | undefined
}

interface Options { tls: boolean, allowHTTP1?: boolean, timeout?: number }

/** Requests the handler saw, and /hold requests it keeps until released. */
class Handler extends EventEmitter {
  readonly logs: Array<Record<string, unknown>> = []
  private readonly seen = new Map<string, number>()
  private held: Array<() => void> = []
  heldCount = 0

  hit (p: string): void { this.seen.set(p, (this.seen.get(p) ?? 0) + 1) }
  count (p: string): number { return this.seen.get(p) ?? 0 }
  hold (answer: () => void): void {
    this.held.push(answer)
    this.heldCount++
    this.emit('held')
  }

  release (): void {
    const h = this.held
    this.held = []
    for (const answer of h) answer()
  }

  whenHeld (n: number): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.heldCount < n) return
        this.removeListener('held', check)
        resolve()
      }
      this.on('held', check)
      check()
    })
  }
}

interface Kind {
  readonly name: string
  start: (t: ExecutionContext, o: Options) => Promise<H2Server>
}

function served (t: ExecutionContext, server: net.Server, o: Options, h: Handler, shutdown: H2Server['shutdown'], close: H2Server['close']): H2Server {
  const port = (server.address() as net.AddressInfo).port
  t.teardown(async () => {
    h.release()
    await close()
  })
  return {
    origin: `${o.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    shutdown,
    close,
    whenHeld: (n) => h.whenHeld(n),
    release: () => { h.release() },
    handled: (p) => h.count(p),
    logged: (msg) => h.logs.find((l) => l.msg === msg)
  }
}

const fastifyKind: Kind = {
  name: 'fastify',
  async start (t, o) {
    const h = new Handler()
    // fastify.log, as JSON lines into h.logs.
    const logger = { level: 'info', stream: { write: (line: string) => { h.logs.push(JSON.parse(line) as Record<string, unknown>) } } }
    const app: FastifyInstance = (o.tls
      ? Fastify({ http2: true, logger, https: { key, cert, allowHTTP1: o.allowHTTP1 === true } })
      : Fastify({ http2: true, logger })) as unknown as FastifyInstance
    await app.register(graceful, { exit: false, signals: false, ...(o.timeout === undefined ? {} : { timeout: o.timeout }) })
    app.get('/', async () => { h.hit('/'); return 'ok' })
    app.get('/hold', (_req, reply) => {
      h.hit('/hold')
      h.hold(() => { void reply.send('held') })
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    let closed: Promise<unknown> | undefined
    return served(t, app.server, o, h, (ms) => app.shutdown(ms), () => { closed ??= app.close(); return closed })
  }
}

const plainKind: Kind = {
  name: 'plain',
  async start (t, o) {
    const h = new Handler()
    const log = (obj: object, msg: string): void => { h.logs.push({ ...obj, msg }) }
    const handle = createGraceful({ exit: false, signals: false, logger: { info: log, warn: log, error: log }, ...(o.timeout === undefined ? {} : { timeout: o.timeout }) })
    const server = o.tls
      ? http2.createSecureServer({ key, cert, allowHTTP1: o.allowHTTP1 === true })
      : http2.createServer()
    // The compatibility API: h2 streams (and, with allowHTTP1, HTTP/1.1 requests) arrive as 'request'.
    server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
      const p = req.url
      h.hit(p)
      if (p === '/hold') h.hold(() => { res.end('held') })
      else res.end('ok')
    })
    handle.attach(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    let closed: Promise<unknown> | undefined
    return served(t, server, o, h, (ms) => handle.shutdown(ms), () => {
      closed ??= handle.close(0).then(() => { if (server.listening) server.close() })
      return closed
    })
  }
}

const kinds = [fastifyKind, plainKind]
const protocols = [{ tls: false, label: 'h2c' }, { tls: true, label: 'TLS' }]

/** The answer of a request that may fail: the H2Failure as a value. */
function settle (p: Promise<H2Answer>): Promise<H2Answer | H2Failure> {
  return p.catch((err: unknown) => {
    if (err instanceof H2Failure) return err
    throw err
  })
}

for (const kind of kinds) {
  for (const proto of protocols) {
    test.serial(`${kind.name} ${proto.label}: an in-flight stream completes across shutdown; an idle session gets GOAWAY at once and closes while it runs; nothing forced`, async (t) => {
      const s = await kind.start(t, { tls: proto.tls })
      const ca = proto.tls ? cert : undefined
      const busy = h2Connect(t, s.origin, ca)
      const idle = h2Connect(t, s.origin, ca)
      t.is((await h2Get(busy, '/')).status, 200)
      t.is((await h2Get(idle, '/')).status, 200)
      const busyWatch = watchSession(busy)
      const idleWatch = watchSession(idle)
      let holdStream: http2.ClientHttp2Stream | undefined
      const [hold] = handled([h2Get(busy, '/hold', (stream) => { holdStream = stream })])
      await within(10_000, 'the /hold stream in the handler', s.whenHeld(1))
      const holdId = holdStream?.id ?? 0

      const shutdown = s.shutdown(LONG)
      await within(10_000, 'the idle session closed', idleWatch.closed)
      t.deepEqual(idleWatch.goaways[0], { code: NO_ERROR, lastStreamID: LAST_STREAM_ID_MAX }, 'first GOAWAY: 2^31-1')
      // The busy session: the first GOAWAY, then the final one naming the stream in flight.
      await within(10_000, 'two GOAWAYs on the busy session', busyWatch.whenGoaways(2))
      t.deepEqual(busyWatch.goaways.slice(0, 2), [
        { code: NO_ERROR, lastStreamID: LAST_STREAM_ID_MAX },
        { code: NO_ERROR, lastStreamID: holdId }
      ])
      t.true(holdId > 0)
      t.false(busyWatch.isClosed(), 'the busy session stays open while its stream runs')

      s.release()
      const answer = await within(10_000, 'the held answer', hold as Promise<H2Answer>)
      t.deepEqual([answer.status, answer.body], [200, 'held'])
      const result = await within(10_000, 'the shutdown (deadline 60 s)', shutdown)
      await within(10_000, 'the busy session closed', busyWatch.closed)
      t.is(result.code, exitCodes.clean)
      t.is(result.forced, 0)
      t.like(result.apps[0], { forced: 0, forcedUpgraded: 0, idleClosed: 0 })
      t.deepEqual(result.apps[0]?.http2, { sessions: { drained: 2, forced: 0 }, streams: { drained: 1, forced: 0 } })
      // Each h2 connection counted once, as a session (not also as an HTTP/1.1 socket).
      t.like(s.logged('graceful-reboot: drain started'), { connections: 2, sessions: 2, streams: 1 })
      t.like(s.logged('graceful-reboot: drained'), { forced: 0, idleClosed: 0, sessions: { drained: 2, forced: 0 }, streams: { drained: 1, forced: 0 } })
    })

    test.serial(`${kind.name} ${proto.label}: at the deadline a hung stream is reset (CANCEL), its session destroyed, both counted as forced`, async (t) => {
      const s = await kind.start(t, { tls: proto.tls })
      const session = h2Connect(t, s.origin, proto.tls ? cert : undefined)
      const watch = watchSession(session)
      const hold = settle(h2Get(session, '/hold'))
      await within(10_000, 'the /hold stream in the handler', s.whenHeld(1))

      const result = await within(10_000, 'shutdown(300)', s.shutdown(300))
      const cut = await within(10_000, 'the cut stream', hold)
      await within(10_000, 'the session closed', watch.closed)
      t.true(cut instanceof H2Failure, 'no complete answer')
      t.is((cut as H2Failure).rstCode, CANCEL)
      t.is(result.code, exitCodes.forced)
      t.is(result.forced, 1)
      t.like(result.apps[0], { forced: 1, idleClosed: 0 })
      t.deepEqual(result.apps[0]?.http2, { sessions: { drained: 0, forced: 1 }, streams: { drained: 0, forced: 1 } })
    })
  }

  test.serial(`${kind.name} h2c, raw frames: a stream opened after the first GOAWAY is never processed; the final GOAWAY names the last processed stream, so the client knows it was refused`, async (t) => {
    const s = await kind.start(t, { tls: false })
    const c = new RawH2Client(t, s.port)
    c.request(1, '/hold')
    await within(10_000, 'the /hold stream in the handler', s.whenHeld(1))
    const shutdown = s.shutdown(LONG)

    const isGoaway = (f: { type: number }): boolean => f.type === FRAME.GOAWAY
    const first = await within(10_000, 'the first GOAWAY', c.when(isGoaway))
    t.is(goawayLastStream(first), LAST_STREAM_ID_MAX)
    const ping = await within(10_000, 'the PING sent with it', c.when((f) => f.type === FRAME.PING && (f.flags & 1) === 0))
    // A stream sent after the first GOAWAY, before the PING's answer: the final GOAWAY waits for it.
    c.request(3, '/')
    c.pong(ping)
    const final = await within(10_000, 'the final GOAWAY', c.when((f) => isGoaway(f) && goawayLastStream(f) !== LAST_STREAM_ID_MAX))
    t.is(goawayLastStream(final), 1, 'last processed stream: 1; streams 3 and up were not processed (RFC 9113 6.8: safe to retry)')
    // A stream sent after the final GOAWAY.
    c.request(5, '/')

    s.release()
    await within(10_000, 'the end of stream 1', c.when((f) => f.stream === 1 && (f.flags & 1) === 1))
    await within(10_000, 'the connection closed after its last stream', closedAt(c.socket))
    const result = await within(10_000, 'the shutdown', shutdown)
    t.is(s.handled('/'), 0, 'neither late stream reached the handler')
    t.deepEqual(c.frames.filter((f) => f.stream === 3 || f.stream === 5), [], 'no answer, not even half of one, on streams 3 and 5')
    t.is(result.forced, 0)
    t.deepEqual(result.apps[0]?.http2, { sessions: { drained: 1, forced: 0 }, streams: { drained: 1, forced: 0 } })
  })

  test.serial(`${kind.name} h2c, node:http2 client: a request that crosses the first GOAWAY is refused with REFUSED_STREAM and never reaches the handler`, async (t) => {
    const s = await kind.start(t, { tls: false })
    const session = h2Connect(t, s.origin)
    t.is((await h2Get(session, '/')).status, 200)
    // Written in the same turn as the drain starts: the server reads it after its first GOAWAY is out.
    const crossing = settle(h2Get(session, '/crossing'))
    const shutdown = s.shutdown(LONG)
    const failure = await within(10_000, 'the crossing request', crossing)
    t.true(failure instanceof H2Failure, 'not answered')
    t.is((failure as H2Failure).rstCode, REFUSED_STREAM, 'refused: safe to retry')
    const result = await within(10_000, 'the shutdown', shutdown)
    t.is(s.handled('/crossing'), 0)
    t.is(result.forced, 0)
    t.deepEqual(result.apps[0]?.http2.sessions, { drained: 1, forced: 0 })
  })

  test.serial(`${kind.name} TLS + allowHTTP1: an HTTP/1.1 keep-alive connection and an h2 session drained in one drain, each by its rule`, async (t) => {
    const s = await kind.start(t, { tls: true, allowHTTP1: true })
    // The h2 session first, so that an HTTP/1.1 reaper that wrongly held its socket would reach it first.
    const h2 = h2Connect(t, s.origin, cert)
    const h2Watch = watchSession(h2)
    t.is((await h2Get(h2, '/')).status, 200)
    const [h2Hold] = handled([h2Get(h2, '/hold')])
    await within(10_000, 'the h2 /hold in the handler', s.whenHeld(1))
    // An HTTP/1.1 keep-alive connection, idle, and an HTTP/1.1 request in flight on another.
    let idleSocket: net.Socket | undefined
    const warm = await h1Get(`${s.origin}/`, h1Agent(t), (sock) => { idleSocket = sock })
    t.deepEqual([warm.status, warm.connection, warm.alpn], [200, 'keep-alive', false])
    const [h1Hold] = handled([h1Get(`${s.origin}/hold`, h1Agent(t))])
    await within(10_000, 'the HTTP/1.1 /hold in the handler', s.whenHeld(2))
    const idleClosed = closedAt(idleSocket as net.Socket)

    const shutdown = s.shutdown(LONG)
    await within(10_000, 'the idle HTTP/1.1 connection closed after the grace', idleClosed)
    await within(10_000, 'the first GOAWAY on the h2 session', h2Watch.whenGoaways(1))
    t.false(h2Watch.isClosed(), 'the h2 session, busy, is not reaped with the idle HTTP/1.1 connection')
    s.release()
    const [a2, a1] = await within(10_000, 'both held answers', Promise.all([h2Hold as Promise<H2Answer>, h1Hold as Promise<H1Answer>]))
    t.deepEqual([a2.status, a2.body], [200, 'held'])
    t.deepEqual([a1.status, a1.connection, a1.body], [200, 'close', 'held'])
    const result = await within(10_000, 'the shutdown', shutdown)
    await within(10_000, 'the h2 session closed', h2Watch.closed)
    t.is(result.forced, 0)
    t.like(result.apps[0], { forced: 0, idleClosed: 1 })
    t.deepEqual(result.apps[0]?.http2, { sessions: { drained: 1, forced: 0 }, streams: { drained: 1, forced: 0 } })
    // Three connections: two HTTP/1.1 sockets and one h2 session (its socket is not an HTTP/1.1 connection).
    t.like(s.logged('graceful-reboot: drain started'), { connections: 3, sessions: 1, streams: 1 })
  })
}

test.serial('fastify h2c: app.close() gives an idle session GOAWAY and resolves without waiting for http2SessionTimeout', async (t) => {
  const s = await fastifyKind.start(t, { tls: false, timeout: LONG })
  const session = h2Connect(t, s.origin)
  t.is((await h2Get(session, '/')).status, 200)
  const watch = watchSession(session)
  // Without the drain, Fastify's close waits for the session's 72 s http2SessionTimeout.
  await within(10_000, 'app.close()', s.close())
  await within(10_000, 'the session closed', watch.closed)
  t.deepEqual(watch.goaways[0], { code: NO_ERROR, lastStreamID: LAST_STREAM_ID_MAX })
})

interface H1Answer { status: number, connection: string | undefined, body: string, alpn: string | false | undefined }

/** An HTTP/1.1 keep-alive agent over TLS (no ALPN: the server's allowHTTP1 path), destroyed in teardown. */
function h1Agent (t: ExecutionContext): https.Agent {
  const a = new https.Agent({ keepAlive: true, maxSockets: 1, ca: cert })
  t.teardown(() => { a.destroy() })
  return a
}

function h1Get (url: string, agent: https.Agent, onSocket?: (s: net.Socket) => void): Promise<H1Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent }, (res: http.IncomingMessage) => {
      let body = ''
      const alpn = (res.socket as net.Socket & { alpnProtocol?: string | false }).alpnProtocol
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.once('end', () => {
        resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, body, alpn })
      })
      res.once('error', reject)
    })
    req.once('error', reject)
    if (onSocket !== undefined) req.once('socket', onSocket)
  })
}

// Reboots of a real Fastify http2 app (fixture processes).

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }
interface Drained extends FixtureEvent { code: number, forced: number, http2: { sessions: { drained: number, forced: number }, streams: { drained: number, forced: number } } }

/** Sends SIGUSR2 to `pid`; resolves with its successor's 'listening' and its own drain result. */
async function reboot (f: Fixture, pid: number): Promise<{ next: Listening, drained: Drained }> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid, 30_000) as Listening
  f.track(next.pid)
  const drained = await f.waitFor((e) => e.event === 'drained' && e.pid === pid, 30_000) as Drained
  return { next, drained }
}

for (const proto of protocols) {
  test(`fastify ${proto.label}: 2 reboots under load from 6 h2 sessions lose no request; a stream in flight completes on the old process; each old process drains without forcing`, async (t) => {
    const f = startFixture(t, 'h2-app', { env: proto.tls ? { TLS: '1' } : {} })
    const first = await f.waitFor('listening') as Listening
    const origin = `${proto.tls ? 'https' : 'http'}://127.0.0.1:${first.port}`
    const ca = proto.tls ? cert : undefined
    const load = runH2Load({ origin, sessions: 6, streams: 2, ca, durationMs: 50_000, maxRequests: 200_000 })
    t.teardown(() => { load.stop() })
    // A stream on its own session, in flight until the first old process drains.
    const holdSession = h2Connect(t, origin, ca)
    const [hold] = handled([h2Get(holdSession, '/hold')])
    await f.waitFor((e) => e.event === 'hold-started' && e.pid === first.pid)
    await f.waitFor((e) => e.event === 'answered' && e.pid === first.pid && (e.count as number) >= 50)

    const one = await reboot(f, first.pid)
    await f.waitFor((e) => e.event === 'answered' && e.pid === one.next.pid && (e.count as number) >= 50)
    const two = await reboot(f, one.next.pid)
    await f.waitFor((e) => e.event === 'answered' && e.pid === two.next.pid && (e.count as number) >= 50)
    load.stop()
    const r: H2LoadResult = await within(30_000, 'the load to stop', load.result)
    const held = await within(10_000, 'the held answer', hold as Promise<H2Answer>)

    t.log(`${r.sent} sent, ${r.answered} answered, ${r.failed} failed; ${r.sessionsOpened} sessions opened; retried: ${JSON.stringify(r.retried)}`)
    t.is(r.failed, 0, JSON.stringify(r.causes))
    t.is(r.sent, r.answered + r.failed)
    t.true(r.answered > 0)
    t.deepEqual(r.pids.sort(), [first.pid, one.next.pid, two.next.pid].sort(), 'every process served')
    t.true(r.sessionsOpened > 6, `sessions reconnected after GOAWAY (${r.sessionsOpened} opened; retried ${JSON.stringify(r.retried)})`)
    t.deepEqual([held.status, held.body, Number(held.headers['x-pid'])], [200, 'held', first.pid])
    for (const d of [one.drained, two.drained]) {
      t.is(d.code, exitCodes.clean)
      t.is(d.forced, 0)
      t.is(d.http2.sessions.forced, 0)
      t.true(d.http2.sessions.drained > 0)
    }
    t.true(one.drained.http2.streams.drained >= 1, 'the held stream drained on the first old process')

    process.kill(two.next.pid, 'SIGTERM')
    await within(30_000, 'every process gone', f.closed)
    t.like(f.lines.find((e) => e.event === 'exit' && e.pid === two.next.pid), { code: exitCodes.clean })
  })
}
