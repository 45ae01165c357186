// Runs in every process that shuts down (the old process of a reboot too): the drain sequence of one
// server (DESIGN.md section 3): stop accepting, drain each kind of connection, force what is left.
import * as net from 'node:net'
import type { ConnectionSet } from './connections'
import { Http1Connections } from './http1'
import { UpgradedSockets, trackUpgrades } from './upgraded'
import { keepingPath } from '../outgoing/keep-path'
import type { ProcessSeam } from '../os'

/** What one server's drain did. */
export interface ServerDrainResult {
  /** HTTP connections destroyed at the deadline (a request on them was cut or never answered). */
  forced: number
  /** Idle keep-alive or never-spoke connections closed after the idle grace. */
  idleClosed: number
}

/** The Node server types the drain accepts: http.Server, https.Server or any net.Server running HTTP. */
export type AnyServer = net.Server

/**
 * Tracks the connections of one server from the moment it is constructed, and drains them:
 * 1. stop accepting (the listening handle only: Node's http `close()` would also reset idle sockets);
 * 2. each kind of HTTP connection is drained by its own rule (`ConnectionSet.drain()`);
 * 3. at the deadline, destroy what is left and report how many.
 * Upgraded sockets leave the HTTP sets and are kept in `upgraded`, for the finalizers.
 */
export class ServerDrain {
  readonly server: AnyServer
  readonly upgraded = new UpgradedSockets()
  private readonly http1: Http1Connections
  /** The kinds of connection that must be gone before the 'http' finalizer node completes. */
  private readonly http: ConnectionSet[]
  private readonly seam: ProcessSeam
  private readonly untrack: () => void
  private draining = false
  private result: Promise<ServerDrainResult> | undefined

  constructor (server: AnyServer, seam: ProcessSeam, idleGrace: number) {
    this.server = server
    this.seam = seam
    this.http1 = new Http1Connections(server, seam, idleGrace)
    this.http = [this.http1]
    const stopUpgrades = trackUpgrades(server, (socket) => {
      this.http1.release(socket)
      this.upgraded.add(socket)
    })
    this.untrack = () => {
      this.http1.detach()
      stopUpgrades()
    }
  }

  /** HTTP connections open now (upgraded sockets not included). */
  get connections (): number { return this.http.reduce((n, k) => n + k.size, 0) }

  get isDraining (): boolean { return this.draining }

  /**
   * Closes the listening handle only; open connections stay. Safe when not listening.
   * `keepPath`: a Unix socket's path stays (a successor accepts on it).
   */
  stopAccepting (keepPath = false): void {
    if (!this.server.listening) return
    const address = this.server.address()
    const close = (): void => { net.Server.prototype.close.call(this.server) }
    if (keepPath && typeof address === 'string') keepingPath(address, close)
    else close()
  }

  /**
   * Runs the drain until no HTTP connection is left or `deadline` (epoch ms) passes.
   * Idempotent: a second call returns the first call's promise.
   */
  drain (deadline: number): Promise<ServerDrainResult> {
    if (this.result !== undefined) return this.result
    this.draining = true
    this.stopAccepting()
    for (const k of this.http) k.drain()
    this.result = new Promise<ServerDrainResult>((resolve) => {
      let late = false
      const finish = (forced: number): void => {
        cancelDeadline()
        // Clears Node's connection-checking interval; the handle is already closed.
        if (typeof (this.server as { closeIdleConnections?: unknown }).closeIdleConnections === 'function') {
          this.server.close(() => {})
        }
        resolve({ forced, idleClosed: this.http1.idleClosed })
      }
      const cancelDeadline = this.seam.timer(deadline - this.seam.now(), () => {
        late = true
        finish(this.http.reduce((n, k) => n + k.destroyAll(), 0))
      })
      void Promise.all(this.http.map((k) => k.whenEmpty())).then(() => { if (!late) finish(0) })
    })
    return this.result
  }

  /** Stops tracking: removes every listener this object added to the server. */
  detach (): void { this.untrack() }
}
