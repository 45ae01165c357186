// Runs in the old process of a reboot: hands an idle HTTP/1.1 keep-alive connection to the successor
// with nothing lost or doubled: stop reading first (new bytes stay in the kernel buffer, which travels
// with the fd), check that the parser is between two requests and nothing is queued or unsent, then
// send the socket over IPC and close this process's copy; anything unsure resumes reading here.
// It relies on Node internals (the socket's handle and parser), each use feature-detected.
import type * as net from 'node:net'

/** Moves a connection to the successor; resolves with true once it is on its way (gone from here), or why it stays. */
export type HandOver = (socket: net.Socket) => Promise<true | KeptReason>

/** Why a connection was drained here instead of handed over. */
export type KeptReason = 'unsupported' | 'mid-request' | 'send-failed'

/** Sends a socket accepted on the listener `address` to the successor; resolves with whether it was written. */
export type SendSocket = (address: string, socket: net.Socket) => Promise<boolean>

interface Handle {
  reading?: boolean
  readStop?: () => number
  readStart?: () => number
}

type HttpSocket = net.Socket & {
  _handle?: Handle | null
  _httpMessage?: unknown
  _paused?: boolean
  parser?: { finish?: () => unknown } | null
  server?: (net.Server & { keepAliveTimeout?: number }) | null | undefined
}

/** Whether this Node has what the hand-over needs on this socket (a plain TCP handle and an HTTP parser). */
export function transferable (socket: net.Socket): boolean {
  const s = socket as HttpSocket
  const h = s._handle
  return h != null && typeof h.readStop === 'function' && typeof h.readStart === 'function' &&
    typeof s.parser?.finish === 'function' && !s.destroyed
}

/** Stops reading from the socket (bytes wait in the kernel); false when this Node cannot. */
export function stopReading (socket: net.Socket): boolean {
  if (!transferable(socket)) return false
  const h = (socket as HttpSocket)._handle as Handle
  // Node keeps this flag in step with the handle: a stale true makes a later resume() a no-op.
  h.reading = false
  h.readStop?.()
  // The keep-alive timer must not destroy the socket while it is on its way.
  socket.setTimeout(0)
  return true
}

/** Undoes `stopReading`: the connection goes on here (and the drain closes it the usual way). */
export function resumeReading (socket: net.Socket): void {
  const s = socket as HttpSocket
  const h = s._handle
  if (h == null || s.destroyed) return
  h.reading = true
  h.readStart?.()
  const keepAlive = s.server?.keepAliveTimeout
  if (typeof keepAlive === 'number' && keepAlive > 0) socket.setTimeout(keepAlive)
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
  return !(s.parser?.finish?.() instanceof Error)
}

/** How many connections are on their way at once: 10,000 idle connections move in batches, not in one turn of the event loop. */
export const TRANSFER_BATCH = 64

/**
 * The hand-over of one connection: stop reading, wait for a place in the batch and let Node finish its
 * own bookkeeping of the last response (at least one turn of the event loop), check, send, then close
 * this process's copy of the fd (the successor holds its own: the client sees no FIN). Sends run
 * through `send`, at most `batch` at a time over every listener; a waiting connection's requests wait
 * in the kernel. Returns the hand-over for the connections of the listener named `address`.
 */
export function handOverWith (send: SendSocket, batch = TRANSFER_BATCH): (address: string) => HandOver {
  let active = 0
  const waiting: Array<() => void> = []
  const turn = (): Promise<void> => new Promise<void>((resolve) => {
    const go = (): void => { active++; setImmediate(resolve) }
    if (active < batch) go()
    else waiting.push(go)
  })
  const done = (): void => {
    active--
    waiting.shift()?.()
  }
  return (address) => async (socket) => {
    if (!stopReading(socket)) return 'unsupported'
    await turn()
    try {
      return await moveOne(socket, (s) => send(address, s))
    } finally {
      done()
    }
  }
}

/** Checks and sends one stopped connection; resumes it here when it cannot move. */
async function moveOne (socket: net.Socket, send: (socket: net.Socket) => Promise<boolean>): Promise<true | KeptReason> {
  if (!betweenRequests(socket)) {
    resumeReading(socket)
    return 'mid-request'
  }
  // With `server` set, Node marks the server as shared with workers and its close() callback would
  // wait for the successor to close the connection. Node converts a queued handle only once the one
  // before it is acknowledged, so `server` stays hidden until the send is over.
  const s = socket as HttpSocket
  const server = s.server
  s.server = null
  let sent = false
  try {
    sent = await send(socket)
  } catch {}
  if (sent) {
    socket.destroy()
    return true
  }
  s.server = server
  resumeReading(socket)
  return 'send-failed'
}
