// Runs in the load-generating process (tests, demo, benchmark): never in the server.
//
// An accounting HTTP load client built on node:http only. It runs `connections`
// concurrent request loops against exactly one target (the `url`, or the unix
// socket `socketPath` with the url's path) and counts every request exactly once.
//
// Accounting rules (they hold for every finished run):
//   sent      = requests handed to node:http
//   answered  = requests that received a complete response with an ok status
//   failed    = transport failures (reset, refused, timeout, ...) + complete
//               responses with a non-ok status (cause `status <code>`)
//   sent === answered + failed
//   badStatus = the subset of `failed` answered with a non-ok status
//   ok        = answered (kept as its own field for readability of reports)
//   connectionsOpened = TCP connections the client established (a refused
//               connect is not one); with keep-alive clients, those opened
//               after the pool filled are reconnects
//
// Node's http client honours a `Connection: close` response header: the socket
// is not returned to the agent's pool, so the next request opens a new one.

import http from 'node:http'
import https from 'node:https'
import { performance } from 'node:perf_hooks'
import { urlToHttpOptions } from 'node:url'
import { parseArgs } from 'node:util'

export interface LoadOptions {
  /** Target, e.g. `http://127.0.0.1:PORT/path`, or `https:` (with `ca` for a self-signed certificate). */
  url: string
  /** `https:` only: the certificate authority to trust. */
  ca?: string | Buffer
  /** Connect to this unix socket instead of host:port (the url's path and host are still used). */
  socketPath?: string
  /** Number of concurrent request loops (each has at most one request in flight). */
  connections: number
  /**
   * `keep-alive`: one pooled keep-alive agent, at most `connections` sockets.
   * `new-connection`: no socket reuse, every request sends `Connection: close`.
   */
  mode: 'keep-alive' | 'new-connection'
  /** Stop starting new requests after this long (ms). Default 5000. */
  durationMs?: number
  /** Hard cap on requests sent. Default 1_000_000. */
  maxRequests?: number
  /** A request without a complete response by then fails with cause `timeout` (ms). Default 10000. */
  requestTimeoutMs?: number
  /** Width of a `series` bucket (ms); also the gap under which refusals merge into one window. Default 100. */
  bucketMs?: number
  /** Extra request headers. In `new-connection` mode any `Connection` header is replaced by `close`. */
  headers?: Record<string, string>
  /** Which statuses count as answered. Default: 200..299. */
  okStatus?: (status: number) => boolean
  /**
   * Think time: a loop waits this long (ms; a `[min, max]` pair: uniformly at random in it) after a
   * request settled before it sends the next one, and as long before its first. Default 0 (back-to-back).
   */
  thinkMs?: number | readonly [number, number]
  /**
   * `keep-alive` only: each loop gets its own agent holding at most one socket (a client with its own
   * pooled connection), instead of one agent shared by all loops. With think time, a shared agent
   * would serve every loop from a few sockets. Default false.
   */
  agentPerLoop?: boolean
  /**
   * Request `n` (0, 1, ...) is sent with `?id=n` appended to the url's query, and its answer must say so:
   * `check(n, body)` (the whole body, read) false counts it as failed with cause `wrong response` (an
   * answer to another request, a second one, a mangled one). Default: no id, the body is not read.
   */
  check?: (id: number, body: string) => boolean
}

export interface LoadResult {
  /** Requests handed to node:http. While running, `sent - answered - failed` are in flight. */
  sent: number
  /** Complete responses with an ok status. */
  answered: number
  /** Transport failures plus complete responses with a non-ok status. */
  failed: number
  /** Same as `answered`: complete responses with an ok status. */
  ok: number
  /** Subset of `failed`: complete responses with a non-ok status (cause `status <code>`). */
  badStatus: number
  /**
   * Failure cause -> count; the counts sum to `failed`. A transport error's `code`
   * when it has one (`ECONNRESET` — also node's "socket hang up" —, `ECONNREFUSED`,
   * `EPIPE`, `ECONNABORTED`, ...), else its message; `timeout` for the client
   * timeout; `aborted` for a response cut off mid-body; `status <code>` for a
   * non-ok status.
   */
  causes: Record<string, number>
  /** Distinct integer values of the `x-pid` response header, in first-seen order (any status). */
  pids: number[]
  /**
   * Over answered requests, in ms from request start to the end of the response body.
   * Percentiles are taken from a log histogram: at most 0.1% above the true value,
   * never above `max` (which is exact). All 0 when nothing was answered.
   */
  latency: { p50: number; p99: number; max: number }
  /** Per bucket since start; `t` = bucket start in ms. Requests are placed by the time they settled. */
  series: Array<{ t: number; ok: number; failed: number }>
  /** Merged intervals (ms since start, request start to its failure) in which ECONNREFUSED happened. */
  refusedWindows: Array<{ start: number; end: number }>
  /** TCP connections the client established (each counted at its `connect`; a refused attempt is not one). */
  connectionsOpened: number
  /** Time since start (ms); once finished, until the last in-flight request settled. */
  durationMs: number
}

