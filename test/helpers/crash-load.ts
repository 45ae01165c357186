// Runs in the test process: new-connection load (tools/load.ts) around crashes of the server, with the
// outcome of each crash: connections refused, requests reset or cut, and the time from the kill to the
// replacement's first listening line.
import net from 'node:net'
import type { ExecutionContext } from 'ava'
import { runLoad, type LoadOptions, type LoadResult, type LoadRun } from '../../tools/load'

/** A free TCP port on 127.0.0.1 (for a listener the test does not bind itself: systemd's, a restarted app's). */
export async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  return port
}

export interface WatchedLoad {
  readonly run: LoadRun
  /** Resolves once `n` more requests than now were answered (checked at each progress report, every ~250 ms). */
  answeredMore: (n: number) => Promise<void>
}

/** `runLoad` with a wait on its answered count; stopped in teardown. */
export function watchedLoad (t: ExecutionContext, opts: LoadOptions): WatchedLoad {
  const waiters = new Set<{ at: number, resolve: () => void }>()
  const run = runLoad({ durationMs: 120_000, maxRequests: 500_000, ...opts }, {
    onProgress: (r) => {
      for (const w of [...waiters]) if (r.answered >= w.at) { waiters.delete(w); w.resolve() }
    }
  })
  t.teardown(() => { run.stop() })
  return {
    run,
    answeredMore: (n) => new Promise((resolve) => { waiters.add({ at: run.snapshot().answered + n, resolve }) })
  }
}

/** What one crash cost the clients. */
export interface CrashOutcome {
  /** Connection attempts refused (ECONNREFUSED) between the kill and the replacement's serving. */
  refused: number
  /** Requests reset or cut (ECONNRESET, socket hang up, aborted): in flight on the killed process. */
  reset: number
  /** Any other failure (cause -> count). */
  other: Record<string, number>
  /** Ms from just before the kill to the replacement's listening line. */
  servingAgainMs: number
}

const RESET = new Set(['ECONNRESET', 'EPIPE', 'aborted', 'socket closed'])

/** The failures between two snapshots of a load, by class. */
export function classify (before: LoadResult, after: LoadResult): Omit<CrashOutcome, 'servingAgainMs'> {
  let refused = 0
  let reset = 0
  const other: Record<string, number> = {}
  for (const [cause, n] of Object.entries(after.causes)) {
    const d = n - (before.causes[cause] ?? 0)
    if (d === 0) continue
    if (cause === 'ECONNREFUSED') refused += d
    else if (RESET.has(cause)) reset += d
    else other[cause] = d
  }
  return { refused, reset, other }
}

/**
 * Kills the server `crashes` times under `load`: `kill()` sends the signal, `replaced()` resolves once
 * the replacement said it listens; after each, waits until 200 more requests were answered (so the
 * failures of a crash have settled before the next one).
 */
export async function crashes (load: WatchedLoad, crashes: number, kill: () => Promise<void>, replaced: () => Promise<void>): Promise<CrashOutcome[]> {
  await load.answeredMore(200)
  const out: CrashOutcome[] = []
  for (let i = 0; i < crashes; i++) {
    const before = load.run.snapshot()
    const t0 = performance.now()
    await kill()
    await replaced()
    const servingAgainMs = Math.round(performance.now() - t0)
    await load.answeredMore(200)
    out.push({ ...classify(before, load.run.snapshot()), servingAgainMs })
  }
  return out
}

/** One line per crash, for t.log. */
export function crashTable (what: string, outcomes: readonly CrashOutcome[]): string {
  const rows = outcomes.map((o, i) => `  crash ${i + 1}: refused ${o.refused}, reset/cut ${o.reset}, other ${JSON.stringify(o.other)}, serving again after ${o.servingAgainMs} ms`)
  return [`${what}:`, ...rows].join('\n')
}
