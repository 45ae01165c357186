// Runs in the supervisor (`graceful-reboot run --workers N`): its side of rebalancing. It holds the
// connection counts the workers report and, once they settle, tells each worker the most connections
// it should hold (lib/workers/share.ts is the worker's side: it closes what is in excess).
import type { SupervisorToWorker } from './protocol'

/** The connections a worker may hold above its fair share, as a fraction of all the workers' connections. */
const SHARE_SLACK = 0.05
/** Ms without a change of any worker's count before the supervisor sets the limit. */
const SETTLE_MS = 100

/** A worker as rebalancing sees it: its last reported count, and whether it is gone. */
export interface Counted { open: number, readonly gone: boolean }

/** What rebalancing needs of the supervisor. */
export interface BalanceHost<W extends Counted> {
  timer: (ms: number, fn: () => void) => () => void
  /** Every worker the supervisor knows. */
  workers: () => Iterable<W>
  /** Workers serving a slot now. */
  serving: () => number
  /** A rollout or a shutdown runs: no limit. */
  busy: () => boolean
  tell: (worker: W, m: SupervisorToWorker) => void
}

export class Balance<W extends Counted> {
  /** The connection limit every worker was last told (null: none). */
  private limit: number | null = null
  /** Cancels the wait for the workers' counts to settle. */
  private settle: (() => void) | undefined
  private readonly host: BalanceHost<W>
  private readonly enabled: boolean

  constructor (host: BalanceHost<W>, enabled: boolean) {
    this.host = host
    this.enabled = enabled
  }

  /** A worker reported its count (a non-negative integer, else ignored): the counts are changing. */
  counted (worker: W, open: unknown): void {
    if (!this.enabled) return
    if (Number.isInteger(open) && (open as number) >= 0) worker.open = open as number
    this.unsettled()
  }

  /**
   * The workers' counts are changing (a burst of new connections, or closes; a worker announced or
   * exited; a rollout ended): no limit until no count changed for SETTLE_MS. A limit from counts still
   * climbing would be too low, and close connections that are not in excess.
   */
  unsettled (): void {
    if (!this.enabled) return
    this.settle?.()
    this.settle = this.host.timer(SETTLE_MS, () => {
      this.settle = undefined
      this.apply()
    })
    if (this.limit === null) return
    this.limit = null
    for (const w of this.host.workers()) this.host.tell(w, { type: 'share', limit: null })
  }

  /**
   * Sets every worker's connection limit: the fair share of the connections all workers hold, plus 5
   * points of them (at least one), so that the busiest worker stays well within 1/N + 10 points of the
   * load. No limit during a rollout (connections move between the workers of a slot) or a shutdown,
   * or with fewer than 2 workers serving.
   */
  apply (): void {
    if (this.settle !== undefined || !this.enabled) return
    const serving = this.host.serving()
    let total = 0
    for (const w of this.host.workers()) if (!w.gone) total += w.open
    const limit = this.host.busy() || serving < 2 ? null : Math.ceil(total / serving) + Math.max(1, Math.ceil(total * SHARE_SLACK))
    if (limit === null && this.limit === null) return
    this.limit = limit
    // Each worker gets the count it is known by: it ignores the limit if its count has changed since.
    for (const w of this.host.workers()) this.host.tell(w, { type: 'share', limit, basis: w.open })
  }
}
