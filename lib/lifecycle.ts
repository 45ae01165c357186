// Runs in both processes: the one owner of process state (running -> draining -> stopped, and
// rebooting), shared by every app in the process. Idempotent shutdown(); state events; the exit code.
import { spawn } from 'node:child_process'
import cluster from 'node:cluster'
import { EventEmitter } from 'node:events'
import fs from 'node:fs'
import { InvalidOptionError, RebootError, describe } from './errors'
import { inherited, type Inherited } from './incoming/inherited'
import { listeningSockets, type Listener } from './handoff/listeners'
import { READY_MESSAGE, startSuccessor, type Spawn, type Successor } from './outgoing/spawn'
import { ms } from './options'
import { removePidFile, writePidFile } from './pidfile'
import type { ShutdownReason } from './drain/finalizers'
import type { Logger } from './log'
import { stderrLogger } from './log'
import { realProcess, type ProcessSeam } from './os'
import { installSignals } from './signals'
import type { GracefulUnit, UnitResult } from './drain/app'

export type LifecycleState = 'running' | 'draining' | 'stopped' | 'rebooting'

/** Exit codes of a process-wide shutdown (documented in README.md). */
export const exitCodes = {
  /** Every connection drained and every finalizer succeeded. */
  clean: 0,
  /** The shutdown was started by an uncaught exception or unhandled rejection. */
  crash: 1,
  /** The deadline passed: connections or WebSockets were destroyed. */
  forced: 75,
  /** A finalizer threw, rejected or ran past its deadline. */
  finalizerFailed: 76,
  /** A second signal arrived during a drain: 128 + the signal number (130 for SIGINT, 143 for SIGTERM). */
  secondSignalBase: 128
} as const

export interface ShutdownOptions {
  reason?: ShutdownReason
  /** What started it, for logs and finalizers: a signal name, 'admin', 'code'. */
  trigger?: string
}

export interface ShutdownResult {
  /** The exit code this shutdown earns (the process exits with it unless `exit: false`). */
  code: number
  reason: ShutdownReason
  trigger: string
  ms: number
  /** HTTP connections plus upgraded sockets destroyed at the deadline, over every app. */
  forced: number
  /** Names of finalizers that failed, over every app. */
  failedFinalizers: string[]
  apps: UnitResult[]
}

/** A step of a reboot, as `lifecycle().on('handoff', ...)` reports it. */
export type HandoffEvent =
  | { step: 'spawned', pid: number }
  | { step: 'ready', pid: number, ms: number }
  | { step: 'failed', pid: number, error: RebootError }
  | { step: 'drained', pid: number, result: ShutdownResult }
  /** In the new process: it serves and told the old process so (or, on a first start, it serves). */
  | { step: 'announced', pid: number, parentPid: number | undefined }

export interface LifecycleEvents {
  state: [state: LifecycleState, previous: LifecycleState]
  handoff: [event: HandoffEvent]
}

/** What a reboot needs from the process, apart from the ProcessSeam (a seam of its own for tests). */
export interface RebootHost {
  spawn: Spawn
  execPath: string
  execArgv: readonly string[]
  argv: readonly string[]
  /** The working directory at start-up, so a chdir() later does not move the successor. */
  cwd: string
  env: NodeJS.ProcessEnv
  isClusterWorker: boolean
  /** The name of the init this process is the direct child of when that init exits with its child (tini, docker-init, dumb-init). */
  exitingInit: () => string | undefined
  inherited: () => Inherited
  /** Sends a message to the old process over the IPC channel, if there is one. */
  send: (message: unknown) => boolean
}

const startCwd = process.cwd()
/** How long a cluster worker stays up after its drain, to answer connections in transit from the primary. */
export const CLUSTER_EXIT_LINGER_MS = 300
/** A stateful successor starts accepting at the latest this long after the old process's drain deadline. */
const STATEFUL_MARGIN_MS = 5_000

export const realHost: RebootHost = {
  spawn,
  execPath: process.execPath,
  execArgv: process.execArgv,
  argv: process.argv.slice(1),
  cwd: startCwd,
  env: process.env,
  isClusterWorker: cluster.isWorker,
  exitingInit: () => {
    if (process.ppid !== 1) return undefined
    try {
      const comm = fs.readFileSync('/proc/1/comm', 'utf8').trim()
      return ['tini', 'docker-init', 'dumb-init'].includes(comm) ? comm : undefined
    } catch {
      return undefined
    }
  },
  inherited,
  send: (message) => {
    if (typeof process.send !== 'function' || !process.connected) return false
    process.send(message)
    return true
  }
}

