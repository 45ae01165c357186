// Runs in both processes: user startup services (a database pool, a queue consumer) as a dependency
// graph run before the app announces ready, each attempt with its own timeout, failed attempts retried with backoff.
import { InvalidOptionError, StartupError, StartupGraphError, StartupTimeoutError, describe } from '../errors'
import type { ProcessSeam } from '../os'
import { MAX_MS } from '../limits'
import { findCycle } from '../cycle'

/** What a startup service receives. */
export interface StartupContext {
  /** Aborted when this attempt's timeout passes (reason: a StartupTimeoutError). */
  signal: AbortSignal
  /** 1 for the first attempt, 2 for the first retry, ... */
  attempt: number
  /** This attempt's deadline, epoch ms (seam clock). */
  deadline: number
}

/** Starts one thing the app needs; may return a promise. Throwing or rejecting fails the attempt. */
export type StartupService = (context: StartupContext) => unknown

export interface StartupOptions {
  /** A unique name, for `after` of other services and for logs. */
  name?: string
  /** Names this one waits for: it starts once each of them started. */
  after?: readonly string[]
  /** Default true: the app announces ready only once every required service started. */
  required?: boolean
  /** Retries after a failed attempt, an integer from 0 to 100. Default 0. */
  retries?: number
  /** Ms before the first retry, doubled for each later one, at most MAX_BACKOFF_MS. Default 100. */
  backoff?: number
  /** Ms each attempt may run. Default DEFAULT_STARTUP_TIMEOUT_MS. */
  timeout?: number
}

export type StartupState = 'pending' | 'starting' | 'started' | 'failed' | 'skipped'

export interface StartupOutcome {
  name: string
  required: boolean
  state: StartupState
  /** Attempts made so far (0 while pending, and for a skipped service). */
  attempts: number
  /** Ms from the first attempt until it started or failed (so far, while starting). */
  ms: number
  /** The last attempt's error, for a failed service (or a starting one between attempts). */
  error?: unknown
}

/** Where the graph logs: pino's shape, like the package's Logger. */
export type StartupLog = Record<'info' | 'warn' | 'error', (obj: object, msg: string) => void>

/** Defaults: ms an attempt may run, ms before the first retry. */
export const DEFAULT_STARTUP_TIMEOUT_MS = 10_000
export const DEFAULT_BACKOFF_MS = 100
/** Bounds: the longest wait between two attempts (ms), the most retries. */
export const MAX_BACKOFF_MS = 10_000
export const MAX_RETRIES = 100

interface Entry extends StartupOutcome {
  fn: StartupService
  after: readonly string[]
  retries: number
  backoff: number
  timeout: number
  startedAt: number | undefined
  root?: Entry // for a skipped service: the failed service that made it skip (a dependency, or one further up)
}

const SILENT: StartupLog = { info: () => {}, warn: () => {}, error: () => {} }

export class StartupGraph {
  private readonly entries: Entry[] = []
  private count = 0
  private phase: 'idle' | 'starting' | 'started' | 'failed' = 'idle'
  private running: Promise<void> | undefined
  private seam: Pick<ProcessSeam, 'now' | 'timer' | 'hold'> | undefined
  private log: StartupLog = SILENT
  private resolveRun: () => void = () => {}
  private rejectRun: (err: unknown) => void = () => {}
  private resolveSettled!: () => void
  private readonly allSettled = new Promise<void>((resolve) => { this.resolveSettled = resolve })

  get size (): number { return this.entries.length }

  /** Adds a service; validates its options at once, its place in the graph when run() starts. */
  add (fn: StartupService, options: StartupOptions = {}): void {
    if (this.running !== undefined) throw new InvalidOptionError('onStartup() must be called before the app listens: the startup services already run')
    if (typeof fn !== 'function') throw new InvalidOptionError(`onStartup() needs a function, got ${describe(fn)}`)
    if (options === null || typeof options !== 'object') throw new InvalidOptionError(`onStartup() options must be an object, got ${describe(options)}`)
    this.count++
    const name = options.name ?? (fn.name !== '' ? `${fn.name}#${this.count}` : `service#${this.count}`)
    if (typeof name !== 'string' || name === '') throw bad('name', 'a non-empty string', name)
    if (this.entries.some((e) => e.name === name)) {
      throw new StartupGraphError('ERR_GRACEFUL_STARTUP_DUPLICATE', `a startup service named "${name}" is already registered`)
    }
    const after = options.after
    if (after !== undefined && !(Array.isArray(after) && after.every((v) => typeof v === 'string' && v !== ''))) {
      throw bad('after', 'an array of service names', after)
    }
    const { required = true, retries = 0, backoff = DEFAULT_BACKOFF_MS, timeout = DEFAULT_STARTUP_TIMEOUT_MS } = options
    if (typeof required !== 'boolean') throw bad('required', 'a boolean', required)
    if (!(Number.isInteger(retries) && retries >= 0 && retries <= MAX_RETRIES)) throw bad('retries', `an integer from 0 to ${MAX_RETRIES}`, retries)
    if (!(typeof backoff === 'number' && Number.isFinite(backoff) && backoff >= 0 && backoff <= MAX_BACKOFF_MS)) {
      throw bad('backoff', `a number of ms from 0 to ${MAX_BACKOFF_MS}`, backoff)
    }
    if (!(typeof timeout === 'number' && Number.isFinite(timeout) && timeout > 0 && timeout <= MAX_MS)) {
      throw bad('timeout', `a positive number of ms, at most ${MAX_MS} (about 24.8 days)`, timeout)
    }
    this.entries.push({ name, fn, after: [...(after ?? [])], required, retries, backoff, timeout, state: 'pending', attempts: 0, startedAt: undefined, ms: 0 })
  }

