// Runs in both processes: the admin routes /shutdown?second=N and /reboot?second=N: who is served,
// the `second` parameter, the decision and when the action starts. Framework-free: the adapters
// mount it (adapters/fastify-routes.ts, adapters/express-routes.ts).
import { createHash, timingSafeEqual } from 'node:crypto'
import type * as http from 'node:http'
import * as net from 'node:net'
import { InvalidOptionError, describe, type RebootError } from '../errors'
import type { LifecycleState, RebootOptions, ShutdownOptions } from '../events'
import type { Logger } from '../log'
import { tokenProblem, type AdminOptions } from '../options'

/** The largest `second` the admin routes accept: one hour. */
export const MAX_SECOND = 3600

export type AdminAction = 'shutdown' | 'reboot'
export const ADMIN_ACTIONS: readonly AdminAction[] = ['shutdown', 'reboot']

/** Request headers as Node's IncomingMessage.headers has them: names in lower case. */
export type AdminHeaders = Readonly<Record<string, string | string[] | undefined>>

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
export const ADMIN_CODES = {
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
const loopback = new net.BlockList()
loopback.addSubnet('127.0.0.0', 8, 'ipv4')
loopback.addAddress('::1', 'ipv6')

/** 202 answers whose action has not started yet, per lifecycle: one reboot or shutdown at a time. */
const pending = new WeakMap<AdminTarget, AdminAction>()

/** True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x (::ffff:127.0.0.1), in any spelling. */
export function isLoopback (address: string | undefined): boolean {
  if (address === undefined) return false
  const family = net.isIP(address)
  if (family === 0) return false
  return loopback.check(address, family === 4 ? 'ipv4' : 'ipv6')
}

/** A peer the routes may serve without a token: loopback, or a Unix-socket peer ('unix'). */
export function isLocalPeer (address: string | undefined): boolean {
  return address === 'unix' || isLoopback(address)
}

/**
 * Headers a forwarding proxy, load balancer or CDN adds (besides every X-Forwarded-* header). A
 * request that carries one came through a proxy: its loopback peer is the proxy, not the caller.
 */
export const PROXY_HEADERS: readonly string[] = ['forwarded', 'x-forwarded-for', 'x-real-ip', 'via', 'x-client-ip', 'true-client-ip', 'cf-connecting-ip']

/** Sec-Fetch-Site values of a request the user made (typed URL, bookmark) or a page of the same origin made. */
const SAME_ORIGIN_FETCH = new Set(['none', 'same-origin'])

/**
 * Why a request from a local peer is not a plain local call (curl on the host), or undefined when it
 * is one. Without a token only plain local calls are served, because a local peer is not
 * necessarily the caller:
 * - a proxy on the same host (nginx, a sidecar) makes every caller a loopback peer: refused when the
 *   request carries a header a proxy adds (PROXY_HEADERS or any X-Forwarded-*);
 * - a browser on the host runs pages of any site: refused when the request carries a mark of another
 *   site's page (an Origin other than the Host's, `null` included; Sec-Fetch-Site other than `none`
 *   or `same-origin`).
 * A proxy that adds no header at all is not detectable here: configure a token.
 */
export function notPlainLocalCall (headers: AdminHeaders): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (value === undefined) continue
    const name = key.toLowerCase()
    if (PROXY_HEADERS.includes(name) || name.startsWith('x-forwarded-')) {
      return `the request came through a proxy (it carries the header ${shorten(name)}), and behind a proxy every caller looks local`
    }
  }
  const site = header(headers, 'sec-fetch-site')
  if (site !== undefined && !SAME_ORIGIN_FETCH.has(site.trim().toLowerCase())) {
    return `a browser sent it on behalf of another site's page (sec-fetch-site: ${shorten(site)})`
  }
  const origin = header(headers, 'origin')
  // HTTP/2 names the authority in a pseudo-header instead of Host.
  const host = header(headers, 'host') ?? header(headers, ':authority')
  if (origin !== undefined && !sameOrigin(origin, host)) {
    return `a browser sent it on behalf of a page of another origin (origin ${shorten(origin)}, host ${host === undefined ? 'none' : shorten(host)})`
  }
  return undefined
}

/** One header's value (several of the same name joined with ', '), or undefined when absent. */
function header (headers: AdminHeaders, name: string): string | undefined {
  const value = headers[name] ?? Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1]
  if (value === undefined) return undefined
  return typeof value === 'string' ? value : value.join(', ')
}

/** Whether an Origin header names the origin the Host header names (http or https; `null` never does). */
function sameOrigin (origin: string, host: string | undefined): boolean {
  if (host === undefined) return false
  let o: URL
  let h: URL
  try {
    o = new URL(origin)
    // The Host header read as an authority of the Origin's scheme, so a default port compares equal.
    h = new URL(`${o.protocol}//${host}`)
  } catch {
    return false
  }
  if (o.protocol !== 'http:' && o.protocol !== 'https:') return false
  // Both must be a bare authority: no credentials, path, query or fragment (several values joined fail here too).
  const bare = (u: URL): boolean => u.username === '' && u.password === '' && u.pathname === '/' && u.search === '' && u.hash === ''
  return bare(o) && bare(h) && o.host === h.host
}

function shorten (value: string): string {
  return describe(value.length > 60 ? `${value.slice(0, 60)}...` : value)
}

/** The peer of a request socket, for AdminRequest.remoteAddress ('unix' for a Unix-socket peer). */
export function peerAddress (socket: net.Socket | null | undefined): string | undefined {
  if (socket == null) return undefined
  if (socket.remoteAddress !== undefined) return socket.remoteAddress
  // A Unix-socket peer has no address. Only a live Pipe handle counts: a TCP peer that reset its
  // connection has no address either, and must not pass as local.
  const raw = (socket as net.Socket & { _parent?: net.Socket | null })._parent ?? socket
  const handle = (raw as unknown as { _handle?: { constructor?: { name?: string } } | null })._handle
  return handle?.constructor?.name === 'Pipe' ? 'unix' : undefined
}

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
    if (options.token === '') throw new InvalidOptionError('"admin.token" must be a non-empty string')
    const problem = options.token === undefined ? undefined : tokenProblem(options.token)
    if (problem !== undefined) throw new InvalidOptionError(problem)
    this.digest = options.token === undefined ? undefined : sha256(options.token)
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
          target.reboot(timeout, { trigger: 'admin' }).catch((err: unknown) => {
            // An abort by a shutdown is logged by the reboot itself: this process is draining, not serving.
            if ((err as { code?: unknown } | null)?.code === 'ERR_GRACEFUL_REBOOT_ABORTED') return
            target.log.error({ err }, 'graceful-reboot: admin reboot failed; still serving')
          })
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
