// Runs in both processes: the app tools/handover-bench.ts reboots: a Fastify app that hands over a
// state of STATE_MB megabytes (serialized) of STATE_KIND 'blob' (one Buffer), 'objects' (a Map of
// small records, the costly case for structured clone: it travels in slices) or 'wrapped' (the same
// Map inside an object: serialized in one piece). The old process reports its event loop's
// longest stall between the successor's spawn and its ready (when the snapshot is serialized and
// sent); the successor reports how long `inherited()` took and what arrived. With IDLE_MS set it is
// never rebooted: it reports its loop's longest stall over IDLE_MS of serving with the same state
// (what the app's own heap costs, without any hand-over). Both report the garbage collections of the
// span (V8's full mark-compacts: count, longest, total).
import fs from 'node:fs'
import { monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks'
import Fastify from 'fastify'
import graceful, { lifecycle, rebootedFrom } from '../index'

const MB = 1_000_000

function emit (event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, pid: process.pid, ...fields }) + '\n')
}

/** About `mb` MB once serialized: one Buffer, or records of about 100 bytes each. */
function build (kind: string, mb: number): unknown {
  if (kind === 'blob') return { blob: Buffer.alloc(mb * MB, 7) }
  if (kind === 'wrapped') return { map: build('objects', mb) }
  const map = new Map<string, { id: number, name: string, score: number, tags: string[] }>()
  const count = Math.round(mb * MB / 100)
  for (let i = 0; i < count; i++) map.set(`user:${i}`, { id: i, name: `name-${i}-${'x'.repeat(30)}`, score: i * 1.5, tags: ['a', 'b'] })
  return map
}

/** The major (mark-compact) collections of a span: `take()` returns them and starts a new span. */
function majorGcs (): { take: () => { gcs: number, gcMaxMs: number, gcMs: number } } {
  let pauses: number[] = []
  // NODE_PERFORMANCE_GC_MAJOR is 4 (entry.detail.kind).
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as Array<PerformanceEntry & { detail?: { kind?: number } }>) if (e.detail?.kind === 4) pauses.push(e.duration)
  })
  obs.observe({ entryTypes: ['gc'] })
  return {
    take () {
      const p = pauses
      pauses = []
      return { gcs: p.length, gcMaxMs: Math.max(0, ...p), gcMs: p.reduce((a, b) => a + b, 0) }
    }
  }
}

async function main (): Promise<void> {
  const kind = process.env.STATE_KIND ?? 'blob'
  const mb = Number(process.env.STATE_MB ?? 1)
  const parent = rebootedFrom()
  const app = Fastify({ logger: false, keepAliveTimeout: 60_000 })
  await app.register(graceful, {
    timeout: 10_000,
    rebootTimeout: 60_000,
    rebootProbation: 0,
    handoverTimeout: 30_000,
    handoverMaxBytes: 256 * 1024 * 1024,
    logger: {
      info: (o: object, msg: string) => { if (msg.includes('handed')) emit('handed', o as Record<string, unknown>) },
      warn: () => {},
      error: (_o: object, msg: string) => { process.stderr.write(msg + '\n') }
    }
  })
  // A successor takes its state from the old process: it builds none of its own.
  let state: unknown = mb > 0 && parent === undefined ? build(kind, mb) : undefined
  if (mb > 0) app.handover('state', () => state)
  if (parent !== undefined) {
    const start = performance.now()
    state = await app.inherited('state')
    const s = state as { blob?: Buffer, map?: Map<unknown, unknown> } | Map<unknown, unknown> | undefined
    const size = s instanceof Map ? s.size : s?.map?.size ?? s?.blob?.length ?? 0
    emit('inherited', { ms: performance.now() - start, size })
  }
  // The old process's loop between the spawn and the ready: the snapshot is taken, serialized and sent then.
  const delay = monitorEventLoopDelay({ resolution: 5 })
  const gc = majorGcs()
  // STALL_LOG=1: each gap over 50 ms in the event loop after the spawn, with its time since the spawn
  // and how much of it the main thread spent waiting for a CPU (run_delay in /proc/self/schedstat):
  // time the loop was runnable but another process had the cores.
  let spawnedAt = 0
  let longestOnCpu = 0
  if (process.env.STALL_LOG === '1') {
    const waited = (): number => Number(fs.readFileSync('/proc/self/schedstat', 'utf8').split(' ')[1]) / 1e6
    let last = performance.now()
    let lastWait = waited()
    setInterval(() => {
      const now = performance.now()
      const wait = waited()
      if (spawnedAt > 0) longestOnCpu = Math.max(longestOnCpu, now - last - (wait - lastWait))
      if (now - last > 50 && spawnedAt > 0) emit('gap', { ms: Math.round(now - last), waitingForCpuMs: Math.round(wait - lastWait), at: Math.round(last - spawnedAt) })
      last = now
      lastWait = wait
    }, 5).unref()
  }
  lifecycle().on('handoff', (e) => {
    if (e.step === 'spawned') {
      spawnedAt = performance.now()
      longestOnCpu = 0
      gc.take()
      delay.reset()
      delay.enable()
    } else if (e.step === 'ready') {
      delay.disable()
      emit('stall', { maxMs: delay.max / 1e6, successor: e.pid, readyMs: e.ms, ...gc.take(), heapMB: process.memoryUsage().heapUsed / 1e6, longestOnCpu })
    } else if (e.step === 'drained') {
      emit('drained')
    }
  })
  const idle = Number(process.env.IDLE_MS ?? 0)
  if (idle > 0) {
    // The bench starts the span once its clients are warm.
    app.get('/idle', async () => {
      spawnedAt = performance.now()
      longestOnCpu = 0
      gc.take()
      delay.reset()
      delay.enable()
      const start = performance.now()
      setTimeout(() => {
        delay.disable()
        emit('idle', { maxMs: delay.max / 1e6, ms: performance.now() - start, ...gc.take(), heapMB: process.memoryUsage().heapUsed / 1e6, longestOnCpu })
      }, idle)
      return 'started'
    })
  }
  app.get('/', async () => 'ok')
  await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
  emit('listening', { port: (app.server.address() as { port: number }).port, parent: parent ?? null })
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
