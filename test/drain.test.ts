// Runs in the test process: one drain suite, written once and run against Fastify and Express, with
// real servers on 127.0.0.1:0 and real client sockets. The lifecycle is process-wide (a shutdown
// drains every app in this process), so every test is serial and tears its server down. The idle
// grace is driven through a fake process seam where a test must cross it at a chosen moment.
import { core } from '../lib/lifecycle'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import type net from 'node:net'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { exitCodes, type ShutdownResult } from '../index'
import { Http1Connections } from '../lib/drain/http1'
import { NEVER_SPOKE_GRACE } from '../lib/drain/http1-conn'
import { handOverWith, type SendSocket } from '../lib/outgoing/transfer'
import { FakeSeam } from './fixtures/finalizer-fake-seam'
import { keepAliveLoad, type Sent } from './helpers/keep-alive-load'
import {
  builders, closedAt, expressBuilder, fastifyBuilder, connectError, get, handled, keepAliveAgent, nextAccepted,
  parseResponses, rawClient, rawConnect, requestText, serverReceived, within,
  type Answer, type RawClient, type RawResponse, type ServerBuilder, type Started
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
  // Twenty slow requests in flight, held in the handler until the test releases them.
  const slow = handled(Array.from({ length: 20 }, () => get(s.origin, '/slow?hold=1', slowAgent)))
  await within(10_000, '20 slow requests in the handler', s.whenSlowInFlight(20))
  await within(10_000, 'all 35 connections accepted', s.whenAccepted(35))
  const closes = [...idle, ...silent].map(closedAt)

  const t0 = performance.now()
  const shutdown = s.shutdown(20_000)
  await nextTurn()
  t.false(s.server.listening, 'the listening handle is closed once the drain starts')
  t.is((await within(5000, 'a refused connection', connectError(s.port))).code, 'ECONNREFUSED')

  // Closed by the idle reaper while the 20 requests are still held: not when the drain ends, and not at
  // its deadline (20 s away; this guard fails first).
  const closedTimes = await within(10_000, 'idle and silent sockets closed by the server', Promise.all(closes))
  t.is(s.slowInFlight(), 20, 'the slow requests were still in the handler when the idle sockets closed')
  t.is(s.release(), 20)
  const answers = await within(10_000, 'slow answers', Promise.all(slow))
  const result = await within(10_000, 'shutdown result', shutdown)

  t.deepEqual(answers.map((a) => [a.status, a.headers.connection, a.body]), Array(20).fill([200, 'close', 'slow']))
  const firstAnswer = Math.min(...answers.map((a) => a.at))
  for (const at of closedTimes) {
    // Not reaped at once (that resets requests already in the kernel buffer), but after the 250 ms grace.
    // (A lower bound only: a loaded machine makes it later, never earlier.)
    t.true(at - t0 >= 200, `idle socket closed ${Math.round(at - t0)} ms after the drain started, before the grace`)
    t.true(at < firstAnswer, 'idle sockets closed while the slow requests were still running')
  }
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
  t.deepEqual(result.failedFinalizers, [])
  t.is(result.apps.length, 1)
  t.is(result.apps[0]?.forced, 0)
  t.is(result.apps[0]?.forcedUpgraded, 0)
  t.is(result.apps[0]?.idleClosed, 15, '10 idle keep-alive + 5 silent connections')
  t.is(s.server.listening, false)
}

const CONNECTIONS = 20

