// Runs in the test process: the start graph (lib/startup/graph.ts) with a fake process seam: order,
// parallelism, retries with backoff, per-attempt timeouts, required and optional failures, validation.
import test from 'ava'
import {
  DEFAULT_STARTUP_TIMEOUT_MS, MAX_BACKOFF_MS, StartupGraph, type StartupContext, type StartupOptions, type StartupService
} from '../lib/startup/graph'
import { GracefulError, InvalidOptionError, StartupError, StartupGraphError, StartupTimeoutError } from '../lib/errors'
import { MAX_MS } from '../lib/limits'
import { FakeSeam, deferred, memoryLogger, settle } from './fixtures/finalizer-fake-seam'

/** The fake seam, recording the ms of every timer the graph asks for. */
function spySeam (): { seam: FakeSeam, timers: number[], clock: Pick<FakeSeam, 'now' | 'timer'> } {
  const seam = new FakeSeam()
  const timers: number[] = []
  const clock = {
    now: () => seam.now(),
    timer: (ms: number, fn: () => void) => { timers.push(ms); return seam.timer(ms, fn) }
  }
  return { seam, timers, clock }
}

/** A service that records `<name>:start` and `<name>:end`, and waits on `gate` in between. */
function step (log: string[], name: string, gate?: Promise<unknown>): StartupService {
  return async () => {
    log.push(`${name}:start`)
    if (gate !== undefined) await gate
    log.push(`${name}:end`)
  }
}

/** A service whose attempts fail with these errors in turn (thrown, rejected, thrown...), then succeeds. */
function flaky (errors: unknown[], seen: StartupContext[] = []): StartupService {
  return (ctx) => {
    seen.push(ctx)
    const error = errors[ctx.attempt - 1]
    if (error === undefined) return Promise.resolve()
    if (ctx.attempt % 2 === 1) throw error
    return Promise.reject(error)
  }
}

function state (g: StartupGraph, name: string): string | undefined {
  return g.status().services.find((s) => s.name === name)?.state
}

// ---------------------------------------------------------------------------------------------
// Order and parallelism
// ---------------------------------------------------------------------------------------------

test('services start in dependency order; independent ones start together, in the same tick', async (t) => {
  const { seam } = spySeam()
  const log: string[] = []
  const g = new StartupGraph()
  const gates = { a: deferred(), b: deferred(), c: deferred() }
  // Registered out of order on purpose: 'c' names 'a' and 'b' before they exist.
  g.add(step(log, 'd'), { name: 'd', after: ['c'] })
  g.add(step(log, 'c', gates.c.promise), { name: 'c', after: ['a', 'b'] })
  g.add(step(log, 'a', gates.a.promise), { name: 'a' })
  g.add(step(log, 'b', gates.b.promise), { name: 'b' })
  let done = false
  const run = g.run(seam).then(() => { done = true })
  t.deepEqual(log, ['a:start', 'b:start'], 'both independent services were called synchronously by run()')
  gates.a.resolve()
  await settle()
  t.deepEqual(log, ['a:start', 'b:start', 'a:end'], '"c" waits for "b" too')
  t.is(state(g, 'c'), 'pending')
  gates.b.resolve()
  await settle()
  t.deepEqual(log.slice(3), ['b:end', 'c:start'])
  t.false(done)
  gates.c.resolve()
  await run
  t.deepEqual(log.slice(5), ['c:end', 'd:start', 'd:end'])
  t.deepEqual(g.status().services.map((s) => [s.name, s.state, s.attempts]), [['d', 'started', 1], ['c', 'started', 1], ['a', 'started', 1], ['b', 'started', 1]])
  t.deepEqual(seam.pending, [], 'every attempt timer was cancelled')
})

