// Runs in every process that shuts down (the old process of a reboot too): the HTTP/1.1 connections
// of one server, and their drain: `Connection: close` on every response not yet started, idle
// connections closed after a grace, busy ones closed once their response is done.
import type * as net from 'node:net'
import * as tls from 'node:tls'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ConnectionSet } from './connections'
import type { ProcessSeam } from '../os'

interface Conn {
  /** The socket accepted by the listener; the key of the map. */
  readonly raw: net.Socket
  /** The socket HTTP runs on: `raw`, or the TLSSocket wrapping it. */
  http: net.Socket
  cancelReap: (() => void) | undefined
}

/** Node keeps the response in flight on a socket here; `null` when the socket is idle. */
type HttpSocket = net.Socket & { _httpMessage?: ServerResponse | null, _parent?: net.Socket | null }

/**
 * Tracks the HTTP/1.1 connections of one server from the moment it is constructed. Once `drain()`
 * is called: `Connection: close` on every response not yet started, and on every new request;
 * after `idleGrace` ms of idleness, connections with no request in flight are closed, and
 * connections are reaped as they turn idle. Upgraded sockets leave the set (`release`).
 */
export class Http1Connections implements ConnectionSet {
  private readonly server: net.Server
  private readonly conns = new Map<net.Socket, Conn>()
  /** Sockets that carry another protocol (an HTTP/2 session): never tracked here. */
  private readonly excluded = new WeakSet<net.Socket>()
  private readonly seam: ProcessSeam
  private readonly idleGrace: number
  private readonly untrack: () => void
  private draining = false
  private waiters: Array<() => void> = []
  /** Idle keep-alive or never-spoke connections closed after the idle grace. */
  idleClosed = 0

  constructor (server: net.Server, seam: ProcessSeam, idleGrace: number) {
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
    this.untrack = () => {
      server.removeListener('connection', onConnection)
      if (isTls) server.removeListener('secureConnection', onSecure)
      server.removeListener('request', this.onDrainRequest)
    }
  }

  get size (): number { return this.conns.size }

  drain (): void {
    if (this.draining) return
    this.draining = true
    this.server.prependListener('request', this.onDrainRequest)
    for (const c of this.conns.values()) {
      const res = (c.http as HttpSocket)._httpMessage
      if (res) this.watch(res, c)
      else this.scheduleReap(c)
    }
  }

  whenEmpty (): Promise<void> {
    if (this.conns.size === 0) return Promise.resolve()
    return new Promise((resolve) => { this.waiters.push(resolve) })
  }

  destroyAll (): number {
    const n = this.conns.size
    for (const c of [...this.conns.values()]) {
      c.cancelReap?.()
      c.http.destroy()
      this.forget(c.raw)
    }
    return n
  }

  /** A socket that left HTTP through an upgrade: no longer an HTTP connection. */
  release (socket: net.Socket): void {
    this.forget(rawOf(socket))
  }

  /**
   * A socket that carries an HTTP/2 session (h2c, or TLS with ALPN h2): it is drained by its own
   * rule (GOAWAY), never as an HTTP/1.1 connection, whether it was accepted already or not yet.
   */
  exclude (socket: net.Socket): void {
    const raw = rawOf(socket)
    this.excluded.add(raw)
    this.forget(raw)
  }

  /** Stops tracking: removes every listener this object added to the server. */
  detach (): void { this.untrack() }

  private readonly onDrainRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // An HTTP/2 server (allowHTTP1 or not) emits its h2 streams as 'request' too: not ours.
    if (req.httpVersionMajor !== 1) return
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
    if (this.excluded.has(socket)) return
    const c: Conn = { raw: socket, http: socket, cancelReap: undefined }
    this.conns.set(socket, c)
    socket.once('close', () => { this.forget(socket) })
    // A connection accepted just before the listener closed: reap it like any idle one.
    if (this.draining) this.scheduleReap(c)
  }

  private forget (raw: net.Socket): void {
    const c = this.conns.get(raw)
    if (c === undefined) return
    c.cancelReap?.()
    this.conns.delete(raw)
    if (this.conns.size === 0) {
      const w = this.waiters
      this.waiters = []
      for (const fn of w) fn()
    }
  }
}

function rawOf (socket: net.Socket): net.Socket {
  return (socket as HttpSocket)._parent ?? socket
}
