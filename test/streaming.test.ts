// Runs in the test process: long responses (SSE, a chunked download) end by themselves on the app's
// drain signal, in a real shutdown and a real reboot of fixture processes (test/fixtures/stream-app.ts);
// and, in this process, what the signal is (one per app, shared, made on first read).
import { setMaxListeners } from 'node:events'
import { setImmediate as nextTurn } from 'node:timers/promises'
import http from 'node:http'
import test, { type ExecutionContext } from 'ava'
import express from 'express'
import Fastify from 'fastify'
import graceful, { createGraceful, DrainStartedError, exitCodes, expressGraceful } from '../index'
import { EventSourceClient, type SseEvent } from './helpers/event-source'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { silent } from './helpers/servers'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }
interface Data { pid: number, id: number, last?: boolean }

const data = (e: SseEvent): Data => JSON.parse(e.data) as Data

async function start (t: ExecutionContext, kind: string): Promise<{ f: Fixture, first: Listening, agent: http.Agent }> {
  const f = startFixture(t, 'stream-app', { env: { KIND: kind, TIMEOUT: '3000', RETRY_MS: '200' } })
  const first = await f.waitFor('listening') as Listening
  // Keep-alive, as a browser: a reconnect may reuse the connection (then handed to a successor).
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  return { f, first, agent }
}

for (const kind of ['fastify', 'express']) {
  test(`${kind}: on shutdown an SSE stream ends on request's drainSignal with a last event carrying retry:, and the process exits 0`, async (t) => {
    const { f, first, agent } = await start(t, kind)
    const client = new EventSourceClient(`http://127.0.0.1:${first.port}/events`, agent, false)
    t.teardown(() => { client.close() })
    await client.waitFor((e) => data(e).id >= 3, 'id 3')
    process.kill(first.pid, 'SIGTERM')
    const last = await client.waitFor((e) => data(e).last === true, 'with last: true')
    const exit = await f.exited
    t.is(exit.code, exitCodes.clean, `exit ${String(exit.code)} (75: a stream was cut at the deadline); stderr: ${f.stderr()}`)
    t.is(last.retry, 200)
    t.is(data(last).pid, first.pid)
    t.deepEqual(client.errors.map(String), [], 'the stream was ended, not cut')
    t.is(client.ends, 1)
    t.is(client.events[client.events.length - 1], last, 'the last event is the last thing received')
    t.truthy(f.lines.find((e) => e.event === 'stream-ended' && e.route === 'events'))
  })

  test(`${kind}: in a reboot an EventSource client reconnects with Last-Event-ID to the successor, with no error`, async (t) => {
    const { f, first, agent } = await start(t, kind)
    const client = new EventSourceClient(`http://127.0.0.1:${first.port}/events`, agent)
    t.teardown(() => { client.close() })
    await client.waitFor((e) => data(e).id >= 3, 'id 3')
    process.kill(first.pid, 'SIGUSR2')
    const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid) as Listening
    f.track(next.pid)
    t.is(next.port, first.port)
    const last = await client.waitFor((e) => data(e).last === true && data(e).pid === first.pid, 'last from the old process')
    const resumed = await client.waitFor((e) => data(e).pid === next.pid, 'from the successor')
    t.is(data(resumed).id, data(last).id + 1, 'the successor resumed after Last-Event-ID')
    t.is(resumed.connection, 2, 'one reconnect')
    await client.waitFor((e) => data(e).pid === next.pid && data(e).id >= data(resumed).id + 3, 'three more from the successor')
    const exit = await f.exited
    t.is(exit.code, exitCodes.clean, `the old process exited ${String(exit.code)} (75: its stream was cut at the deadline)`)
    t.deepEqual(client.errors.map(String), [], 'no error on the client')
    t.deepEqual([...new Set(client.events.map((e) => data(e).pid))], [first.pid, next.pid])
    client.close()
    process.kill(next.pid, 'SIGTERM')
    await f.closed
  })
}

