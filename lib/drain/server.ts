// Runs in every process that shuts down (the old process of a reboot too): the drain sequence of one
// server (docs/shutdown.md, "What a shutdown does"): stop accepting, drain each kind of connection, force what is left.
import * as net from 'node:net'
import * as tls from 'node:tls'
import type { ConnectionSet } from './connections'
import { Http1Connections } from './http1'
import { Http2Sessions, addHttp2, noHttp2, type Http2DrainCounts } from './http2'
import { UpgradedSockets, trackUpgrades } from './upgraded'
import { keepingPath } from '../handoff/keep-path'
import type { HandOver, KeptReason } from '../handoff/socket'
import type { ProcessSeam } from '../os'

/** What one server's drain did. */
export interface ServerDrainResult {
  /**
   * HTTP connections destroyed at the deadline (a request on them was cut or never answered):
   * HTTP/1.1 connections plus HTTP/2 sessions (`http2.sessions.forced`).
   */
  forced: number
  /** Idle HTTP/1.1 keep-alive or never-spoke connections closed after their grace. */
  idleClosed: number
  /** HTTP/2 sessions and streams, drained and forced. */
  http2: Http2DrainCounts
  /** In a reboot: HTTP/1.1 connections handed to the successor. */
  transferred: number
  /** In a reboot: HTTP/1.1 connections offered to the successor but drained here, by reason. */
  kept: Partial<Record<KeptReason, number>>
}

/**
 * Tracks the connections of one server from the moment it is constructed, and drains them:
 * 1. stop accepting (the listening handle only: Node's http `close()` would also reset idle sockets);
 * 2. each kind of HTTP connection is drained by its own rule (`ConnectionSet.drain()`): HTTP/1.1
 *    connections with `Connection: close` and the idle reaper, HTTP/2 sessions with GOAWAY;
 * 3. at the deadline, destroy what is left and report how many.
 * Upgraded sockets leave the HTTP sets and are kept in `upgraded`, for the finalizers.
 */
export class ServerDrain {
  readonly server: net.Server
  readonly upgraded = new UpgradedSockets()
  private readonly http1: Http1Connections
  private readonly http2: Http2Sessions
  /** The kinds of connection that must be gone before the 'http' finalizer node completes. */
  private readonly http: ConnectionSet[]
  private readonly seam: ProcessSeam
  private readonly untrack: () => void
  private draining = false
  private result: Promise<ServerDrainResult> | undefined
  private callOff: () => void = () => {}

  constructor (server: net.Server, seam: ProcessSeam, idleGrace: number) {
    this.server = server
    this.seam = seam
    this.http1 = new Http1Connections(server, seam, idleGrace)
    // The socket of an HTTP/2 session is drained by GOAWAY, never by the HTTP/1.1 rules.
    this.http2 = new Http2Sessions(server, seam, (socket) => { this.http1.exclude(socket) })
    this.http = [this.http1, this.http2]
    const stopUpgrades = trackUpgrades(server, (socket) => {
      this.http1.release(socket)
      this.upgraded.add(socket)
    })
    this.untrack = () => {
      this.http1.detach()
      this.http2.detach()
      stopUpgrades()
    }
  }

  /** HTTP connections open now: HTTP/1.1 connections and HTTP/2 sessions (upgraded sockets not included). */
  get connections (): number { return this.http.reduce((n, k) => n + k.size, 0) }

  /** HTTP/2 sessions open now. */
  get sessions (): number { return this.http2.size }

  /** HTTP/2 streams open now. */
  get streams (): number { return this.http2.streams }

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
   * Runs the drain until no HTTP connection is left or `deadline` (epoch ms) passes. `handOver` (a
   * reboot): plain-TCP HTTP/1.1 connections move to the successor where they can.
   * Idempotent: a second call returns the first call's promise.
   */
  drain (deadline: number, handOver?: HandOver): Promise<ServerDrainResult> {
    if (this.result !== undefined) return this.result
    this.draining = true
    this.stopAccepting()
    // TLS session state cannot travel with the fd.
    this.http1.drain(this.server instanceof tls.Server ? undefined : handOver, deadline)
    for (const k of this.http) if (k !== this.http1) k.drain()
    this.result = new Promise<ServerDrainResult>((resolve) => {
      let over = false
      const finish = (forced: number): void => {
        if (over) return
        over = true
        cancelDeadline()
        // Clears Node's connection-checking interval; the handle is already closed.
        if (typeof (this.server as { closeIdleConnections?: unknown }).closeIdleConnections === 'function') {
          this.server.close(() => {})
        }
        resolve({ forced, idleClosed: this.http1.idleClosed, http2: copyCounts(this.http2.counts), transferred: this.http1.transferred, kept: { ...this.http1.kept } })
      }
      const cancelDeadline = this.seam.timer(deadline - this.seam.now(), () => {
        finish(this.http.reduce((n, k) => n + k.destroyAll(), 0))
      })
      void Promise.all(this.http.map((k) => k.whenEmpty())).then(() => { finish(0) })
      this.callOff = () => {
        if (over) return
        over = true
        cancelDeadline()
        resolve({ forced: 0, idleClosed: 0, http2: noHttp2(), transferred: 0, kept: {} })
      }
    })
    return this.result
  }

  /**
   * Calls the drain off (the old process of a reboot serves again): the deadline is cancelled, the
   * connections are served as before the drain (see `Http1Connections.resume`), the drain's promise
   * resolves with nothing done, and a later `drain()` starts afresh. The caller listens again.
   */
  resume (): void {
    if (!this.draining) return
    this.draining = false
    this.callOff()
    this.callOff = () => {}
    this.result = undefined
    this.http1.resume()
    this.http2.resume()
  }

  /** Stops tracking: removes every listener this object added to the server. */
  detach (): void { this.untrack() }
}

function copyCounts (counts: Http2DrainCounts): Http2DrainCounts {
  const copy = noHttp2()
  addHttp2(copy, counts)
  return copy
}
