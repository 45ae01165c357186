// Runs in the test process: the finalizer graph (lib/drain/finalizers.ts) with a fake process seam, and
// end to end through a real Fastify server and an Express app.
import { core } from '../lib/lifecycle'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import express from 'express'
import graceful, { expressGraceful, lifecycle } from '../index'
import type { ShutdownResult } from '../index'
import { Finalizers, HTTP, MIN_FINALIZER_MS, type FinalizerContext, type FinalizerOptions } from '../lib/drain/finalizers'
import { FinalizerGraphError, FinalizerTimeoutError, GracefulError, InvalidOptionError } from '../lib/errors'
import { FakeSeam, deferred, memoryLogger, settle } from './fixtures/finalizer-fake-seam'

const BASE = { reason: 'shutdown', trigger: 'SIGTERM' } as const

/** A finalizer that logs `<name>:start` and `<name>:end`, and waits on `gate` in between. */
function step (log: string[], name: string, gate?: Promise<unknown>): () => Promise<void> {
  return async () => {
    log.push(`${name}:start`)
    if (gate !== undefined) await gate
    log.push(`${name}:end`)
  }
}

/** The built-in 'http' node, under the test's control. */
function httpNode (log: string[]): { node: () => Promise<void>, drained: () => void, started: Promise<void> } {
  const done = deferred()
  const started = deferred()
  return {
    node: () => {
      log.push('http:start')
      started.resolve()
      return done.promise.then(() => { log.push('http:end') })
    },
    drained: () => { done.resolve() },
    started: started.promise
  }
}

// ---------------------------------------------------------------------------------------------
// Unit: ordering around 'http'
// ---------------------------------------------------------------------------------------------

test('a finalizer before "http" finishes before the listeners close; one after "http" starts only once HTTP is drained', async (t) => {
  const seam = new FakeSeam()
  const log: string[] = []
  const f = new Finalizers()
  const preGate = deferred()
  f.add(step(log, 'db'), { name: 'db', after: [HTTP] })
  f.add(step(log, 'pre', preGate.promise), { name: 'pre', before: [HTTP] })
  f.seal()
  const h = httpNode(log)
  const run = f.run(h.node, seam.now() + 10_000, BASE, seam)
  await settle()
  t.deepEqual(log, ['pre:start'], 'the listeners stay open while "pre" runs')
  preGate.resolve()
  await h.started
  await settle()
  t.deepEqual(log, ['pre:start', 'pre:end', 'http:start'], '"db" waits for the drain')
  h.drained()
  const { outcomes, graphError } = await run
  t.deepEqual(log, ['pre:start', 'pre:end', 'http:start', 'http:end', 'db:start', 'db:end'])
  t.is(graphError, undefined)
  t.deepEqual(outcomes.map((o) => [o.name, o.ok, o.timedOut]), [['pre', true, false], ['db', true, false]])
})

test('a finalizer with no order starts once the listeners close and runs while HTTP drains', async (t) => {
  const seam = new FakeSeam()
  const log: string[] = []
  const f = new Finalizers()
  f.add(step(log, 'ws'), { name: 'ws' })
  const h = httpNode(log)
  const run = f.run(h.node, seam.now() + 10_000, BASE, seam)
  await settle()
  t.deepEqual(log, ['http:start', 'ws:start', 'ws:end'], '"ws" finished while the drain is still under way')
  h.drained()
  await run
  t.deepEqual(log.slice(-1), ['http:end'])
})

test('independent finalizers run in parallel', async (t) => {
  const seam = new FakeSeam()
  const log: string[] = []
  const f = new Finalizers()
  const gates = [deferred(), deferred(), deferred()]
  f.add(step(log, 'a', gates[0]!.promise), { name: 'a' })
  f.add(step(log, 'b', gates[1]!.promise), { name: 'b' })
  f.add(step(log, 'c', gates[2]!.promise), { name: 'c', after: [HTTP] })
  f.seal()
  const h = httpNode(log)
  h.drained()
  const run = f.run(h.node, seam.now() + 10_000, BASE, seam)
  await settle()
  t.deepEqual(log.filter((l) => l.endsWith(':start')).sort(), ['a:start', 'b:start', 'c:start', 'http:start'],
    'all three started although none has finished')
  t.false(log.some((l) => /^[abc]:end$/.test(l)))
  gates[2]!.resolve()
  gates[1]!.resolve()
  gates[0]!.resolve()
  const { outcomes } = await run
  t.deepEqual(outcomes.map((o) => o.name), ['c', 'b', 'a'], 'outcomes in order of completion')
})