test('http: on shutdown a chunked download ends on graceful.drainSignal with its last line, complete, and the process exits 0', async (t) => {
  const { f, first } = await start(t, 'http')
  const lines: string[] = []
  let outcome: Promise<string> | undefined
  const flowing = new Promise<void>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: first.port, path: '/download', agent: false }, (res) => {
      outcome = new Promise((done) => {
        res.on('end', () => { done('ended') })
        res.on('error', (err) => { done(`cut: ${err.message}`) })
        res.on('close', () => { if (!res.complete) done('cut') })
      })
      let buffer = ''
      res.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk
        const parts = buffer.split('\n')
        buffer = parts.pop() ?? ''
        lines.push(...parts)
        if (lines.length >= 3) resolve()
      })
    })
    req.on('error', reject)
    t.teardown(() => { req.destroy() })
  })
  await flowing
  process.kill(first.pid, 'SIGTERM')
  const exit = await f.exited
  t.is(await outcome, 'ended', 'the response ended cleanly (its last chunk arrived)')
  t.is(exit.code, exitCodes.clean, `exit ${String(exit.code)} (75: the download was cut at the deadline)`)
  const parsed = lines.map((l) => JSON.parse(l) as { n?: number, end?: string, next?: number })
  const tail = parsed[parsed.length - 1]
  t.is(tail?.end, 'draining')
  t.deepEqual(parsed.slice(0, -1).map((l) => l.n), Array.from({ length: tail?.next ?? -1 }, (_, i) => i), 'every line before the last, in order')
})

test('fastify: request.drainSignal is the app\'s one signal (app.drainSignal), unlimited listeners; app.close() aborts it with a DrainStartedError', async (t) => {
  const app = Fastify()
  await app.register(graceful, { signals: false, exit: false, logger: silent })
  const seen: AbortSignal[] = []
  app.get('/', async (request) => {
    seen.push(request.drainSignal)
    return 'ok'
  })
  await app.ready()
  await app.inject('/')
  await app.inject('/')
  t.is(seen[0], app.drainSignal)
  t.is(seen[1], app.drainSignal, 'the same signal for every request')
  // Every long response of the app listens to it: no leak warning past Node's 10 listeners. The
  // control, a signal limited to EventTarget's default of 10 (Node 20's default for an AbortSignal;
  // Node 22 and later leave AbortSignals unlimited), gets one.
  const warnings: string[] = []
  const onWarning = (w: Error): void => { warnings.push(w.name) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  const control = new AbortController()
  setMaxListeners(10, control.signal)
  for (let i = 0; i < 20; i++) app.drainSignal.addEventListener('abort', () => {})
  await nextTurn()
  t.deepEqual(warnings, [], 'no warning for 20 listeners on the drain signal')
  for (let i = 0; i < 20; i++) control.signal.addEventListener('abort', () => {})
  await nextTurn()
  t.deepEqual(warnings, ['MaxListenersExceededWarning'], 'the control warns')
  t.false(app.drainSignal.aborted)
  let aborted = 0
  app.drainSignal.addEventListener('abort', () => { aborted++ })
  await app.close()
  t.is(aborted, 1)
  const reason = app.drainSignal.reason as DrainStartedError
  t.true(reason instanceof DrainStartedError)
  t.is(reason.code, 'ERR_GRACEFUL_DRAINING')
  t.is(reason.reason, 'close')
  t.regex(reason.message, /fastify app is draining \(close\)/)
})

test('express: req.drainSignal, app.drainSignal and app.graceful.drainSignal are one signal, aborted by the app\'s close()', async (t) => {
  const app = expressGraceful(express(), { signals: false, exit: false, logger: silent })
  const seen: AbortSignal[] = []
  app.get('/', (req, res) => {
    seen.push(req.drainSignal)
    res.send('ok')
  })
  const server = app.listen(0, '127.0.0.1')
  t.teardown(() => { server.close() })
  await new Promise<void>((resolve) => { server.once('listening', resolve) })
  const port = (server.address() as { port: number }).port
  for (let i = 0; i < 2; i++) {
    await new Promise<void>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => { res.resume().on('end', resolve) }).on('error', reject)
    })
  }
  t.is(seen.length, 2)
  t.is(seen[0], app.drainSignal)
  t.is(seen[1], app.drainSignal)
  t.is(app.graceful.drainSignal, app.drainSignal)
  t.false(app.drainSignal.aborted)
  await app.graceful.close(1000)
  t.true(app.drainSignal.aborted)
  t.is((app.drainSignal.reason as DrainStartedError).reason, 'close')
})

test('createGraceful: drainSignal is made on first read; read after the drain started, it is already aborted', async (t) => {
  const late = createGraceful({ signals: false, exit: false, logger: silent })
  late.attach(http.createServer())
  await late.close(1000)
  t.true(late.drainSignal.aborted, 'read once the drain started')
  t.true(late.drainSignal.reason instanceof DrainStartedError)
  t.is(late.drainSignal, late.drainSignal, 'the same object on every read')

  const early = createGraceful({ signals: false, exit: false, logger: silent })
  const signal = early.drainSignal
  t.false(signal.aborted)
  await early.close(1000)
  t.true(signal.aborted)
  t.is(early.drainSignal, signal)
})
