// Runs in the test process: one drain suite, written once and run against Fastify and Express, with
// real servers on 127.0.0.1:0 and real client sockets. The lifecycle is process-wide (a shutdown
// drains every app in this process), so every test is serial and tears its server down. The idle
// grace is driven through a fake process seam where a test must cross it at a chosen moment.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import type net from 'node:net'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { exitCodes, lifecycle, type ShutdownResult } from '../index'
import { runLoad, type LoadResult, type LoadRun } from '../tools/load'
import { Http1Connections } from '../lib/drain/http1'
import { FakeSeam } from './fixtures/finalizer-fake-seam'
import {
  builders, closedAt, expressBuilder, fastifyBuilder, connectError, get, handled, keepAliveAgent, nextAccepted,
  parseResponses, rawClient, rawConnect, requestText, serverReceived, within,
  type Answer, type RawResponse, type ServerBuilder
} from './helpers/servers'

/** Node's default keepAliveTimeout in Fastify 5: what a non-graceful close would wait for. */
const FASTIFY_KEEP_ALIVE_MS = 72_000

type Scenario = (t: ExecutionContext, b: ServerBuilder) => Promise<void>

/** Outcome of a request that may be cut: 'answered <status>' or the error code. */
function outcome (p: Promise<Answer>): Promise<string> {
  return p.then((a) => `answered ${a.status}`, (err: NodeJS.ErrnoException) => err.code ?? err.message)
}

const inFlightIdleAndSilent: Scenario = async (t, b) => {
  const s = await b.start(t)
  const slowAgent = keepAliveAgent(t, 20)
  const idleAgent = keepAliveAgent(t, 10)

  // Ten keep-alive sockets whose requests are answered: they sit idle in the agent's pool.
  const idle = new Set<net.Socket>()
  const warm = await Promise.all(Array.from({ length: 10 }, () => get(s.origin, '/', idleAgent, (sock) => { idle.add(sock) })))
  t.is(idle.size, 10, 'ten distinct keep-alive sockets')
  t.deepEqual(warm.map((a) => [a.status, a.headers.connection]), Array(10).fill([200, 'keep-alive']))
  // Five sockets that never send a byte.
  const silent = await Promise.all(Array.from({ length: 5 }, () => rawConnect(t, s.port)))
  // Twenty slow requests in flight.
  const slow = handled(Array.from({ length: 20 }, () => get(s.origin, '/slow?ms=1500', slowAgent)))
  await within(10_000, '20 slow requests in the handler', s.whenSlowInFlight(20))
  await within(10_000, 'all 35 connections accepted', s.whenAccepted(35))
  const closes = [...idle, ...silent].map(closedAt)

  const t0 = performance.now()
  const shutdown = s.shutdown(20_000)
  await nextTurn()
  t.false(s.server.listening, 'the listening handle is closed once the drain starts')
  t.is((await within(5000, 'a refused connection', connectError(s.port))).code, 'ECONNREFUSED')

  const closedTimes = await within(5000, 'idle and silent sockets closed by the server', Promise.all(closes))
  const answers = await within(10_000, 'slow answers', Promise.all(slow))
  const result = await within(10_000, 'shutdown result', shutdown)
  const elapsed = performance.now() - t0

  t.deepEqual(answers.map((a) => [a.status, a.headers.connection, a.body]), Array(20).fill([200, 'close', 'slow']))
  const firstAnswer = Math.min(...answers.map((a) => a.at))
  for (const at of closedTimes) {
    // Not reaped at once (that resets requests already in the kernel buffer), but after the 250 ms grace.
    t.true(at - t0 >= 200, `idle socket closed ${Math.round(at - t0)} ms after the drain started, before the grace`)
    t.true(at - t0 < 2000, `idle socket closed ${Math.round(at - t0)} ms after the drain started`)
    t.true(at < firstAnswer, 'idle sockets closed while the slow requests were still running')
  }
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
  t.deepEqual(result.failedFinalizers, [])
  t.is(result.apps.length, 1)
  t.is(result.apps[0]?.forced, 0)
  t.is(result.apps[0]?.forcedUpgraded, 0)
  t.is(result.apps[0]?.idleClosed, 15, '10 idle keep-alive + 5 silent connections')
  t.true(elapsed < 10_000, `drain took ${Math.round(elapsed)} ms (Fastify keepAliveTimeout is ${FASTIFY_KEEP_ALIVE_MS} ms)`)
  t.is(s.server.listening, false)
}

