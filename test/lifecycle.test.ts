// Runs in the test process: the process-wide coordinator (lib/lifecycle.ts) and one app's unit
// (lib/drain/app.ts) driven through a fake process seam: manual clock, timers, signals, crashes and exit.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import * as fs from 'node:fs'
import http from 'node:http'
import * as os from 'node:os'
import path from 'node:path'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { LifecycleState, ShutdownResult } from '../lib/events'
import { exitCodes } from '../lib/exit-codes'
import { ProcessLifecycle } from '../lib/lifecycle'
import { GracefulUnit } from '../lib/drain/app'
import { resolveOptions, type GracefulOptions } from '../lib/options'
import { GracefulError, InvalidOptionError } from '../lib/errors'
import { FakeSeam, deferred, memoryLogger, settle } from './fixtures/finalizer-fake-seam'

interface World {
  seam: FakeSeam
  life: ProcessLifecycle
  log: ReturnType<typeof memoryLogger>
  states: Array<[LifecycleState, LifecycleState]>
  unit: (options?: GracefulOptions, name?: string) => GracefulUnit
}

function world (): World {
  const seam = new FakeSeam()
  const life = new ProcessLifecycle(seam)
  const log = memoryLogger()
  const states: Array<[LifecycleState, LifecycleState]> = []
  life.on('state', (next, prev) => { states.push([next, prev]) })
  const unit = (options: GracefulOptions = {}, name = 'app'): GracefulUnit => {
    const u = new GracefulUnit(name, resolveOptions(options), log, seam)
    life.register(u)
    return u
  }
  return { seam, life, log, states, unit }
}

/** Registers a finalizer that holds the drain open until the returned function is called. */
function hold (u: GracefulUnit, name = 'hold'): { release: () => void, started: Promise<void> } {
  const gate = deferred()
  const started = deferred()
  u.finalizers.add(async () => { started.resolve(); await gate.promise }, { name })
  return { release: () => { gate.resolve() }, started: started.promise }
}

// ---------------------------------------------------------------------------------------------
// States
// ---------------------------------------------------------------------------------------------

test('states go running -> draining -> stopped, with one state event per change, in order', async (t) => {
  const w = world()
  const u = w.unit({ exit: false })
  const h = hold(u)
  t.is(w.life.state, 'running')
  const p = w.life.shutdown(1_000)
  await h.started
  t.is(w.life.state, 'draining')
  t.deepEqual(w.states, [['draining', 'running']])
  h.release()
  const result = await p
  t.is(w.life.state, 'stopped')
  t.deepEqual(w.states, [['draining', 'running'], ['stopped', 'draining']])
  t.is(result.code, exitCodes.clean)
  t.is(result.reason, 'shutdown')
  t.is(result.trigger, 'code')
})

test('shutdown() is idempotent: a second call returns the same promise and drains once', async (t) => {
  const w = world()
  const u = w.unit({ exit: false })
  let runs = 0
  u.finalizers.add(() => { runs++ }, { name: 'count' })
  const p1 = w.life.shutdown(1_000)
  const p2 = w.life.shutdown(5_000, { reason: 'crash', trigger: 'other' })
  t.is(p1, p2)
  const r = await p1
  t.is(await w.life.shutdown(), r, 'also after it completed, until something registers again')
  t.is(runs, 1)
  t.is(r.trigger, 'code')
})

test('a bad shutdown timeout is a coded error and starts nothing', async (t) => {
  const w = world()
  w.unit({ exit: false })
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, 3e9]) {
    let err: unknown
    const p = w.life.shutdown(bad)
    t.true(p instanceof Promise, 'a bad timeout rejects; it does not throw')
    try {
      await p
    } catch (e) {
      err = e
    }
    t.true(err instanceof InvalidOptionError, `timeout ${bad}`)
    t.is((err as GracefulError).code, 'ERR_GRACEFUL_INVALID_OPTION')
    t.true((err as Error).message.includes(String(bad)), (err as Error).message)
  }
  t.is(w.life.state, 'running')
  t.deepEqual(w.states, [])
  const r = await w.life.shutdown(10)
  t.is(r.code, 0, 'a good call afterwards still works')
})

