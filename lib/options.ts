// Runs in both processes: the options of every adapter, their defaults and their validation.
import * as os from 'node:os'
import { InvalidOptionError, describe } from './errors'
import { isLogger, type Logger } from './log'
import { atLeast, ms } from './durations'
import { checkPidFile } from './pidfile'
import { statusFilePath } from './status-file'
import { checkToken } from './admin-token'
import { resolveChecks, type HealthCheck, type ResolvedCheck } from './health-options'

export { ms }

export type SignalAction = 'shutdown' | 'reboot'
/**
 * Changes to the default signal map (SIGTERM, SIGINT -> 'shutdown'; SIGUSR2 -> 'reboot'): each entry
 * adds or replaces one signal's action; `false` removes the signal.
 */
export type SignalMap = Partial<Record<NodeJS.Signals, SignalAction | false>>
/** The signals one app handles, once its `signals` option is merged with the defaults. */
type ResolvedSignalMap = Partial<Record<NodeJS.Signals, SignalAction>>

export interface AdminOptions {
  /**
   * Bearer token required on /shutdown and /reboot, from any peer: visible ASCII, no whitespace.
   * Without one, only plain local calls are served: a loopback or Unix-socket peer whose request
   * carries no proxy header and no cross-site browser mark.
   */
  token?: string
  /** Path prefix for the admin routes, e.g. '/_admin'. Default: none. */
  prefix?: string
}

export interface HealthOptions {
  /** Path prefix of the probes. Default '/health' (-> /health/live, /health/ready, /health/startup). */
  prefix?: string
  /** The app's own checks (a database ping...): a probe they are for answers 503 `failing` when one fails or times out. Default none. */
  checks?: HealthCheck[]
}

export interface GracefulOptions {
  /** Ms a signal-, route- or close()-triggered drain may take before what is left is destroyed. Default 30000. */
  timeout?: number
  /**
   * `true` (default): SIGTERM and SIGINT shut down, SIGUSR2 reboots. A map is merged with those
   * defaults: `{ SIGHUP: 'reboot' }` adds SIGHUP, `{ SIGUSR2: false }` removes SIGUSR2.
   * `false`: no process listener at all.
   */
  signals?: boolean | SignalMap
  /** An uncaught exception or unhandled rejection drains and exits with the crash code. Default: on unless `signals: false`. */
  crash?: boolean
  /** Exit the process once a process-wide shutdown has drained. Default true; `false` only drains (a crash exits 1 all the same). */
  exit?: boolean
  /**
   * Ms an idle keep-alive connection is left open once the drain starts. Default 250. A connection that
   * never sent a byte gets 2 s (at most half the time left, never less than this); one holding part of
   * a request is never closed as idle.
   */
  idleGrace?: number
  /** Ms /health/ready answers 503 before the listeners close. Default 0. */
  readinessDelay?: number
  /** Opt-in admin routes /shutdown?second=N and /reboot?second=N. */
  admin?: AdminOptions | boolean
  /** Opt-in health routes. */
  health?: HealthOptions | boolean
  /** Path of a PID file written when the app is ready, removed at shutdown if it still holds this pid. */
  pidFile?: string
  /** Ms a successor has to become ready before it is stopped and this process keeps serving. Default 60000, at least 1000. */
  rebootTimeout?: number
  /**
   * Ms both processes serve after the successor is ready, before this one drains; a successor that
   * fails within it is rolled back and this process goes on serving. Default 1000; 0: drain at once.
   */
  rebootProbation?: number
  /**
   * Ms the successor of a reboot may stay silent (its event loop answers no ping) after it took over,
   * while this process drains, before it is taken for frozen: this process kills it (SIGKILL) and
   * serves again, for good. A shorter silence (a GC pause, a synchronous warm-up) only stops the
   * connection transfer. Default 5000, at least 2000.
   */
  successorLostAfter?: number
  /**
   * In a reboot, hand idle plain-TCP HTTP/1.1 keep-alive connections to the successor instead of
   * closing them (pooled clients never reconnect). Default true.
   */
  transferConnections?: boolean
  /** Ms a `handover()` snapshot may take, in the old process, before the successor is told it timed out. Default 10000. */
  handoverTimeout?: number
  /** Bytes a `handover()` snapshot may take serialized; a larger one is a coded error in the successor. Default 67108864 (64 MiB). */
  handoverMaxBytes?: number
  /** Where the package logs. Default: fastify.log on Fastify, stderr lines elsewhere. */
  logger?: Logger
  /**
   * When a successor tells the old process it is ready: 'listen' (default) once every inherited
   * socket is adopted by a listen(); 'manual' when the app calls `declareReady()`.
   */
  readiness?: 'listen' | 'manual'
  /**
   * 'auto' (default): do what the launcher that runs this process expects (docs/launchers.md, "Launchers and
   * dev tools"): under nodemon its restart signal (SIGUSR2) drains and exits; under launchers that a
   * reboot would detach the service from (npm/yarn/pnpm scripts, npx, tsx, node --watch, tsx watch,
   * nodemon, PM2 fork mode) a reboot is refused. 'ignore': act as under a terminal (SIGUSR2 reboots).
   */
  launcher?: 'auto' | 'ignore'
}

