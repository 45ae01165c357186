// Runs in the test process: the reboot state machine (lib/lifecycle.ts, lib/outgoing/)
// driven through a fake process seam and a fake spawn: guards, rollback, timeout, abort by a
// shutdown, and the hand-over on ready, with no fork.
import { EventEmitter } from 'node:events'
import type { SpawnOptions } from 'node:child_process'
import type * as net from 'node:net'
import test from 'ava'
import { Inherited } from '../lib/incoming/inherited'
import { ParentChannel } from '../lib/incoming/parent'
import type { HandoffEvent } from '../lib/events'
import { RELAY_WINDOW_MS } from '../lib/signals'
import { ABORT_MESSAGE, ADOPTION_MESSAGE, COMMIT_MESSAGE, CONNECTION_MESSAGE, PING_MESSAGE, PONG_MESSAGE, REVOKE_MESSAGE, FAILING_MESSAGE, READY_MESSAGE, STATEFUL_ENV, TAKEN_MESSAGE } from '../lib/handoff/protocol'
import { ROLLBACK_GRACE_MS, TAKEN_TIMEOUT_MS, startSuccessor } from '../lib/outgoing/spawn'
import { HEARTBEAT_INTERVAL_MS, Heartbeat, UNRESPONSIVE_MS } from '../lib/outgoing/heartbeat'
import { Standby } from '../lib/outgoing/standby'
import { CLUSTER_EXIT_LINGER_MS, ProcessLifecycle, lifecycle, type LifecycleHost } from '../lib/lifecycle'
import type { LauncherFacts } from '../lib/launcher'
import { RebootError } from '../lib/errors'
import { MAX_MS } from '../lib/limits'
import { resolveOptions, type GracefulOptions } from '../lib/options'
import { GracefulUnit } from '../lib/drain/app'
import { FakeSeam, deferred, memoryLogger, pretendListening, settle } from './fixtures/finalizer-fake-seam'

class FakeChild extends EventEmitter {
  readonly pid = 5151
  connected = true
  exitCode: number | null = null
  signalCode: NodeJS.Signals | null = null
  killedWith: string | undefined
  disconnected = false
  unrefed = false
  channel = null
  kill (signal: NodeJS.Signals): boolean {
    this.killedWith = signal
    this.exit(null, signal)
    return true
  }

  exit (code: number | null, signal: NodeJS.Signals | null): void {
    this.exitCode = code
    this.signalCode = signal
    this.emit('exit', code, signal)
  }

  readonly sent: unknown[] = []
  /** Handles sent along with messages (connections), in order. */
  readonly handles: unknown[] = []
  /** true: a message with a handle is written only when `write()` says so (Node writes a queued handle once the one before is acknowledged). */
  holdHandles = false
  /** false: a successor whose event loop is blocked (pings go unanswered). */
  answerPings = true
  pings = 0
  private readonly unwritten: Array<(err: Error | null) => void> = []
  /** true: send() returns false as Node's does over a backlog of unsent messages (it still delivers them). */
  backlog = false
  send (message: unknown, ...rest: unknown[]): boolean {
    if (!this.connected) return false
    if (this.backlog) return this.sendNow(message, rest) && false
    return this.sendNow(message, rest)
  }

  private sendNow (message: unknown, rest: unknown[]): boolean {
    const m = message as { type?: string, n?: number }
    if (m.type === PING_MESSAGE) {
      this.pings++
      // The successor's event loop answers, unless the test blocks it.
      if (this.answerPings) queueMicrotask(() => { this.emit('message', { type: PONG_MESSAGE, n: m.n }) })
      return true
    }
    this.sent.push(message)
    const handle = rest.length > 1 && rest[0] !== undefined && rest[0] !== null
    if (handle) this.handles.push(rest[0])
    const cb = rest.find((r) => typeof r === 'function') as ((err: Error | null) => void) | undefined
    if (handle && this.holdHandles) this.unwritten.push(cb ?? (() => {}))
    else cb?.(null)
    return true
  }

  /** Writes the oldest held handle: its send callback runs. */
  write (): void { this.unwritten.shift()?.(null) }

  disconnect (): void { this.disconnected = true; this.connected = false; this.emit('disconnect') }
  unref (): void { this.unrefed = true }
}

interface Spawned { command: string, args: readonly string[], options: SpawnOptions }

function world (seam = new FakeSeam(), host: Partial<LifecycleHost> = {}, options: GracefulOptions = { rebootProbation: 0 }): { seam: FakeSeam, life: ProcessLifecycle, child: FakeChild, spawned: Spawned[], events: HandoffEvent[], unit: GracefulUnit, log: ReturnType<typeof memoryLogger> } {
  const child = new FakeChild()
  const spawned: Spawned[] = []
  const life = new ProcessLifecycle(seam, {
    spawn: (command, args, options) => {
      spawned.push({ command, args, options })
      return child as never
    },
    execPath: '/usr/bin/node',
    execArgv: ['--enable-source-maps'],
    argv: ['/srv/app/server.js', '--port', '3000'],
    cwd: '/srv/app',
    env: { PATH: '/usr/bin', LISTEN_PID: '99' },
    isClusterWorker: false,
    exitingInit: () => undefined,
    terminalSession: () => undefined,
    launcherFacts: () => ({ ancestors: [{ pid: 1000, comm: 'bash', argv: ['-bash'] }], env: {} }),
    inherited: () => new Inherited([], undefined, false),
    send: () => false,
    onParentMessage: () => () => {},
    ...host
  })
  pretendListening(life)
  const log = memoryLogger()
  const unit = new GracefulUnit('app', resolveOptions({ rebootTimeout: 2000, timeout: 1000, ...options }), log, seam)
  life.register(unit)
  const events: HandoffEvent[] = []
  life.on('handoff', (e) => { events.push(e) })
  return { seam, life, child, spawned, events, unit, log }
}

