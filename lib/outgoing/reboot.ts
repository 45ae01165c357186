// Runs in the old process of a reboot: one reboot from spawn to hand-over: start the successor with
// the listening sockets, wait until it is ready, serve beside it through probation, roll back if it
// fails at any point, then drain this process, watching the successor until the drain is over (lost:
// a late rollback).
import type * as net from 'node:net'
import { RebootError } from '../errors'
import { handedOver, type HandoffEvent, type ShutdownResult } from '../events'
import type { Logger } from '../log'
import { MAX_MS } from '../limits'
import { exitCodes } from '../exit-codes'
import type { ProcessSeam, RebootHost } from '../os'
import type { HandOverFor } from '../drain/app'
import { CUTOVER_MESSAGE, DRAINED_MESSAGE, type LineCounts } from '../handoff/protocol'
import { startSuccessor, type Successor } from './spawn'
import type { Standby } from './standby'
import type { StateSource } from './state'
import { handOverWith, transferWindow } from './transfer'

/** A stateful successor starts accepting at the latest this long after the old process's drain deadline. */
const STATEFUL_MARGIN_MS = 5_000
/** Ms the final snapshots may take to reach the successor beyond `handoverTimeout`, before this process exits without them. */
const FINAL_STATE_MARGIN_MS = 5_000
/** How often the transfer is looked at for `moved` (it has settled when two looks in a row find nothing moving). */
const TRANSFER_SETTLED_MS = 50

/** What became of this process when its successor was lost during the drain. */
export interface LostOutcome {
  /** true: a late rollback, this process serves again for good; false: it serves until its drain is over, then exits with successorLost. */
  back: boolean
  /** The listener keys it accepts on again. */
  listening: string[]
}

/** What a reboot needs from the lifecycle. */
export interface OutgoingContext {
  readonly seam: ProcessSeam
  readonly host: RebootHost
  readonly log: Logger
  /** The listening sockets to pass, in order (fds 3, 4, ... in the successor). */
  sockets (): Array<{ fd: number, key: string }>
  /** Ms the successor has to become ready. */
  readonly successorTimeout: number
  /** Ms both processes serve after ready before this one drains (0: drain at once). */
  readonly probation: number
  /** Ms of silence after which a successor that took over is frozen: killed, and this process serves again. */
  readonly successorLostAfter?: number
  /** A rolled-back successor that may still be draining: killed if this process exits first. */
  leftover (successor: Successor): void
  /** The reboot failed and nothing else changed the state: back to 'running' (and the PID file back to this pid). */
  resume (): void
  emit (event: HandoffEvent): void
  /**
   * The successor was lost during the drain: this process listens again on the copies `standby` kept,
   * for good if it can (a late rollback), else until its drain is over; the PID file names it again.
   * `passed`: the keys of the listeners the successor was given.
   */
  lost (standby: Standby, passed: readonly string[]): LostOutcome
  /** The key a listening server was passed under, for the connections it accepted. */
  keyOf (server: net.Server): string | undefined
  /** Drains this process (reason 'reboot') once the successor serves; `handOver` moves connections to it. */
  drain (timeout: number, trigger: string, handOver: HandOverFor | undefined): Promise<ShutdownResult>
  /**
   * This reboot's connection transfer is over (called once, after 'serving'): no connection is on its
   * way or waiting for its turn (two looks TRANSFER_SETTLED_MS apart), or the transfer window closed,
   * or the drain ended first (a stateful successor: at the drain's end). A supervisor's rollout waits
   * for it before it reboots the next slot: the moves and the next successor's start-up do not compete.
   */
  moved? (): void
  /** The state registered with `handover()`, read at the spawn. */
  state? (): StateSource
  /** The reason a 'beforeSpawn' hook vetoes the reboot, or undefined; no promise at all without such hooks (the spawn is not deferred). */
  veto? (trigger: string): Promise<string | undefined> | undefined
  /** This process's line counts for the successor (with `result`, this process's drain, folded in), and its generation. */
  counts? (result?: ShutdownResult): LineCounts
  readonly generation?: number
}

export class OutgoingReboot {
  private readonly ctx: OutgoingContext
  private successor: Successor | undefined
  /** The successor that passed probation: this process drains into it. */
  private servedBy: Successor | undefined
  private stateSource: StateSource | undefined
  private aborted = false
  private onAbort: (() => void) | undefined

