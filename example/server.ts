// Runs in both processes: the example Fastify app. A reboot re-executes this same file; the
// successor adopts the listening socket at listen() with no change to this code.
import Fastify, { LogController } from 'fastify'
import graceful, { rebootedFrom } from '../index'

async function main (): Promise<void> {
  const app = Fastify({
    logger: { level: process.env.LOG_LEVEL ?? 'info' },
    logController: new LogController({ disableRequestLogging: true })
  })
  const token = process.env.ADMIN_TOKEN
  await app.register(graceful, {
    timeout: 10_000,
    // /shutdown?second=N and /reboot?second=N with `Authorization: Bearer <token>`; without a token,
    // plain local calls only (a loopback peer, no proxy header, no cross-site browser mark).
    admin: token === undefined || token === '' ? true : { token },
    health: true
  })
  app.addHook('onSend', async (_req, reply) => { reply.header('x-pid', String(process.pid)) })
  // The app's own state, carried from process to process: a counter of the requests to /. A successor
  // reads it while it boots, and adds what the old process served after that once its drain is over.
  const stats = { served: 0 }
  app.handover('stats', () => ({ ...stats }))
  const base = (await app.inherited<{ served: number }>('stats'))?.served ?? 0
  stats.served = base
  app.onInherited<{ served: number }>('stats', (last) => { stats.served += last.served - base })
  app.get('/', async () => {
    stats.served++
    return { hello: 'world', pid: process.pid }
  })
  app.get('/stats', async () => stats)
  app.get('/slow', async (req) => {
    const ms = Math.min(Number((req.query as { ms?: string }).ms ?? 1000), 30_000)
    req.log.info({ ms }, 'example: slow request started')
    await new Promise((resolve) => setTimeout(resolve, ms))
    return { slept: ms, pid: process.pid }
  })
  // A deploy hook of the app's own: reboot from code. Loopback peers only.
  app.post('/deploy', async (req, reply) => {
    if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(req.ip)) return reply.code(403).send({ error: 'loopback only' })
    const successor = await app.reboot(10_000)
    return { successor }
  })
  app.onShutdown(async ({ reason }) => { app.log.info({ reason }, 'example: releasing resources') }, { name: 'resources', after: ['http'] })
  if (rebootedFrom() !== undefined) app.log.info({ parent: rebootedFrom() }, 'example: started by a reboot; skipping one-time work')
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
