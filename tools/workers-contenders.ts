// Runs in a measuring process (tools/workers-bench.ts, and scenario `workers` of bench/run.js): the
// contenders of the worker comparison (one process with the plugin, a node:cluster primary rolling by
// fork-then-disconnect, PM2 cluster mode with and without the plugin's drain, `graceful-reboot run
// --workers N`), each started on a port of 127.0.0.1 with a rolling restart and a stop, and the
// closed-loop client that measures throughput and how the requests spread over the workers (x-pid).
// Every pid they learn of is in `workerPids`, for the caller to kill at the end.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as readline from 'node:readline'

const ROOT = path.join(__dirname, '..', '..')
const APP = path.join(__dirname, 'workers-app.js')
/** PM2's CLI: the root's devDependency unless a caller names another (the benchmark uses bench/'s). */
let pm2Bin = path.join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2')
const CLI = path.join(__dirname, '..', 'bin', 'graceful-reboot.js')

export interface Running { restart: () => Promise<void>, stop: () => Promise<void>, managerPid: () => number | undefined }
export interface WorkersContender { key: string, label: string, start: (port: number) => Promise<Running> }

/** Every pid a contender started or reported (workers, primaries, PM2 daemons). */
export const workerPids = new Set<number>()
const pids = workerPids

/** Runs PM2 from `bin` (its CLI's path) from now on. */
export function usePm2 (bin: string): void { pm2Bin = bin }

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
    execFile(process.execPath, [pm2Bin, ...args], { env: { ...process.env, PM2_HOME: home, PM2_DISCRETE_MODE: 'true' }, timeout: 120_000 }, (err, stdout, stderr) => {
      try { pids.add(Number(fs.readFileSync(path.join(home, 'pm2.pid'), 'utf8'))) } catch {}
      if (err !== null) reject(new Error(`pm2 ${args.join(' ')}: ${err.message}\n${stdout}\n${stderr}`))
      else resolve(stdout)
    })
  })
}

function pm2Contender (key: string, label: string, mode: string, workers: number): WorkersContender {
  return {
    key,
    label,
    async start (port) {
      const home = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-workers-pm2-'))
      const file = path.join(home, 'eco.config.js')
      fs.writeFileSync(file, `module.exports = ${JSON.stringify({ apps: [{ name: key, script: APP, exec_mode: 'cluster', instances: workers, wait_ready: true, listen_timeout: 20_000, kill_timeout: 12_000, env: { PORT: String(port), APP_MODE: mode } }] })}\n`)
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

/** The contenders, `workers` workers each (the one process has one). */
export function workersContenders (workers = 2): WorkersContender[] {
  return [
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
      label: `node:cluster, ${workers} workers (round-robin; roll: fork, then disconnect)`,
      async start (port) {
        const p = proc(process.execPath, [path.join(__dirname, 'cluster-primary.js')], { ...process.env, PORT: String(port), WORKERS: String(workers) })
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
    pm2Contender('pm2', `PM2 cluster, ${workers} instances, pm2 reload (wait_ready + app.close() on SIGINT)`, 'plain', workers),
    pm2Contender('pm2-plugin', `PM2 cluster, ${workers} instances, pm2 reload + graceful-reboot's drain`, 'plugin', workers),
    supervisorContender('supervisor', `graceful-reboot run --workers ${workers} (rolling reboot: SIGUSR2)`, [], workers)
  ]
}

/** `graceful-reboot run --workers N` with the run options `flags` (rolling reboot: SIGUSR2 to the supervisor). */
export function supervisorContender (key: string, label: string, flags: string[], workers = 2): WorkersContender {
  return {
    key,
    label,
    async start (port) {
      const p = proc(process.execPath, [CLI, 'run', '--workers', String(workers), ...flags, APP], { ...process.env, PORT: String(port), APP_MODE: 'plugin' })
      await p.waitFor((l) => l.includes(`${workers} workers serving`), 'serving')
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
export async function blast (port: number, conns: number, ms: number, keepAlive: boolean, slow = 0): Promise<{ rps: number, busiest: number, failed: number, p99: number, fastP99: number, connections: number, placed: number }> {
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

/** Resident set size of `pid`, MB (undefined when it is gone or unknown). */
export function rssMb (pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const kb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
    return kb / 1024
  } catch { return undefined }
}

/** A free port on 127.0.0.1 (bound, read, released). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => { resolve(port) })
    }).on('error', reject)
  })
}