test('registering after stopped starts over at running, and the next shutdown is a new one', async (t) => {
  const w = world()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-start-over-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const pidFile = path.join(dir, 'app.pid')
  const listen = async (u: GracefulUnit): Promise<http.Server> => {
    const server = http.createServer()
    t.teardown(() => { server.close() })
    u.attach(server)
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    return server
  }
  const s1 = await listen(w.unit({ exit: false, pidFile }, 'first'))
  t.true(w.life.started)
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(w.seam.pid))
  t.is(w.life.listening.keyOf(s1), 'tcp:127.0.0.1:0')
  const first = w.life.shutdown(1_000)
  const r1 = await first
  t.is(w.life.state, 'stopped')
  t.is(w.life.apps.length, 0, 'apps are unregistered once stopped')
  t.false(fs.existsSync(pidFile), 'the shutdown removed the PID file')
  const u2 = w.unit({ exit: false, pidFile }, 'second')
  t.is(w.life.state, 'running')
  t.false(w.life.started, 'not started again until it listens')
  t.deepEqual(w.states.map(([s]) => s), ['draining', 'stopped', 'running'])
  const s2 = await listen(u2)
  t.true(w.life.started, 'started again once it listens')
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(w.seam.pid), 'the PID file is written again')
  t.is(w.life.listening.keyOf(s2), 'tcp:127.0.0.1:0', 'the same key a successor started now would give it (not #2)')
  let ran = false
  u2.finalizers.add(() => { ran = true }, { name: 'x' })
  const second = w.life.shutdown(1_000)
  t.not(second, first)
  const r2 = await second
  t.not(r2, r1)
  t.true(ran)
  t.deepEqual(r2.apps.map((a) => a.name), ['second'])
  t.deepEqual(w.states.map(([s]) => s), ['draining', 'stopped', 'running', 'draining', 'stopped'])
})

test('every registered app is drained by one shutdown, in parallel', async (t) => {
  const w = world()
  const a = w.unit({ exit: false }, 'a')
  const b = w.unit({ exit: false }, 'b')
  const ha = hold(a)
  const hb = hold(b)
  const order: string[] = []
  void ha.started.then(() => { order.push('a started') })
  void hb.started.then(() => { order.push('b started') })
  const p = w.life.shutdown(1_000)
  void p.then(() => { order.push('done') })
  // No clock advance: drains one after another would wait here for the first to be released.
  await Promise.race([Promise.all([ha.started, hb.started]), settle().then(settle)])
  t.deepEqual(order.slice().sort(), ['a started', 'b started'], 'both drains started while the first is still held')
  t.false(order.includes('done'))
  ha.release()
  hb.release()
  const r = await p
  t.deepEqual(r.apps.map((x) => x.name), ['a', 'b'])
})

test('the default shutdown deadline is the largest timeout option of the apps; an explicit one wins', async (t) => {
  for (const [explicit, expected] of [[undefined, 7_000], [2_000, 2_000]] as const) {
    const w = world()
    const a = w.unit({ exit: false, timeout: 3_000 }, 'a')
    w.unit({ exit: false, timeout: 7_000 }, 'b')
    const seen: number[] = []
    a.finalizers.add((ctx) => { seen.push(ctx.deadline) }, { name: 'd' })
    const start = w.seam.now()
    await w.life.shutdown(explicit)
    t.deepEqual(seen, [start + expected])
  }
})

test('readinessDelay holds the drain back on the seam clock', async (t) => {
  const w = world()
  const u = w.unit({ exit: false, readinessDelay: 500 })
  const h = hold(u)
  let started = false
  void h.started.then(() => { started = true })
  const p = w.life.shutdown(5_000)
  await w.seam.advance(499)
  t.is(w.life.state, 'draining')
  t.false(started)
  await w.seam.advance(1)
  t.true(started)
  h.release()
  await p
})

// ---------------------------------------------------------------------------------------------
// The exit decision
// ---------------------------------------------------------------------------------------------

