// Runs in the load-generating process (benchmark, tests): never in the server.
//
// An open-loop HTTP/1.1 client: `connections` keep-alive connections, each due to send one request
// every `periodMs` (the connections spread evenly over the period), whatever the server does. A
// request's latency counts from the moment it was due (its intended send time), not from the moment
// it went out: a request that could not go out on time because its connection was still waiting for
// the previous answer, or was reconnecting, counts that wait (coordinated omission corrected). The
// time from the actual write is kept beside it (`service`), which is what a closed-loop client sees.
//
// Accounting: every due request is answered or failed once: due = answered + failed (after the run).
// Failures by cause: a connection closed with the request unanswered (`ECONNRESET` or `closed`), a
// refused or failed connect (its code), `timeout` (no answer `requestTimeoutMs` after it was due),
// `status <code>` (not 2xx), `not sent` / `not settled` (still queued / in flight when the run ended). A response with
// `Connection: close` ends the connection; its next request opens a new one (a reconnect). Loopback
// or any host; raw sockets (node:http's agent is too heavy for 10,000 connections at once).
import * as net from 'node:net'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'

export interface OpenLoopOptions {
  port: number
  /** Default 127.0.0.1. */
  host?: string
  /** Default `/`. */
  path?: string
  /** Keep-alive connections, each with at most one request in flight. */
  connections: number
  /** Each connection's request is due every this many ms. Default 1000. */
  periodMs?: number
  /** Hard bound: no request is due later than this many ms after the sending started. */
  durationMs: number
  /** A request without an answer this long after it was due fails with cause `timeout`. Default 5000. */
  requestTimeoutMs?: number
  /** Connects in flight at once while the connections open. Default 250. */
  openBatch?: number
}

/** Latency figures over a set of answered requests, ms. All 0 when there is none. */
export interface LatencySummary { count: number, p50: number, p99: number, max: number }

/** What happened to the requests due in [from, to) (ms since the sending started). */
export interface OpenLoopWindow {
  from: number
  to: number
  /** Requests due in the window. */
  due: number
  answered: number
  failed: number
  causes: Record<string, number>
  /** From the intended send time (coordinated omission corrected). */
  latency: LatencySummary
  /** From the actual write (what a closed-loop client would report). */
  service: LatencySummary
  /** The client's own event-loop delay over the window, max (ms): its lateness is counted in `latency`. */
  clientLagMaxMs: number
}

export interface OpenLoopRun {
  /** Resolves once every connection is open (the sending starts then); rejects when one cannot open. */
  ready: Promise<void>
  /** Ms since the sending started (negative before it). */
  now: () => number
  /** Resolves once the last request is due (`durationMs` after the sending started), or at stop(). */
  scheduled: Promise<void>
  /** Stops scheduling requests; resolves once every request due settled (bounded by `requestTimeoutMs`). */
  stop: () => Promise<void>
  /** Stats of the requests due in [from, to) that settled so far. */
  window: (from: number, to: number) => OpenLoopWindow
  /** Per `bucketMs` bucket of intended send time, from `from` to `to`: p50, p99, max and failures. */
  series: (from: number, to: number, bucketMs: number) => Array<{ t: number, count: number, failed: number, p50: number, p99: number, max: number }>
  /** Connections opened after the first `connections` (after a close or a `Connection: close`). */
  readonly reconnects: number
  /** Requests due so far. */
  readonly due: number
  /** Destroys every connection at once (teardown after a failure). */
  destroy: () => void
}

const DEFAULT_PERIOD_MS = 1000
const DEFAULT_TIMEOUT_MS = 5000
const DEFAULT_OPEN_BATCH = 250
const TICK_MS = 2
const SWEEP_MS = 100

/** Growable column of float64 values. */
class Column {
  data = new Float64Array(1 << 16)
  length = 0
  push (v: number): void {
    if (this.length === this.data.length) {
      const next = new Float64Array(this.data.length * 2)
      next.set(this.data)
      this.data = next
    }
    this.data[this.length++] = v
  }
}

/** Exact quantile (nearest rank) of sorted values. */
function rank (sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number
}

function round (n: number): number { return Math.round(n * 100) / 100 }

/** p50, p99 and max of `values` (not modified). */
export function summarize (values: Float64Array): LatencySummary {
  const s = Float64Array.from(values).sort()
  return { count: s.length, p50: round(rank(s, 0.5)), p99: round(rank(s, 0.99)), max: round(s.length === 0 ? 0 : s[s.length - 1] as number) }
}

interface Pending { due: number, sentAt: number }

