// Runs in both processes: the NestJS adapter: `await nestGraceful(app, options)` between
// `NestFactory.create()` and `app.listen()`, for @nestjs/platform-express and @nestjs/platform-fastify.
// It never imports Nest: the app is duck-typed (getHttpAdapter(), getHttpServer(), listen(), close()).
// Express: expressGraceful() on Nest's Express instance, with Nest's own server attached; Fastify: the
// Fastify plugin registered on Nest's Fastify instance. Either way Nest's close (its shutdown hooks)
// is a finalizer after 'http', and the signal handlers of Nest's enableShutdownHooks() are removed.
import type * as net from 'node:net'
import { expressGraceful, type ExpressLike } from './express'
import { fastifyGraceful } from './fastify'
import type { GracefulHandle } from './http'
import type { Finalizer, FinalizerOptions } from '../drain/finalizers'
import type { RebootOptions, ShutdownResult } from '../events'
import { InvalidOptionError, describe } from '../errors'
import { core, type Lifecycle } from '../lifecycle'
import type { DeprecatedHookStep, RebootHook, RebootHookOptions } from '../lifecycle/hooks'
import type { RebootHookStep } from '../steps'
import type { GracefulOptions } from '../options'
import type { Snapshot } from '../outgoing/state'
import type { StartupOptions, StartupService } from '../startup/graph'

/** The finalizer that runs Nest's `app.close()` (onModuleDestroy, beforeApplicationShutdown, onApplicationShutdown), after 'http'. */
export const NEST_FINALIZER = 'nest'

/** What nestGraceful() reads of a Nest application (`INestApplication`, either platform). */
export interface NestAppLike {
  getHttpAdapter (): { getInstance (): unknown, getType? (): string }
  getHttpServer (): unknown
  listen (...args: never[]): Promise<unknown>
  close (...args: never[]): Promise<void>
  enableShutdownHooks? (...args: never[]): unknown
}

/** What `nestGraceful()` resolves with: the graceful-reboot API of the app, on either platform. */
export interface NestGracefulHandle {
  /** 'express' or 'fastify': the Nest platform the app runs on. */
  readonly platform: 'express' | 'fastify'
  /** Process-wide shutdown: drains, runs the finalizers (Nest's shutdown hooks among them), exits. Idempotent. */
  shutdown (timeout?: number): Promise<ShutdownResult>
  /** Process-wide reboot: a successor inherits the listening socket at its `app.listen()`; resolves with its pid after probation. */
  reboot (timeout?: number, options?: Pick<RebootOptions, 'stateful'>): Promise<number>
  /** A finalizer: order it around 'http' and 'nest' (Nest's close) with `after`/`before`. */
  onShutdown (fn: Finalizer, options?: FinalizerOptions): NestGracefulHandle
  /** See `GracefulHandle.handover`. */
  handover (name: string, snapshot: Snapshot): NestGracefulHandle
  /** See `GracefulHandle.inherited`. */
  inherited<T = unknown> (name: string): Promise<T | undefined>
  /** See `GracefulHandle.onInherited`. */
  onInherited<T = unknown> (name: string, fn: (value: T) => unknown): NestGracefulHandle
  /** See `GracefulHandle.onReboot`. */
  onReboot (step: RebootHookStep | DeprecatedHookStep, fn: RebootHook, options?: RebootHookOptions): NestGracefulHandle
  /** See `GracefulHandle.onStartup`: `app.listen()` binds once every required service started. */
  onStartup (fn: StartupService, options?: StartupOptions): NestGracefulHandle
  /** Aborted when the app's drain starts. */
  readonly drainSignal: AbortSignal
  readonly lifecycle: Lifecycle
}

/** The HTTP adapters of the Nest apps that have graceful-reboot (a Nest app is a Proxy that ignores new properties). */
const registered = new WeakSet<object>()

/** A Nest HTTP adapter: Nest's `app.listen()` calls its `listen()`, which this adapter wraps. */
interface NestHttpAdapter { listen: (...args: unknown[]) => unknown }

