// Runs in both processes: mounts the health and admin routes on an Express app (the decisions are
// framework-free, in routes/).
import type * as http from 'node:http'
import { InvalidOptionError } from '../errors'
import { core } from '../lifecycle'
import type { ResolvedOptions } from '../options'
import { ADMIN_ACTIONS, AdminGate, startWhenWritten } from '../routes/admin'
import { peerAddress } from '../routes/local-call'
import { CheckRunner } from '../routes/checks'
import { HEALTH_HEADERS, PROBES, probeWithChecks } from '../routes/health'

type ExpressHandler = (req: http.IncomingMessage & { originalUrl?: string }, res: http.ServerResponse) => void
interface ExpressRoutes {
  get: (path: string, handler: ExpressHandler) => unknown
  post: (path: string, handler: ExpressHandler) => unknown
}

/**
 * Mounts the health and admin routes on an Express app with `app.get` / `app.post`, at the point
 * where `expressGraceful` is called (call it before your own middleware so probes skip it).
 */
export function mountExpressRoutes (app: unknown, options: ResolvedOptions): void {
  const { admin, health } = options
  if (admin === undefined && health === undefined) return
  const routes = app as Partial<ExpressRoutes>
  if (typeof routes.get !== 'function' || typeof routes.post !== 'function') {
    throw new InvalidOptionError('the "admin" and "health" options need an Express app with get() and post() to mount their routes')
  }
  const life = core()
  if (health !== undefined) {
    const checks = new CheckRunner(health.checks)
    for (const which of PROBES) {
      routes.get.call(app, `${health.prefix}/${which}`, (_req, res) => {
        void probeWithChecks(which, life, checks).then((a) => { sendJson(res, a.status, HEALTH_HEADERS, a.body) })
      })
    }
  }
  if (admin !== undefined) {
    const gate = new AdminGate(admin, life)
    for (const action of ADMIN_ACTIONS) {
      const handler: ExpressHandler = (req, res) => {
        const a = gate.handle(action, {
          method: req.method ?? '',
          url: req.originalUrl ?? req.url ?? '',
          headers: req.headers,
          remoteAddress: peerAddress(req.socket)
        })
        startWhenWritten(res, a)
        sendJson(res, a.status, a.headers, a.body)
      }
      const path = `${admin.prefix ?? ''}/${action}`
      routes.get.call(app, path, handler)
      routes.post.call(app, path, handler)
    }
  }
}

function sendJson (res: http.ServerResponse, status: number, headers: Readonly<Record<string, string>>, body: unknown): void {
  res.statusCode = status
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  res.end(JSON.stringify(body))
}
