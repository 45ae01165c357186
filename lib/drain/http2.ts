// Runs in every process that shuts down (the old process of a reboot too): the HTTP/2 sessions of one
// server (h2c, or TLS with ALPN h2), and their drain: two GOAWAY frames as RFC 9113 section 6.8
// recommends, open streams run to completion, a session closes once its last stream has ended.
import type * as http2 from 'node:http2'
import type * as net from 'node:net'
import { EmptyWaiters, type ConnectionSet } from './connections'
import type { ProcessSeam } from '../os'

/** The largest stream id: the first GOAWAY carries it ("stop opening streams", RFC 9113 section 6.8). */
export const LAST_STREAM_ID_MAX = 2 ** 31 - 1

/**
 * The longest wait, in ms, between the first GOAWAY and the final one. The final GOAWAY goes out one
 * round trip after the first: when the client answers the PING sent along with the first GOAWAY, or
 * after this many ms if it does not answer (Node's own http2 client stops reading an idle session as
 * soon as it receives a GOAWAY, so it never answers).
 */
export const FINAL_GOAWAY_MAX_DELAY = 250

/** NGHTTP2_NO_ERROR: the code of both GOAWAY frames of a graceful drain. */
const NO_ERROR = 0
/** NGHTTP2_CANCEL: the RST_STREAM code of a stream cut at the deadline. */
const CANCEL = 8

/** What the drain of the HTTP/2 sessions of one or more servers did. */
export interface Http2DrainCounts {
  sessions: {
    /** Sessions open during the drain that closed on their own before the deadline. */
    drained: number
    /** Sessions destroyed at the deadline. */
    forced: number
  }
  streams: {
    /** Streams open during the drain (already open at its start, or accepted before the final GOAWAY) that ended before the deadline. */
    drained: number
    /** Streams still open on a session destroyed at the deadline (their request was cut or never answered). */
    forced: number
  }
}

export function noHttp2 (): Http2DrainCounts {
  return { sessions: { drained: 0, forced: 0 }, streams: { drained: 0, forced: 0 } }
}

export function addHttp2 (into: Http2DrainCounts, more: Http2DrainCounts): void {
  into.sessions.drained += more.sessions.drained
  into.sessions.forced += more.sessions.forced
  into.streams.drained += more.streams.drained
  into.streams.forced += more.streams.forced
}

interface Session {
  readonly session: http2.ServerHttp2Session
  /** Streams open now. */
  readonly open: Set<http2.ServerHttp2Stream>
  /** Cancels the wait for the final GOAWAY. */
  cancelFinal: (() => void) | undefined
}

/**
 * Tracks the HTTP/2 sessions of one server (its `'session'` event) from the moment it is
 * constructed; on a plain http(s) server it simply never sees one. Once `drain()` is called, each
 * session (and each one that arrives afterwards) is told GOAWAY twice:
 * 1. GOAWAY with last-stream-id 2^31-1 and a PING: clients stop opening streams. (Node's http2,
 *    nghttp2, stops accepting new streams as soon as this frame is sent: a stream that crosses it
 *    is not processed.)
 * 2. one round trip later (the PING's answer, at most `FINAL_GOAWAY_MAX_DELAY` ms), `session.close()`:
 *    the final GOAWAY, with the id of the last stream actually processed. Every stream above it was
 *    not processed, and the client sees it refused (REFUSED_STREAM): safe to retry.
 * Open streams run to completion; a session closes when its last stream ends, at once if it has none.
 *
 * `onSession` receives the socket each session runs on, as soon as the session exists, so the
 * HTTP/1.1 tracker can leave that socket alone.
 */
export class Http2Sessions implements ConnectionSet {
  private readonly sessions = new Map<http2.ServerHttp2Session, Session>()
  private readonly seam: ProcessSeam
  private readonly untrack: () => void
  private draining = false
  /** Set at the deadline: sessions destroyed from now on are forced, not drained. */
  private forcing = false
  private readonly empty = new EmptyWaiters()
  readonly counts: Http2DrainCounts = noHttp2()

