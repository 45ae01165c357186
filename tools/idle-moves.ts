// Runs in a measuring process (tools/transfer-10k.ts, and scenario `moves` of bench/run.js): opens N
// idle HTTP/1.1 keep-alive connections (each answered one request) to the Fastify app of
// test/fixtures/transfer-app.ts, reboots it R times in a row (each reboot from the successor of the one
// before, once its old process exited), and returns for each reboot how long the old process took to
// hand them all to the successor (its drain: from its 'draining' state to its 'drained' report), how
// many it handed over, kept or destroyed at the deadline, and how many the clients saw closed.
// Loopback only; every process it starts is killed by pid at the end. The open-file limit
// (`ulimit -n`) must allow N sockets in this process and in the app.
import { spawn } from 'node:child_process'
import * as net from 'node:net'
import * as path from 'node:path'
import * as readline from 'node:readline'

type Line = Record<string, unknown> & { event?: string, pid?: number, other?: number, step?: string, state?: string, at: number }

/** One reboot's move of the idle connections. */
export interface IdleMove {
  /** The old process. */
  pid: number
  /** From its 'draining' state to its 'drained' report, ms. */
  drainMs: number
  /** Connections handed to the successor. */
  transferred: number
  /** Connections the old process kept (and drained itself), by reason. */
  kept: Record<string, number>
  /** Connections destroyed at the drain's deadline. */
  forced: number
  /** Connections the clients saw closed during this reboot. */
  closed: number
}

export interface IdleMovesResult {
  connections: number
  /** Time to open them all, ms. */
  openMs: number
  reboots: IdleMove[]
  /** Of `sampled` connections, those answered by the last successor on the same connection afterwards. */
  sampled: number
  answeredBySuccessor: number
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Opens `n` idle keep-alive connections and reboots the app `reboots` times in a row. `drainTimeoutMs`:
 * the app's drain deadline (the plugin's `timeout`); `onPid`: called with every pid the app reports.
 */
export async function idleMoves (n: number, reboots: number, { drainTimeoutMs = 30_000, log = () => {}, onPid = () => {} }: { drainTimeoutMs?: number, log?: (line: string) => void, onPid?: (pid: number) => void } = {}): Promise<IdleMovesResult> {
  const app = spawn(process.execPath, [...(process.env.APP_NODE_ARGS ?? '').split(' ').filter(Boolean), path.join(__dirname, '..', 'test', 'fixtures', 'transfer-app.js')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, CONNECTION_EVENTS: 'false', TIMEOUT: String(drainTimeoutMs) }
  })
  const pids = new Set<number>([app.pid ?? 0])
  onPid(app.pid ?? 0)
  const lines: Line[] = []
  const waiters: Array<{ match: (e: Line) => boolean, resolve: (e: Line) => void }> = []
  readline.createInterface({ input: app.stdout }).on('line', (text) => {
    let e: Line
    try { e = JSON.parse(text) as Line } catch { return }
    e.at = performance.now()
    lines.push(e)
    for (const p of [e.pid, e.other]) if (typeof p === 'number' && !pids.has(p)) { pids.add(p); onPid(p) }
    for (const w of [...waiters]) {
      if (w.match(e)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(e) }
    }
  })
  const waitFor = (match: (e: Line) => boolean, what: string, timeoutMs = 60_000): Promise<Line> => {
    const seen = lines.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error(`idle moves: no ${what} within ${timeoutMs} ms`)) }, timeoutMs)
      waiters.push({ match, resolve: (e) => { clearTimeout(t); resolve(e) } })
    })
  }
  const sockets: net.Socket[] = []
  try {
    const listening = await waitFor((e) => e.event === 'listening', 'listening')
    const port = (listening.ports as { fastify: number }).fastify
    const opened = performance.now()
    for (let i = 0; i < n; i += 200) {
      await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => { s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n') })
        s.once('data', () => { resolve() })
        s.on('error', reject)
        sockets.push(s)
      })))
    }
    const openMs = Math.round(performance.now() - opened)
    let closed = 0
    for (const s of sockets) s.on('close', () => { closed++ })
    log(`${n} idle keep-alive connections open (${openMs} ms)`)
    const moves: IdleMove[] = []
    let from = listening.pid as number
    for (let r = 1; r <= reboots; r++) {
      const closedBefore = closed
      const old = from
      process.kill(old, 'SIGUSR2')
      const ready = await waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === old, `successor of ${old} ready`)
      const draining = await waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === old, `drain of ${old}`)
      const drained = await waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === old, `drained report of ${old}`, drainTimeoutMs + 30_000)
      const apps = drained.apps as Array<{ name: string, transferred: number, kept: Record<string, number>, forced: number }>
      const fastify = apps.find((a) => a.name === 'fastify')
      const move: IdleMove = { pid: old, drainMs: Math.round(drained.at - draining.at), transferred: fastify?.transferred ?? 0, kept: fastify?.kept ?? {}, forced: fastify?.forced ?? 0, closed: closed - closedBefore }
      moves.push(move)
      log(`reboot ${r}, old process ${old}: drained in ${move.drainMs} ms after its drain started; transferred ${move.transferred}, kept ${JSON.stringify(move.kept)}, forced ${move.forced}; connections closed by the server: ${move.closed}`)
      from = ready.other as number
      while (alive(old)) await new Promise((resolve) => { setTimeout(resolve, 50) })
    }
    let answered = 0
    const sample = sockets.filter((s) => !s.destroyed).slice(0, 500)
    await Promise.all(sample.map((s) => new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 10_000)
      s.once('data', (d: Buffer) => { if (d.toString().includes(`x-pid: ${String(from)}`)) answered++; clearTimeout(t); resolve() })
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    })))
    return { connections: n, openMs, reboots: moves, sampled: sample.length, answeredBySuccessor: answered }
  } finally {
    for (const s of sockets) s.destroy()
    for (const p of pids) { try { process.kill(p, 'SIGKILL') } catch {} }
  }
}
