// Runs in both processes: OS signals and crashes -> lifecycle actions, with the second-signal policy.
import * as os from 'node:os'
import type { LifecycleState, RebootOptions, ShutdownOptions } from './events'
import { logRebootFailure } from './errors'
import { exitCodes } from './exit-codes'
import type { Logger } from './log'
import type { ResolvedOptions, SignalAction } from './options'
import type { ProcessSeam } from './os'

/** The part of the lifecycle that signals and crashes drive. */
export interface SignalTarget {
  readonly state: LifecycleState
  readonly log: Logger
  readonly seam: ProcessSeam
  /** What started the shutdown under way, if one is (its reason and trigger). */
  readonly shutdownCause: { reason: NonNullable<ShutdownOptions['reason']>, trigger: string } | undefined
  /** The shutdown signal that already reached the shutdown under way (it started or joined it) and when; the launcher's restart signal. */
  readonly signalMemory: SignalMemory
  /** The launcher passes a terminal's signals on to the app (npm, nodemon, tsx...): one Ctrl-C arrives twice. */
  readonly signalsRelayed: boolean
  shutdown (timeout?: number, options?: ShutdownOptions): Promise<unknown>
  reboot (timeout?: number, options?: RebootOptions): Promise<number>
  crash (error: unknown, kind: string): void
  exitNow (code: number, why: string): void
}

/** Two apps map one signal to different actions: the app registered first keeps it. */
export interface SignalConflict {
  signal: NodeJS.Signals
  /** Index (registration order) and action of the app whose action is used. */
  kept: { index: number, action: SignalAction }
  /** Index and action of the later app whose action is not used. */
  dropped: { index: number, action: SignalAction }
}

/**
 * The union of the apps' signal maps, in registration order: on a conflict (one signal, two
 * actions) the app registered first keeps the signal, and the conflict is reported.
 */
export function unionSignals (apps: readonly ResolvedOptions[]): { map: Map<NodeJS.Signals, SignalAction>, conflicts: SignalConflict[] } {
  const map = new Map<NodeJS.Signals, SignalAction>()
  const owner = new Map<NodeJS.Signals, number>()
  const conflicts: SignalConflict[] = []
  apps.forEach((a, index) => {
    for (const [sig, action] of Object.entries(a.signals) as Array<[NodeJS.Signals, SignalAction]>) {
      const kept = map.get(sig)
      if (kept === undefined) {
        map.set(sig, action)
        owner.set(sig, index)
      } else if (kept !== action) {
        conflicts.push({ signal: sig, kept: { index: owner.get(sig) ?? 0, action: kept }, dropped: { index, action } })
      }
    }
  })
  return { map, conflicts }
}

/**
 * Under a launcher that passes signals on (npm, nodemon, tsx...), a shutdown signal within this many ms
 * of the first is the same stop, not a second: one Ctrl-C arriving twice (from the terminal and from
 * the launcher), or one stop the launcher sends as two signals (nodemon on SIGTERM: SIGTERM and SIGINT).
 */
export const RELAY_WINDOW_MS = 500

/** What a subscribed signal does: the apps' action, or a launcher's restart (see `installSignals`). */
export type InstalledAction = SignalAction | 'restart'

/** A launcher that restarts the app by a signal of its own, expecting it to clean up and exit (nodemon). */
export interface RestartSignal {
  signal: NodeJS.Signals
  /** The launcher's name, for the log. */
  by: string
}

/**
 * Subscribes the union of the apps' signal maps (and crash handling, when any app wants it).
 * Returns the function that removes every listener again.
 *
 * Under a launcher that restarts the app by a signal (`restart`: nodemon's SIGUSR2), that signal, if
 * the map has it, drains instead of its action and the process then exits by that same signal, as
 * the launcher expects; a repeat of it (nodemon sends it again while it waits) joins the drain, and
 * it does not count as a shutdown signal for the second-signal rule below.
 *
 * Policy: a shutdown signal while running (or rebooting: the shutdown wins) starts a drain. A
 * shutdown signal during a drain that no signal has reached yet (started by the admin route, by
 * code, by a crash, or the old side of a reboot) joins that drain: it is logged, nothing else
 * changes. A shutdown signal during a drain that a shutdown signal started or joined is a second
 * one: exit at once with 128 + its number (under a launcher that passes signals on, not within
 * RELAY_WINDOW_MS of the first: that one joins the drain, whatever its kind). A reboot signal
 * while a reboot or shutdown is under way is logged and ignored. A crash starts a drain that exits with the crash code (a crash during any
 * drain turns its code into the crash code); later crashes are ignored, only the first is logged.
 */
export function installSignals (life: SignalTarget, apps: readonly ResolvedOptions[], restart?: RestartSignal): () => void {
  const { map } = unionSignals(apps)
  const installed = new Map<NodeJS.Signals, InstalledAction>(map)
  if (restart !== undefined && installed.has(restart.signal)) installed.set(restart.signal, 'restart')
  const off: Array<() => void> = []
  for (const [sig, action] of installed) {
    off.push(life.seam.onSignal(sig, () => { onSignal(life, sig, action, restart?.by) }))
  }
  if (apps.some((a) => a.crash)) {
    off.push(life.seam.onCrash((error, kind) => { life.crash(error, kind) }))
  }
  return () => { for (const f of off) f() }
}

