// Runs in both processes: the app tools/handover-bench.ts reboots: a Fastify app that hands over a
// state of STATE_MB megabytes (serialized) of STATE_KIND 'blob' (one Buffer), 'objects' (a Map of
// small records, the costly case for structured clone: it travels in slices) or 'wrapped' (the same
// Map inside an object: serialized in one piece). The old process reports its event loop's
// longest stall between the successor's spawn and its ready (when the snapshot is serialized and
// sent); the successor reports how long `inherited()` took and what arrived.
import { monitorEventLoopDelay } from 'node:perf_hooks'
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
  let state: unknown = mb > 0 ? build(kind, mb) : undefined
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
  lifecycle().on('handoff', (e) => {
    if (e.step === 'spawned') {
      delay.reset()
      delay.enable()
    } else if (e.step === 'ready') {
      delay.disable()
      emit('stall', { maxMs: delay.max / 1e6, successor: e.pid, readyMs: e.ms })
    } else if (e.step === 'drained') {
      emit('drained')
    }
  })
  app.get('/', async () => 'ok')
  await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
  emit('listening', { port: (app.server.address() as { port: number }).port, parent: parent ?? null })
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
