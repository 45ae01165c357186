// Runs in both processes: who may call the admin routes without a token: a plain local call (a
// loopback or Unix-socket peer, no proxy header, no cross-site browser mark), and the peer address
// of a request socket.
import * as net from 'node:net'
import { describe } from '../errors'

/** Request headers as Node's IncomingMessage.headers has them: names in lower case. */
export type AdminHeaders = Readonly<Record<string, string | string[] | undefined>>

const loopback = new net.BlockList()
loopback.addSubnet('127.0.0.0', 8, 'ipv4')
loopback.addAddress('::1', 'ipv6')

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