/** What the Fastify plugin decorates a Fastify instance with (the parts this adapter forwards). */
interface DecoratedFastify {
  register (plugin: unknown, options?: unknown): PromiseLike<unknown>
  shutdown: NestGracefulHandle['shutdown']
  reboot: NestGracefulHandle['reboot']
  onShutdown (fn: Finalizer, options?: FinalizerOptions): unknown
  handover (name: string, snapshot: Snapshot): unknown
  inherited<T> (name: string): Promise<T | undefined>
  onInherited (name: string, fn: (value: unknown) => unknown): unknown
  onReboot (step: RebootHookStep | DeprecatedHookStep, fn: RebootHook, options?: RebootHookOptions): unknown
  onStartup (fn: StartupService, options?: StartupOptions): unknown
  readonly drainSignal: AbortSignal
}

/**
 * Graceful shutdown and reboot for a NestJS app (@nestjs/platform-express or @nestjs/platform-fastify):
 * ```ts
 * const app = await NestFactory.create(AppModule)   // or (AppModule, new FastifyAdapter())
 * await nestGraceful(app, { timeout: 30_000 })
 * await app.listen(3000)                             // adopts the inherited socket after a reboot
 * ```
 * It tracks Nest's HTTP server, drains it first on a shutdown or a reboot, then runs Nest's
 * `app.close()` (its onModuleDestroy, beforeApplicationShutdown and onApplicationShutdown hooks) as the
 * finalizer 'nest', ordered after 'http'. Do not call `app.enableShutdownHooks()`: graceful-reboot
 * handles the signals (the handlers a call added are removed at nestGraceful() and at app.listen(), with a warning).
 */
export async function nestGraceful (app: NestAppLike, options?: GracefulOptions): Promise<NestGracefulHandle> {
  const adapter = typeof (app as { getHttpAdapter?: unknown })?.getHttpAdapter === 'function' ? app.getHttpAdapter() : undefined
  if (adapter === undefined || adapter === null || typeof adapter.getInstance !== 'function' || typeof app.getHttpServer !== 'function' || typeof app.close !== 'function' || typeof app.listen !== 'function') {
    throw new InvalidOptionError(`nestGraceful() needs a Nest application (const app = await NestFactory.create(AppModule)), got ${describe(app)}`)
  }
  if (registered.has(adapter)) {
    throw new InvalidOptionError('nestGraceful() was already called on this Nest app; call it once')
  }
  const instance = adapter.getInstance()
  const type = typeof adapter.getType === 'function' ? adapter.getType() : undefined
  const fastify = type === 'fastify' || (type === undefined && isFastify(instance))
  let beforeListen = (): Promise<void> | undefined => undefined
  const handle = fastify ? await onFastify(instance as DecoratedFastify) : onExpress(app, instance)
  registered.add(adapter)
  // Nest's close after the HTTP drain: its shutdown hooks release what the requests used.
  handle.onShutdown(async () => { await app.close() }, { name: NEST_FINALIZER, after: ['http'] })
  keepNestFromSignals(app)
  // Nest's app.listen() calls its adapter's listen(): the start graph first, and no Nest signal handler.
  const http = adapter as unknown as NestHttpAdapter
  const listen = http.listen.bind(adapter)
  http.listen = (...args: unknown[]) => {
    keepNestFromSignals(app)
    const first = beforeListen()
    if (first === undefined) return listen(...args)
    // A required startup service that failed: the error goes where a failed bind's would (Nest's listen() rejects).
    return first.then(() => listen(...args), (err: unknown) => { (app.getHttpServer() as net.Server).emit('error', err) })
  }
  return handle

  function onExpress (nest: NestAppLike, express: unknown): NestGracefulHandle {
    if (typeof express !== 'function') {
      throw new InvalidOptionError(`nestGraceful(): the Nest app's HTTP adapter is neither Express nor Fastify (its instance is ${describe(express)})`)
    }
    const e = expressGraceful(express as ExpressLike, options)
    const g = e.graceful
    // Nest made the server in NestFactory.create(): tracked before its listen() binds (or adopts).
    g.attach(nest.getHttpServer() as net.Server)
    beforeListen = () => {
      g.ready()
      return g.starting ? g.start() : undefined
    }
    return fromHandle(g, 'express')
  }

  async function onFastify (f: DecoratedFastify): Promise<NestGracefulHandle> {
    if (f === null || typeof f !== 'object' || typeof f.register !== 'function') {
      throw new InvalidOptionError(`nestGraceful(): the Nest app's Fastify adapter has no Fastify instance (got ${describe(f)})`)
    }
    // The plugin on Nest's own Fastify instance: its server, its close, its ready().
    await f.register(fastifyGraceful, options)
    const out: NestGracefulHandle = {
      platform: 'fastify',
      shutdown: (t) => f.shutdown(t),
      reboot: (t, o) => f.reboot(t, o),
      onShutdown (fn, o) { f.onShutdown(fn, o); return out },
      handover (name, snapshot) { f.handover(name, snapshot); return out },
      inherited: <T>(name: string) => f.inherited<T>(name),
      onInherited (name, fn) { f.onInherited(name, fn as (value: unknown) => unknown); return out },
      onReboot (step, fn, o) { f.onReboot(step, fn, o); return out },
      onStartup (fn, o) { f.onStartup(fn, o); return out },
      get drainSignal () { return f.drainSignal },
      lifecycle: core()
    }
    return out
  }
}

