// Runs in the old process of a reboot: one reboot from spawn to hand-over: start the successor with
// the listening sockets, wait until it is ready, roll back if it fails, then drain this process.
import { RebootError } from '../errors'
import type { HandoffEvent, ShutdownResult } from '../events'
import type { Logger } from '../log'
import { MAX_MS } from '../options'
import type { ProcessSeam, RebootHost } from '../os'
import { startSuccessor, type Successor } from './spawn'

/** A stateful successor starts accepting at the latest this long after the old process's drain deadline. */
export const STATEFUL_MARGIN_MS = 5_000

/** What a reboot needs from the lifecycle. */
export interface OutgoingContext {
  readonly seam: ProcessSeam
  readonly host: RebootHost
  readonly log: Logger
  /** The listening sockets to pass, in order (fds 3, 4, ... in the successor). */
  sockets (): Array<{ fd: number, key: string }>
  /** Ms the successor has to become ready. */
  readonly successorTimeout: number
  /** The reboot failed and nothing else changed the state: back to 'running'. */
  resume (): void
  emit (event: HandoffEvent): void
  /** Drains this process (reason 'reboot') once the successor serves. */
  drain (timeout: number, trigger: string): Promise<ShutdownResult>
}

export class OutgoingReboot {
  private readonly ctx: OutgoingContext
  private successor: Successor | undefined
  private aborted = false

  constructor (ctx: OutgoingContext) {
    this.ctx = ctx
  }

  /** A shutdown wins over a reboot whose successor is not ready yet: kills the successor. */
  abort (): void {
    if (this.successor === undefined) return
    this.aborted = true
    this.successor.kill()
  }

  /**
   * Spawns the successor, waits for its ready message, then starts this process's drain with the
   * deadline `timeout` ms. Resolves with the successor's pid once it is ready; rejects with a
   * RebootError (the successor killed, this process still serving) when it fails or is aborted.
   */
  async run (timeout: number, trigger: string, stateful: boolean): Promise<number> {
    const { seam, host, log } = this.ctx
    const start = seam.now()
    const sockets = this.ctx.sockets()
    const successor = startSuccessor({
      sockets,
      execPath: host.execPath,
      execArgv: host.execArgv,
      argv: host.argv,
      cwd: host.cwd,
      env: host.env,
      parentPid: seam.pid,
      stateful: stateful ? Math.min(timeout + STATEFUL_MARGIN_MS, MAX_MS) : false,
      timeout: this.ctx.successorTimeout,
      spawn: host.spawn,
      timer: (t, fn) => seam.timer(t, fn)
    })
    this.successor = successor
    log.info({ trigger, successor: successor.pid, sockets: sockets.map((s) => s.key), stateful }, 'graceful-reboot: successor spawned')
    this.ctx.emit({ step: 'spawned', pid: successor.pid })
    try {
      await successor.ready
    } catch (err) {
      successor.kill()
      const error = this.aborted
        ? new RebootError('ERR_GRACEFUL_REBOOT_ABORTED', 'the reboot was aborted by a shutdown; successor killed', successor.pid)
        : err as RebootError
      if (!this.aborted) this.ctx.resume()
      log.error({ err: error, successor: successor.pid }, 'graceful-reboot: reboot failed; still serving')
      this.ctx.emit({ step: 'failed', pid: successor.pid, error })
      throw error
    } finally {
      this.successor = undefined
    }
    const readyMs = seam.now() - start
    log.info({ successor: successor.pid, ms: readyMs }, `graceful-reboot: successor ready after ${readyMs} ms; draining`)
    this.ctx.emit({ step: 'ready', pid: successor.pid, ms: readyMs })
    successor.release()
    void this.ctx.drain(timeout, trigger).then((result) => {
      this.ctx.emit({ step: 'drained', pid: seam.pid, result })
    })
    return successor.pid
  }
}