test('"after" and "before" between user finalizers order them, transitively', async (t) => {
  const seam = new FakeSeam()
  const log: string[] = []
  const f = new Finalizers()
  // Registered out of order on purpose: 'cache' is named before it exists.
  f.add(step(log, 'db'), { name: 'db', after: ['cache'] })
  f.add(step(log, 'queue'), { name: 'queue', before: ['cache'] })
  f.add(step(log, 'cache'), { name: 'cache' })
  f.seal()
  const h = httpNode(log)
  h.drained()
  await f.run(h.node, seam.now() + 10_000, BASE, seam)
  const at = (s: string): number => log.indexOf(s)
  t.true(at('queue:end') < at('cache:start'))
  t.true(at('cache:end') < at('db:start'))
  t.is(log.length, 2 + 6)
})

test('each finalizer gets reason, trigger, an unaborted signal and the shutdown deadline', async (t) => {
  const seam = new FakeSeam()
  const f = new Finalizers()
  const seen: FinalizerContext[] = []
  f.add((ctx) => { seen.push(ctx) }, { name: 'x' })
  const deadline = seam.now() + 12_345
  const h = httpNode([])
  h.drained()
  await f.run(h.node, deadline, { reason: 'crash', trigger: 'uncaughtException' }, seam)
  t.is(seen.length, 1)
  const ctx = seen[0]!
  t.is(ctx.reason, 'crash')
  t.is(ctx.trigger, 'uncaughtException')
  t.true(ctx.signal instanceof AbortSignal)
  t.false(ctx.signal.aborted)
  t.is(ctx.deadline, deadline)
})

test('the default per-finalizer deadline is at least MIN_FINALIZER_MS, even when the shutdown deadline has passed', async (t) => {
  const seam = new FakeSeam()
  const f = new Finalizers()
  const seen: number[] = []
  const gate = deferred()
  f.add(async (ctx) => { seen.push(ctx.deadline); await gate.promise }, { name: 'late', after: [HTTP] })
  const h = httpNode([])
  const deadline = seam.now() + 100
  const run = f.run(h.node, deadline, BASE, seam)
  await seam.advance(500) // the drain overran the shutdown deadline
  h.drained()
  await settle()
  t.deepEqual(seen, [seam.now() + MIN_FINALIZER_MS])
  await seam.advance(MIN_FINALIZER_MS - 1)
  t.deepEqual(seam.pending.map((p) => p.ms), [1])
  gate.resolve()
  const { outcomes } = await run
  t.true(outcomes[0]!.ok)
  t.is(outcomes[0]!.ms, MIN_FINALIZER_MS - 1, 'ms is measured on the seam clock')
})

test('a finalizer with its own timeout is given that deadline', async (t) => {
  const seam = new FakeSeam()
  const f = new Finalizers()
  const seen: number[] = []
  f.add((ctx) => { seen.push(ctx.deadline) }, { name: 'quick', timeout: 250 })
  const h = httpNode([])
  h.drained()
  await f.run(h.node, seam.now() + 60_000, BASE, seam)
  t.deepEqual(seen, [seam.now() + 250])
})

// ---------------------------------------------------------------------------------------------
// Unit: failures
// ---------------------------------------------------------------------------------------------

