// Runs in a measuring process (`node dist/tools/workers-bench.js [--restarts N]`, after `npm run
// build`): two workers on this machine, side by side in one run: one process with the plugin, a
// node:cluster primary (round-robin) rolling its workers by fork-then-disconnect, PM2 cluster mode
// (its recommended reload: wait_ready and app.close() on SIGINT), PM2 with the plugin's drain, and
// `graceful-reboot run --workers 2` four ways (one shared accept queue or one per worker, with and
// without rebalancing; `--only key,key` picks contenders). For each it prints the throughput with 32
// keep-alive connections and with a new connection per request (and its ratio to one process), how
// the requests spread over the workers (the busiest one's share: 32 keep-alive connections opened at
// once, new connections, and a mix with 5 % slow requests, whose p99 it prints too), the failed
// requests and reconnects of pooled clients (8 back to back, 20 with think time) over N rolling
// restarts, and the supervisor's (primary's, daemon's) memory. Loopback only; every process it
// starts is killed by pid at the end.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { runLoad } from './load'

const ROOT = path.join(__dirname, '..', '..')
const APP = path.join(__dirname, 'workers-app.js')
const PM2 = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2')
const CLI = path.join(__dirname, '..', 'bin', 'graceful-reboot.js')

interface Running { restart: () => Promise<void>, stop: () => Promise<void>, managerPid: () => number | undefined }
interface Contender { key: string, label: string, start: (port: number) => Promise<Running> }

const pids = new Set<number>()

/** Starts a process whose stdout carries JSON lines (and stderr text); `waitFor` a line or text. */
function proc (command: string, args: string[], env: NodeJS.ProcessEnv): { child: ChildProcess, waitFor: (test: (line: string) => boolean, what: string) => Promise<void>, text: () => string } {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  pids.add(child.pid as number)
  let all = ''
  const waiters = new Set<{ test: (l: string) => boolean, resolve: () => void }>()
  const onLine = (line: string): void => {
    all += line + '\n'
    const pid = /"pid":(\d+)/.exec(line)?.[1]
    if (pid !== undefined) pids.add(Number(pid))
    for (const w of [...waiters]) if (w.test(line)) { waiters.delete(w); w.resolve() }
  }
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', onLine)
  readline.createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', onLine)
  const waitFor = (test: (l: string) => boolean, what: string): Promise<void> => new Promise((resolve, reject) => {
    const t = setTimeout(() => { reject(new Error(`no ${what} within 60 s:\n${all.slice(-2000)}`)) }, 60_000)
    waiters.add({ test, resolve: () => { clearTimeout(t); resolve() } })
  })
  return { child, waitFor, text: () => all }
}

function exited (child: ChildProcess): Promise<void> {
  return child.exitCode !== null ? Promise.resolve() : new Promise((resolve) => { child.once('exit', () => { resolve() }) })
}