export interface ResolvedOptions {
  timeout: number
  signals: ResolvedSignalMap
  crash: boolean
  exit: boolean
  idleGrace: number
  readinessDelay: number
  admin: AdminOptions | undefined
  health: { prefix: string, checks: ResolvedCheck[] } | undefined
  pidFile: string | undefined
  rebootTimeout: number
  rebootProbation: number
  successorLostAfter: number
  transferConnections: boolean
  handoverTimeout: number
  handoverMaxBytes: number
  logger: Logger | undefined
  readiness: 'listen' | 'manual'
  launcher: 'auto' | 'ignore'
}

export const DEFAULTS = {
  timeout: 30_000,
  idleGrace: 250,
  readinessDelay: 0,
  rebootTimeout: 60_000,
  rebootProbation: 1_000,
  successorLostAfter: 5_000,
  handoverTimeout: 10_000,
  handoverMaxBytes: 64 * 1024 * 1024,
  signals: { SIGTERM: 'shutdown', SIGINT: 'shutdown', SIGUSR2: 'reboot' } as ResolvedSignalMap
} as const

const KNOWN = new Set(['timeout', 'signals', 'crash', 'exit', 'idleGrace', 'readinessDelay', 'admin', 'health', 'pidFile', 'rebootTimeout', 'rebootProbation', 'successorLostAfter', 'transferConnections', 'handoverTimeout', 'handoverMaxBytes', 'logger', 'readiness', 'launcher'])
const UNCATCHABLE = new Set(['SIGKILL', 'SIGSTOP'])

/** Validates options and fills in defaults. Throws InvalidOptionError naming the bad value. */
export function resolveOptions (input: unknown): ResolvedOptions {
  const o = (input ?? {}) as Record<string, unknown>
  if (typeof o !== 'object' || Array.isArray(o)) throw new InvalidOptionError(`options must be an object, got ${describe(input)}`)
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key)) throw new InvalidOptionError(`unknown option "${key}" (known: ${[...KNOWN].join(', ')})`)
  }
  const signals = resolveSignals(o.signals)
  const timeout = ms(o.timeout, 'timeout', DEFAULTS.timeout)
  const readinessDelay = ms(o.readinessDelay, 'readinessDelay', DEFAULTS.readinessDelay)
  if (readinessDelay > 0 && readinessDelay >= timeout) {
    throw new InvalidOptionError(`"readinessDelay" (${readinessDelay} ms) must be less than "timeout" (${timeout} ms${o.timeout === undefined ? ', the default' : ''}): the delay is counted inside the drain's deadline, so every drain would be forced`)
  }
  const pidFile = optionalString(o.pidFile, 'pidFile')
  const resolved: ResolvedOptions = {
    timeout,
    signals,
    crash: bool(o.crash, 'crash', o.signals !== false),
    exit: bool(o.exit, 'exit', true),
    idleGrace: ms(o.idleGrace, 'idleGrace', DEFAULTS.idleGrace),
    readinessDelay,
    admin: resolveAdmin(o.admin),
    health: resolveHealth(o.health),
    pidFile,
    rebootTimeout: atLeast(ms(o.rebootTimeout, 'rebootTimeout', DEFAULTS.rebootTimeout), 'rebootTimeout', MIN_REBOOT_TIMEOUT, 'a successor needs that long to start and listen; every reboot would time out'),
    rebootProbation: ms(o.rebootProbation, 'rebootProbation', DEFAULTS.rebootProbation),
    successorLostAfter: atLeast(ms(o.successorLostAfter, 'successorLostAfter', DEFAULTS.successorLostAfter), 'successorLostAfter', MIN_SUCCESSOR_LOST_AFTER, 'a shorter silence is an ordinary pause, a GC or a synchronous warm-up: the successor would be killed for it'),
    transferConnections: bool(o.transferConnections, 'transferConnections', true),
    handoverTimeout: positive(ms(o.handoverTimeout, 'handoverTimeout', DEFAULTS.handoverTimeout), 'handoverTimeout'),
    handoverMaxBytes: byteCount(o.handoverMaxBytes, 'handoverMaxBytes', DEFAULTS.handoverMaxBytes),
    logger: resolveLogger(o.logger),
    readiness: resolveReadiness(o.readiness),
    launcher: resolveLauncher(o.launcher)
  }
  // Last, once every value is known to be good: the only check that looks at the file system.
  if (pidFile !== undefined) checkPidFile(pidFile, statusFilePath(pidFile, process.pid))
  return resolved
}