test('each attempt gets an unaborted signal, its attempt number and its deadline on the seam clock', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  const seen: StartupContext[] = []
  g.add(flaky([new Error('once')], seen), { name: 'db', retries: 1, timeout: 750 })
  const start = seam.now()
  const run = g.run(seam)
  await seam.advance(100)
  await run
  t.deepEqual(seen.map((c) => [c.attempt, c.deadline, c.signal.aborted]), [[1, start + 750, false], [2, start + 100 + 750, false]])
  t.true(seen.every((c) => c.signal instanceof AbortSignal))
  t.not(seen[0]!.signal, seen[1]!.signal, 'a signal per attempt')
})

// ---------------------------------------------------------------------------------------------
// Retries, backoff, timeouts
// ---------------------------------------------------------------------------------------------

test('a failing service is retried after 100, 200 and 400 ms, and logged at each failed attempt and once started', async (t) => {
  const { seam, timers, clock } = spySeam()
  const log = memoryLogger()
  const g = new StartupGraph()
  const errors = [new Error('e1'), new Error('e2'), new Error('e3')]
  const seen: StartupContext[] = []
  g.add(flaky(errors, seen), { name: 'db', retries: 3, timeout: 5000 })
  const run = g.run(clock, log)
  await settle()
  t.is(seen.length, 1)
  t.deepEqual(seam.pending, [{ ms: 100 }], 'the attempt timer is gone, the backoff timer waits')
  await seam.advance(99)
  t.is(seen.length, 1, 'no retry before the backoff passed')
  await seam.advance(1)
  t.is(seen.length, 2)
  await seam.advance(200)
  t.is(seen.length, 3)
  await seam.advance(399)
  t.is(seen.length, 3)
  await seam.advance(1)
  await run
  t.is(seen.length, 4)
  t.deepEqual(timers, [5000, 100, 5000, 200, 5000, 400, 5000], 'attempt timeout, backoff, attempt timeout, ...')
  t.deepEqual(log.lines.filter((l) => l.level === 'warn').map((l) => l.msg), [
    'graceful-reboot: service "db" failed to start (attempt 1 of 4): e1; retrying in 100 ms',
    'graceful-reboot: service "db" failed to start (attempt 2 of 4): e2; retrying in 200 ms',
    'graceful-reboot: service "db" failed to start (attempt 3 of 4): e3; retrying in 400 ms'
  ])
  t.like(log.lines[0]!.obj, { service: 'db', attempt: 1, err: errors[0], retryInMs: 100 })
  t.deepEqual(log.lines.filter((l) => l.level === 'info').map((l) => l.msg), ['graceful-reboot: started service "db" in 700 ms (attempt 4)'])
  const [db] = g.status().services
  t.deepEqual(db, { name: 'db', required: true, state: 'started', attempts: 4, ms: 700 }, 'the last error is cleared once started')
})

test('the process is held alive while a service starts, its waits between attempts included (the timers never hold it), and released once it started or failed', async (t) => {
  const { seam } = spySeam()
  let held = 0
  const clock = { now: () => seam.now(), timer: (ms: number, fn: () => void) => seam.timer(ms, fn), hold: () => { held++; return () => { held-- } } }
  const g = new StartupGraph()
  g.add(flaky([new Error('e1')], []), { name: 'db', retries: 1, backoff: 100 })
  g.add(async () => { throw new Error('down') }, { name: 'cache', required: false })
  const run = g.run(clock)
  await settle()
  t.is(held, 1, 'db waits 100 ms before its second attempt: held (cache failed and let go)')
  await seam.advance(100)
  await run
  t.is(held, 0, 'released once db started')
})

