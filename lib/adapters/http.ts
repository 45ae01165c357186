// Runs in both processes: the framework-free API, for plain http(s) servers and for the Express adapter.
import type * as net from 'node:net'
import type { Finalizer, FinalizerOptions } from '../drain/finalizers'
import type { RebootOptions, ShutdownResult } from '../events'
import { core, type Lifecycle } from '../lifecycle'
import { ms, resolveOptions, type GracefulOptions, type ResolvedOptions } from '../options'
import { GracefulUnit, type UnitResult } from '../drain/app'
import { InvalidOptionError, describe } from '../errors'
import type { Snapshot } from '../outgoing/state'
import type { DeprecatedHookStep, RebootHook, RebootHookOptions } from '../lifecycle/hooks'
import type { RebootHookStep } from '../steps'
import type { StartupOptions, StartupService } from '../startup/graph'

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
  /**
   * Registers the state a successor of this process gets from `inherited(name)`: `snapshot` is called
   * when the successor asks (and, for its `onInherited(name)`, once more when this process's drain is
   * over). It must only read: if the successor fails, this process serves on with its state as it was.
   * The value travels as a structured clone (Map, Set, Date, Buffer, typed arrays, nested objects).
   * Names are process-wide.
   */
  handover (name: string, snapshot: Snapshot): GracefulHandle
  /**
   * In a successor, while it boots: the old process's snapshot under `name`, taken now; undefined on
   * a fresh start, when nothing is registered under it, or when the old process is gone. Rejects with
   * a HandoverError (`ERR_GRACEFUL_HANDOVER_*`) when the snapshot threw, could not be cloned, was over
   * `handoverMaxBytes` or took longer than `handoverTimeout`.
   */
  inherited<T = unknown> (name: string): Promise<T | undefined>
  /**
   * In a successor: `fn` gets the old process's final snapshot under `name`, taken once its drain is
   * over (no request reaches it then), to merge what it served after `inherited()`. Not called when
   * the old process is gone first, or on a fresh start.
   */
  onInherited<T = unknown> (name: string, fn: (value: T) => unknown): GracefulHandle
  /** A hook around a step of a reboot, in the old process and in the successor ('beforeSpawn' may veto it). */
  onReboot (step: RebootHookStep | DeprecatedHookStep, fn: RebootHook, options?: RebootHookOptions): GracefulHandle
  /**
   * A service the app starts (a database pool, a queue consumer, a cache warm-up), in dependency order
   * (`after`), retried with backoff: the app announces ready (a successor tells its old process) once
   * every required one started. Register before the app listens.
   */
  onStartup (fn: StartupService, options?: StartupOptions): GracefulHandle
  /**
   * Runs the start graph (once): resolves when every required service started; rejects with a
   * StartupError when one failed. Call before `server.listen()` (Express's `app.listen()` does; a
   * listen before it still announces only once the graph is through).
   */
  start (): Promise<void>
  /** Whether the app has startup services and not every one is started yet (before `start()` too). */
  readonly starting: boolean
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

/** A handle for options already resolved (the Express adapter resolves them once for its routes too); `setUp` sees the app's unit before it registers. */
export function gracefulHandle (resolved: ResolvedOptions, name: string, setUp?: (unit: GracefulUnit) => void): GracefulHandle {
  const life = core()
  const unit = new GracefulUnit(name, resolved, life.logger(resolved.logger), life.seam)
  setUp?.(unit)
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
    handover (name, snapshot) {
      life.warm.handover(name, snapshot, unit)
      return handle
    },
    inherited: <T>(name: string) => life.warm.inherited(name) as Promise<T | undefined>,
    onInherited (name, fn) {
      life.warm.onInherited(name, fn as (value: unknown) => unknown)
      return handle
    },
    onReboot (step, fn, opts) {
      life.warm.hooks.add(step, fn, opts)
      return handle
    },
    onStartup (fn, opts) {
      unit.startup.add(fn, opts)
      return handle
    },
    start: () => unit.startup.run(life.seam, unit.log),
    get starting () { return unit.startup.size > 0 && unit.startup.status().state !== 'started' },
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
