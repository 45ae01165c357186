// Runs in a measuring process (`node dist/tools/transfer-latency.js [N...]`, after `npm run build`):
// the latency that moving keep-alive connections adds at a reboot. For each N (default 3000 and
// 10000) it starts the Fastify app of test/fixtures/transfer-app.ts, opens N keep-alive connections
// that each send one request a second (spread evenly over the second), measures every request's
// latency for 5 s with no reboot (steady), then for the 5 s around a SIGUSR2 reboot (1 s before it
// to 4 s after), and prints both side by side with the targets: p99 around the reboot at most twice
// the steady p99 plus 20 ms, and max at most the steady max plus 250 ms. Every request is accounted
// for (sent = answered + failed). Loopback only; every process it starts is killed by pid at the end.
import { spawn } from 'node:child_process'
import * as net from 'node:net'
import * as path from 'node:path'
import * as readline from 'node:readline'

type Line = Record<string, unknown> & { event?: string, pid?: number, other?: number, step?: string, state?: string }

const WINDOW_MS = 5000
const REQUEST = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'

/**
 * One keep-alive connection that sends a request every second and times each answer. When the server
 * closes it (after a response with `Connection: close`, say), the next request opens a new connection
 * (counted in `reconnects`); a request sent and never answered before a close is `failed`.
 */
class Client {
  private buf = ''
  private sentAt: number[] = []
  private socket!: net.Socket
  failed = 0
  reconnects = 0
  constructor (private readonly port: number, private readonly record: (ms: number, at: number) => void) {
    this.connect()
  }

  /** Resolves once the first connection is up. */
  get connected (): Promise<void> {
    return new Promise((resolve, reject) => { this.socket.once('connect', () => { resolve() }); this.socket.once('error', reject) })
  }

  send (): void {
    if (this.socket.destroyed || this.socket.writableEnded) {
      this.reconnects++
      this.connect()
    }
    this.sentAt.push(performance.now())
    this.socket.write(REQUEST)
  }

  destroy (): void { this.socket.destroy() }

  private connect (): void {
    const socket = net.connect(this.port, '127.0.0.1')
    this.socket = socket
    this.buf = ''
    socket.setEncoding('latin1')
    socket.on('data', (d: string) => { this.read(d) })
    socket.on('error', () => {})
    socket.on('end', () => { socket.end() })
    socket.on('close', () => {
      if (this.socket !== socket) return
      this.failed += this.sentAt.length
      this.sentAt = []
    })
  }

  /** Responses are small and have a content-length: split them on it. */
  private read (d: string): void {
    this.buf += d
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const m = /content-length: *(\d+)/i.exec(this.buf.slice(0, end))
      const total = end + 4 + Number(m?.[1] ?? 0)
      if (this.buf.length < total) return
      const closing = /connection: *close/i.test(this.buf.slice(0, end))
      this.buf = this.buf.slice(total)
      const at = this.sentAt.shift()
      const now = performance.now()
      if (at !== undefined) this.record(now - at, now)
      if (closing) this.socket.end()
    }
  }
}

function quantile (xs: number[], q: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number
}

interface Phase { p99: number, max: number, answered: number, failed: number }