test('the wait between attempts doubles up to MAX_BACKOFF_MS; a required service failing every attempt rejects run()', async (t) => {
  const { seam, timers, clock } = spySeam()
  const g = new StartupGraph()
  const last = new Error('still down')
  g.add(flaky([new Error('a'), new Error('b'), new Error('c'), new Error('d'), last]), { name: 'db', retries: 4, backoff: 3000, timeout: 1 })
  const run = g.run(clock)
  run.catch(() => {})
  await seam.advance(3000 + 6000 + 10_000 + 10_000)
  const err = await t.throwsAsync(run, { instanceOf: StartupError })
  t.deepEqual(timers.filter((ms) => ms !== 1), [3000, 6000, MAX_BACKOFF_MS, MAX_BACKOFF_MS])
  t.is(MAX_BACKOFF_MS, 10_000)
  t.is(err.message, 'required service "db" failed after 5 attempts: still down; the app does not announce ready')
  t.is(err.cause, last)
})

test('an attempt past its timeout is aborted with a StartupTimeoutError, counted as failed and retried; its late success is ignored', async (t) => {
  const { seam } = spySeam()
  const log = memoryLogger()
  const g = new StartupGraph()
  const late = deferred()
  const signals: AbortSignal[] = []
  g.add((ctx) => {
    signals.push(ctx.signal)
    return ctx.attempt === 1 ? late.promise : undefined
  }, { name: 'db', retries: 1, timeout: 500 })
  let done = false
  const run = g.run(seam, log).then(() => { done = true })
  await seam.advance(499)
  t.false(signals[0]!.aborted)
  await seam.advance(1)
  t.true(signals[0]!.aborted)
  const reason = signals[0]!.reason as unknown
  t.true(reason instanceof StartupTimeoutError)
  t.is((reason as GracefulError).code, 'ERR_GRACEFUL_STARTUP_TIMEOUT')
  t.is((reason as Error).message, 'service "db" did not start within 500 ms (attempt 1)')
  late.resolve()
  await settle()
  t.false(done, 'the late resolution of the timed-out attempt does not start the service')
  t.is(state(g, 'db'), 'starting')
  t.is(g.status().services[0]!.error, reason)
  t.is(signals.length, 1)
  await seam.advance(100)
  await run
  t.is(signals.length, 2)
  t.false(signals[1]!.aborted)
  t.like(g.status().services[0], { state: 'started', attempts: 2, ms: 600 })
  t.is(log.lines[0]!.msg, 'graceful-reboot: service "db" failed to start (attempt 1 of 2): service "db" did not start within 500 ms (attempt 1); retrying in 100 ms')
})

test('the default attempt timeout is DEFAULT_STARTUP_TIMEOUT_MS, and without retries a timed-out service fails', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  const late = deferred()
  g.add(() => late.promise, { name: 'hangs' })
  const run = g.run(seam)
  run.catch(() => {})
  await seam.advance(DEFAULT_STARTUP_TIMEOUT_MS - 1)
  t.is(state(g, 'hangs'), 'starting')
  await seam.advance(1)
  const err = await t.throwsAsync(run, { instanceOf: StartupError })
  t.is(err.message, 'required service "hangs" failed after 1 attempt: service "hangs" did not start within 10000 ms (attempt 1); the app does not announce ready')
  t.true(err.cause instanceof StartupTimeoutError)
  late.resolve()
  await settle()
  t.is(state(g, 'hangs'), 'failed', 'a late success does not undo the failure')
})

// ---------------------------------------------------------------------------------------------
// Required and optional failures
// ---------------------------------------------------------------------------------------------