export interface LoadControl {
  /** Aborting it is the same as calling `stop()`. */
  signal?: AbortSignal
  /** Called with a snapshot at most every ~250 ms while running. If it throws, the run stops and `result` rejects. */
  onProgress?: (r: LoadResult) => void
}

export interface LoadRun {
  /** Resolves once all loops have ended and every in-flight request has settled (each bounded by `requestTimeoutMs`). */
  result: Promise<LoadResult>
  /** Stop starting new requests; in-flight requests still settle. Idempotent. */
  stop(): void
  /** Current counts (may include requests in flight: `sent >= answered + failed`). */
  snapshot(): LoadResult
}

const DEFAULT_DURATION_MS = 5000
const DEFAULT_MAX_REQUESTS = 1_000_000
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000
const DEFAULT_BUCKET_MS = 100
const PROGRESS_INTERVAL_MS = 250
const REFUSED_BACKOFF_MS = 5

type Outcome =
  | { kind: 'answered' }
  | { kind: 'status'; status: number }
  | { kind: 'transport'; cause: string }

function round3 (n: number): number {
  return Math.round(n * 1000) / 1000
}

function defaultOkStatus (status: number): boolean {
  return status >= 200 && status <= 299
}

function causeOf (err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const code: unknown = (err as { code?: unknown }).code
    if (typeof code === 'string' && code !== '') return code
    if (err instanceof Error) return err.message
  }
  return String(err)
}

// Log-bucketed latency histogram: bucket i holds values in (MIN*G^(i-1), MIN*G^i].
const LAT_MIN_MS = 0.001
const LAT_GROWTH = 1.001
const LAT_LN_GROWTH = Math.log(LAT_GROWTH)
const LAT_BUCKETS = Math.ceil(Math.log(1e8 / LAT_MIN_MS) / LAT_LN_GROWTH) + 1

class LatencyHistogram {
  private readonly counts = new Uint32Array(LAT_BUCKETS)
  private count = 0
  private maxMs = 0

  record (ms: number): void {
    const v = Math.max(ms, LAT_MIN_MS)
    const i = Math.min(LAT_BUCKETS - 1, Math.max(0, Math.ceil(Math.log(v / LAT_MIN_MS) / LAT_LN_GROWTH)))
    this.counts[i] = (this.counts[i] ?? 0) + 1
    this.count++
    if (ms > this.maxMs) this.maxMs = ms
  }

  percentile (p: number): number {
    if (this.count === 0) return 0
    const rank = Math.max(1, Math.ceil(p * this.count))
    let seen = 0
    for (let i = 0; i < LAT_BUCKETS; i++) {
      seen += this.counts[i] ?? 0
      if (seen >= rank) return Math.min(LAT_MIN_MS * LAT_GROWTH ** i, this.maxMs)
    }
    return this.maxMs
  }

  max (): number {
    return this.maxMs
  }
}

interface Config {
  request: https.RequestOptions
  secure: boolean
  check: ((id: number, body: string) => boolean) | undefined
  connections: number
  durationMs: number
  maxRequests: number
  requestTimeoutMs: number
  bucketMs: number
  okStatus: (status: number) => boolean
  thinkMs: readonly [number, number]
  agentPerLoop: boolean
}

function positive (name: string, value: number, integer: boolean, allowZero: boolean): number {
  const bad = !Number.isFinite(value) || (integer && !Number.isInteger(value)) || value < 0 || (!allowZero && value === 0)
  if (bad) throw new RangeError(`runLoad: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}, got ${String(value)}`)
  return value
}

