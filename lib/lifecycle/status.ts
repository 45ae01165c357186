// Runs in both processes: keeps this process's status file (lib/status-file.ts) beside the PID file
// up to date: its state and role, and each step of the last reboot it was asked for, from the
// lifecycle's own events. The graceful-reboot CLI reads it for `reboot --wait` and `status`.
import type { EventEmitter } from 'node:events'
import type { HandoffEvent, LifecycleEvents, LifecycleState } from '../events'
import type { LogRole, Logger } from '../log'
import { StatsRecorder } from './stats'
import { removeStatus, writeStatus, type RebootStatus, type RecordedStep, type StatusRecord } from '../status-file'
import { startTicks } from '../proc'

export interface StatusContext {
  readonly pid: number
  /** The PID file of the registered apps; no status file without one. */
  pidFile (): string | undefined
  state (): LifecycleState
  role (): LogRole | undefined
  log (): Logger
  /** Runs `fn` once systemd has the messages of this step (lib/lifecycle/notify.ts): a verdict the CLI reads is one systemd knows. */
  told?: (fn: () => void) => void
}

/** How many reboot requests the status file lists. */
const KEPT_ATTEMPTS = 8

export class StatusReporter {
  private readonly ctx: StatusContext
  private readonly startedAt = Date.now()
  /** What `lifecycle().stats()` returns; its counts go into the file too. */
  readonly stats: StatsRecorder
  /** The last reboot requests, oldest first: a refusal while a reboot runs must not hide that reboot's verdict. */
  private readonly attempts: RebootStatus[] = []
  /** The PID file whose status file this process wrote (removed at exit). */
  private wroteBeside: string | undefined
  private warned = false
  /** This process's start time from /proc (Linux): the CLI tells it from a later process with the same pid. */
  private readonly ticks: number | undefined

  constructor (events: Pick<EventEmitter<LifecycleEvents>, 'on'>, ctx: StatusContext) {
    this.ctx = ctx
    this.ticks = ctx.pid === process.pid ? startTicks(ctx.pid) : undefined
    // First: the counts are up to date when this reporter writes a step.
    this.stats = new StatsRecorder(events, () => Date.now())
    // Stopped: the process ends (or, with `exit: false`, serves no more): its status file goes.
    events.on('state', (state) => { if (state === 'stopped') this.remove(); else this.write() })
    events.on('handoff', (e) => { this.handoff(e) })
  }

  /** A reboot step from the lifecycle's 'handoff' events; every event rewrites the file. */
  handoff (e: HandoffEvent): void {
    switch (e.step) {
      case 'refused':
        this.begin({ step: 'refused', trigger: e.trigger, error: brief(e.error) })
        break
      case 'serving':
        this.afterSystemd(() => { this.update('serving') })
        break
      case 'failed':
        this.afterSystemd(() => { this.update('failed', e.error) })
        break
      case 'spawned':
        this.begin({ step: 'spawned', trigger: e.trigger, successor: e.pid })
        break
      case 'ready':
        this.update('ready')
        break
      case 'lost':
        this.update('lost', undefined, { why: e.reason, back: e.back })
        break
      default:
        this.write()
    }
  }

  private counts (): StatusRecord['reboots'] {
    const { requested, refused, failed, succeeded } = this.stats.snapshot().reboots
    return { requested, refused, failed, succeeded }
  }

  /** A verdict is written once systemd knows it (MAINPID= of the successor, or READY=1 after a rollback). */
  private afterSystemd (fn: () => void): void {
    if (this.ctx.told === undefined) fn()
    else this.ctx.told(fn)
  }

  /** Rewrites the file (a change of state); nothing before this process wrote one or announced. */
  write (): void {
    const pidFile = this.ctx.pidFile()
    if (pidFile === undefined) return
    const record: StatusRecord = {
      pid: this.ctx.pid,
      state: this.ctx.state(),
      role: this.ctx.role() ?? null,
      startedAt: this.startedAt,
      updatedAt: Date.now(),
      reboots: this.counts(),
      attempts: this.attempts,
      ...(this.ticks === undefined ? {} : { startTicks: this.ticks })
    }
    try {
      writeStatus(pidFile, record)
      this.wroteBeside = pidFile
    } catch (err) {
      if (this.warned) return
      this.warned = true
      this.ctx.log().warn({ err, pidFile }, 'graceful-reboot: could not write the status file beside the PID file; `graceful-reboot reboot --wait` falls back to watching the PID file')
    }
  }

  /** This process ends: its status file goes. */
  remove (): void {
    if (this.wroteBeside !== undefined) removeStatus(this.wroteBeside, this.ctx.pid)
    this.wroteBeside = undefined
  }

  private begin (attempt: Omit<RebootStatus, 'seq' | 'at'>): void {
    this.attempts.push({ seq: this.stats.snapshot().reboots.requested, at: Date.now(), ...attempt })
    if (this.attempts.length > KEPT_ATTEMPTS) this.attempts.shift()
    this.write()
  }

  /** Sets the step of the reboot that started (spawned a successor) last: 'ready', 'serving' and 'failed' are about it. */
  private update (step: RecordedStep, error?: { code: string, message: string }, lost?: { why: string, back: boolean }): void {
    const started = this.attempts.filter((a) => a.step !== 'refused')
    const a = started[started.length - 1]
    if (a === undefined) return
    a.step = step
    a.at = Date.now()
    if (error !== undefined) a.error = brief(error)
    if (lost !== undefined) Object.assign(a, { lost: lost.why, back: lost.back })
    this.write()
  }
}

/** What the file keeps of an error: its code and message. */
function brief (error: { code: string, message: string }): { code: string, message: string } {
  return { code: error.code, message: error.message }
}
