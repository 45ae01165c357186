// Runs in the old process (and any process that shuts down): connection tracking and the drain
// sequence of one http.Server or https.Server (DESIGN.md section 3).
import net from 'node:net'
import tls from 'node:tls'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { keepingPath } from '../handoff/listeners'
import { UpgradedSockets, trackUpgrades } from './upgraded'
import type { ProcessSeam } from '../os'

/** What one server's drain did. */
export interface ServerDrainResult {
  /** HTTP connections destroyed at the deadline (a request on them was cut or never answered). */
  forced: number
  /** Idle keep-alive or never-spoke connections closed after the idle grace. */
  idleClosed: number
}

interface Conn {
  /** The socket accepted by the listener; the key of the map. */
  readonly raw: net.Socket
  /** The socket HTTP runs on: `raw`, or the TLSSocket wrapping it. */
  http: net.Socket
  cancelReap: (() => void) | undefined
}

/** Node keeps the response in flight on a socket here; `null` when the socket is idle. */
type HttpSocket = net.Socket & { _httpMessage?: ServerResponse | null, _parent?: net.Socket | null }

/** The Node server types the drain accepts: http.Server, https.Server or any net.Server running HTTP. */
export type AnyServer = net.Server

/**
 * Tracks the connections of one server from the moment it is constructed, and drains them:
 * 1. stop accepting (the listening handle only: Node's http `close()` would also reset idle sockets);
 * 2. `Connection: close` on every response not yet started, and on every new request;
 * 3. after `idleGrace` ms of idleness, close connections with no request in flight, and go on reaping
 *    connections as they turn idle;
 * 4. at the deadline, destroy what is left and report how many.
 * Upgraded sockets leave the HTTP set and are kept in `upgraded` for the finalizers.
 */
export class ServerDrain {
  readonly server: AnyServer
  readonly upgraded = new UpgradedSockets()
  private readonly conns = new Map<net.Socket, Conn>()
  private readonly seam: ProcessSeam
  private readonly idleGrace: number
  private readonly untrack: () => void
  private draining = false
  private idleClosed = 0
  private result: Promise<ServerDrainResult> | undefined
  private onEmpty: (() => void) | undefined

  constructor (server: AnyServer, seam: ProcessSeam, idleGrace: number) {
    this.server = server
    this.seam = seam
    this.idleGrace = idleGrace
    const onConnection = (socket: net.Socket): void => { this.add(socket) }
    const onSecure = (socket: HttpSocket): void => {
      const c = socket._parent == null ? undefined : this.conns.get(socket._parent)
      if (c === undefined) return
      c.http = socket
      socket.once('close', () => { this.forget(c.raw) })
    }
    server.on('connection', onConnection)
    const isTls = server instanceof tls.Server
    if (isTls) server.on('secureConnection', onSecure)
    const stopUpgrades = trackUpgrades(server, (socket) => { this.upgrade(socket) })
    this.untrack = () => {
      server.removeListener('connection', onConnection)
      if (isTls) server.removeListener('secureConnection', onSecure)
      server.removeListener('request', this.onDrainRequest)
      stopUpgrades()
    }
  }

  /** HTTP connections open now (upgraded sockets not included). */
  get connections (): number { return this.conns.size }

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
    this.server.prependListener('request', this.onDrainRequest)
    for (const c of this.conns.values()) {
      const res = (c.http as HttpSocket)._httpMessage
      if (res) this.watch(res, c)
      else this.scheduleReap(c)
    }
    this.result = new Promise<ServerDrainResult>((resolve) => {
      let cancelDeadline = (): void => {}
      const finish = (forced: number): void => {
        cancelDeadline()
        this.onEmpty = undefined
        // Clears Node's connection-checking interval; the handle is already closed.
        if (typeof (this.server as { closeIdleConnections?: unknown }).closeIdleConnections === 'function') {
          this.server.close(() => {})
        }
        resolve({ forced, idleClosed: this.idleClosed })
      }
      if (this.conns.size === 0) { finish(0); return }
      this.onEmpty = () => { finish(0) }
      cancelDeadline = this.seam.timer(deadline - this.seam.now(), () => {
        this.onEmpty = undefined
        const forced = this.conns.size
        for (const c of [...this.conns.values()]) {
          c.cancelReap?.()
          c.http.destroy()
          this.forget(c.raw)
        }
        finish(forced)
      })
    })
    return this.result
  }

  /** Stops tracking: removes every listener this object added to the server. */
  detach (): void { this.untrack() }

  private readonly onDrainRequest = (req: IncomingMessage, res: ServerResponse): void => {
    res.shouldKeepAlive = false
    const c = this.conns.get(rawOf(req.socket))
    if (c === undefined) return
    c.cancelReap?.()
    c.cancelReap = undefined
    this.watch(res, c)
  }

  /** A response in flight: no keep-alive if it has not started; reap the socket if it stays open idle. */
  private watch (res: ServerResponse, c: Conn): void {
    if (!res.headersSent) res.shouldKeepAlive = false
    res.once('close', () => {
      if (this.conns.get(c.raw) === c && !(c.http as HttpSocket)._httpMessage) this.scheduleReap(c)
    })
  }

  /**
   * Closes an idle connection once it has stayed idle for the grace. A request that arrives in the
   * meantime gets `Connection: close`; bytes of a request still arriving postpone the close.
   */
  private scheduleReap (c: Conn): void {
    c.cancelReap?.()
    const bytes = c.http.bytesRead
    c.cancelReap = this.seam.timer(this.idleGrace, () => {
      c.cancelReap = undefined
      if (this.conns.get(c.raw) !== c || (c.http as HttpSocket)._httpMessage) return
      if (c.http.bytesRead !== bytes) { this.scheduleReap(c); return }
      this.idleClosed++
      c.http.destroy()
    })
  }

  private add (socket: net.Socket): void {
    const c: Conn = { raw: socket, http: socket, cancelReap: undefined }
    this.conns.set(socket, c)
    socket.once('close', () => { this.forget(socket) })
    // A connection accepted just before the listener closed: reap it like any idle one.
    if (this.draining) this.scheduleReap(c)
  }

  private upgrade (socket: net.Socket): void {
    const raw = rawOf(socket)
    const c = this.conns.get(raw)
    if (c !== undefined) {
      c.cancelReap?.()
      this.conns.delete(raw)
    }
    this.upgraded.add(socket)
    if (this.conns.size === 0) this.onEmpty?.()
  }

  private forget (raw: net.Socket): void {
    const c = this.conns.get(raw)
    if (c === undefined) return
    c.cancelReap?.()
    this.conns.delete(raw)
    if (this.conns.size === 0) this.onEmpty?.()
  }
}

function rawOf (socket: net.Socket): net.Socket {
  return (socket as HttpSocket)._parent ?? socket
}
