// Runs in the test process: a keep-alive load that records, for every request, whether it went out on
// a socket kept alive from an earlier request or on a new connection. tools/load.ts accounts for
// failure causes but not for sockets; a drain test has to tell "refused: the listener is closed" (a new
// connection, refused by design when nothing takes over the socket) from "reset: a request sent on an
// open keep-alive socket was lost" (the race a graceful drain must not have).
import http from 'node:http'
import type { ExecutionContext } from 'ava'

export interface Sent {
  /** Sent on a socket the agent had kept alive from an earlier request; false: on a new connection. */
  reused: boolean
  /** `performance.now()` when the request was handed to node:http. */
  startedAt: number
  /** 'answered' (a complete response), else the transport error's code (ECONNREFUSED, ECONNRESET, ...), 'timeout' or 'aborted'. */
  outcome: string
  /** Of an answered request. */
  status?: number | undefined
  /** The response's `Connection` header, of an answered request. */
  connection?: string | undefined
}

export interface KeepAliveLoadOptions {
  /** Concurrent loops, each with one request at a time, sharing one keep-alive agent with this many sockets. */
  connections: number
  /** A loop stops after this many requests: the bound when the listener never closes. */
  maxPerConnection: number
  /** A request with no complete response after this long without socket activity fails with 'timeout'. Default 5000. */
  requestTimeoutMs?: number
  /** Called synchronously each time a request settles (e.g. to start a drain from a response's end). */
  onSettled?: (r: Sent, settled: readonly Sent[]) => void
}

export interface KeepAliveLoad {
  /** Requests handed to node:http so far. */
  sent: () => number
  /** Resolves with every request once every loop has ended. */
  done: Promise<Sent[]>
}

/**
 * Starts `connections` loops against `url`. A loop stops by itself at its first refused new connection
 * (the listener is closed: it has nothing more to see) or after `maxPerConnection` requests. No request
 * is retried; every one is recorded exactly once. The agent is destroyed in teardown.
 */
export function keepAliveLoad (t: ExecutionContext, url: string, options: KeepAliveLoadOptions): KeepAliveLoad {
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections, maxFreeSockets: options.connections })
  t.teardown(() => { agent.destroy() })
  const timeout = options.requestTimeoutMs ?? 5000
  const settled: Sent[] = []
  let sent = 0

  const one = (): Promise<Sent> => new Promise((resolve) => {
    const startedAt = performance.now()
    const req = http.get(url, { agent })
    sent++
    let done = false
    const finish = (outcome: string, res?: http.IncomingMessage): void => {
      if (done) return
      done = true
      const r: Sent = { reused: req.reusedSocket, startedAt, outcome }
      if (res !== undefined) {
        r.status = res.statusCode
        r.connection = res.headers.connection
      }
      settled.push(r)
      options.onSettled?.(r, settled)
      resolve(r)
    }
    const failed = (err: NodeJS.ErrnoException): void => { finish(err.code ?? err.message) }
    req.setTimeout(timeout, () => {
      finish('timeout')
      req.destroy()
    })
    req.on('error', failed)
    req.on('response', (res) => {
      res.on('end', () => { finish('answered', res) })
      res.on('error', failed)
      res.on('close', () => { if (!res.complete) finish('aborted') })
      res.resume()
    })
  })

  const loop = async (): Promise<void> => {
    for (let i = 0; i < options.maxPerConnection; i++) {
      const r = await one()
      if (r.outcome === 'ECONNREFUSED') return
    }
  }
  const done = Promise.all(Array.from({ length: options.connections }, loop)).then(() => [...settled])
  return { sent: () => sent, done }
}
