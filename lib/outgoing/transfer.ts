// Runs in the old process of a reboot: hands an idle HTTP/1.1 keep-alive connection to the successor
// with nothing lost or doubled: stop reading first (new bytes stay in the kernel buffer, which travels
// with the fd), check that the parser is between two requests and nothing is queued or unsent, then
// send the socket over IPC and close this process's copy; anything unsure resumes reading here.
// The socket primitives are in handoff/socket.ts.
import type * as net from 'node:net'
import { betweenRequests, resumeReading, stopReading, transferable, type HandOver, type HttpSocket, type KeptReason } from '../handoff/socket'

/** Sends a socket accepted on the listener `address` to the successor; resolves with whether it is the successor's now (false: the successor takes no more). */
export type SendSocket = (address: string, socket: net.Socket) => Promise<boolean>

/**
 * How many connections are stopped and on their way at once. The successor takes one handle at a time
 * (outgoing/handover.ts), so a larger batch only makes each stopped connection wait longer for its
 * place (measured with tools/transfer-latency.ts, 3,000 connections: 64 gave 27-40 ms of stopped
 * time per connection on average, 4 gave about 2 ms, for the same total time).
 */
const TRANSFER_BATCH = 4

/** At most this many ms of the drain's timeout are kept for the connections a transfer leaves here (see transferWindow). */
export const TRANSFER_RESERVE_MAX_MS = 5_000

/**
 * Ms from the drain's start during which connections move (the rest of `timeout` is the reserve: a
 * quarter of it, at most TRANSFER_RESERVE_MAX_MS). A transfer still running then stops: the
 * connections still waiting for their turn drain here within the deadline (a request answered with
 * `Connection: close`, an idle connection closed after `idleGrace`) instead of waiting until the
 * deadline destroys them.
 */
export function transferWindow (timeout: number): number {
  return timeout - Math.min(TRANSFER_RESERVE_MAX_MS, Math.floor(timeout / 4))
}

/**
 * The transfer of one reboot: `(address)` is the hand-over for the connections of the listener
 * `address`; `stop()` ends it (see handOverWith).
 */
export interface Transfer {
  (address: string): HandOver
  /** Stops the transfer: every connection still waiting for its turn stays here at once. Idempotent. */
  stop: () => void
  /** Whether the transfer stopped (`stop()`, or a send that failed). */
  readonly stopped: boolean
  /** Connections on their way or waiting for their turn now. */
  readonly pending: number
}

/**
 * The hand-over of one connection: wait for a place in the batch (the connection reads and is served
 * here meanwhile, so its requests do not wait), stop reading, let Node finish its own bookkeeping of
 * the last response (one turn of the event loop), check, send, then close this process's copy of the
 * fd (the successor holds its own: the client sees no FIN). A connection whose request came in while
 * it waited is 'busy': it reads on and waits for a turn again once its response is done. A connection
 * that stopped reading after a response (`stopped`) goes ahead of those waiting while they read. Sends
 * run through `send`, at most `batch` at a time over every listener.
 *
 * A send that fails means the successor takes no more (SendSocket's contract: ConnectionSender stops
 * for good), and `stop()` ends the transfer from here: then every connection waiting for its turn is
 * let go at once, in the same turn of the event loop, reading again if it had stopped ('send-failed':
 * it drains here, its next request answered with `Connection: close`). Let go one batch at a time
 * instead, as the sends would have gone, thousands of connections would wait thousands of turns of a
 * loaded event loop, some past the drain's deadline.
 */
export function handOverWith (send: SendSocket, batch = TRANSFER_BATCH): Transfer {
  let active = 0
  let stopped = false
  const waiting: Array<() => void> = []
  const turn = (first: boolean): Promise<void> => new Promise<void>((resolve) => {
    const go = (): void => { active++; resolve() }
    if (active < batch || stopped) go()
    else if (first) waiting.unshift(go)
    else waiting.push(go)
  })
  const done = (): void => {
    active--
    waiting.shift()?.()
  }
  const stop = (): void => {
    if (stopped) return
    stopped = true
    for (const go of waiting.splice(0)) go()
  }
  /** The transfer is over: the connection stays here, reading again (a response in flight: 'busy', it comes back once done). */
  const stays = (socket: net.Socket): 'busy' | 'send-failed' => {
    if (busy(socket)) return 'busy'
    resumeReading(socket)
    return 'send-failed'
  }
  const transfer = (address: string): HandOver => async (socket, wasStopped = false) => {
    if (!transferable(socket)) {
      resumeReading(socket)
      return 'unsupported'
    }
    if (stopped) return stays(socket)
    await turn(wasStopped)
    try {
      if (stopped) return stays(socket)
      if (busy(socket) || !stopReading(socket)) return busy(socket) ? 'busy' : 'unsupported'
      await new Promise<void>((resolve) => { setImmediate(resolve) })
      if (busy(socket)) {
        resumeReading(socket)
        return 'busy'
      }
      const outcome = await moveOne(socket, (s) => send(address, s))
      if (outcome === 'send-failed') stop()
      return outcome
    } finally {
      done()
    }
  }
  return Object.defineProperties(transfer, { stop: { value: stop }, stopped: { get: () => stopped }, pending: { get: () => active + waiting.length } }) as Transfer
}

/** A response is in flight on the connection (a request came in while it waited for its turn). */
function busy (socket: net.Socket): boolean {
  return (socket as HttpSocket)._httpMessage != null
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