test('a failed required service rejects run() with a StartupError; dependents are skipped, independent ones go on in the background', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  const last = new Error('connect ECONNREFUSED 127.0.0.1:1')
  const slow = deferred()
  const log: string[] = []
  g.add(flaky([new Error('first'), new Error('second'), last]), { name: 'db', retries: 2, backoff: 10 })
  g.add(step(log, 'api'), { name: 'api', after: ['db'] })
  g.add(step(log, 'queue', slow.promise), { name: 'queue' })
  const run = g.run(seam)
  run.catch(() => {})
  t.is(g.status().state, 'starting')
  await seam.advance(10 + 20)
  const err = await t.throwsAsync(run, { instanceOf: StartupError })
  t.is(err.code, 'ERR_GRACEFUL_STARTUP_FAILED')
  t.is(err.service, 'db')
  t.is(err.message, 'required service "db" failed after 3 attempts: connect ECONNREFUSED 127.0.0.1:1; the app does not announce ready')
  t.is(err.cause, last)
  const s = g.status()
  t.is(s.state, 'failed')
  t.deepEqual(s.services.map((o) => [o.name, o.state, o.attempts]), [['db', 'failed', 3], ['api', 'skipped', 0], ['queue', 'starting', 1]])
  t.is(s.services[0]!.error, last)
  t.deepEqual(log, ['queue:start'], '"api" never ran; "queue" was not cancelled')
  let settled = false
  void g.settled().then(() => { settled = true })
  await settle()
  t.false(settled, '"queue" is still starting')
  slow.resolve()
  await g.settled()
  t.is(state(g, 'queue'), 'started')
  t.is(g.status().state, 'failed', 'stays failed')
})

test('an optional service that fails does not reject run(); its dependents are skipped, both logged as errors', async (t) => {
  const { seam } = spySeam()
  const log = memoryLogger()
  const g = new StartupGraph()
  const ran: string[] = []
  const boom = new Error('cache down')
  g.add(() => { ran.push('db') }, { name: 'db' })
  g.add(() => { throw boom }, { name: 'cache', required: false })
  g.add(() => { ran.push('warm') }, { name: 'warm', after: ['cache'], required: false })
  g.add(() => { ran.push('more') }, { name: 'more', after: ['warm'], required: false })
  await g.run(seam, log)
  await g.settled()
  t.deepEqual(ran, ['db'])
  const s = g.status()
  t.is(s.state, 'started')
  t.deepEqual(s.services.map((o) => [o.name, o.required, o.state]), [['db', true, 'started'], ['cache', false, 'failed'], ['warm', false, 'skipped'], ['more', false, 'skipped']])
  t.is(s.services[1]!.error, boom)
  t.deepEqual(log.lines.filter((l) => l.level === 'error').map((l) => l.msg), [
    'graceful-reboot: optional service "cache" failed after 1 attempt: cache down; the app goes on without it',
    'graceful-reboot: optional service "warm" skipped: its dependency "cache" failed',
    'graceful-reboot: optional service "more" skipped: its dependency "warm" was skipped'
  ])
  t.deepEqual(log.lines.filter((l) => l.level === 'warn').map((l) => l.msg), ['graceful-reboot: service "cache" failed to start (attempt 1 of 1): cache down; no retry left'])
})

test('run() resolves once the required services started, while optional ones still start', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  const gate = deferred()
  g.add(() => gate.promise, { name: 'warm', required: false })
  g.add(() => {}, { name: 'db' })
  await g.run(seam)
  t.is(g.status().state, 'started')
  t.is(state(g, 'warm'), 'starting')
  let settled = false
  void g.settled().then(() => { settled = true })
  await settle()
  t.false(settled)
  gate.resolve()
  await settle()
  t.true(settled)
  t.is(state(g, 'warm'), 'started')
})

test('a required service after a failed optional one is skipped, and run() rejects naming both', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  const boom = new Error('no cache')
  let apiRan = false
  g.add(() => Promise.reject(boom), { name: 'cache', required: false })
  g.add(() => { apiRan = true }, { name: 'api', after: ['cache'] })
  const err = await t.throwsAsync(g.run(seam), { instanceOf: StartupError })
  t.is(err.service, 'api')
  t.is(err.message, 'required service "api" was skipped: its dependency "cache" failed after 1 attempt: no cache; the app does not announce ready')
  t.is(err.cause, boom)
  t.false(apiRan)
  t.is(g.status().state, 'failed')
  t.is(state(g, 'api'), 'skipped')
})

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