function configure (opts: LoadOptions): Config {
  const url = new URL(opts.url)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError(`runLoad: only http: and https: urls are supported, got ${url.protocol}`)
  if (opts.mode !== 'keep-alive' && opts.mode !== 'new-connection') {
    throw new TypeError(`runLoad: mode must be 'keep-alive' or 'new-connection', got ${String(opts.mode)}`)
  }
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(opts.headers ?? {})) {
    if (opts.mode === 'new-connection' && name.toLowerCase() === 'connection') continue
    headers[name] = value
  }
  if (opts.mode === 'new-connection') headers['connection'] = 'close'

  const request: https.RequestOptions = { ...urlToHttpOptions(url), method: 'GET', headers }
  if (opts.socketPath !== undefined) request.socketPath = opts.socketPath
  if (opts.ca !== undefined) request.ca = opts.ca

  const think = opts.thinkMs ?? 0
  const [thinkMin, thinkMax] = typeof think === 'number' ? [think, think] : think
  positive('thinkMs', thinkMin, false, true)
  positive('thinkMs', thinkMax, false, true)
  if (thinkMax < thinkMin) throw new RangeError(`runLoad: thinkMs must be [min, max] with min <= max, got [${String(thinkMin)}, ${String(thinkMax)}]`)

  return {
    request,
    secure: url.protocol === 'https:',
    check: opts.check,
    connections: positive('connections', opts.connections, true, false),
    durationMs: positive('durationMs', opts.durationMs ?? DEFAULT_DURATION_MS, false, true),
    maxRequests: positive('maxRequests', opts.maxRequests ?? DEFAULT_MAX_REQUESTS, true, true),
    requestTimeoutMs: positive('requestTimeoutMs', opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, false, false),
    bucketMs: positive('bucketMs', opts.bucketMs ?? DEFAULT_BUCKET_MS, false, false),
    okStatus: opts.okStatus ?? defaultOkStatus,
    thinkMs: [thinkMin, thinkMax],
    agentPerLoop: opts.agentPerLoop === true && opts.mode === 'keep-alive'
  }
}

/** All counters of one run; times are ms since `start` (performance.now() based). */
class Accounting {
  sent = 0
  answered = 0
  failed = 0
  badStatus = 0
  connectionsOpened = 0
  readonly causes = new Map<string, number>()
  readonly pids: number[] = []
  private readonly seenPids = new Set<number>()
  private readonly latency = new LatencyHistogram()
  private readonly okBuckets: number[] = []
  private readonly failedBuckets: number[] = []
  private readonly refused: Array<{ start: number; end: number }> = []

  constructor (private readonly start: number, private readonly bucketMs: number) {}

  seePid (header: string | string[] | undefined): void {
    const values = header === undefined ? [] : Array.isArray(header) ? header : header.split(',')
    for (const value of values) {
      const pid = Number(value.trim())
      if (!Number.isInteger(pid) || this.seenPids.has(pid)) continue
      this.seenPids.add(pid)
      this.pids.push(pid)
    }
  }

  record (outcome: Outcome, startedAt: number, endedAt: number): void {
    const bucket = Math.max(0, Math.floor((endedAt - this.start) / this.bucketMs))
    this.growBuckets(bucket + 1)
    if (outcome.kind === 'answered') {
      this.answered++
      this.latency.record(endedAt - startedAt)
      this.okBuckets[bucket] = (this.okBuckets[bucket] ?? 0) + 1
      return
    }
    this.failed++
    this.failedBuckets[bucket] = (this.failedBuckets[bucket] ?? 0) + 1
    const cause = outcome.kind === 'status' ? `status ${outcome.status}` : outcome.cause
    this.causes.set(cause, (this.causes.get(cause) ?? 0) + 1)
    if (outcome.kind === 'status') this.badStatus++
    if (cause === 'ECONNREFUSED') this.addRefused(startedAt - this.start, endedAt - this.start)
  }

  snapshot (now: number): LoadResult {
    const elapsed = Math.max(0, now - this.start)
    this.growBuckets(Math.floor(elapsed / this.bucketMs) + 1)
    return {
      sent: this.sent,
      answered: this.answered,
      failed: this.failed,
      ok: this.answered,
      badStatus: this.badStatus,
      causes: Object.fromEntries(this.causes),
      pids: [...this.pids],
      latency: {
        p50: round3(this.latency.percentile(0.5)),
        p99: round3(this.latency.percentile(0.99)),
        max: round3(this.latency.max())
      },
      series: this.okBuckets.map((ok, i) => ({ t: i * this.bucketMs, ok, failed: this.failedBuckets[i] ?? 0 })),
      refusedWindows: this.refused.map(w => ({ start: round3(w.start), end: round3(w.end) })),
      connectionsOpened: this.connectionsOpened,
      durationMs: round3(elapsed)
    }
  }

