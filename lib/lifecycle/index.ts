// Runs in both processes: the process-wide lifecycle's facade: the public `Lifecycle` type (what an
// app may read and call), the one instance shared by every copy of the package, and `rebootedFrom()`.
import type { EventEmitter } from 'node:events'
import type { RebootError } from '../errors'
import type { LifecycleEvents, LifecycleState, RebootOptions, ShutdownOptions, ShutdownResult } from '../events'
import type { Launcher } from '../launcher'
import type { LogRole } from '../log'
import { ProcessLifecycle } from './core'
import type { LifecycleStats } from './stats'

export { ProcessLifecycle } from './core'
export type { LifecycleHost } from './host'
export { CLUSTER_EXIT_LINGER_MS } from './exit'

/**
 * The process-wide coordinator every registered app shares (`lifecycle()`): its state, its events
 * (`'state'`, `'handoff'`), and the process-wide shutdown and reboot behind the apps' decorators.
 */
export interface Lifecycle extends Pick<EventEmitter<LifecycleEvents>, 'on' | 'once' | 'off' | 'addListener' | 'removeListener'> {
  /** 'running', 'rebooting' (a reboot in flight), 'draining', or 'stopped' (after a shutdown with `exit: false`). */
  readonly state: LifecycleState
  /** What runs this process (a terminal, systemd, nodemon, node --watch, tsx, an npm script, PM2...), read once from its parent. */
  readonly launcher: Launcher
  /** Whether this process announced that it serves: /health/startup answers 200 from then on. */
  readonly started: boolean
  /** The manual readiness switch (default true). */
  readonly readyForTraffic: boolean
  /** This process's side of a reboot: 'old' from the start of one until exit (unless it fails), 'new' in a process a reboot started. */
  readonly role: LogRole | undefined
  /** Sets the manual readiness switch: false takes this process out of traffic (/health/ready 503) without draining. */
  setReady (ready: boolean): void
  /** Why `reboot()` would be refused right now (the RebootError it would reject with), or undefined. */
  canReboot (): RebootError | undefined
  /**
   * Drains every app (each with the deadline `timeout` ms from now), then exits with the code of
   * `exitCodes` unless an app has `exit: false`. Idempotent: a second call returns the same promise.
   * `timeout` defaults to the largest `timeout` option of the registered apps.
   */
  shutdown (timeout?: number, options?: ShutdownOptions): Promise<ShutdownResult>
  /**
   * Re-executes the program as a successor that inherits every listening socket, waits until it is
   * ready (`rebootTimeout`) and through probation (`rebootProbation`), then drains this process with
   * the deadline `timeout` ms and exits. Resolves with the successor's pid after probation. Rejects
   * with a RebootError, and keeps serving, when the reboot cannot start (another reboot in flight,
   * shutting down, Windows, a cluster worker, PID 1, a launcher it would detach from) or the
   * successor exits or stays silent; with ERR_GRACEFUL_REBOOT_ABORTED, and drains, when a shutdown
   * starts before probation is over.
   */
  reboot (timeout?: number, options?: RebootOptions): Promise<number>
  /**
   * This process serves: writes the PID file, tells the old process (when started by a reboot) and
   * closes inherited sockets nothing adopted. Automatic once every inherited socket is adopted,
   * unless an app has `readiness: 'manual'`. Idempotent.
   */
  announceReady (): void
  /**
   * Counts over this process's reboot line (a successor starts from its old process's counts): reboot
   * requests and their outcomes, drains, connections handed over, kept and forced; this process's
   * `generation` in the line and whether it is the one that reports the line now (`reporting`); this
   * process's last reboot's step and timings. A copy, safe to keep.
   */
  stats (): LifecycleStats
}

const GLOBAL_KEY = Symbol.for('graceful-reboot.lifecycle')

/** The process-wide lifecycle with its internals, shared even by several copies of this package (the adapters and signals use it). */
export function core (): ProcessLifecycle {
  const g = globalThis as unknown as Record<symbol, ProcessLifecycle | undefined>
  let l = g[GLOBAL_KEY]
  if (l === undefined) {
    l = new ProcessLifecycle()
    g[GLOBAL_KEY] = l
  }
  return l
}

/** The process-wide lifecycle, shared even by several copies of this package. */
export function lifecycle (): Lifecycle {
  return core()
}

/** The pid of the old process when this process was started by a reboot; undefined otherwise. */
export function rebootedFrom (): number | undefined {
  return core().inherited.parentPid
}
