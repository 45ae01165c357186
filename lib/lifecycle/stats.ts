// Runs in both processes: counts what the lifecycle of this process's reboot line did (reboot requests
// and their outcomes, drains, connections moved, kept and forced) and the last reboot's steps and
// timings, from the lifecycle's own events; a successor starts from the counts its old process hands
// it at the end of probation and again, final, once that process's drain is over. Exactly one process
// of a line reports at a time (`reporting`); `lifecycle().stats()` returns a copy.
import type { EventEmitter } from 'node:events'
import type { RecordedStep } from '../steps'
import type { HandoffEvent, LifecycleEvents, ShutdownResult } from '../events'
import { CUTOVER_MESSAGE, DRAINED_MESSAGE, messageType, type LineCounts } from '../handoff/protocol'
import { addCounts, isCounts, zeroCounts } from '../handoff/counts'
import type { RebootHost } from '../os'

/** The last reboot this process was asked for, and how far it got. */
export interface LastReboot {
  /** What asked for it: a signal name, 'admin', 'code'. */
  trigger: string
  /** 'refused' (it did not start), 'spawned', 'ready' (in probation), 'serving' (passed probation), 'failed' (rolled back or aborted), 'lost' (the successor died or froze after it took over). */
  step: RecordedStep
  /** The successor's pid, from 'spawned' on. */
  successor?: number
  /** When it was asked for (ms since the epoch). */
  at: number
  /** Ms from the request until the successor was ready, and until it passed probation. */
  readyMs?: number
  servingMs?: number
  /** Why it was refused or failed: the RebootError's code and message. */
  error?: { code: string, message: string }
  /** 'lost': why this process took the service back (the successor exited, its channel closed, it froze and was killed). */
  lost?: string
}

/**
 * What `lifecycle().stats()` returns: counts over this process's reboot line (a successor starts from
 * its old process's counts), this process's generation in the line, and whether it is the process of
 * the line that reports them.
 */
export interface LifecycleStats {
  /** 0 for a first start; a successor's is its old process's plus one. */
  generation: number
  /**
   * Whether this process reports its line's counts now: a first start does; a successor from the end
   * of its probation on (when its old process hands it the counts); an old process until then, and
   * again if its successor is lost. Read the counters only from a reporting process: the two processes
   * of a reboot both answer requests for a while, and only this one's counts never go back.
   */
  reporting: boolean
  reboots: {
    /** Reboot requests: refused ones and started ones. */
    requested: number
    /** Not started (a launcher, a terminal, one already in flight...): the process served on. */
    refused: number
    /** A successor was spawned. */
    started: number
    /** The successor passed probation and took over. */
    succeeded: number
    /** The successor failed (crashed, exited, not ready in time, stopped answering) or a shutdown aborted the reboot. */
    failed: number
    /** The successor was lost after it took over: this process took the listeners back (for good, unless a shutdown had joined its drain). */
    lost: number
  }
  /** Shutdown runs finished (the old process's drain after a reboot included). */
  drains: number
  connections: {
    /** Idle keep-alive connections handed to a successor. */
    transferred: number
    /** Connections offered to a successor that drained here instead (a request partly read, the successor could not take it...). */
    kept: number
    /** Connections (and upgraded sockets) destroyed at a drain's deadline. */
    forced: number
  }
  lastReboot: LastReboot | null
}

export class StatsRecorder {
  private readonly now: () => number
  /** This process's own counts; `base` is its line's before it (the old process's last counts). */
  private readonly s: LineCounts & { lastReboot: LastReboot | null } = { ...zeroCounts(), lastReboot: null }
  private base: LineCounts = zeroCounts()
  private generation = 0
  private reporting = true
  private following = false
  private readonly watchers: Array<() => void> = []

  constructor (events: Pick<EventEmitter<LifecycleEvents>, 'on'>, now: () => number) {
    this.now = now
    events.on('handoff', (e) => {
      this.handoff(e)
      this.changed()
    })
    events.on('shutdown', (result) => {
      this.drained(result)
      this.changed()
    })
  }

