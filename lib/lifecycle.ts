// Runs in both processes: the one owner of process state (running -> draining -> stopped, and
// rebooting), shared by every app in the process. Idempotent shutdown(); state events; the exit code.
import { EventEmitter } from 'node:events'
import { RebootError } from './errors'
import { ms } from './options'
import type { ShutdownReason } from './finalizers'
import type { Logger } from './log'
import { stderrLogger } from './log'
import { realProcess, type ProcessSeam } from './os'
import { installSignals } from './signals'
import type { GracefulUnit, UnitResult } from './unit'

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

export interface LifecycleEvents {
  state: [state: LifecycleState, previous: LifecycleState]
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

  constructor (seam: ProcessSeam = realProcess) {
    super()
    this.seam = seam
  }

  get state (): LifecycleState { return this.current }

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
    const limit = ms(timeout, 'timeout', this.defaultTimeout())
    this.stopping = this.runShutdown(limit, options.reason ?? 'shutdown', options.trigger ?? 'code')
    return this.stopping
  }

  /** Starts a reboot: see lib/handoff. Resolves with the successor's pid. */
  reboot (_timeout?: number, _options: { trigger?: string } = {}): Promise<number> {
    return Promise.reject(new RebootError('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'reboot is not implemented yet'))
  }

  /** An uncaught exception or unhandled rejection: drain and exit with the crash code. */
  crash (error: unknown, kind: string): void {
    this.log.error({ err: error, kind }, `graceful-reboot: ${kind}; shutting down`)
    if (this.crashError === undefined) this.crashError = error
    void this.shutdown(undefined, { reason: 'crash', trigger: kind })
  }

  /** Ends the process at once (a second signal during a drain). */
  exitNow (code: number, why: string): void {
    this.log.error({ code }, `graceful-reboot: ${why}; exiting at once`)
    this.seam.exit(code)
  }

  private async runShutdown (timeout: number, reason: ShutdownReason, trigger: string): Promise<ShutdownResult> {
    const start = this.seam.now()
    this.setState('draining')
    const units = [...this.units]
    const exit = units.every((u) => u.options.exit)
    this.log.info({ reason, trigger, timeout, apps: units.length }, 'graceful-reboot: shutting down')
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
    const log = this.log
    this.setState('stopped')
    for (const u of units) this.unregister(u)
    if (exit) {
      log.info({ code, ms: result.ms, forced, failedFinalizers }, 'graceful-reboot: exiting')
      setImmediate(() => { this.seam.exit(code) })
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
