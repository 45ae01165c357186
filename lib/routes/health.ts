// Runs in both processes: the liveness, startup and readiness answers of the health routes, computed
// from the process-wide lifecycle so that every app in the process agrees. Framework-free.
import type { LifecycleState } from '../events'
import type { HealthProbe } from '../health-options'
import type { CheckOutcome, CheckRunner } from './checks'

export type { HealthProbe }

/**
 * What a probe reports in `{ status }`:
 * - `ok`: 200;
 * - `starting`: 503, the process has not announced that it serves yet (listening, inherited sockets adopted,
 *   or `declareReady()` with `readiness: 'manual'`);
 * - `draining`: 503, a shutdown (or the old side of a reboot) has started, `readinessDelay` included;
 * - `stopped`: 503, a shutdown completed and the process stays up (`exit: false`);
 * - `not-ready`: 503, the app took itself out of traffic with `lifecycle().setReady(false)`;
 * - `failing`: 503, one of the app's `health.checks` for this probe failed or timed out.
 */
export type HealthStatus = 'ok' | 'starting' | 'draining' | 'stopped' | 'not-ready' | 'failing'

export interface HealthAnswer {
  status: 200 | 503
  /** `checks`: the outcome of each of the app's checks for this probe, when it has any and the process state allowed running them. */
  body: { status: HealthStatus, checks?: Record<string, CheckOutcome> }
}

/** The part of the lifecycle the probes read (a fake in unit tests). */
export interface HealthSource {
  readonly state: LifecycleState
  readonly started: boolean
  readonly readyForTraffic: boolean
}

export const PROBES: readonly HealthProbe[] = ['live', 'startup', 'ready']

/**
 * The answer of one probe.
 * - `live`: 200 for as long as the process answers at all, draining included.
 * - `startup`: 503 until the process announced that it serves, then 200 for good.
 * - `ready`: 200 while running (a reboot in progress included: this process still serves until its
 *   successor is ready), 503 from the moment a drain starts, before the announcement, and while the
 *   manual switch is off. `appDraining`: this app alone is closing (Fastify `app.close()`).
 */
export function probe (which: HealthProbe, source: HealthSource, appDraining = false): HealthAnswer {
  if (which === 'live') return answer('ok')
  if (which === 'startup') return answer(source.started ? 'ok' : 'starting')
  if (source.state === 'draining') return answer('draining')
  if (source.state === 'stopped') return answer('stopped')
  if (appDraining) return answer('draining')
  if (!source.started) return answer('starting')
  if (!source.readyForTraffic) return answer('not-ready')
  return answer('ok')
}

/**
 * The answer of one probe with the app's checks: the process state first (a draining process answers
 * 503 without running them), then every check for this probe; one that failed or timed out: 503 `failing`.
 */
export async function probeWithChecks (which: HealthProbe, source: HealthSource, checks: CheckRunner, appDraining = false): Promise<HealthAnswer> {
  const a = probe(which, source, appDraining)
  if (a.status !== 200 || !checks.has(which)) return a
  const outcomes = await checks.run(which)
  const ok = Object.values(outcomes).every((o) => o.ok)
  return { status: ok ? 200 : 503, body: { status: ok ? 'ok' : 'failing', checks: outcomes } }
}

function answer (status: HealthStatus): HealthAnswer {
  return { status: status === 'ok' ? 200 : 503, body: { status } }
}

/** Headers of every health answer: JSON, never cached by a proxy. */
export const HEALTH_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store'
}
