// Runs in a measuring process (`node dist/tools/handover-bench.js [MB...] [--kinds=blob,objects,wrapped]
// [--idle=MS]`, after `npm run build`): what a state hand-over costs at a reboot. For each size
// (default 1, 10 and 50 MB serialized; 150 MB is a Map of 1.5 M records) and each kind of state (one
// Buffer; a Map of small records, the costly case for structured clone, which travels in slices; the
// same Map wrapped in an object, serialized in one piece) it starts tools/handover-app.ts, runs 4
// keep-alive clients back to back, reboots it with SIGUSR2 and prints, side by side with a reboot that
// hands nothing over: the serialization time in the old process, the time the successor's
// `inherited()` took, the successor's ready time (and its ratio to the baseline), the old process's
// longest event-loop stall while it serialized and sent, the clients' p99 and max latency over the
// run, and failed requests.
// With --idle=MS each state also gets a row of the same app under the same clients that is never
// rebooted (its loop's longest stall over MS ms: what the app's own heap costs without any
// hand-over), and every row gets the old process's full garbage collections over its span (count,
// longest pause), the longest slice's serialization, and the longest stall less the time the loop's
// thread waited for a CPU in it (/proc/self/schedstat, 5 ms resolution): on cores shared with other
// work, what is left of a stall once the other processes' share is taken out.
// To look closer: BENCH_NODE_ARGS=--trace-gc (node's options for the app), STALL_LOG=1 (the app
// reports each gap over 50 ms in its event loop after the spawn, and the CPU wait in it) and
// BENCH_RAW=file (every line the app prints, timed). Loopback only; every process it starts is
// killed by pid at the end.
import { spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as readline from 'node:readline'
import { runLoad } from './load'

type Line = Record<string, unknown> & { event?: string, pid?: number }

interface Row { kind: string, mb: number, idle: boolean, bytes: number, serializeMs: number, inheritedMs: number, readyMs: number, stallMs: number, gcs: number, gcMaxMs: number, sliceMaxMs: number, onCpuMs: number, p99: number, max: number, failed: number, sent: number }

const APP = path.join(__dirname, 'handover-app.js')

async function one (kind: string, mb: number, idleMs = 0, detail = false): Promise<Row> {
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''), APP], { env: { ...process.env, STATE_KIND: kind, STATE_MB: String(mb), IDLE_MS: String(idleMs), ...(detail ? { STALL_LOG: '1' } : {}) }, stdio: ['ignore', 'pipe', 'inherit'] })
  const pids = new Set<number>([child.pid as number])
  const lines: Line[] = []
  const waiters: Array<{ match: (l: Line) => boolean, resolve: (l: Line) => void }> = []
  readline.createInterface({ input: child.stdout }).on('line', (text) => {
    if (process.env.BENCH_RAW !== undefined) fs.appendFileSync(process.env.BENCH_RAW, `${performance.now().toFixed(0)} ${text}\n`)
    let l: Line
    try { l = JSON.parse(text) as Line } catch { return }
    lines.push(l)
    if (typeof l.pid === 'number') pids.add(l.pid)
    for (const w of waiters.splice(0)) { if (w.match(l)) w.resolve(l); else waiters.push(w) }
  })
  const wait = (match: (l: Line) => boolean, what: string): Promise<Line> => {
    const seen = lines.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => { reject(new Error(`no ${what} within 120 s`)) }, 120_000)
      waiters.push({ match, resolve: (l) => { clearTimeout(t); resolve(l) } })
    })
  }
  try {
    const first = await wait((l) => l.event === 'listening', 'listening')
    // The clients are warm (1,000 answers) before the reboot.
    let warm = (): void => {}
    const warmed = new Promise<void>((resolve) => { warm = resolve })
    const load = runLoad({ url: `http://127.0.0.1:${String(first.port)}/`, connections: 4, mode: 'keep-alive', durationMs: 120_000 }, { onProgress: (s) => { if (s.answered >= 1000) warm() } })
    await warmed
    if (idleMs > 0) {
      await fetch(`http://127.0.0.1:${String(first.port)}/idle`)
      const idle = await wait((l) => l.event === 'idle', 'idle')
      load.stop()
      const r = await load.result
      return { kind, mb, idle: true, bytes: 0, serializeMs: 0, inheritedMs: 0, readyMs: 0, stallMs: Number(idle.maxMs), gcs: Number(idle.gcs), gcMaxMs: Number(idle.gcMaxMs), sliceMaxMs: 0, onCpuMs: Number(idle.longestOnCpu), p99: r.latency.p99, max: r.latency.max, failed: r.failed, sent: r.sent }
    }
    process.kill(first.pid as number, 'SIGUSR2')
    const stall = await wait((l) => l.event === 'stall', 'ready')
    const inherited = mb > 0 ? await wait((l) => l.event === 'inherited', 'inherited') : { ms: 0 }
    const handed = mb > 0 ? await wait((l) => l.event === 'handed', 'handed') : { bytes: 0, serializedMs: 0, longestSliceMs: 0 }
    await wait((l) => l.event === 'drained', 'drained')
    load.stop()
    const r = await load.result
    return { kind: mb === 0 ? 'none' : kind, mb, idle: false, gcs: Number(stall.gcs), gcMaxMs: Number(stall.gcMaxMs), sliceMaxMs: Number(handed.longestSliceMs), onCpuMs: Number(stall.longestOnCpu), bytes: Number(handed.bytes), serializeMs: Number(handed.serializedMs), inheritedMs: Number(inherited.ms), readyMs: Number(stall.readyMs), stallMs: Number(stall.maxMs), p99: r.latency.p99, max: r.latency.max, failed: r.failed, sent: r.sent }
  } finally {
    for (const pid of pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
  }
}