test('options are validated at once, the message names the bad value', (t) => {
  const cases: Array<[unknown, unknown, string]> = [
    ['not a function', {}, 'onStartup() needs a function, got "not a function"'],
    [() => {}, null, 'onStartup() options must be an object, got null'],
    [() => {}, { name: '' }, 'onStartup() option "name" must be a non-empty string, got ""'],
    [() => {}, { name: 5 }, 'onStartup() option "name" must be a non-empty string, got 5'],
    [() => {}, { after: 'db' }, 'onStartup() option "after" must be an array of service names, got "db"'],
    [() => {}, { after: [''] }, 'onStartup() option "after" must be an array of service names, got [""]'],
    [() => {}, { required: 'yes' }, 'onStartup() option "required" must be a boolean, got "yes"'],
    [() => {}, { retries: -1 }, 'onStartup() option "retries" must be an integer from 0 to 100, got -1'],
    [() => {}, { retries: 1.5 }, 'onStartup() option "retries" must be an integer from 0 to 100, got 1.5'],
    [() => {}, { retries: 101 }, 'onStartup() option "retries" must be an integer from 0 to 100, got 101'],
    [() => {}, { retries: '2' }, 'onStartup() option "retries" must be an integer from 0 to 100, got "2"'],
    [() => {}, { backoff: -1 }, 'onStartup() option "backoff" must be a number of ms from 0 to 10000, got -1'],
    [() => {}, { backoff: NaN }, 'onStartup() option "backoff" must be a number of ms from 0 to 10000, got NaN'],
    [() => {}, { backoff: 10_001 }, 'onStartup() option "backoff" must be a number of ms from 0 to 10000, got 10001'],
    [() => {}, { timeout: 0 }, `onStartup() option "timeout" must be a positive number of ms, at most ${MAX_MS} (about 24.8 days), got 0`],
    [() => {}, { timeout: Infinity }, `onStartup() option "timeout" must be a positive number of ms, at most ${MAX_MS} (about 24.8 days), got Infinity`],
    [() => {}, { timeout: MAX_MS + 1 }, `onStartup() option "timeout" must be a positive number of ms, at most ${MAX_MS} (about 24.8 days), got ${MAX_MS + 1}`]
  ]
  const g = new StartupGraph()
  for (const [fn, options, message] of cases) {
    const err = t.throws(() => { g.add(fn as StartupService, options as StartupOptions) }, { instanceOf: InvalidOptionError })
    t.is(err?.message, message)
    t.is(err?.code, 'ERR_GRACEFUL_INVALID_OPTION')
  }
  t.is(g.size, 0, 'nothing bad was added')
  g.add(() => {}, { name: 'edges', retries: 100, backoff: 0, timeout: MAX_MS, required: false, after: [] })
  g.add(() => {}, { name: 'cap', backoff: 10_000 })
  t.is(g.size, 2)
})

