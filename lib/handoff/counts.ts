// Runs in both processes (and in the supervisor): the arithmetic of a reboot line's counts (what
// `lifecycle().stats()` counts), which cross a process boundary: from an old process to its successor,
// and from the workers to their supervisor, which adds them up.
import type { LineCounts } from './protocol'

export type { LineCounts } from './protocol'

/** Counts that start at zero. */
export function zeroCounts (): LineCounts {
  return {
    reboots: { requested: 0, refused: 0, started: 0, succeeded: 0, failed: 0, lost: 0 },
    drains: 0,
    connections: { transferred: 0, kept: 0, forced: 0 }
  }
}

/** `a` plus `b`, field by field (for the counts of a line, and for a supervisor's sum of its workers). */
export function addCounts (a: LineCounts, b: LineCounts): LineCounts {
  const out = zeroCounts()
  for (const k of Object.keys(out.reboots) as Array<keyof LineCounts['reboots']>) out.reboots[k] = a.reboots[k] + b.reboots[k]
  for (const k of Object.keys(out.connections) as Array<keyof LineCounts['connections']>) out.connections[k] = a.connections[k] + b.connections[k]
  out.drains = a.drains + b.drains
  return out
}

/** Whether `v` has the shape of LineCounts (every count a non-negative number): what crosses a process boundary is checked. */
export function isCounts (v: unknown): v is LineCounts {
  const ok = (o: unknown, keys: string[]): boolean => o !== null && typeof o === 'object' && keys.every((k) => { const n = (o as Record<string, unknown>)[k]; return typeof n === 'number' && Number.isFinite(n) && n >= 0 })
  if (v === null || typeof v !== 'object') return false
  const c = v as Record<string, unknown>
  return ok(c.reboots, Object.keys(zeroCounts().reboots)) && ok(c.connections, Object.keys(zeroCounts().connections)) && ok(c, ['drains'])
}

