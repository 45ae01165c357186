// Runs in both processes: the framework-free API, for plain http(s) servers and for the Express adapter.
import type * as net from 'node:net'
import type { Finalizer, FinalizerOptions } from '../drain/finalizers'
import type { RebootOptions, ShutdownResult } from '../events'
import { core, type Lifecycle } from '../lifecycle'
import { ms, resolveOptions, type GracefulOptions, type ResolvedOptions } from '../options'
import { GracefulUnit, type UnitResult } from '../drain/app'
import { InvalidOptionError, describe } from '../errors'

/** What `createGraceful` returns, and what `expressGraceful` adds to an Express app. */
export interface GracefulHandle {
  /** Tracks a server's connections. Call it before the server listens: a listening server is refused (InvalidOptionError). */
  attach (server: net.Server): GracefulHandle
  /** Checks the finalizer graph now (a coded error for a cycle or an unknown name). Adapters call it at listen. */
  ready (): void
  /** Process-wide shutdown: drains every app in the process, then exits (unless `exit: false`). Idempotent. */
  shutdown (timeout?: number): Promise<ShutdownResult>
  /** Process-wide reboot: a successor inherits the listening sockets; resolves with its pid. */
  reboot (timeout?: number, options?: Pick<RebootOptions, 'stateful'>): Promise<number>
  /** Registers a finalizer for this app. */
  onShutdown (fn: Finalizer, options?: FinalizerOptions): GracefulHandle
  /** Drains this app only (no exit) and stops tracking it. */
  close (timeout?: number): Promise<UnitResult>
  /**
   * Aborted when this app's drain starts (shutdown, `close()`, or the old process of a reboot once
   * its successor serves): long responses (SSE, chunked downloads, long polls) end by themselves
   * instead of being cut at the deadline. One signal for the whole app, made on first read; remove
   * your listener when the response closes. Its reason is a `DrainStartedError`.
   */
  readonly drainSignal: AbortSignal
  readonly lifecycle: Lifecycle
}

/**
 * The core API for servers without a framework:
 * ```ts
 * const g = createGraceful({ timeout: 10_000 })
 * const server = http.createServer(handler)
 * g.attach(server)  // before listen; returns the handle, for chaining
 * server.listen(3000)
 * ```
 */
export function createGraceful (options?: GracefulOptions): GracefulHandle {
  const resolved = resolveOptions(options)
  // A plain server has no router to mount them on: refused rather than silently left out.
  const routes = [resolved.health !== undefined ? 'health' : '', resolved.admin !== undefined ? 'admin' : ''].filter((n) => n !== '')
  if (routes.length > 0) {
    throw new InvalidOptionError(`createGraceful() does not serve routes, so ${routes.map((n) => `"${n}"`).join(' and ')} would do nothing: use the Fastify plugin or expressGraceful() for them, or leave ${routes.length > 1 ? 'them' : 'it'} out`)
  }
  return gracefulHandle(resolved, 'http')
}

/** A handle for options already resolved (the Express adapter resolves them once for its routes too). */
export function gracefulHandle (resolved: ResolvedOptions, name: string): GracefulHandle {
  const life = core()
  const unit = new GracefulUnit(name, resolved, life.logger(resolved.logger), life.seam)
  life.register(unit)
  const handle: GracefulHandle = {
    attach (server) {
      // A server that listens already was bound by itself: a reboot could not hand its socket over.
      if (server.listening && !unit.tracks(server)) {
        throw new InvalidOptionError(`attach() got a server that already listens on ${describe(server.address())}: call attach(server) before server.listen()`)
      }
      unit.attach(server)
      return handle
    },
    ready () { unit.finalizers.seal() },
    shutdown: (timeout) => life.shutdown(timeout, { reason: 'shutdown', trigger: 'code' }),
    reboot: (timeout, o) => life.reboot(timeout, { trigger: 'code', stateful: o?.stateful === true }),
    onShutdown (fn, opts) {
      unit.finalizers.add(fn, opts)
      return handle
    },
    async close (timeout) {
      const limit = ms(timeout, 'timeout', resolved.timeout)
      const result = await unit.shutdown(life.seam.now() + limit, 'close', 'close')
      unit.detach()
      life.unregister(unit)
      return result
    },
    get drainSignal () { return unit.drainSignal },
    lifecycle: life
  }
  return handle
}

/**
 * With `readiness: 'manual'`: this process serves now. Writes the PID file and, in a successor,
 * tells the old process to drain. Without it, that happens once every inherited socket is adopted.
 */
export function declareReady (): void {
  core().announceReady()
}
