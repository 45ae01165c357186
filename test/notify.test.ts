// Runs in the test process: what lib/lifecycle/notify.ts tells systemd at each step, one message at a
// time, through a fake spawn that records each `systemd-notify` run and ends it when the test says.
// Also the lifecycle's exit waiting for it. test/systemd.test.ts drives the same code under a real systemd.
import { EventEmitter } from 'node:events'
import type { ChildProcess } from 'node:child_process'
import test from 'ava'
import { RebootError } from '../lib/errors'
import type { LifecycleEvents, LifecycleState } from '../lib/events'
import { SystemdNotifier } from '../lib/lifecycle/notify'
import type { Cause } from '../lib/lifecycle/shutdown'
import { GracefulUnit } from '../lib/drain/app'
import { Inherited } from '../lib/incoming/inherited'
import { ProcessLifecycle } from '../lib/lifecycle'
import type { LifecycleHost } from '../lib/lifecycle/host'
import { resolveOptions } from '../lib/options'
import { FakeSeam, memoryLogger, settle } from './fixtures/finalizer-fake-seam'

interface Run { command: string, args: readonly string[], env: NodeJS.ProcessEnv | undefined, child: EventEmitter & { killed?: string } }

function world (o: { socket?: string, spawnError?: NodeJS.ErrnoException } = {}) {
  const events = new EventEmitter<LifecycleEvents>()
  const runs: Run[] = []
  const log = memoryLogger()
  const w = { cause: undefined as Cause | undefined, mayRollBack: false, state: 'running' as LifecycleState }
  const notifier = new SystemdNotifier(events, {
    pid: 100,
    host: {
      env: o.socket === undefined ? {} : { NOTIFY_SOCKET: o.socket },
      spawn: (command, args, options) => {
        const child = Object.assign(new EventEmitter(), { kill: (signal: string) => { run.child.killed = signal; return true } }) as unknown as Run['child']
        const run: Run = { command, args, env: options.env, child }
        runs.push(run)
        if (o.spawnError !== undefined) setImmediate(() => { child.emit('error', o.spawnError) })
        return child as unknown as ChildProcess
      }
    },
    cause: () => w.cause,
    parentMayRollBack: () => w.mayRollBack,
    state: () => w.state,
    timer: (ms, fn) => { const t = setTimeout(fn, ms); return () => { clearTimeout(t) } },
    log: () => log
  })
  /** Ends the `systemd-notify` runs started so far, then lets the next one start. */
  const finish = async (): Promise<void> => {
    for (const r of runs) if (r.child.listenerCount('exit') > 0) r.child.emit('exit', 0, null)
    await new Promise((resolve) => { setImmediate(resolve) })
  }
  return { events, runs, log, w, notifier, finish, sent: () => runs.map((r) => r.args.join(' ')) }
}

const error = new RebootError('ERR_GRACEFUL_SUCCESSOR_PROBATION', 'successor 200 exited with code 1 during probation', 200)

test('without NOTIFY_SOCKET nothing is sent', async (t) => {
  const { events, runs, notifier } = world()
  events.emit('handoff', { step: 'announced', pid: 100, parentPid: undefined })
  t.false(notifier.enabled)
  t.true(notifier.idle)
  t.is(runs.length, 0)
})

test('a first start, a reboot and a shutdown: READY=1, RELOADING=1, MAINPID= of the successor with READY=1, and STOPPING=1 only for the shutdown; one systemd-notify at a time, in order', async (t) => {
  const { events, runs, w, notifier, finish, sent } = world({ socket: '/run/systemd/notify' })
  events.emit('handoff', { step: 'announced', pid: 100, parentPid: undefined })
  events.emit('handoff', { step: 'spawned', pid: 200, trigger: 'SIGUSR2' })
  await new Promise((resolve) => { setImmediate(resolve) })
  t.is(runs.length, 1, 'the second message waits for the first')
  t.is(runs[0]?.command, 'systemd-notify')
  t.is(runs[0]?.env?.NOTIFY_SOCKET, '/run/systemd/notify')
  t.false(notifier.idle)
  await finish()
  events.emit('handoff', { step: 'ready', pid: 200, ms: 300 })
  events.emit('handoff', { step: 'serving', pid: 200, ms: 1300 })
  // The old process of a reboot drains: not the service's end.
  w.cause = { reason: 'reboot', trigger: 'SIGUSR2' }
  w.state = 'draining'
  events.emit('state', 'draining', 'rebooting')
  for (let i = 0; i < 4; i++) await finish()
  t.true(notifier.idle)
  t.deepEqual(sent(), [
    'READY=1 MAINPID=100 STATUS=serving (pid 100)',
    'RELOADING=1 STATUS=rebooting: successor 200 starting',
    'STATUS=rebooting: successor 200 serves, in probation',
    'MAINPID=200 READY=1 STATUS=serving (pid 200); the old process 100 drains'
  ])
  const shutdown = world({ socket: '/run/systemd/notify' })
  shutdown.w.cause = { reason: 'shutdown', trigger: 'SIGTERM' }
  shutdown.events.emit('state', 'draining', 'running')
  await shutdown.finish()
  t.deepEqual(shutdown.sent(), ['STOPPING=1 STATUS=draining (shutdown, SIGTERM)'])
})