test('a throwing, a rejecting and a hanging finalizer do not stop the others; the hanging one times out and is aborted', async (t) => {
  const seam = new FakeSeam()
  const log: string[] = []
  const f = new Finalizers()
  const aborted = deferred<unknown>()
  f.add(() => { throw new Error('sync boom') }, { name: 'throws' })
  f.add(async () => { throw new TypeError('async boom') }, { name: 'rejects' })
  f.add((ctx) => new Promise(() => {
    ctx.signal.addEventListener('abort', () => { aborted.resolve(ctx.signal.reason) })
  }), { name: 'hangs', timeout: 2_000 })
  f.add(step(log, 'fine'), { name: 'fine' })
  f.add(step(log, 'later'), { name: 'later', after: ['throws', 'rejects', 'hangs'] })
  f.seal()
  const h = httpNode(log)
  h.drained()
  const run = f.run(h.node, seam.now() + 30_000, BASE, seam)
  await settle()
  t.deepEqual(log.filter((l) => !l.startsWith('http')), ['fine:start', 'fine:end'], '"later" waits for "hangs"')
  await seam.advance(1_999)
  t.false(log.includes('later:start'))
  await seam.advance(1)
  const { outcomes } = await run
  t.true(log.includes('later:end'), 'a finalizer after failed ones still runs')
  const by = new Map(outcomes.map((o) => [o.name, o]))
  t.deepEqual([...by.keys()].sort(), ['fine', 'hangs', 'later', 'rejects', 'throws'])
  t.like(by.get('throws'), { ok: false, timedOut: false })
  t.is((by.get('throws')!.error as Error).message, 'sync boom')
  t.like(by.get('rejects'), { ok: false, timedOut: false })
  t.true(by.get('rejects')!.error instanceof TypeError)
  t.like(by.get('hangs'), { ok: false, timedOut: true, ms: 2_000 })
  const err = by.get('hangs')!.error
  t.true(err instanceof FinalizerTimeoutError)
  t.is((err as GracefulError).code, 'ERR_GRACEFUL_FINALIZER_TIMEOUT')
  t.regex((err as Error).message, /"hangs".*2000 ms/)
  t.is(await aborted.promise, err, 'the signal is aborted with the timeout error as reason')
  t.like(by.get('fine'), { ok: true, timedOut: false })
  t.like(by.get('later'), { ok: true, timedOut: false })
  t.deepEqual(seam.pending, [], 'no timer left behind')
})

test('a finalizer that finishes in time leaves its signal unaborted and cancels its timer', async (t) => {
  const seam = new FakeSeam()
  const f = new Finalizers()
  let signal: AbortSignal | undefined
  f.add((ctx) => { signal = ctx.signal }, { name: 'x', timeout: 5_000 })
  const h = httpNode([])
  h.drained()
  const { outcomes } = await f.run(h.node, seam.now() + 30_000, BASE, seam)
  t.true(outcomes[0]!.ok)
  t.false(signal!.aborted)
  t.deepEqual(seam.pending, [])
})

// ---------------------------------------------------------------------------------------------
// Unit: graph errors
// ---------------------------------------------------------------------------------------------

function graph (...defs: Array<[string, FinalizerOptions]>): Finalizers {
  const f = new Finalizers()
  for (const [name, o] of defs) f.add(() => {}, { name, ...o })
  return f
}