function fromHandle (g: GracefulHandle, platform: 'express' | 'fastify'): NestGracefulHandle {
  const out: NestGracefulHandle = {
    platform,
    shutdown: (t) => g.shutdown(t),
    reboot: (t, o) => g.reboot(t, o),
    onShutdown (fn, o) { g.onShutdown(fn, o); return out },
    handover (name, snapshot) { g.handover(name, snapshot); return out },
    inherited: <T>(name: string) => g.inherited<T>(name),
    onInherited (name, fn) { g.onInherited(name, fn); return out },
    onReboot (step, fn, o) { g.onReboot(step, fn, o); return out },
    onStartup (fn, o) { g.onStartup(fn, o); return out },
    get drainSignal () { return g.drainSignal },
    lifecycle: g.lifecycle
  }
  return out
}

function isFastify (instance: unknown): boolean {
  return instance !== null && typeof instance === 'object' && typeof (instance as { register?: unknown }).register === 'function' && typeof (instance as { addHook?: unknown }).addHook === 'function'
}

/** Nest 10 and 11: how many of the app's `activeShutdownSignals` were unsubscribed already. */
const unsubscribed = new WeakMap<object, number>()

/**
 * The signals Nest's enableShutdownHooks() listens to: Nest 12 keeps its handlers in a Map by signal
 * (`shutdownCleanupRefs`, emptied when it unsubscribes). Nest 10 and 11 keep one handler and the list
 * of signals, which stays when it unsubscribes: the signals past those already unsubscribed count
 * (the handler cannot be looked for among the process's listeners: Nest's proxy of the app wraps it).
 */
function nestSignals (app: NestAppLike): unknown[] {
  const a = app as { shutdownCleanupRefs?: unknown, shutdownCleanupRef?: unknown, activeShutdownSignals?: unknown }
  if (a.shutdownCleanupRefs instanceof Map) return [...a.shutdownCleanupRefs.keys()] as unknown[]
  if (typeof a.shutdownCleanupRef === 'function' && Array.isArray(a.activeShutdownSignals)) return (a.activeShutdownSignals as unknown[]).slice(unsubscribed.get(app) ?? 0)
  return []
}

/**
 * Nest's enableShutdownHooks() adds its own signal handlers: they would close the app while
 * graceful-reboot drains it, then send the signal again (a second signal ends a drain at once). The
 * handlers it added by the time of nestGraceful() and of app.listen() are removed, with a warning.
 */
function keepNestFromSignals (app: NestAppLike): void {
  const signals = nestSignals(app)
  const unsubscribe = (app as { unsubscribeFromProcessSignals?: unknown }).unsubscribeFromProcessSignals
  if (signals.length > 0 && typeof unsubscribe === 'function') {
    ;(unsubscribe as () => void).call(app)
    const active = (app as { activeShutdownSignals?: unknown }).activeShutdownSignals
    if (Array.isArray(active)) unsubscribed.set(app, active.length)
    core().log.warn({ signals }, `graceful-reboot: app.enableShutdownHooks() added handlers for ${signals.join(', ')}; they are removed: graceful-reboot handles the signals, drains first, then runs Nest's shutdown hooks (app.close()) as the finalizer "nest". Remove the enableShutdownHooks() call`)
  }
}
