// Runs in both processes: the option `health.checks` (the app's own health checks: a database ping,
// an upstream), its types and its validation; lib/routes/checks.ts runs them.
import { InvalidOptionError, describe } from './errors'
import { MAX_MS } from './limits'

/** The three health probes: /live, /startup, /ready. */
export type HealthProbe = 'live' | 'startup' | 'ready'

/** One check of `health.checks`. */
export interface HealthCheck {
  /** Names it in the probe's JSON (`checks.<name>`) and in errors. Unique per app. */
  name: string
  /** Resolves (any value) when healthy; throws or rejects when not. */
  check: () => unknown
  /** The probes that run it: 'ready' (default), 'live', 'startup', or several. */
  for?: HealthProbe | HealthProbe[]
  /** Ms the check may take; past it the probe answers 503 naming it. Default 1000. */
  timeout?: number
}

export interface ResolvedCheck {
  name: string
  check: () => unknown
  for: readonly HealthProbe[]
  timeout: number
}

const DEFAULT_CHECK_TIMEOUT_MS = 1000
const CHECK_PROBES: readonly HealthProbe[] = ['live', 'startup', 'ready']
const KNOWN = ['name', 'check', 'for', 'timeout']

/** Validates `health.checks`: an array of { name, check, for?, timeout? }. */
export function resolveChecks (value: unknown): ResolvedCheck[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new InvalidOptionError(`"health.checks" must be an array of { name, check, for?, timeout? }, got ${describe(value)}`)
  const names = new Set<string>()
  return value.map((c: unknown, i) => {
    const at = `"health.checks[${i}]"`
    if (c === null || typeof c !== 'object' || Array.isArray(c)) throw new InvalidOptionError(`${at} must be an object like { name, check }, got ${describe(c)}`)
    const o = c as Record<string, unknown>
    for (const key of Object.keys(o)) {
      if (!KNOWN.includes(key)) throw new InvalidOptionError(`unknown option ${at}.${key} (known: ${KNOWN.join(', ')})`)
    }
    if (typeof o.name !== 'string' || o.name.trim() === '') throw new InvalidOptionError(`${at}.name must be a non-empty string, got ${describe(o.name)}`)
    if (names.has(o.name)) throw new InvalidOptionError(`${at}.name "${o.name}" is given twice: check names are unique`)
    names.add(o.name)
    if (typeof o.check !== 'function') throw new InvalidOptionError(`${at}.check ("${o.name}") must be a function, got ${describe(o.check)}`)
    const probes = o.for === undefined ? ['ready'] : Array.isArray(o.for) ? o.for : [o.for]
    if (probes.length === 0 || !probes.every((p) => CHECK_PROBES.includes(p as HealthProbe))) {
      throw new InvalidOptionError(`${at}.for ("${o.name}") must be 'ready', 'live', 'startup' or an array of them, got ${describe(o.for)}`)
    }
    const timeout = o.timeout ?? DEFAULT_CHECK_TIMEOUT_MS
    if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout <= 0 || timeout > MAX_MS) {
      throw new InvalidOptionError(`${at}.timeout ("${o.name}") must be a whole number of ms from 1 to ${MAX_MS}, got ${describe(o.timeout)}`)
    }
    return { name: o.name, check: o.check as () => unknown, for: probes as HealthProbe[], timeout }
  })
}

