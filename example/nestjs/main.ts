// Runs in both processes: a NestJS server with graceful shutdown and zero-downtime reboot, on
// @nestjs/platform-express (default) or @nestjs/platform-fastify (PLATFORM=fastify):
//   npm run build && node dist/example/nestjs/main.js     then   kill -USR2 <pid>   (a reboot)
// docs/nestjs.md explains each line.
import { NestFactory } from '@nestjs/core'
import { FastifyAdapter } from '@nestjs/platform-fastify'
import { nestGraceful, rebootedFrom } from '../../index'
import { AppModule } from './app.module'

async function main (): Promise<void> {
  const app = process.env.PLATFORM === 'fastify'
    ? await NestFactory.create(AppModule, new FastifyAdapter())
    : await NestFactory.create(AppModule)
  // After create, before listen. No app.enableShutdownHooks(): graceful-reboot handles the signals,
  // drains, then runs Nest's shutdown hooks.
  const graceful = await nestGraceful(app, { timeout: 30_000, health: true })
  graceful.onShutdown(() => { console.log('flushing what the requests left') }, { name: 'flush', after: ['http'], before: ['nest'] })
  // After a reboot, listen() adopts the socket the old process passed on (same port, no gap).
  await app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1')
  console.log(`pid ${process.pid} serves on ${await app.getUrl()}${rebootedFrom() !== undefined ? ` (rebooted from ${String(rebootedFrom())})` : ''}`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
