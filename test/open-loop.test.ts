// Runs in the test process: the open-loop client of the benchmark (tools/open-loop.ts) against real
// servers on 127.0.0.1: latency counted from the intended send time, every due request accounted for.
import test from 'ava'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import { openLoop } from '../tools/open-loop'

async function listen (server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as net.AddressInfo).port
}

function closer (server: http.Server): () => Promise<void> {
  return async () => {
    server.closeAllConnections()
    await new Promise((resolve) => { server.close(resolve) })
  }
}

test('a request that waits for its connection counts the wait: latency from the intended send time, not from the write', async (t) => {
  // The first request's answer is held until the client has had several more requests due on the same connection.
  let first = true
  const held: Array<() => void> = []
  const server = http.createServer((_req, res) => {
    if (first) {
      first = false
      held.push(() => res.end('ok'))
      return
    }
    res.end('ok')
  })
  const port = await listen(server)
  t.teardown(closer(server))
  const run = openLoop({ port, connections: 1, periodMs: 20, durationMs: 400 })
  t.teardown(run.destroy)
  await run.ready
  // Release once 6 more requests are due behind it (by the client's own count, not a fixed sleep).
  await new Promise<void>((resolve) => {
    const check = (): void => { if (run.due >= 7) resolve(); else setImmediate(check) }
    check()
  })
  const releasedAt = run.now()
  held.shift()?.()
  await run.stop()
  const queued = run.window(10, 130) // due at 20, 40, ..., 120: all waited for the first answer
  t.is(queued.answered, 6, JSON.stringify(queued))
  t.true(queued.latency.p50 >= releasedAt - 120, `each counts its wait: p50 ${queued.latency.p50} ms, released at ${releasedAt} ms`)
  t.true(queued.latency.max >= releasedAt - 20, `the first queued one waited longest: ${queued.latency.max} ms`)
  t.true(queued.service.p50 < queued.latency.p50 - 20, `from the write they look fast: ${queued.service.p50} ms vs ${queued.latency.p50} ms`)
  const all = run.window(-Infinity, Infinity)
  t.is(all.due, run.due)
  t.is(all.answered + all.failed, all.due, 'every due request answered or failed')
  t.is(all.failed, 0, JSON.stringify(all.causes))
})

test('every due request is accounted for across a closed connection and Connection: close, with the reconnects counted', async (t) => {
  let n = 0
  const server = http.createServer((req, res) => {
    n++
    if (n === 5) { req.socket.destroy(); return } // a request lost with its connection
    if (n === 9) res.setHeader('connection', 'close') // answered, then the connection ends
    res.end('ok')
  })
  const port = await listen(server)
  t.teardown(closer(server))
  const run = openLoop({ port, connections: 2, periodMs: 20, durationMs: 400 })
  t.teardown(run.destroy)
  await run.ready
  await run.scheduled
  await run.stop()
  const all = run.window(-Infinity, Infinity)
  t.is(all.due, 40)
  t.is(all.answered + all.failed, all.due, JSON.stringify(all))
  t.is(all.failed, 1, JSON.stringify(all.causes))
  t.deepEqual(Object.keys(all.causes).filter((c) => c === 'closed' || c === 'ECONNRESET').length, 1)
  t.is(run.reconnects, 2, 'one after the lost connection, one after Connection: close')
  const series = run.series(0, 400, 100)
  t.is(series.length, 4)
  t.is(series.reduce((s, b) => s + b.count + b.failed, 0), all.due, 'the series holds every due request')
})

test('a server that answers too late: the request fails as a timeout, counted from when it was due', async (t) => {
  const server = http.createServer(() => {}) // never answers
  const port = await listen(server)
  t.teardown(closer(server))
  const run = openLoop({ port, connections: 1, periodMs: 50, durationMs: 100, requestTimeoutMs: 300 })
  t.teardown(run.destroy)
  await run.ready
  await run.scheduled
  await run.stop()
  const all = run.window(-Infinity, Infinity)
  t.is(all.due, 2)
  t.deepEqual(all.causes, { timeout: 2 })
})

test('a port nothing listens on: ready rejects and names it', async (t) => {
  const s = net.createServer()
  const port = await listen(s)
  await new Promise((resolve) => { s.close(resolve) })
  const run = openLoop({ port, connections: 3, durationMs: 100 })
  t.teardown(run.destroy)
  await t.throwsAsync(run.ready, { message: new RegExp(`to 127\\.0\\.0\\.1:${port} did not open: .*ECONNREFUSED`) })
  t.throws(() => openLoop({ port, connections: 0, durationMs: 100 }), { message: /connections must be a positive integer, got 0/ })
})
