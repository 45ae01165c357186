// Runs in the test process: signals, crashes and exit codes of a real Fastify process
// (test/fixtures/signal-app.ts), and in-process checks that every process listener is removed again.
import { core } from '../lib/lifecycle'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import http from 'node:http'
import { once } from 'node:events'
import Fastify from 'fastify'
import express from 'express'
import graceful, { expressGraceful, exitCodes, lifecycle } from '../index'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { fetchOutcome, type Outcome } from './fixtures/signal-client'

async function start (t: ExecutionContext, env: Record<string, string> = {}): Promise<{ f: Fixture, port: number }> {
  const f = startFixture(t, 'signal-app', { env })
  const listening = await f.waitFor('listening')
  return { f, port: listening.port as number }
}

/**
 * Starts GET /slow?hold=... on a keep-alive connection (so that a `Connection: close` reply is the
 * server's doing, not the client's) and resolves once the fixture says the handler is running, with
 * the request's outcome still pending (wrapped: an async function would otherwise wait for it).
 * `drain`: the handler answers only once the drain has started (released by a finalizer of the
 * fixture); `never`: it never answers, so the request can only be cut.
 */
async function inFlight (t: ExecutionContext, f: Fixture, port: number, hold: 'drain' | 'never'): Promise<{ outcome: Promise<Outcome> }> {
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  const seen = f.lines.filter((e) => e.event === 'request').length
  const outcome = fetchOutcome(port, `/slow?hold=${hold}`, agent)
  await f.waitFor((e) => e.event === 'request' && f.lines.filter((x) => x.event === 'request').indexOf(e) >= seen)
  return { outcome }
}

function ok200 (t: ExecutionContext, o: Outcome): void {
  if (!o.ok) {
    t.fail(`request failed: ${o.error.code ?? ''} ${o.error.message}`)
    return
  }
  t.is(o.reply.status, 200)
}

/**
 * The held request was answered during the drain: 200 with `Connection: close` (the drain marks
 * every response), and the fixture answered it after the drain had started.
 */
async function answeredDuringDrain (t: ExecutionContext, f: Fixture, o: Outcome): Promise<void> {
  ok200(t, o)
  if (o.ok) t.is(o.reply.headers.connection, 'close', 'told to close: the answer was produced while draining')
  // stdout and the HTTP socket are two channels: wait for the line before comparing positions.
  await f.waitFor('responded')
  const at = (match: (e: FixtureEvent) => boolean): number => f.lines.findIndex(match)
  const draining = at((e) => e.event === 'state' && e.state === 'draining')
  const released = at((e) => e.event === 'released')
  const responded = at((e) => e.event === 'responded')
  t.true(draining >= 0 && released > draining && responded > released,
    `the drain started (line ${draining}) and released the handler (line ${released}) before it answered (line ${responded})`)
  t.like(f.lines[released], { listening: false }, 'released once the listener was closed')
}

