// Runs in both processes: the socket primitives a connection hand-over is built on (stop reading,
// resume, check that the HTTP/1.1 parser is between two requests), and the types the drain and the
// old process of a reboot share. It relies on Node internals (the socket's handle and parser), each
// use feature-detected.
import type * as net from 'node:net'
import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * Moves a connection to the successor; resolves with true once it is on its way (gone from here),
 * 'busy' when a request came in while it waited for its turn (its response is in flight here: the
 * connection moves once that is done), or why it stays. `stopped`: the connection stopped reading as
 * its last response was written, so requests its client sends wait in the kernel until it moves: it
 * goes ahead of the connections that wait while they read on.
 */
export type HandOver = (socket: net.Socket, stopped?: boolean) => Promise<true | 'busy' | KeptReason>

/** Why a connection was drained here instead of handed over. */
export type KeptReason = 'unsupported' | 'mid-request' | 'send-failed'

interface Handle {
  reading?: boolean
  readStop?: () => number
  readStart?: () => number
}

/**
 * A server-side HTTP/1.1 socket with the Node internals the hand-over and the drain read: the
 * response at the head of its queue (`null` when the socket is idle; pipelined responses wait behind
 * it), the parser, whose `incoming` is the last request received on the socket, and the TLS socket
 * over it (`_parent`).
 */
export type HttpSocket = net.Socket & {
  _handle?: Handle | null
  _httpMessage?: ServerResponse | null
  _parent?: net.Socket | null
  _paused?: boolean
  parser?: { finish?: () => unknown, incoming?: IncomingMessage | null } | null
  server?: (net.Server & { keepAliveTimeout?: number }) | null | undefined
}

/** Whether this Node has what the hand-over needs on this socket (a plain TCP handle and an HTTP parser). */
export function transferable (socket: net.Socket): boolean {
  const s = socket as HttpSocket
  const h = s._handle
  return h != null && typeof h.readStop === 'function' && typeof h.readStart === 'function' &&
    typeof s.parser?.finish === 'function' && !s.destroyed
}

/**
 * The socket timeout (`socket.timeout`, Node's keep-alive or `server.timeout` timer) each stopped
 * socket had before `stopReading` disarmed it: `resumeReading` puts back exactly what Node had set,
 * never the keep-alive timer under a request in flight. Entries exist only during a hand-over.
 */
const timeouts = new WeakMap<net.Socket, number>()

/** Stops reading from the socket (bytes wait in the kernel); false when this Node cannot. */
export function stopReading (socket: net.Socket): boolean {
  if (!transferable(socket)) return false
  const h = (socket as HttpSocket)._handle as Handle
  // Node keeps this flag in step with the handle: a stale true makes a later resume() a no-op.
  h.reading = false
  h.readStop?.()
  // Stopped twice with nothing set in between: the first stop's value is the one to restore.
  const current = (socket as { timeout?: number }).timeout ?? 0
  if (!(timeouts.has(socket) && current === 0)) timeouts.set(socket, current)
  // The keep-alive timer must not destroy the socket while it is on its way.
  socket.setTimeout(0)
  return true
}

/**
 * Undoes `stopReading`: the connection goes on here (and the drain closes it the usual way), with the
 * timeout Node had set on it. A no-op on a socket `stopReading` did not stop. Reading restarts unless
 * Node itself paused the socket (pipelined responses waiting): Node resumes it then.
 */
export function resumeReading (socket: net.Socket): void {
  const s = socket as HttpSocket
  const timeout = timeouts.get(socket)
  if (timeout === undefined) return
  timeouts.delete(socket)
  const h = s._handle
  if (h == null || s.destroyed) return
  socket.setTimeout(timeout)
  if (s._paused === true) return
  h.reading = true
  h.readStart?.()
}

/**
 * True when bytes of a request line, headers or body that the parser has not completed were read
 * (`parser.finish()` reports an error exactly then, and changes nothing: llhttp's finish only reads
 * its state, safe to call between two reads as often as needed).
 */
export function partialRequest (socket: net.Socket): boolean {
  const parser = (socket as HttpSocket).parser
  return typeof parser?.finish === 'function' && parser.finish() instanceof Error
}

/**
 * True when the parser is between two requests and nothing is pending on the socket: no response in
 * flight or queued (pipelining), no response bytes still buffered, parser not paused, and no partial
 * request line, headers or body read (`parser.finish()` reports an error exactly then, and changes
 * nothing). Call it after `stopReading`.
 */
export function betweenRequests (socket: net.Socket): boolean {
  const s = socket as HttpSocket
  if (!transferable(socket) || s._httpMessage || s._paused === true || socket.writableLength !== 0 || socket.writableEnded || socket.readableEnded) return false
  return !partialRequest(socket)
}

/**
 * A connection just received from the old process: stop the read Node started when it made the socket
 * (no byte has been read yet: the handle's reads begin in the next poll phase), so the successor
 * reads nothing of it until it is told the connection is its own. False when this Node cannot.
 */
export function holdReading (socket: net.Socket): boolean {
  const h = (socket as HttpSocket)._handle
  if (h == null || typeof h.readStop !== 'function' || typeof h.readStart !== 'function') return false
  h.reading = false
  h.readStop()
  return true
}

/** Undoes `holdReading` once the connection is this process's own (its server got it): reading starts. */
export function releaseReading (socket: net.Socket): void {
  const s = socket as HttpSocket
  const h = s._handle
  if (h == null || s.destroyed || h.reading === true || s._paused === true) return
  h.reading = true
  h.readStart?.()
}
