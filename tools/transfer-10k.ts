// Runs in a measuring process (`node dist/tools/transfer-10k.js [N] [R]`, after `npm run build`): opens N
// idle HTTP/1.1 keep-alive connections (default 10,000) to the Fastify app of
// test/fixtures/transfer-app.ts, reboots it R times in a row (default 1; each reboot from the
// successor of the one before, once its old process exited), and reports for each reboot how long the
// old process took to hand them all to the successor, how many it handed over, and whether any was closed. Loopback only; every
// process it starts is killed by pid at the end. The open-file limit (`ulimit -n`) must allow N
// sockets in this process and in the app.
import { spawn } from 'node:child_process'
import * as net from 'node:net'
import * as path from 'node:path'
import * as readline from 'node:readline'

type Line = Record<string, unknown> & { event?: string, pid?: number, other?: number, step?: string }

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function main (): Promise<void> {
  const n = Number(process.argv[2] ?? 10_000)
  const reboots = Number(process.argv[3] ?? 1)
  const app = spawn(process.execPath, [...(process.env.APP_NODE_ARGS ?? '').split(' ').filter(Boolean), path.join(__dirname, '..', 'test', 'fixtures', 'transfer-app.js')], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, CONNECTION_EVENTS: 'false' } })
  const pids = new Set<number>([app.pid ?? 0])
  const lines: Line[] = []
  const waiters: Array<{ match: (e: Line) => boolean, resolve: (e: Line) => void }> = []
  readline.createInterface({ input: app.stdout }).on('line', (text) => {
    let e: Line
    try { e = JSON.parse(text) as Line } catch { return }
    lines.push(e)
    for (const p of [e.pid, e.other]) if (typeof p === 'number') pids.add(p)
    for (const w of [...waiters]) {
      if (w.match(e)) { waiters.splice(waiters.indexOf(w), 1); w.resolve(e) }
    }
  })
  const waitFor = (match: (e: Line) => boolean): Promise<Line> => {
    const seen = lines.find(match)
    return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => { waiters.push({ match, resolve }) })
  }
  const sockets: net.Socket[] = []
  try {
    const listening = await waitFor((e) => e.event === 'listening')
    const port = (listening.ports as { fastify: number }).fastify
    const first = listening.pid as number
    const opened = Date.now()
    for (let i = 0; i < n; i += 200) {
      await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => new Promise<void>((resolve, reject) => {
        const s = net.connect(port, '127.0.0.1', () => { s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n') })
        s.once('data', () => { resolve() })
        s.on('error', reject)
        sockets.push(s)
      })))
    }
    let closed = 0
    for (const s of sockets) s.on('close', () => { closed++ })
    console.log(`${n} idle keep-alive connections open (${Date.now() - opened} ms)`)
    let old = first
    let serving = first
    for (let r = 1; r <= reboots; r++) {
      const from = old
      process.kill(from, 'SIGUSR2')
      const ready = await waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === from)
      await waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === from)
      const startAt = Date.now()
      const drained = await waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === from)
      const apps = drained.apps as Array<{ name: string, transferred: number, kept: object, forced: number }>
      const fastify = apps.find((a) => a.name === 'fastify')
      console.log(`reboot ${r}, old process ${from}: drained in ${Date.now() - startAt} ms after its drain started; transferred ${fastify?.transferred}, kept ${JSON.stringify(fastify?.kept)}, forced ${fastify?.forced}; connections closed by the server so far: ${closed}`)
      serving = ready.other as number
      old = serving
      while (r < reboots && alive(from)) await new Promise((resolve) => { setTimeout(resolve, 50) })
    }
    let answered = 0
    const sample = sockets.slice(0, 500)
    await Promise.all(sample.map((s) => new Promise<void>((resolve) => {
      s.once('data', (d: Buffer) => { if (d.toString().includes(`x-pid: ${String(serving)}`)) answered++; resolve() })
      s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    })))
    console.log(`connections closed by the server: ${closed}; ${answered} of ${sample.length} sampled connections answered by the successor ${String(serving)} on the same connection`)
  } finally {
    for (const s of sockets) s.destroy()
    for (const p of pids) { try { process.kill(p, 'SIGKILL') } catch {} }
  }
}

main().then(() => { process.exit(0) }, (err: unknown) => { console.error(err); process.exit(1) })