export interface RebootOptions {
  trigger?: string
  /** The successor accepts only once this process has exited (apps holding an exclusive resource). */
  stateful?: boolean
}

/**
 * The process-wide coordinator. `shutdown()` drains every registered app in parallel, runs their
 * framework close, decides the exit code and, unless an app asked `exit: false`, exits.
 */
export class Lifecycle extends EventEmitter<LifecycleEvents> {
  readonly seam: ProcessSeam
  private current: LifecycleState = 'running'
  private readonly units = new Set<GracefulUnit>()
  private stopping: Promise<ShutdownResult> | undefined
  private crashError: unknown
  private uninstallSignals: () => void = () => {}
  private readonly host: RebootHost
  private rebooting: Promise<number> | undefined
  private successor: Successor | undefined
  private rebootAborted = false
  private announced = false
  private readySwitch = true

  constructor (seam: ProcessSeam = realProcess, host: RebootHost = realHost) {
    super()
    this.seam = seam
    this.host = host
  }

  get state (): LifecycleState { return this.current }

  /** Whether this process announced that it serves (`announceReady()`): /health/startup answers 200 from then on. */
  get started (): boolean { return this.announced }

  /** The manual readiness switch (default true): false takes this process out of traffic (/health/ready 503) without draining. */
  get readyForTraffic (): boolean { return this.readySwitch }

  /** Sets the manual readiness switch; /health/ready also needs state 'running' (or 'rebooting') and `started`. */
  setReady (ready: boolean): void {
    if (typeof ready !== 'boolean') throw new InvalidOptionError(`setReady() takes true or false, got ${describe(ready)}`)
    this.readySwitch = ready
  }

  /** Why `reboot()` would be refused right now (the RebootError it would reject with), or undefined. */
  canReboot (): RebootError | undefined { return this.rebootRefusal() }

  /** The logger of the first registered app, for process-level messages. */
  get log (): Logger {
    for (const u of this.units) return u.log
    return stderrLogger
  }

  get apps (): readonly GracefulUnit[] { return [...this.units] }

  /** Adds an app. After a completed shutdown (with `exit: false`) the lifecycle starts over. */
  register (unit: GracefulUnit): void {
    if (this.current === 'stopped') {
      this.stopping = undefined
      this.crashError = undefined
      this.setState('running')
    }
    unit.onListening = (l) => { this.listening(l) }
    this.units.add(unit)
    this.refreshSignals()
  }

  /** Removes an app (when it closes); removes the process listeners with the last one. */
  unregister (unit: GracefulUnit): void {
    if (!this.units.delete(unit)) return
    this.refreshSignals()
  }

  /**
   * Drains every app (each with the deadline `timeout` ms from now), then exits with the code of
   * `exitCodes` unless an app has `exit: false`. Idempotent: a second call returns the same promise.
   * `timeout` defaults to the largest `timeout` option of the registered apps.
   */
  shutdown (timeout?: number, options: ShutdownOptions = {}): Promise<ShutdownResult> {
    if (this.stopping !== undefined) return this.stopping
    let limit: number
    try {
      limit = ms(timeout, 'timeout', this.defaultTimeout())
    } catch (err) {
      return Promise.reject(err)
    }
    if (this.successor !== undefined) {
      // Shutdown wins over a reboot whose successor is not ready yet: kill it, then drain.
      this.rebootAborted = true
      this.successor.kill()
    }
    this.stopping = this.runShutdown(limit, options.reason ?? 'shutdown', options.trigger ?? 'code')
    return this.stopping
  }

  /**
   * Re-executes the program as a successor that inherits every listening socket, waits until it is
   * ready (`rebootTimeout`), then drains this process with the deadline `timeout` ms and exits.
   * Resolves with the successor's pid once it is ready. Rejects with a RebootError, and keeps
   * serving, when the reboot cannot start (another reboot in flight, shutting down, Windows, a
   * cluster worker, PID 1) or the successor exits or stays silent.
   */
  reboot (timeout?: number, options: RebootOptions = {}): Promise<number> {
    const refusal = this.rebootRefusal()
    if (refusal !== undefined) return Promise.reject(refusal)
    let limit: number
    try {
      limit = ms(timeout, 'timeout', this.defaultTimeout())
    } catch (err) {
      return Promise.reject(err)
    }
    this.rebooting = this.runReboot(limit, options.trigger ?? 'code', options.stateful === true)
    const clear = (): void => { this.rebooting = undefined }
    this.rebooting.then(clear, clear)
    return this.rebooting
  }

