// Runs in the test process: promise chains nobody awaits end in a log line or a server 'error', never
// an unhandled rejection: the old process's drain after a hand-over (lib/outgoing/reboot.ts) and a
// stateful adoption's deferred listen() (lib/handoff/listeners.ts). AVA fails a file that leaves an
// unhandled rejection behind, and each test checks where the error went.
import test from 'ava'
import { EventEmitter, once } from 'node:events'
import type * as net from 'node:net'
import { GracefulUnit } from '../lib/drain/app'
import { PING_MESSAGE, PONG_MESSAGE, READY_MESSAGE } from '../lib/handoff/protocol'
import { ListenerRegistry } from '../lib/handoff/listeners'
import { Inherited } from '../lib/incoming/inherited'
import { ProcessLifecycle } from '../lib/lifecycle'
import { resolveOptions } from '../lib/options'
import { FakeSeam, memoryLogger, pretendListening, settle } from './fixtures/finalizer-fake-seam'

class FakeChild extends EventEmitter {
  readonly pid = 5151
  connected = true
  exitCode: number | null = null
  signalCode: NodeJS.Signals | null = null
  channel = null
  kill (): boolean { return true }
  send (m: { type?: string, n?: number }, ...rest: unknown[]): boolean {
    const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined
    cb?.()
    // A successor whose event loop answers: probation ends once a ping is answered.
    if (m.type === PING_MESSAGE) queueMicrotask(() => { this.emit('message', { type: PONG_MESSAGE, n: m.n }) })
    return this.connected
  }

  disconnect (): void { this.connected = false; this.emit('disconnect') }
  unref (): void {}
}

test('a throw after the hand-over (a \'handoff\' listener on drained) is logged, not an unhandled rejection', async (t) => {
  const seam = new FakeSeam()
  const child = new FakeChild()
  const life = new ProcessLifecycle(seam, {
    spawn: () => child as never,
    execPath: '/usr/bin/node',
    execArgv: [],
    argv: ['/srv/app/server.js'],
    cwd: '/srv/app',
    env: {},
    isClusterWorker: false,
    exitingInit: () => undefined,
    terminalSession: () => undefined,
    launcherFacts: () => ({ ancestors: [{ pid: 1000, comm: 'bash', argv: ['-bash'] }], env: {} }),
    inherited: () => new Inherited([], undefined, false),
    send: () => false,
    onParentMessage: () => () => {}
  })
  pretendListening(life)
  const log = memoryLogger()
  life.register(new GracefulUnit('app', resolveOptions({ exit: false, timeout: 1000, rebootTimeout: 2000, rebootProbation: 0 }), log, seam))
  life.on('handoff', (e) => { if (e.step === 'drained') throw new Error('listener broke') })
  const rebooted = life.reboot(1000)
  await settle()
  child.emit('message', { type: READY_MESSAGE, pid: child.pid })
  t.is(await rebooted, child.pid)
  for (let i = 0; i < 5 && !log.lines.some((l) => /drain after the hand-over failed/.test(l.msg)); i++) await settle()
  const line = log.lines.find((l) => /drain after the hand-over failed/.test(l.msg))
  t.is(line?.level, 'error')
  t.is(((line?.obj as { err?: Error }).err)?.message, 'listener broke')
})

test('a stateful adoption whose deferred listen() throws emits the server\'s \'error\', not an unhandled rejection', async (t) => {
  const registry = new ListenerRegistry()
  const broken = new Error('listen refused')
  const server = Object.assign(new EventEmitter(), {
    listening: false,
    listen () { throw broken }
  }) as unknown as net.Server
  registry.wrap(server, { take: () => 7, stateful: 1000, whenParentGone: () => Promise.resolve() }, { listening: () => {}, unmatched: () => {} })
  const error = once(server, 'error')
  server.listen(3000)
  const [err] = await error
  t.is(err, broken)
})
