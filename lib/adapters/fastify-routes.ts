// Runs in both processes: mounts the health and admin routes on a Fastify instance (the decisions
// are framework-free, in routes/).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { core } from '../lifecycle'
import type { ResolvedOptions } from '../options'
import { ADMIN_ACTIONS, AdminGate, MAX_SECOND, startWhenWritten } from '../routes/admin'
import { peerAddress } from '../routes/local-call'
import { CheckRunner } from '../routes/checks'
import { HEALTH_HEADERS, PROBES, probeWithChecks } from '../routes/health'

/** The JSON schema of the admin query, for Fastify (and its documentation tools). */
const SECOND_QUERY_SCHEMA = {
  type: 'object',
  properties: {
    second: { type: 'integer', minimum: 0, maximum: MAX_SECOND, description: 'drain deadline in seconds' }
  },
  required: ['second']
} as const

/**
 * Mounts the health routes (`options.health`) and the admin routes (`options.admin`) on a Fastify
 * instance, in an encapsulated context of their own: no hook is added to any other route.
 * `appDraining`: this app alone is closing (its own close()), for /ready.
 */
export function mountFastifyRoutes (fastify: FastifyInstance, options: ResolvedOptions, appDraining: () => boolean = () => false): void {
  const { admin, health } = options
  if (admin === undefined && health === undefined) return
  const life = core()
  fastify.register((scope, _opts, done) => {
    if (health !== undefined) {
      const checks = new CheckRunner(health.checks)
      for (const which of PROBES) {
        scope.route({
          method: 'GET',
          url: `${health.prefix}/${which}`,
          // Probes arrive every few seconds: keep them out of the request log.
          logLevel: 'warn',
          handler: async (_req: FastifyRequest, reply: FastifyReply) => {
            const a = await probeWithChecks(which, life, checks, appDraining())
            return reply.code(a.status).headers(HEALTH_HEADERS).send(a.body)
          }
        })
      }
    }
    if (admin !== undefined) {
      const gate = new AdminGate(admin, life)
      // A POST body is not used: accept any content type (or none) instead of a 415 or a JSON error.
      // Fastify still reads it before the handler runs: up to 4 KiB, then discarded; a larger one gets
      // Fastify's 413 (FST_ERR_CTP_BODY_TOO_LARGE) before any admin check, and nothing happens.
      scope.removeAllContentTypeParsers()
      scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 4096 }, (_req, _body, next) => { next(null, undefined) })
      for (const action of ADMIN_ACTIONS) {
        scope.route({
          method: ['GET', 'POST'],
          url: `${admin.prefix ?? ''}/${action}`,
          exposeHeadRoute: false,
          // The schema documents the query; the handler validates the raw query itself, because Ajv's
          // coercion accepts '1e3', '0x10' and ' 5' as integers, and its messages do not name a repeated parameter.
          schema: { querystring: SECOND_QUERY_SCHEMA },
          attachValidation: true,
          handler: (request: FastifyRequest, reply: FastifyReply) => {
            const a = gate.handle(action, {
              method: request.method,
              url: request.raw.url ?? '',
              headers: request.raw.headers,
              remoteAddress: peerAddress(request.raw.socket)
            })
            startWhenWritten(reply.raw, a)
            // HTTP/2 has no Connection header (Node drops it with a warning): the drain sends GOAWAY.
            const headers = request.raw.httpVersionMajor === 1 ? a.headers : withoutConnection(a.headers)
            return reply.code(a.status).headers(headers).send(a.body)
          }
        })
      }
    }
    done()
  })
}

function withoutConnection (headers: Record<string, string>): Record<string, string> {
  const { connection: _connection, ...rest } = headers
  return rest
}
