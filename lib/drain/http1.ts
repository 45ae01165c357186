// Runs in every process that shuts down (the old process of a reboot too): the HTTP/1.1 connections
// of one server, and their drain: `Connection: close` on the last response of each connection (the
// last request it has received), a request that arrives behind a response already sent with
// `Connection: close` never reaches the app, idle connections closed after a grace; a connection
// holding part of a request is never idle.
import type * as net from 'node:net'
import * as tls from 'node:tls'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { EmptyWaiters, type ConnectionSet } from './connections'
import type { ProcessSeam } from '../os'
import { IdleReaper } from './reaper'
import { closesBefore, endPipelineWith, gateRequests, headOf, neverSpokeGrace, rawOf, type Conn } from './http1-conn'
import { partialRequest, stopReading, resumeReading, type HandOver, type HttpSocket, type KeptReason } from '../handoff/socket'

/**
 * Connections the drain's start visits per turn of the event loop. One pass over 10,000 connections
 * held the old process's loop for 112 ms (a reboot handing them over, measured on 2 busy cores), and
 * every request on its connections waited for it; 256 keep each turn to a few ms.
 */
export const DRAIN_SLICE = 256

/** How the drain's start spreads its visits: `size` connections per turn, the next turn run by `defer`. */
export interface DrainSlicing { size?: number, defer?: (fn: () => void) => void }

/**
 * Tracks the HTTP/1.1 connections of one server from the moment it is constructed (nothing is added
 * per request before the drain). Once `drain()` is called:
 * - the last response of each connection (the one to the last request received on it) carries
 *   `Connection: close`, unless its head was already sent; responses pipelined before it keep the
 *   connection open, so every request received is answered and the connection closes after the last;
 * - a request that arrives behind a response already sent with `Connection: close` would never be
 *   answered: it is not handed to the app;
 * - after `idleGrace` ms of idleness, keep-alive connections with no request in flight are closed,
 *   and connections are reaped as they turn idle; a connection that never sent a byte gets
 *   `silentGrace` instead; one that holds part of a request (request line, headers) is never
 *   reaped: its request, once complete, is answered with `Connection: close` (until the deadline, or
 *   Node's `headersTimeout`). Upgraded sockets leave the set (`release`).
 */
export class Http1Connections implements ConnectionSet {
  private readonly server: net.Server
  /** Every connection (the socket accepted by the listener): all the bookkeeping before the drain. */
  private readonly sockets = new Set<net.Socket>()
  /** From the drain on: the state of each connection. */
  private readonly conns = new Map<net.Socket, Conn>()
  /** The TLS socket over an accepted one, until the drain gives it a Conn. */
  private readonly tlsOf = new WeakMap<net.Socket, net.Socket>()
  /** One 'close' listener shared by every socket (no closure per connection). */
  private readonly onClose: (this: net.Socket) => void
  /** Sockets that carry another protocol (an HTTP/2 session): never tracked here. */
  private readonly excluded = new WeakSet<net.Socket>()
  private readonly seam: ProcessSeam
  private readonly reaper: IdleReaper
  private readonly untrack: () => void
  private draining = false
  private ungate: () => void = () => {}
  private readonly empty = new EmptyWaiters()
  /** In a reboot: connections handed to the successor. */
  transferred = 0
  /** In a reboot: connections offered to the successor but drained here, by reason. */
  readonly kept: Partial<Record<KeptReason, number>> = {}
  private handOver: HandOver | undefined
  /** Connections the drain's start has not visited yet (it visits `slice` per turn). */
  private unvisited: Set<net.Socket> | undefined
  private readonly slice: number
  private readonly defer: (fn: () => void) => void

  /** Idle keep-alive or never-spoke connections closed after their grace. */
  get idleClosed (): number { return this.reaper.closed }

  constructor (server: net.Server, seam: ProcessSeam, idleGrace: number, slicing: DrainSlicing = {}) {
    this.server = server
    this.seam = seam
    this.slice = slicing.size ?? DRAIN_SLICE
    this.defer = slicing.defer ?? ((fn) => { setImmediate(fn) })
    const forget = (raw: net.Socket): void => { this.forget(raw) }
    this.onClose = function (this: net.Socket) { forget(this) }
    const onConnection = (socket: net.Socket): void => { this.add(socket) }
    const onSecure = (socket: HttpSocket): void => {
      const raw = socket._parent
      if (raw == null || !this.sockets.has(raw)) return
      const c = this.conns.get(raw)
      if (c !== undefined) c.http = socket
      else this.tlsOf.set(raw, socket)
      socket.once('close', () => { this.forget(raw) })
    }
    server.on('connection', onConnection)
    const isTls = server instanceof tls.Server
    // Part of a request read: a request in flight, not idle; its completion (`admit`) takes it on.
    this.reaper = new IdleReaper(seam, idleGrace, isTls, (c) => this.conns.get(c.raw) === c && !c.moving && headOf(c) === undefined && !partialRequest(c.http))
    if (isTls) server.on('secureConnection', onSecure)
    this.untrack = () => {
      server.removeListener('connection', onConnection)
      if (isTls) server.removeListener('secureConnection', onSecure)
      this.ungate()
    }
  }

