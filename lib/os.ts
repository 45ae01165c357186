// Runs in both processes: the seam between the lifecycle and the operating system.
// Everything that touches the process (exit, signals, crash events, timers, clock) goes through a
// `ProcessSeam`, so the state machine can be unit tested with a fake and no forking.

export type CrashKind = 'uncaughtException' | 'unhandledRejection'

export interface ProcessSeam {
  readonly pid: number
  readonly platform: NodeJS.Platform
  now (): number
  /** Ends the process with `code`. */
  exit (code: number): void
  /** Subscribes to an OS signal; returns the unsubscribe function. */
  onSignal (signal: NodeJS.Signals, fn: (signal: NodeJS.Signals) => void): () => void
  /** Subscribes to uncaught exceptions and unhandled rejections; returns the unsubscribe function. */
  onCrash (fn: (error: unknown, kind: CrashKind) => void): () => void
  /** An unref'd timer: it never keeps the process alive. Returns the cancel function. */
  timer (ms: number, fn: () => void): () => void
  /**
   * Keeps the process alive until the returned function is called (a drain whose finalizers wait
   * on nothing Node counts must still reach its deadline rather than exit 0 on an empty loop).
   */
  hold?: () => () => void
}

export const realProcess: ProcessSeam = {
  get pid () { return process.pid },
  platform: process.platform,
  now: () => Date.now(),
  exit: (code) => { process.exit(code) },
  onSignal (signal, fn) {
    process.on(signal, fn)
    return () => { process.removeListener(signal, fn) }
  },
  onCrash (fn) {
    const onException = (error: unknown): void => { fn(error, 'uncaughtException') }
    const onRejection = (reason: unknown): void => { fn(reason, 'unhandledRejection') }
    process.on('uncaughtException', onException)
    process.on('unhandledRejection', onRejection)
    return () => {
      process.removeListener('uncaughtException', onException)
      process.removeListener('unhandledRejection', onRejection)
    }
  },
  timer (ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms))
    t.unref()
    return () => { clearTimeout(t) }
  },
  hold () {
    const t = setInterval(() => {}, 1 << 30)
    return () => { clearInterval(t) }
  }
}