function pm2 (args: string[], home: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [PM2, ...args], { env: { ...process.env, PM2_HOME: home, PM2_DISCRETE_MODE: 'true' }, timeout: 120_000 }, (err, stdout, stderr) => {
      try { pids.add(Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8'))) } catch {}
      if (err !== null) reject(new Error(`pm2 ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

function pm2Contender (key: string, label: string, mode: string): Contender {
  return {
    key,
    label,
    async start (port) {
      const home = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-workers-pm2-'))
      const file = path.join(home, 'eco.config.js')
      fs.writeFileSync(file, `module.exports = ${JSON.stringify({ apps: [{ name: key, script: APP, exec_mode: 'cluster', instances: 2, wait_ready: true, listen_timeout: 20_000, kill_timeout: 12_000, env: { PORT: String(port), APP_MODE: mode } }] })}\n`)
      await pm2(['start', file], home)
      for (const line of (await pm2(['jlist'], home)).split('\n')) {
        try { for (const p of JSON.parse(line) as Array<{ pid: number }>) pids.add(p.pid) } catch {}
      }
      return {
        restart: async () => { await pm2(['reload', key], home) },
        stop: async () => {
          await pm2(['kill'], home).catch(() => '')
          fs.rmSync(home, { recursive: true, force: true })
        },
        managerPid: () => { try { return Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8')) } catch { return undefined } }
      }
    }
  }
}

const CONTENDERS: Contender[] = [
  {
    key: 'one',
    label: 'one process + graceful-reboot (reboot: SIGUSR2)',
    async start (port) {
      const p = proc(process.execPath, [APP], { ...process.env, PORT: String(port), APP_MODE: 'plugin' })
      await p.waitFor((l) => l.includes('"listening"'), 'listening')
      let current = p.child.pid as number
      return {
        async restart () {
          const old = current
          const next = p.waitFor((l) => l.includes(`"parent":${old}`), 'successor')
          process.kill(old, 'SIGUSR2')
          await next
          current = Number(/"pid":(\d+)/.exec(p.text().split('\n').find((l) => l.includes(`"parent":${old}`)) ?? '')?.[1])
          await new Promise<void>((resolve) => { const t = setInterval(() => { try { process.kill(old, 0) } catch { clearInterval(t); resolve() } }, 50) })
        },
        stop: async () => { process.kill(current, 'SIGTERM'); await exited(p.child) },
        managerPid: () => undefined
      }
    }
  },
  {
    key: 'cluster',
    label: 'node:cluster, 2 workers (round-robin; roll: fork, then disconnect)',
    async start (port) {
      const p = proc(process.execPath, [path.join(__dirname, 'cluster-primary.js')], { ...process.env, PORT: String(port), WORKERS: '2' })
      await p.waitFor((l) => l.includes('"serving"'), 'serving')
      let rolls = 0
      return {
        async restart () {
          const n = ++rolls
          const done = p.waitFor(() => (p.text().match(/"rolled"/g) ?? []).length >= n, 'rolled')
          process.kill(p.child.pid as number, 'SIGUSR2')
          await done
        },
        stop: async () => { process.kill(p.child.pid as number, 'SIGTERM'); await exited(p.child) },
        managerPid: () => p.child.pid
      }
    }
  },
  pm2Contender('pm2', 'PM2 cluster, 2 instances, pm2 reload (wait_ready + app.close() on SIGINT)', 'plain'),
  pm2Contender('pm2-plugin', "PM2 cluster, 2 instances, pm2 reload + graceful-reboot's drain", 'plugin'),
  supervisorContender('supervisor-shared', 'graceful-reboot run --workers 2 --accept-queues shared (one queue, --rebalance off)', ['--accept-queues', 'shared', '--rebalance', 'off']),
  supervisorContender('supervisor-limit', 'graceful-reboot run --workers 2 --accept-queues shared (one queue, rebalancing)', ['--accept-queues', 'shared']),
  supervisorContender('supervisor-reuseport', 'graceful-reboot run --workers 2 --accept-queues per-worker (--rebalance off)', ['--accept-queues', 'per-worker', '--rebalance', 'off']),
  supervisorContender('supervisor', 'graceful-reboot run --workers 2 (default: per-worker queues where Node has reusePort, rebalancing)', [])
]

function supervisorContender (key: string, label: string, flags: string[]): Contender {
  return {
    key,
    label,
    async start (port) {
      const p = proc(process.execPath, [CLI, 'run', '--workers', '2', ...flags, APP], { ...process.env, PORT: String(port), APP_MODE: 'plugin' })
      await p.waitFor((l) => l.includes('2 workers serving'), 'serving')
      let rolls = 0
      return {
        async restart () {
          const n = ++rolls
          const done = p.waitFor(() => (p.text().match(/every worker replaced/g) ?? []).length >= n, 'rollout')
          process.kill(p.child.pid as number, 'SIGUSR2')
          await done
        },
        stop: async () => { process.kill(p.child.pid as number, 'SIGTERM'); await exited(p.child) },
        managerPid: () => p.child.pid
      }
    }
  }
}

/**
 * `conns` loops for `ms`, opened at once, each one request at a time: requests per second, the busiest
 * worker's share of the answers (by x-pid), and the latencies' p99 (ms). `slow`: this fraction of
 * the requests are slow ones (GET /spin?ms=20: the worker's loop is busy 20 ms).
 */
async function blast (port: number, conns: number, ms: number, keepAlive: boolean, slow = 0): Promise<{ rps: number, busiest: number, failed: number, p99: number, fastP99: number, connections: number, placed: number }> {
  const agent = new http.Agent({ keepAlive, maxSockets: conns })
  const byPid = new Map<string, number>()
  let ok = 0
  let failed = 0
  let connections = 0
  const all: number[] = []
  const fast: number[] = []
  const end = performance.now() + ms
  const one = (): Promise<void> => new Promise((resolve) => {
    const spin = Math.random() < slow
    const began = performance.now()
    const req = http.get({ host: '127.0.0.1', port, path: spin ? '/spin?ms=20' : '/', agent, headers: keepAlive ? {} : { connection: 'close' } }, (res) => {
      res.resume().on('end', () => {
        ok++
        const took = performance.now() - began
        all.push(took)
        if (!spin) fast.push(took)
        const pid = String(res.headers['x-pid'])
        byPid.set(pid, (byPid.get(pid) ?? 0) + 1)
        resolve()
      })
    })
    req.on('socket', (s) => { if (!(s as { counted?: boolean }).counted) { (s as { counted?: boolean }).counted = true; connections++ } })
    req.on('error', () => { failed++; resolve() })
  })
  await Promise.all(Array.from({ length: conns }, async () => { while (performance.now() < end) await one() }))
  // At the end, one request on each pooled connection: the answers per worker are where the pool's connections are.
  const before = new Map(byPid)
  if (keepAlive) await Promise.all(Array.from({ length: conns }, one))
  const last = [...byPid.entries()].map(([pid, n]) => n - (before.get(pid) ?? 0))
  const placed = Math.max(...last) / Math.max(1, last.reduce((a, b) => a + b, 0))
  agent.destroy()
  return { rps: ok / (ms / 1000), busiest: Math.max(...byPid.values()) / Math.max(1, ok), failed, p99: p99(all), fastP99: p99(fast), connections, placed }
}

function p99 (xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] ?? 0
}

function rssMb (pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
    return kb / 1024
  } catch { return undefined }
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => { resolve(port) })
    }).on('error', reject)
  })
}

async function main (): Promise<void> {
  const at = process.argv.indexOf('--restarts')
  const restarts = at === -1 ? 3 : Number(process.argv[at + 1])
  const only = process.argv.indexOf('--only')
  const keys = only === -1 ? undefined : (process.argv[only + 1] ?? '').split(',')
  const rows: string[] = []
  const shares: string[] = []
  let base = 0
  let baseNew = 0
  for (const c of CONTENDERS.filter((x) => keys === undefined || x.key === 'one' || keys.includes(x.key))) {
    const port = await freePort()
    const run = await c.start(port)
    try {
      const ka = await blast(port, 32, 5_000, true)
      const fresh = await blast(port, 8, 3_000, false)
      const mix = await blast(port, 32, 4_000, true, 0.05)
      shares.push(`| ${c.label} | ${(ka.busiest * 100).toFixed(1)} % (${ka.connections} connections) | ${(ka.placed * 100).toFixed(1)} % | ${(fresh.busiest * 100).toFixed(1)} % | ${(mix.busiest * 100).toFixed(1)} % | ${mix.p99.toFixed(1)} | ${mix.fastP99.toFixed(1)} | ${ka.failed + fresh.failed + mix.failed} |`)
      if (c.key === 'one') { base = ka.rps; baseNew = fresh.rps }
      const url = `http://127.0.0.1:${port}/`
      const backToBack = runLoad({ url, connections: 8, mode: 'keep-alive', durationMs: 300_000 })
      const think = runLoad({ url, connections: 20, mode: 'keep-alive', durationMs: 300_000, thinkMs: [50, 150], agentPerLoop: true })
      for (let i = 0; i < restarts; i++) await run.restart()
      backToBack.stop()
      think.stop()
      const [a, b] = await Promise.all([backToBack.result, think.result])
      const mem = rssMb(run.managerPid())
      rows.push(`| ${c.label} | ${Math.round(ka.rps)} (${(ka.rps / base).toFixed(2)}x) | ${(ka.busiest * 100).toFixed(0)} % | ${Math.round(fresh.rps)} (${(fresh.rps / baseNew).toFixed(2)}x) | ${(fresh.busiest * 100).toFixed(0)} % | ${a.failed} / ${a.sent} | ${a.connectionsOpened - 8} | ${b.failed} / ${b.sent} | ${b.connectionsOpened - 20} | ${mem === undefined ? '-' : mem.toFixed(0)} |`)
    } finally {
      await run.stop()
    }
    console.error(`workers-bench: ${c.key} done`)
  }
  console.log(`${restarts} rolling restarts each; node ${process.version}, ${os.availableParallelism()} cores`)
  console.log('| contender | keep-alive req/s (vs one) | busiest worker | new-connection req/s (vs one) | busiest worker | back-to-back failed / sent | reconnects | think-time failed / sent | reconnects | manager RSS MB |')
  console.log('|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) console.log(r)
  console.log('')
  console.log('Spread: 32 keep-alive connections opened at once (5 s), a new connection per request (8 loops, 3 s), and 32 keep-alive connections with 5 % slow requests (20 ms of CPU each, 4 s)')
  console.log('| contender | busiest worker, keep-alive burst (connections opened) | busiest, its connections at the end | busiest, new connections | busiest, slow/fast mix | p99 ms, mix (all) | p99 ms, mix (fast requests) | failed |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const r of shares) console.log(r)
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 }).finally(() => {
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
})
