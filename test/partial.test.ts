// Runs in the test process: a request that has begun is a request in flight (test/fixtures/transfer-app.ts,
// a Fastify and an Express app in one process, driven over raw sockets). A client that sent part of its
// request before the drain and pauses past the idle grace is answered with `Connection: close`, in a
// shutdown and in a reboot; a connection that never sent a byte is answered within its own grace in a
// shutdown and by the successor in a reboot; a request pipelined behind one in flight on a connection
// about to move is not cut by the keep-alive timer.
import * as net from 'node:net'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { parseResponses, type RawResponse } from './helpers/servers'

interface Listening extends FixtureEvent { pid: number, ports: { fastify: number, express: number } }

/** The client's own pause inside its request: past the 250 ms idle grace (the behaviour under test). */
const PAUSE_MS = 600
const HEAD = 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n'

interface Client { socket: net.Socket, text: () => string, closed: Promise<string>, answered: (n: number) => Promise<RawResponse[]> }

async function connect (t: ExecutionContext, port: number): Promise<Client> {
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  let text = ''
  socket.setEncoding('latin1')
  const listeners = new Set<() => void>()
  socket.on('data', (d: string) => { text += d; for (const l of [...listeners]) l() })
  socket.on('error', () => {})
  const closed = new Promise<string>((resolve) => { socket.once('close', () => { resolve(text) }) })
  await new Promise((resolve, reject) => { socket.once('connect', resolve).once('error', reject) })
  // Resolves once n complete responses came, or with what came when the socket closed.
  const answered = (n: number): Promise<RawResponse[]> => new Promise((resolve) => {
    const check = (): void => {
      const got = parseResponses(text)
      if (got.length < n || got.some((r) => r.body.length < Number(r.headers['content-length'] ?? 0))) return
      listeners.delete(check)
      resolve(got)
    }
    listeners.add(check)
    void closed.then(() => { listeners.delete(check); resolve(parseResponses(text)) })
    check()
  })
  return { socket, text: () => text, closed, answered }
}

function pause (ms: number): Promise<void> {
  return new Promise((resolve) => { setTimeout(resolve, ms) })
}

/** One line per response: status, connection header, x-pid. */
function summary (responses: RawResponse[]): string[] {
  return responses.map((r) => `${r.status} ${r.headers.connection ?? '-'} ${r.headers['x-pid'] ?? '-'}`)
}

/**
 * On each app: `keepAlive` connections that had one request answered, and as many new ones, each with
 * half a request head sent. Returns the clients.
 */
async function halfSent (t: ExecutionContext, f: Fixture, first: Listening, perApp: number): Promise<Array<{ c: Client, warm: boolean }>> {
  const clients: Array<{ c: Client, warm: boolean }> = []
  for (const port of [first.ports.fastify, first.ports.express]) {
    for (let i = 0; i < perApp * 2; i++) {
      const c = await connect(t, port)
      // Accepted by the server (not in the listen backlog, which a shutdown's close resets).
      await accepted(f, first.pid, c)
      const warm = i < perApp
      if (warm) {
        c.socket.write(`${HEAD}\r\n`)
        const [r] = await c.answered(1)
        t.is(r?.headers.connection, 'keep-alive')
      }
      c.socket.write(HEAD.slice(0, 20))
      clients.push({ c, warm })
    }
  }
  return clients
}

/** Sends the rest of each half-sent head; resolves with each client's responses once it closed. */
async function finish (clients: Array<{ c: Client, warm: boolean }>): Promise<string[][]> {
  for (const { c } of clients) c.socket.write(`${HEAD.slice(20)}\r\n`)
  return await Promise.all(clients.map(async ({ c, warm }) => summary(parseResponses(await c.closed)).slice(warm ? 1 : 0)))
}

/** Resolves once the process `pid` has accepted the client's connection (the fixture's line). */
async function accepted (f: Fixture, pid: number, c: Client): Promise<void> {
  const port = c.socket.localPort
  await f.waitFor((e) => e.event === 'connection' && e.remotePort === port && e.pid === pid)
}

function drainingOf (f: Fixture, pid: number): Promise<FixtureEvent> {
  return f.waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === pid)
}

test('shutdown: clients that sent half a request head before the drain and the rest after the idle grace are all answered with Connection: close', async (t) => {
  const f = startFixture(t, 'transfer-app')
  const first = await f.waitFor('listening') as Listening
  const clients = await halfSent(t, f, first, 4)
  process.kill(first.pid, 'SIGTERM')
  await drainingOf(f, first.pid)
  await pause(PAUSE_MS)
  const answers = await finish(clients)
  t.deepEqual(answers, clients.map(() => [`200 close ${first.pid}`]))
  const exit = await f.exited
  t.is(exit.code, 0)
})