const loadLosesNothing: Scenario = async (t, b) => {
  // The default idle grace (250 ms): what the drain does to open keep-alive sockets under load (answer
  // their next request with Connection: close, never reset one whose request is already sent).
  const s = await b.start(t)
  let drainAt: number | undefined
  let inFlightAtDrain = 0
  let shutdown: Promise<ShutdownResult> | undefined
  // The load runs through the drain and stops by itself: each loop ends at its first refused new
  // connection (its socket was told to close and the listener is closed), or after 2000 requests.
  const load = keepAliveLoad(t, `${s.origin}/`, {
    connections: CONNECTIONS,
    maxPerConnection: 2000,
    requestTimeoutMs: 5000,
    onSettled: (_r, settled) => {
      if (shutdown !== undefined || settled.length < 10 * CONNECTIONS) return
      // From a response's end: every other loop has its next request on the wire, and this loop's
      // next request goes out on its kept-alive socket after the drain has started.
      drainAt = performance.now()
      inFlightAtDrain = load.sent() - settled.length
      shutdown = s.shutdown(10_000)
    }
  })
  const requests = await within(30_000, 'every load loop to end', load.done)
  if (shutdown === undefined || drainAt === undefined) throw new Error(`the drain never started (${requests.length} requests)`)
  const result = await within(20_000, 'the shutdown', shutdown)
  const start = drainAt

  t.is(requests.length, load.sent(), 'every request is accounted for')
  // The reset race: no request sent on an open keep-alive socket may fail, during the drain or before.
  const lostOnOpenSockets = requests.filter((r) => r.reused && r.outcome !== 'answered')
  const when = (r: Sent): string => `${r.outcome} ${Math.round(r.startedAt - start)} ms after the drain started`
  t.deepEqual(lostOnOpenSockets.map(when), [], 'requests lost on kept-alive sockets')
  // What may fail: a new connection once the listener is closed (no successor takes it), one per loop.
  const failed = requests.filter((r) => r.outcome !== 'answered')
  t.true(failed.every((r) => !r.reused && r.outcome === 'ECONNREFUSED' && r.startedAt >= start),
    `every failure is a refused new connection after the drain started: ${JSON.stringify(failed.filter((r) => r.outcome !== 'ECONNREFUSED' || r.reused))}`)
  t.is(failed.length, CONNECTIONS, 'every loop ran until the closed listener refused it')
  const answered = requests.filter((r) => r.outcome === 'answered')
  t.true(answered.every((r) => r.status === 200), 'every answer is a 200')
  t.is(answered.length + failed.length, requests.length)

  // The load did reach the drain on open sockets: requests were in flight when it started, requests
  // went out on kept-alive sockets after it started, and every socket was told to close.
  const onOpenDuringDrain = requests.filter((r) => r.reused && r.startedAt >= start)
  t.log(`${requests.length} requests; in flight when the drain started: ${inFlightAtDrain}; sent on kept-alive sockets after it started: ${onOpenDuringDrain.length}; refused: ${failed.length}`)
  t.true(inFlightAtDrain >= 1, 'requests were in flight when the drain started')
  t.true(onOpenDuringDrain.length >= 1, 'requests went out on kept-alive sockets during the drain')
  t.is(answered.filter((r) => r.connection === 'close').length, CONNECTIONS, 'each kept-alive socket ended with a Connection: close answer')
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
  const slow = handled(Array.from({ length: 5 }, () => get(s.origin, '/slow?hold=1', slowAgent)))
  await within(10_000, '5 slow requests in the handler', s.whenSlowInFlight(5))

  if (s.framework === 'fastify') t.is(s.server.keepAliveTimeout, FASTIFY_KEEP_ALIVE_MS)
  // A close that waited for that keepAliveTimeout would fail the 10 s guards below (and AVA's 60 s
  // timeout): outcomes are checked, not elapsed time.

  const closing = s.close()
  await nextTurn()
  t.false(s.server.listening)
  // A request on the keep-alive connection opened before the close: served, not 503.
  const during = await within(5000, 'a request during the close', get(s.origin, '/', kaAgent))
  t.true(during.reused, 'sent on the kept-alive socket')
  t.deepEqual([during.status, during.headers.connection, during.body], [200, 'close', 'ok'])
  t.is(s.release(), 5, 'the slow requests were still in the handler')

  const answers = await within(10_000, 'slow answers', Promise.all(slow))
  t.deepEqual(answers.map((a) => [a.status, a.headers.connection, a.body]), Array(5).fill([200, 'close', 'slow']))
  t.true(during.at < Math.min(...answers.map((a) => a.at)), 'the request was served while the close was under way')
  const unit = await within(10_000, 'the close', closing)
  if (unit !== undefined) t.is(unit.forced, 0)
  t.is(core().apps.length, 0, 'a closed app leaves the process-wide coordinator')
}