  private growBuckets (length: number): void {
    while (this.okBuckets.length < length) {
      this.okBuckets.push(0)
      this.failedBuckets.push(0)
    }
  }

  // Requests settle in end-time order but may have started earlier than the
  // last window: merge backwards while the new interval touches a window.
  private addRefused (start: number, end: number): void {
    const merged = { start: Math.max(0, start), end }
    for (let last = this.refused.at(-1); last !== undefined && merged.start <= last.end + this.bucketMs; last = this.refused.at(-1)) {
      this.refused.pop()
      merged.start = Math.min(merged.start, last.start)
      merged.end = Math.max(merged.end, last.end)
    }
    this.refused.push(merged)
  }
}

/**
 * Start a load run. Throws synchronously on invalid options (bad url, mode or numbers).
 * Each loop starts its next request when the previous one settled; after ECONNREFUSED it
 * first waits ~5 ms. No request is ever retried: a failure is counted and the loop moves on.
 * Loops end on `durationMs`, `maxRequests`, `stop()` or the abort signal.
 */
export function runLoad (opts: LoadOptions, control: LoadControl = {}): LoadRun {
  const cfg = configure(opts)
  const start = performance.now()
  const stats = new Accounting(start, cfg.bucketMs)

  // keep-alive: a pool of at most `connections` sockets (or one per loop), all kept while idle.
  // new-connection: no pooling (and `Connection: close` on every request).
  const agents: http.Agent[] = []
  const newAgent = (sockets: number): http.Agent => {
    const Agent = cfg.secure ? https.Agent : http.Agent
    const agent = opts.mode === 'keep-alive'
      ? new Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets })
      : new Agent({ keepAlive: false })
    // Every socket the agent opens goes through createConnection: count those that connect.
    const create = agent.createConnection.bind(agent)
    agent.createConnection = ((options: unknown, callback: unknown) => {
      const socket = (create as (o: unknown, c: unknown) => ReturnType<http.Agent['createConnection']>)(options, callback)
      socket?.once('connect', () => { stats.connectionsOpened++ })
      return socket
    }) as http.Agent['createConnection']
    agents.push(agent)
    return agent
  }
  const shared = cfg.agentPerLoop ? undefined : newAgent(cfg.connections)
  let stopped = false
  let finishedAt: number | undefined
  let fatal: { error: unknown } | undefined

  const stop = (): void => { stopped = true }
  const { signal, onProgress } = control
  if (signal?.aborted === true) stop()
  signal?.addEventListener('abort', stop, { once: true })

  const snapshot = (): LoadResult => stats.snapshot(finishedAt ?? performance.now())

  const progressTimer = onProgress === undefined
    ? undefined
    : setInterval(() => {
      try {
        onProgress(snapshot())
      } catch (error) {
        fatal ??= { error }
        stop()
      }
    }, PROGRESS_INTERVAL_MS)

  const mayStartAnother = (): boolean =>
    !stopped && stats.sent < cfg.maxRequests && performance.now() - start < cfg.durationMs

  const sendOne = (agent: http.Agent): Promise<Outcome | undefined> => new Promise(resolve => {
    const startedAt = performance.now()
    let req: http.ClientRequest
    const id = stats.sent
    const check = cfg.check
    const path = check === undefined ? cfg.request.path : `${cfg.request.path ?? '/'}${(cfg.request.path ?? '').includes('?') ? '&' : '?'}id=${id}`
    try {
      req = (cfg.secure ? https : http).request({ ...cfg.request, path, agent })
    } catch (error) {
      // Not a transport failure but a request node refuses to build (e.g. an
      // invalid header): every request would fail the same way, so end the run.
      fatal ??= { error }
      stop()
      resolve(undefined)
      return
    }
    stats.sent++

    let settled = false
    let gotResponse = false
    const settle = (outcome: Outcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      stats.record(outcome, startedAt, performance.now())
      resolve(outcome)
    }
    const fail = (err: unknown): void => settle({ kind: 'transport', cause: causeOf(err) })

    const timer = setTimeout(() => {
      settle({ kind: 'transport', cause: 'timeout' })
      req.destroy()
    }, cfg.requestTimeoutMs)

    // These listeners stay attached after settling so late errors are swallowed.
    req.on('error', fail)
    req.on('close', () => {
      if (!gotResponse) settle({ kind: 'transport', cause: 'socket closed' })
    })
    req.on('response', res => {
      gotResponse = true
      stats.seePid(res.headers['x-pid'])
      const status = res.statusCode ?? 0
      let body = ''
      const complete = (): void => settle(!cfg.okStatus(status)
        ? { kind: 'status', status }
        : check !== undefined && !check(id, body) ? { kind: 'transport', cause: 'wrong response' } : { kind: 'answered' })
      if (check !== undefined) res.setEncoding('utf8').on('data', (chunk: string) => { body += chunk })
      res.on('error', fail)
      res.on('end', complete)
      res.on('close', () => {
        if (res.complete) complete()
        else settle({ kind: 'transport', cause: 'aborted' })
      })
      res.resume()
    })
    req.end()
  })

  const [thinkMin, thinkMax] = cfg.thinkMs
  const think = (): Promise<void> | undefined => {
    if (thinkMax === 0 || stopped) return undefined
    return new Promise<void>(resolve => setTimeout(resolve, thinkMin + Math.random() * (thinkMax - thinkMin)))
  }
  const loop = async (): Promise<void> => {
    const agent = shared ?? newAgent(1)
    // With think time, the loops start spread over one think time, not all at once.
    await think()
    while (mayStartAnother()) {
      const outcome = await sendOne(agent)
      if (outcome?.kind === 'transport' && outcome.cause === 'ECONNREFUSED' && !stopped) {
        await new Promise<void>(resolve => setTimeout(resolve, REFUSED_BACKOFF_MS))
      }
      await think()
    }
  }

  const loops: Array<Promise<void>> = []
  for (let i = 0; i < cfg.connections; i++) loops.push(loop())

  const result = Promise.all(loops).then(() => {
    finishedAt = performance.now()
    if (progressTimer !== undefined) clearInterval(progressTimer)
    signal?.removeEventListener('abort', stop)
    for (const agent of agents) agent.destroy()
    if (fatal !== undefined) throw fatal.error
    return stats.snapshot(finishedAt)
  })

  return { result, stop, snapshot }
}

