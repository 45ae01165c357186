// Runs in both processes and in the supervisor: the channel to systemd's notify socket. Node cannot
// write to a Unix datagram socket: each message goes through the `systemd-notify` binary, one at a
// time, in order; a binary that cannot be run stops the channel with one warning.
import type { ChildProcess, SpawnOptions } from 'node:child_process'

/** The binary that writes to the notify socket (with a barrier: it returns once systemd took the message, systemd 246 on). */
export const NOTIFY_BINARY = 'systemd-notify'
/** Ms a `systemd-notify` may take before it is killed and the next message goes. */
export const NOTIFY_TIMEOUT_MS = 5000

export interface NotifyChannelContext {
  readonly env: NodeJS.ProcessEnv
  spawn (command: string, args: readonly string[], options: SpawnOptions): ChildProcess
  timer (ms: number, fn: () => void): () => void
  /** The one warning when a message cannot be sent. */
  warn (fields: Record<string, unknown>, msg: string): void
}

export class NotifyChannel {
  private readonly ctx: NotifyChannelContext
  private readonly socket: string | undefined
  /** `systemd-notify` could not be run (not installed): no more messages. */
  private broken = false
  private warned = false
  private queue: Promise<void> = Promise.resolve()
  private pending = 0

  constructor (ctx: NotifyChannelContext) {
    this.ctx = ctx
    const socket = ctx.env.NOTIFY_SOCKET
    this.socket = socket === undefined || socket === '' ? undefined : socket
  }

  /** systemd gave this process a notify socket and `systemd-notify` has not failed to run. */
  get enabled (): boolean { return this.socket !== undefined && !this.broken }

  /** No message is on its way. */
  get idle (): boolean { return this.pending === 0 }

  /** Resolves once every message sent so far reached systemd (or failed), at most NOTIFY_TIMEOUT_MS from now. */
  settled (): Promise<void> {
    return new Promise((resolve) => {
      const cancel = this.ctx.timer(NOTIFY_TIMEOUT_MS, resolve)
      void this.queue.then(() => { cancel(); resolve() })
    })
  }

  /** Runs `fn` once systemd has taken every message sent so far (at once when none is on its way). */
  told (fn: () => void): void {
    if (this.idle) fn()
    else void this.settled().then(fn)
  }

  /** Queues one `systemd-notify FIELD=VALUE...` (nothing without a notify socket). */
  send (...fields: string[]): void {
    if (!this.enabled) return
    this.pending++
    this.queue = this.queue.then(() => this.run(fields)).finally(() => { this.pending-- })
  }

  /** One `systemd-notify FIELD=VALUE...`, resolved when it ends (never rejects). */
  private run (fields: string[]): Promise<void> {
    if (this.broken) return Promise.resolve()
    return new Promise((resolve) => {
      let cancel = (): void => {}
      const done = (problem?: string, err?: unknown): void => {
        cancel()
        if (problem !== undefined) this.fail(problem, fields, err)
        resolve()
      }
      const unrunnable = (err: unknown): void => {
        this.broken = true
        done(`${NOTIFY_BINARY} could not be run`, err)
      }
      try {
        const child = this.ctx.spawn(NOTIFY_BINARY, fields, { stdio: 'ignore', env: this.ctx.env })
        cancel = this.ctx.timer(NOTIFY_TIMEOUT_MS, () => { child.kill('SIGKILL') })
        child.once('error', unrunnable)
        child.once('exit', (code, signal) => {
          if (code === 0) done()
          else done(signal === null ? `${NOTIFY_BINARY} exited with code ${String(code)}` : `${NOTIFY_BINARY} was killed by ${signal}`)
        })
      } catch (err) {
        unrunnable(err)
      }
    })
  }

  /** One warning per process: systemd's view may be wrong from here on; the PID file stays right. */
  private fail (problem: string, fields: string[], err: unknown): void {
    if (this.warned) return
    this.warned = true
    this.ctx.warn({ err, notifySocket: this.socket, message: fields }, `graceful-reboot: NOTIFY_SOCKET is set but ${problem}: systemd may not learn that the app serves, reboots or stops (install systemd's ${NOTIFY_BINARY}, give the unit NotifyAccess=all, or use the PID-file unit of docs/operations.md)`)
  }
}