const streamingFinishes: Scenario = async (t, b) => {
  const s = await b.start(t)
  const agent = keepAliveAgent(t, 1)
  let socket: net.Socket | undefined
  const [answer] = handled([get(s.origin, '/stream?hold=1', agent, (sock) => { socket = sock })])
  await within(10_000, 'the stream started', s.whenSlowInFlight(1))
  const closed = closedAt(socket as net.Socket)

  const shutdown = s.shutdown(10_000)
  await nextTurn()
  t.false(s.server.listening, 'the drain has started')
  t.is(s.release(), 1, 'the stream was still open when the drain started')
  const a = await within(5000, 'the streamed answer', answer as Promise<Answer>)
  const at = await within(5000, 'the socket closed', closed)
  const result = await within(10_000, 'the shutdown', shutdown)
  // Its headers were out before the drain (keep-alive), yet the body completes and the socket goes:
  // closed by the idle reaper once the response ended, not destroyed at the deadline.
  t.deepEqual([a.status, a.headers.connection, a.body], [200, 'keep-alive', 'first last'])
  t.true(at >= a.at, 'the socket closed after the response ended')
  t.is(result.apps[0]?.idleClosed, 1)
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
}

const deadlineCutsShutdown: Scenario = async (t, b) => {
  const s = await b.start(t)
  const agent = keepAliveAgent(t, 1)
  const cut = outcome(get(s.origin, '/slow?hold=1', agent)) // never released
  await within(10_000, 'the slow request in the handler', s.whenSlowInFlight(1))

  // Event order, no time window: the request is still open while the shutdown runs, and is cut by it.
  let cutAt: number | undefined
  void cut.then(() => { cutAt = performance.now() })
  const t0 = performance.now()
  const result = await s.shutdown(300)
  const elapsed = performance.now() - t0
  t.is(await cut, 'ECONNRESET')
  t.true((cutAt ?? 0) >= t0 + 250, 'the request was cut at the deadline, not before')
  t.true(elapsed >= 250, `the deadline was not waited for (${Math.round(elapsed)} ms)`)
  t.is(result.forced, 1)
  t.is(result.apps[0]?.forced, 1)
  t.is(result.code, exitCodes.forced)
}

const deadlineCutsClose: Scenario = async (t, b) => {
  const s = await b.start(t, { timeout: 300 })
  const agent = keepAliveAgent(t, 1)
  const cut = outcome(get(s.origin, '/slow?hold=1', agent)) // never released
  await within(10_000, 'the slow request in the handler', s.whenSlowInFlight(1))

  const t0 = performance.now()
  const unit = await s.close()
  const elapsed = performance.now() - t0
  t.is(await cut, 'ECONNRESET')
  t.true(elapsed >= 250, `the deadline was not waited for (${Math.round(elapsed)} ms)`)
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
  s.releaseHeld()

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
  s.releaseHeld()
  await within(10_000, 'the answer to A', client.until((text) => parseResponses(text).length === 1))
  s.releaseHeld()

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
  s.releaseHeld()

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
  t.deepEqual(seam.pending, [{ ms: NEVER_SPOKE_GRACE }], 'the connection that never sent a byte is due to be reaped after its grace')
  const request = requestText('GET', '/')
  const parts = [request.slice(0, 10), request.slice(10, 20), request.slice(20)]
  for (const [i, part] of parts.slice(0, -1).entries()) {
    const arrived = serverReceived(serverSide, part)
    client.socket.write(part)
    await within(5000, `part ${i + 1} of the request at the server`, arrived)
    await seam.advance(NEVER_SPOKE_GRACE)
    t.false(serverSide.destroyed, `bytes arrived before grace ${i + 1} passed: the connection stays`)
    t.deepEqual(seam.pending, [], 'part of a request read: a request in flight, never reaped as idle')
  }
  client.socket.write(parts[parts.length - 1] as string)

  const text = await within(10_000, 'the server to close the connection', client.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'close', 'ok']])
  t.is(conns.idleClosed, 0)
}