test('default names are `<function name>#n` or `service#n`; a duplicate name throws ERR_GRACEFUL_STARTUP_DUPLICATE', (t) => {
  const g = new StartupGraph()
  g.add(function connectDb () {})
  g.add(() => {})
  t.deepEqual(g.status().services.map((s) => s.name), ['connectDb#1', 'service#2'])
  g.add(() => {}, { name: 'db' })
  const err = t.throws(() => { g.add(() => {}, { name: 'db' }) }, { instanceOf: StartupGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_STARTUP_DUPLICATE')
  t.is(err?.message, 'a startup service named "db" is already registered')
  t.is(g.size, 3)
})

test('an unknown `after` name: validate() throws and run() rejects with ERR_GRACEFUL_STARTUP_UNKNOWN, and no service runs', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  let ran = false
  g.add(() => { ran = true }, { name: 'cache' })
  g.add(() => { ran = true }, { name: 'api', after: ['cache', 'db'] })
  const message = 'startup service "api" has after: ["db"], but no service is named "db" (known: cache, api)'
  const thrown = t.throws(() => { g.validate() }, { instanceOf: StartupGraphError })
  t.is(thrown?.code, 'ERR_GRACEFUL_STARTUP_UNKNOWN')
  t.is(thrown?.message, message)
  const err = await t.throwsAsync(g.run(seam), { instanceOf: StartupGraphError })
  t.is(err.message, message)
  t.false(ran)
  t.is(g.status().state, 'failed')
  await g.settled()
})

test('a cycle throws ERR_GRACEFUL_STARTUP_CYCLE with its path', (t) => {
  const cycle = (edges: Array<[string, string[]]>): string | undefined => {
    const g = new StartupGraph()
    for (const [name, after] of edges) g.add(() => {}, { name, after })
    const err = t.throws(() => { g.validate() }, { instanceOf: StartupGraphError })
    t.is(err?.code, 'ERR_GRACEFUL_STARTUP_CYCLE')
    return err?.message
  }
  t.is(cycle([['a', ['b']], ['b', ['a']]]), 'startup services form a cycle: a -> b -> a')
  t.is(cycle([['self', ['self']]]), 'startup services form a cycle: self -> self')
  t.is(cycle([['x', ['a']], ['a', ['b']], ['b', ['c']], ['c', ['a']]]), 'startup services form a cycle: a -> b -> c -> a')
  const ok = new StartupGraph()
  ok.add(() => {}, { name: 'a' })
  ok.add(() => {}, { name: 'b', after: ['a'] })
  ok.add(() => {}, { name: 'c', after: ['a', 'b'] })
  t.notThrows(() => { ok.validate() }, 'a diamond is no cycle')
})

// ---------------------------------------------------------------------------------------------
// run() once, status()
// ---------------------------------------------------------------------------------------------

test('add() after run() is refused', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  g.add(() => {}, { name: 'db' })
  await g.run(seam)
  const err = t.throws(() => { g.add(() => {}, { name: 'late' }) }, { instanceOf: InvalidOptionError })
  t.is(err?.message, 'onStartup() must be called before the app listens: the startup services already run')
  t.is(g.size, 1)
})

test('run() is idempotent: a second call returns the same promise and runs no service twice', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  let calls = 0
  const gate = deferred()
  g.add(async () => { calls++; await gate.promise }, { name: 'db' })
  const first = g.run(seam)
  const second = g.run(seam)
  t.is(first, second)
  gate.resolve()
  await first
  t.is(g.run(seam), first)
  t.is(calls, 1)
})

test('with no service, run() resolves at once and the state is started', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  t.is(g.size, 0)
  t.is(g.status().state, 'idle')
  await g.run(seam)
  await g.settled()
  t.deepEqual(g.status(), { state: 'started', services: [] })
  t.deepEqual(seam.pending, [])
})

test('status() goes idle -> starting -> started, reports each service and is a copy', async (t) => {
  const { seam } = spySeam()
  const g = new StartupGraph()
  const gate = deferred()
  g.add(() => gate.promise, { name: 'db' })
  g.add(() => {}, { name: 'api', after: ['db'] })
  t.deepEqual(g.status(), {
    state: 'idle',
    services: [
      { name: 'db', required: true, state: 'pending', attempts: 0, ms: 0 },
      { name: 'api', required: true, state: 'pending', attempts: 0, ms: 0 }
    ]
  })
  const run = g.run(seam)
  await seam.advance(40)
  const mid = g.status()
  t.is(mid.state, 'starting')
  t.deepEqual(mid.services.map((s) => [s.name, s.state, s.ms]), [['db', 'starting', 40], ['api', 'pending', 0]])
  mid.services[0]!.state = 'failed'
  mid.services.pop()
  t.is(state(g, 'db'), 'starting', 'changing the copy changes nothing')
  t.is(g.status().services.length, 2)
  gate.resolve()
  await run
  t.deepEqual(g.status().services.map((s) => [s.name, s.state, s.ms]), [['db', 'started', 40], ['api', 'started', 0]])
  t.is(g.status().state, 'started')
})
