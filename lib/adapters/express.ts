// Runs in both processes: the Express adapter (decorations, a tracked app.listen(), its routes).
import * as http from 'node:http'
import type * as net from 'node:net'
import { mountExpressRoutes } from './express-routes'
import { gracefulHandle, type GracefulHandle } from './http'
import { core } from '../lifecycle'
import { AlreadyRegisteredError, InvalidOptionError, describe } from '../errors'
import { resolveOptions, type GracefulOptions } from '../options'

/** Marks an app that has graceful-reboot. */
const REGISTERED = Symbol.for('graceful-reboot.registered')

/** How to make expressGraceful() track the server (said when it tracks none). */
const UNTRACKED_FIX = "start it with the app's own app.listen(), or call app.graceful.attach(server) before server.listen() for http.createServer(app); for NestJS, call await nestGraceful(app, options) before app.listen()"

/** What graceful-reboot adds to Express's `req` (declared on `Express.Request` too). */
export interface GracefulRequest {
  /**
   * Aborted when the app's drain starts (shutdown, or the old process of a reboot once its successor
   * serves): an SSE stream, a chunked download or a long poll ends by itself instead of being cut at
   * the deadline. One signal shared by every request of the app: remove your listener when the
   * response closes. Its reason is a `DrainStartedError`.
   */
  readonly drainSignal: AbortSignal
}

declare global {
  // Express's own way to type what middleware add to `req` (@types/express-serve-static-core).
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Aborted when the app's drain starts: see `GracefulRequest`. */
      readonly drainSignal: GracefulRequest['drainSignal']
    }
  }
}

/** An Express app (or anything with Express's `listen` that takes a request handler). */
export interface ExpressLike {
  (req: http.IncomingMessage, res: http.ServerResponse, next?: (err?: unknown) => void): void
  listen: (...args: never[]) => net.Server
}

export type GracefulExpressApp<T> = T & {
  shutdown: GracefulHandle['shutdown']
  reboot: GracefulHandle['reboot']
  onShutdown: (...args: Parameters<GracefulHandle['onShutdown']>) => GracefulExpressApp<T>
  /** See `GracefulHandle.handover`. */
  handover: (...args: Parameters<GracefulHandle['handover']>) => GracefulExpressApp<T>
  /** See `GracefulHandle.inherited`. */
  inherited: GracefulHandle['inherited']
  /** See `GracefulHandle.onInherited`. */
  onInherited: <V = unknown>(name: string, fn: (value: V) => unknown) => GracefulExpressApp<T>
  /** See `GracefulHandle.onReboot`. */
  onReboot: (...args: Parameters<GracefulHandle['onReboot']>) => GracefulExpressApp<T>
  /** See `GracefulHandle.onStartup`: `app.listen()` binds once every required service started. */
  onStartup: (...args: Parameters<GracefulHandle['onStartup']>) => GracefulExpressApp<T>
  /** The app's drain signal (the one `req.drainSignal` returns): aborted when its drain starts. */
  readonly drainSignal: AbortSignal
  /** The core handle: `graceful.attach(server)` for a server made with `http.createServer(app)`. */
  graceful: GracefulHandle
}

/**
 * Adds `shutdown`, `reboot`, `onShutdown` and `graceful` to an Express app, and makes `app.listen`
 * track the server it creates. For `http.createServer(app)`, call `app.graceful.attach(server)`
 * before `server.listen()`.
 */
export function expressGraceful<T extends ExpressLike> (app: T, options?: GracefulOptions): GracefulExpressApp<T> {
  if (typeof app !== 'function' || typeof (app as { listen?: unknown }).listen !== 'function') {
    throw new InvalidOptionError(`expressGraceful() needs an Express app (const app = express()), got ${describe(app)}`)
  }
  if ((app as unknown as Record<symbol, unknown>)[REGISTERED] === true) {
    throw new AlreadyRegisteredError('expressGraceful() was already called on this app; call it once')
  }
  const resolved = resolveOptions(options)
  // Routes first: an app they cannot be mounted on is refused before anything is registered.
  mountExpressRoutes(app, resolved)
  let tracksNothing = (): boolean => false
  const handle = gracefulHandle(resolved, 'express', (unit) => {
    tracksNothing = () => unit.servers.length === 0
    // A successor would inherit no socket and fail to bind (EADDRINUSE): refused, with the fix.
    unit.rebootBlocker = () => tracksNothing() ? `expressGraceful() tracks no server: ${UNTRACKED_FIX}` : undefined
  })
  // A request served by a server nobody attached: a shutdown would not drain it, a reboot is refused.
  let checked = false
  ;(app as unknown as { use: (fn: (req: unknown, res: unknown, next: () => void) => void) => void }).use?.((_req, _res, next) => {
    if (!checked) {
      checked = true
      if (tracksNothing()) core().log.warn({ app: 'express' }, `graceful-reboot: the Express app serves a request, but expressGraceful() tracks no server, so a shutdown cannot drain it and a reboot is refused: ${UNTRACKED_FIX}`)
    }
    next()
  })
  const out = app as GracefulExpressApp<T>
  ;(app as unknown as Record<symbol, unknown>)[REGISTERED] = true
  out.graceful = handle
  out.shutdown = handle.shutdown
  out.reboot = handle.reboot
  // Getters on the app and on its request prototype (sub-apps inherit it): nothing per request.
  const drainSignal = { get: () => handle.drainSignal, configurable: true }
  Object.defineProperty(out, 'drainSignal', { ...drainSignal, enumerable: true })
  const requestProto = (app as unknown as { request?: unknown }).request
  if (requestProto !== null && typeof requestProto === 'object') Object.defineProperty(requestProto, 'drainSignal', drainSignal)
  out.onShutdown = (fn, opts) => {
    handle.onShutdown(fn, opts)
    return out
  }
  out.handover = (name, snapshot) => {
    handle.handover(name, snapshot)
    return out
  }
  out.inherited = handle.inherited
  out.onInherited = (name, fn) => {
    handle.onInherited(name, fn)
    return out
  }
  out.onReboot = (step, fn, opts) => {
    handle.onReboot(step, fn, opts)
    return out
  }
  out.onStartup = (fn, opts) => {
    handle.onStartup(fn, opts)
    return out
  }
  // Express 5's listen, with the server tracked before it binds, and bound once the start graph is through.
  out.listen = function listen (this: T, ...args: unknown[]): net.Server {
    handle.ready()
    const server = http.createServer(this)
    handle.attach(server)
    const last = args[args.length - 1]
    if (typeof last === 'function') {
      let called = false
      const once = (...a: unknown[]): void => {
        if (called) return
        called = true
        ;(last as (...x: unknown[]) => void).apply(server, a)
      }
      args[args.length - 1] = once
      server.once('error', once)
    }
    const bind = (): net.Server => server.listen(...(args as Parameters<net.Server['listen']>))
    if (!handle.starting) return bind()
    // A required service that failed: the error goes where a failed bind's would (the callback, or 'error').
    handle.start().then(bind, (err: unknown) => { server.emit('error', err) })
    return server
  } as T['listen']
  return out
}
