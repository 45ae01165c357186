// Runs in both processes: the Fastify plugin (decorators, hooks, graceful close(), its routes).
// The only file, with fastify-routes.ts, that imports Fastify; its exported types spell the plugin
// without Fastify's, so the package's declarations load in projects without fastify installed.
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginCallback } from 'fastify'
import { mountFastifyRoutes } from './fastify-routes'
import type { Finalizer, FinalizerContext, FinalizerOptions } from '../drain/finalizers'
import type { RebootOptions, ShutdownResult } from '../events'
import { core } from '../lifecycle'
import { resolveOptions, type GracefulOptions, type ResolvedOptions } from '../options'
import { GracefulUnit } from '../drain/app'
import { AlreadyRegisteredError } from '../errors'
import type { Snapshot } from '../outgoing/state'
import type { DeprecatedHookStep, RebootHook, RebootHookOptions } from '../lifecycle/hooks'
import type { RebootHookStep } from '../steps'
import type { StartupOptions, StartupService } from '../startup/graph'

declare module 'fastify' {
  interface FastifyInstance {
    /** Process-wide graceful shutdown with a deadline in ms (default: the `timeout` option). Idempotent. */
    shutdown (timeout?: number): Promise<ShutdownResult>
    /** Process-wide reboot: a successor inherits the listening sockets. Resolves with its pid once it is ready and through probation. */
    reboot (timeout?: number, options?: Pick<RebootOptions, 'stateful'>): Promise<number>
    /** Registers a finalizer, run during shutdown in dependency order around the built-in node 'http'. */
    onShutdown (fn: Finalizer, options?: FinalizerOptions): FastifyInstance
    /** Aborted when this app's drain starts (shutdown, or the old process of a reboot): end long responses then. The same signal as `request.drainSignal`. */
    readonly drainSignal: AbortSignal
    /** Registers the state a successor of this process gets from `inherited(name)` (see `GracefulHandle.handover`). */
    handover (name: string, snapshot: Snapshot): FastifyInstance
    /** In a successor, while it boots: the old process's snapshot under `name`, or undefined (see `GracefulHandle.inherited`). */
    inherited<T = unknown> (name: string): Promise<T | undefined>
    /** In a successor: `fn` gets the old process's final snapshot under `name`, once its drain is over. */
    onInherited<T = unknown> (name: string, fn: (value: T) => unknown): FastifyInstance
    /** A hook around a step of a reboot, in the old process and in the successor ('beforeSpawn' may veto it). */
    onReboot (step: RebootHookStep | DeprecatedHookStep, fn: RebootHook, options?: RebootHookOptions): FastifyInstance
    /** A service the app starts before it listens (in dependency order, retried): `ready()`/`listen()` wait for the required ones. */
    onStartup (fn: StartupService, options?: StartupOptions): FastifyInstance
  }
  interface FastifyRequest {
    /**
     * Aborted when this app's drain starts (shutdown, or the old process of a reboot once its
     * successor serves): an SSE stream, a chunked download or a long poll ends by itself instead of
     * being cut at the deadline. One signal shared by every request of the app: remove your
     * listener when the response closes. Its reason is a `DrainStartedError`.
     */
    readonly drainSignal: AbortSignal
  }
}

/** WebSocket close code sent to @fastify/websocket clients: 1001 "going away". */
export const GOING_AWAY = 1001

/** Marks an instance (and, through the prototype, its child contexts) that has the plugin. */
const REGISTERED = Symbol.for('graceful-reboot.registered')

interface WebSocketLike {
  readyState: number
  close (code?: number, reason?: string): void
}

const plugin: FastifyPluginCallback<GracefulOptions> = (fastify, opts, done) => {
  // A second registration would collide on Fastify's decorators: say so before touching anything.
  if ((fastify as unknown as Record<symbol, unknown>)[REGISTERED] === true) {
    done(new AlreadyRegisteredError('graceful-reboot is already registered on this Fastify instance (or a parent of it); register it once, on the root instance'))
    return
  }
  // avvio does not catch a throw from a callback plugin (it becomes an uncaught exception and the
  // registration hangs until avvio's plugin timeout): hand every error to done().
  try {
    setUp(fastify, opts, done)
  } catch (err) {
    done(err as Error)
  }
}

