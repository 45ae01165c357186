// Runs in both processes: the shapes the process-wide lifecycle reports: its states, what a shutdown
// did, and the steps of a reboot.
import type { RebootError } from './errors'
import type { RebootStep } from './steps'
import type { UnitResult } from './drain/app'
import type { ShutdownReason } from './drain/finalizers'

export type LifecycleState = 'running' | 'draining' | 'stopped' | 'rebooting'

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

export interface RebootOptions {
  trigger?: string
  /** The successor accepts only once this process has exited (apps holding an exclusive resource). */
  stateful?: boolean
}

/** A step of a reboot, as `lifecycle().on('handoff', ...)` reports it; `step` is a RebootStep (lib/steps.ts), the name the hooks, the status file and stats use too. */
export type HandoffEvent =
  /** In the process asked to reboot (`pid`): the reboot did not start (`error` says why); it serves on. */
  | { step: 'refused', pid: number, error: RebootError, trigger: string }
  | { step: 'spawned', pid: number, trigger: string }
  | { step: 'ready', pid: number, ms: number }
  /** The successor `pid` passed probation: it serves, and this process drains now. */
  | { step: 'serving', pid: number, ms: number }
  /** The reboot failed (rolled back: this process serves on) or was aborted by a shutdown. */
  | { step: 'failed', pid: number, error: RebootError }
  | { step: 'drained', pid: number, result: ShutdownResult }
  /**
   * In the old process, during its drain: the successor `pid` exited, closed its IPC channel, or stayed
   * silent for `successorLostAfter` ms and was killed (`reason`). This process accepts again on
   * `listening` (listener keys) and rewrote the PID file. `back: true` (a late rollback): it called its
   * drain off and serves again for good, in state 'running' (it can be rebooted again). `back: false`
   * (a shutdown, a signal or a crash joined the drain, or an app's close began): it serves until its
   * drain is over, then exits with `exitCodes.successorLost` (69).
   */
  | { step: 'lost', pid: number, reason: string, listening: string[], back: boolean }
  /** In the new process: it serves and told the old process so (or, on a first start, it serves). */
  | { step: 'announced', pid: number, parentPid: number | undefined }

export interface LifecycleEvents {
  /** The lifecycle's state changed: 'draining' is a drain's start (a shutdown, or the old process of a reboot). */
  state: [state: LifecycleState, previous: LifecycleState]
  /** A step of a reboot (HandoffEvent). */
  handoff: [event: HandoffEvent]
  /** A drain finished (before the process exits): what it did, the exit code it earned. */
  shutdown: [result: ShutdownResult]
}

/** What a reboot's drain handed over: connections the successor took, and those drained here (every reason). */
export function handedOver (result: ShutdownResult): { transferred: number, kept: number } {
  let transferred = 0
  let kept = 0
  for (const a of result.apps) {
    transferred += a.transferred
    for (const n of Object.values(a.kept)) kept += n ?? 0
  }
  return { transferred, kept }
}

/** Every step the 'handoff' event reports is a RebootStep: one vocabulary (checked by the compiler). */
export type HandoffStep = HandoffEvent['step'] extends RebootStep ? HandoffEvent['step'] : never