  constructor (ctx: OutgoingContext) {
    this.ctx = ctx
  }

  /** A shutdown wins over a reboot whose successor is not through probation yet: stops the successor. */
  abort (): void {
    this.aborted = true
    if (this.successor === undefined) return
    this.successor.stop()
    this.onAbort?.()
  }

  /**
   * Spawns the successor, waits for its ready message and through probation (both processes serve),
   * then starts this process's drain with the deadline `timeout` ms. Resolves with the successor's
   * pid after probation; rejects with a RebootError or AdoptionError when it fails (the successor
   * stopped, this process still serving) or is aborted (ERR_GRACEFUL_REBOOT_ABORTED: the successor
   * stopped, this process draining).
   */
  async run (timeout: number, trigger: string, stateful: boolean): Promise<number> {
    const { seam, host, log } = this.ctx
    const asked = this.ctx.veto?.(trigger)
    const vetoed = asked === undefined ? undefined : await asked
    if (this.aborted) throw new RebootError('ERR_GRACEFUL_REBOOT_ABORTED', 'the reboot was aborted by a shutdown before its successor was spawned')
    if (vetoed !== undefined) {
      const error = new RebootError('ERR_GRACEFUL_REBOOT_VETOED', `reboot refused: ${vetoed}`)
      this.ctx.resume()
      log.warn({ err: error, trigger }, `graceful-reboot: ${error.message}; still serving`)
      this.ctx.emit({ step: 'refused', pid: seam.pid, error, trigger })
      throw error
    }
    const start = seam.now()
    const sockets = this.ctx.sockets()
    const state = this.ctx.state?.()
    this.stateSource = state
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
      lostAfter: this.ctx.successorLostAfter,
      generation: this.ctx.generation === undefined ? undefined : this.ctx.generation + 1,
      spawn: host.spawn,
      timer: (t, fn) => seam.timer(t, fn),
      transferStopped: (why) => { log.warn({ successor: successor.pid, why }, `graceful-reboot: connection transfer stopped: ${why}; the connections left drain here`) },
      unresponsive: (ms) => { log.warn({ successor: successor.pid, ms }, `graceful-reboot: successor ${successor.pid} did not answer a ping for ${ms} ms: a pause until it answers, lost at ${this.ctx.successorLostAfter} ms`) },
      state: state === undefined ? undefined : { source: () => state, now: () => seam.now(), log }
    })
    this.successor = successor
    const aborted = new Promise<never>((_resolve, reject) => {
      this.onAbort = () => {
        reject(new RebootError('ERR_GRACEFUL_REBOOT_ABORTED', 'the reboot was aborted by a shutdown; successor stopped', successor.pid))
      }
    })
    aborted.catch(() => {})
    log.info({ trigger, successor: successor.pid, sockets: sockets.map((s) => s.key), stateful }, 'graceful-reboot: successor spawned')
    this.ctx.emit({ step: 'spawned', pid: successor.pid, trigger })
    try {
      await Promise.race([successor.ready, aborted])
      const readyMs = seam.now() - start
      this.ctx.emit({ step: 'ready', pid: successor.pid, ms: readyMs })
      // A stateful successor does not serve before this process exits: nothing to watch.
      const probation = stateful ? 0 : this.ctx.probation
      if (probation > 0) log.info({ successor: successor.pid, ms: readyMs, probation }, `graceful-reboot: successor ready after ${readyMs} ms; both serve for ${probation} ms of probation`)
      // Then its event loop must answer a ping: a successor that blocks right after ready is waited for, both serving.
      if (!stateful) await Promise.race([successor.probation(probation), aborted])
      log.info({ successor: successor.pid, ms: seam.now() - start }, 'graceful-reboot: successor serves; draining')
      this.ctx.emit({ step: 'serving', pid: successor.pid, ms: seam.now() - start })
      // The counts after 'serving' (this reboot succeeded): the successor reports the line's from now on.
      successor.tell({ type: CUTOVER_MESSAGE, counts: this.ctx.counts?.() })
      this.servedBy = successor
    } catch (err) {
      successor.stop()
      this.ctx.leftover(successor)
      const error = err as RebootError
      if (this.aborted) {
        // The shutdown that aborted the reboot is draining this process: it no longer serves.
        log.warn({ err: error, successor: successor.pid }, 'graceful-reboot: reboot aborted by a shutdown; successor stopped; draining')
      } else {
        this.ctx.resume()
        log.error({ err: error, successor: successor.pid }, 'graceful-reboot: reboot failed; still serving')
      }
      this.ctx.emit({ step: 'failed', pid: successor.pid, error })
      throw error
    } finally {
      this.successor = undefined
      this.onAbort = undefined
    }
    // A stateful successor accepts only once this process is gone: nothing moves to it before.
    let handOver: HandOverFor | undefined
    let endTransfer = (): void => {}
    let moved = false
    let stopLooking = (): void => {}
    const settled = (): void => {
      stopLooking()
      if (moved) return
      moved = true
      this.ctx.moved?.()
    }
    if (!stateful) {
      const toListener = handOverWith((address, socket) => successor.sendSocket(address, socket))
      handOver = (server) => {
        const key = this.ctx.keyOf(server)
        return key === undefined ? undefined : toListener(key)
      }
      // What has not moved when the window closes drains here, before the deadline.
      const window = transferWindow(timeout)
      endTransfer = seam.timer(window, () => {
        if (toListener.stopped) return
        const left = toListener.pending
        toListener.stop()
        // Nothing waiting (a long request keeps the drain going): no news.
        if (left > 0) log.warn({ successor: successor.pid, ms: window, timeout, left }, `graceful-reboot: connection transfer stopped after ${window} ms of the drain's ${timeout} ms; the ${left} connections left drain here`)
      })
      let quiet = false
      const look = (): void => {
        const still = !toListener.stopped && toListener.pending > 0
        if (!still && quiet) { settled(); return }
        quiet = !still
        stopLooking = seam.timer(TRANSFER_SETTLED_MS, look)
      }
      stopLooking = seam.timer(TRANSFER_SETTLED_MS, look)
    }
    // Until the drain is over, a successor lost is noticed: this process listens again and serves on.
    let tookBack = false
    const standby = successor.standby
    standby?.watch((why) => {
      const { back, listening } = this.ctx.lost(standby, sockets.map((s) => s.key))
      const where = listening.length === 0 ? 'nothing (no copy of the listeners came back)' : listening.join(', ')
      if (back) {
        // A late rollback: this process is the service again; nothing of this reboot is left to do.
        tookBack = true
        endTransfer()
        this.servedBy = undefined
        standby.end()
        successor.release()
        log.error({ successor: successor.pid, why, listening }, `graceful-reboot: ${why} after it took over; this process called its drain off and serves again, for good, listening on ${where}`)
      } else {
        log.error({ successor: successor.pid, why, listening }, `graceful-reboot: ${why} while this process drains; listening again on ${where}, serving until the drain is over (a shutdown joined it or the app's close began), then exiting with code ${exitCodes.successorLost}`)
      }
      this.ctx.emit({ step: 'lost', pid: successor.pid, reason: why, listening, back })
    })
    // The IPC channel carries the connections and the watch: it is released once the drain is over.
    void this.ctx.drain(timeout, trigger, handOver).then((result) => {
      endTransfer()
      settled()
      if (tookBack) return
      successor.standby?.end()
      successor.release()
      this.ctx.emit({ step: 'drained', pid: seam.pid, result })
    }).catch((err: unknown) => {
      endTransfer()
      settled()
      // Nobody awaits this chain: a throw in the drain or in a 'handoff' listener is logged, never an unhandled rejection.
      log.error({ err, successor: successor.pid }, 'graceful-reboot: the drain after the hand-over failed')
    })
    return successor.pid
  }

  /**
   * This process's drain is over, before it exits: the successor gets the final snapshots it asked for
   * (bounded: `handoverTimeout` and a margin), then the counts of the connections handed over.
   */
  async afterDrain (result: ShutdownResult): Promise<void> {
    const s = this.servedBy
    if (s === undefined) return
    this.servedBy = undefined
    let cancel = (): void => {}
    const cap = (this.stateSource?.timeout ?? 0) + FINAL_STATE_MARGIN_MS
    await Promise.race([s.finalState(), new Promise<void>((resolve) => { cancel = this.ctx.seam.timer(cap, resolve) })])
    cancel()
    s.tell({ type: DRAINED_MESSAGE, ...handedOver(result), counts: this.ctx.counts?.(result) })
  }
}
