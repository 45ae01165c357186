// Runs in the new process (and in any process on its first start): announces that this process
// serves: writes the PID file, tells the old process of a reboot that it may drain, and closes the
// inherited sockets that nothing adopted.
import type { HandoffEvent } from '../events'
import type { Listener } from '../handoff/listeners'
import type { Logger } from '../log'
import { writePidFile } from '../pidfile'
import type { Inherited } from './inherited'

/** What the announcement needs from the lifecycle. */
export interface AnnounceContext {
  readonly pid: number
  readonly inherited: Inherited
  /** Tells the old process of a reboot that this one serves; false when it is gone. */
  tellParent (): boolean
  readonly log: Logger
  /** The PID file of the first app that has one. */
  pidFile (): string | undefined
  /** An app has `readiness: 'manual'`: only `declareReady()` announces. */
  manual (): boolean
  /** The apps' start graphs still running (run now if not yet): announce once it resolves; undefined: none. */
  startup (): Promise<void> | undefined
  /** A required service of the start graph failed: this process does not announce. */
  startupFailed (err: unknown): void
  emit (event: HandoffEvent): void
}

export class Announcer {
  private readonly ctx: AnnounceContext
  private done = false

  constructor (ctx: AnnounceContext) {
    this.ctx = ctx
  }

  /** Whether this process announced that it serves. */
  get announced (): boolean { return this.done }

  /**
   * A tracked server is listening: announce once every inherited socket is adopted and every
   * required service of the start graph started (unless readiness is manual).
   */
  listening (l: Listener): void {
    if (l.adopted) this.ctx.log.info({ key: l.key }, 'graceful-reboot: adopted an inherited socket')
    this.check()
  }

  private check (): void {
    if (this.done || this.ctx.inherited.pending > 0 || this.ctx.manual()) return
    const starting = this.ctx.startup()
    if (starting === undefined) return this.announce()
    starting.then(() => { this.check() }, (err: unknown) => { this.ctx.startupFailed(err) })
  }

  /** This process serves. Idempotent. */
  announce (): void {
    if (this.done) return
    this.done = true
    const { inherited: from, log } = this.ctx
    const pidFile = this.ctx.pidFile()
    if (pidFile !== undefined) {
      // Its folder was checked at start-up; if it went away since, this process serves all the same.
      try {
        writePidFile(pidFile, this.ctx.pid)
      } catch (err) {
        log.error({ err, pidFile }, `graceful-reboot: ${(err as Error).message}; serving without it`)
      }
    }
    if (from.parentPid !== undefined) {
      if (this.ctx.tellParent()) log.info({ parent: from.parentPid }, 'graceful-reboot: ready; told the old process')
      else log.warn({ parent: from.parentPid }, 'graceful-reboot: ready; the old process is gone, serving alone')
    }
    const unused = from.closeUnadopted()
    if (unused.length > 0) log.warn({ sockets: unused }, 'graceful-reboot: closed inherited sockets that no listen() adopted')
    this.ctx.emit({ step: 'announced', pid: this.ctx.pid, parentPid: from.parentPid })
  }
}
