// Runs in the new process of a reboot: what it does for the reboot that started it: obeys a rollback,
// gives each connection the old process hands over to the server on the same address, gives up when
// it is not ready in time (the old process may be gone), and reports a listen() on an address it did
// not inherit.
import type * as net from 'node:net'
import { AdoptionError } from '../errors'
import { LISTENER_MESSAGE, type NewToOld } from '../handoff/protocol'
import type { Logger } from '../log'
import type { ProcessSeam, RebootHost } from '../os'
import type { Inherited } from './inherited'
import { ParentChannel } from './parent'
import { readyWatchdog } from './watchdog'
import { alive } from '../proc'

/** What the new process's side of a reboot needs from the lifecycle. */
export interface IncomingContext {
  readonly seam: Pick<ProcessSeam, 'pid' | 'timer'>
  readonly host: Pick<RebootHost, 'send' | 'onParentMessage' | 'sendHandle' | 'onParentGone'>
  readonly inherited: Inherited
  readonly log: Logger
  /** The tracked server listening under a LISTEN_FDNAMES key. */
  serverFor (address: string): net.Server | undefined
  /** This process serves (announced), or no longer runs: the watchdog has nothing to do. */
  settled (): boolean
  /** Drains this process: `rollback` within `timeout` ms, or `not-ready` with the default deadline. */
  shutdown (timeout: number | undefined, trigger: 'rollback' | 'not-ready'): void
}

export class IncomingReboot {
  /** The IPC channel to the old process. */
  readonly parent: ParentChannel
  private readonly ctx: IncomingContext
  private late = false

  constructor (ctx: IncomingContext) {
    this.ctx = ctx
    const from = ctx.inherited
    this.parent = new ParentChannel(ctx.host, ctx.seam.pid)
    this.parent.answerPings()
    this.parent.onAbort((timeout) => {
      ctx.log.warn({ parent: from.parentPid, timeout }, 'graceful-reboot: the old process rolled the reboot back; draining')
      ctx.shutdown(timeout, 'rollback')
    })
    this.parent.onConnection((address, socket) => {
      const server = ctx.serverFor(address)
      if (server === undefined) {
        ctx.log.warn({ address }, 'graceful-reboot: a connection was handed over for an address nothing here listens on; closed')
        socket.destroy()
        return
      }
      server.emit('connection', socket)
    }, from.twoPhase, () => from.parentPid !== undefined && alive(from.parentPid))
    const within = from.readyWithin
    if (within === undefined) return
    readyWatchdog(ctx.seam, within, () => ctx.settled(), () => {
      this.late = true
      ctx.log.error({ parent: from.parentPid, rebootTimeout: within, pending: from.pendingKeys }, `graceful-reboot: not ready within ${within} ms of the start (rebootTimeout); giving up so a supervisor can act`)
      ctx.shutdown(undefined, 'not-ready')
    })
  }

  /**
   * After ready: sends the old process a copy of each listening socket this process adopted, which it
   * keeps, not accepting, until its drain is over, to take the service back if this process is lost.
   */
  sendListeners (): void {
    const send = this.ctx.host.sendHandle
    if (send === undefined) return
    for (const key of this.ctx.inherited.names) {
      const handle = (this.ctx.serverFor(key) as { _handle?: unknown } | undefined)?._handle
      if (handle == null) continue
      const m: NewToOld = { type: LISTENER_MESSAGE, key }
      if (!send(m, handle)) return
    }
  }

  /** Not ready within `rebootTimeout` of its start: the shutdown exits with `exitCodes.notReady`. */
  get gaveUp (): boolean { return this.late }

  /** A listen() bound `key`, which no inherited socket matched, while inherited sockets still wait: the new code listens elsewhere. */
  unmatched (key: string): void {
    const pending = this.ctx.inherited.pendingKeys
    if (pending.length === 0) return
    const err = new AdoptionError(`listen() asked for ${key}, which the old process did not pass; it passed ${pending.join(', ')}, still waiting for a listen()`)
    this.ctx.log.error({ err }, 'graceful-reboot: the new code listens on other addresses than the old process; the reboot will be rolled back')
    this.parent.adoptionMismatch(key, pending)
  }
}
