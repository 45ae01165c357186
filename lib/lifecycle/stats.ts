// Runs in both processes: counts what this process's lifecycle did (reboot requests and their
// outcomes, drains, connections moved, kept and forced) and the last reboot's steps and timings, from
// the lifecycle's own events; `lifecycle().stats()` returns a copy.
import type { EventEmitter } from 'node:events'
import type { HandoffEvent, LifecycleEvents, ShutdownResult } from '../events'

/** The last reboot this process was asked for, and how far it got. */
export interface LastReboot {
  /** What asked for it: a signal name, 'admin', 'code'. */
  trigger: string
  /** 'refused' (it did not start), 'spawned', 'ready' (in probation), 'serving' (passed probation), 'failed' (rolled back or aborted), 'lost' (the successor died or froze after it took over). */
  step: 'refused' | 'spawned' | 'ready' | 'serving' | 'failed' | 'lost'
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

/** What `lifecycle().stats()` returns: counts over this process's life (a successor starts from zero). */
export interface LifecycleStats {
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
  private readonly s: LifecycleStats = {
    reboots: { requested: 0, refused: 0, started: 0, succeeded: 0, failed: 0, lost: 0 },
    drains: 0,
    connections: { transferred: 0, kept: 0, forced: 0 },
    lastReboot: null
  }

  constructor (events: Pick<EventEmitter<LifecycleEvents>, 'on'>, now: () => number) {
    this.now = now
    events.on('handoff', (e) => { this.handoff(e) })
    events.on('shutdown', (result) => { this.drained(result) })
  }

  /** A copy: later steps do not change it. */
  snapshot (): LifecycleStats {
    return structuredClone(this.s)
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
        break
      case 'failed':
        r.failed++
        if (last?.successor === e.pid) Object.assign(last, { step: 'failed', error: brief(e.error) })
        break
      case 'lost':
        r.lost++
        if (last?.successor === e.pid) Object.assign(last, { step: 'lost', lost: e.reason })
        break
      default:
    }
  }

  private drained (result: ShutdownResult): void {
    this.s.drains++
    const c = this.s.connections
    c.forced += result.forced
    for (const app of result.apps) {
      c.transferred += app.transferred
      for (const n of Object.values(app.kept)) c.kept += n ?? 0
    }
  }
}

function brief (error: { code: string, message: string }): { code: string, message: string } {
  return { code: error.code, message: error.message }
}