test('a clean shutdown exits 0, once, after the result is settled', async (t) => {
  const w = world()
  w.unit()
  const exited = w.seam.nextExit()
  const r = await w.life.shutdown(1_000)
  t.is(r.code, 0)
  t.deepEqual(w.seam.exits, [], 'exit waits for the result to be handed out')
  t.is(await exited, 0)
  await settle()
  t.deepEqual(w.seam.exits, [0])
})

test('a \'shutdown\' listener that throws is logged and the process still exits with the result\'s code', async (t) => {
  const w = world()
  w.unit()
  const seen: ShutdownResult[] = []
  w.life.on('shutdown', (r) => { seen.push(r); throw new Error('metrics push failed') })
  const exited = w.seam.nextExit()
  const r = await w.life.shutdown(1_000)
  t.deepEqual(seen, [r])
  t.is(await exited, 0)
  t.true(w.log.lines.some((l) => l.level === 'error' && l.msg.includes("a 'shutdown' listener threw; exiting anyway")))
})

test('a failed finalizer earns exit code 76 and is named in the result', async (t) => {
  const w = world()
  const u = w.unit()
  u.finalizers.add(() => { throw new Error('nope') }, { name: 'bad' })
  u.finalizers.add(() => {}, { name: 'good' })
  const exited = w.seam.nextExit()
  const r = await w.life.shutdown(1_000)
  t.is(r.code, exitCodes.finalizerFailed)
  t.is(r.code, 76)
  t.deepEqual(r.failedFinalizers, ['bad'])
  t.is(await exited, 76)
})

test('a finalizer past its own timeout earns 76 too (timed on the seam clock)', async (t) => {
  const w = world()
  const u = w.unit()
  u.finalizers.add(() => new Promise(() => {}), { name: 'stuck', timeout: 300 })
  const exited = w.seam.nextExit()
  const p = w.life.shutdown(10_000)
  await w.seam.advance(300)
  const r = await p
  t.is(r.code, 76)
  t.deepEqual(r.failedFinalizers, ['stuck'])
  t.true(r.apps[0]!.finalizers[0]!.timedOut)
  t.is(await exited, 76)
})

test('a failing framework close is reported as finalizer "close" and earns 76', async (t) => {
  const w = world()
  const u = w.unit()
  let closes = 0
  u.closeApp = async () => { closes++; throw new Error('close failed') }
  const r = await w.life.shutdown(1_000)
  t.is(closes, 1)
  t.is(r.code, 76)
  t.deepEqual(r.failedFinalizers, ['close'])
})

async function hangingServer (t: ExecutionContext, u: GracefulUnit): Promise<{ entered: Promise<void>, reply: Promise<unknown> }> {
  const entered = deferred()
  const server = http.createServer(() => { entered.resolve() }) // never answers
  u.attach(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as AddressInfo).port
  const reply = new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent: false }, resolve).on('error', resolve)
  })
  return { entered: entered.promise, reply }
}

test('a connection destroyed at the deadline earns exit code 75', async (t) => {
  const w = world()
  const u = w.unit({ timeout: 1_000 })
  const s = await hangingServer(t, u)
  await s.entered
  const exited = w.seam.nextExit()
  const p = w.life.shutdown()
  await w.seam.advance(999)
  t.is(w.life.state, 'draining')
  await w.seam.advance(1)
  const r = await p
  t.is(r.forced, 1)
  t.is(r.apps[0]!.forced, 1)
  t.is(r.code, exitCodes.forced)
  t.is(r.code, 75)
  t.is(await exited, 75)
  const reply = await s.reply
  t.true(reply instanceof Error, 'the client saw its connection cut')
})

test('a failed finalizer outranks a forced drain: 76', async (t) => {
  const w = world()
  const u = w.unit({ timeout: 1_000 })
  u.finalizers.add(() => { throw new Error('x') }, { name: 'bad' })
  const s = await hangingServer(t, u)
  await s.entered
  const p = w.life.shutdown()
  await w.seam.advance(1_000)
  const r = await p
  t.is(r.forced, 1)
  t.is(r.code, 76)
})

