// Runs in both processes: one shutdown run over every registered app: the readiness delay, the
// drains in parallel against one deadline, and the exit code the outcome earns (a pure function).
import type { GracefulUnit, HandOverFor, UnitResult } from '../drain/app'
import type { ShutdownReason } from '../drain/finalizers'
import type { ShutdownResult } from '../events'
import { exitCodes } from '../exit-codes'
import type { ProcessSeam } from '../os'

/** What a shutdown is for, and what started it. */
export type Cause = { reason: ShutdownReason, trigger: string }

/** What decides the exit code of a shutdown. */
export interface ExitCodeFacts {
  /** An uncaught exception or unhandled rejection started or reached this shutdown. */
  crashed: boolean
  /** A successor that was not ready within `rebootTimeout` of its start gave up. */
  gaveUp: boolean
  /** The old process of a reboot lost its successor during the drain. */
  lost?: boolean
  apps: readonly UnitResult[]
}

/**
 * The exit code of a shutdown, first match wins: crash, not ready in time (a successor), the
 * successor lost during the drain (an old process), a finalizer
 * failed, connections forced at the deadline, else clean.
 */
export function exitCode (f: ExitCodeFacts): number {
  if (f.crashed) return exitCodes.crash
  if (f.gaveUp) return exitCodes.notReady
  if (f.lost === true) return exitCodes.successorLost
  if (f.apps.some((a) => a.finalizers.some((x) => !x.ok))) return exitCodes.finalizerFailed
  if (f.apps.some((a) => a.forced + a.forcedUpgraded > 0)) return exitCodes.forced
  return exitCodes.clean
}

/** One shutdown run: what it drains and how. */
export interface ShutdownRun {
  readonly seam: Pick<ProcessSeam, 'now' | 'timer'>
  readonly units: readonly GracefulUnit[]
  /** When the shutdown started (seam clock) and its length: the deadline of every app's drain. */
  readonly start: number
  readonly timeout: number
  readonly reason: ShutdownReason
  readonly trigger: string
  /** Ms to wait with readiness flipped before the drains start (bounded by `timeout`). */
  readonly readinessDelay: number
  /** In a reboot: moves connections to the successor. */
  readonly handOver: HandOverFor | undefined
  /** Read once the drains are over (a crash during the drain counts). */
  crashed (): boolean
  gaveUp (): boolean
  /** The successor of this process's reboot was lost during the drain. */
  lost? (): boolean
  /** The drain was called off (a late rollback): the apps' drains are not started after the readiness delay. */
  off? (): boolean
}

/** Drains every app of `run` in parallel and reports the outcome with its exit code. */
export async function drainApps (run: ShutdownRun): Promise<ShutdownResult> {
  const { seam, start, timeout, reason, trigger } = run
  const delay = Math.min(timeout, run.readinessDelay)
  if (delay > 0) await new Promise<void>((resolve) => { seam.timer(delay, resolve) })
  const deadline = start + timeout
  const apps = run.off?.() === true ? [] : await Promise.all(run.units.map((u) => u.shutdown(deadline, reason, trigger, run.handOver)))
  const forced = apps.reduce((n, a) => n + a.forced + a.forcedUpgraded, 0)
  const failedFinalizers = apps.flatMap((a) => a.finalizers.filter((f) => !f.ok).map((f) => f.name))
  const crashed = run.crashed()
  const code = exitCode({ crashed, gaveUp: run.gaveUp(), lost: run.lost?.() === true, apps })
  return { code, reason: crashed ? 'crash' : reason, trigger, ms: seam.now() - start, forced, failedFinalizers, apps }
}
