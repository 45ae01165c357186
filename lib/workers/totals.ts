// Runs in the supervisor (`graceful-reboot run --workers N`): adds up the counts of its workers' reboot
// lines (each worker's `lifecycle().stats()`, sent on the control socket): per slot, the line's counts
// from the worker that reports it (a replacement from its cutover on, with the old worker's counts in
// them); a slot whose worker died and was started afresh keeps what its ended line counted.
import { addCounts, zeroCounts, type LineCounts } from '../handoff/counts'

interface SlotLine {
  /** The counts of the lines of this slot that ended (a worker that died and was started afresh). */
  ended: LineCounts
  /** The current line's counts, from the last message of a worker reporting it. */
  current: LineCounts
  generation: number
  /** The workers of the current line (a replacement's old worker included). */
  pids: Set<number>
}

export class WorkerTotals {
  private readonly slots = new Map<number, SlotLine>()

  /** A worker's `stats` message; only the worker that reports its line counts. */
  update (slot: number, pid: number, m: { generation: number, reporting: boolean, counts: LineCounts, parent: number | null }): void {
    if (!m.reporting) return
    let s = this.slots.get(slot)
    if (s === undefined) {
      s = { ended: zeroCounts(), current: zeroCounts(), generation: m.generation, pids: new Set() }
      this.slots.set(slot, s)
    }
    // A worker of another line: a first worker of the slot, or one started afresh after a death.
    const sameLine = s.pids.size === 0 || s.pids.has(pid) || (m.parent !== null && s.pids.has(m.parent))
    if (!sameLine) {
      s.ended = addCounts(s.ended, s.current)
      s.pids.clear()
    }
    s.pids.add(pid)
    s.current = m.counts
    s.generation = m.generation
  }

  /** The counts of one slot (its ended lines and its current one), or undefined before its first report. */
  slot (n: number): (LineCounts & { generation: number }) | undefined {
    const s = this.slots.get(n)
    return s === undefined ? undefined : { ...addCounts(s.ended, s.current), generation: s.generation }
  }

  /** Every slot added up. */
  sum (): LineCounts {
    let total = zeroCounts()
    for (const s of this.slots.values()) total = addCounts(total, addCounts(s.ended, s.current))
    return total
  }
}