const loadLosesNothing: Scenario = async (t, b) => {
  const s = await b.start(t)
  let run: LoadRun | undefined
  let shutdown: Promise<ShutdownResult> | undefined
  let atShutdown: LoadResult | undefined
  const begun = new Promise<void>((resolve) => {
    run = runLoad({
      url: `${s.origin}/`,
      connections: 10,
      mode: 'keep-alive',
      durationMs: 2000,
      maxRequests: 500_000,
      requestTimeoutMs: 5000
    }, {
      onProgress: (r) => {
        if (shutdown !== undefined || r.answered < 50) return
        // The drain starts while every loop has a request on the wire. The client stops starting
        // requests here: after a shutdown the listener is closed, so a new connection is refused by
        // design; what must not be lost is every request already sent on a kept-alive connection.
        shutdown = s.shutdown(10_000)
        run?.stop()
        atShutdown = r
        resolve()
      }
    })
  })
  t.teardown(() => { run?.stop() })
  if (run === undefined) throw new Error('runLoad did not start')
  await within(10_000, 'some requests answered before the shutdown', begun)
  const load = await within(20_000, 'the load run to settle', run.result)
  const result = await within(20_000, 'the shutdown', shutdown as Promise<ShutdownResult>)

  const before = atShutdown as LoadResult
  t.log(`answered before the drain: ${before.answered}; in flight when it started: ${before.sent - before.answered - before.failed}; total ${load.sent}`)
  t.is(load.failed, 0, `causes: ${JSON.stringify(load.causes)}`)
  t.is(load.sent, load.answered)
  t.true(load.answered >= 50)
  t.true(before.sent - before.answered - before.failed >= 1, 'requests were in flight when the drain started')
  t.true(load.answered > before.answered, 'requests in flight at the drain were answered')
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
}

const closeServesOpenConnections: Scenario = async (t, b) => {
  // Default options: timeout 30 s, and Fastify's keepAliveTimeout of 72 s.
  const s = await b.start(t)
  const slowAgent = keepAliveAgent(t, 5)
  const kaAgent = keepAliveAgent(t, 1)
  const first = await get(s.origin, '/', kaAgent)
  t.is(first.headers.connection, 'keep-alive')
  const slow = handled(Array.from({ length: 5 }, () => get(s.origin, '/slow?ms=800', slowAgent)))
  await within(10_000, '5 slow requests in the handler', s.whenSlowInFlight(5))

  if (s.framework === 'fastify') t.is(s.server.keepAliveTimeout, FASTIFY_KEEP_ALIVE_MS)

  const t0 = performance.now()
  const closing = s.close()
  await nextTurn()
  t.false(s.server.listening)
  // A request on the keep-alive connection opened before the close: served, not 503.
  const during = await within(5000, 'a request during the close', get(s.origin, '/', kaAgent))
  t.true(during.reused, 'sent on the kept-alive socket')
  t.deepEqual([during.status, during.headers.connection, during.body], [200, 'close', 'ok'])

  const answers = await within(10_000, 'slow answers', Promise.all(slow))
  t.deepEqual(answers.map((a) => [a.status, a.headers.connection, a.body]), Array(5).fill([200, 'close', 'slow']))
  t.true(during.at < Math.min(...answers.map((a) => a.at)), 'the request was served while the close was under way')
  const unit = await within(10_000, 'the close', closing)
  const elapsed = performance.now() - t0
  t.true(elapsed < 10_000, `close took ${Math.round(elapsed)} ms (Fastify keepAliveTimeout is ${FASTIFY_KEEP_ALIVE_MS} ms)`)
  if (unit !== undefined) t.is(unit.forced, 0)
  t.is(lifecycle().apps.length, 0, 'a closed app leaves the process-wide coordinator')
}

const streamingFinishes: Scenario = async (t, b) => {
  const s = await b.start(t)
  const agent = keepAliveAgent(t, 1)
  let socket: net.Socket | undefined
  const [answer] = handled([get(s.origin, '/stream?ms=800', agent, (sock) => { socket = sock })])
  await within(10_000, 'the stream started', s.whenSlowInFlight(1))
  const closed = closedAt(socket as net.Socket)

  const result = await within(10_000, 'the shutdown', s.shutdown(10_000))
  const a = await within(5000, 'the streamed answer', answer as Promise<Answer>)
  const at = await within(5000, 'the socket closed', closed)
  // Its headers were out before the drain (keep-alive), yet the body completes and the socket goes.
  t.deepEqual([a.status, a.headers.connection, a.body], [200, 'keep-alive', 'first last'])
  t.true(at - a.at < 2000, `socket closed ${Math.round(at - a.at)} ms after the response ended`)
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
}