const silentGraceBounded: Scenario = async (t, b) => {
  const s = await b.start(t)
  const graces: number[] = []
  for (const untilDeadline of [30_000, 1000, 300]) {
    const seam = new FakeSeam()
    const conns = new Http1Connections(s.server, seam, 250)
    const accepted = nextAccepted(s.server)
    await rawClient(t, s.port)
    await within(5000, 'the connection accepted', accepted)
    conns.drain(undefined, seam.now() + untilDeadline)
    graces.push(...seam.pending.map((p) => p.ms))
    conns.destroyAll()
    conns.detach()
  }
  t.deepEqual(graces, [NEVER_SPOKE_GRACE, 500, 250])
}

/**
 * A reboot's hand-over, one connection at a time (batch 1), over the connections of `s` (tracked from
 * now on: accept them after this call): the first send (A's) is held open until `releaseFirst()`, so
 * the others wait for their turn meanwhile.
 */
function heldFirstSend (t: ExecutionContext, s: Started): {
  conns: Http1Connections
  accept: (name: string) => Promise<[RawClient, net.Socket]>
  send: SendSocket
  sent: net.Socket[]
  firstOnItsWay: Promise<void>
  releaseFirst: () => void
} {
  const conns = new Http1Connections(s.server, new FakeSeam(), 250)
  t.teardown(() => { conns.detach() })
  const accept = async (name: string): Promise<[RawClient, net.Socket]> => {
    const accepted = nextAccepted(s.server)
    const client = await rawClient(t, s.port)
    return [client, await within(5000, `${name} accepted`, accepted)]
  }
  const sent: net.Socket[] = []
  let release: () => void = () => {}
  let onItsWay: () => void = () => {}
  const firstOnItsWay = new Promise<void>((resolve) => { onItsWay = resolve })
  const send: SendSocket = async (_address, socket) => {
    sent.push(socket)
    if (sent.length === 1) {
      onItsWay()
      await new Promise<void>((resolve) => { release = resolve })
    }
    return true
  }
  return { conns, accept, send, sent, firstOnItsWay, releaseFirst: () => { release() } }
}

const requestWhileWaitingToMove: Scenario = async (t, b) => {
  // A's send held open: B waits for its turn meanwhile. B reads on while it waits: its request is
  // served here keep-alive, and B moves once its response is done (its turn came while the response
  // was in flight: 'busy', then again).
  const s = await b.start(t)
  const h = heldFirstSend(t, s)
  await h.accept('A')
  const [clientB, serverB] = await h.accept('B')
  const outcomes: unknown[] = []
  let busySeen: () => void = () => {}
  const busy = new Promise<void>((resolve) => { busySeen = resolve })
  const handOver = handOverWith(h.send, 1)('tcp:test')
  h.conns.drain(async (socket) => {
    const o = await handOver(socket)
    outcomes.push(o)
    if (o === 'busy') busySeen()
    return o
  })
  await within(5000, "A's send under way (B waits for its turn)", h.firstOnItsWay)
  clientB.socket.write(requestText('GET', '/held'))
  await within(5000, "B's request in the handler while B waits for its turn", s.whenHeld(1))
  h.releaseFirst()
  await within(5000, "B's turn, with its response in flight", busy)
  s.releaseHeld()
  const text = await within(10_000, 'B moved (its copy here closed)', clientB.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'keep-alive', 'held']], 'answered here, keep-alive: the client keeps its connection')
  t.deepEqual(outcomes, [true, 'busy', true])
  t.is(h.sent[1], serverB, 'B was sent once its response was done')
  t.is(h.conns.transferred, 2)
}

