// Runs in the demo process (`npm start`): starts the example server, keeps it under load, reboots it
// through each trigger (admin route, SIGUSR2, app.reboot() from code), shuts it down, and accounts
// for every request. Exits 1 if any request failed or a process was left behind.
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import http from 'node:http'
import path from 'node:path'
import readline from 'node:readline'
import { parseArgs } from 'node:util'
import { runLoad, type LoadResult } from '../tools/load'

type Trigger = 'admin route' | 'SIGUSR2' | 'app.reboot()'
const TRIGGERS: readonly Trigger[] = ['admin route', 'SIGUSR2', 'app.reboot()']

interface LogLine { pid?: number, msg?: string, [k: string]: unknown }
interface Handoff { trigger: Trigger, from: number, to: number, readyMs: number, drainMs: number, forced: number }

const { values: args } = parseArgs({
  options: {
    reboots: { type: 'string', default: '3' },
    connections: { type: 'string', default: '20' },
    interval: { type: 'string', default: '2000' },
    help: { type: 'boolean', default: false }
  }
})
if (args.help === true) {
  console.log('npm start -- [--reboots N (3)] [--connections N (20)] [--interval MS between reboots (2000)]')
  process.exit(0)
}
const reboots = positive(args.reboots, 'reboots')
const connections = positive(args.connections, 'connections')
const interval = positive(args.interval, 'interval')