test('reboot: clients that sent half a request head before the drain and the rest after the idle grace are all answered by the old process with Connection: close', async (t) => {
  const f = startFixture(t, 'transfer-app')
  const first = await f.waitFor('listening') as Listening
  const clients = await halfSent(t, f, first, 4)
  process.kill(first.pid, 'SIGUSR2')
  const ready = await f.waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === first.pid)
  const next = ready.other as number
  f.track(next)
  const drainedLine = f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === first.pid)
  await drainingOf(f, first.pid)
  await pause(PAUSE_MS)
  const answers = await finish(clients)
  t.deepEqual(answers, clients.map(() => [`200 close ${first.pid}`]))
  const drained = await drainedLine
  const apps = drained.apps as Array<{ kept: Record<string, number>, idleClosed: number, forced: number }>
  t.deepEqual(apps.map((a) => [a.kept['mid-request'], a.idleClosed, a.forced]), [[8, 0, 0], [8, 0, 0]])
  process.kill(next, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === next)
})

/** A connection accepted by the Fastify app of `first` that has sent nothing yet. */
async function silentConnection (t: ExecutionContext, f: Fixture, first: Listening): Promise<Client> {
  const c = await connect(t, first.ports.fastify)
  await accepted(f, first.pid, c)
  return c
}

test(`shutdown: a connection accepted before the drain that sends its first request ${PAUSE_MS} ms after the drain began is answered`, async (t) => {
  const f = startFixture(t, 'transfer-app')
  const first = await f.waitFor('listening') as Listening
  const c = await silentConnection(t, f, first)
  process.kill(first.pid, 'SIGTERM')
  await drainingOf(f, first.pid)
  await pause(PAUSE_MS)
  c.socket.write(`${HEAD}\r\n`)
  t.deepEqual(summary(parseResponses(await c.closed)), [`200 close ${first.pid}`])
  t.is((await f.exited).code, 0)
})

for (const transfer of [true, false]) {
  test(`reboot${transfer ? '' : ' (transferConnections: false)'}: a connection accepted before the drain that sends its first request ${PAUSE_MS} ms after the drain began is answered${transfer ? ' by the successor' : ''}`, async (t) => {
    const f = startFixture(t, 'transfer-app', { env: { TRANSFER: String(transfer) } })
    const first = await f.waitFor('listening') as Listening
    const c = await silentConnection(t, f, first)
    process.kill(first.pid, 'SIGUSR2')
    const ready = await f.waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === first.pid)
    const next = ready.other as number
    f.track(next)
    await drainingOf(f, first.pid)
    await pause(PAUSE_MS)
    c.socket.write(`${HEAD}\r\n`)
    if (transfer) {
      const got = summary(await c.answered(1))
      t.deepEqual(got, [`200 keep-alive ${next}`])
    } else {
      t.deepEqual(summary(parseResponses(await c.closed)), [`200 close ${first.pid}`])
    }
    process.kill(next, 'SIGTERM')
    await f.waitFor((e) => e.event === 'exit' && e.pid === next)
  })
}

test('reboot: a 1.5 s request pipelined behind one in flight on a connection that waits to move completes (no keep-alive timer under it)', async (t) => {
  // Fastify's keep-alive timeout far shorter than the request: a timer armed under it would cut it.
  const f = startFixture(t, 'transfer-app', { env: { KEEP_ALIVE: '300' } })
  const first = await f.waitFor('listening') as Listening
  const c = await connect(t, first.ports.fastify)
  // In flight when the drain starts: the connection is to move once it is answered.
  c.socket.write('GET /held HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await accepted(f, first.pid, c)
  process.kill(first.pid, 'SIGUSR2')
  const ready = await f.waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === first.pid)
  const next = ready.other as number
  f.track(next)
  await drainingOf(f, first.pid)
  // Pipelined behind it: it reaches the old process's handler, which then answers the first one.
  c.socket.write('GET /slow?ms=1500 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  const responses = await c.answered(2)
  t.deepEqual(summary(responses), [`200 keep-alive ${first.pid}`, `200 close ${first.pid}`])
  t.regex(responses[1]?.body ?? '', /"slow":true/)
  process.kill(next, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === next)
})