  get size (): number { return this.sockets.size }

  /**
   * `handOver` (a reboot with `transferConnections`): idle connections move to the successor at once,
   * and a connection with one response in flight (keep-alive, nothing pipelined behind it) once that
   * response is done; the rest drains here. `deadline` (epoch ms) bounds the never-spoke grace.
   */
  drain (handOver?: HandOver, deadline?: number): void {
    if (this.draining) return
    this.draining = true
    this.reaper.silentGrace = neverSpokeGrace(this.reaper.idleGrace, deadline === undefined ? undefined : deadline - this.seam.now())
    this.handOver = handOver
    this.ungate = gateRequests(this.server, (req, res) => this.admit(req, res))
    // Visited `slice` per turn: a request that arrives on one not visited yet visits it first (admit).
    this.unvisited = new Set(this.sockets)
    this.visitSome()
  }

  /** Visits the next `slice` connections of the drain's start; the rest in a later turn. */
  private visitSome (): void {
    const left = this.unvisited
    if (left === undefined) return
    let n = 0
    for (const socket of left) {
      if (n++ === this.slice) break
      left.delete(socket)
      this.visit(socket)
    }
    if (left.size === 0) this.unvisited = undefined
    else this.defer(() => { if (this.unvisited === left) this.visitSome() })
  }

  /**
   * The drain's start for one connection: idle, it moves (a reboot) or is reaped after the grace; with
   * a response in flight, it moves after it or drains here; one destroyed meanwhile is left to its
   * 'close'. `arriving`: the response to a request
   * that came in before the visit, as if the visit had come just before it (the connection was idle).
   */
  private visit (socket: net.Socket, arriving?: ServerResponse): void {
    // Destroyed since the drain began (its client closed it): 'close' is on its way and forgets it.
    if (!this.sockets.has(socket) || socket.destroyed) return
    const c = this.track(socket)
    const res = headOf(c)
    if (res === undefined || res === arriving) this.idle(c)
    else if (this.handOver !== undefined && res.shouldKeepAlive && (c.http as HttpSocket).parser?.incoming === res.req) this.moveAfter(res, c)
    else this.follow(res, c)
  }

  /**
   * Calls the drain off (the old process of a reboot serves again): requests are no longer gated, no
   * connection is reaped or handed over any more, and a last response whose head is not stored yet
   * keeps its connection open again as its client asked; a response already sent with
   * `Connection: close` still closes its connection. The counts start from zero; a later `drain()`
   * starts afresh.
   */
  resume (): void {
    if (!this.draining) return
    this.draining = false
    this.unvisited = undefined
    this.ungate()
    this.ungate = () => {}
    this.handOver = undefined
    for (const c of this.conns.values()) {
      c.cancelReap?.()
      c.cancelReap = undefined
      const last = c.last
      if (last !== undefined && !last.headersSent) last.shouldKeepAlive = c.lastKeepAlive
      // Stopped as its response was written, to move after it: it reads on here (a no-op if not
      // stopped). One on its way to the successor is read here again by the hand-over, which fails.
      c.candidate = false
      if (!c.moving) resumeReading(c.raw)
    }
    // The callbacks of the drain find no state for a connection any more (a hand-over under way ends
    // with the connection read here again): they leave it alone.
    this.conns.clear()
    this.reaper.closed = 0
    this.transferred = 0
    for (const k of Object.keys(this.kept) as KeptReason[]) delete this.kept[k]
  }

  whenEmpty (): Promise<void> {
    return this.empty.wait(this.sockets.size === 0)
  }

  destroyAll (): number {
    const n = this.sockets.size
    for (const raw of [...this.sockets]) {
      const c = this.conns.get(raw)
      c?.cancelReap?.()
      ;(c?.http ?? this.tlsOf.get(raw) ?? raw).destroy()
      this.forget(raw)
    }
    return n
  }

  /** A socket that left HTTP through an upgrade: no longer an HTTP connection. */
  release (socket: net.Socket): void { this.forget(rawOf(socket)) }

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

