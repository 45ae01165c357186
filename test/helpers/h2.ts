// Runs in the test process: HTTP/2 clients for the tests: one request on a node:http2 session, a
// load client that reconnects after GOAWAY and retries refused streams, and a raw-frame client that
// opens streams when the test says so (even after a GOAWAY, which node:http2 never does).
import { EventEmitter } from 'node:events'
import http2 from 'node:http2'
import net from 'node:net'
import type { ExecutionContext } from 'ava'

/** NGHTTP2_REFUSED_STREAM: the server did not process the stream; safe to retry. */
export const REFUSED_STREAM = http2.constants.NGHTTP2_REFUSED_STREAM

export interface H2Answer {
  status: number
  body: string
  headers: http2.IncomingHttpHeaders
  /** The stream id the request went out on. */
  id: number
}

/** A request's transport failure: the error code and the stream's RST_STREAM code. */
export class H2Failure extends Error {
  readonly code: string
  readonly rstCode: number | undefined
  constructor (code: string, rstCode: number | undefined) {
    super(`http2 request failed: ${code} (rstCode ${String(rstCode)})`)
    this.code = code
    this.rstCode = rstCode
  }
}

/**
 * Sends one request on `session`. `onStream` sees the stream once it is created. Resolves with the
 * complete answer; rejects with an H2Failure when the stream closes without one.
 */
export function h2Get (session: http2.ClientHttp2Session, path: string, onStream?: (stream: http2.ClientHttp2Stream) => void): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream
    try {
      stream = session.request({ ':path': path })
    } catch (err) {
      reject(new H2Failure((err as NodeJS.ErrnoException).code ?? 'request threw', undefined))
      return
    }
    let headers: http2.IncomingHttpHeaders | undefined
    let body = ''
    let error: string | undefined
    let ended = false
    stream.setEncoding('utf8')
    stream.on('response', (h) => { headers = h })
    stream.on('data', (chunk: string) => { body += chunk })
    stream.on('end', () => { ended = true })
    stream.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.message })
    stream.on('close', () => {
      // A stream reset with CANCEL ends without an 'error': only a response with its end counts.
      if (headers !== undefined && ended && error === undefined) {
        resolve({ status: Number(headers[':status']), body, headers, id: stream.id ?? 0 })
      } else {
        reject(new H2Failure(error ?? (headers === undefined ? 'no response' : 'response cut'), stream.rstCode))
      }
    })
    stream.end()
    onStream?.(stream)
  })
}

/** A node:http2 session destroyed in teardown; its session errors are recorded, not thrown. */
export function h2Connect (t: ExecutionContext, origin: string, ca?: Buffer): http2.ClientHttp2Session {
  const session = http2.connect(origin, ca === undefined ? {} : { ca })
  session.on('error', () => {})
  t.teardown(() => { session.destroy() })
  return session
}

/** The GOAWAY frames a client session received, and a promise of its close. */
export interface SessionWatch {
  readonly goaways: Array<{ code: number, lastStreamID: number }>
  /** Resolves with the GOAWAY list once `n` have arrived. */
  whenGoaways: (n: number) => Promise<void>
  readonly closed: Promise<void>
  isClosed: () => boolean
}

export function watchSession (session: http2.ClientHttp2Session): SessionWatch {
  const goaways: SessionWatch['goaways'] = []
  const events = new EventEmitter()
  let isClosed = false
  session.on('goaway', (code: number, lastStreamID: number) => {
    goaways.push({ code, lastStreamID })
    events.emit('goaway')
  })
  const closed = new Promise<void>((resolve) => {
    session.once('close', () => {
      isClosed = true
      resolve()
    })
  })
  return {
    goaways,
    whenGoaways: (n) => new Promise((resolve) => {
      const check = (): void => {
        if (goaways.length < n) return
        events.removeListener('goaway', check)
        resolve()
      }
      events.on('goaway', check)
      check()
    }),
    closed,
    isClosed: () => isClosed
  }
}

export interface H2LoadOptions {
  origin: string
  /** Sessions open at a time (each reconnects after a GOAWAY). */
  sessions: number
  /** Requests in flight per session. */
  streams: number
  path?: string
  ca?: Buffer | undefined
  /** Upper bounds: the load stops by itself after this long or this many requests. */
  durationMs: number
  maxRequests: number
}

export interface H2LoadResult {
  /** Requests started (each retried until answered or failed). */
  sent: number
  answered: number
  failed: number
  /** Failures by cause. */
  causes: Record<string, number>
  /** Attempts retried because the server never processed them (REFUSED_STREAM, or never sent), by cause. */
  retried: Record<string, number>
  /** Sessions opened in total. */
  sessionsOpened: number
  /** The distinct x-pid headers of the answers. */
  pids: number[]
}

/** A request that never reached the server's handler, so sending it again is safe. */
function retryable (f: H2Failure): boolean {
  if (f.rstCode === REFUSED_STREAM) return true
  // request() on a session that received GOAWAY or is gone, or a stream destroyed before it was sent.
  return f.code === 'ERR_HTTP2_GOAWAY_SESSION' || f.code === 'ERR_HTTP2_INVALID_SESSION' || f.code === 'ERR_HTTP2_STREAM_CANCEL'
}

/**
 * HTTP/2 load: `sessions` sessions, `streams` requests in flight on each. A session that receives a
 * GOAWAY takes no new request: the next one goes on a new session. A request the server did not
 * process is retried (at most 10 times); any other failure counts. sent = answered + failed.
 */
