// Runs in the new process (and, for the announcement, in any process on its first start): what the
// process-wide lifecycle holds of the new side: the reboot that started this process (set up once,
// at the first registration) and the announcement that this process serves.
import type * as net from 'node:net'
import type { HandoffEvent } from '../events'
import type { Logger } from '../log'
import type { ProcessSeam, RebootHost } from '../os'
import { Announcer } from './announce'
import type { Inherited } from './inherited'
import { IncomingReboot } from './successor'

/** What the new side needs from the lifecycle. */
export interface NewSideContext {
  readonly seam: Pick<ProcessSeam, 'pid' | 'timer' | 'now'>
  readonly host: Pick<RebootHost, 'send' | 'onParentMessage' | 'sendHandle' | 'onParentGone'>
  inherited (): Inherited
  log (): Logger
  /** The tracked server listening under a LISTEN_FDNAMES key. */
  serverFor (address: string): net.Server | undefined
  /** Whether the lifecycle is still 'running' (the watchdog has nothing to do once it is not). */
  running (): boolean
  /** Drains this process for its reboot's sake: a rollback, or not ready in time. */
  shutdown (timeout: number | undefined, trigger: 'rollback' | 'not-ready'): void
  /** The PID file of the first app that has one. */
  pidFile (): string | undefined
  /** An app has `readiness: 'manual'`. */
  manual (): boolean
  /** See AnnounceContext. */
  startup (): Promise<void> | undefined
  startupFailed (err: unknown): void
  /** The apps' `rebootProbation`: how long the old process watches this one after "ready". */
  probation (): number
  emit (event: HandoffEvent): void
}

export class NewSide {
  private readonly ctx: NewSideContext
  private reboot: IncomingReboot | undefined
  private setUp = false
  private announcer: Announcer | undefined
  /** When the old process was told that this one serves (seam clock); undefined before, or if it was gone. */
  private toldAt: number | undefined

  constructor (ctx: NewSideContext) {
    this.ctx = ctx
  }

  /** In a process started by a reboot: its side of that reboot, once `start()` ran; undefined otherwise. */
  get incoming (): IncomingReboot | undefined { return this.reboot }

  private parentGone = false

  /** Whether this process announced that it serves. */
  get announced (): boolean { return this.announcer?.announced === true }

  /**
   * While the old process of the reboot that started this process can still roll it back (before
   * "ready", or within the probation after it): undefined when it cannot (no reboot started this
   * process, the old process was gone, or the probation, counted from this side's "ready", is over).
   */
  parentWaits (): { ready: boolean, left: number } | undefined {
    if (this.reboot === undefined || this.parentGone) return undefined
    if (!this.announced) return { ready: false, left: this.ctx.probation() }
    if (this.toldAt === undefined) return undefined
    const left = this.toldAt + this.ctx.probation() - this.ctx.seam.now()
    return left > 0 ? { ready: true, left } : undefined
  }

  /**
   * This process starts shutting down: tells the old process, and returns whether it rolls the
   * reboot back (it then serves on and takes the PID file back); false once its probation is over.
   */
  failing (reason: string, trigger: string, cause?: unknown): boolean {
    const waits = this.parentWaits() !== undefined
    return this.reboot?.parent.failing(reason, trigger, cause) === true && waits
  }

  /** A start over (registering after a completed shutdown): the next listen() announces again. */
  restart (): void {
    this.announcer = undefined
  }

  /** Sets up the side of the reboot that started this process, if one did (once per process). */
  start (): void {
    if (this.setUp) return
    this.setUp = true
    const ctx = this.ctx
    const inherited = ctx.inherited()
    if (inherited.parentPid === undefined) return
    // An old process that is gone (its channel closed) can roll nothing back.
    ctx.host.onParentGone?.(() => { this.parentGone = true })
    this.reboot = new IncomingReboot({
      seam: ctx.seam,
      host: ctx.host,
      inherited,
      get log () { return ctx.log() },
      serverFor: (address) => ctx.serverFor(address),
      settled: () => this.announced || !ctx.running(),
      shutdown: (timeout, trigger) => { ctx.shutdown(timeout, trigger) }
    })
  }

  /** The announcement: it tells the old process, writes the PID file, closes unadopted sockets. */
  announcement (): Announcer {
    const ctx = this.ctx
    this.announcer ??= new Announcer({
      pid: ctx.seam.pid,
      tellParent: () => {
        // Once per process: a start over serves on its own, the old process is long gone.
        if (this.toldAt !== undefined || this.reboot === undefined) return false
        const told = this.reboot.parent.ready()
        if (told) {
          this.toldAt = ctx.seam.now()
          this.reboot.sendListeners()
        }
        return told
      },
      inherited: ctx.inherited(),
      get log () { return ctx.log() },
      pidFile: () => ctx.pidFile(),
      manual: () => ctx.manual(),
      startup: () => ctx.startup(),
      startupFailed: (err) => { ctx.startupFailed(err) },
      emit: (e) => { ctx.emit(e) }
    })
    return this.announcer
  }
}
