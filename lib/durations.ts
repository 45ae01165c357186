// Runs in both processes: the checks of a duration option, in ms: a finite number from 0 to what a
// Node timer can wait, and, for some, a floor below which the option would defeat itself.
import { InvalidOptionError, describe } from './errors'
import { MAX_MS } from './limits'

/** A duration in ms: a finite number from 0 to MAX_MS (what a Node timer can wait). */
export function ms (value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidOptionError(`"${name}" must be a finite number of milliseconds >= 0, got ${describe(value)}`)
  }
  if (value > MAX_MS) {
    throw new InvalidOptionError(`"${name}" must be at most ${MAX_MS} ms (about 24.8 days, the longest a Node timer waits), got ${describe(value)}`)
  }
  return value
}

/** A duration `t` of the option `name` of at least `min` ms; `why` says what a shorter one would do. */
export function atLeast (t: number, name: string, min: number, why: string): number {
  if (t < min) throw new InvalidOptionError(`"${name}" must be at least ${min} ms (${why}), got ${describe(t)}`)
  return t
}
