// Runs in every process that shuts down (the old process of a reboot too): the drain's state of one
// HTTP/1.1 connection and the rules of its pipeline (which response ends it with `Connection: close`,
// whether a request that arrives now would be answered), the request gate on a server's emit, and
// the grace of a connection that never sent a byte.
import type * as net from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { HttpSocket } from '../handoff/socket'

/** The drain's state of one connection (made when the drain reaches it: nothing per connection before). */
export interface Conn {
  /** The socket accepted by the listener; the key of the map. */
  readonly raw: net.Socket
  /** The socket HTTP runs on: `raw`, or the TLSSocket wrapping it. */
  http: net.Socket
  cancelReap: (() => void) | undefined
  /**
   * During the drain: the response that ends this connection's pipeline with `Connection: close`.
   * While its head is not stored, a request arriving behind it takes the role over.
   */
  last: ServerResponse | undefined
  /** What `last.shouldKeepAlive` was before the drain turned it off (false: its client asked to close). */
  lastKeepAlive: boolean
  /** In a reboot: its one response in flight stays keep-alive, and the connection moves once it is done. */
  candidate: boolean
  /** On its way to the successor: neither reaped nor followed meanwhile. */
  moving: boolean
}

/** Node sets `_last` when it stores a head that closes the connection after this response. */
type Response = ServerResponse & { _last?: boolean }

type Emit = (this: net.Server, event: string | symbol, ...args: unknown[]) => boolean

/** The events by which Node hands a request to the app. */
const REQUEST_EVENTS = new Set<string | symbol>(['request', 'checkContinue', 'checkExpectation'])

/**
 * From now on every request of `server` passes `admit` before Node hands it to the app (server.emit is
 * wrapped on this server only, so nothing runs per request before the drain); a request it refuses
 * (one the connection will never answer) is not handed over. Returns the function that undoes it.
 */
export function gateRequests (server: net.Server, admit: (req: IncomingMessage, res: ServerResponse) => boolean): () => void {
  const own = Object.prototype.hasOwnProperty.call(server, 'emit')
  const emit = server.emit as Emit
  let active = true
  const gated: Emit = function (this: net.Server, event, ...args) {
    if (active && REQUEST_EVENTS.has(event) && !admit(args[0] as IncomingMessage, args[1] as ServerResponse)) return true
    return emit.call(this, event, ...args)
  }
  server.emit = gated
  return () => {
    // Inert from now on, even if something wrapped emit again after us and it cannot be unwrapped.
    active = false
    if (server.emit !== gated) return
    if (own) server.emit = emit
    else delete (server as Partial<net.Server>).emit
  }
}

/**
 * Whether the connection closes after a response already queued on it, so that a request arriving
 * now would not be answered. If the response that ends the pipeline has not stored its head yet,
 * it keeps the connection open again (as its client asked) and the new request ends it instead.
 */
export function closesBefore (c: Conn): boolean {
  const socket = c.http as HttpSocket
  if (socket.writableEnded || socket.destroyed) return true
  const prev = c.last as Response | undefined
  if (prev === undefined) return (socket._httpMessage as Response | null | undefined)?._last === true
  if (prev.headersSent) return prev._last === true
  prev.shouldKeepAlive = c.lastKeepAlive
  return !c.lastKeepAlive
}

/** `res` ends the connection's pipeline: it carries `Connection: close`. */
export function endPipelineWith (res: ServerResponse, c: Conn): void {
  c.last = res
  c.lastKeepAlive = res.shouldKeepAlive
  res.shouldKeepAlive = false
}

/** The response at the head of the connection's queue; undefined when it is idle. */
export function headOf (c: Conn): ServerResponse | undefined {
  return (c.http as HttpSocket)._httpMessage ?? undefined
}

/** The socket the listener accepted under an HTTP socket (the TLS socket's own one). */
export function rawOf (socket: net.Socket): net.Socket {
  return (socket as HttpSocket)._parent ?? socket
}

/** See `neverSpokeGrace`; chosen by measurement (docs/shutdown.md, step 6). */
export const NEVER_SPOKE_GRACE = 2000

/**
 * Ms a connection that never sent a byte stays open once the drain starts: its client connected and
 * has not written yet (a loaded or paused client, a preconnect). `NEVER_SPOKE_GRACE`, never less than
 * `idleGrace`, and at most half of what is left until the deadline, so a request that starts at the
 * end of the grace still has time to finish.
 */
export function neverSpokeGrace (idleGrace: number, untilDeadline: number | undefined): number {
  const half = untilDeadline === undefined ? NEVER_SPOKE_GRACE : Math.floor(untilDeadline / 2)
  return Math.max(idleGrace, Math.min(NEVER_SPOKE_GRACE, half))
}
