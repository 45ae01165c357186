// Runs in both processes: tells systemd what the service does when it runs the app with a notify
// socket (`Type=notify`, `NotifyAccess=all`): READY=1 once it serves, RELOADING=1 and then
// MAINPID=<successor> with READY=1 around a reboot, MAINPID=<self> and READY=1 again after a rollback
// (a late one too: the successor lost during the drain), STOPPING=1 when a
// drain ends the service, and STATUS= lines for `systemctl status`. Node cannot write to a Unix
// datagram socket: each message goes through the `systemd-notify` binary, one at a time, in order.
import type { EventEmitter } from 'node:events'
import type { HandoffEvent, LifecycleEvents, LifecycleState } from '../events'
import type { Logger } from '../log'
import type { RebootHost } from '../os'
import type { Cause } from './shutdown'

export interface NotifyContext {
  readonly pid: number
  readonly host: Pick<RebootHost, 'spawn' | 'env'>
  /** What started the drain under way. */
  cause (): Cause | undefined
  /** This process is a successor whose old process can still roll the reboot back: systemd's main pid is the old one. */
  parentMayRollBack (): boolean
  state (): LifecycleState
  timer (ms: number, fn: () => void): () => void
  log (): Logger
}

/** The binary that writes to the notify socket (with a barrier: it returns once systemd took the message, systemd 246 on). */
export const NOTIFY_BINARY = 'systemd-notify'
/** Ms a `systemd-notify` may take before it is killed and the next message goes. */
export const NOTIFY_TIMEOUT_MS = 5000

export class SystemdNotifier {
  private readonly ctx: NotifyContext
  private readonly socket: string | undefined
  /** `systemd-notify` could not be run (not installed): no more messages. */
  private broken = false
  private warned = false
  private queue: Promise<void> = Promise.resolve()
  private pending = 0

  constructor (events: Pick<EventEmitter<LifecycleEvents>, 'on'>, ctx: NotifyContext) {
    this.ctx = ctx
    const socket = ctx.host.env.NOTIFY_SOCKET
    this.socket = socket === undefined || socket === '' ? undefined : socket
    if (this.socket === undefined) return
    events.on('handoff', (e) => { this.handoff(e) })
    events.on('state', (state) => { if (state === 'draining') this.draining() })
  }

  /** systemd gave this process a notify socket and `systemd-notify` has not failed to run: systemd follows MAINPID= messages. */
  get enabled (): boolean { return this.socket !== undefined && !this.broken }

  /** No message is on its way: the process may end now. */
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

  /** The message for a reboot step of this process (the old one, except on a first start's announcement). */
  handoff (e: HandoffEvent): void {
    const me = this.ctx.pid
    switch (e.step) {
      case 'announced':
        // A successor's old process tells systemd, once probation passed ('serving').
        if (e.parentPid === undefined) this.send('READY=1', `MAINPID=${me}`, `STATUS=serving (pid ${me})`)
        break
      case 'refused':
        this.send(`STATUS=serving (pid ${me}); a reboot was refused: ${e.error.message}`)
        break
      case 'spawned':
        this.send('RELOADING=1', `STATUS=rebooting: successor ${e.pid} starting`)
        break
      case 'ready':
        this.send(`STATUS=rebooting: successor ${e.pid} serves, in probation`)
        break
      case 'serving':
        this.send(`MAINPID=${e.pid}`, 'READY=1', `STATUS=serving (pid ${e.pid}); the old process ${me} drains`)
        break
      case 'failed':
        // Aborted by a shutdown: this process drains (STOPPING=1 went with it).
        if (this.ctx.state() !== 'draining') this.send(`MAINPID=${me}`, 'READY=1', `STATUS=serving (pid ${me}); the reboot failed: ${e.error.message}`)
        break
      case 'lost':
        this.send(`MAINPID=${me}`, 'READY=1', `STATUS=serving again (pid ${me}): successor ${e.pid} lost (${e.reason}); ${e.back ? 'this process serves on, for good' : 'this process exits once drained'}`)
        break
      default:
    }
  }

  /** A drain started: STOPPING=1 when it ends the service (not the old process of a reboot, nor a successor rolled back). */
  private draining (): void {
    const cause = this.ctx.cause()
    if (cause === undefined || cause.reason === 'reboot' || cause.trigger === 'rollback' || this.ctx.parentMayRollBack()) return
    this.send('STOPPING=1', `STATUS=draining (${cause.reason}, ${cause.trigger})`)
  }

  private send (...fields: string[]): void {
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
        const child = this.ctx.host.spawn(NOTIFY_BINARY, fields, { stdio: 'ignore', env: this.ctx.host.env })
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
    this.ctx.log().warn({ err, notifySocket: this.socket, message: fields }, `graceful-reboot: NOTIFY_SOCKET is set but ${problem}: systemd may not learn that the app serves, reboots or stops (install systemd's ${NOTIFY_BINARY}, give the unit NotifyAccess=all, or use the PID-file unit of docs/operations.md)`)
  }
}
