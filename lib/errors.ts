// Runs in both processes (old and new): every coded error the package throws or rejects with.
import type { Logger } from './log'

/** Base class: every error from graceful-reboot has a stable `code` to branch on. */
export class GracefulError extends Error {
  readonly code: string
  constructor (code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** An option or argument has a bad value; the message names the option and shows the value. */
export class InvalidOptionError extends GracefulError {
  constructor (message: string) {
    super('ERR_GRACEFUL_INVALID_OPTION', message)
  }
}

/** The finalizer graph cannot run: a cycle, or an `after`/`before` naming no finalizer. */
export class FinalizerGraphError extends GracefulError {
  constructor (code: 'ERR_GRACEFUL_FINALIZER_CYCLE' | 'ERR_GRACEFUL_FINALIZER_UNKNOWN' | 'ERR_GRACEFUL_FINALIZER_DUPLICATE', message: string) {
    super(code, message)
  }
}

/** A reboot cannot start or did not complete; `code` says which case. */
export class RebootError extends GracefulError {
  /** Pid of the successor, when one was spawned. */
  readonly successorPid: number | undefined
  constructor (code: RebootErrorCode, message: string, successorPid?: number) {
    super(code, message)
    this.successorPid = successorPid
  }
}

export type RebootErrorCode =
  | 'ERR_GRACEFUL_REBOOT_IN_PROGRESS'
  | 'ERR_GRACEFUL_REBOOT_UNSUPPORTED'
  | 'ERR_GRACEFUL_SHUTTING_DOWN'
  | 'ERR_GRACEFUL_REBOOT_ABORTED'
  | 'ERR_GRACEFUL_SUCCESSOR_EXITED'
  | 'ERR_GRACEFUL_SUCCESSOR_TIMEOUT'
  | 'ERR_GRACEFUL_SUCCESSOR_SPAWN'
  | 'ERR_GRACEFUL_SUCCESSOR_PROBATION'
  | 'ERR_GRACEFUL_REBOOT_VETOED'
  | 'ERR_GRACEFUL_REBOOT_NO_LISTENER'

/** The state an old process hands over (`handover()` / `inherited()`) could not be taken, sent or read; `name` says which. */
export type HandoverErrorCode =
  | 'ERR_GRACEFUL_HANDOVER_CLONE'
  | 'ERR_GRACEFUL_HANDOVER_TOO_LARGE'
  | 'ERR_GRACEFUL_HANDOVER_TIMEOUT'
  | 'ERR_GRACEFUL_HANDOVER_FAILED'
  | 'ERR_GRACEFUL_HANDOVER_DUPLICATE'

/** A state hand-over failed: the successor gets it from `inherited(name)`; the old process is untouched. */
export class HandoverError extends GracefulError {
  /** The name the state was registered under (`handover(name, ...)`). */
  readonly handover: string
  constructor (code: HandoverErrorCode, handover: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options)
    this.handover = handover
  }
}

/** A successor listens on an address the old process did not pass it (the reboot is rolled back). */
export class AdoptionError extends GracefulError {
  constructor (message: string) {
    super('ERR_GRACEFUL_ADOPTION', message)
  }
}

/** The plugin (or `expressGraceful`) was applied to an app that already has it. */
export class AlreadyRegisteredError extends GracefulError {
  constructor (message: string) {
    super('ERR_GRACEFUL_ALREADY_REGISTERED', message)
  }
}

/**
 * The PID file cannot be written: its folder is missing, not a folder, not writable or not the app's
 * own (checked when the options are resolved), or the write itself failed; or it names another live
 * instance of the app (checked when the app registers). The message names the path and the cause.
 */
export class PidFileError extends GracefulError {
  readonly path: string
  constructor (path: string, message: string, options?: { cause?: unknown }) {
    super('ERR_GRACEFUL_PID_FILE', message, options)
    this.path = path
  }
}

/** A finalizer ran past its own deadline. */
export class FinalizerTimeoutError extends GracefulError {
  constructor (name: string, ms: number) {
    super('ERR_GRACEFUL_FINALIZER_TIMEOUT', `finalizer "${name}" did not finish within ${ms} ms`)
  }
}

/**
 * The reason of an app's `drainSignal` once its drain has started: long responses (SSE, chunked
 * downloads, long polls) end by themselves instead of being cut at the deadline.
 */
export class DrainStartedError extends GracefulError {
  /** Why the app drains: 'shutdown', 'reboot' (this is the old process), 'crash' or 'close' (this app only). */
  readonly reason: 'shutdown' | 'reboot' | 'crash' | 'close'
  constructor (app: string, reason: 'shutdown' | 'reboot' | 'crash' | 'close') {
    super('ERR_GRACEFUL_DRAINING', `the ${app} app is draining (${reason}): end long responses now`)
    this.reason = reason
  }
}

/** Renders a bad value for an error message. */
export function describe (value: unknown): string {
  if (typeof value === 'function') return `a function ${value.name !== '' ? value.name : '(anonymous)'}`
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/** The codes of a reboot refused before anything started: the process serves on as it was. */
const REFUSED = new Set(['ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'ERR_GRACEFUL_SHUTTING_DOWN', 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'ERR_GRACEFUL_REBOOT_NO_LISTENER'])

/**
 * The catch of a reboot started in the background (a signal, the admin route): a refusal is one
 * warning with its reason (no stack: nothing went wrong); a failure after the successor was spawned,
 * a veto and an abort by a shutdown were logged by the reboot where they happened (once, by the old
 * process); anything else is an error with its stack.
 */
export function logRebootFailure (log: Pick<Logger, 'warn' | 'error'>, what: string): (err: unknown) => void {
  return (err) => {
    const code = (err as { code?: unknown } | null)?.code
    if (typeof code === 'string' && REFUSED.has(code)) {
      log.warn({ code, reason: (err as Error).message }, `graceful-reboot: ${what} refused: ${(err as Error).message}; still serving`)
      return
    }
    if (err instanceof GracefulError) return
    log.error({ err }, `graceful-reboot: ${what} failed; still serving`)
  }
}

/** The start graph cannot run: a cycle, an `after` naming no service, or two services with one name. */
export class StartupGraphError extends GracefulError {
  constructor (code: 'ERR_GRACEFUL_STARTUP_CYCLE' | 'ERR_GRACEFUL_STARTUP_UNKNOWN' | 'ERR_GRACEFUL_STARTUP_DUPLICATE', message: string) {
    super(code, message)
  }
}

/**
 * A required startup service failed (every attempt) or was skipped (a dependency of it did not
 * start): the app does not announce ready. `cause` is the last error.
 */
export class StartupError extends GracefulError {
  /** The required service that did not start. */
  readonly service: string
  constructor (service: string, message: string, options?: { cause?: unknown }) {
    super('ERR_GRACEFUL_STARTUP_FAILED', message, options)
    this.service = service
  }
}

/** One attempt of a startup service ran past its timeout: the reason its `signal` is aborted with. */
export class StartupTimeoutError extends GracefulError {
  constructor (service: string, ms: number, attempt: number) {
    super('ERR_GRACEFUL_STARTUP_TIMEOUT', `service "${service}" did not start within ${ms} ms (attempt ${attempt})`)
  }
}
