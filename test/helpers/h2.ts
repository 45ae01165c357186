// Runs in the test process: HTTP/2 clients for the tests: one request on a node:http2 session, a
// load client that reconnects after GOAWAY and retries refused streams (both from tools/h2-load.ts),
// and a raw-frame client that opens streams when the test says so (even after a GOAWAY, which
// node:http2 never does).
import { EventEmitter } from 'node:events'
import http2 from 'node:http2'
import net from 'node:net'
import type { ExecutionContext } from 'ava'

// The request and load clients live in tools/h2-load.ts (the benchmark uses them too).
export { REFUSED_STREAM, H2Failure, h2Get, runH2Load, type H2Answer, type H2LoadOptions, type H2LoadResult } from '../../tools/h2-load'

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