test('reboot is refused, with nothing spawned, on Windows, in a cluster worker, as PID 1 and as the child of tini', async (t) => {
  class WindowsSeam extends FakeSeam { override readonly platform: NodeJS.Platform = 'win32' }
  const pid1 = new FakeSeam()
  Object.defineProperty(pid1, 'pid', { value: 1 })
  const cases = [
    { w: world(new WindowsSeam()), re: /Windows/ },
    { w: world(new FakeSeam(), { isClusterWorker: true }), re: /cluster worker/ },
    { w: world(pid1), re: /PID 1.*tini -- graceful-reboot run/ },
    { w: world(new FakeSeam(), { exitingInit: () => 'tini' }), re: /direct child of tini/ }
  ]
  for (const { w, re } of cases) {
    const err = await t.throwsAsync(w.life.reboot(1000), { code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', message: re })
    t.truthy(err)
    t.is(w.spawned.length, 0)
    t.is(w.life.state, 'running')
  }
})

test('reboot is refused, with nothing spawned, as the session leader of a terminal or in its process group; a job of an interactive shell reboots', async (t) => {
  const leader = { tty: '/dev/pts/3', pid: 700, pgrp: 700, session: 700, foreground: 700 }
  const inLeadersGroup = { tty: '/dev/pts/3', pid: 701, pgrp: 700, session: 700, foreground: 700 }
  for (const [term, re] of [
    [leader, /^cannot reboot: this process \(700\) is the session leader of the terminal \/dev\/pts\/3; .*kills the successor \(SIGHUP\).*systemd or PM2.*interactive shell.*setsid node app/],
    [inLeadersGroup, /^cannot reboot: this process \(701\) is in the process group of the session leader 700 of the terminal \/dev\/pts\/3/]
  ] as const) {
    const w = world(new FakeSeam(), { terminalSession: () => term })
    await t.throwsAsync(w.life.reboot(1000), { instanceOf: RebootError, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', message: re })
    t.is(w.spawned.length, 0)
    t.is(w.life.state, 'running')
  }
  // bash in a tmux pane, then `node app`: a process group of its own, the shell leads the session.
  const job = world(new FakeSeam(), { terminalSession: () => ({ tty: '/dev/pts/3', pid: 702, pgrp: 702, session: 650, foreground: 702 }) })
  t.is(job.life.canReboot(), undefined)
  void job.life.reboot(1000).catch(() => {})
  t.is(job.spawned.length, 1)
})

const NODEMON = (): LauncherFacts => ({ ancestors: [{ pid: 300, comm: 'node', argv: ['node', '/srv/app/node_modules/.bin/nodemon', 'server.js'] }], env: {} })
const NPM_START = (): LauncherFacts => ({
  ancestors: [{ pid: 301, comm: 'sh', argv: ['sh', '-c', 'node server.js'] }, { pid: 300, comm: 'npm start', argv: ['npm start'] }],
  env: { npm_lifecycle_event: 'start' }
})

test('under npm, nodemon, node --watch: reboot is refused with nothing spawned, naming the launcher and the fix', async (t) => {
  const cases = [
    { facts: NPM_START, re: /^cannot reboot under npm run start \(parent 300: npm start \(through 301: sh -c node server\.js\)\): npm exits when this process exits.*run node directly.*launcher: 'ignore' reboots anyway$/ },
    { facts: NODEMON, re: /^cannot reboot under nodemon \(parent 300: node .*nodemon server\.js\): nodemon restarts this process itself/ },
    { facts: (): LauncherFacts => ({ ancestors: [{ pid: 300, comm: 'node', argv: ['node', '--watch', 'server.js'] }], env: {} }), re: /^cannot reboot under node --watch/ }
  ]
  for (const { facts, re } of cases) {
    const w = world(new FakeSeam(), { launcherFacts: facts })
    await t.throwsAsync(w.life.reboot(1000), { instanceOf: RebootError, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', message: re })
    t.is(w.life.canReboot()?.code, 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'what /reboot answers 501 with')
    t.is(w.spawned.length, 0)
    t.is(w.life.state, 'running')
    t.true(w.log.lines.some((l) => l.level === 'info' && /running under .*reboot is refused/.test(l.msg)), 'said once at start-up')
  }
})

const PM2_CLUSTER = (): LauncherFacts => ({
  ancestors: [{ pid: 200, comm: 'PM2 v7.0.4: God', argv: ['PM2 v7.0.4: God Daemon (/root/.pm2)'] }],
  env: { pm_id: '1', exec_mode: 'cluster_mode' }
})

test('under PM2, "ready" goes to PM2 once the app serves (for wait_ready); a drain timeout above kill_timeout is warned about once, naming both', async (t) => {
  const sent: unknown[] = []
  const send = (m: unknown): boolean => { sent.push(m); return true }
  const pm2 = world(new FakeSeam(), { launcherFacts: PM2_CLUSTER, send }, { rebootProbation: 0, timeout: 30_000 })
  t.deepEqual(sent, [], 'nothing before the app serves')
  pm2.life.announceReady()
  t.deepEqual(sent, ['ready'])
  const warnings = pm2.log.lines.filter((l) => l.level === 'warn' && /kill_timeout/.test(l.msg))
  t.is(warnings.length, 1)
  t.regex(warnings[0]?.msg ?? '', /PM2's kill_timeout \(1600 ms, its default\) is shorter than the drain timeout \(30000 ms\).*--kill-timeout 31000/)
  pm2.life.register(new GracefulUnit('second', resolveOptions({ timeout: 30_000 }), pm2.log, pm2.seam))
  t.is(pm2.log.lines.filter((l) => l.level === 'warn' && /kill_timeout/.test(l.msg)).length, 1, 'once per process')

  const long = world(new FakeSeam(), { launcherFacts: PM2_CLUSTER, send, env: { kill_timeout: '40000' } }, { rebootProbation: 0, timeout: 30_000 })
  t.false(long.log.lines.some((l) => /kill_timeout/.test(l.msg)), 'kill_timeout 40000 leaves room for a 30 s drain')
  const alone = world(new FakeSeam(), { send }, { rebootProbation: 0, timeout: 30_000 })
  sent.length = 0
  alone.life.announceReady()
  t.deepEqual(sent, [], 'no PM2, no message')
  t.false(alone.log.lines.some((l) => /kill_timeout/.test(l.msg)))
})

test('under npm, SIGUSR2 is refused like reboot(): logged, nothing spawned, still serving', async (t) => {
  const { seam, life, spawned, log } = world(new FakeSeam(), { launcherFacts: NPM_START })
  t.is(seam.fire('SIGUSR2'), 1)
  await settle()
  t.is(spawned.length, 0)
  t.is(life.state, 'running')
  t.true(log.lines.some((l) => l.level === 'warn' && /reboot refused: cannot reboot under npm run start/.test(l.msg) && (l.obj as { code?: string }).code === 'ERR_GRACEFUL_REBOOT_UNSUPPORTED'), 'one warning with its code')
  t.false(log.lines.some((l) => l.level === 'error'), 'no error: nothing went wrong')
})

test('launcher: \'ignore\' reboots under npm (the user opted in), and SIGUSR2 reboots under nodemon', async (t) => {
  const a = world(new FakeSeam(), { launcherFacts: NPM_START }, { rebootProbation: 0, launcher: 'ignore' })
  t.is(a.life.canReboot(), undefined)
  const p = a.life.reboot(1000)
  await settle()
  t.is(a.spawned.length, 1)
  a.child.emit('message', { type: READY_MESSAGE })
  t.is(await p, 5151)
  const b = world(new FakeSeam(), { launcherFacts: NODEMON }, { rebootProbation: 0, launcher: 'ignore' })
  b.seam.fire('SIGUSR2')
  await settle()
  t.is(b.spawned.length, 1, 'SIGUSR2 reboots as the signal map says')
  t.false(b.log.lines.some((l) => /running under/.test(l.msg)))
})

test('under nodemon, SIGUSR2 drains, a repeat joins the drain, and the process ends by SIGUSR2; SIGTERM then still drains', async (t) => {
  const { seam, life, spawned, unit, log } = world(new FakeSeam(), { launcherFacts: NODEMON })
  const release = deferred()
  unit.finalizers.add(() => release.promise, { name: 'slow' })
  const exited = seam.nextExit()
  t.is(seam.fire('SIGUSR2'), 1)
  await settle()
  t.is(life.state, 'draining')
  t.is(spawned.length, 0, 'no successor')
  t.is(life.shutdownCause?.trigger, 'SIGUSR2')
  seam.fire('SIGUSR2')
  seam.fire('SIGUSR2')
  await settle()
  t.deepEqual(seam.exits, [], 'nodemon sends SIGUSR2 again while it waits: not a second signal')
  release.resolve()
  t.is(await exited, 0)
  t.deepEqual(seam.signalExits, ['SIGUSR2'], 'ended by SIGUSR2, which nodemon restarts on')
  t.true(log.lines.some((l) => /SIGUSR2 received from nodemon: draining, then exiting by SIGUSR2/.test(l.msg)))

  // Ctrl-C after a restart started: the first shutdown signal joins, the next exits at once.
  const w = world(new FakeSeam(), { launcherFacts: NODEMON })
  const hold = deferred()
  w.unit.finalizers.add(() => hold.promise, { name: 'slow' })
  w.seam.fire('SIGUSR2')
  await settle()
  w.seam.fire('SIGINT')
  await settle()
  t.deepEqual(w.seam.exits, [])
  // Past the window in which nodemon's copy of the same Ctrl-C arrives.
  await w.seam.advance(RELAY_WINDOW_MS)
  w.seam.fire('SIGINT')
  t.deepEqual(w.seam.exits, [130])
  hold.resolve()
})

test('under nodemon --signal SIGHUP, SIGHUP restarts when the map has it; { SIGUSR2: false } leaves SIGUSR2 alone', async (t) => {
  const hup = (): LauncherFacts => ({ ancestors: [{ pid: 300, comm: 'node', argv: ['node', '/usr/bin/nodemon', '--signal', 'SIGHUP', 'server.js'] }], env: {} })
  const a = world(new FakeSeam(), { launcherFacts: hup }, { rebootProbation: 0, signals: { SIGHUP: 'reboot' } })
  const exited = a.seam.nextExit()
  a.seam.fire('SIGHUP')
  t.is(await exited, 0)
  t.deepEqual(a.seam.signalExits, ['SIGHUP'])
  t.is(a.spawned.length, 0)
  const b = world(new FakeSeam(), { launcherFacts: NODEMON }, { rebootProbation: 0, signals: { SIGUSR2: false } })
  t.deepEqual(b.seam.subscribedSignals, ['SIGINT', 'SIGTERM'])
})

test('a reboot deadline above what a Node timer can wait is refused, with nothing spawned', async (t) => {
  const { life, spawned } = world()
  await t.throwsAsync(life.reboot(3e9), { code: 'ERR_GRACEFUL_INVALID_OPTION', message: /at most 2147483647 ms.*got 3000000000/ })
  t.is(spawned.length, 0)
  t.is(life.state, 'running')
})

test('a stateful successor waits at most what a timer can wait, even with the longest deadline', async (t) => {
  const { life, child, spawned } = world()
  const p = life.reboot(MAX_MS, { stateful: true })
  await settle()
  t.is(spawned[0]?.options.env?.[STATEFUL_ENV], String(MAX_MS), 'deadline + margin, capped')
  child.emit('message', { type: READY_MESSAGE })
  t.is(await p, 5151)
})

test('the successor is the same command line, through sh for LISTEN_PID, stdio inherited, then IPC and the state pipe', async (t) => {
  const { seam, life, child, spawned } = world()
  const p = life.reboot(1000)
  await settle()
  t.is(spawned.length, 1)
  const s = spawned[0] as Spawned
  t.is(s.command, '/bin/sh')
  t.deepEqual(s.args.slice(2), ['/usr/bin/node', '--enable-source-maps', '/srv/app/server.js', '--port', '3000'])
  t.regex(s.args[1] as string, /LISTEN_PID=\$\$.*exec "\$0" "\$@"/)
  t.is(s.options.cwd, '/srv/app')
  t.deepEqual(s.options.stdio, ['inherit', 'inherit', 'inherit', 'ipc', 'pipe'], 'the state pipe after the IPC channel')
  t.is(s.options.env?.GRACEFUL_REBOOT_STATE_FD, '4')
  t.is(s.options.env?.LISTEN_FDS, '0')
  t.is(s.options.env?.LISTEN_PID, undefined, 'a stale LISTEN_PID is not passed on')
  t.is(s.options.env?.GRACEFUL_REBOOT_PARENT_PID, '4242')
  t.is(s.options.env?.PATH, '/usr/bin')
  const exited = seam.nextExit()
  child.emit('message', { type: READY_MESSAGE })
  t.is(await p, 5151)
  t.false(child.disconnected, 'the channel stays open while connections move to the successor')
  await exited
  t.true(child.disconnected, 'and is released once the drain is over')
  t.true(child.unrefed)
})

test('on ready: handoff events in order, then the old process drains and exits 0', async (t) => {
  const { seam, life, child, events } = world()
  const exited = seam.nextExit()
  const p = life.reboot(1000)
  await settle()
  t.is(life.state, 'rebooting')
  child.emit('message', { type: READY_MESSAGE })
  await p
  t.is(await exited, 0)
  t.deepEqual(events.map((e) => e.step), ['spawned', 'ready', 'serving', 'drained'])
  t.is(life.state, 'stopped')
})

test('a second reboot while one is in flight is refused at once; a successor that exits is rolled back', async (t) => {
  const { life, child, events } = world()
  const first = life.reboot(1000)
  await t.throwsAsync(life.reboot(1000), { code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' })
  child.exit(3, null)
  const err = await t.throwsAsync(first, { code: 'ERR_GRACEFUL_SUCCESSOR_EXITED', message: /exited with code 3 before it was ready/ })
  t.is((err as { successorPid?: number }).successorPid, 5151)
  t.is(life.state, 'running', 'keeps serving')
  t.deepEqual(events.map((e) => e.step), ['spawned', 'refused', 'failed'], 'the refusal is a step too')
})

test('a successor that stays silent is asked to drain at rebootTimeout, and killed only after the rollback grace', async (t) => {
  const { seam, life, child } = world()
  const p = life.reboot(1000)
  const failed = t.throwsAsync(p, { code: 'ERR_GRACEFUL_SUCCESSOR_TIMEOUT', message: /not ready within 2000 ms/ })
  await seam.advance(1999)
  t.deepEqual(child.sent, [])
  await seam.advance(1)
  await failed
  t.deepEqual(child.sent, [{ type: ABORT_MESSAGE, timeout: ROLLBACK_GRACE_MS }], 'asked to drain what it may have accepted')
  t.is(child.killedWith, undefined)
  t.is(life.state, 'running')
  await seam.advance(ROLLBACK_GRACE_MS + 500)
  t.is(child.killedWith, 'SIGKILL', 'killed once the grace is over')
})

test('a rolled-back successor without an IPC channel gets SIGTERM, not SIGKILL', async (t) => {
  const { seam, life, child } = world()
  const p = life.reboot(1000)
  child.connected = false
  const failed = t.throwsAsync(p, { code: 'ERR_GRACEFUL_SUCCESSOR_TIMEOUT' })
  await seam.advance(2000)
  await failed
  t.is(child.killedWith, 'SIGTERM')
})

test('a shutdown during a reboot wins: the successor is asked to drain, reboot() rejects as aborted, the drain runs', async (t) => {
  const { life, child } = world()
  const reboot = life.reboot(1000)
  const aborted = t.throwsAsync(reboot, { code: 'ERR_GRACEFUL_REBOOT_ABORTED' })
  const shutdown = life.shutdown(1000)
  await aborted
  t.deepEqual(child.sent, [{ type: ABORT_MESSAGE, timeout: ROLLBACK_GRACE_MS }])
  const result = await shutdown
  t.is(result.reason, 'shutdown')
  t.is(life.state, 'stopped')
  await t.throwsAsync(life.reboot(1000), { code: 'ERR_GRACEFUL_SHUTTING_DOWN' })
})

test('probation: reboot() resolves only after the window, and the old process drains only then', async (t) => {
  const { seam, life, child, events } = world(new FakeSeam(), {}, { rebootProbation: 1000 })
  const p = life.reboot(1000)
  let resolved = false
  void p.then(() => { resolved = true })
  child.emit('message', { type: READY_MESSAGE })
  await settle()
  t.deepEqual(events.map((e) => e.step), ['spawned', 'ready'])
  await seam.advance(999)
  t.false(resolved)
  t.is(life.state, 'rebooting', 'both processes serve')
  t.false(child.disconnected)
  await seam.advance(1)
  t.is(await p, 5151)
  t.true(child.disconnected, 'the channel is released after probation')
  await settle()
  t.is(life.state === 'draining' || life.state === 'stopped', true)
})

test('probation: a successor that reports it shuts down within the window rolls back at once; the old process keeps serving', async (t) => {
  const { seam, life, child, events } = world(new FakeSeam(), {}, { rebootProbation: 1000 })
  const p = life.reboot(1000)
  const failed = t.throwsAsync(p, { code: 'ERR_GRACEFUL_SUCCESSOR_PROBATION', message: /started shutting down \(uncaughtException\) within the 1000 ms probation/ })
  child.emit('message', { type: READY_MESSAGE })
  await seam.advance(200)
  child.emit('message', { type: FAILING_MESSAGE, pid: 5151, reason: 'crash', trigger: 'uncaughtException' })
  await failed
  t.is(life.state, 'running')
  t.deepEqual(events.map((e) => e.step), ['spawned', 'ready', 'failed'])
  t.deepEqual(seam.exits, [])
})

test('probation: a successor whose channel closes or that exits within the window rolls back too', async (t) => {
  for (const how of ['disconnect', 'exit'] as const) {
    const { seam, life, child } = world(new FakeSeam(), {}, { rebootProbation: 1000 })
    const p = life.reboot(1000)
    const failed = t.throwsAsync(p, { code: 'ERR_GRACEFUL_SUCCESSOR_PROBATION', message: how === 'exit' ? /was killed by SIGSEGV/ : /closed its IPC channel/ })
    child.emit('message', { type: READY_MESSAGE })
    await seam.advance(10)
    if (how === 'exit') child.exit(null, 'SIGSEGV')
    else child.disconnect()
    await failed
    t.is(life.state, 'running', how)
  }
})

test('a successor that listens on an address it did not inherit fails the reboot at once with the adoption error', async (t) => {
  const { life, child } = world()
  const p = life.reboot(1000)
  child.emit('message', { type: ADOPTION_MESSAGE, pid: 5151, asked: 'tcp:127.0.0.1:4000', inherited: ['tcp:127.0.0.1:3000'] })
  await t.throwsAsync(p, { code: 'ERR_GRACEFUL_ADOPTION', message: /listens on tcp:127\.0\.0\.1:4000.*inherited tcp:127\.0\.0\.1:3000/ })
  t.is(life.state, 'running')
  t.deepEqual(child.sent, [{ type: ABORT_MESSAGE, timeout: ROLLBACK_GRACE_MS }])
})

test('an aborted reboot (SIGUSR2, then SIGTERM before the successor is ready) logs that it drains, not that it still serves', async (t) => {
  const { seam, life, child, log } = world()
  const exited = seam.nextExit()
  t.is(seam.fire('SIGUSR2'), 1)
  await settle()
  t.is(life.state, 'rebooting')
  seam.fire('SIGTERM')
  await settle()
  t.deepEqual(child.sent, [{ type: ABORT_MESSAGE, timeout: ROLLBACK_GRACE_MS }], 'the successor is asked to drain')
  t.is(await exited, 0)
  const msgs = log.lines.map((l) => `${l.level}: ${l.msg}`)
  t.true(msgs.some((m) => /^warn: .*reboot aborted by a shutdown; successor stopped; draining/.test(m)), msgs.join('\n'))
  t.false(msgs.some((m) => /still serving/.test(m)), msgs.join('\n'))
})

test('a first SIGTERM reaching the old process while it drains after a reboot (systemctl stop after reload) joins the drain', async (t) => {
  const { seam, life, child, unit, log } = world()
  const gate = deferred()
  const started = deferred()
  unit.finalizers.add(async () => { started.resolve(); await gate.promise }, { name: 'hold' })
  unit.finalizers.add(() => { throw new Error('x') }, { name: 'bad' }) // the drain's own code: 76
  const exited = seam.nextExit()
  const p = life.reboot(1000, { trigger: 'SIGUSR2' })
  await settle()
  child.emit('message', { type: READY_MESSAGE })
  t.is(await p, 5151)
  await started.promise
  t.is(life.state, 'draining')
  t.like(life.shutdownCause, { reason: 'reboot', trigger: 'SIGUSR2' })
  seam.fire('SIGTERM')
  await settle()
  t.deepEqual(seam.exits, [], 'the in-flight work of the old process is not cut')
  t.true(log.lines.some((l) => /SIGTERM received during a drain \(reboot, started by SIGUSR2\): joining it/.test(l.msg)))
  gate.resolve()
  t.is(await exited, 76)
  t.deepEqual(seam.exits, [76])
})

test("Fastify bound to 'localhost' (one socket per address) refuses to reboot, naming the fix", async (t) => {
  const Fastify = (await import('fastify')).default
  const graceful = (await import('../index')).default
  const app = Fastify()
  await app.register(graceful, { exit: false, signals: false })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  // What Fastify reports after listen({ host: 'localhost' }) where localhost has an IPv4 and an IPv6
  // address (this machine resolves it to 127.0.0.1 only, so the second binding is simulated).
  app.addresses = () => [{ address: '127.0.0.1', family: 'IPv4', port }, { address: '::1', family: 'IPv6', port }]
  await t.throwsAsync(app.reboot(1000), { code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', message: /127\.0\.0\.1:\d+ and ::1:\d+.*'localhost'.*listen on host '127\.0\.0\.1', '::1' or '0\.0\.0\.0'/ })
  t.is(lifecycle().state, 'running')
})

test('a cluster worker (PM2 cluster mode) stays up a moment after its drain before it exits', async (t) => {
  const { seam, life } = world(new FakeSeam(), { isClusterWorker: true })
  const exited = seam.nextExit()
  const result = await life.shutdown(1000)
  t.is(result.code, 0)
  await seam.advance(CLUSTER_EXIT_LINGER_MS - 1)
  t.deepEqual(seam.exits, [], 'not yet: a connection handed over by the primary may still arrive')
  await seam.advance(1)
  t.is(await exited, 0)
})

test('under npm, one Ctrl-C arriving twice (from the terminal and passed on by npm) is one signal; a later one exits at once', async (t) => {
  const { seam, life, unit } = world(new FakeSeam(), { launcherFacts: NPM_START })
  const release = deferred()
  unit.finalizers.add(() => release.promise, { name: 'slow' })
  t.true(life.signalsRelayed)
  seam.fire('SIGINT')
  await settle()
  t.is(life.state, 'draining')
  await seam.advance(RELAY_WINDOW_MS - 1)
  seam.fire('SIGINT')
  await settle()
  t.deepEqual(seam.exits, [], 'the relayed copy joins the drain')
  await seam.advance(1)
  seam.fire('SIGINT')
  t.deepEqual(seam.exits, [130], 'a Ctrl-C after the window is a second signal')
  release.resolve()
})

test('under nodemon, SIGTERM then SIGINT within the relay window (one stop, passed on as two signals) is one stop; in a terminal it exits at once', async (t) => {
  const { seam, life, unit, log } = world(new FakeSeam(), { launcherFacts: NODEMON })
  const release = deferred()
  unit.finalizers.add(() => release.promise, { name: 'slow' })
  t.true(life.signalsRelayed)
  seam.fire('SIGTERM')
  await settle()
  await seam.advance(RELAY_WINDOW_MS - 1)
  seam.fire('SIGINT')
  await settle()
  t.deepEqual(seam.exits, [], 'the SIGINT joins the drain')
  t.true(log.lines.some((l) => /SIGINT after SIGTERM within 500 ms/.test(l.msg)))
  await seam.advance(1)
  seam.fire('SIGINT')
  t.deepEqual(seam.exits, [130], 'a signal after the window is a second signal')
  release.resolve()

  const term = world()
  const slow = deferred()
  term.unit.finalizers.add(() => slow.promise, { name: 'slow' })
  term.seam.fire('SIGTERM')
  await settle()
  term.seam.fire('SIGINT')
  t.deepEqual(term.seam.exits, [130])
  slow.resolve()
})

test('in a terminal, a second SIGINT right after the first still exits at once', async (t) => {
  const { seam, life, unit } = world()
  const release = deferred()
  unit.finalizers.add(() => release.promise, { name: 'slow' })
  t.false(life.signalsRelayed)
  seam.fire('SIGINT')
  await settle()
  seam.fire('SIGINT')
  t.deepEqual(seam.exits, [130])
  release.resolve()
})

function sender (seam: FakeSeam, child: FakeChild): ReturnType<typeof startSuccessor> {
  const successor = startSuccessor({
    sockets: [], execPath: '/usr/bin/node', execArgv: [], argv: [], cwd: '/', env: {}, parentPid: 1, stateful: false, timeout: 60_000,
    spawn: () => child as never, timer: (ms, fn) => seam.timer(ms, fn)
  })
  successor.ready.catch(() => {}) // never ready here: only its connections are looked at
  return successor
}

test('a connection moves in two phases: the successor holds it, says TAKEN, and only a COMMIT makes it its own; the next handle goes once the last is taken', async (t) => {
  const seam = new FakeSeam()
  const child = new FakeChild()
  child.holdHandles = true
  const successor = sender(seam, child)
  const a = {} as net.Socket
  const b = {} as net.Socket
  const first = successor.sendSocket('tcp:127.0.0.1:3000', a)
  const second = successor.sendSocket('tcp:127.0.0.1:3000', b)
  t.deepEqual(child.handles, [a], 'one handle in Node\'s hands at a time')
  const sent = child.sent[0] as { type: string, address: string, id: number }
  t.like(sent, { type: CONNECTION_MESSAGE, address: 'tcp:127.0.0.1:3000' })
  child.write()
  child.emit('message', { type: TAKEN_MESSAGE, id: sent.id })
  t.true(await first)
  t.deepEqual(child.sent[1], { type: COMMIT_MESSAGE, id: sent.id })
  t.deepEqual(child.handles, [a, b], 'the next handle goes once the last was taken')
  child.write()
  const id = (child.sent[2] as { id: number }).id
  child.emit('message', { type: TAKEN_MESSAGE, id })
  t.true(await second)
})

test('the confirmation timeout counts from the write of the handle, not from the queueing; past it the connection is revoked, stays here, and the transfer stops', async (t) => {
  const seam = new FakeSeam()
  const child = new FakeChild()
  child.holdHandles = true
  const successor = sender(seam, child)
  let outcome: boolean | undefined
  void successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket).then((v) => { outcome = v })
  const queued = successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket)
  await seam.advance(TAKEN_TIMEOUT_MS * 3)
  t.is(outcome, undefined, 'not written yet: Node may still send it, so it is not taken back')
  child.write()
  await seam.advance(TAKEN_TIMEOUT_MS - 1)
  t.is(outcome, undefined)
  await seam.advance(1)
  t.false(outcome, 'no TAKEN within the timeout of the write: it stays here')
  const id = (child.sent[0] as { id: number }).id
  t.deepEqual(child.sent[1], { type: REVOKE_MESSAGE, id })
  t.false(await queued, 'the transfer stopped: what was queued stays here')
  child.emit('message', { type: TAKEN_MESSAGE, id })
  t.false(child.sent.some((m) => (m as { type: string }).type === COMMIT_MESSAGE), 'a late TAKEN commits nothing')
  t.false(await successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket), 'later connections stay here')
  t.is(child.handles.length, 1)
})

test('a successor that exits with a connection on its way keeps it here; nothing is sent on a closed channel', async (t) => {
  const seam = new FakeSeam()
  const child = new FakeChild()
  const successor = sender(seam, child)
  const lost = successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket)
  child.exit(1, null)
  child.disconnect()
  t.false(await lost, 'the successor died: it stays here')
  t.false(await successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket), 'nothing is sent on a closed channel')
  t.false(child.sent.some((m) => (m as { type: string }).type === COMMIT_MESSAGE))
})

test('a successor whose event loop does not answer pings after ready is waited for (both serve), then drained to once it answers', async (t) => {
  const { seam, life, child, events } = world()
  child.answerPings = false
  let resolved = false
  const p = life.reboot(1000).then(() => { resolved = true })
  await settle()
  child.emit('message', { type: READY_MESSAGE })
  await seam.advance(HEARTBEAT_INTERVAL_MS * 6)
  t.false(resolved, 'ready, but its loop does not answer: not drained to yet')
  t.is(life.state, 'rebooting')
  t.true(child.pings >= 6)
  child.answerPings = true
  await seam.advance(HEARTBEAT_INTERVAL_MS)
  await p
  t.true(events.some((e) => e.step === 'drained'))
})

test('a successor whose loop stays blocked past rebootTimeout after ready is rolled back, naming why', async (t) => {
  const { seam, life, child } = world(new FakeSeam(), {}, { rebootProbation: 0, rebootTimeout: 3000 })
  child.answerPings = false
  const p = life.reboot(1000)
  p.catch(() => {})
  await settle()
  child.emit('message', { type: READY_MESSAGE })
  await seam.advance(3000)
  await t.throwsAsync(p, { code: 'ERR_GRACEFUL_SUCCESSOR_PROBATION', message: /answered no ping for 3000 ms.*event loop is blocked/ })
  t.is(life.state, 'running')
})

test('during the transfer, a successor that stops answering pings for a second gets no more connections: they stay here at once', async (t) => {
  const seam = new FakeSeam()
  const child = new FakeChild()
  child.holdHandles = true
  const successor = sender(seam, child)
  child.emit('message', { type: READY_MESSAGE })
  await settle()
  t.is(child.pings, 1)
  child.answerPings = false
  let first: boolean | undefined
  void successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket).then((v) => { first = v })
  const queued = successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket)
  // The ping after the last answer is unanswered for UNRESPONSIVE_MS.
  await seam.advance(UNRESPONSIVE_MS + HEARTBEAT_INTERVAL_MS)
  t.false(await queued, 'not yet handed to Node: stays here')
  t.is(first, undefined, 'not written yet: Node may still send it')
  child.write()
  await settle()
  t.false(first, 'revoked once written')
  t.like(child.sent.at(-1), { type: REVOKE_MESSAGE })
})

test('the successor holds a handed-over connection unread until COMMIT; REVOKE closes its copy unread; one still held when the old process is gone is its own', (t) => {
  let deliver: (m: unknown, handle?: unknown) => void = () => {}
  let gone: () => void = () => {}
  const said: unknown[] = []
  const parent = new ParentChannel({
    send: (m) => { said.push(m); return true },
    onParentMessage: (fn) => { deliver = fn; return () => {} },
    onParentGone: (fn) => { gone = fn }
  }, 42)
  const served: Array<{ address: string, socket: unknown }> = []
  parent.onConnection((address, socket) => { served.push({ address, socket }) })
  const socket = (): { calls: string[], write: () => void, destroy: () => void, _handle: { reading: boolean, readStop: () => void, readStart: () => void } } => {
    const calls: string[] = []
    return { calls, write () {}, destroy () { calls.push('destroy') }, _handle: { reading: true, readStop () { calls.push('readStop') }, readStart () { calls.push('readStart') } } }
  }
  const a = socket()
  deliver({ type: CONNECTION_MESSAGE, address: 'tcp:127.0.0.1:3000', id: 1 }, a)
  t.deepEqual(a.calls, ['readStop'], 'held: not read')
  t.deepEqual(said, [{ type: TAKEN_MESSAGE, id: 1 }])
  t.deepEqual(served, [], 'not the successor\'s yet')
  deliver({ type: COMMIT_MESSAGE, id: 1 })
  t.deepEqual(served.map((s) => s.socket), [a])
  t.deepEqual(a.calls, ['readStop', 'readStart'], 'read once committed')
  const b = socket()
  deliver({ type: CONNECTION_MESSAGE, address: 'tcp:127.0.0.1:3000', id: 2 }, b)
  deliver({ type: REVOKE_MESSAGE, id: 2 })
  t.deepEqual(b.calls, ['readStop', 'destroy'], 'revoked: closed unread')
  t.is(served.length, 1)
  const c = socket()
  deliver({ type: CONNECTION_MESSAGE, address: 'tcp:127.0.0.1:3000', id: 3 }, c)
  gone()
  t.deepEqual(served.map((s) => s.socket), [a, c], 'the old process died holding no copy: it is served here')
})

test('the IPC channel closes while both processes live: a held connection stays the old process\'s alone (it revoked or could not commit it); the successor closes its copy unread', async (t) => {
  // The successor's side: the channel is gone, the old process is alive.
  let deliver: (m: unknown, handle?: unknown) => void = () => {}
  let gone: () => void = () => {}
  const parent = new ParentChannel({ send: () => true, onParentMessage: (fn) => { deliver = fn; return () => {} }, onParentGone: (fn) => { gone = fn } }, 42)
  const served: unknown[] = []
  parent.onConnection((_address, socket) => { served.push(socket) }, true, () => true)
  const calls: string[] = []
  const held = { write () {}, destroy () { calls.push('destroy') }, _handle: { reading: true, readStop () { calls.push('readStop') }, readStart () { calls.push('readStart') } } }
  deliver({ type: CONNECTION_MESSAGE, address: 'tcp:127.0.0.1:3000', id: 1 }, held)
  gone()
  t.deepEqual(served, [], 'not served here')
  t.deepEqual(calls, ['readStop', 'destroy'], 'closed unread: never read by this process')

  // The old process's side, the successor alive: a connection whose handle was written when the channel
  // closed stays here (read again by this process alone), and one whose TAKEN came but whose COMMIT
  // cannot be sent stays here too.
  const seam = new FakeSeam()
  const child = new FakeChild()
  const successor = sender(seam, child)
  const written = successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket)
  await settle()
  child.disconnect()
  t.false(await written, 'the channel closed before TAKEN: it stays here')
  const child2 = new FakeChild()
  const successor2 = sender(new FakeSeam(), child2)
  const confirmed = successor2.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket)
  await settle()
  child2.connected = false
  child2.emit('message', { type: TAKEN_MESSAGE, id: 1 })
  t.false(await confirmed, 'TAKEN came, COMMIT could not be sent: it stays here')
  t.false([...child.sent, ...child2.sent].some((m) => (m as { type: string }).type === COMMIT_MESSAGE), 'never committed')
  t.is(child.exitCode, null, 'the successor lives on')
})

test('a COMMIT sent over a backlog (send() returns false, Node delivers it all the same) hands the connection over: the old process closes its copy', async (t) => {
  const child = new FakeChild()
  const successor = sender(new FakeSeam(), child)
  const sent = successor.sendSocket('tcp:127.0.0.1:3000', {} as net.Socket)
  await settle()
  child.backlog = true
  child.emit('message', { type: TAKEN_MESSAGE, id: 1 })
  t.true(await sent, 'the successor serves it once the COMMIT arrives: not read here again')
  t.like(child.sent.at(-1), { type: COMMIT_MESSAGE, id: 1 })
})

test('from an old process of an earlier version (no two-phase hand-over in its environment), a connection is served as soon as it arrives', (t) => {
  let deliver: (m: unknown, handle?: unknown) => void = () => {}
  const said: unknown[] = []
  const parent = new ParentChannel({ send: (m) => { said.push(m); return true }, onParentMessage: (fn) => { deliver = fn; return () => {} } }, 42)
  const served: unknown[] = []
  parent.onConnection((_address, socket) => { served.push(socket) }, Inherited.fromEnv({ LISTEN_FDS: '0', LISTEN_PID: '7', GRACEFUL_REBOOT_PARENT_PID: '6' }, 7).twoPhase)
  const socket = { write () {}, destroy () {}, _handle: { readStop () {}, readStart () {} } }
  deliver({ type: CONNECTION_MESSAGE, address: 'tcp:127.0.0.1:3000', id: 1 }, socket)
  t.deepEqual(said, [{ type: TAKEN_MESSAGE, id: 1 }])
  t.deepEqual(served, [socket])
  t.true(Inherited.fromEnv({ LISTEN_FDS: '0', LISTEN_PID: '7', GRACEFUL_REBOOT_PARENT_PID: '6', GRACEFUL_REBOOT_HANDOVER: '2' }, 7).twoPhase)
})

test('a silence shorter than successorLostAfter is a pause: it stops the transfer, and an answer, however late, ends the suspicion; a silence of successorLostAfter is a freeze, told once', async (t) => {
  const seam = new FakeSeam()
  const child = new FakeChild()
  const heartbeat = new Heartbeat(child as never, (ms, fn) => seam.timer(ms, fn), 5000)
  const paused: number[] = []
  const frozen: number[] = []
  heartbeat.onUnresponsive((ms) => { paused.push(ms) })
  heartbeat.onFrozen((ms) => { frozen.push(ms) })
  heartbeat.start()
  await settle()
  child.answerPings = false
  await seam.advance(4500)
  t.is(paused.length, 1, 'paused after UNRESPONSIVE_MS')
  t.deepEqual(frozen, [], 'not frozen after 4.5 s')
  // A late answer (a GC pause is over): the silence counts from zero again.
  child.emit('message', { type: PONG_MESSAGE, n: child.pings })
  await seam.advance(4500)
  t.deepEqual(frozen, [], 'a silence of 4.5 s after the answer is not a freeze either')
  await seam.advance(1000)
  t.is(frozen.length, 1)
  t.true((frozen[0] ?? 0) >= 5000)
  await seam.advance(5000)
  t.is(frozen.length, 1, 'told once')
})

test('a successor frozen while its old process drains is killed (SIGKILL) before the loss is told; a frozen one before the watch is left to probation', async (t) => {
  const seam = new FakeSeam()
  const child = new FakeChild()
  const heartbeat = new Heartbeat(child as never, (ms, fn) => seam.timer(ms, fn), 2000)
  const standby = new Standby(child as never, heartbeat, (ms, fn) => seam.timer(ms, fn))
  heartbeat.start()
  await settle()
  child.answerPings = false
  await seam.advance(2000 + HEARTBEAT_INTERVAL_MS)
  t.is(child.killedWith, undefined, 'not watched yet: probation decides')
  child.emit('message', { type: PONG_MESSAGE, n: child.pings })
  const told: Array<{ why: string, killed: string | undefined }> = []
  standby.watch((why) => { told.push({ why, killed: child.killedWith }) })
  await seam.advance(2000 + HEARTBEAT_INTERVAL_MS)
  t.is(told.length, 1)
  t.is(told[0]?.killed, 'SIGKILL', 'killed before the loss is told')
  t.regex(told[0]?.why ?? '', /^successor 5151 answered no ping for \d+ ms \(successorLostAfter: its event loop is frozen\) and was killed \(SIGKILL\)$/)
})