  /** Throws a StartupGraphError for an `after` that names no service or for a cycle. */
  validate (): void {
    const known = this.entries.map((e) => e.name)
    for (const e of this.entries) {
      for (const n of e.after) {
        if (!known.includes(n)) {
          throw new StartupGraphError('ERR_GRACEFUL_STARTUP_UNKNOWN',
            `startup service "${e.name}" has after: ["${n}"], but no service is named "${n}" (known: ${known.length > 0 ? known.join(', ') : 'none'})`)
        }
      }
    }
    const cycle = findCycle(new Map(this.entries.map((e) => [e.name, e.after])))
    if (cycle !== undefined) throw new StartupGraphError('ERR_GRACEFUL_STARTUP_CYCLE', `startup services form a cycle: ${cycle.join(' -> ')}`)
  }

  /**
   * Runs the graph once (a second call returns the same promise): each service starts as soon as its
   * dependencies started. Resolves once every required service started; rejects with the graph error, or a
   * StartupError as soon as a required service failed or was skipped (the others go on in the background).
   */
  run (seam: Pick<ProcessSeam, 'now' | 'timer' | 'hold'>, log?: StartupLog): Promise<void> {
    if (this.running !== undefined) return this.running
    this.seam = seam
    this.log = log ?? SILENT
    this.running = new Promise<void>((resolve, reject) => { this.resolveRun = resolve; this.rejectRun = reject })
    try {
      this.validate()
      this.phase = 'starting'
    } catch (err) {
      this.phase = 'failed'
      this.rejectRun(err)
      this.resolveSettled()
    }
    if (this.phase === 'starting') this.schedule()
    return this.running
  }

  /** Where each service is, and the graph as a whole: a copy. */
  status (): { state: 'idle' | 'starting' | 'started' | 'failed', services: StartupOutcome[] } {
    const now = this.seam?.now()
    return {
      state: this.phase,
      services: this.entries.map((e) => {
        const ms = e.state === 'starting' && now !== undefined && e.startedAt !== undefined ? now - e.startedAt : e.ms
        const o: StartupOutcome = { name: e.name, required: e.required, state: e.state, attempts: e.attempts, ms }
        if (e.error !== undefined) o.error = e.error
        return o
      })
    }
  }

  /** Resolves once every service (optional ones too) started, failed or was skipped; after run(). */
  settled (): Promise<void> { return this.allSettled }

  /** Skips what can no longer start, starts what can, then settles the run if it is decided. */
  private schedule (): void {
    const byName = new Map(this.entries.map((e) => [e.name, e]))
    for (let changed = true; changed;) {
      changed = false
      for (const e of this.entries) {
        if (e.state !== 'pending') continue
        const deps = e.after.map((n) => byName.get(n) as Entry)
        const blocker = deps.find((d) => d.state === 'failed' || d.state === 'skipped')
        if (blocker !== undefined) {
          e.state = 'skipped'
          e.root = blocker.root ?? blocker
          changed = true
          this.skipped(e, blocker)
        } else if (deps.every((d) => d.state === 'started')) {
          this.start(e).catch((err: unknown) => { this.rejectRun(err) })
        }
      }
    }
    if (this.phase === 'starting') {
      const fatal = this.entries.find((e) => e.required && (e.state === 'failed' || e.state === 'skipped'))
      if (fatal !== undefined) {
        this.phase = 'failed'
        this.rejectRun(this.failure(fatal))
      } else if (this.entries.every((e) => !e.required || e.state === 'started')) {
        this.phase = 'started'
        this.resolveRun()
      }
    }
    if (!this.entries.some((e) => e.state === 'pending' || e.state === 'starting')) this.resolveSettled()
  }