const deadlineCutsShutdown: Scenario = async (t, b) => {
  const s = await b.start(t)
  const agent = keepAliveAgent(t, 1)
  const cut = outcome(get(s.origin, '/slow?ms=5000', agent))
  await within(10_000, 'the slow request in the handler', s.whenSlowInFlight(1))

  const t0 = performance.now()
  const result = await within(4000, 'a shutdown that honours its 300 ms deadline', s.shutdown(300))
  const elapsed = performance.now() - t0
  t.is(await within(4000, 'the cut request', cut), 'ECONNRESET')
  t.true(elapsed >= 250, `the deadline was not waited for (${Math.round(elapsed)} ms)`)
  t.true(elapsed < 4000, `shutdown(300) took ${Math.round(elapsed)} ms`)
  t.is(result.forced, 1)
  t.is(result.apps[0]?.forced, 1)
  t.is(result.code, exitCodes.forced)
}

const deadlineCutsClose: Scenario = async (t, b) => {
  const s = await b.start(t, { timeout: 300 })
  const agent = keepAliveAgent(t, 1)
  const cut = outcome(get(s.origin, '/slow?ms=5000', agent))
  await within(10_000, 'the slow request in the handler', s.whenSlowInFlight(1))

  const t0 = performance.now()
  const unit = await within(4000, 'a close that honours the 300 ms timeout option', s.close())
  const elapsed = performance.now() - t0
  t.is(await within(4000, 'the cut request', cut), 'ECONNRESET')
  t.true(elapsed >= 250, `the deadline was not waited for (${Math.round(elapsed)} ms)`)
  t.true(elapsed < 4000, `close() took ${Math.round(elapsed)} ms`)
  if (unit !== undefined) t.is(unit.forced, 1)
}

/** [status, connection header, body] of each response. */
function summary (responses: RawResponse[]): Array<[number, string | undefined, string]> {
  return responses.map((r) => [r.status, r.headers.connection, r.body])
}

const pipelinedDuringDrain: Scenario = async (t, b) => {
  const s = await b.start(t)
  const client = await rawClient(t, s.port)
  client.socket.write(requestText('GET', '/held'))
  await within(10_000, 'request A in the handler', s.whenHeld(1))

  const shutdown = s.shutdown(10_000)
  await nextTurn()
  t.false(s.server.listening, 'the drain has started')
  // B, pipelined behind A (still unanswered) on the same connection.
  client.socket.write(requestText('POST', '/effect'))
  await within(10_000, "request B's handler ran", s.whenEffects(1))
  s.release()

  const text = await within(10_000, 'the server to close the connection', client.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'keep-alive', 'held'], [200, 'close', 'effect 1']],
    'both answered in order, the last with connection: close')
  t.is(s.effects(), 1, "B's side effect happened once")
  const result = await within(10_000, 'the shutdown', shutdown)
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
}

const pipelinedBeforeDrain: Scenario = async (t, b) => {
  const s = await b.start(t)
  const client = await rawClient(t, s.port)
  // A and B arrive together: both are in the app's handlers before the drain starts.
  client.socket.write(requestText('GET', '/held') + requestText('GET', '/held'))
  await within(10_000, 'requests A and B in the handler', s.whenHeld(2))

  const shutdown = s.shutdown(10_000)
  await nextTurn()
  t.false(s.server.listening, 'the drain has started')
  s.release()
  await within(10_000, 'the answer to A', client.until((text) => parseResponses(text).length === 1))
  s.release()

  const text = await within(10_000, 'the server to close the connection', client.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'keep-alive', 'held'], [200, 'close', 'held']],
    'B, received before the drain and queued behind A, is answered too, with connection: close')
  const result = await within(10_000, 'the shutdown', shutdown)
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
}

const pipelinedAfterClose: Scenario = async (t, b) => {
  const s = await b.start(t)
  const accepted = nextAccepted(s.server)
  const client = await rawClient(t, s.port)
  const serverSide = await within(5000, 'the connection accepted', accepted)
  client.socket.write(requestText('GET', '/held'))
  await within(10_000, 'request A in the handler', s.whenHeld(1))

  const shutdown = s.shutdown(10_000)
  await nextTurn()
  t.false(s.server.listening, 'the drain has started')
  s.heldHead()
  await within(10_000, "A's head", client.until((text) => text.includes('\r\n\r\n')))
  t.regex(client.received(), /\r\nConnection: close\r\n/i, "A's head, sent during the drain, closes the connection")
  // B arrives behind a response that closes the connection: it could never be answered.
  const bParsed = serverReceived(serverSide, 'POST /effect')
  client.socket.write(requestText('POST', '/effect'))
  await within(10_000, "the server parsed B's bytes", bParsed)
  s.release()

  const text = await within(10_000, 'the server to close the connection', client.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'close', 'held']], 'A answered, then the connection closed')
  t.deepEqual(s.requests(), ['GET /held'], 'B was not handed to the app')
  t.is(s.effects(), 0, "B's handler did not run")
  const result = await within(10_000, 'the shutdown', shutdown)
  t.is(result.forced, 0)
}

