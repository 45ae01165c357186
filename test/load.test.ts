import test from 'ava'
import type { ExecutionContext } from 'ava'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { runLoad } from '../tools/load'
import type { LoadResult } from '../tools/load'

interface TestServer {
  port: number
  url: string
  /** 'connection' events seen by the server. */
  connections: () => number
  /** Requests seen by the server. */
  requests: () => number
}

/** A real node:http server on 127.0.0.1:0, closed in t.teardown. The handler gets the 1-based request number. */
async function startServer (
  t: ExecutionContext,
  handler: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void
): Promise<TestServer> {
  let connections = 0
  let requests = 0
  const server = http.createServer((req, res) => handler(req, res, ++requests))
  server.on('connection', () => { connections++ })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  const port = (server.address() as AddressInfo).port
  return { port, url: `http://127.0.0.1:${port}/`, connections: () => connections, requests: () => requests }
}

function sumCauses (r: LoadResult): number {
  return Object.values(r.causes).reduce((a, b) => a + b, 0)
}

function assertAccounting (t: ExecutionContext, r: LoadResult): void {
  t.is(r.sent, r.answered + r.failed, 'sent === answered + failed')
  t.is(r.ok, r.answered)
  t.is(sumCauses(r), r.failed, 'causes sum to failed')
  t.true(r.badStatus <= r.failed)
  const seriesOk = r.series.reduce((a, b) => a + b.ok, 0)
  const seriesFailed = r.series.reduce((a, b) => a + b.failed, 0)
  t.is(seriesOk, r.answered, 'series ok sums to answered')
  t.is(seriesFailed, r.failed, 'series failed sums to failed')
}

test('healthy keep-alive server: 500 requests, none failed, pids seen, sockets reused', async t => {
  const srv = await startServer(t, (_req, res) => {
    res.setHeader('x-pid', String(process.pid))
    res.end('ok')
  })
  const r = await runLoad({ url: srv.url, connections: 5, mode: 'keep-alive', maxRequests: 500, durationMs: 30_000 }).result
  assertAccounting(t, r)
  t.is(r.sent, 500)
  t.is(r.answered, 500)
  t.is(r.failed, 0)
  t.deepEqual(r.causes, {})
  t.deepEqual(r.pids, [process.pid])
  t.is(srv.requests(), 500)
  t.true(srv.connections() >= 1 && srv.connections() <= 5, `at most 5 sockets, got ${srv.connections()}`)
  t.true(r.latency.p50 > 0 && r.latency.p50 <= r.latency.p99 && r.latency.p99 <= r.latency.max)
  t.deepEqual(r.refusedWindows, [])
})

test('server destroying every 10th request: failures counted once, as resets', async t => {
  let destroyed = 0
  const srv = await startServer(t, (req, res, n) => {
    if (n % 10 === 0) {
      destroyed++
      req.socket.destroy()
      return
    }
    res.end('ok')
  })
  const r = await runLoad({ url: srv.url, connections: 4, mode: 'keep-alive', maxRequests: 200, durationMs: 30_000 }).result
  assertAccounting(t, r)
  t.is(r.sent, 200)
  t.is(srv.requests(), 200)
  t.is(destroyed, 20)
  t.is(r.failed, 20)
  t.is(r.answered, 180)
  for (const cause of Object.keys(r.causes)) t.true(cause === 'ECONNRESET' || cause === 'socket hang up', `unexpected cause ${cause}`)
})

test('Connection: close responses are honoured in keep-alive mode (one socket per request)', async t => {
  const srv = await startServer(t, (_req, res) => {
    res.setHeader('connection', 'close')
    res.end('bye')
  })
  const r = await runLoad({ url: srv.url, connections: 3, mode: 'keep-alive', maxRequests: 60, durationMs: 30_000 }).result
  assertAccounting(t, r)
  t.is(r.sent, 60)
  t.is(r.failed, 0)
  t.deepEqual(r.causes, {})
  t.is(srv.connections(), r.answered)
})

test('new-connection mode opens one connection per request', async t => {
  const seenConnectionHeaders = new Set<string>()
  const srv = await startServer(t, (req, res) => {
    seenConnectionHeaders.add(String(req.headers.connection))
    res.end('ok')
  })
  const r = await runLoad({
    url: srv.url,
    connections: 4,
    mode: 'new-connection',
    maxRequests: 80,
    durationMs: 30_000,
    headers: { Connection: 'keep-alive', 'x-test': '1' }
  }).result
  assertAccounting(t, r)
  t.is(r.sent, 80)
  t.is(r.failed, 0)
  t.is(srv.connections(), 80)
  t.is(srv.requests(), 80)
  t.deepEqual([...seenConnectionHeaders], ['close'])
})

test('socketPath: requests go to the unix socket, with the url path and host', async t => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'load-test-'))
  const socketPath = path.join(dir, 'server.sock')
  const seen = new Set<string>()
  const server = http.createServer((req, res) => {
    seen.add(`${req.headers.host ?? ''} ${req.url ?? ''}`)
    res.setHeader('x-pid', String(process.pid))
    res.end('ok')
  })
  server.listen(socketPath)
  await once(server, 'listening')
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
    await rm(dir, { recursive: true, force: true })
  })
  const r = await runLoad({
    url: 'http://example.invalid/some/path?q=1', socketPath, connections: 2, mode: 'keep-alive', maxRequests: 20, durationMs: 30_000
  }).result
  assertAccounting(t, r)
  t.is(r.answered, 20)
  t.deepEqual(r.pids, [process.pid])
  t.deepEqual([...seen], ['example.invalid /some/path?q=1'])
})