function setUp (fastify: FastifyInstance, opts: GracefulOptions, done: (err?: Error) => void): void {
  let options: ResolvedOptions
  try {
    options = resolveOptions(withoutRegisterOptions(opts))
  } catch (err) {
    done(err as Error)
    return
  }
  const life = core()
  const unit = new GracefulUnit('fastify', options, life.logger(options.logger ?? fastify.log), life.seam)
  unit.attach(fastify.server)

  // @fastify/websocket closes its clients without a code (1005); close them with 1001 first.
  unit.finalizers.add((ctx) => { closeWebSockets(fastify, ctx) }, { name: 'websocket' })

  fastify.decorate('shutdown', (timeout?: number) => life.shutdown(timeout, { reason: 'shutdown', trigger: 'code' }))
  fastify.decorate('reboot', (timeout?: number, o?: Pick<RebootOptions, 'stateful'>) =>
    life.reboot(timeout, { trigger: 'code', stateful: o?.stateful === true }))
  // listen({ host: 'localhost' }) makes Fastify bind a second socket we do not see: refuse to reboot.
  unit.rebootBlocker = () => {
    if (!fastify.server.listening) return undefined
    const bound = fastify.addresses()
    if (bound.length <= 1) return undefined
    return `Fastify listens on ${bound.map((a) => typeof a === 'string' ? a : `${a.address}:${a.port}`).join(' and ')} (host 'localhost' binds one socket per address) ` +
      "and only the first can be handed to a successor; listen on host '127.0.0.1', '::1' or '0.0.0.0' instead"
  }
  // A getter on the prototypes: nothing is made per request, the signal itself on first read.
  const drainSignal = { getter: () => unit.drainSignal }
  fastify.decorate('drainSignal', drainSignal)
  fastify.decorateRequest('drainSignal', drainSignal)
  fastify.decorate('onShutdown', function (this: FastifyInstance, fn: Finalizer, o?: FinalizerOptions) {
    unit.finalizers.add(fn, o)
    return this
  })
  fastify.decorate('handover', function (this: FastifyInstance, name: string, snapshot: Snapshot) {
    life.warm.handover(name, snapshot, unit)
    return this
  })
  fastify.decorate('inherited', (name: string) => life.warm.inherited(name))
  fastify.decorate('onInherited', function (this: FastifyInstance, name: string, fn: (value: unknown) => unknown) {
    life.warm.onInherited(name, fn)
    return this
  })
  fastify.decorate('onReboot', function (this: FastifyInstance, step: RebootHookStep | DeprecatedHookStep, fn: RebootHook, o?: RebootHookOptions) {
    life.warm.hooks.add(step, fn, o)
    return this
  })
  fastify.decorate('onStartup', function (this: FastifyInstance, fn: StartupService, o?: StartupOptions) {
    unit.startup.add(fn, o)
    return this
  })

  // A plain close() drains first, so requests on open keep-alive connections are served (with
  // Connection: close) instead of Fastify's 503, and nothing waits for keepAliveTimeout.
  const frameworkClose = fastify.close.bind(fastify) as () => Promise<undefined>
  let closing: Promise<void> | undefined
  const closeOnce = (): Promise<void> => {
    closing ??= frameworkClose().then(() => {})
    return closing
  }
  unit.closeApp = closeOnce
  // From a finalizer after 'http' (NestJS's close), no connection is left: close at once, not after the drain that runs it.
  const drained = (): Promise<unknown> => unit.httpDrained ? Promise.resolve() : unit.drain(life.seam.now() + options.timeout, 'close', 'close')
  const gracefulClose = (cb?: (err?: Error) => void): unknown => {
    const p = drained().then(closeOnce)
    if (typeof cb !== 'function') return p
    p.then(() => { cb() }, (err: Error) => { cb(err) })
    return fastify
  }
  fastify.close = gracefulClose as FastifyInstance['close']
  // Any other path into Fastify's close still drains before the server closes.
  fastify.addHook('preClose', async () => {
    await drained()
  })
  // The start graph runs before Fastify binds: a required service that fails makes ready()/listen() reject.
  fastify.addHook('onReady', (next) => {
    try {
      unit.finalizers.seal()
    } catch (err) {
      next(err as Error)
      return
    }
    unit.startup.run(life.seam, unit.log).then(() => { next() }, (err: Error) => { next(err) })
  })
  fastify.addHook('onClose', (_instance, next) => {
    unit.detach()
    life.unregister(unit)
    next()
  })
  life.register(unit)
  mountFastifyRoutes(fastify, options, () => unit.isDraining)
  ;(fastify as unknown as Record<symbol, unknown>)[REGISTERED] = true
  done()
}

/** Fastify hands a plugin the options of `register()` itself too (prefix, logLevel, logSerializers). */
function withoutRegisterOptions (opts: unknown): unknown {
  if (opts === null || typeof opts !== 'object') return opts
  const { prefix: _prefix, logLevel: _logLevel, logSerializers: _logSerializers, ...rest } = opts as Record<string, unknown>
  return rest
}

/**
 * Sends every @fastify/websocket client a close frame with 1001. The drain then waits for their
 * sockets to close and destroys those still open at the deadline.
 */
function closeWebSockets (fastify: FastifyInstance, ctx: FinalizerContext): void {
  const clients = (fastify as unknown as { websocketServer?: { clients?: Set<WebSocketLike> } }).websocketServer?.clients
  if (clients === undefined) return
  const reason = ctx.reason === 'reboot' ? 'server restarting' : 'server shutting down'
  for (const ws of clients) {
    if (ws.readyState < 2) ws.close(GOING_AWAY, reason)
  }
}

/**
 * The plugin's type, written without Fastify's types (a Fastify plugin is a function of the instance,
 * the options and a callback): `app.register()` infers `GracefulOptions` from it.
 */
export type FastifyGracefulPlugin = (instance: unknown, options: GracefulOptions, done: (err?: Error) => void) => void

/** The Fastify plugin. `app.register(graceful, options)`. */
export const fastifyGraceful: FastifyGracefulPlugin = fp(plugin, { fastify: '5.x', name: 'graceful-reboot' }) as FastifyGracefulPlugin