/** Bounds a wait on the process (never a sleep: resolves as soon as it exits). */
function within<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: not within ${ms} ms`)) }, ms) })
  return Promise.race([p, late]).finally(() => { clearTimeout(timer) })
}

// ---------------------------------------------------------------------------------------------
// Fixture processes
// ---------------------------------------------------------------------------------------------

test('SIGTERM: the in-flight slow request completes with 200, finalizers run, exit 0', async (t) => {
  const { f, port } = await start(t)
  const { outcome: slow } = await inFlight(t, f, port, 'drain')
  f.child.kill('SIGTERM')
  await answeredDuringDrain(t, f, await slow)
  t.deepEqual(await f.exited, { code: 0, signal: null })
  t.like(await f.waitFor('finalizer'), { name: 'log', reason: 'shutdown', trigger: 'SIGTERM' })
  t.like(await f.waitFor('exit'), { code: 0 })
})

test('SIGINT also drains: the slow request completes, exit 0', async (t) => {
  const { f, port } = await start(t)
  const { outcome: slow } = await inFlight(t, f, port, 'drain')
  f.child.kill('SIGINT')
  await answeredDuringDrain(t, f, await slow)
  t.deepEqual(await f.exited, { code: 0, signal: null })
  t.like(await f.waitFor('finalizer'), { trigger: 'SIGINT', reason: 'shutdown' })
})

test('SIGTERM with only an idle keep-alive connection open exits 0 without waiting for the keep-alive timeout', async (t) => {
  const { f, port } = await start(t)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { agent.destroy() })
  const freed = once(agent, 'free')
  const first = await fetchOutcome(port, '/slow?ms=0', agent)
  ok200(t, first)
  await freed
  t.is(Object.values(agent.freeSockets).flat().length, 1, 'one idle keep-alive socket is open')
  f.child.kill('SIGTERM')
  t.deepEqual(await within(f.exited, 10_000, 'exit'), { code: 0, signal: null })
})

test('a second SIGTERM during the drain exits at once with 143, while the first drain still waits on a slow request', async (t) => {
  const { f, port } = await start(t, { TIMEOUT: '30000' })
  const { outcome: slow } = await inFlight(t, f, port, 'never')
  f.child.kill('SIGTERM')
  await f.waitFor((e) => e.event === 'state' && e.state === 'draining')
  f.child.kill('SIGTERM')
  t.deepEqual(await within(f.exited, 10_000, 'exit after the second SIGTERM'), { code: 143, signal: null })
  const o = await slow
  t.false(o.ok, 'the slow request was cut, it had not completed')
  t.false(f.lines.some((e) => e.event === 'responded'))
  t.false(f.lines.some((e) => e.event === 'state' && e.state === 'stopped'), 'the first drain never finished')
})

// The case of `systemctl stop` right after `systemctl reload`, or of a SIGTERM while an admin or code
// shutdown drains: the first shutdown signal joins the drain under way; it is not a "second" signal.
for (const how of ['code', 'admin'] as const) {
  test(`a first SIGTERM during a drain started by ${how} joins it: the request in flight completes with 200, exit 0`, async (t) => {
    const { f, port } = await start(t, { OBSERVE: '1', ADMIN: 'true', TIMEOUT: '60000' })
    const seen = f.lines.filter((e) => e.event === 'request').length
    const hold = fetchOutcome(port, '/hold')
    await f.waitFor((e) => e.event === 'request' && e.path === '/hold' && f.lines.filter((x) => x.event === 'request').indexOf(e) >= seen)
    const started = await fetchOutcome(port, how === 'code' ? '/drain' : '/shutdown?second=60')
    t.true(started.ok && started.reply.status === (how === 'code' ? 200 : 202), JSON.stringify(started))
    await f.waitFor((e) => e.event === 'state' && e.state === 'draining')
    let exited = false
    void f.exited.then(() => { exited = true })
    f.child.kill('SIGTERM')
    // Printed by the fixture's own SIGTERM listener, which runs after the package's: had the package
    // exited at once (the bug), this line would never come and the wait would fail.
    await f.waitFor((e) => e.event === 'signal' && e.signal === 'SIGTERM')
    t.false(exited, 'the process is still there after the SIGTERM')
    t.false(f.lines.some((e) => e.event === 'responded'), 'the request is still in flight')
    f.child.kill('SIGHUP') // releases /hold
    const o = await hold
    ok200(t, o)
    const exit = await within(f.exited, 20_000, 'exit after the drain')
    t.deepEqual(exit, { code: exitCodes.clean, signal: null })
    t.like(await f.waitFor('finalizer'), { name: 'log', reason: 'shutdown', trigger: how })
    t.regex(f.stderr(), /SIGTERM received during a drain \(shutdown, started by (code|admin)\): joining it/)
  })
}

test('SIGINT then SIGINT exits 130', async (t) => {
  const { f, port } = await start(t, { TIMEOUT: '30000' })
  const { outcome: slow } = await inFlight(t, f, port, 'never')
  f.child.kill('SIGINT')
  await f.waitFor((e) => e.event === 'state' && e.state === 'draining')
  f.child.kill('SIGINT')
  t.deepEqual(await within(f.exited, 10_000, 'exit'), { code: 130, signal: null })
  t.false((await slow).ok)
})

test('an uncaught exception thrown from a timer in a route drains gracefully (slow request completes) and exits 1', async (t) => {
  const { f, port } = await start(t)
  const { outcome: slow } = await inFlight(t, f, port, 'drain')
  const crash = await fetchOutcome(port, '/crash')
  ok200(t, crash)
  await answeredDuringDrain(t, f, await slow)
  t.deepEqual(await f.exited, { code: 1, signal: null })
  t.like(await f.waitFor('finalizer'), { reason: 'crash', trigger: 'uncaughtException' })
  t.regex(f.stderr(), /boom from a timer/)
})

test('an unhandled rejection drains too and exits 1', async (t) => {
  const { f, port } = await start(t)
  const { outcome: slow } = await inFlight(t, f, port, 'drain')
  ok200(t, await fetchOutcome(port, '/reject'))
  await answeredDuringDrain(t, f, await slow)
  t.deepEqual(await f.exited, { code: 1, signal: null })
  t.like(await f.waitFor('finalizer'), { reason: 'crash', trigger: 'unhandledRejection' })
})

test('a throwing finalizer: exit 76', async (t) => {
  const { f, port } = await start(t, { FINALIZER: 'throw' })
  const { outcome: slow } = await inFlight(t, f, port, 'drain')
  f.child.kill('SIGTERM')
  await answeredDuringDrain(t, f, await slow)
  t.deepEqual(await f.exited, { code: 76, signal: null })
  t.like(await f.waitFor((e) => e.event === 'finalizer' && e.name === 'throws'), { name: 'throws' })
})

test('a finalizer hanging past its own timeout is aborted: exit 76', async (t) => {
  const { f } = await start(t, { FINALIZER: 'hang', HANG_TIMEOUT: '200' })
  f.child.kill('SIGTERM')
  t.deepEqual(await within(f.exited, 10_000, 'exit'), { code: 76, signal: null })
  t.like(await f.waitFor('aborted'), { name: 'hangs' })
})

// Regression guard: during a process-wide shutdown every timer of the package is unref'd and, once
// the listener is closed, nothing may keep the event loop alive. A finalizer waiting on a bare
// promise used to let the process end naturally with code 0: its timeout never fired, its signal was
// never aborted and the exit decision (76) was never taken. The lifecycle now holds the process
// alive while it drains (fixed in lib/os.ts + lib/lifecycle.ts, 75443cd).
test('a finalizer hanging on a bare promise still times out: exit 76 (not a natural exit 0)', async (t) => {
  const { f } = await start(t, { FINALIZER: 'hang-promise', HANG_TIMEOUT: '200' })
  f.child.kill('SIGTERM')
  const exit = await within(f.exited, 10_000, 'exit')
  t.true(f.lines.some((e) => e.event === 'aborted'), 'the finalizer signal was aborted')
  t.deepEqual(exit, { code: 76, signal: null })
})

test('a forced drain (a request longer than the timeout) exits 75 and cuts the request', async (t) => {
  const { f, port } = await start(t, { TIMEOUT: '300' })
  const { outcome: slow } = await inFlight(t, f, port, 'never')
  f.child.kill('SIGTERM')
  t.deepEqual(await within(f.exited, 10_000, 'exit'), { code: 75, signal: null })
  t.false((await slow).ok)
  t.false(f.lines.some((e) => e.event === 'responded'))
})

test('signals: false leaves SIGTERM to Node: the process is killed by the signal (code null)', async (t) => {
  const { f, port } = await start(t, { SIGNALS: 'false' })
  const { outcome: slow } = await inFlight(t, f, port, 'never')
  f.child.kill('SIGTERM')
  t.deepEqual(await within(f.exited, 10_000, 'exit'), { code: null, signal: 'SIGTERM' })
  t.false((await slow).ok)
  t.false(f.lines.some((e) => e.event === 'state'), 'no drain started')
  t.false(f.lines.some((e) => e.event === 'exit'), 'no exit handler ran')
})

// ---------------------------------------------------------------------------------------------
// In process: every listener the package adds is removed again (serial: the lifecycle is global)
// ---------------------------------------------------------------------------------------------

const EVENTS = ['SIGTERM', 'SIGINT', 'SIGUSR2', 'SIGHUP', 'uncaughtException', 'unhandledRejection'] as const

function counts (): Record<typeof EVENTS[number], number> {
  return Object.fromEntries(EVENTS.map((e) => [e, process.listenerCount(e)])) as Record<typeof EVENTS[number], number>
}

const silent = { info: () => {}, warn: () => {}, error: () => {} }

test.serial('in process: a Fastify app adds signal and crash listeners and app.close() removes every one', async (t) => {
  const before = counts()
  const appsBefore = core().apps.length
  const app = Fastify()
  await app.register(graceful, { exit: false })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const during = counts()
  for (const e of ['SIGTERM', 'SIGINT', 'SIGUSR2', 'uncaughtException', 'unhandledRejection'] as const) {
    t.is(during[e], before[e] + 1, `${e} while running`)
  }
  t.is(during.SIGHUP, before.SIGHUP)
  t.is(core().apps.length, appsBefore + 1)
  await app.close()
  t.deepEqual(counts(), before)
  t.is(core().apps.length, appsBefore)
})

test.serial('in process: app.shutdown() with exit: false removes every listener too', async (t) => {
  const before = counts()
  const app = Fastify()
  await app.register(graceful, { exit: false, signals: { SIGHUP: 'shutdown', SIGTERM: false } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.is(process.listenerCount('SIGHUP'), before.SIGHUP + 1)
  t.is(process.listenerCount('SIGTERM'), before.SIGTERM, 'removed from the map with false')
  t.is(process.listenerCount('SIGINT'), before.SIGINT + 1, 'kept from the defaults')
  const result = await app.shutdown(2_000)
  t.is(result.code, 0)
  t.deepEqual(counts(), before)
  t.is(lifecycle().state, 'stopped')
})

test.serial('in process: two apps share one listener per signal; the last one to close removes it', async (t) => {
  const before = counts()
  const a = Fastify()
  await a.register(graceful, { exit: false })
  const b = expressGraceful(express(), { exit: false, logger: silent })
  t.is(process.listenerCount('SIGTERM'), before.SIGTERM + 1)
  t.is(process.listenerCount('uncaughtException'), before.uncaughtException + 1)
  await a.close()
  t.is(process.listenerCount('SIGTERM'), before.SIGTERM + 1, 'the Express app still needs it')
  await b.graceful.close()
  t.deepEqual(counts(), before)
})

test.serial('in process: signals: false adds no process listener at all', async (t) => {
  const before = counts()
  const app = Fastify()
  await app.register(graceful, { exit: false, signals: false })
  await app.ready()
  t.deepEqual(counts(), before)
  await app.close()
  t.deepEqual(counts(), before)
})