async function main (): Promise<void> {
  const args = process.argv.slice(2)
  const sizes = args.filter((a) => !a.startsWith('--')).map(Number).filter((n) => n > 0)
  const mbs = sizes.length > 0 ? sizes : [1, 10, 50]
  const kinds = args.find((a) => a.startsWith('--kinds='))?.slice('--kinds='.length).split(',') ?? ['blob', 'objects', 'wrapped']
  const idleMs = Number(args.find((a) => a.startsWith('--idle='))?.slice('--idle='.length) ?? 0)
  const detail = idleMs > 0
  const rows: Row[] = [await one('blob', 0, 0, detail)]
  for (const kind of kinds) {
    for (const mb of mbs) {
      if (idleMs > 0) rows.push(await one(kind, mb, idleMs, detail))
      rows.push(await one(kind, mb, 0, detail))
    }
  }
  const base = rows[0] as Row
  const f = (n: number): string => n.toFixed(1)
  const extra = idleMs > 0 ? ' full GCs / longest ms | longest slice ms | longest stall on CPU ms |' : ''
  console.log(`| state | serialized bytes | serialize (old) ms | inherited() ms | successor ready ms | ready vs none | old loop max stall ms | client p99 ms | client max ms | failed / sent |${extra}`)
  console.log(`|---|---|---|---|---|---|---|---|---|---|${idleMs > 0 ? '---|---|---|' : ''}`)
  for (const r of rows) {
    const state = r.kind === 'none' ? 'none (baseline)' : `${r.kind === 'wrapped' ? 'objects in one piece ({ map })' : r.kind === 'objects' ? 'objects (a Map, in slices)' : r.kind} ${r.mb} MB`
    const gc = idleMs > 0 ? ` ${r.gcs} / ${f(r.gcMaxMs)} | ${r.idle ? '' : f(r.sliceMaxMs)} | ${f(r.onCpuMs)} |` : ''
    if (r.idle) console.log(`| ${state}, no reboot (${idleMs} ms) | | | | | | ${f(r.stallMs)} | ${f(r.p99)} | ${f(r.max)} | ${r.failed} / ${r.sent} |${gc}`)
    else console.log(`| ${state} | ${r.bytes.toLocaleString('en-US')} | ${f(r.serializeMs)} | ${f(r.inheritedMs)} | ${f(r.readyMs)} | ${(r.readyMs / base.readyMs).toFixed(2)}x | ${f(r.stallMs)} | ${f(r.p99)} | ${f(r.max)} | ${r.failed} / ${r.sent} |${gc}`)
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
