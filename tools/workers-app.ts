// Runs in every contender of tools/workers-bench.ts (one process, a node:cluster worker, a PM2
// cluster instance, a worker of `graceful-reboot run`): a Fastify app answering GET / with an x-pid
// header, and GET /spin?ms=N after keeping its loop busy for N ms (a slow request). APP_MODE=plugin registers graceful-reboot; APP_MODE=plain does not and, as PM2's docs
// recommend, sends 'ready' once listening and closes the app on SIGINT.
import Fastify from 'fastify'
import graceful, { rebootedFrom } from '../index'

function emit (event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, pid: process.pid, ...fields }) + '\n')
}

async function main (): Promise<void> {
  const plugin = process.env.APP_MODE !== 'plain'
  const app = Fastify({ logger: false, keepAliveTimeout: 60_000 })
  if (plugin) await app.register(graceful, { timeout: 10_000, rebootTimeout: 20_000 })
  const pid = String(process.pid)
  app.addHook('onSend', async (_req, reply) => { reply.header('x-pid', pid) })
  app.get('/', async () => ({ hello: 'world' }))
  // A slow request: the worker's loop is busy for `ms` (at most 1 s), as a CPU-heavy handler keeps it.
  app.get('/spin', async (req) => {
    const ms = Math.min(1_000, Number((req.query as { ms?: string }).ms ?? 20))
    const end = performance.now() + ms
    while (performance.now() < end);
    return { spun: ms }
  })
  if (!plugin) process.on('SIGINT', () => { app.close().then(() => process.exit(0), () => process.exit(1)) })
  await app.listen({ port: Number(process.env.PORT ?? 0), host: '127.0.0.1' })
  emit('listening', { port: (app.server.address() as { port: number }).port, parent: rebootedFrom() ?? null })
  if (!plugin && process.env.pm_id !== undefined) process.send?.('ready')
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