test('a crash drains and exits 1, even when a finalizer failed too; more crashes do not start another drain', async (t) => {
  const w = world()
  const u = w.unit()
  u.finalizers.add(() => { throw new Error('x') }, { name: 'bad' })
  const h = hold(u)
  const exited = w.seam.nextExit()
  const boom = new Error('boom')
  t.is(w.seam.crash(boom, 'uncaughtException'), 1, 'one crash subscriber')
  await h.started
  t.is(w.life.state, 'draining')
  t.is(w.seam.crash(new Error('again'), 'unhandledRejection'), 1)
  h.release()
  t.is(await exited, exitCodes.crash)
  const r = await w.life.shutdown()
  t.is(r.code, 1)
  t.is(r.reason, 'crash')
  t.is(r.trigger, 'uncaughtException')
  t.deepEqual(w.seam.exits, [1])
  t.true(w.log.lines.some((l) => l.level === 'error' && /uncaughtException/.test(l.msg)))
})

test('with exit: false a crash still exits 1 once drained (the process would run on with its servers closed); a plain shutdown does not exit', async (t) => {
  const w = world()
  w.unit({ exit: false })
  const exited = w.seam.nextExit()
  w.seam.crash(new Error('boom'), 'uncaughtException')
  t.is(await exited, exitCodes.crash)
  const r = await w.life.shutdown()
  t.is(r.code, 1)
  t.is(r.reason, 'crash')
  t.deepEqual(w.seam.exits, [1])
  const calm = world()
  calm.unit({ exit: false })
  t.is((await calm.life.shutdown(100)).code, 0)
  t.deepEqual(calm.seam.exits, [], 'exit: false without a crash: no exit')
})

test('with exit: false a crash during a code-started drain exits 1 too', async (t) => {
  const w = world()
  const u = w.unit({ exit: false })
  const h = hold(u)
  const exited = w.seam.nextExit()
  const p = w.life.shutdown(1_000)
  await h.started
  w.seam.crash(new Error('late'), 'unhandledRejection')
  h.release()
  t.is(await exited, exitCodes.crash)
  t.is((await p).reason, 'crash')
})

test('a crash during a signal-started drain turns the exit code into 1', async (t) => {
  const w = world()
  const u = w.unit()
  const h = hold(u)
  const exited = w.seam.nextExit()
  w.seam.fire('SIGTERM')
  await h.started
  w.seam.crash(new Error('late'), 'unhandledRejection')
  h.release()
  t.is(await exited, 1)
  const r = await w.life.shutdown()
  t.is(r.reason, 'crash')
  t.is(r.trigger, 'SIGTERM')
})

test('exit is not called when any app has exit: false; the result still carries the code', async (t) => {
  const w = world()
  w.unit({}, 'exits')
  const keep = w.unit({ exit: false }, 'keeps')
  keep.finalizers.add(() => { throw new Error('x') }, { name: 'bad' })
  const r = await w.life.shutdown(1_000)
  await settle()
  t.is(r.code, 76)
  t.deepEqual(w.seam.exits, [])
  t.is(w.life.state, 'stopped')
})

// ---------------------------------------------------------------------------------------------
// Signals through the seam
// ---------------------------------------------------------------------------------------------

test('default signals: SIGTERM, SIGINT, SIGUSR2 and crashes are subscribed; all are removed once stopped', async (t) => {
  const w = world()
  w.unit({ exit: false })
  t.deepEqual(w.seam.subscribedSignals, ['SIGINT', 'SIGTERM', 'SIGUSR2'])
  t.is(w.seam.crashListeners, 1)
  await w.life.shutdown(1_000)
  t.deepEqual(w.seam.subscribedSignals, [])
  t.is(w.seam.crashListeners, 0)
})