  /** Calls `fn` after every change of the counts or of `reporting` (a worker tells its supervisor). */
  watch (fn: () => void): void {
    this.watchers.push(fn)
  }

  private changed (): void {
    for (const fn of this.watchers) fn()
  }

  /**
   * In a successor (of generation `generation`): follows the old process's messages; it reports once
   * the old process hands it the line's counts, or once that process is gone.
   */
  followParent (generation: number, host: Pick<RebootHost, 'onParentMessage' | 'onParentGone'>): void {
    if (this.following) return
    this.following = true
    this.generation = generation
    this.reporting = false
    host.onParentMessage((m) => {
      const type = messageType(m)
      if (type !== CUTOVER_MESSAGE && type !== DRAINED_MESSAGE) return
      const counts = (m as { counts?: unknown }).counts
      if (isCounts(counts)) this.inherit(counts)
      else this.orphaned()
    })
    host.onParentGone?.(() => { this.orphaned() })
  }

  /**
   * The old process's counts of the line (at the end of probation, then final once its drain is over):
   * this process reports from now on. Counts that would go back (a message out of order) are ignored.
   */
  inherit (counts: LineCounts): void {
    if (sum(counts) >= sum(this.base)) this.base = counts
    this.reporting = true
    this.changed()
  }

  /** The old process is gone before it handed the line over: this process reports what it has. */
  orphaned (): void {
    if (this.reporting) return
    this.reporting = true
    this.changed()
  }

  /** The line's counts for a successor; with `result`, this process's drain (not counted yet) folded in. */
  carried (result?: ShutdownResult): LineCounts {
    const own: LineCounts = structuredClone({ reboots: this.s.reboots, drains: this.s.drains, connections: this.s.connections })
    if (result !== undefined) addDrain(own, result)
    return addCounts(this.base, own)
  }

  /** A copy: later steps do not change it. */
  snapshot (): LifecycleStats {
    return { generation: this.generation, reporting: this.reporting, ...this.carried(), lastReboot: structuredClone(this.s.lastReboot) }
  }

  private handoff (e: HandoffEvent): void {
    const r = this.s.reboots
    const last = this.s.lastReboot
    switch (e.step) {
      case 'refused':
        r.requested++
        r.refused++
        this.s.lastReboot = { trigger: e.trigger, step: 'refused', at: this.now(), error: brief(e.error) }
        break
      case 'spawned':
        r.requested++
        r.started++
        this.s.lastReboot = { trigger: e.trigger, step: 'spawned', successor: e.pid, at: this.now() }
        break
      case 'ready':
        if (last?.successor === e.pid) Object.assign(last, { step: 'ready', readyMs: e.ms })
        break
      case 'serving':
        r.succeeded++
        if (last?.successor === e.pid) Object.assign(last, { step: 'serving', servingMs: e.ms })
        // The successor reports the line from its cutover on (it gets these counts with it).
        this.reporting = false
        break
      case 'failed':
        r.failed++
        if (last?.successor === e.pid) Object.assign(last, { step: 'failed', error: brief(e.error) })
        break
      case 'lost':
        r.lost++
        if (last?.successor === e.pid) Object.assign(last, { step: 'lost', lost: e.reason })
        // This process took the service back: it reports again.
        this.reporting = true
        break
      default:
    }
  }

  private drained (result: ShutdownResult): void {
    addDrain(this.s, result)
  }
}

function addDrain (counts: LineCounts, result: ShutdownResult): void {
  counts.drains++
  const c = counts.connections
  c.forced += result.forced
  for (const app of result.apps) {
    c.transferred += app.transferred
    for (const n of Object.values(app.kept)) c.kept += n ?? 0
  }
}

function sum (c: LineCounts): number {
  return Object.values(c.reboots).reduce((a, b) => a + b, 0) + c.drains + Object.values(c.connections).reduce((a, b) => a + b, 0)
}

function brief (error: { code: string, message: string }): { code: string, message: string } {
  return { code: error.code, message: error.message }
}