  private async start (e: Entry): Promise<void> {
    const seam = this.seam as Pick<ProcessSeam, 'now' | 'timer' | 'hold'>
    // The timers of the attempts and of the waits between them never keep the process alive: this does,
    // until the service started or failed (a process with nothing else to do would exit 0 mid-retry).
    const release = seam.hold?.() ?? (() => {})
    try {
      await this.attempts(e, seam)
    } finally {
      release()
    }
    this.schedule()
  }

  private async attempts (e: Entry, seam: Pick<ProcessSeam, 'now' | 'timer'>): Promise<void> {
    e.state = 'starting'
    e.startedAt = seam.now()
    for (let attempt = 1; ; attempt++) {
      e.attempts = attempt
      const result = await attemptOnce(e, attempt, seam)
      if (result.ok) {
        e.state = 'started'
        e.ms = seam.now() - e.startedAt
        delete e.error
        this.log.info({ service: e.name, attempt, ms: e.ms }, `graceful-reboot: started service "${e.name}" in ${e.ms} ms (attempt ${attempt})`)
        break
      }
      e.error = result.error
      const last = attempt > e.retries
      const wait = Math.min(e.backoff * 2 ** (attempt - 1), MAX_BACKOFF_MS)
      this.log.warn({ service: e.name, attempt, err: result.error, ...(last ? {} : { retryInMs: wait }) },
        `graceful-reboot: service "${e.name}" failed to start (attempt ${attempt} of ${e.retries + 1}): ${message(result.error)}; ` +
        (last ? 'no retry left' : `retrying in ${wait} ms`))
      if (last) {
        e.state = 'failed'
        e.ms = seam.now() - e.startedAt
        if (!e.required) {
          this.log.error({ service: e.name, attempts: attempt, err: result.error },
            `graceful-reboot: optional service "${e.name}" failed after ${plural(attempt)}: ${message(result.error)}; the app goes on without it`)
        }
        break
      }
      await new Promise<void>((resolve) => { seam.timer(wait, resolve) })
    }
  }

  private skipped (e: Entry, blocker: Entry): void {
    if (e.required) return // run() rejects with it
    this.log.error({ service: e.name, dependency: blocker.name },
      `graceful-reboot: optional service "${e.name}" skipped: its dependency "${blocker.name}" ${blocker.state === 'failed' ? 'failed' : 'was skipped'}`)
  }

  /** The StartupError for a required service that failed or was skipped. */
  private failure (e: Entry): StartupError {
    if (e.state === 'failed') {
      return new StartupError(e.name,
        `required service "${e.name}" failed after ${plural(e.attempts)}: ${message(e.error)}; the app does not announce ready`, { cause: e.error })
    }
    const root = e.root as Entry
    return new StartupError(e.name,
      `required service "${e.name}" was skipped: its dependency "${root.name}" failed after ${plural(root.attempts)}: ${message(root.error)}; ` +
      'the app does not announce ready', { cause: root.error })
  }
}

/** One attempt: ok, or the error it threw/rejected with, or a StartupTimeoutError once its timeout passed. */
async function attemptOnce (e: Entry, attempt: number, seam: Pick<ProcessSeam, 'now' | 'timer'>):
Promise<{ ok: true } | { ok: false, error: unknown }> {
  const controller = new AbortController()
  const deadline = seam.now() + e.timeout
  let cancel = (): void => {}
  const timedOut = new Promise<'timeout'>((resolve) => { cancel = seam.timer(e.timeout, () => { resolve('timeout') }) })
  let work: Promise<unknown>
  try {
    work = Promise.resolve(e.fn({ signal: controller.signal, attempt, deadline })) // called at once: independent ones start in one tick
  } catch (error) {
    work = Promise.reject(error)
  }
  work.catch(() => {}) // a late rejection of a timed-out attempt
  try {
    const first = await Promise.race([work.then(() => 'ok' as const), timedOut])
    if (first === 'ok') return { ok: true }
    const error = new StartupTimeoutError(e.name, e.timeout, attempt)
    controller.abort(error)
    return { ok: false, error }
  } catch (error) {
    return { ok: false, error }
  } finally {
    cancel()
  }
}

function bad (key: string, what: string, value: unknown): InvalidOptionError {
  return new InvalidOptionError(`onStartup() option "${key}" must be ${what}, got ${describe(value)}`)
}

function message (err: unknown): string {
  return err instanceof Error ? err.message : describe(err)
}

function plural (attempts: number): string {
  return attempts === 1 ? '1 attempt' : `${attempts} attempts`
}