test('signals: false subscribes nothing (no crash handling either); a custom map is merged with the defaults, false removes one', (t) => {
  const w = world()
  const u = w.unit({ signals: false })
  t.deepEqual(w.seam.subscribedSignals, [])
  t.is(w.seam.crashListeners, 0)
  w.life.unregister(u)
  const v = w.unit({ signals: { SIGHUP: 'shutdown', SIGUSR1: 'reboot' } })
  t.deepEqual(w.seam.subscribedSignals, ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2'], 'the defaults stay')
  t.is(w.seam.crashListeners, 1)
  w.unit({ signals: { SIGINT: false, SIGUSR2: false }, crash: false })
  t.deepEqual(w.seam.subscribedSignals, ['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGUSR1', 'SIGUSR2'], 'the union over the apps, one listener each')
  t.is(w.seam.listeners('SIGHUP'), 1)
  t.is(w.seam.listeners('SIGTERM'), 1)
  w.life.unregister(v)
  t.deepEqual(w.seam.subscribedSignals, ['SIGTERM'], 'the app left removed SIGINT and SIGUSR2 from its own map')
  t.is(w.seam.crashListeners, 0)
})

test('registering many apps keeps one listener per signal', (t) => {
  const w = world()
  for (let i = 0; i < 5; i++) w.unit({ exit: false }, `app${i}`)
  t.is(w.seam.listeners('SIGTERM'), 1)
  t.is(w.seam.listeners('SIGINT'), 1)
  t.is(w.seam.crashListeners, 1)
})

test('SIGTERM starts a shutdown with the signal as trigger and exits 0', async (t) => {
  const w = world()
  const u = w.unit()
  const triggers: string[] = []
  u.finalizers.add((ctx) => { triggers.push(`${ctx.reason}/${ctx.trigger}`) }, { name: 'x' })
  const exited = w.seam.nextExit()
  t.is(w.seam.fire('SIGTERM'), 1)
  t.is(w.life.state, 'draining')
  t.is(await exited, 0)
  t.deepEqual(triggers, ['shutdown/SIGTERM'])
})

for (const [first, second, code] of [['SIGTERM', 'SIGTERM', 143], ['SIGINT', 'SIGINT', 130], ['SIGINT', 'SIGTERM', 143], ['SIGTERM', 'SIGINT', 130]] as const) {
  test(`a second shutdown signal during the drain exits at once: ${first} then ${second} -> ${code}`, async (t) => {
    const w = world()
    const u = w.unit()
    const h = hold(u)
    w.seam.fire(first)
    await h.started
    t.deepEqual(w.seam.exits, [])
    w.seam.fire(second)
    t.deepEqual(w.seam.exits, [code], 'synchronously, without waiting for the drain')
    h.release()
  })
}

test('a second signal with exit: false still exits at once (the operator insists)', async (t) => {
  const w = world()
  const u = w.unit({ exit: false })
  const h = hold(u)
  w.seam.fire('SIGTERM')
  await h.started
  w.seam.fire('SIGTERM')
  t.deepEqual(w.seam.exits, [143])
  h.release()
})

// A shutdown signal during a drain that no shutdown signal started is not a "second" signal: it joins
// the drain (systemd's SIGTERM to the whole cgroup on `systemctl stop` reaches an old process that is
// still draining after `systemctl reload`; its in-flight requests must finish).
const NON_SIGNAL_STARTS: Array<[string, (w: World) => void, number]> = [
  // What lib/routes/admin.ts calls once the 202 is written.
  ['the admin route', (w) => { void w.life.shutdown(1_000, { reason: 'shutdown', trigger: 'admin' }) }, exitCodes.finalizerFailed],
  ['code (app.shutdown())', (w) => { void w.life.shutdown(1_000) }, exitCodes.finalizerFailed],
  ['a crash', (w) => { w.seam.crash(new Error('boom'), 'uncaughtException') }, exitCodes.crash]
]

for (const [what, start, code] of NON_SIGNAL_STARTS) {
  test(`a first SIGTERM during a drain started by ${what} joins it: no exit until the drain ends, with the drain's own code ${code}`, async (t) => {
    const w = world()
    const u = w.unit()
    u.finalizers.add(() => { throw new Error('x') }, { name: 'bad' }) // gives the drain a code of its own (76)
    const h = hold(u)
    const exited = w.seam.nextExit()
    start(w)
    await h.started
    t.is(w.life.state, 'draining')
    t.is(w.seam.fire('SIGTERM'), 1)
    await settle()
    t.deepEqual(w.seam.exits, [], 'no exit at once')
    t.is(w.life.state, 'draining')
    t.true(w.log.lines.some((l) => l.level === 'info' && /SIGTERM received during a drain .*joining it/.test(l.msg)), JSON.stringify(w.log.lines.map((l) => l.msg)))
    h.release()
    t.is(await exited, code)
    await settle()
    t.deepEqual(w.seam.exits, [code])
  })
}

test('a shutdown signal after one that joined a drain is a second signal: exit at once', async (t) => {
  const w = world()
  const u = w.unit()
  const h = hold(u)
  void w.life.shutdown(1_000, { reason: 'shutdown', trigger: 'admin' })
  await h.started
  w.seam.fire('SIGTERM')
  t.deepEqual(w.seam.exits, [])
  w.seam.fire('SIGINT')
  t.deepEqual(w.seam.exits, [130])
  t.true(w.log.lines.some((l) => l.level === 'error' && /second shutdown signal SIGINT \(after SIGTERM\)/.test(l.msg)))
  h.release()
})

test('the memory of a signal ends with the shutdown: after a restart (exit: false, register again) a first SIGTERM joins again', async (t) => {
  const w = world()
  const first = w.unit({ exit: false }, 'first')
  const h1 = hold(first)
  w.seam.fire('SIGTERM')
  await h1.started
  h1.release()
  await w.life.shutdown()
  const second = w.unit({ exit: false }, 'second')
  const h2 = hold(second)
  const p = w.life.shutdown(1_000)
  await h2.started
  w.seam.fire('SIGTERM')
  t.deepEqual(w.seam.exits, [], 'the SIGTERM of the earlier shutdown does not count')
  h2.release()
  t.is((await p).code, 0)
})

function tempPidFile (t: ExecutionContext, content: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-pid-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const file = path.join(dir, 'app.pid')
  fs.writeFileSync(file, content)
  return file
}

test('the exit at once of a second signal removes the PID file that holds this pid', async (t) => {
  const w = world()
  const file = tempPidFile(t, `${w.seam.pid}\n`)
  const u = w.unit({ pidFile: file })
  const h = hold(u)
  w.seam.fire('SIGTERM')
  await h.started
  t.true(fs.existsSync(file), 'kept while draining')
  w.seam.fire('SIGTERM')
  t.deepEqual(w.seam.exits, [143])
  t.false(fs.existsSync(file))
  h.release()
})

test('the exit at once of a second signal leaves a PID file that holds another pid (a successor)', async (t) => {
  const w = world()
  const file = tempPidFile(t, '5151\n')
  const u = w.unit({ pidFile: file })
  const h = hold(u)
  w.seam.fire('SIGTERM')
  await h.started
  w.seam.fire('SIGTERM')
  t.deepEqual(w.seam.exits, [143])
  t.is(fs.readFileSync(file, 'utf8'), '5151\n')
  h.release()
})

test('two apps that map one signal to different actions: the first registered keeps it, and a warning names both', async (t) => {
  const w = world()
  const a = w.unit({ exit: false, signals: { SIGHUP: 'shutdown' } }, 'a')
  w.unit({ exit: false, signals: { SIGHUP: 'reboot' } }, 'b')
  const warning = w.log.lines.find((l) => l.level === 'warn' && /signal map conflict/.test(l.msg))
  t.truthy(warning, 'the conflict is logged at register')
  t.regex(warning?.msg ?? '', /SIGHUP is 'reboot' in app 2 \(b\) but 'shutdown' in app 1 \(a\), registered earlier; SIGHUP will shut down/)
  t.is(w.seam.listeners('SIGHUP'), 1)
  const h = hold(a)
  w.seam.fire('SIGHUP')
  await h.started
  t.is(w.life.state, 'draining', 'SIGHUP shut down (the first app\'s action), it did not reboot')
  t.like(w.life.shutdownCause, { reason: 'shutdown', trigger: 'SIGHUP' })
  h.release()
  await w.life.shutdown()

  const v = world()
  v.unit({ exit: false, signals: { SIGHUP: 'reboot' } }, 'c')
  v.unit({ exit: false, signals: { SIGHUP: 'shutdown', SIGUSR2: false } }, 'd')
  const warnings = v.log.lines.filter((l) => l.level === 'warn')
  t.is(warnings.length, 1, 'false is no conflict: SIGUSR2 stays with the app that maps it')
  t.regex(warnings[0]?.msg ?? '', /SIGHUP is 'shutdown' in app 2 \(d\) but 'reboot' in app 1 \(c\), registered earlier; SIGHUP will reboot/)
})

test('a reboot signal during a drain is ignored and logged', async (t) => {
  const w = world()
  const u = w.unit()
  const h = hold(u)
  w.seam.fire('SIGTERM')
  await h.started
  w.seam.fire('SIGUSR2')
  await settle()
  t.deepEqual(w.seam.exits, [])
  t.is(w.life.state, 'draining')
  t.true(w.log.lines.some((l) => l.level === 'warn' && /SIGUSR2 ignored/.test(l.msg)))
  const exited = w.seam.nextExit()
  h.release()
  t.is(await exited, 0)
})

test('a shutdown mapped to a custom signal works like SIGTERM, with 128 + its number on the second', async (t) => {
  const w = world()
  const u = w.unit({ signals: { SIGHUP: 'shutdown', SIGTERM: false } })
  const h = hold(u)
  t.is(w.seam.fire('SIGTERM'), 0, 'SIGTERM is removed from this map')
  t.is(w.life.state, 'running')
  w.seam.fire('SIGHUP')
  await h.started
  w.seam.fire('SIGHUP')
  t.deepEqual(w.seam.exits, [129])
  h.release()
})

// ---------------------------------------------------------------------------------------------
// GracefulUnit
// ---------------------------------------------------------------------------------------------

test('GracefulUnit.shutdown is idempotent, runs the framework close once after the drain', async (t) => {
  const seam = new FakeSeam()
  const u = new GracefulUnit('u', resolveOptions({}), memoryLogger(), seam)
  const order: string[] = []
  u.finalizers.add(() => { order.push('finalizer') }, { name: 'f' })
  u.closeApp = async () => { order.push('close') }
  t.false(u.isDraining)
  const a = u.shutdown(seam.now() + 1_000, 'close', 'close')
  const b = u.shutdown(seam.now() + 9_000, 'shutdown', 'SIGTERM')
  t.is(a, b)
  t.true(u.isDraining)
  const r = await a
  t.deepEqual(order, ['finalizer', 'close'])
  t.like(r, { name: 'u', forced: 0, forcedUpgraded: 0, graphError: undefined })
  t.is(await u.drain(seam.now(), 'shutdown', 'x'), r, 'drain() returns the same result')
})

test('a shutdown result has the documented shape', async (t) => {
  const w = world()
  w.unit({ exit: false }, 'shape')
  w.seam.fire('SIGINT')
  const r: ShutdownResult = await w.life.shutdown()
  t.deepEqual(Object.keys(r).sort(), ['apps', 'code', 'failedFinalizers', 'forced', 'ms', 'reason', 'trigger'])
  t.like(r, { code: 0, reason: 'shutdown', trigger: 'SIGINT', forced: 0, failedFinalizers: [] })
  t.is(typeof r.ms, 'number')
  t.deepEqual(Object.keys(r.apps[0]!).sort(), ['finalizers', 'forced', 'forcedUpgraded', 'graphError', 'http2', 'idleClosed', 'kept', 'ms', 'name', 'transferred'])
  t.deepEqual(r.apps[0]!.http2, { sessions: { drained: 0, forced: 0 }, streams: { drained: 0, forced: 0 } })
})

test('a shutdown with no app registered drains nothing and does not end the process', async (t) => {
  const w = world()
  const r = await w.life.shutdown(100)
  t.is(r.code, 0)
  t.deepEqual(r.apps, [])
  await settle()
  t.deepEqual(w.seam.exits, [])
})
