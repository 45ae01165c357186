// Runs in both processes: the admin routes /shutdown?second=N and /reboot?second=N: who is served,
// the `second` parameter, the decision and when the action starts. Framework-free: the adapters
// mount it (adapters/fastify-routes.ts, adapters/express-routes.ts).
import { createHash, timingSafeEqual } from 'node:crypto'
import type * as http from 'node:http'
import { describe, logRebootFailure, type RebootError } from '../errors'
import type { LifecycleState, RebootOptions, ShutdownOptions } from '../events'
import type { Logger } from '../log'
import { checkToken } from '../admin-token'
import type { AdminOptions } from '../options'

/** The largest `second` the admin routes accept: one hour. */
export const MAX_SECOND = 3600

export type AdminAction = 'shutdown' | 'reboot'
export const ADMIN_ACTIONS: readonly AdminAction[] = ['shutdown', 'reboot']

import { isLocalPeer, notPlainLocalCall, type AdminHeaders } from './local-call'

/** One admin request, as any framework sees it. */
export interface AdminRequest {
  method: string
  /** The request target (path and query string); only the query string is read. */
  url: string
  /**
   * The headers as received (the framework's raw headers, not a copy a hook may have changed). Read:
   * Authorization; without a token also the proxy headers (PROXY_HEADERS, X-Forwarded-*) and the
   * browser's marks (Origin against Host, Sec-Fetch-Site).
   */
  headers: AdminHeaders
  /**
   * The peer as the socket reports it (never X-Forwarded-For or a framework's `ip`, which a client can
   * forge), or 'unix' for a peer on a Unix socket; undefined when unknown (the peer already went away).
   */
  remoteAddress: string | undefined
}

/** The 202 body: what will happen, with the deadline in ms, and which process does it. */
export interface AcceptedBody {
  action: AdminAction
  /** The drain deadline in milliseconds (`second` * 1000). */
  timeout: number
  pid: number
}

/** Every refusal: Fastify's error shape, with a stable `code`. */
export interface AdminErrorBody {
  statusCode: number
  error: string
  code: string
  message: string
}

export interface AdminAnswer {
  status: 202 | 400 | 401 | 403 | 405 | 409 | 501
  headers: Record<string, string>
  body: AcceptedBody | AdminErrorBody
  /** Only on 202: starts the action. Call it once the 202 is written (the response's 'finish'). */
  start?: () => void
  /** Only on 202: the response was not written (the client went away first); nothing happens. */
  abandon?: () => void
}

/** Codes of the admin refusals that are not a RebootError's. */
const ADMIN_CODES = {
  method: 'ERR_GRACEFUL_ADMIN_METHOD',
  unauthorized: 'ERR_GRACEFUL_ADMIN_UNAUTHORIZED',
  forbidden: 'ERR_GRACEFUL_ADMIN_FORBIDDEN',
  second: 'ERR_GRACEFUL_ADMIN_SECOND',
  shuttingDown: 'ERR_GRACEFUL_SHUTTING_DOWN'
} as const

/** The part of the lifecycle the admin routes drive (a fake in unit tests). */
export interface AdminTarget {
  readonly state: LifecycleState
  readonly log: Logger
  readonly seam: { readonly pid: number }
  canReboot (): RebootError | undefined
  shutdown (timeout?: number, options?: ShutdownOptions): Promise<unknown>
  reboot (timeout?: number, options?: RebootOptions): Promise<number>
}

const REASONS: Record<AdminAnswer['status'], string> = {
  202: 'Accepted',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  409: 'Conflict',
  501: 'Not Implemented'
}

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }
const BEARER = /^Bearer +(\S+) *$/i
/** 202 answers whose action has not started yet, per lifecycle: one reboot or shutdown at a time. */
const pending = new WeakMap<AdminTarget, AdminAction>()

/**
 * Reads `second` from a request target's query string: an integer 0..MAX_SECOND written with digits
 * only, given once. Returns the number, or the message naming the problem.
 */
export function parseSecond (url: string): { second: number } | { problem: string } {
  const q = url.indexOf('?')
  const values = new URLSearchParams(q === -1 ? '' : url.slice(q + 1)).getAll('second')
  const range = `an integer from 0 to ${MAX_SECOND}`
  if (values.length === 0) return { problem: `missing query parameter "second" (the drain deadline in seconds, ${range})` }
  if (values.length > 1) return { problem: `query parameter "second" is given ${values.length} times; give it once` }
  const raw = values[0] as string
  const shown = describe(raw.length > 40 ? `${raw.slice(0, 40)}...` : raw)
  if (/^[0-9]+$/.test(raw)) {
    const second = Number(raw)
    if (second > MAX_SECOND) return { problem: `"second" is too large: at most ${MAX_SECOND} (one hour), got ${shown}` }
    return { second }
  }
  if (/^-[0-9]*\.?[0-9]+$/.test(raw)) return { problem: `"second" must not be negative: ${range}, got ${shown}` }
  if (/^([0-9]+\.[0-9]*|\.[0-9]+)$/.test(raw)) return { problem: `"second" must be a whole number of seconds: ${range}, got ${shown}` }
  if (raw === '') return { problem: `"second" is empty: ${range}` }
  return { problem: `"second" is not a number: ${range} written with digits only, got ${shown}` }
}

/** The admin routes of one app: the token digest is computed once. */
export class AdminGate {
  private readonly digest: Buffer | undefined
  private readonly target: AdminTarget

  constructor (options: AdminOptions, target: AdminTarget) {
    this.digest = options.token === undefined ? undefined : sha256(checkToken(options.token))
    this.target = target
  }

