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
import { NotifyChannel } from '../systemd-notify'

export { NOTIFY_BINARY, NOTIFY_TIMEOUT_MS } from '../systemd-notify'

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

export class SystemdNotifier {
  private readonly ctx: NotifyContext
  private readonly channel: NotifyChannel

  constructor (events: Pick<EventEmitter<LifecycleEvents>, 'on'>, ctx: NotifyContext) {
    this.ctx = ctx
    this.channel = new NotifyChannel({ env: ctx.host.env, spawn: (command, args, options) => ctx.host.spawn(command, args, options), timer: ctx.timer, warn: (fields, msg) => { ctx.log().warn(fields, msg) } })
    if (!this.channel.enabled) return
    events.on('handoff', (e) => { this.handoff(e) })
    events.on('state', (state) => { if (state === 'draining') this.draining() })
  }

  /** systemd gave this process a notify socket and `systemd-notify` has not failed to run: systemd follows MAINPID= messages. */
  get enabled (): boolean { return this.channel.enabled }

  /** No message is on its way: the process may end now. */
  get idle (): boolean { return this.channel.idle }

  /** Resolves once every message sent so far reached systemd (or failed), at most NOTIFY_TIMEOUT_MS from now. */
  settled (): Promise<void> { return this.channel.settled() }

  /** Runs `fn` once systemd has taken every message sent so far (at once when none is on its way). */
  told (fn: () => void): void { this.channel.told(fn) }

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

  private send (...fields: string[]): void { this.channel.send(...fields) }
}