function positive (value: string | undefined, name: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a whole number >= 1, got ${String(value)}`)
    process.exit(2)
  }
  return n
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function main (): Promise<number> {
  const token = crypto.randomBytes(16).toString('hex')
  const server = spawn(process.execPath, [path.join(__dirname, 'server.js')], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ADMIN_TOKEN: token, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const pids = new Set<number>([server.pid ?? 0])
  const lines: LogLine[] = []
  const waiters = new Set<{ match: (l: LogLine) => boolean, resolve: (l: LogLine) => void }>()
  readline.createInterface({ input: server.stdout }).on('line', (text) => {
    let l: LogLine
    try { l = JSON.parse(text) as LogLine } catch { return }
    if (typeof l.pid === 'number') pids.add(l.pid)
    lines.push(l)
    for (const w of [...waiters]) if (w.match(l)) { waiters.delete(w); w.resolve(l) }
  })
  const allGone = new Promise<void>((resolve) => { server.once('close', () => { resolve() }) })
  const killAll = (): void => { for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} } }
  process.once('SIGINT', () => { killAll(); process.exit(130) })
  const waitFor = (match: (l: LogLine) => boolean, what: string, ms = 30_000): Promise<LogLine> => {
    const seen = lines.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`no "${what}" within ${ms} ms`)) }, ms)
      waiters.add({ match, resolve: (l) => { clearTimeout(timer); resolve(l) } })
    })
  }
  const msg = (re: RegExp, pid?: number) => (l: LogLine): boolean => typeof l.msg === 'string' && re.test(l.msg) && (pid === undefined || l.pid === pid)

  try {
    const listening = await waitFor(msg(/^Server listening at http:\/\/127\.0\.0\.1:\d+/), 'listening')
    const port = Number(/:(\d+)$/.exec(listening.msg ?? '')?.[1])
    let current = listening.pid as number
    const url = `http://127.0.0.1:${port}/`
    console.log(`demo: example server pid ${current} on ${url}; load: ${connections} keep-alive clients + 2 clients opening a new connection per request`)
    const started = Date.now()
    let printed = 0
    const progress = (r: LoadResult): void => {
      const line = `  ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s  sent ${r.sent}  answered ${r.answered}  failed ${r.failed}  serving pid ${current}`
      if (process.stdout.isTTY) {
        process.stdout.write(`\r${line}   `)
      } else if (Date.now() - printed >= 2000) {
        printed = Date.now()
        process.stdout.write(`${line}\n`)
      }
    }
    const keepAlive = runLoad({ url, connections, mode: 'keep-alive', durationMs: 600_000 }, { onProgress: progress })
    const fresh = runLoad({ url, connections: 2, mode: 'new-connection', durationMs: 600_000 })
    const handoffs: Handoff[] = []
    for (let i = 0; i < reboots; i++) {
      await sleep(interval)
      const trigger = TRIGGERS[i % TRIGGERS.length] as Trigger
      const from = current
      if (trigger === 'admin route') {
        const status = await request(port, 'POST', '/reboot?second=10', { authorization: `Bearer ${token}` })
        if (status.status !== 202) throw new Error(`admin route answered ${status.status}: ${status.body}`)
      } else if (trigger === 'SIGUSR2') {
        process.kill(from, 'SIGUSR2')
      } else {
        const r = await request(port, 'POST', '/deploy')
        if (r.status !== 200) throw new Error(`/deploy answered ${r.status}: ${r.body}`)
      }
      const ready = await waitFor(msg(/successor ready after/, from), `successor of ${from} ready`)
      const drained = await waitFor(msg(/^graceful-reboot: drained$/, from), `${from} drained`)
      current = ready.successor as number
      handoffs.push({ trigger, from, to: current, readyMs: ready.ms as number, drainMs: drained.ms as number, forced: (drained.forced as number) + (drained.forcedUpgraded as number) })
    }
    await sleep(interval)
    // The end: stop sending, shut down with a slow request still in flight.
    keepAlive.stop()
    fresh.stop()
    const [a, b] = await Promise.all([keepAlive.result, fresh.result])
    // The app counted every request to / in whichever process served it, and handed the count on.
    const counted = (JSON.parse((await request(port, 'GET', '/stats')).body) as { served: number }).served
    const slow = request(port, 'GET', '/slow?ms=1500')
    await waitFor(msg(/slow request started/, current), 'slow request received', 5000)
    process.kill(current, 'SIGTERM')
    const s = await slow.catch((e: Error) => ({ status: 0, body: e.message }))
    const exiting = await waitFor(msg(/^graceful-reboot: exiting$/, current), 'final exit')
    await Promise.race([allGone, sleep(15_000).then(() => { throw new Error('a process of the example is still running') })])
    process.stdout.write(process.stdout.isTTY ? '\n\n' : '\n')
    console.log('| # | trigger | old pid | new pid | successor ready (ms) | old drained (ms) | forced |')
    console.log('|---|---|---|---|---|---|---|')
    handoffs.forEach((h, i) => { console.log(`| ${i + 1} | ${h.trigger} | ${h.from} | ${h.to} | ${h.readyMs} | ${h.drainMs} | ${h.forced} |`) })
    console.log('\n| load | requests | answered | failed | p99 (ms) | max (ms) | pids that served |')
    console.log('|---|---|---|---|---|---|---|')
    for (const [name, r] of [['keep-alive', a], ['new connection each', b]] as const) {
      console.log(`| ${name} | ${r.sent} | ${r.answered} | ${r.failed}${r.failed > 0 ? ' ' + JSON.stringify(r.causes) : ''} | ${r.latency.p99.toFixed(1)} | ${r.latency.max.toFixed(1)} | ${r.pids.join(' ')} |`)
    }
    const answered = a.answered + b.answered
    console.log(`\nthe app's own counter of requests to /, handed over at each reboot (docs/state.md): ${counted}; the clients got ${answered} answers${counted === answered ? '' : ': MISMATCH'}`)
    console.log(`shutdown (SIGTERM to ${current}): a 1.5 s request in flight got ${s.status}; exit code ${String(exiting.code)}; every process gone`)
    const failed = a.failed + b.failed + (s.status === 200 ? 0 : 1)
    const ok = failed === 0 && exiting.code === 0 && counted === answered
    console.log(ok ? `OK: ${a.sent + b.sent + 1} requests, 0 failed, ${reboots} reboots, the state carried through all of them.` : `FAILED: ${failed} failed requests, exit code ${String(exiting.code)}, counter ${counted} for ${answered} answers`)
    return ok ? 0 : 1
  } catch (err) {
    console.error(`\ndemo: ${(err as Error).message}`)
    return 1
  } finally {
    killAll()
  }
}

function request (port: number, method: string, p: string, headers: Record<string, string> = {}): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    req.on('error', reject)
    req.end()
  })
}

main().then((code) => { process.exit(code) }, (err: unknown) => { console.error(err); process.exit(1) })