const readsOnWhileWaitingToMove: Scenario = async (t, b) => {
  // A's send held open: B, waiting for its turn, is answered here, and its client sends its next
  // request at once. B must still be reading: stopped after its first response, its next requests
  // would wait in the kernel until its turn came (in a reboot moving 3,000 connections, about a second).
  const s = await b.start(t)
  const h = heldFirstSend(t, s)
  await h.accept('A')
  const [clientB, serverB] = await h.accept('B')
  h.conns.drain(handOverWith(h.send, 1)('tcp:test'))
  await within(5000, "A's send under way (B waits for its turn)", h.firstOnItsWay)
  for (let n = 1; n <= 3; n++) {
    clientB.socket.write(requestText('GET', '/'))
    await within(5000, `B's request ${n} answered while B waits for its turn`, clientB.until((text) => parseResponses(text).length === n))
  }
  t.is(h.sent.length, 1, "B's turn has not come")
  h.releaseFirst()
  const text = await within(10_000, 'B moved (its copy here closed)', clientB.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'keep-alive', 'ok'], [200, 'keep-alive', 'ok'], [200, 'keep-alive', 'ok']])
  t.is(h.sent[1], serverB, 'B was sent once its turn came')
  t.is(h.conns.transferred, 2)
}

const stoppedGoesFirst: Scenario = async (t, b) => {
  // A's send held open, C idle and waiting for its turn. B had a response in flight when the drain
  // started: it stopped reading as that response was written, so it goes ahead of C (which reads on
  // while it waits) once the response is done.
  const s = await b.start(t)
  const h = heldFirstSend(t, s)
  const [, serverA] = await h.accept('A')
  const [clientB, serverB] = await h.accept('B')
  const [, serverC] = await h.accept('C')
  clientB.socket.write(requestText('GET', '/held'))
  await within(5000, "B's request in the handler", s.whenHeld(1))
  const handOver = handOverWith(h.send, 1)('tcp:test')
  let moved = 0
  let allMoved: () => void = () => {}
  const three = new Promise<void>((resolve) => { allMoved = resolve })
  h.conns.drain(async (socket, stopped) => {
    const o = await handOver(socket, stopped)
    if (o === true && ++moved === 3) allMoved()
    return o
  })
  await within(5000, "A's send under way (C waits for its turn)", h.firstOnItsWay)
  s.releaseHeld()
  await within(5000, "B's response", clientB.until((text) => parseResponses(text).length === 1))
  h.releaseFirst()
  await within(10_000, 'all three moved', three)
  t.deepEqual(h.sent.map((x) => [serverA, serverB, serverC].indexOf(x)), [0, 1, 2], 'A, then B (stopped), then C (reading)')
}

const drainStartSliced: Scenario = async (t, b) => {
  // Five idle connections, two visited per turn, the turns run by hand: the drain's start never
  // visits them all in one turn of the event loop.
  const s = await b.start(t)
  const turns: Array<() => void> = []
  const conns = new Http1Connections(s.server, new FakeSeam(), 250, { size: 2, defer: (fn) => { turns.push(fn) } })
  t.teardown(() => { conns.destroyAll(); conns.detach() })
  for (let i = 0; i < 5; i++) {
    const accepted = nextAccepted(s.server)
    await rawClient(t, s.port)
    await within(5000, `connection ${i + 1} accepted`, accepted)
  }
  const offered: net.Socket[] = []
  conns.drain(async (socket) => { offered.push(socket); return 'send-failed' })
  const counts = [offered.length]
  while (turns.length > 0) {
    turns.shift()?.()
    counts.push(offered.length)
  }
  t.deepEqual(counts, [2, 4, 5], 'two per turn, each in a later turn')
  t.is(new Set(offered).size, 5, 'each offered once')
}