const trickleAcrossGrace: Scenario = async (t, b) => {
  // The plugin's own drain stays idle; this one runs the same HTTP/1.1 rule on the app's server with
  // timers fired by hand, so the grace passes exactly between the bytes of a request.
  const s = await b.start(t)
  const seam = new FakeSeam()
  const conns = new Http1Connections(s.server, seam, 250)
  t.teardown(() => { conns.detach() })
  const accepted = nextAccepted(s.server)
  const client = await rawClient(t, s.port)
  const serverSide = await within(5000, 'the connection accepted', accepted)

  conns.drain()
  t.deepEqual(seam.pending, [{ ms: 250 }], 'the idle connection is due to be reaped after the grace')
  const request = requestText('GET', '/')
  const parts = [request.slice(0, 10), request.slice(10, 20), request.slice(20)]
  for (const [i, part] of parts.slice(0, -1).entries()) {
    const arrived = serverReceived(serverSide, part)
    client.socket.write(part)
    await within(5000, `part ${i + 1} of the request at the server`, arrived)
    await seam.advance(250)
    t.false(serverSide.destroyed, `bytes arrived during grace ${i + 1}: the connection stays`)
    t.deepEqual(seam.pending, [{ ms: 250 }], 'the close is postponed by another grace')
  }
  client.socket.write(parts[parts.length - 1] as string)

  const text = await within(10_000, 'the server to close the connection', client.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'close', 'ok']])
  t.is(conns.idleClosed, 0)
}

const scenarios: Array<[string, Scenario]> = [
  ['shutdown: 20 in-flight requests get 200 + connection: close; new connections refused; idle and silent sockets closed after the grace; forced 0', inFlightIdleAndSilent],
  ['shutdown under keep-alive load: no request lost (failed 0, sent === answered)', loadLosesNothing],
  ['close(): in-flight requests and a request on an open keep-alive connection get 200 + connection: close, well before keepAliveTimeout', closeServesOpenConnections],
  ['shutdown: a streaming response whose headers went out before the drain completes, then its socket closes', streamingFinishes],
  ['shutdown(300): a 5 s request is cut at the deadline and reported as forced', deadlineCutsShutdown],
  ['close() with timeout 300: a 5 s request is cut at the deadline', deadlineCutsClose],
  ['pipelining: B sent behind A (in the handler) after the drain starts: both answered in order, the last with connection: close, B run once', pipelinedDuringDrain],
  ['pipelining: A and B both in their handlers when the drain starts: both answered, the last with connection: close', pipelinedBeforeDrain],
  ['pipelining: B arriving behind a head already sent with connection: close is not handed to the app', pipelinedAfterClose],
  ['idle grace: a request whose bytes trickle in across the grace is answered', trickleAcrossGrace]
]

for (const [title, scenario] of scenarios) {
  for (const b of builders) {
    test.serial(`${b.name}: ${title}`, (t) => scenario(t, b))
  }
}

test.serial('process-wide: one shutdown() drains a Fastify app and an Express app in the same process', async (t) => {
  const f = await fastifyBuilder.start(t)
  const e = await expressBuilder.start(t)
  const agent = keepAliveAgent(t, 4)
  const slow = handled([f, e, f, e].map((s) => get(s.origin, '/slow?ms=600', agent)))
  await within(10_000, 'two slow requests on each app', Promise.all([f.whenSlowInFlight(2), e.whenSlowInFlight(2)]))

  const result = await within(10_000, 'the shutdown', e.shutdown(10_000))
  const answers = await within(5000, 'the slow answers', Promise.all(slow))
  t.deepEqual(answers.map((a) => [a.status, a.headers.connection]), Array(4).fill([200, 'close']))
  t.deepEqual(result.apps.map((a) => a.name).sort(), ['express', 'fastify'])
  t.deepEqual([f.server.listening, e.server.listening], [false, false])
  t.is(result.forced, 0)
  t.is(lifecycle().apps.length, 0)
})