export function runH2Load (o: H2LoadOptions): { stop: () => void, result: Promise<H2LoadResult> } {
  const r: H2LoadResult = { sent: 0, answered: 0, failed: 0, causes: {}, retried: {}, sessionsOpened: 0, pids: [] }
  const pids = new Set<number>()
  const all = new Set<http2.ClientHttp2Session>()
  let stopping = false
  const started = Date.now()
  const stopTimer = setTimeout(() => { stopping = true }, o.durationMs)
  const more = (): boolean => !stopping && r.sent < o.maxRequests && Date.now() - started < o.durationMs

  const worker = async (): Promise<void> => {
    let current: http2.ClientHttp2Session | undefined
    const session = (): http2.ClientHttp2Session => {
      if (current !== undefined && !current.closed && !current.destroyed) return current
      const s = http2.connect(o.origin, o.ca === undefined ? {} : { ca: o.ca })
      r.sessionsOpened++
      all.add(s)
      s.on('error', () => {})
      const drop = (): void => { if (current === s) current = undefined }
      s.on('goaway', drop)
      s.on('close', () => { drop(); all.delete(s) })
      current = s
      return s
    }
    const one = async (): Promise<void> => {
      r.sent++
      for (let attempt = 0; attempt < 10; attempt++) {
        try {
          const a = await h2Get(session(), o.path ?? '/')
          if (a.status === 200) {
            r.answered++
            pids.add(Number(a.headers['x-pid']))
          } else {
            r.failed++
            r.causes[`status ${a.status}`] = (r.causes[`status ${a.status}`] ?? 0) + 1
          }
          return
        } catch (err) {
          const f = err as H2Failure
          const cause = f.rstCode === undefined ? f.code : `${f.code} rst ${f.rstCode}`
          if (!retryable(f)) {
            r.failed++
            r.causes[cause] = (r.causes[cause] ?? 0) + 1
            return
          }
          r.retried[cause] = (r.retried[cause] ?? 0) + 1
        }
      }
      r.failed++
      r.causes['still refused after 10 attempts'] = (r.causes['still refused after 10 attempts'] ?? 0) + 1
    }
    const lane = async (): Promise<void> => {
      while (more()) await one()
    }
    await Promise.all(Array.from({ length: o.streams }, lane))
  }

  const result = Promise.all(Array.from({ length: o.sessions }, worker)).then(() => {
    clearTimeout(stopTimer)
    for (const s of all) s.close()
    r.pids = [...pids]
    return r
  })
  return { stop: () => { stopping = true }, result }
}

/** A frame as the raw client reads it. */
export interface Frame { type: number, flags: number, stream: number, payload: Buffer }

export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7 } as const

/**
 * A raw HTTP/2 client over h2c, written frame by frame, so a test can open a stream at a moment
 * node:http2 never would (after a GOAWAY). It answers SETTINGS; PINGs only when the test says so.
 */
export class RawH2Client extends EventEmitter {
  readonly socket: net.Socket
  readonly frames: Frame[] = []
  private buffer = Buffer.alloc(0)

  constructor (t: ExecutionContext, port: number) {
    super()
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.on('error', () => {})
    t.teardown(() => { this.socket.destroy() })
    this.socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(FRAME.SETTINGS, 0, 0)]))
    this.socket.on('data', (chunk: Buffer) => { this.read(chunk) })
  }

  /** Opens stream `id` with a GET of `path` (HEADERS with END_STREAM). */
  request (id: number, path: string): void {
    const block = Buffer.concat([
      Buffer.from([0x82, 0x86]), // :method GET, :scheme http (static table)
      Buffer.from([0x04]), hpackString(path), // :path, literal without indexing
      Buffer.from([0x01]), hpackString('127.0.0.1') // :authority, literal without indexing
    ])
    this.socket.write(frame(FRAME.HEADERS, 0x5, id, block))
  }

  /** Answers a PING. */
  pong (ping: Frame): void {
    this.socket.write(frame(FRAME.PING, 0x1, 0, ping.payload))
  }

  /** Resolves with the first frame (past or future) matching `match`. */
  when (match: (f: Frame) => boolean): Promise<Frame> {
    const seen = this.frames.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve) => {
      const check = (f: Frame): void => {
        if (!match(f)) return
        this.removeListener('frame', check)
        resolve(f)
      }
      this.on('frame', check)
    })
  }

  private read (chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk])
    while (this.buffer.length >= 9) {
      const length = this.buffer.readUIntBE(0, 3)
      if (this.buffer.length < 9 + length) return
      const f: Frame = {
        type: this.buffer[3] as number,
        flags: this.buffer[4] as number,
        stream: this.buffer.readUInt32BE(5) & 0x7fffffff,
        payload: this.buffer.subarray(9, 9 + length)
      }
      this.buffer = this.buffer.subarray(9 + length)
      if (f.type === FRAME.SETTINGS && (f.flags & 0x1) === 0) this.socket.write(frame(FRAME.SETTINGS, 0x1, 0))
      this.frames.push(f)
      this.emit('frame', f)
    }
  }
}

/** The last-stream-id of a GOAWAY frame. */
export function goawayLastStream (f: Frame): number {
  return f.payload.readUInt32BE(0) & 0x7fffffff
}

function frame (type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream, 5)
  return Buffer.concat([head, payload])
}

function hpackString (s: string): Buffer {
  const bytes = Buffer.from(s)
  return Buffer.concat([Buffer.from([bytes.length]), bytes])
}