test('a cycle between two finalizers is a coded graph error naming the cycle', (t) => {
  const f = graph(['a', { after: ['b'] }], ['b', { after: ['a'] }])
  const err = t.throws(() => { f.seal() }, { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_CYCLE')
  t.regex(err?.message ?? '', /a -> b -> a|b -> a -> b/)
})

test('a finalizer after itself is a cycle', (t) => {
  const err = t.throws(() => { graph(['self', { after: ['self'] }]).seal() }, { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_CYCLE')
  t.regex(err?.message ?? '', /self -> self/)
})

test('both before and after "http" is a cycle through "http"', (t) => {
  const err = t.throws(() => { graph(['both', { before: [HTTP], after: [HTTP] }]).seal() }, { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_CYCLE')
  t.regex(err?.message ?? '', /both/)
  t.regex(err?.message ?? '', /http/)
})

test('a cycle made of before and after edges is found', (t) => {
  // a after b; a before b -> b waits for a and a waits for b
  const err = t.throws(() => { graph(['a', { after: ['b'], before: ['b'] }], ['b', {}]).seal() }, { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_CYCLE')
})

test('an "after" or "before" naming no finalizer is ERR_GRACEFUL_FINALIZER_UNKNOWN naming it', (t) => {
  for (const key of ['after', 'before'] as const) {
    const err = t.throws(() => { graph(['db', { [key]: ['pool'] }]).seal() }, { instanceOf: FinalizerGraphError })
    t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_UNKNOWN')
    t.regex(err?.message ?? '', /"pool"/)
    t.regex(err?.message ?? '', /"db"/)
    t.true(err?.message.includes(key))
  }
})

test('names may refer to finalizers registered later; after seal() each addition is checked at once and a bad one is not kept', (t) => {
  const f = graph(['a', { after: ['b'] }], ['b', {}])
  t.notThrows(() => { f.seal() })
  t.is(f.size, 2)
  const unknown = t.throws(() => { f.add(() => {}, { name: 'c', after: ['later'] }) }, { instanceOf: FinalizerGraphError })
  t.is(unknown?.code, 'ERR_GRACEFUL_FINALIZER_UNKNOWN')
  const cycle = t.throws(() => { f.add(() => {}, { name: 'd', after: ['a'], before: ['b'] }) }, { instanceOf: FinalizerGraphError })
  t.is(cycle?.code, 'ERR_GRACEFUL_FINALIZER_CYCLE')
  t.is(f.size, 2, 'neither bad addition was kept')
  t.notThrows(() => { f.add(() => {}, { name: 'e', after: ['a'] }) })
  t.is(f.size, 3)
  // the rejected name is free again
  t.notThrows(() => { f.add(() => {}, { name: 'c' }) })
})

test('an invalid graph that was never sealed still runs every finalizer, and reports the error', async (t) => {
  const seam = new FakeSeam()
  const log: string[] = []
  const f = new Finalizers()
  f.add(step(log, 'a'), { name: 'a', after: ['b'] })
  f.add(step(log, 'b'), { name: 'b', after: ['a'] })
  f.add(step(log, 'c'), { name: 'c', after: ['missing'] })
  const h = httpNode(log)
  h.drained()
  const { outcomes, graphError } = await f.run(h.node, seam.now() + 10_000, BASE, seam)
  t.true(graphError instanceof FinalizerGraphError)
  t.deepEqual(outcomes.map((o) => o.name).sort(), ['a', 'b', 'c'])
  t.true(outcomes.every((o) => o.ok))
  t.true(log.indexOf('http:start') < log.indexOf('a:start'), 'not before the listeners close')
})

// ---------------------------------------------------------------------------------------------
// Unit: bad input
// ---------------------------------------------------------------------------------------------

const badInput: Array<[string, unknown, unknown, RegExp, string]> = [
  ['not a function (string)', 'close', undefined, /"close"/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['not a function (undefined)', undefined, undefined, /undefined/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['options not an object', () => {}, 5, /5/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['options null', () => {}, null, /null/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['after is a string', () => {}, { name: 'x', after: 'http' }, /"http"/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['after holds a number', () => {}, { name: 'x', after: ['db', 7] }, /\["db",7\]/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['after holds an empty name', () => {}, { name: 'x', after: [''] }, /\[""\]/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['before is an object', () => {}, { name: 'x', before: { db: true } }, /\{"db":true\}/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['timeout negative', () => {}, { name: 'x', timeout: -5 }, /-5/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['timeout zero', () => {}, { name: 'x', timeout: 0 }, /got 0/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['timeout NaN', () => {}, { name: 'x', timeout: NaN }, /NaN/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['timeout Infinity', () => {}, { name: 'x', timeout: Infinity }, /Infinity/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['timeout a string', () => {}, { name: 'x', timeout: '100' }, /"100"/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['timeout above what a timer can wait', () => {}, { name: 'x', timeout: 2 ** 31 }, /at most 2147483647 .*got 2147483648/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['name "http"', () => {}, { name: 'http' }, /"http"/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['name empty', () => {}, { name: '' }, /""/, 'ERR_GRACEFUL_INVALID_OPTION'],
  ['name a number', () => {}, { name: 42 }, /42/, 'ERR_GRACEFUL_INVALID_OPTION']
]

for (const [title, fn, options, shows, code] of badInput) {
  test(`bad finalizer input is refused at once: ${title}`, (t) => {
    const f = new Finalizers()
    const err = t.throws(() => { f.add(fn as never, options as never) }, { instanceOf: GracefulError })
    t.is(err?.code, code)
    t.true(err instanceof InvalidOptionError)
    t.regex(err?.message ?? '', shows)
    t.is(f.size, 0, 'nothing was registered')
  })
}

test('a duplicate name is ERR_GRACEFUL_FINALIZER_DUPLICATE naming it; the first one stays', (t) => {
  const f = new Finalizers()
  f.add(() => {}, { name: 'db' })
  const err = t.throws(() => { f.add(() => {}, { name: 'db' }) }, { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_DUPLICATE')
  t.regex(err?.message ?? '', /"db"/)
  t.is(f.size, 1)
})

test('unnamed finalizers get distinct names from the function name', async (t) => {
  const seam = new FakeSeam()
  const f = new Finalizers()
  function closePool (): void {}
  f.add(closePool)
  f.add(closePool)
  f.add(() => {})
  const h = httpNode([])
  h.drained()
  const { outcomes } = await f.run(h.node, seam.now() + 1_000, BASE, seam)
  const names = outcomes.map((o) => o.name)
  t.is(new Set(names).size, 3)
  t.is(names.filter((n) => n.startsWith('closePool')).length, 2)
})

// ---------------------------------------------------------------------------------------------
// End to end: a real Fastify server (in this process; no exit, no signals)
// ---------------------------------------------------------------------------------------------

interface Reply { status: number, headers: http.IncomingHttpHeaders, body: string }

function get (port: number, path: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body }) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

async function fastifyApp (t: ExecutionContext, options: Record<string, unknown> = {}): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(graceful, { exit: false, signals: false, timeout: 10_000, ...options })
  t.teardown(async () => { await app.close() })
  return app
}

function port (app: { server: http.Server }): number {
  return (app.server.address() as AddressInfo).port
}

test.serial('e2e Fastify: before-http runs with the listener open, independent ones in parallel during the drain, after-http once the last response finished', async (t) => {
  const app = await fastifyApp(t)
  const order: string[] = []
  const entered = deferred()
  const release = deferred()
  app.get('/slow', async () => {
    entered.resolve()
    await release.promise
    return { slow: true }
  })
  app.get('/fast', async () => ({ fast: true }))
  app.addHook('onResponse', async (req) => { order.push(`onResponse ${req.url}`) })

  let preFetch: Reply | undefined
  let listeningInPre: boolean | undefined
  app.onShutdown(async () => {
    order.push('pre:start')
    listeningInPre = app.server.listening
    preFetch = await get(port(app), '/fast') // a new connection: the listener is still open
    order.push('pre:end')
  }, { name: 'pre', before: ['http'] })

  const startedParallel: string[] = []
  const bothStarted = deferred()
  const listeningInParallel: boolean[] = []
  for (const name of ['p1', 'p2']) {
    app.onShutdown(async () => {
      order.push(`${name}:start`)
      listeningInParallel.push(app.server.listening)
      startedParallel.push(name)
      if (startedParallel.length === 2) bothStarted.resolve()
      await bothStarted.promise // deadlocks (and times out) unless both run at the same time
      order.push(`${name}:end`)
    }, { name, timeout: 5_000 })
  }
  // Named before it is registered: valid, the graph is checked at ready().
  app.onShutdown(() => { order.push('db:start') }, { name: 'db', after: ['http', 'cache'] })
  app.onShutdown(() => { order.push('cache:start') }, { name: 'cache', after: ['http'] })

  await app.listen({ port: 0, host: '127.0.0.1' })
  const appPort = port(app)
  const slow = get(appPort, '/slow')
  await entered.promise
  const shutdown: Promise<ShutdownResult> = app.shutdown(10_000)
  await bothStarted.promise
  t.false(order.includes('onResponse /slow'), 'the slow request is still in flight')
  t.false(order.includes('db:start'))
  t.false(order.includes('cache:start'))
  release.resolve()
  const res = await slow
  const result = await shutdown

  t.is(res.status, 200)
  t.deepEqual(JSON.parse(res.body), { slow: true })
  t.true(listeningInPre)
  t.is(preFetch?.status, 200, 'a new connection made inside a before-http finalizer is served')
  t.deepEqual(listeningInParallel, [false, false], 'independent finalizers start once the listener is closed')
  const at = (s: string): number => { const i = order.indexOf(s); t.not(i, -1, s); return i }
  t.true(at('pre:end') < at('p1:start'))
  t.true(at('pre:end') < at('p2:start'))
  t.true(at('onResponse /fast') < at('pre:end'))
  t.true(at('p1:start') < at('p2:end') && at('p2:start') < at('p1:end'), 'p1 and p2 overlap')
  t.true(at('onResponse /slow') < at('cache:start'), 'cache starts after the last response finished')
  t.true(at('onResponse /slow') < at('db:start'))
  t.true(at('cache:start') < at('db:start'))

  t.is(result.code, 0)
  t.is(result.forced, 0)
  t.deepEqual(result.failedFinalizers, [])
  t.is(result.apps.length, 1)
  const names = result.apps[0]!.finalizers.map((o) => o.name)
  for (const n of ['pre', 'p1', 'p2', 'cache', 'db']) t.true(names.includes(n), n)
  t.true(result.apps[0]!.finalizers.every((o) => o.ok))
  t.false(app.server.listening)
  await t.throwsAsync(get(appPort, '/fast'), { code: 'ECONNREFUSED' })
})

test.serial('e2e Fastify: a throwing and a hanging finalizer do not stop the others; the result names them', async (t) => {
  const app = await fastifyApp(t)
  const ran: string[] = []
  const aborted = deferred<unknown>()
  app.onShutdown(() => { throw new Error('pool exploded') }, { name: 'boom' })
  // Hangs on something that keeps the event loop alive (as a stuck socket would) until aborted.
  app.onShutdown((ctx) => new Promise(() => {
    const stuck = setTimeout(() => {}, 60_000)
    ctx.signal.addEventListener('abort', () => { clearTimeout(stuck); aborted.resolve(ctx.signal.reason) })
  }), { name: 'hang', timeout: 150 })
  app.onShutdown(async () => { ran.push('ok') }, { name: 'ok' })
  app.onShutdown(() => { ran.push('after') }, { name: 'after', after: ['boom', 'hang', 'http'] })
  await app.listen({ port: 0, host: '127.0.0.1' })

  const result = await app.shutdown(10_000)
  t.is(result.code, 76)
  t.deepEqual([...result.failedFinalizers].sort(), ['boom', 'hang'])
  t.deepEqual(ran.sort(), ['after', 'ok'])
  const by = new Map(result.apps[0]!.finalizers.map((o) => [o.name, o]))
  t.like(by.get('boom'), { ok: false, timedOut: false })
  t.is((by.get('boom')!.error as Error).message, 'pool exploded')
  t.like(by.get('hang'), { ok: false, timedOut: true })
  t.is((by.get('hang')!.error as GracefulError).code, 'ERR_GRACEFUL_FINALIZER_TIMEOUT')
  t.true(by.get('hang')!.ms >= 140, `hang ran ${by.get('hang')!.ms} ms`)
  t.like(by.get('ok'), { ok: true })
  t.like(by.get('after'), { ok: true })
  const reason = await aborted.promise
  t.true(reason instanceof FinalizerTimeoutError, 'the hanging finalizer\'s AbortSignal was aborted')
})

test.serial('e2e Fastify: a finalizer cycle rejects ready() with ERR_GRACEFUL_FINALIZER_CYCLE', async (t) => {
  const app = await fastifyApp(t)
  app.onShutdown(() => {}, { name: 'alpha', after: ['beta'] })
  app.onShutdown(() => {}, { name: 'beta', after: ['alpha'] })
  const err = await t.throwsAsync(app.ready(), { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_CYCLE')
  t.regex(err?.message ?? '', /alpha/)
  t.regex(err?.message ?? '', /beta/)
})

test.serial('e2e Fastify: an "after" naming no finalizer rejects ready() with ERR_GRACEFUL_FINALIZER_UNKNOWN', async (t) => {
  const app = await fastifyApp(t)
  app.onShutdown(() => {}, { name: 'db', after: ['poool'] })
  const err = await t.throwsAsync(app.listen({ port: 0, host: '127.0.0.1' }), { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_UNKNOWN')
  t.regex(err?.message ?? '', /"poool"/)
  t.false(app.server.listening)
})

test.serial('e2e Fastify: forward references are valid; after ready an unknown name throws at onShutdown()', async (t) => {
  const app = await fastifyApp(t)
  app.onShutdown(() => {}, { name: 'db', after: ['cache'] })
  app.onShutdown(() => {}, { name: 'cache' })
  await t.notThrowsAsync(app.ready())
  const err = t.throws(() => app.onShutdown(() => {}, { name: 'late', after: ['nope'] }), { instanceOf: FinalizerGraphError })
  t.is(err?.code, 'ERR_GRACEFUL_FINALIZER_UNKNOWN')
})

test.serial('e2e Fastify: bad onShutdown() input throws a coded error showing the value', async (t) => {
  const app = await fastifyApp(t)
  const cases: Array<[unknown, unknown, string, RegExp]> = [
    [42, undefined, 'ERR_GRACEFUL_INVALID_OPTION', /42/],
    [() => {}, { after: 'db' }, 'ERR_GRACEFUL_INVALID_OPTION', /"db"/],
    [() => {}, { timeout: -1 }, 'ERR_GRACEFUL_INVALID_OPTION', /-1/],
    [() => {}, { name: 'http' }, 'ERR_GRACEFUL_INVALID_OPTION', /"http"/],
    [() => {}, { name: 'websocket' }, 'ERR_GRACEFUL_FINALIZER_DUPLICATE', /"websocket"/]
  ]
  for (const [fn, o, code, shows] of cases) {
    const err = t.throws(() => app.onShutdown(fn as never, o as never), { instanceOf: GracefulError })
    t.is(err?.code, code)
    t.regex(err?.message ?? '', shows)
  }
})

test.serial('e2e Express: a finalizer cycle or unknown name throws from app.listen, before any server exists', async (t) => {
  for (const [defs, code, shows] of [
    [[['one', ['two']], ['two', ['one']]], 'ERR_GRACEFUL_FINALIZER_CYCLE', /one/],
    [[['one', ['ghost']]], 'ERR_GRACEFUL_FINALIZER_UNKNOWN', /"ghost"/]
  ] as Array<[Array<[string, string[]]>, string, RegExp]>) {
    const app = expressGraceful(express(), { exit: false, signals: false, logger: memoryLogger() })
    t.teardown(async () => { await app.graceful.close() })
    for (const [name, after] of defs) app.onShutdown(() => {}, { name, after })
    const err = t.throws(() => app.listen(0, '127.0.0.1'), { instanceOf: FinalizerGraphError })
    t.is(err?.code, code)
    t.regex(err?.message ?? '', shows)
    t.deepEqual(core().apps.find((u) => u.servers.length > 0), undefined, 'no server was created')
  }
})

test.serial('e2e Express: a finalizer after "http" runs after the in-flight response finished', async (t) => {
  const app = expressGraceful(express(), { exit: false, signals: false, timeout: 10_000, logger: memoryLogger() })
  const order: string[] = []
  const entered = deferred()
  const release = deferred()
  app.get('/slow', (_req, res) => {
    entered.resolve()
    res.on('finish', () => { order.push('finish /slow') })
    void release.promise.then(() => { res.json({ slow: true }) })
  })
  app.onShutdown(() => { order.push('db:start') }, { name: 'db', after: ['http'] })
  const server = app.listen(0, '127.0.0.1')
  t.teardown(() => { server.close() })
  await new Promise<void>((resolve) => server.once('listening', resolve))
  const slow = get((server.address() as AddressInfo).port, '/slow')
  await entered.promise
  const shutdown = app.shutdown(10_000)
  await settle()
  t.deepEqual(order, [])
  release.resolve()
  const res = await slow
  const result = await shutdown
  t.is(res.status, 200)
  t.deepEqual(order, ['finish /slow', 'db:start'])
  t.is(result.code, 0)
  t.deepEqual(result.apps.map((a) => a.name), ['express'])
  t.is(lifecycle().state, 'stopped')
})