const requestBeforeItsVisit: Scenario = async (t, b) => {
  // One connection visited per turn, the next turn held: B's request arrives before the drain's
  // start reached B. B is visited then, as if just before its request: served keep-alive, then it moves.
  const s = await b.start(t)
  const turns: Array<() => void> = []
  const conns = new Http1Connections(s.server, new FakeSeam(), 250, { size: 1, defer: (fn) => { turns.push(fn) } })
  t.teardown(() => { conns.destroyAll(); conns.detach() })
  const accept = async (name: string): Promise<[RawClient, net.Socket]> => {
    const accepted = nextAccepted(s.server)
    const client = await rawClient(t, s.port)
    return [client, await within(5000, `${name} accepted`, accepted)]
  }
  await accept('A')
  const [clientB, serverB] = await accept('B')
  const sent: net.Socket[] = []
  const handOver = handOverWith(async (_address, socket) => { sent.push(socket); return true }, 1)('tcp:test')
  conns.drain(handOver)
  t.is(turns.length, 1, 'B not visited yet')
  clientB.socket.write(requestText('GET', '/held'))
  await within(5000, "B's request in the handler", s.whenHeld(1))
  s.releaseHeld()
  const text = await within(10_000, 'B moved (its copy here closed)', clientB.closed)
  t.deepEqual(summary(parseResponses(text)), [[200, 'keep-alive', 'held']], 'answered keep-alive: the client keeps its connection')
  t.true(sent.includes(serverB), 'B was handed over after its response')
  turns.shift()?.()
  t.is(turns.length, 0, 'nothing left to visit')
  t.is(conns.transferred, 2)
}

const scenarios: Array<[string, Scenario]> = [
  ['shutdown: 20 in-flight requests get 200 + connection: close; new connections refused; idle and silent sockets closed after the grace; forced 0', inFlightIdleAndSilent],
  ['shutdown under keep-alive load that runs on through the drain: no request on an open keep-alive socket lost; only new connections after the listener closed are refused', loadLosesNothing],
  ['close(): in-flight requests and a request on an open keep-alive connection get 200 + connection: close, well before keepAliveTimeout', closeServesOpenConnections],
  ['shutdown: a streaming response whose headers went out before the drain completes, then its socket closes', streamingFinishes],
  ['shutdown(300): a request that never ends is cut at the deadline and reported as forced', deadlineCutsShutdown],
  ['close() with timeout 300: a request that never ends is cut at the deadline', deadlineCutsClose],
  ['pipelining: B sent behind A (in the handler) after the drain starts: both answered in order, the last with connection: close, B run once', pipelinedDuringDrain],
  ['pipelining: A and B both in their handlers when the drain starts: both answered, the last with connection: close', pipelinedBeforeDrain],
  ['pipelining: B arriving behind a head already sent with connection: close is not handed to the app', pipelinedAfterClose],
  ['idle grace: a request whose bytes trickle in across the grace is answered', trickleAcrossGrace],
  ['never-spoke grace: at most half the time left to the deadline, never less than idleGrace', silentGraceBounded],
  ['hand-over: a request on a connection waiting for its turn to move is served keep-alive, then the connection moves', requestWhileWaitingToMove],
  ['hand-over: a connection waiting for its turn reads on after each response it gives here (its next requests do not wait for its turn)', readsOnWhileWaitingToMove],
  ['hand-over: a connection that stopped reading after its response goes ahead of those waiting while they read', stoppedGoesFirst],
  ["the drain's start visits its connections a slice per turn of the event loop, never all in one", drainStartSliced],
  ["hand-over: a request on a connection the drain's start has not reached yet is served keep-alive, then the connection moves", requestBeforeItsVisit]
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
  const slow = handled([f, e, f, e].map((s) => get(s.origin, '/slow?hold=1', agent)))
  await within(10_000, 'two slow requests on each app', Promise.all([f.whenSlowInFlight(2), e.whenSlowInFlight(2)]))

  const shutdown = e.shutdown(10_000)
  await nextTurn()
  t.deepEqual([f.server.listening, e.server.listening], [false, false], 'both drains have started')
  t.deepEqual([f.release(), e.release()], [2, 2])
  const result = await within(10_000, 'the shutdown', shutdown)
  const answers = await within(5000, 'the slow answers', Promise.all(slow))
  t.deepEqual(answers.map((a) => [a.status, a.headers.connection]), Array(4).fill([200, 'close']))
  t.deepEqual(result.apps.map((a) => a.name).sort(), ['express', 'fastify'])
  t.deepEqual([f.server.listening, e.server.listening], [false, false])
  t.is(result.forced, 0)
  t.is(core().apps.length, 0)
})
