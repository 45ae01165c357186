// Runs in the old process of a reboot: the two-phase hand-over of connections over the successor's IPC
// channel, so that a connection is read by exactly one process at every instant. The old process
// sends the handle (CONNECTION); the successor holds it without reading and answers TAKEN; the old
// process then sends COMMIT (the successor serves it from then on) and closes its copy. With no TAKEN
// within TAKEN_TIMEOUT_MS of the handle being written, the old process sends REVOKE and serves the
// connection on: the successor never got a COMMIT for it, so it never reads it, and closes its copy
// when the REVOKE arrives. One handle is in Node's hands at a time (Node writes a queued handle only
// once the one before it is acknowledged, so a queued handle's timeout could not be counted from its
// write, and a socket still queued could not be taken back): the next goes once the last is TAKEN.
import type { ChildProcess } from 'node:child_process'
import type * as net from 'node:net'
import { COMMIT_MESSAGE, CONNECTION_MESSAGE, REVOKE_MESSAGE, TAKEN_MESSAGE, messageType, type NewToOld, type OldToNew } from '../handoff/protocol'

/** Ms the successor has, from the moment its handle was written, to confirm it holds a connection; past it the connection stays here and the transfer stops. */
export const TAKEN_TIMEOUT_MS = 1_000

interface Pending { address: string, socket: net.Socket, resolve: (taken: boolean) => void }

interface InFlight { id: number, resolve: (taken: boolean) => void, written: boolean, cancel: () => void }

export class ConnectionSender {
  private readonly child: ChildProcess
  private readonly timer: (ms: number, fn: () => void) => () => void
  private readonly queue: Pending[] = []
  private current: InFlight | undefined
  private lastId = 0
  private stoppedWhy: string | undefined
  /** A connection was given to `send()`: a stop from now on leaves connections here, and is told. */
  private started = false
  private readonly onStop: (why: string) => void

  /**
   * `onStop` is told once why the transfer stopped (no TAKEN in time, the channel closed, `stop()`),
   * when it had begun: a rollback before any connection was sent, or the end of a drain (`close()`), is
   * no news.
   */
  constructor (child: ChildProcess, timer: (ms: number, fn: () => void) => () => void, onStop: (why: string) => void = () => {}) {
    this.child = child
    this.timer = timer
    this.onStop = onStop
    child.on('message', (m: unknown) => {
      if (messageType(m) === TAKEN_MESSAGE) this.taken((m as Extract<NewToOld, { type: typeof TAKEN_MESSAGE }>).id)
    })
    child.on('disconnect', () => { this.stop('the successor closed its IPC channel') })
    child.on('exit', () => { this.stop('the successor exited') })
  }

  /** Why the transfer stopped; undefined while it runs. */
  get stopped (): string | undefined { return this.stoppedWhy }

  /**
   * Resolves with true once the successor holds the connection and was told it is its own (the caller
   * closes this process's copy then), false when it stays here (the caller may read it again at once).
   */
  send (address: string, socket: net.Socket): Promise<boolean> {
    if (this.stoppedWhy !== undefined || !this.child.connected) return Promise.resolve(false)
    this.started = true
    return new Promise<boolean>((resolve) => {
      this.queue.push({ address, socket, resolve })
      this.pump()
    })
  }

  /**
   * Stops the transfer: connections not yet handed to Node stay here at once; the one whose handle is
   * on its way is revoked as soon as it was written (it stays here then). Idempotent.
   */
  stop (why: string): void {
    if (this.stoppedWhy !== undefined) return
    this.stoppedWhy = why
    for (const p of this.queue.splice(0)) p.resolve(false)
    const c = this.current
    // A closed channel sends nothing more: the successor can never be told the connection is its own.
    if (c !== undefined && (c.written || !this.child.connected)) this.revoke(c)
    if (this.started) this.onStop(why)
  }

  /** The drain is over: nothing is left to move; the channel closing from now on is no news. */
  close (): void {
    this.started = false
    this.stop('the drain is over')
  }

  private pump (): void {
    if (this.current !== undefined || this.stoppedWhy !== undefined) return
    const next = this.queue.shift()
    if (next === undefined) return
    if (!this.child.connected) {
      next.resolve(false)
      this.stop('the successor closed its IPC channel')
      return
    }
    const id = ++this.lastId
    const c: InFlight = { id, resolve: next.resolve, written: false, cancel: () => {} }
    this.current = c
    const message: OldToNew = { type: CONNECTION_MESSAGE, address: next.address, id }
    const written = (err: Error | null): void => {
      if (this.current !== c) return
      if (err != null) {
        this.finish(c, false)
        this.stop(`a connection could not be sent (${err.message})`)
        return
      }
      c.written = true
      if (this.stoppedWhy !== undefined) {
        this.revoke(c)
        return
      }
      // Counted from the write: a confirmation later than this means a successor too slow to serve.
      c.cancel = this.timer(TAKEN_TIMEOUT_MS, () => {
        this.revoke(c)
        this.stop(`the successor did not confirm a connection within ${TAKEN_TIMEOUT_MS} ms`)
      })
    }
    try {
      // keepOpen: this process keeps its copy until the commit, so a handle that did not arrive is not lost.
      this.child.send(message, next.socket, { keepOpen: true }, written)
    } catch (err) {
      written(err as Error)
    }
  }

  private taken (id: number): void {
    const c = this.current
    // A late TAKEN for a revoked connection: the REVOKE behind it tells the successor to close its copy.
    if (c === undefined || c.id !== id) return
    const commit: OldToNew = { type: COMMIT_MESSAGE, id }
    let told = false
    try {
      this.child.send(commit, undefined, {}, () => {})
      // send() returns false for a backlog too, yet delivers the message: on an open channel the COMMIT is
      // on its way, and the successor will serve the connection; only a closed channel keeps it here.
      told = this.child.connected
    } catch {}
    this.finish(c, told)
    if (!told) this.stop('the successor could not be told a connection is its own')
    else this.pump()
  }

  /** The connection stays here: the successor, never told it is its own, closes its copy unread. */
  private revoke (c: InFlight): void {
    if (this.current !== c) return
    const revoke: OldToNew = { type: REVOKE_MESSAGE, id: c.id }
    try {
      if (this.child.connected) this.child.send(revoke, undefined, {}, () => {})
    } catch {}
    this.finish(c, false)
  }

  private finish (c: InFlight, taken: boolean): void {
    if (this.current !== c) return
    c.cancel()
    this.current = undefined
    c.resolve(taken)
  }
}
