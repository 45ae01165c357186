// Runs in both processes: the NestJS app of example/nestjs/main.ts (and of the test fixture
// test/fixtures/nest-app.ts): a controller and a provider whose shutdown hooks graceful-reboot runs
// after the drain (nestGraceful() runs Nest's app.close() as the finalizer 'nest', after 'http').
import 'reflect-metadata'
import { Controller, Get, Injectable, Module, Query, type BeforeApplicationShutdown, type OnApplicationShutdown, type OnModuleDestroy } from '@nestjs/common'
import { lifecycle } from '../../index'

/** Called by the provider's shutdown hooks (the fixture prints a line from each). */
export const shutdownHooks: { on: (hook: string, signal?: string) => void } = { on: () => {} }

@Injectable()
export class Resources implements OnModuleDestroy, BeforeApplicationShutdown, OnApplicationShutdown {
  // A database pool, a queue consumer...: released once no request needs it any more.
  onModuleDestroy (): void { shutdownHooks.on('onModuleDestroy') }
  beforeApplicationShutdown (signal?: string): void { shutdownHooks.on('beforeApplicationShutdown', signal) }
  onApplicationShutdown (signal?: string): void { shutdownHooks.on('onApplicationShutdown', signal) }
}

@Controller()
export class AppController {
  @Get()
  hello (@Query('id') id?: string): { id: number | null, pid: number } {
    return { id: id === undefined ? null : Number(id), pid: process.pid }
  }

  /** Answers `ms` later: a long request that a shutdown or a reboot must let finish. */
  @Get('slow')
  async slow (@Query('ms') ms?: string): Promise<{ slow: true, pid: number }> {
    shutdownHooks.on('slow-started')
    await new Promise((resolve) => setTimeout(resolve, Number(ms ?? 1000)))
    shutdownHooks.on('slow-done')
    return { slow: true, pid: process.pid }
  }

  /** The counts of this process's reboot line (they continue across reboots). */
  @Get('stats')
  stats (): unknown {
    return lifecycle().stats()
  }
}

@Module({ controllers: [AppController], providers: [Resources] })
export class AppModule {}