function onSignal (life: SignalTarget, sig: NodeJS.Signals, action: InstalledAction, by = 'the launcher'): void {
  const state = life.state
  if (action === 'restart') {
    life.signalMemory.noteRestart(sig)
    if (state === 'draining' || state === 'stopped') {
      life.log.info({ signal: sig, launcher: by }, `graceful-reboot: ${sig} from ${by} received during a drain: joining it; the process exits by ${sig} once drained`)
      return
    }
    life.log.info({ signal: sig, launcher: by }, `graceful-reboot: ${sig} received from ${by}: draining, then exiting by ${sig} so that ${by} starts the app again`)
    void life.shutdown(undefined, { reason: 'shutdown', trigger: sig })
    return
  }
  if (action === 'shutdown') {
    if (state === 'draining' || state === 'stopped') {
      const earlier = life.signalMemory.shutdownSignal
      const at = life.signalMemory.shutdownSignalAt
      if (earlier !== undefined && at !== undefined && life.signalsRelayed && life.seam.now() - at < RELAY_WINDOW_MS) {
        // One Ctrl-C, delivered by the terminal to the process group and passed on by the launcher; or
        // one stop, sent by the launcher as two signals (nodemon: SIGTERM, then SIGINT).
        const what = earlier === sig ? `${sig} again` : `${sig} after ${earlier}`
        life.log.info({ signal: sig, earlier }, `graceful-reboot: ${what} within ${RELAY_WINDOW_MS} ms, under a launcher that passes signals on: the same stop; draining on`)
        return
      }
      if (earlier !== undefined) {
        life.exitNow(exitCodes.secondSignalBase + (os.constants.signals[sig] ?? 0), `second shutdown signal ${sig} (after ${earlier}) during the drain`)
        return
      }
      life.signalMemory.noteShutdown(sig, life.seam.now())
      const cause = life.shutdownCause
      const by = cause === undefined ? '' : ` (${cause.reason}, started by ${cause.trigger})`
      life.log.info({ signal: sig, reason: cause?.reason, trigger: cause?.trigger },
        `graceful-reboot: ${sig} received during a drain${by}: joining it; another shutdown signal exits at once`)
      return
    }
    life.signalMemory.noteShutdown(sig, life.seam.now())
    life.log.info({ signal: sig }, `graceful-reboot: ${sig} received`)
    void life.shutdown(undefined, { reason: 'shutdown', trigger: sig })
    return
  }
  if (state !== 'running') {
    life.log.warn({ signal: sig, state }, `graceful-reboot: ${sig} ignored: ${state}`)
    // Refused in this state, always: the refusal is still reported (the 'refused' step, the status file).
    life.reboot(undefined, { trigger: sig }).catch(() => {})
    return
  }
  life.log.info({ signal: sig }, `graceful-reboot: ${sig} received`)
  life.reboot(undefined, { trigger: sig }).catch(logRebootFailure(life.log, 'reboot'))
}

/**
 * What the lifecycle remembers of the signals that reached the shutdown under way: the shutdown
 * signal that started or joined it (the next one is a second signal) and when, and the signal of a
 * launcher's restart (nodemon: the process exits by it). Forgotten when the lifecycle starts over.
 */
export class SignalMemory {
  private signalled: NodeJS.Signals | undefined
  private signalledAt: number | undefined
  private restart: NodeJS.Signals | undefined

  get shutdownSignal (): NodeJS.Signals | undefined { return this.signalled }
  get shutdownSignalAt (): number | undefined { return this.signalledAt }
  get restartSignal (): NodeJS.Signals | undefined { return this.restart }

  /** The first shutdown signal of this shutdown, and when it came (`now`); later ones change nothing. */
  noteShutdown (signal: NodeJS.Signals, now: number): void {
    if (this.signalled !== undefined) return
    this.signalled = signal
    this.signalledAt = now
  }

  noteRestart (signal: NodeJS.Signals): void {
    this.restart ??= signal
  }

  reset (): void {
    this.signalled = undefined
    this.signalledAt = undefined
    this.restart = undefined
  }
}

/** An app that names a signal for one action while an app registered earlier names it for another. */
export interface NamedApp { readonly name: string, readonly options: ResolvedOptions, readonly log: Logger }

/** Two apps that map one signal to different actions: the first registered keeps it; `added` says so. */
export function warnSignalConflicts (apps: readonly NamedApp[], added: NamedApp): void {
  const index = apps.indexOf(added)
  for (const c of unionSignals(apps.map((u) => u.options)).conflicts) {
    if (c.dropped.index !== index) continue
    const first = apps[c.kept.index]
    added.log.warn({ signal: c.signal, kept: c.kept.action, dropped: c.dropped.action },
      `graceful-reboot: signal map conflict: ${c.signal} is '${c.dropped.action}' in app ${index + 1} (${added.name}) ` +
      `but '${c.kept.action}' in app ${c.kept.index + 1} (${first?.name ?? '?'}), registered earlier; ` +
      `${c.signal} will ${c.kept.action === 'shutdown' ? 'shut down' : 'reboot'} (the app registered first keeps a signal)`)
  }
}
