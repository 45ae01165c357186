// Runs in the old process of a reboot: the lifecycle's reboot controller: one reboot at a time, the
// connection hand-over it passes to its drain, the rolled-back successors that may still be draining
// (none may outlive this process), and what happens when the successor is lost after it took over.
import type { HandOverFor } from '../drain/app'
import type { ListenerRegistry } from '../handoff/listeners'
import type { HandoffEvent, RebootOptions, ShutdownResult } from '../events'
import type { Logger } from '../log'
import type { ProcessSeam, RebootHost } from '../os'
import { OutgoingReboot, type LostOutcome } from '../outgoing/reboot'
import type { Standby } from '../outgoing/standby'
import type { StateSource } from '../outgoing/state'
import type { AppRegistry } from './registry'
import type { KeptCopies } from './takeback'
import type { LineCounts } from '../handoff/protocol'
import { writePidFile } from '../pidfile'

/** What the controller needs from the lifecycle. */
export interface RebootContext {
  readonly seam: ProcessSeam
  readonly host: RebootHost
  log (): Logger
  /** The listening sockets of the tracked servers: what the successor is given, and their keys. */
  readonly listening: Pick<ListenerRegistry, 'sockets' | 'keyOf' | 'lastServerFor'>
  /** The registered apps: their PID file, `rebootTimeout`, `rebootProbation` and `successorLostAfter`. */
  readonly units: Pick<AppRegistry, 'pidFile' | 'successorTimeout' | 'probation' | 'successorLostAfter'>
  /**
   * A late rollback: calls the drain off and listens again on the kept copies, for good. Returns the
   * keys it listens on, or undefined when it cannot (`passed`: the keys the successor was given).
   */
  takeBack (copies: KeptCopies, passed: readonly string[]): string[] | undefined
  /** The reboot failed: serving on as before. */
  resume (): void
  emit (event: HandoffEvent): void
  /** Drains this process for the reboot (reason 'reboot'). */
  drain (timeout: number, trigger: string): Promise<ShutdownResult>
  /** The state a successor may ask for, and the 'beforeSpawn' hooks' veto. */
  state (): StateSource
  veto (trigger: string): Promise<string | undefined> | undefined
  /** This process's line counts, handed to the successor (with a drain's result folded in), and its generation. */
  counts? (result?: ShutdownResult): LineCounts
  generation? (): number
  /** The reboot's connection transfer is over (OutgoingContext.moved). */
  moved? (): void
}

export class RebootController {
  private readonly ctx: RebootContext
  private running: Promise<number> | undefined
  private outgoing: OutgoingReboot | undefined
  /** The reboot this process drains for (its successor passed probation). */
  private drainingFor: OutgoingReboot | undefined
  private handOver: HandOverFor | undefined
  private readonly leftovers = new Set<{ kill: () => void }>()
  private old = false
  private lost = false

  constructor (ctx: RebootContext) {
    this.ctx = ctx
  }

  /** A reboot promise is in flight. */
  get inFlight (): boolean { return this.running !== undefined }

  /** This process started a reboot that has not failed: its role is 'old' until it exits. */
  get handingOver (): boolean { return this.old }

  /** Starts a reboot whose drain has the deadline `timeout` ms; resolves with the successor's pid after probation. */
  start (timeout: number, options: RebootOptions): Promise<number> {
    const ctx = this.ctx
    this.old = true
    const outgoing = new OutgoingReboot({
      seam: ctx.seam,
      host: ctx.host,
      log: ctx.log(),
      sockets: () => ctx.listening.sockets().map((l) => ({ fd: l.fd, key: l.key })),
      successorTimeout: ctx.units.successorTimeout,
      probation: ctx.units.probation,
      successorLostAfter: ctx.units.successorLostAfter,
      leftover: (s) => { this.leftovers.add(s) },
      // Rolled back: this process is no longer the old side of a reboot, from now (its 'failed' step on).
      resume: () => {
        this.old = false
        ctx.resume()
      },
      emit: (e) => { ctx.emit(e) },
      keyOf: (server) => ctx.listening.keyOf(server),
      lost: (standby, passed) => this.lostSuccessor(standby, passed),
      drain: (t, trigger, handOver) => {
        this.handOver = handOver
        this.drainingFor = outgoing
        return ctx.drain(t, trigger)
      },
      state: () => ctx.state(),
      veto: (trigger) => ctx.veto(trigger),
      moved: () => { ctx.moved?.() },
      ...(ctx.counts === undefined ? {} : { counts: ctx.counts }),
      ...(ctx.generation === undefined ? {} : { generation: ctx.generation() })
    })
    this.outgoing = outgoing
    const running = outgoing.run(timeout, options.trigger ?? 'code', options.stateful === true)
    this.running = running
    const clear = (): void => {
      this.running = undefined
      this.outgoing = undefined
    }
    running.then(clear, () => {
      clear()
      this.old = false
    })
    return running
  }

  /** A shutdown wins over a reboot whose successor is not through probation: stops the successor. */
  abort (): void {
    this.outgoing?.abort()
  }

  /** The hand-over the reboot set for its drain, once (a later drain has none). */
  takeHandOver (): HandOverFor | undefined {
    const h = this.handOver
    this.handOver = undefined
    return h
  }

  /** The drain for a reboot is over: the successor gets its final snapshots and the hand-over's counts. */
  async afterDrain (result: ShutdownResult): Promise<void> {
    const o = this.drainingFor
    this.drainingFor = undefined
    if (o !== undefined && !this.lost) await o.afterDrain(result)
  }

  /** The successor was lost during this process's drain and it could not serve again for good: the exit code is successorLost. */
  get successorLost (): boolean { return this.lost }

  /**
   * The successor was lost during this process's drain. A late rollback when the lifecycle can call
   * the drain off: this process is no longer the old side of a reboot (a later reboot starts afresh).
   * Else it accepts on the kept copies until its drain is over, and exits with successorLost. Either
   * way the PID file names this process again.
   */
  private lostSuccessor (standby: Standby, passed: readonly string[]): LostOutcome {
    const back = this.ctx.takeBack(standby, passed)
    let outcome: LostOutcome
    if (back !== undefined) {
      this.old = false
      this.drainingFor = undefined
      this.handOver = undefined
      outcome = { back: true, listening: back }
    } else {
      this.lost = true
      outcome = { back: false, listening: standby.accept((key) => this.ctx.listening.lastServerFor(key)) }
    }
    this.writePidFile()
    return outcome
  }

  private writePidFile (): void {
    const pidFile = this.ctx.units.pidFile()
    if (pidFile === undefined) return
    try {
      writePidFile(pidFile, this.ctx.seam.pid)
    } catch (err) {
      this.ctx.log().error({ err, pidFile }, 'graceful-reboot: could not write the PID file back')
    }
  }

  /** Kills the rolled-back successors that may still be draining (this process is about to exit). */
  killLeftovers (): void {
    for (const s of this.leftovers) s.kill()
    this.leftovers.clear()
  }
}