interface Moved { transferred: number, kept: Record<string, number>, forced: number, drainMs: number, reconnects: number }

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function run (n: number, reboots: number): Promise<{ steady: Phase, reboot: Phase, moved: Moved, later: Moved[] }> {
  const app = spawn(process.execPath, [...(process.env.APP_NODE_ARGS ?? '').split(' ').filter(Boolean), path.join(__dirname, '..', 'test', 'fixtures', 'transfer-app.js')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, CONNECTION_EVENTS: 'false' } })
  const pids = new Set<number>([app.pid ?? 0])
  const lines: Line[] = []
  const waiters: Array<{ match: (e: Line) => boolean, resolve: (e: Line) => void }> = []
  readline.createInterface({ input: app.stdout }).on('line', (text) => {
    if (!/^{"event":"(handoff|listening|state)"/.test(text)) return
    let e: Line
    try { e = JSON.parse(text) as Line } catch { return }
    e.seen = Date.now()
    lines.push(e)
    for (const p of [e.pid, e.other]) if (typeof p === 'number') pids.add(p)
    for (const w of [...waiters]) if (w.match(e)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(e) }
  })
  const waitFor = (match: (e: Line) => boolean): Promise<Line> => {
    const seen = lines.find(match)
    return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => { waiters.push({ match, resolve }) })
  }
  const samples: Array<[ms: number, at: number]> = []
  const clients: Client[] = []
  let timer: NodeJS.Timeout | undefined
  try {
    const listening = await waitFor((e) => e.event === 'listening')
    const port = (listening.ports as { fastify: number }).fastify
    const old = listening.pid as number
    for (let i = 0; i < n; i += 250) {
      await Promise.all(Array.from({ length: Math.min(250, n - i) }, () => new Promise<void>((resolve, reject) => {
        const c = new Client(port, (ms, at) => { samples.push([ms, at]) })
        c.connected.then(resolve, reject)
        clients.push(c)
      })))
    }
    // Each client sends once a second, the clients spread evenly over the second.
    const start = performance.now()
    let next = 0
    const tick = (): void => {
      const due = Math.floor((performance.now() - start) / 1000 * n)
      for (; next < due; next++) clients[next % n]?.send()
      timer = setTimeout(tick, 5)
    }
    tick()
    const sleep = (ms: number): Promise<void> => new Promise((resolve) => { setTimeout(resolve, ms) })
    await sleep(2000) // warm-up, not counted
    const steadyFrom = performance.now()
    const failedBefore = clients.reduce((s, c) => s + c.failed, 0)
    await sleep(WINDOW_MS)
    const steadyTo = performance.now()
    const failedSteady = clients.reduce((s, c) => s + c.failed, 0) - failedBefore
    const rebootFrom = performance.now()
    await sleep(1000)
    const reconnects = (): number => clients.reduce((s, c) => s + c.reconnects, 0)
    const moved = async (from: number, counts: Promise<Line | undefined>): Promise<Moved> => {
      const draining = await waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === from)
      const drained = await counts
      const apps = (drained?.apps ?? []) as Array<{ name: string, transferred: number, kept: Record<string, number>, forced: number }>
      const fastify = apps.find((a) => a.name === 'fastify')
      return { transferred: fastify?.transferred ?? -1, kept: fastify?.kept ?? {}, forced: fastify?.forced ?? -1, drainMs: Number(drained?.seen) - Number(draining.seen), reconnects: reconnects() }
    }
    const reboot = (from: number): Promise<Line | undefined> => {
      process.kill(from, 'SIGUSR2')
      return Promise.race([waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === from), sleep(40_000).then(() => undefined)])
    }
    const drained = reboot(old)
    await sleep(WINDOW_MS - 1000)
    const rebootTo = performance.now()
    const first = await moved(old, drained)
    // Further reboots, each from the successor of the one before once its old process exited (no latency window).
    const later: Moved[] = []
    let from = old
    for (let r = 2; r <= reboots; r++) {
      const next = (await waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === from)).other as number
      while (alive(from)) await sleep(50)
      from = next
      await sleep(2000)
      const before = reconnects()
      const m = await moved(from, reboot(from))
      later.push({ ...m, reconnects: m.reconnects - before })
    }
    clearTimeout(timer)
    const failedAll = clients.reduce((s, c) => s + c.failed, 0)
    const phase = (from: number, to: number, failed: number): Phase => {
      const xs = samples.filter(([, at]) => at >= from && at < to).map(([ms]) => ms)
      return { p99: quantile(xs, 0.99), max: Math.max(...xs), answered: xs.length, failed }
    }
    return {
      steady: phase(steadyFrom, steadyTo, failedSteady),
      reboot: phase(rebootFrom, rebootTo, failedAll - failedBefore - failedSteady),
      moved: first,
      later
    }
  } finally {
    clearTimeout(timer)
    for (const c of clients) c.destroy()
    for (const p of pids) { try { process.kill(p, 'SIGKILL') } catch {} }
  }
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const reboots = Number(args.find((a) => a.startsWith('--reboots='))?.slice('--reboots='.length) ?? 1)
  const ns = args.filter((a) => !a.startsWith('--')).map(Number)
  const rows: string[] = []
  const more: string[] = []
  for (const n of ns.length > 0 ? ns : [3000, 10000]) {
    const { steady, reboot, moved, later } = await run(n, reboots)
    const row = (r: number, m: Moved): string => `| ${n} | ${r} | ${m.transferred} | ${JSON.stringify(m.kept)} | ${m.forced} | ${m.drainMs} | ${m.reconnects} |`
    more.push(row(1, moved), ...later.map((m, i) => row(i + 2, m)))
    const p99Target = 2 * steady.p99 + 20
    const maxTarget = steady.max + 250
    const f = (x: number): string => x.toFixed(1)
    rows.push(`| ${n} | ${f(steady.p99)} | ${f(reboot.p99)} | ${f(p99Target)} ${reboot.p99 <= p99Target ? 'met' : 'missed'} | ${f(steady.max)} | ${f(reboot.max)} | ${f(maxTarget)} ${reboot.max <= maxTarget ? 'met' : 'missed'} | ${moved.transferred} | ${JSON.stringify(moved.kept)} | ${moved.reconnects} | ${steady.answered + reboot.answered} | ${steady.failed + reboot.failed} |`)
  }
  console.log('| connections | steady p99 (ms) | reboot p99 (ms) | p99 target (2 x steady + 20) | steady max (ms) | reboot max (ms) | max target (steady + 250) | moved | kept | reconnects | answered | failed |')
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) console.log(r)
  console.log('')
  console.log('| connections | reboot | moved | kept | forced | drain (ms) | reconnects |')
  console.log('|---|---|---|---|---|---|---|')
  for (const r of more) console.log(r)
}

main().then(() => { process.exit(0) }, (err: unknown) => { console.error(err); process.exit(1) })