/** Runs the open-loop client (see the file's head). */
export function openLoop (opts: OpenLoopOptions): OpenLoopRun {
  const host = opts.host ?? '127.0.0.1'
  const periodMs = opts.periodMs ?? DEFAULT_PERIOD_MS
  const timeoutMs = opts.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS
  const n = opts.connections
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`openLoop: connections must be a positive integer, got ${String(n)}`)
  if (!(periodMs > 0)) throw new RangeError(`openLoop: periodMs must be > 0, got ${String(periodMs)}`)
  if (!(opts.durationMs > 0)) throw new RangeError(`openLoop: durationMs must be > 0, got ${String(opts.durationMs)}`)
  const request = `GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: ${host}\r\n\r\n`
  let start = Infinity
  const now = (): number => performance.now() - start
  // Answered requests: due time, latency from due, latency from write. Failed: due time, cause.
  const okDue = new Column()
  const okLatency = new Column()
  const okService = new Column()
  const failDue = new Column()
  const failCause: string[] = []
  // Client lag: max event-loop delay per SWEEP_MS slot, by slot start.
  const lagAt = new Column()
  const lagMax = new Column()
  let reconnects = 0
  let due = 0
  let stopped = false
  let endScheduling = (): void => {}
  const scheduled = new Promise<void>((resolve) => { endScheduling = resolve })
  let timer: NodeJS.Timeout | undefined
  let sweeper: NodeJS.Timeout | undefined
  const lag = monitorEventLoopDelay({ resolution: 10 })

  const fail = (p: Pending, cause: string): void => { failDue.push(p.due); failCause.push(cause) }

  class Conn {
    socket: net.Socket | undefined
    connected = false
    inFlight: Pending | undefined
    queue: Pending[] = []
    buf = ''
    opened = 0

    open (): void {
      if (this.opened++ > 0) reconnects++
      this.connected = false
      this.buf = ''
      const socket = net.connect(opts.port, host)
      this.socket = socket
      socket.setNoDelay(true)
      socket.setEncoding('latin1')
      socket.once('connect', () => { this.connected = true; this.pump() })
      socket.on('data', (d: string) => { if (this.socket === socket) this.read(d) })
      socket.on('end', () => { socket.end() })
      socket.on('error', (err: NodeJS.ErrnoException) => { if (this.socket === socket) this.lost(err.code ?? err.message) })
      socket.on('close', () => { if (this.socket === socket) this.lost('closed') })
    }

    /** The connection is gone: its request in flight fails; queued ones wait for the next due one to reconnect. */
    lost (cause: string): void {
      const refused = !this.connected
      this.socket = undefined
      this.connected = false
      if (this.inFlight !== undefined) { fail(this.inFlight, cause); this.inFlight = undefined }
      // A connect that failed: what waited for it fails with its cause (an open-loop client does not retry).
      if (refused) for (const p of this.queue.splice(0)) fail(p, cause)
      else this.pump()
    }

    enqueue (p: Pending): void {
      this.queue.push(p)
      this.pump()
    }

    pump (): void {
      if (this.inFlight !== undefined || this.queue.length === 0) return
      if (this.socket === undefined) { this.open(); return }
      if (!this.connected) return
      const p = this.queue.shift() as Pending
      p.sentAt = performance.now() - start
      this.inFlight = p
      this.socket.write(request)
    }

    /** Responses are small and carry a content-length: split on it. */
    read (d: string): void {
      this.buf += d
      for (;;) {
        const end = this.buf.indexOf('\r\n\r\n')
        if (end === -1) return
        const head = this.buf.slice(0, end)
        const total = end + 4 + Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
        if (this.buf.length < total) return
        this.buf = this.buf.slice(total)
        const p = this.inFlight
        this.inFlight = undefined
        if (p !== undefined) {
          const status = Number(head.slice(9, 12))
          if (status >= 200 && status <= 299) {
            const t = performance.now() - start
            okDue.push(p.due)
            okLatency.push(t - p.due)
            okService.push(t - p.sentAt)
          } else {
            fail(p, `status ${status}`)
          }
        }
        if (/\r\nconnection: *close/i.test(head)) {
          const s = this.socket
          this.socket = undefined
          this.connected = false
          s?.end()
        }
        this.pump()
      }
    }

    /** Fails what waited past the timeout; a request in flight that long ends its connection. */
    sweep (t: number): void {
      while (this.queue.length > 0 && t - (this.queue[0] as Pending).due >= timeoutMs) fail(this.queue.shift() as Pending, 'timeout')
      if (this.inFlight !== undefined && t - this.inFlight.due >= timeoutMs) {
        fail(this.inFlight, 'timeout')
        this.inFlight = undefined
        const s = this.socket
        this.socket = undefined
        this.connected = false
        s?.destroy()
        this.pump()
      }
    }

    get settled (): boolean { return this.inFlight === undefined && this.queue.length === 0 }
  }

  const conns: Conn[] = Array.from({ length: n }, () => new Conn())

  const tick = (): void => {
    const t = now()
    const upTo = Math.min(Math.floor(t / periodMs * n) + 1, Math.ceil(opts.durationMs / periodMs * n))
    for (; due < upTo; due++) (conns[due % n] as Conn).enqueue({ due: due * periodMs / n, sentAt: NaN })
    if (due >= Math.ceil(opts.durationMs / periodMs * n)) stopped = true
    if (!stopped) timer = setTimeout(tick, TICK_MS)
    else endScheduling()
  }
  const sweep = (): void => {
    const t = now()
    lagAt.push(t - SWEEP_MS)
    lagMax.push(lag.max / 1e6)
    lag.reset()
    for (const c of conns) c.sweep(t)
  }

  const ready = (async (): Promise<void> => {
    const batch = opts.openBatch ?? DEFAULT_OPEN_BATCH
    for (let i = 0; i < n; i += batch) {
      await Promise.all(conns.slice(i, i + batch).map((c) => new Promise<void>((resolve, reject) => {
        c.open()
        const s = c.socket as net.Socket
        s.once('connect', () => { resolve() })
        s.once('error', (err) => { reject(new Error(`openLoop: connection ${String(conns.indexOf(c))} of ${n} to ${host}:${opts.port} did not open: ${err.message}`)) })
      })))
    }
    start = performance.now()
    lag.enable()
    tick()
    sweeper = setInterval(sweep, SWEEP_MS)
  })()

  const window = (from: number, to: number): OpenLoopWindow => {
    const lat = new Column()
    const svc = new Column()
    for (let i = 0; i < okDue.length; i++) {
      const d = okDue.data[i] as number
      if (d >= from && d < to) { lat.push(okLatency.data[i] as number); svc.push(okService.data[i] as number) }
    }
    const causes: Record<string, number> = {}
    let failed = 0
    for (let i = 0; i < failDue.length; i++) {
      const d = failDue.data[i] as number
      if (d >= from && d < to) { failed++; const c = failCause[i] as string; causes[c] = (causes[c] ?? 0) + 1 }
    }
    let clientLagMaxMs = 0
    for (let i = 0; i < lagAt.length; i++) {
      const a = lagAt.data[i] as number
      if (a + SWEEP_MS > from && a < to) clientLagMaxMs = Math.max(clientLagMaxMs, lagMax.data[i] as number)
    }
    const first = Math.max(0, Math.ceil(from / periodMs * n))
    const last = Math.min(due, Math.ceil(to / periodMs * n))
    return {
      from: round(from),
      to: round(to),
      due: Math.max(0, last - first),
      answered: lat.length,
      failed,
      causes,
      latency: summarize(lat.data.subarray(0, lat.length)),
      service: summarize(svc.data.subarray(0, svc.length)),
      clientLagMaxMs: round(clientLagMaxMs)
    }
  }

  const series = (from: number, to: number, bucketMs: number): Array<{ t: number, count: number, failed: number, p50: number, p99: number, max: number }> => {
    const buckets = Math.max(0, Math.ceil((to - from) / bucketMs))
    const lists: number[][] = Array.from({ length: buckets }, () => [])
    const failed = new Array<number>(buckets).fill(0)
    for (let i = 0; i < okDue.length; i++) {
      const b = Math.floor(((okDue.data[i] as number) - from) / bucketMs)
      if (b >= 0 && b < buckets) (lists[b] as number[]).push(okLatency.data[i] as number)
    }
    for (let i = 0; i < failDue.length; i++) {
      const b = Math.floor(((failDue.data[i] as number) - from) / bucketMs)
      if (b >= 0 && b < buckets) failed[b] = (failed[b] as number) + 1
    }
    return lists.map((xs, b) => ({ t: round(from + b * bucketMs), failed: failed[b] as number, ...summarize(Float64Array.from(xs)) }))
  }

  const stop = async (): Promise<void> => {
    await ready.catch(() => {})
    stopped = true
    clearTimeout(timer)
    endScheduling()
    const end = performance.now() + timeoutMs + 2 * SWEEP_MS
    while (!conns.every((c) => c.settled) && performance.now() < end) await new Promise((resolve) => { setTimeout(resolve, 20) })
    clearInterval(sweeper)
    lag.disable()
    for (const c of conns) { for (const p of c.queue.splice(0)) fail(p, 'not sent'); if (c.inFlight !== undefined) { fail(c.inFlight, 'not settled'); c.inFlight = undefined } }
    destroy()
  }

  const destroy = (): void => {
    stopped = true
    clearTimeout(timer)
    endScheduling()
    clearInterval(sweeper)
    for (const c of conns) { const s = c.socket; c.socket = undefined; s?.destroy() }
  }

  return {
    ready,
    scheduled,
    now,
    stop,
    window,
    series,
    destroy,
    get reconnects () { return reconnects },
    get due () { return due }
  }
}