  /** Why a reboot cannot start now, or undefined. */
  private rebootRefusal (): RebootError | undefined {
    const no = (code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' | 'ERR_GRACEFUL_SHUTTING_DOWN' | 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', why: string): RebootError => new RebootError(code, why)
    if (this.rebooting !== undefined || this.current === 'rebooting') return no('ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'a reboot is already in progress; one at a time')
    if (this.current !== 'running') return no('ERR_GRACEFUL_SHUTTING_DOWN', `cannot reboot: the process is ${this.current}`)
    if (this.seam.platform === 'win32') return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'reboot needs socket inheritance, which Windows does not offer; use shutdown and a supervisor')
    if (this.host.isClusterWorker) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'cannot reboot a cluster worker: its listening sockets belong to the cluster primary')
    if (this.seam.pid === 1) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'cannot reboot as PID 1: its exit would end the container; run with an init (docker run --init, tini)')
    const init = this.host.exitingInit()
    if (init !== undefined) {
      return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', `cannot reboot as the direct child of ${init}: ${init} exits when this process exits, which ends the container and the successor; in a container, replace the container instead (rolling update)`)
    }
    for (const u of this.units) {
      const why = u.rebootBlocker?.()
      if (why !== undefined) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', why)
    }
    return undefined
  }

  private async runReboot (timeout: number, trigger: string, stateful: boolean): Promise<number> {
    const start = this.seam.now()
    this.setState('rebooting')
    this.rebootAborted = false
    const sockets = listeningSockets().map((l) => ({ fd: l.fd, key: l.key }))
    const log = this.log
    const successor = startSuccessor({
      sockets,
      execPath: this.host.execPath,
      execArgv: this.host.execArgv,
      argv: this.host.argv,
      cwd: this.host.cwd,
      env: this.host.env,
      parentPid: this.seam.pid,
      stateful: stateful ? timeout + STATEFUL_MARGIN_MS : false,
      timeout: Math.max(0, ...[...this.units].map((u) => u.options.rebootTimeout)),
      spawn: this.host.spawn,
      timer: (t, fn) => this.seam.timer(t, fn)
    })
    this.successor = successor
    log.info({ trigger, successor: successor.pid, sockets: sockets.map((s) => s.key), stateful }, 'graceful-reboot: successor spawned')
    this.emit('handoff', { step: 'spawned', pid: successor.pid })
    try {
      await successor.ready
    } catch (err) {
      successor.kill()
      const error = this.rebootAborted
        ? new RebootError('ERR_GRACEFUL_REBOOT_ABORTED', 'the reboot was aborted by a shutdown; successor killed', successor.pid)
        : err as RebootError
      if (!this.rebootAborted) this.setState('running')
      log.error({ err: error, successor: successor.pid }, 'graceful-reboot: reboot failed; still serving')
      this.emit('handoff', { step: 'failed', pid: successor.pid, error })
      throw error
    } finally {
      this.successor = undefined
    }
    const readyMs = this.seam.now() - start
    log.info({ successor: successor.pid, ms: readyMs }, `graceful-reboot: successor ready after ${readyMs} ms; draining`)
    this.emit('handoff', { step: 'ready', pid: successor.pid, ms: readyMs })
    successor.release()
    void this.shutdown(timeout, { reason: 'reboot', trigger }).then((result) => {
      this.emit('handoff', { step: 'drained', pid: this.seam.pid, result })
    })
    return successor.pid
  }

  /** A tracked server is listening: on a first start write the PID file; in a successor, tell the old process once every inherited socket is adopted. */
  private listening (l: Listener): void {
    const from = this.host.inherited()
    if (l.adopted) this.log.info({ key: l.key }, 'graceful-reboot: adopted an inherited socket')
    if (from.pending > 0 || [...this.units].some((u) => u.options.readiness === 'manual')) return
    this.announceReady()
  }

  /**
   * This process serves: writes the PID file, tells the old process (when started by a reboot) and
   * closes inherited sockets nothing adopted. Automatic once every inherited socket is adopted,
   * unless an app has `readiness: 'manual'`. Idempotent.
   */
  announceReady (): void {
    if (this.announced) return
    this.announced = true
    const from = this.host.inherited()
    for (const u of this.units) {
      if (u.options.pidFile !== undefined) {
        writePidFile(u.options.pidFile, this.seam.pid)
        break
      }
    }
    if (from.parentPid !== undefined) {
      const told = this.host.send({ type: READY_MESSAGE, pid: this.seam.pid })
      this.log.info({ parent: from.parentPid, told }, 'graceful-reboot: ready; the old process drains now')
    }
    const unused = from.closeUnadopted()
    if (unused.length > 0) this.log.warn({ sockets: unused }, 'graceful-reboot: closed inherited sockets that no listen() adopted')
    this.emit('handoff', { step: 'announced', pid: this.seam.pid, parentPid: from.parentPid })
  }

  /** An uncaught exception or unhandled rejection: drain and exit with the crash code. */
  crash (error: unknown, kind: string): void {
    // Only the first is logged: a crash in the logging itself (EPIPE on a closed stdout) would loop.
    if (this.crashError !== undefined) return
    this.crashError = error
    this.log.error({ err: error, kind }, `graceful-reboot: ${kind}; shutting down`)
    void this.shutdown(undefined, { reason: 'crash', trigger: kind })
  }

  /** Ends the process at once (a second signal during a drain). */
  exitNow (code: number, why: string): void {
    this.log.error({ code }, `graceful-reboot: ${why}; exiting at once`)
    this.seam.exit(code)
  }

  private async runShutdown (timeout: number, reason: ShutdownReason, trigger: string): Promise<ShutdownResult> {
    const start = this.seam.now()
    const log = this.log
    const release = this.seam.hold?.() ?? (() => {})
    try {
      return await this.drainAll(start, log, timeout, reason, trigger)
    } finally {
      release()
    }
  }

  private async drainAll (start: number, log: Logger, timeout: number, reason: ShutdownReason, trigger: string): Promise<ShutdownResult> {
    this.setState('draining')
    const units = [...this.units]
    // With no app registered there is nothing of ours to end the process for.
    const exit = units.length > 0 && units.every((u) => u.options.exit)
    log.info({ reason, trigger, timeout, apps: units.length }, 'graceful-reboot: shutting down')
    const delay = Math.min(timeout, Math.max(0, ...units.map((u) => u.options.readinessDelay)))
    if (delay > 0) await new Promise<void>((resolve) => { this.seam.timer(delay, resolve) })
    const deadline = start + timeout
    const apps = await Promise.all(units.map((u) => u.shutdown(deadline, reason, trigger)))
    const forced = apps.reduce((n, a) => n + a.forced + a.forcedUpgraded, 0)
    const failedFinalizers = apps.flatMap((a) => a.finalizers.filter((f) => !f.ok).map((f) => f.name))
    const code = this.crashError !== undefined
      ? exitCodes.crash
      : failedFinalizers.length > 0 ? exitCodes.finalizerFailed : forced > 0 ? exitCodes.forced : exitCodes.clean
    const result: ShutdownResult = { code, reason: this.crashError !== undefined ? 'crash' : reason, trigger, ms: this.seam.now() - start, forced, failedFinalizers, apps }
    const pidFile = units.find((u) => u.options.pidFile !== undefined)?.options.pidFile
    if (pidFile !== undefined) removePidFile(pidFile, this.seam.pid)
    this.setState('stopped')
    for (const u of units) this.unregister(u)
    if (exit) {
      log.info({ code, ms: result.ms, forced, failedFinalizers }, 'graceful-reboot: exiting')
      if (this.host.isClusterWorker) {
        // The cluster primary (PM2's daemon too) may have handed us a connection just as our listener
        // closed; a worker still alive hands it back, one that has exited leaves it hanging there.
        const release = this.seam.hold?.() ?? (() => {})
        this.seam.timer(CLUSTER_EXIT_LINGER_MS, () => { release(); this.seam.exit(code) })
      } else {
        setImmediate(() => { this.seam.exit(code) })
      }
    } else {
      log.info({ code, ms: result.ms, forced, failedFinalizers }, 'graceful-reboot: stopped')
    }
    return result
  }

  private defaultTimeout (): number {
    let t = 0
    for (const u of this.units) t = Math.max(t, u.options.timeout)
    return this.units.size === 0 ? 30_000 : t
  }

  private setState (next: LifecycleState): void {
    const prev = this.current
    if (prev === next) return
    this.current = next
    this.emit('state', next, prev)
  }

  private refreshSignals (): void {
    this.uninstallSignals()
    this.uninstallSignals = installSignals(this, [...this.units].map((u) => u.options))
  }
}

const GLOBAL_KEY = Symbol.for('graceful-reboot.lifecycle')

/** The process-wide lifecycle, shared even by several copies of this package. */
export function lifecycle (): Lifecycle {
  const g = globalThis as unknown as Record<symbol, Lifecycle | undefined>
  let l = g[GLOBAL_KEY]
  if (l === undefined) {
    l = new Lifecycle()
    g[GLOBAL_KEY] = l
  }
  return l
}