test('a 503 is a failed request with cause "status 503"', async t => {
  const srv = await startServer(t, (_req, res, n) => {
    res.statusCode = n % 2 === 0 ? 503 : 200
    res.end()
  })
  const r = await runLoad({ url: srv.url, connections: 4, mode: 'keep-alive', maxRequests: 40, durationMs: 30_000 }).result
  assertAccounting(t, r)
  t.is(r.sent, 40)
  t.is(r.answered, 20)
  t.is(r.failed, 20)
  t.is(r.badStatus, 20)
  t.deepEqual(r.causes, { 'status 503': 20 })
})

test('okStatus decides what counts as answered', async t => {
  const srv = await startServer(t, (_req, res) => {
    res.statusCode = 404
    res.end()
  })
  const r = await runLoad({
    url: srv.url, connections: 2, mode: 'keep-alive', maxRequests: 10, durationMs: 30_000, okStatus: s => s === 404
  }).result
  assertAccounting(t, r)
  t.is(r.answered, 10)
  t.is(r.failed, 0)
})

test('a closed port: every request fails with ECONNREFUSED, refused windows recorded', async t => {
  const server = http.createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  await new Promise<void>(resolve => server.close(() => resolve()))

  const r = await runLoad({ url: `http://127.0.0.1:${port}/`, connections: 2, mode: 'keep-alive', durationMs: 300 }).result
  assertAccounting(t, r)
  t.true(r.sent > 0)
  t.is(r.answered, 0)
  t.is(r.failed, r.sent)
  t.deepEqual(r.causes, { ECONNREFUSED: r.sent })
  t.true(r.refusedWindows.length >= 1)
  for (const w of r.refusedWindows) t.true(w.start >= 0 && w.start <= w.end && w.end <= r.durationMs)
  // The ~5 ms back-off bounds the request rate: 2 loops over ~300 ms.
  t.true(r.sent < 2 * (300 / 5 + 2), `sent ${r.sent}`)
})

test('requests without a response fail with cause "timeout"', async t => {
  const srv = await startServer(t, () => { /* never answers */ })
  const r = await runLoad({
    url: srv.url, connections: 2, mode: 'keep-alive', maxRequests: 4, durationMs: 30_000, requestTimeoutMs: 150
  }).result
  assertAccounting(t, r)
  t.is(r.sent, 4)
  t.deepEqual(r.causes, { timeout: 4 })
})

test('abort signal stops the run; onProgress sees consistent snapshots', async t => {
  const srv = await startServer(t, (_req, res) => res.end('ok'))
  const ac = new AbortController()
  const progress: LoadResult[] = []
  const run = runLoad({ url: srv.url, connections: 2, mode: 'keep-alive', durationMs: 60_000 }, {
    signal: ac.signal,
    onProgress: r => {
      progress.push(r)
      ac.abort()
    }
  })
  const r = await run.result
  assertAccounting(t, r)
  t.true(progress.length >= 1)
  for (const p of progress) t.true(p.sent >= p.answered + p.failed)
  t.true(r.durationMs < 60_000)
  t.true(r.sent > 0)
  t.deepEqual(run.snapshot(), r, 'snapshot after the end equals the result')
})

test('an already aborted signal sends nothing; stop() ends the run after at most one round; invalid options throw', async t => {
  const srv = await startServer(t, (_req, res) => res.end('ok'))
  const aborted = await runLoad({ url: srv.url, connections: 3, mode: 'keep-alive' }, { signal: AbortSignal.abort() }).result
  t.is(aborted.sent, 0)
  t.is(aborted.failed, 0)

  const run = runLoad({ url: srv.url, connections: 3, mode: 'keep-alive', durationMs: 60_000 })
  run.stop()
  const r = await run.result
  assertAccounting(t, r)
  t.true(r.sent <= 3, `sent ${r.sent}`)
  t.is(srv.requests(), r.sent)

  t.throws(() => runLoad({ url: 'ftp://127.0.0.1/', connections: 1, mode: 'keep-alive' }), { instanceOf: TypeError })
  t.throws(() => runLoad({ url: srv.url, connections: 0, mode: 'keep-alive' }), { instanceOf: RangeError })
})

test('check: request n carries ?id=n; an answer the check refuses is a failure with cause "wrong response"', async t => {
  // Echoes the id, except every 5th request, which gets the id of another.
  const srv = await startServer(t, (req, res, n) => {
    const id = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('id'))
    res.end(JSON.stringify({ id: n % 5 === 0 ? id + 1 : id }))
  })
  const run = runLoad({ url: `${srv.url}?x=1`, connections: 2, mode: 'keep-alive', maxRequests: 100, check: (id, body) => (JSON.parse(body) as { id: number }).id === id })
  const r = await run.result
  assertAccounting(t, r)
  t.is(r.sent, 100)
  t.deepEqual(r.causes, { 'wrong response': 20 })
})
