// Runs in the new process of a reboot: its side of the IPC channel to the old process: says it is
// ready, that it fails (so the old process rolls back at once), or that the new code listens on an
// address it did not inherit; obeys a rollback; takes the connections the old process hands over. The old process may be gone at any moment: an IPC
// failure is never a crash, and the new process then carries on alone.
import type * as net from 'node:net'
import { ABORT_MESSAGE, ADOPTION_MESSAGE, COMMIT_MESSAGE, CONNECTION_MESSAGE, PING_MESSAGE, PONG_MESSAGE, REVOKE_MESSAGE, FAILING_MESSAGE, READY_MESSAGE, TAKEN_MESSAGE, messageType, type NewToOld, type OldToNew, type StartupFailure } from '../handoff/protocol'
import { holdReading, releaseReading } from '../handoff/socket'
import type { RebootHost } from '../os'

/** The code, message and service of a StartupError (from any copy of the package), else undefined. */
function startupFailure (err: unknown): StartupFailure | undefined {
  const e = err as { code?: unknown, message?: unknown, service?: unknown } | null | undefined
  if (e?.code !== 'ERR_GRACEFUL_STARTUP_FAILED' || typeof e.message !== 'string') return undefined
  return { code: e.code, message: e.message, service: typeof e.service === 'string' ? e.service : '' }
}

export class ParentChannel {
  private readonly host: Pick<RebootHost, 'send' | 'onParentMessage' | 'onParentGone'>
  private readonly pid: number

  constructor (host: Pick<RebootHost, 'send' | 'onParentMessage' | 'onParentGone'>, pid: number) {
    this.host = host
    this.pid = pid
  }

  /** Tells the old process to drain; false when it can no longer be told (it is gone). */
  ready (): boolean { return this.say({ type: READY_MESSAGE, pid: this.pid }) }

  /**
   * This process started shutting down: an old process still in probation rolls back. `cause`: why
   * (a crash's error); a required startup service's failure (a StartupError) is passed on with it.
   */
  failing (reason: string, trigger: string, cause?: unknown): boolean {
    const error = startupFailure(cause)
    return this.say({ type: FAILING_MESSAGE, pid: this.pid, reason, trigger, ...(error === undefined ? {} : { error }) })
  }

  /** A listen() asked for `asked`, which was not passed; `inherited` were. */
  adoptionMismatch (asked: string, inherited: string[]): boolean { return this.say({ type: ADOPTION_MESSAGE, pid: this.pid, asked, inherited }) }

  /** Calls `fn` with the drain deadline when the old process rolls the reboot back. Returns the unsubscribe function. */
  onAbort (fn: (timeout: number) => void): () => void {
    return this.host.onParentMessage((m) => {
      if (messageType(m) === ABORT_MESSAGE) fn((m as Extract<OldToNew, { type: typeof ABORT_MESSAGE }>).timeout)
    })
  }

  /** Answers the old process's pings from this event loop (a blocked loop answers late: the old process sees it). */
  answerPings (): () => void {
    return this.host.onParentMessage((m) => {
      if (messageType(m) === PING_MESSAGE) this.say({ type: PONG_MESSAGE, n: (m as Extract<OldToNew, { type: typeof PING_MESSAGE }>).n })
    })
  }

  /**
   * Calls `fn` for each connection the old process hands over, with the listener key it was accepted
   * on, once the old process committed it: until then the connection is held unread (TAKEN told the
   * old process it arrived); a REVOKE closes this copy unread (the old process serves it on). With
   * `twoPhase` false (an old process of an earlier version), it is served at once.
   *
   * When the channel closes with a connection still held (no COMMIT or REVOKE came), exactly one
   * process must own it, and neither can tell the other anymore. The old process keeps every
   * connection whose COMMIT it could not send (outgoing/handover.ts): so this process serves a held
   * connection only when `parentAlive()` says the old process is gone (its copy died with it), and
   * closes its copy unread while the old process lives (the channel closed, not the process).
   */
  onConnection (fn: (address: string, socket: net.Socket) => void, twoPhase = true, parentAlive: () => boolean = () => false): () => void {
    const held = new Map<number, { address: string, socket: net.Socket }>()
    this.host.onParentGone?.(() => {
      const theirs = held.size > 0 && parentAlive()
      for (const h of held.values()) {
        if (theirs) {
          h.socket.destroy()
          continue
        }
        fn(h.address, h.socket)
        releaseReading(h.socket)
      }
      held.clear()
    })
    return this.host.onParentMessage((m, handle) => {
      const type = messageType(m)
      if (type === CONNECTION_MESSAGE) {
        // A message whose socket did not arrive (the old process closed it first) carries nothing.
        if (handle === undefined || handle === null || typeof (handle as net.Socket).write !== 'function') return
        const c = m as Extract<OldToNew, { type: typeof CONNECTION_MESSAGE }>
        const socket = handle as net.Socket
        // An old process of an earlier version sends no COMMIT: it closes its copy on TAKEN.
        if (!twoPhase) {
          this.say({ type: TAKEN_MESSAGE, id: c.id })
          fn(c.address, socket)
          return
        }
        // Not holdable: not confirmed, so the old process revokes it and serves it on.
        if (!holdReading(socket)) {
          socket.destroy()
          return
        }
        held.set(c.id, { address: c.address, socket })
        if (!this.say({ type: TAKEN_MESSAGE, id: c.id })) {
          held.delete(c.id)
          socket.destroy()
        }
      } else if (type === COMMIT_MESSAGE || type === REVOKE_MESSAGE) {
        const id = (m as { id: number }).id
        const h = held.get(id)
        if (h === undefined) return
        held.delete(id)
        if (type === REVOKE_MESSAGE) {
          h.socket.destroy()
          return
        }
        fn(h.address, h.socket)
        releaseReading(h.socket)
      }
    })
  }

  private say (m: NewToOld): boolean {
    return this.host.send(m)
  }
}
