// Runs in the container's one app process: the example app as example/docker/Dockerfile and
// example/kubernetes/deployment.yaml run it. Health routes on, no signal mapped to reboot (a
// container ends with its first process), drain settings from the environment.
import Fastify from 'fastify'
import graceful from '../../index'

async function main (): Promise<void> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' } })
  await app.register(graceful, {
    timeout: Number(process.env.DRAIN_TIMEOUT_MS ?? 25_000),
    readinessDelay: Number(process.env.READINESS_DELAY_MS ?? 0),
    signals: { SIGUSR2: false },   // merged with the defaults: SIGTERM, SIGINT shut down; no reboot signal
    health: true
  })
  app.get('/', async () => ({ hello: 'world', pid: process.pid }))
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '0.0.0.0' })
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
