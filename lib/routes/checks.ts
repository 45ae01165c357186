// Runs in both processes: runs the app's own health checks (`health.checks`, lib/health-options.ts)
// for the probes they are for, each with a timeout and never more than once at a time: probes that
// arrive while a check runs wait for that run (a load balancer that probes hard does not hammer the
// database). Framework-free.
import type { HealthProbe, ResolvedCheck } from '../health-options'

/** What one check reported in a probe. */
export interface CheckOutcome {
  ok: boolean
  ms: number
  /** Why it failed: its error's message, or that it timed out. */
  error?: string
}

/** Runs an app's checks for a probe; one run per check at a time. */
export class CheckRunner {
  private readonly checks: readonly ResolvedCheck[]
  private readonly running = new Map<string, Promise<CheckOutcome>>()

  constructor (checks: readonly ResolvedCheck[]) {
    this.checks = checks
  }

  /** Whether any check is for this probe. */
  has (which: HealthProbe): boolean {
    return this.checks.some((c) => c.for.includes(which))
  }

  /** The outcome of every check for `which`, run in parallel. */
  async run (which: HealthProbe): Promise<Record<string, CheckOutcome>> {
    const mine = this.checks.filter((c) => c.for.includes(which))
    const outcomes = await Promise.all(mine.map((c) => this.once(c)))
    return Object.fromEntries(mine.map((c, i) => [c.name, outcomes[i] as CheckOutcome]))
  }

  /** Waits at most `c.timeout` for the check's run under way, or a new one: a check that hangs is not run again until it settles. */
  private once (c: ResolvedCheck): Promise<CheckOutcome> {
    let run = this.running.get(c.name)
    if (run === undefined) {
      const started = performance.now()
      const ms = (): number => Math.round(performance.now() - started)
      // A check that throws synchronously fails like one that rejects.
      run = Promise.resolve().then(() => c.check()).then(
        (): CheckOutcome => ({ ok: true, ms: ms() }),
        (err: unknown): CheckOutcome => ({ ok: false, ms: ms(), error: err instanceof Error ? err.message : String(err) })
      )
      this.running.set(c.name, run)
      void run.then(() => { this.running.delete(c.name) })
    }
    const waited = performance.now()
    return new Promise((resolve) => {
      const timer = setTimeout(() => { resolve({ ok: false, ms: Math.round(performance.now() - waited), error: `timed out after ${c.timeout} ms` }) }, c.timeout)
      timer.unref()
      void run.then((outcome) => {
        clearTimeout(timer)
        resolve(outcome)
      })
    })
  }
}