async function cli (argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      'socket-path': { type: 'string' },
      connections: { type: 'string', default: '10' },
      mode: { type: 'string', default: 'keep-alive' },
      duration: { type: 'string', default: String(DEFAULT_DURATION_MS) },
      'max-requests': { type: 'string' },
      timeout: { type: 'string' },
      bucket: { type: 'string' },
      header: { type: 'string', multiple: true },
      think: { type: 'string' },
      'agent-per-loop': { type: 'boolean', default: false },
      progress: { type: 'boolean', default: false }
    }
  })
  if (values.url === undefined) {
    throw new Error('usage: load --url http://127.0.0.1:3000/ [--connections 20] [--mode keep-alive|new-connection] ' +
      '[--duration ms] [--max-requests n] [--timeout ms] [--bucket ms] [--socket-path p] [--header "name: value"]... ' +
      '[--think ms|min,max] [--agent-per-loop] [--progress]')
  }
  const mode = values.mode
  if (mode !== 'keep-alive' && mode !== 'new-connection') throw new Error(`--mode must be keep-alive or new-connection, got ${String(mode)}`)
  const headers: Record<string, string> = {}
  for (const h of values.header ?? []) {
    const colon = h.indexOf(':')
    if (colon <= 0) throw new Error(`--header must look like "name: value", got ${h}`)
    headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim()
  }
  const opts: LoadOptions = { url: values.url, connections: Number(values.connections), mode, durationMs: Number(values.duration), headers }
  if (values['socket-path'] !== undefined) opts.socketPath = values['socket-path']
  if (values['max-requests'] !== undefined) opts.maxRequests = Number(values['max-requests'])
  if (values.timeout !== undefined) opts.requestTimeoutMs = Number(values.timeout)
  if (values.bucket !== undefined) opts.bucketMs = Number(values.bucket)
  if (values.think !== undefined) {
    const [min = 0, max = min] = values.think.split(',').map(Number)
    opts.thinkMs = [min, max]
  }
  if (values['agent-per-loop']) opts.agentPerLoop = true

  const control: LoadControl = {}
  if (values.progress) {
    control.onProgress = r => process.stderr.write(`sent=${r.sent} answered=${r.answered} failed=${r.failed}\n`)
  }
  const run = runLoad(opts, control)
  process.once('SIGINT', run.stop)
  const result = await run.result
  process.stdout.write(JSON.stringify(result, null, 2) + '\n')
}

if (require.main === module) {
  cli(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
