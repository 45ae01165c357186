// Runs in the test process: a process that a reboot started, while its old process can still roll
// that reboot back (lib/incoming/side.ts, lib/outgoing/refusal.ts), and a reboot under systemd without
// a PID file, through the fake process seam and a fake reboot host.
import test from 'ava'
import * as fs from 'node:fs'
import * as os from 'node:os'
import path from 'node:path'
import { FAILING_MESSAGE, READY_MESSAGE } from '../lib/handoff/protocol'
import { Inherited } from '../lib/incoming/inherited'
import { ProcessLifecycle } from '../lib/lifecycle'
import type { LifecycleHost } from '../lib/lifecycle/host'
import type { LauncherFacts } from '../lib/launcher'
import { GracefulUnit } from '../lib/drain/app'
import { resolveOptions, type GracefulOptions } from '../lib/options'
import { FakeSeam, memoryLogger, pretendListening } from './fixtures/finalizer-fake-seam'

const TERMINAL: LauncherFacts = { ancestors: [{ pid: 1000, comm: 'bash', argv: ['-bash'] }], env: {} }
const SYSTEMD: LauncherFacts = { ancestors: [{ pid: 1, comm: 'systemd', argv: ['/sbin/init'] }], env: { INVOCATION_ID: 'abc' } }

function world (t: import('ava').ExecutionContext, o: { parentPid?: number, facts?: LauncherFacts, options?: GracefulOptions, env?: NodeJS.ProcessEnv } = {}): { seam: FakeSeam, life: ProcessLifecycle, sent: unknown[], spawned: number, pidFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-probation-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const pidFile = path.join(dir, 'app.pid')
  const seam = new FakeSeam()
  const sent: unknown[] = []
  const w = { seam, sent, spawned: 0, pidFile, life: undefined as unknown as ProcessLifecycle }
  const host: LifecycleHost = {
    spawn: () => { w.spawned++; throw new Error('no spawn in this test') },
    execPath: '/usr/bin/node',
    execArgv: [],
    argv: ['/srv/app/server.js'],
    cwd: '/srv/app',
    env: o.env ?? {},
    isClusterWorker: false,
    exitingInit: () => undefined,
    terminalSession: () => undefined,
    launcherFacts: () => o.facts ?? TERMINAL,
    inherited: () => new Inherited([], o.parentPid, false),
    send: (m) => { sent.push(m); return true },
    onParentMessage: () => () => {}
  }
  w.life = new ProcessLifecycle(seam, host)
  pretendListening(w.life)
  w.life.register(new GracefulUnit('app', resolveOptions({ exit: false, timeout: 1000, rebootProbation: 2000, pidFile, ...o.options }), memoryLogger(), seam))
  return w
}

const types = (sent: unknown[]): unknown[] => sent.map((m) => (m as { type: string }).type)

test('a reboot in a successor is refused until the old process can no longer roll back: before ready, and within probation', async (t) => {
  const w = world(t, { parentPid: 777 })
  await t.throwsAsync(w.life.reboot(1000), { code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS', message: /started by a reboot that its old process can still roll back \(this process has not announced that it serves yet\)/ })
  w.life.announceReady()
  t.deepEqual(types(w.sent), [READY_MESSAGE])
  t.is(fs.readFileSync(w.pidFile, 'utf8').trim(), '4242')
  await w.seam.advance(500)
  await t.throwsAsync(w.life.reboot(1000), { code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS', message: /its probation has 1500 ms left\); reboot again once that reboot is over/ })
  t.is(w.life.state, 'running', 'still serving, nothing drained')
  t.deepEqual(types(w.sent), [READY_MESSAGE], 'the old process was told nothing: no "failing"')
  t.is(w.spawned, 0)
  await w.seam.advance(1500)
  t.is(w.life.canReboot(), undefined, 'after the probation, a reboot may start')
})

test('a successor stopped after its old process\'s probation removes its PID file (no rollback to take it back)', async (t) => {
  const w = world(t, { parentPid: 777 })
  w.life.announceReady()
  await w.seam.advance(2000)
  await w.life.shutdown(100)
  t.deepEqual(types(w.sent), [READY_MESSAGE, FAILING_MESSAGE], 'still told (it may be just at the end of its probation)')
  t.false(fs.existsSync(w.pidFile), 'the PID file is gone')
})

test('a successor stopped within its old process\'s probation leaves the PID file to the old process, which rolls back', async (t) => {
  const w = world(t, { parentPid: 777 })
  w.life.announceReady()
  await w.seam.advance(1000)
  await w.life.shutdown(100)
  t.deepEqual(types(w.sent), [READY_MESSAGE, FAILING_MESSAGE])
  t.is(fs.readFileSync(w.pidFile, 'utf8').trim(), '4242', 'left for the old process to rewrite')
})

test('a reboot under systemd without a PID file or a notify socket is refused with the fix; with either, or launcher: \'ignore\', it is not', async (t) => {
  const bare = world(t, { facts: SYSTEMD, options: { pidFile: undefined } as never })
  await t.throwsAsync(bare.life.reboot(1000), { code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', message: /cannot reboot under systemd \(.*\) without a PID file or a notify socket: .*Type=notify and NotifyAccess=all, or set the option pidFile and PIDFile= to the same path in the unit .*launcher: 'ignore'/ })
  t.is(bare.spawned, 0)
  t.is(world(t, { facts: SYSTEMD }).life.canReboot(), undefined)
  t.is(world(t, { facts: SYSTEMD, options: { pidFile: undefined } as never, env: { NOTIFY_SOCKET: '/run/systemd/notify' } }).life.canReboot(), undefined, 'systemd follows MAINPID=')
  t.is(world(t, { facts: SYSTEMD, options: { pidFile: undefined, launcher: 'ignore' } as never }).life.canReboot(), undefined)
})