  constructor (server: net.Server, seam: ProcessSeam, onSession: (socket: net.Socket) => void) {
    this.seam = seam
    const listener = (session: http2.ServerHttp2Session): void => {
      const socket = sessionSocket(session)
      if (socket !== undefined) onSession(socket)
      this.add(session)
    }
    server.on('session', listener)
    this.untrack = () => { server.removeListener('session', listener) }
  }

  /** Sessions open now. */
  get size (): number { return this.sessions.size }

  /** Streams open now, over every session. */
  get streams (): number {
    let n = 0
    for (const s of this.sessions.values()) n += s.open.size
    return n
  }

  drain (): void {
    if (this.draining) return
    this.draining = true
    for (const s of this.sessions.values()) this.goaway(s)
  }

  /**
   * Calls the drain off (the old process of a reboot serves again): sessions that arrive from now on
   * are not told GOAWAY; a session told already closes once its streams end (GOAWAY cannot be taken back).
   */
  resume (): void {
    this.draining = false
    this.forcing = false
  }

  whenEmpty (): Promise<void> {
    return this.empty.wait(this.sessions.size === 0)
  }

  destroyAll (): number {
    this.forcing = true
    const n = this.sessions.size
    for (const s of [...this.sessions.values()]) {
      this.counts.sessions.forced++
      this.counts.streams.forced += s.open.size
      this.forget(s)
      // Each open stream is reset with CANCEL first (close() sends RST_STREAM on the next turn of the
      // event loop); a session destroyed at once would only end the connection under them.
      for (const stream of s.open) {
        try { stream.close(CANCEL) } catch {}
      }
      s.open.clear()
      this.seam.timer(0, () => { s.session.destroy() })
    }
    return n
  }

  /** Stops tracking: removes the listener this object added to the server. */
  detach (): void { this.untrack() }

  private add (session: http2.ServerHttp2Session): void {
    const s: Session = { session, open: new Set(), cancelFinal: undefined }
    this.sessions.set(session, s)
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      s.open.add(stream)
      stream.once('close', () => {
        if (!s.open.delete(stream)) return
        if (this.draining) this.counts.streams.drained++
      })
    })
    session.once('close', () => {
      if (!this.sessions.has(session)) return
      if (this.draining && !this.forcing) this.counts.sessions.drained++
      this.forget(s)
    })
    // A session accepted just before the listener closed: tell it at once.
    if (this.draining) this.goaway(s)
  }

  /** The first GOAWAY and a PING now; the final GOAWAY when the PING is answered, or after the delay. */
  private goaway (s: Session): void {
    const session = s.session
    if (session.closed || session.destroyed) return
    try {
      session.goaway(NO_ERROR, LAST_STREAM_ID_MAX)
    } catch {
      return
    }
    let done = false
    const final = (): void => {
      if (done) return
      done = true
      s.cancelFinal?.()
      s.cancelFinal = undefined
      // close(): the final GOAWAY with nghttp2's last processed stream id; the session is destroyed
      // (its socket ended) once no stream is open, at once if none is.
      if (!session.closed && !session.destroyed) session.close()
    }
    s.cancelFinal = this.seam.timer(FINAL_GOAWAY_MAX_DELAY, final)
    try {
      // false: too many PINGs unanswered already; the timer sends the final GOAWAY.
      session.ping(() => { final() })
    } catch {}
  }

  private forget (s: Session): void {
    if (!this.sessions.delete(s.session)) return
    s.cancelFinal?.()
    s.cancelFinal = undefined
    if (this.sessions.size === 0) this.empty.wake()
  }
}

/**
 * The socket an HTTP/2 session runs on: the accepted TCP socket (h2c) or the TLSSocket (TLS).
 * `session.socket` is a Proxy that forwards every method, bound, to that socket; EventEmitter
 * methods return `this`, so a no-op `removeListener` through the proxy returns the socket itself.
 */
function sessionSocket (session: http2.ServerHttp2Session): net.Socket | undefined {
  try {
    const socket: unknown = session.socket.removeListener('graceful-reboot:none', noop)
    return typeof socket === 'object' && socket !== null && socket !== session.socket ? socket as net.Socket : undefined
  } catch {
    return undefined
  }
}

function noop (): void {}
