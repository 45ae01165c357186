// Runs in both processes: the apps registered with the process-wide lifecycle, and what their
// options add up to for the process (the default deadline, the PID file, the successor's time to
// become ready, probation, the readiness delay, whether the process exits).
import type { GracefulUnit } from '../drain/app'
import { DEFAULTS, ms } from '../options'
import type { ProcessSeam } from '../os'
import { refuseOtherInstance } from '../trust'

export class AppRegistry {
  private readonly units = new Set<GracefulUnit>()

  get size (): number { return this.units.size }

  /** The registered apps, in registration order. */
  list (): GracefulUnit[] { return [...this.units] }

  add (unit: GracefulUnit): void { this.units.add(unit) }

  /** Removes an app; false when it was not registered. */
  delete (unit: GracefulUnit): boolean { return this.units.delete(unit) }

  /** The deadline of a shutdown or reboot called without one: the largest `timeout` option (the default with no app). */
  defaultTimeout (): number {
    return this.units.size === 0 ? DEFAULTS.timeout : this.max((u) => u.options.timeout)
  }

  /** The drain deadline in ms a shutdown or reboot was called with (`defaultTimeout()` if none), or why it is bad. */
  deadline (timeout: number | undefined): number | { error: unknown } {
    try {
      return ms(timeout, 'timeout', this.defaultTimeout())
    } catch (error) {
      return { error }
    }
  }

  /** The PID file of the first app that has one, of `units` (an app that closed during the drain counts too). */
  /** `inWorker`: in a worker of `graceful-reboot run`, whose PID file would name one worker of many (the supervisor's --pid-file names the service). */
  constructor (private readonly inWorker: () => boolean = () => false) {}

  pidFile (units: Iterable<GracefulUnit> = this.units): string | undefined {
    if (this.inWorker()) return undefined
    return [...units].find((u) => u.options.pidFile !== undefined)?.options.pidFile
  }

  /**
   * Throws PidFileError when the PID file of `unit` names another live instance of the app (not one
   * of `mine`: this process, the old process of the reboot that started it); a stale one is taken over.
   * Not in a `node:cluster` worker (PM2 cluster mode): its siblings share its options, PID file included.
   */
  refuseOtherInstance (unit: GracefulUnit, mine: ReadonlyArray<number | undefined>, clusterWorker: boolean): void {
    const file = this.pidFile([unit])
    if (file !== undefined && !clusterWorker) refuseOtherInstance(file, mine)
  }

  /** An app set `launcher: 'ignore'`: no launcher's expectations apply. */
  get launcherIgnored (): boolean { return this.some((u) => u.options.launcher === 'ignore') }

  /** An app set `readiness: 'manual'`: the process announces it serves only when told. */
  get manualReadiness (): boolean { return this.some((u) => u.options.readiness === 'manual') }

  /** The ms a successor has to become ready: the largest `rebootTimeout`. */
  get successorTimeout (): number { return this.max((u) => u.options.rebootTimeout) }

  /** The ms both processes serve after the successor is ready: the largest `rebootProbation`. */
  get probation (): number { return this.max((u) => u.options.rebootProbation) }

  /** The ms a successor that took over may stay silent before it is taken for frozen: the largest `successorLostAfter`. */
  get successorLostAfter (): number { return this.max((u) => u.options.successorLostAfter) }

  /** The ms a drain waits (readiness flipped) before it stops accepting: the largest `readinessDelay`. */
  get readinessDelay (): number { return this.max((u) => u.options.readinessDelay) }

  /** Why an app forbids a reboot right now (an HTTP/2 server without TLS, say), one entry per app. */
  /**
   * The start graphs still to finish (each run now if not yet): a promise of every required service
   * started, or undefined when none is pending (no service, or all started).
   */
  startup (seam: ProcessSeam): Promise<void> | undefined {
    const pending = this.list().filter((u) => u.startup.size > 0 && u.startup.status().state !== 'started')
    if (pending.length === 0) return undefined
    return Promise.all(pending.map((u) => u.startup.run(seam, u.log))).then(() => {})
  }

  blockers (): Array<string | undefined> { return this.list().map((u) => u.rebootBlocker?.()) }

  private some (test: (u: GracefulUnit) => boolean): boolean { return this.list().some(test) }

  private max (of: (u: GracefulUnit) => number): number { return Math.max(0, ...this.list().map(of)) }
}