/** The shortest `rebootTimeout`: a successor needs this long at least to start Node and listen. */
export const MIN_REBOOT_TIMEOUT = 1000
/** The shortest `successorLostAfter`: twice the silence that stops the connection transfer (outgoing/heartbeat.ts). */
export const MIN_SUCCESSOR_LOST_AFTER = 2000

function positive (t: number, name: string): number {
  if (t === 0) throw new InvalidOptionError(`"${name}" must be more than 0 ms, got 0`)
  return t
}

/** Node's largest Buffer is 4 GiB; a snapshot travels as one. */
const MAX_BYTES = 2 ** 32

function byteCount (value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_BYTES) {
    throw new InvalidOptionError(`"${name}" must be a whole number of bytes from 1 to ${MAX_BYTES}, got ${describe(value)}`)
  }
  return value
}

function bool (value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new InvalidOptionError(`"${name}" must be true or false, got ${describe(value)}`)
  return value
}

function optionalString (value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value === '') throw new InvalidOptionError(`"${name}" must be a non-empty string, got ${describe(value)}`)
  return value
}

function resolveSignals (value: unknown): ResolvedSignalMap {
  if (value === undefined || value === true) return { ...DEFAULTS.signals }
  if (value === false) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(`"signals" must be true, false or a map like { SIGHUP: 'reboot', SIGUSR2: false }, got ${describe(value)}`)
  }
  // Merged with the defaults: a map that only adds SIGHUP must not lose the graceful SIGTERM.
  const out: ResolvedSignalMap = { ...DEFAULTS.signals }
  for (const [name, action] of Object.entries(value)) {
    if (!(name in os.constants.signals) || UNCATCHABLE.has(name)) {
      throw new InvalidOptionError(`"signals" names an unknown or uncatchable signal "${name}"`)
    }
    if (action !== 'shutdown' && action !== 'reboot' && action !== false) {
      throw new InvalidOptionError(`"signals.${name}" must be 'shutdown', 'reboot' or false (to remove it), got ${describe(action)}`)
    }
    if (action === false) delete out[name as NodeJS.Signals]
    else out[name as NodeJS.Signals] = action
  }
  return out
}

/** Admin options with `token: undefined` (an unset variable): "no token", with a warning at mount. */
export const unsetTokens = new WeakSet<AdminOptions>()

function resolveAdmin (value: unknown): AdminOptions | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(`"admin" must be true or an object like { token }, got ${describe(value)}`)
  }
  const a = value as Record<string, unknown>
  for (const key of Object.keys(a)) {
    if (key !== 'token' && key !== 'prefix') throw new InvalidOptionError(`unknown option "admin.${key}" (known: token, prefix)`)
  }
  const out: AdminOptions = {}
  if (a.token !== undefined) out.token = checkToken(a.token)
  else if ('token' in a) unsetTokens.add(out)
  if (a.prefix !== undefined) out.prefix = prefix(a.prefix, 'admin.prefix')
  return out
}

function resolveHealth (value: unknown): ResolvedOptions['health'] {
  if (value === undefined || value === false) return undefined
  if (value === true) return { prefix: '/health', checks: [] }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(`"health" must be true or an object like { prefix, checks }, got ${describe(value)}`)
  }
  const h = value as Record<string, unknown>
  for (const key of Object.keys(h)) {
    if (key !== 'prefix' && key !== 'checks') throw new InvalidOptionError(`unknown option "health.${key}" (known: prefix, checks)`)
  }
  return { prefix: h.prefix === undefined ? '/health' : prefix(h.prefix, 'health.prefix'), checks: resolveChecks(h.checks) }
}

function prefix (value: unknown, name: string): string {
  if (typeof value !== 'string' || !/^(\/[A-Za-z0-9._~-]+)*$/.test(value)) {
    throw new InvalidOptionError(`"${name}" must be a path like '/admin' (no trailing slash), got ${describe(value)}`)
  }
  return value
}

function resolveLogger (value: unknown): Logger | undefined {
  if (value === undefined) return undefined
  if (!isLogger(value)) throw new InvalidOptionError(`"logger" must have info, warn and error methods, got ${describe(value)}`)
  return value
}

function resolveReadiness (value: unknown): 'listen' | 'manual' {
  if (value === undefined) return 'listen'
  if (value !== 'listen' && value !== 'manual') throw new InvalidOptionError(`"readiness" must be 'listen' or 'manual', got ${describe(value)}`)
  return value
}

function resolveLauncher (value: unknown): 'auto' | 'ignore' {
  if (value === undefined) return 'auto'
  if (value !== 'auto' && value !== 'ignore') throw new InvalidOptionError(`"launcher" must be 'auto' or 'ignore', got ${describe(value)}`)
  return value
}