test('a rollback tells systemd this process serves on (READY=1, its own MAINPID=); a reboot aborted by a shutdown does not', async (t) => {
  const rolledBack = world({ socket: '/run/systemd/notify' })
  rolledBack.events.emit('handoff', { step: 'failed', pid: 200, error })
  await rolledBack.finish()
  t.deepEqual(rolledBack.sent(), ['MAINPID=100 READY=1 STATUS=serving (pid 100); the reboot failed: successor 200 exited with code 1 during probation'])
  const aborted = world({ socket: '/run/systemd/notify' })
  aborted.w.state = 'draining'
  aborted.events.emit('handoff', { step: 'failed', pid: 200, error })
  await aborted.finish()
  t.deepEqual(aborted.sent(), [])
})

test('a successor lost during the drain: MAINPID= of the old process again with READY=1, and why; whether it serves on for good (a late rollback) or exits once drained', async (t) => {
  const back = world({ socket: '/run/systemd/notify' })
  back.events.emit('handoff', { step: 'lost', pid: 200, reason: 'successor 200 was killed by SIGKILL', listening: ['tcp:127.0.0.1:3000'], back: true })
  await back.finish()
  t.deepEqual(back.sent(), ['MAINPID=100 READY=1 STATUS=serving again (pid 100): successor 200 lost (successor 200 was killed by SIGKILL); this process serves on, for good'])
  const ending = world({ socket: '/run/systemd/notify' })
  ending.events.emit('handoff', { step: 'lost', pid: 201, reason: 'successor 201 was killed by SIGKILL', listening: ['tcp:127.0.0.1:3000'], back: false })
  await ending.finish()
  t.deepEqual(ending.sent(), ['MAINPID=100 READY=1 STATUS=serving again (pid 100): successor 201 lost (successor 201 was killed by SIGKILL); this process exits once drained'])
})

test('a successor drains without STOPPING=1 while its old process can roll back, or when rolled back; a successor announces nothing (its old process tells MAINPID=)', async (t) => {
  const { events, w, finish, sent } = world({ socket: '/run/systemd/notify' })
  events.emit('handoff', { step: 'announced', pid: 100, parentPid: 50 })
  w.mayRollBack = true
  w.cause = { reason: 'shutdown', trigger: 'SIGTERM' }
  events.emit('state', 'draining', 'running')
  w.mayRollBack = false
  w.cause = { reason: 'shutdown', trigger: 'rollback' }
  events.emit('state', 'draining', 'running')
  await finish()
  t.deepEqual(sent(), [])
})

test('systemd-notify missing: one warning naming the fix, then no more runs', async (t) => {
  const { events, runs, log, notifier } = world({ socket: '/run/systemd/notify', spawnError: Object.assign(new Error('spawn systemd-notify ENOENT'), { code: 'ENOENT' }) })
  events.emit('handoff', { step: 'announced', pid: 100, parentPid: undefined })
  events.emit('handoff', { step: 'spawned', pid: 200, trigger: 'SIGUSR2' })
  await new Promise<void>((resolve) => { notifier.told(resolve) })
  t.is(runs.length, 1)
  t.false(notifier.enabled)
  const warnings = log.lines.filter((l) => l.level === 'warn')
  t.is(warnings.length, 1)
  t.regex(warnings[0]?.msg ?? '', /NOTIFY_SOCKET is set but systemd-notify could not be run: .*install systemd's systemd-notify, give the unit NotifyAccess=all, or use the PID-file unit/)
})

test('the process ends only once systemd-notify has delivered what the shutdown sent (STOPPING=1): an old process must not exit before systemd has the successor\'s MAINPID=', async (t) => {
  const seam = new FakeSeam()
  const runs: Array<EventEmitter & { args: readonly string[] }> = []
  const host: LifecycleHost = {
    spawn: (_command, args) => {
      const child = Object.assign(new EventEmitter(), { args, kill: () => true })
      runs.push(child)
      return child as unknown as ChildProcess
    },
    execPath: '/usr/bin/node',
    execArgv: [],
    argv: ['/srv/app/server.js'],
    cwd: '/srv/app',
    env: { NOTIFY_SOCKET: '/run/systemd/notify' },
    isClusterWorker: false,
    exitingInit: () => undefined,
    terminalSession: () => undefined,
    launcherFacts: () => ({ ancestors: [{ pid: 1, comm: 'systemd', argv: ['/sbin/init'] }], env: {} }),
    inherited: () => new Inherited([], undefined, false),
    send: () => true,
    onParentMessage: () => () => {}
  }
  const life = new ProcessLifecycle(seam, host)
  life.register(new GracefulUnit('app', resolveOptions({ timeout: 1000 }), memoryLogger(), seam))
  await life.shutdown(1000)
  await settle()
  t.deepEqual(runs.map((r) => r.args[0]), ['STOPPING=1'])
  t.deepEqual(seam.exits, [], 'waiting for systemd-notify')
  runs[0]?.emit('exit', 0, null)
  await settle()
  t.deepEqual(seam.exits, [0])
})
