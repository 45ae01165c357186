// Runs in the supervisor: the record of its rolling reboots (the last few, and counts over its life),
// which its status file carries so that `graceful-reboot reboot --wait` and `status` read a rollout's
// verdict, slot by slot, as they read one process's reboot.
import type { RebootStatus, SlotOutcome } from '../status-file'

export type { SlotOutcome }

/** A rollout as the status file records it: a reboot's record (`step` 'spawned' while it runs, then 'serving', 'failed' or 'refused'), and each slot's outcome. */
export type RolloutRecord = RebootStatus & { slots: SlotOutcome[] }

/** How many rollouts the status file lists. */
const KEPT = 8

export class RolloutLog {
  readonly counts = { requested: 0, refused: 0, failed: 0, succeeded: 0 }
  private readonly list: RolloutRecord[] = []

  /** The last rollouts, oldest first. */
  get records (): readonly RolloutRecord[] { return this.list }

  begin (trigger: string, at: number): RolloutRecord {
    return this.add({ seq: ++this.counts.requested, trigger, step: 'spawned', at, slots: [] })
  }

  refused (trigger: string, why: { message: string, code: string }, at: number): void {
    this.counts.refused++
    this.add({ seq: ++this.counts.requested, trigger, step: 'refused', at, error: { code: why.code, message: why.message }, slots: [] })
  }

  slot (record: RolloutRecord, outcome: SlotOutcome): void {
    record.slots.push(outcome)
  }

  end (record: RolloutRecord, outcome: { ok: boolean, message: string, code?: string }, at: number): void {
    record.at = at
    if (outcome.ok) {
      this.counts.succeeded++
      record.step = 'serving'
    } else {
      this.counts.failed++
      record.step = 'failed'
      record.error = { code: outcome.code ?? 'ERR_GRACEFUL_SUCCESSOR_EXITED', message: outcome.message }
    }
  }

  private add (r: RolloutRecord): RolloutRecord {
    this.list.push(r)
    if (this.list.length > KEPT) this.list.shift()
    return r
  }
}
