// Runs in both processes: the example Fastify app (a reboot re-executes this same file).
import Fastify from 'fastify'
import graceful from '../index'

async function main (): Promise<void> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
  await app.register(graceful, { timeout: 10_000 })
  app.addHook('onSend', async (_req, reply) => { reply.header('x-pid', String(process.pid)) })
  app.get('/', async () => ({ hello: 'world', pid: process.pid }))
  app.get('/slow', async (req) => {
    const ms = Math.min(Number((req.query as { ms?: string }).ms ?? 1000), 30_000)
    await new Promise((resolve) => setTimeout(resolve, ms))
    return { slept: ms, pid: process.pid }
  })
  app.onShutdown(async ({ reason }) => { app.log.info({ reason }, 'example: releasing resources') }, { name: 'resources', after: ['http'] })
  const port = Number(process.env.PORT ?? 3000)
  await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