  /**
   * Decides one request, in this order: method (405), auth (401 missing token, 403 wrong token or,
   * without a token, a request that is not a plain local call: a non-local peer, a proxy header, a
   * cross-site browser mark), `second` (400), state (409 in flight, 501 unsupported), and
   * 202. Nothing happens unless the answer is 202 and the adapter calls `start()` once it is written.
   */
  handle (action: AdminAction, req: AdminRequest): AdminAnswer {
    if (req.method !== 'GET' && req.method !== 'POST') {
      return refuse(405, ADMIN_CODES.method, `use GET or POST, not ${req.method}`, { allow: 'GET, POST' })
    }
    const denied = this.authorize(req)
    if (denied !== undefined) {
      const { code, message } = denied.body as AdminErrorBody
      this.target.log.warn({ action, peer: req.remoteAddress, status: denied.status, code, reason: message }, 'graceful-reboot: admin request refused')
      return denied
    }
    const parsed = parseSecond(req.url)
    if ('problem' in parsed) return refuse(400, ADMIN_CODES.second, parsed.problem)
    const conflict = this.conflict(action)
    if (conflict !== undefined) return conflict
    return this.accept(action, parsed.second * 1000, req.remoteAddress)
  }

  private authorize (req: AdminRequest): AdminAnswer | undefined {
    if (this.digest === undefined) {
      if (!isLocalPeer(req.remoteAddress)) {
        return refuse(403, ADMIN_CODES.forbidden, `no "admin.token" is configured, so only plain local calls (a loopback or Unix-socket peer) are served; configure admin.token and send "Authorization: Bearer <token>" to call from elsewhere`)
      }
      const problem = notPlainLocalCall(req.headers)
      if (problem === undefined) return undefined
      return refuse(403, ADMIN_CODES.forbidden, `no "admin.token" is configured, so only plain local calls are served, and this is not one: ${problem}; configure admin.token and send "Authorization: Bearer <token>"`)
    }
    const authorization = req.headers.authorization
    const token = BEARER.exec(typeof authorization === 'string' ? authorization : '')?.[1]
    if (token === undefined) {
      return refuse(401, ADMIN_CODES.unauthorized, 'missing "Authorization: Bearer <token>"', { 'www-authenticate': 'Bearer realm="graceful-reboot"' })
    }
    // Digests of equal length: neither the token nor its length leaks through the comparison time.
    if (!timingSafeEqual(sha256(token), this.digest)) return refuse(403, ADMIN_CODES.forbidden, 'wrong token')
    return undefined
  }

  private conflict (action: AdminAction): AdminAnswer | undefined {
    const queued = pending.get(this.target)
    const state = this.target.state
    if (action === 'shutdown') {
      if (state === 'draining' || state === 'stopped' || queued === 'shutdown') {
        return refuse(409, ADMIN_CODES.shuttingDown, `a shutdown is already in progress (the process is ${queued === 'shutdown' ? 'about to drain' : state})`)
      }
      // A shutdown during a reboot (queued or under way) wins: the lifecycle kills a successor not yet ready.
      return undefined
    }
    if (queued === 'reboot') return refuse(409, 'ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'a reboot is already in progress; one at a time')
    if (queued === 'shutdown') return refuse(409, ADMIN_CODES.shuttingDown, 'cannot reboot: a shutdown is about to start')
    const refusal = this.target.canReboot()
    if (refusal === undefined) return undefined
    return refuse(refusal.code === 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' ? 501 : 409, refusal.code, refusal.message)
  }

  private accept (action: AdminAction, timeout: number, peer: string | undefined): AdminAnswer {
    const target = this.target
    pending.set(target, action)
    let settled = false
    const release = (): boolean => {
      if (settled) return false
      settled = true
      if (pending.get(target) === action) pending.delete(target)
      return true
    }
    return {
      status: 202,
      headers: { ...JSON_HEADERS, connection: 'close' },
      body: { action, timeout, pid: target.seam.pid },
      start: () => {
        if (!release()) return
        target.log.info({ action, timeout, peer }, `graceful-reboot: admin ${action} accepted`)
        if (action === 'shutdown') {
          target.shutdown(timeout, { reason: 'shutdown', trigger: 'admin' }).catch((err: unknown) => {
            target.log.error({ err }, 'graceful-reboot: admin shutdown failed')
          })
        } else {
          target.reboot(timeout, { trigger: 'admin' }).catch(logRebootFailure(target.log, 'admin reboot'))
        }
      },
      abandon: () => {
        if (release()) target.log.warn({ action, peer }, `graceful-reboot: admin ${action} not started: the client went away before the 202 was written`)
      }
    }
  }
}

function refuse (status: Exclude<AdminAnswer['status'], 202>, code: string, message: string, headers: Record<string, string> = {}): AdminAnswer {
  return { status, headers: { ...JSON_HEADERS, ...headers }, body: { statusCode: status, error: REASONS[status], code, message } }
}

function sha256 (s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest()
}

/** Starts the action once the 202 is on the wire; drops it if the response closes unwritten or is not a 202 after all. */
export function startWhenWritten (res: http.ServerResponse, answer: AdminAnswer): void {
  const { start, abandon } = answer
  if (start === undefined || abandon === undefined) return
  let finished = false
  res.once('finish', () => {
    finished = true
    // An onSend hook or middleware that failed turned the answer into something else: do nothing.
    if (res.statusCode === 202) start()
    else abandon()
  })
  res.once('close', () => { if (!finished) abandon() })
}