  /**
   * A request received during the drain: it becomes the last of its connection (`Connection: close`),
   * taking the role over from the one before it if that one's head is not stored yet. Returns false
   * when a response queued before it closes the connection: it would never be answered.
   */
  private admit (req: IncomingMessage, res: ServerResponse): boolean {
    // An HTTP/2 server (allowHTTP1 or not) emits its h2 streams as 'request' too: not ours.
    if (req.httpVersionMajor !== 1) return true
    const raw = rawOf(req.socket)
    if (this.unvisited?.delete(raw) === true) this.visit(raw, res)
    const c = this.conns.get(raw)
    if (c === undefined) {
      res.shouldKeepAlive = false
      return true
    }
    if (closesBefore(c)) return false
    if (c.candidate) {
      // Pipelined behind the response it was to move after: it drains here.
      c.candidate = false
      resumeReading(c.raw)
    }
    if (c.moving && headOf(c) === res) {
      // Came in while the connection waited for its turn to move: served here keep-alive, then it moves.
      this.moveAfter(res, c)
      return true
    }
    c.cancelReap?.()
    c.cancelReap = undefined
    endPipelineWith(res, c)
    // Queued behind another response, it is followed once that one is done.
    if (headOf(c) === res) this.follow(res, c)
    return true
  }

  /**
   * The response at the head of a connection's queue during the drain (each head is followed once:
   * the one at the drain's start, then each that takes its place). If it answers the last request
   * received and its head is not stored, it ends the pipeline. When it is done, the next response in
   * the queue is followed, or the connection is reaped if it stays idle.
   */
  private follow (res: ServerResponse, c: Conn): void {
    if (res !== c.last && !res.headersSent) {
      const incoming = (c.http as HttpSocket).parser?.incoming
      if (incoming == null || incoming === res.req) endPipelineWith(res, c)
    }
    res.once('close', () => {
      if (this.conns.get(c.raw) !== c) return
      const next = headOf(c)
      if (next) this.follow(next, c)
      else this.reaper.schedule(c)
    })
  }

  /** An idle connection during the drain: to the successor in a reboot, else closed after the grace. */
  private idle (c: Conn): void {
    if (this.handOver !== undefined) this.tryHandOver(c)
    else this.reaper.schedule(c)
  }

  /**
   * The one response in flight stays keep-alive; then the connection moves. At the drain's start it
   * stops reading as the response is written (its next request waits in the kernel buffer, which
   * travels with the fd) and goes first; one still waiting for its turn reads on and keeps its place.
   */
  private moveAfter (res: ServerResponse, c: Conn): void {
    c.candidate = true
    const stop = !c.moving
    if (stop) res.once('prefinish', () => { if (c.candidate) stopReading(c.raw) })
    res.once('close', () => {
      if (this.conns.get(c.raw) !== c) return
      const next = headOf(c)
      if (c.candidate && next === undefined && c.moving) c.candidate = false
      else if (c.candidate && next === undefined) this.tryHandOver(c, stop)
      else if (next !== undefined) this.follow(next, c)
      else this.reaper.schedule(c)
    })
  }

  private tryHandOver (c: Conn, stopped = false): void {
    const handOver = this.handOver
    if (handOver === undefined || c.moving) return
    c.moving = true
    c.candidate = false
    c.cancelReap?.()
    void handOver(c.raw, stopped).then((outcome) => {
      c.moving = false
      if (outcome === true) {
        this.transferred++
        return
      }
      if (outcome === 'busy') return // a request came in while it waited: moveAfter tries again
      // Closed by its client while it waited for its turn: neither moved nor kept.
      if (this.conns.get(c.raw) !== c) return
      this.kept[outcome] = (this.kept[outcome] ?? 0) + 1
      const next = headOf(c)
      if (next !== undefined) this.follow(next, c)
      else this.reaper.schedule(c)
    })
  }

  private add (socket: net.Socket): void {
    if (this.excluded.has(socket)) return
    this.sockets.add(socket)
    socket.on('close', this.onClose)
    // A connection accepted just before the listener closed: like any idle one.
    if (this.draining) this.idle(this.track(socket))
  }

  /** The drain's state of a connection (made when the drain reaches it: nothing per connection before). */
  private track (raw: net.Socket): Conn {
    let c = this.conns.get(raw)
    if (c === undefined) {
      c = { raw, http: this.tlsOf.get(raw) ?? raw, cancelReap: undefined, last: undefined, lastKeepAlive: false, candidate: false, moving: false }
      this.conns.set(raw, c)
    }
    return c
  }

  private forget (raw: net.Socket): void {
    if (!this.sockets.delete(raw)) return
    this.unvisited?.delete(raw)
    raw.removeListener('close', this.onClose)
    const c = this.conns.get(raw)
    if (c !== undefined) {
      c.cancelReap?.()
      this.conns.delete(raw)
    }
    if (this.sockets.size === 0) this.empty.wake()
  }
}
