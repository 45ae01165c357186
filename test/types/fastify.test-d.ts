// Type tests (tsc only, never run): the Fastify plugin's decorators and options.
import Fastify, { type FastifyInstance } from 'fastify'
import graceful, {
  DrainStartedError,
  HandoverError,
  fastifyGraceful,
  type RebootHookContext,
  type Finalizer,
  type FinalizerContext,
  type FinalizerOptions,
  type GracefulOptions,
  type ShutdownReason,
  type ShutdownResult
} from '../../index'

export async function decorators (): Promise<void> {
  const app = Fastify()
  await app.register(graceful, { timeout: 10_000, signals: true, admin: { token: 'x' }, health: true, pidFile: '/run/app.pid', rebootTimeout: 60_000 })
  await app.register(fastifyGraceful)
  await app.register(graceful, { signals: { SIGTERM: 'shutdown', SIGHUP: 'reboot' }, exit: false, crash: true, idleGrace: 100, readinessDelay: 0 })
  await app.register(graceful, { signals: { SIGUSR2: false, SIGHUP: 'reboot' } }) // merged with the defaults; false removes one
  await app.register(graceful, { launcher: 'ignore' })
  await app.register(graceful, { launcher: 'auto' })
  // @ts-expect-error launcher is 'auto' or 'ignore'
  await app.register(graceful, { launcher: 'nodemon' })

  const shutdown: Promise<ShutdownResult> = app.shutdown(1000)
  const shutdownDefault: Promise<ShutdownResult> = app.shutdown()
  const reboot: Promise<number> = app.reboot(10_000)
  const chained: FastifyInstance = app.onShutdown(() => {}).onShutdown(async () => {}, { name: 'db', after: ['http'] })
  void [shutdown, shutdownDefault, reboot, chained]

  const result = await app.shutdown(1000)
  const code: number = result.code
  const failed: string[] = result.failedFinalizers
  const forced: number = result.forced
  const reason: ShutdownReason = result.reason
  const timedOut: boolean | undefined = result.apps[0]?.finalizers[0]?.timedOut
  void [code, failed, forced, reason, timedOut]

  // HTTP/2 apps, h2c and TLS, register the same way.
  const h2c = Fastify({ http2: true })
  await h2c.register(graceful, { timeout: 10_000 })
  const h2 = Fastify({ http2: true, https: { key: 'k', cert: 'c', allowHTTP1: true } })
  await h2.register(graceful)
  const h2Result: Promise<ShutdownResult> = h2.shutdown(1000)
  const sessions: number | undefined = (await h2c.shutdown()).apps[0]?.http2.sessions.forced
  void [h2Result, sessions]

  // @ts-expect-error the deadline is a number of ms
  void app.shutdown('10')
  // @ts-expect-error reboot's deadline too
  void app.reboot('10s')
  // @ts-expect-error onShutdown needs a function
  app.onShutdown('db')
}

export function finalizerContext (app: FastifyInstance): void {
  app.onShutdown((ctx) => {
    const reason: 'shutdown' | 'reboot' | 'crash' | 'close' = ctx.reason
    const trigger: string = ctx.trigger
    const signal: AbortSignal = ctx.signal
    const deadline: number = ctx.deadline
    void [reason, trigger, signal, deadline]
    // @ts-expect-error the context has no such field
    void ctx.timeout
    // @ts-expect-error reason is a closed union
    const bad: 'shutdown' = ctx.reason
    void bad
  })
  const named: Finalizer = async ({ signal }) => { signal.throwIfAborted() }
  const options: FinalizerOptions = { name: 'ws', before: ['http'], timeout: 5_000 }
  app.onShutdown(named, options)
  const ctxType = (ctx: FinalizerContext): number => ctx.deadline - Date.now()
  app.onShutdown(ctxType)
  // @ts-expect-error after is a list of names
  app.onShutdown(() => {}, { after: 'http' })
  // @ts-expect-error timeout is a number of ms
  app.onShutdown(() => {}, { timeout: '5s' })
  // @ts-expect-error no such finalizer option
  app.onShutdown(() => {}, { nam: 'db' })
}

export async function badOptions (): Promise<void> {
  const app = Fastify()
  // @ts-expect-error timeout is a number of ms
  await app.register(graceful, { timeout: '10' })
  // @ts-expect-error signals is a boolean or a map of signal -> action
  await app.register(graceful, { signals: 'SIGTERM' })
  // @ts-expect-error an action is 'shutdown', 'reboot' or false
  await app.register(graceful, { signals: { SIGTERM: 'restart' } })
  // @ts-expect-error true is no action (only false, to remove a signal)
  await app.register(graceful, { signals: { SIGTERM: true } })
  // @ts-expect-error not a signal name
  await app.register(graceful, { signals: { SIGFOO: 'shutdown' } })
  // @ts-expect-error exit is a boolean
  await app.register(graceful, { exit: 'yes' })
  // @ts-expect-error the admin token is a string
  await app.register(graceful, { admin: { token: 1234 } })
  // @ts-expect-error a typo in an option name
  await app.register(graceful, { timout: 1000 })

  const o: GracefulOptions = { timeout: 1 }
  // @ts-expect-error the options type is closed too
  const typo: GracefulOptions = { timout: 1 }
  void [o, typo]
}

export function drainSignal (app: FastifyInstance): void {
  const onApp: AbortSignal = app.drainSignal
  app.get('/events', (request, reply) => {
    const signal: AbortSignal = request.drainSignal
    if (signal.reason instanceof DrainStartedError) {
      const why: ShutdownReason = signal.reason.reason
      void why
    }
    void reply
  })
  // @ts-expect-error the signal is the package's, read-only
  app.drainSignal = new AbortController().signal
  void onApp
}

export async function warmSuccessor (app: FastifyInstance): Promise<void> {
  await app.register(graceful, { handoverTimeout: 5_000, handoverMaxBytes: 1 << 20 })
  const chained: FastifyInstance = app.handover('cache', () => new Map<string, number>()).onInherited<{ n: number }>('counter', (last) => { const n: number = last.n; void n })
  const cache: Map<string, number> | undefined = await app.inherited<Map<string, number>>('cache')
  app.onReboot('beforeSpawn', (ctx: RebootHookContext) => ctx.trigger === 'admin' ? 'not now' : undefined, { name: 'gate', timeout: 1000 })
  app.onReboot('drained', ({ transferred, role }) => { const r: 'old' | 'new' = role; void [transferred, r] })
  app.onStartup(async ({ signal, attempt }) => { void [signal, attempt] }, { name: 'db', after: [], required: true, retries: 3, backoff: 100, timeout: 5000 })
  const err = new HandoverError('ERR_GRACEFUL_HANDOVER_TIMEOUT', 'cache', 'x')
  const name: string = err.handover
  void [chained, cache, name]
  // @ts-expect-error a step that does not exist
  app.onReboot('afterSpawn', () => {})
  // @ts-expect-error handoverMaxBytes is a number
  await app.register(graceful, { handoverMaxBytes: '1mb' })
}
