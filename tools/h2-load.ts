// Runs in the load-generating process (tests, benchmark): never in the server.
//
// An HTTP/2 load client on node:http2 that behaves like a well-behaved h2 client across a server's
// graceful shutdown: a session that receives GOAWAY takes no new request (the next one opens a new
// session), and a request the server never processed (REFUSED_STREAM, or a stream never sent) is
// sent again. Every other failure counts; nothing is counted twice:
//   sent = answered + failed   (a request retried and then answered is one answered request)
//   retried = attempts sent again, by cause (not failures)
// A session that cannot connect (ECONNREFUSED while no process listens) fails its requests with
// that cause, as tools/load.ts counts them, and the lane waits ~5 ms before its next request.

import http2 from 'node:http2'

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
 * The code of a stream error. A pending stream cancelled because its session could not connect
 * (ERR_HTTP2_STREAM_CANCEL caused by ECONNREFUSED, ...) is named by that cause: it never reached a
 * server, but no server listened either, and a retry would meet the same.
 */
function streamErrorCode (err: NodeJS.ErrnoException): string {
  const cause = (err as { cause?: { code?: unknown } }).cause
  if (err.code === 'ERR_HTTP2_STREAM_CANCEL' && typeof cause?.code === 'string' && /^E[A-Z]+$/.test(cause.code)) return cause.code
  return err.code ?? err.message
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
    stream.on('error', (err: NodeJS.ErrnoException) => { error = streamErrorCode(err) })
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
  /** Sessions that connected, in total (the first `sessions` included). */
  sessionsOpened: number
  /** The distinct x-pid headers of the answers. */
  pids: number[]
}

export interface H2LoadRun {
  /** Stop starting new requests; those in flight still settle. */
  stop: () => void
  /** Resolves once every lane has stopped and every session is closed. */
  result: Promise<H2LoadResult>
  /** Current counts (requests in flight are in `sent` only). */
  snapshot: () => H2LoadResult
}

/** A request that never reached the server's handler, so sending it again is safe. */
function retryable (f: H2Failure): boolean {
  if (f.rstCode === REFUSED_STREAM) return true
  // request() on a session that received GOAWAY or is gone, or a stream destroyed before it was sent.
  return f.code === 'ERR_HTTP2_GOAWAY_SESSION' || f.code === 'ERR_HTTP2_INVALID_SESSION' || f.code === 'ERR_HTTP2_STREAM_CANCEL'
}

const MAX_ATTEMPTS = 10
const REFUSED_BACKOFF_MS = 5

/**
 * HTTP/2 load: `sessions` sessions, `streams` requests in flight on each. A session that receives a
 * GOAWAY takes no new request: the next one goes on a new session. A request the server did not
 * process is retried (at most 10 times); any other failure counts. sent = answered + failed.
 */
export function runH2Load (o: H2LoadOptions): H2LoadRun {
  const r: H2LoadResult = { sent: 0, answered: 0, failed: 0, causes: {}, retried: {}, sessionsOpened: 0, pids: [] }
  const pids = new Set<number>()
  const all = new Set<http2.ClientHttp2Session>()
  let stopping = false
  const started = Date.now()
  const stopTimer = setTimeout(() => { stopping = true }, o.durationMs)
  const more = (): boolean => !stopping && r.sent < o.maxRequests && Date.now() - started < o.durationMs
  const fail = (cause: string): void => {
    r.failed++
    r.causes[cause] = (r.causes[cause] ?? 0) + 1
  }

  const worker = async (): Promise<void> => {
    let current: http2.ClientHttp2Session | undefined
    const session = (): http2.ClientHttp2Session => {
      if (current !== undefined && !current.closed && !current.destroyed) return current
      const s = http2.connect(o.origin, o.ca === undefined ? {} : { ca: o.ca })
      s.once('connect', () => { r.sessionsOpened++ })
      all.add(s)
      s.on('error', () => {})
      const drop = (): void => { if (current === s) current = undefined }
      s.on('goaway', drop)
      s.on('close', () => { drop(); all.delete(s) })
      current = s
      return s
    }
    /** One request; resolves with the failure's cause, if it failed. */
    const one = async (): Promise<string | undefined> => {
      r.sent++
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        try {
          const a = await h2Get(session(), o.path ?? '/')
          if (a.status === 200) {
            r.answered++
            pids.add(Number(a.headers['x-pid']))
            return undefined
          }
          fail(`status ${a.status}`)
          return `status ${a.status}`
        } catch (err) {
          const f = err as H2Failure
          // A system error (ECONNREFUSED, ECONNRESET, ...) is named alone: the stream's code then only says it was cut.
          const cause = f.rstCode === undefined || /^E[A-Z]+$/.test(f.code) ? f.code : `${f.code} rst ${f.rstCode}`
          if (!retryable(f)) {
            fail(cause)
            return cause
          }
          r.retried[cause] = (r.retried[cause] ?? 0) + 1
        }
      }
      fail(`still refused after ${MAX_ATTEMPTS} attempts`)
      return 'retries'
    }
    const lane = async (): Promise<void> => {
      while (more()) {
        if (await one() === 'ECONNREFUSED' && !stopping) await new Promise((resolve) => { setTimeout(resolve, REFUSED_BACKOFF_MS) })
      }
    }
    await Promise.all(Array.from({ length: o.streams }, lane))
  }

  const snapshot = (): H2LoadResult => ({ ...r, causes: { ...r.causes }, retried: { ...r.retried }, pids: [...pids] })
  const result = Promise.all(Array.from({ length: o.sessions }, worker)).then(() => {
    clearTimeout(stopTimer)
    for (const s of all) s.close()
    return snapshot()
  })
  return { stop: () => { stopping = true }, result, snapshot }
}
