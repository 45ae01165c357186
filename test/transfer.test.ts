// Runs in the test process: a reboot hands idle HTTP/1.1 keep-alive connections to the successor
// (test/fixtures/transfer-app.ts, a Fastify and an Express app in one process): pooled undici clients
// see no connection closed and no request failed; connections that cannot move drain the usual way.
import * as net from 'node:net'
import test from 'ava'
import { Pool } from 'undici'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { betweenRequests, resumeReading, stopReading, transferable } from '../lib/handoff/socket'
import * as http from 'node:http'

interface Listening extends FixtureEvent { pid: number, ports: { fastify: number, express: number }, parent: number | null }

/** SIGUSR2 to `pid`; resolves with the successor's 'listening' line once the old process drained. */
async function reboot (f: Fixture, pid: number): Promise<{ next: Listening, drained: FixtureEvent }> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid) as Listening
  f.track(next.pid)
  const drained = await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === pid)
  return { next, drained }
}

/** A pool of `connections` keep-alive connections; counts connects and disconnects. */
function pool (port: number, connections: number): { p: Pool, connects: () => number, disconnects: () => string[] } {
  const p = new Pool(`http://127.0.0.1:${port}`, { connections, pipelining: 1, keepAliveTimeout: 60_000 })
  let connects = 0
  const disconnects: string[] = []
  p.on('connect', () => { connects++ })
  p.on('disconnect', (_origin, _targets, err) => { disconnects.push(err?.message ?? 'closed') })
  return { p, connects: () => connects, disconnects: () => disconnects }
}

/**
 * Requests on `p` from `loops` loops, each pausing `pauseMs` between requests (the moment the reset race
 * bites), until `stop()`; bounded by `max` requests. Counts every request: sent = answered + failed.
 */
function load (p: Pool, loops: number, pauseMs: number, max = 20_000): { stop: () => Promise<{ sent: number, answered: number, failed: string[], pids: Set<number> }> } {
  let running = true
  let sent = 0
  let answered = 0
  const failed: string[] = []
  const pids = new Set<number>()
  const one = async (): Promise<void> => {
    while (running && sent < max) {
      sent++
      try {
        const r = await p.request({ path: '/', method: 'GET' })
        await r.body.text()
        if (r.statusCode === 200) {
          answered++
          pids.add(Number(r.headers['x-pid']))
        } else failed.push(`status ${r.statusCode}`)
      } catch (err) {
        failed.push((err as Error).message)
      }
      if (pauseMs > 0) await new Promise((resolve) => { setTimeout(resolve, pauseMs) })
    }
  }
  const all = Promise.all(Array.from({ length: loops }, one))
  return {
    stop: async () => {
      running = false
      await all
      return { sent, answered, failed, pids }
    }
  }
}

for (const pauseMs of [0, 150]) {
  test(`3 reboots of a Fastify and an Express app in one process: pooled keep-alive clients (${pauseMs === 0 ? 'back-to-back' : `${pauseMs} ms between requests`}) see no connection closed and no request failed`, async (t) => {
    const f = startFixture(t, 'transfer-app')
    const first = await f.waitFor('listening') as Listening
    const clients = [pool(first.ports.fastify, 8), pool(first.ports.express, 8)]
    t.teardown(async () => { await Promise.all(clients.map((c) => c.p.destroy())) })
    const loads = clients.map((c) => load(c.p, 8, pauseMs))
    let pid = first.pid
    const moved: number[] = []
    const kept: string[] = []
    for (let i = 0; i < 3; i++) {
      const { next, drained } = await reboot(f, pid)
      t.deepEqual(next.ports, first.ports)
      const apps = drained.apps as Array<{ name: string, transferred: number, forced: number, kept: Record<string, number> }>
      moved.push(apps.reduce((n, a) => n + a.transferred, 0))
      kept.push(...apps.map((a) => `${a.name}: ${JSON.stringify(a.kept)}`))
      t.true(apps.every((a) => a.forced === 0))
      pid = next.pid
      // Requests reach the new process on the connections they already had.
      await f.waitFor((e) => e.event === 'handoff' && e.step === 'announced' && e.pid === pid)
    }
    const results = await Promise.all(loads.map((l) => l.stop()))
    for (const [i, r] of results.entries()) {
      t.is(r.sent, r.answered + r.failed.length)
      t.deepEqual(r.failed, [], `client ${i}`)
      t.true(r.pids.size >= 2, `client ${i} was served by several processes: ${[...r.pids].join(' ')}`)
      // Its pooled connections now lead to the last successor.
      const last = await (clients[i] as { p: Pool }).p.request({ path: '/', method: 'GET' })
      await last.body.text()
      t.is(Number(last.headers['x-pid']), pid, `client ${i}`)
      t.is(clients[i]?.connects(), 8, `client ${i}: its 8 connections were opened once`)
      t.deepEqual(clients[i]?.disconnects(), [], `client ${i}: no connection closed (kept by the old processes: ${kept.join('; ')})`)
    }
    t.true(moved.every((n) => n > 0), `connections moved at each reboot: ${moved.join(', ')}`)
    process.kill(pid, 'SIGTERM')
    await f.waitFor((e) => e.event === 'exit' && e.pid === pid)
  })
}

test('transferConnections: false: a reboot closes the pooled connections (the clients reconnect)', async (t) => {
  const f = startFixture(t, 'transfer-app', { env: { TRANSFER: 'false' } })
  const first = await f.waitFor('listening') as Listening
  const c = pool(first.ports.fastify, 4)
  t.teardown(() => c.p.destroy())
  await Promise.all(Array.from({ length: 4 }, async () => { await (await c.p.request({ path: '/', method: 'GET' })).body.text() }))
  t.is(c.connects(), 4)
  const { next, drained } = await reboot(f, first.pid)
  t.true((drained.apps as Array<{ transferred: number }>).every((a) => a.transferred === 0))
  const r = await c.p.request({ path: '/', method: 'GET' })
  await r.body.text()
  t.is(Number(r.headers['x-pid']), next.pid)
  t.true(c.connects() > 4, 'the client had to reconnect')
  process.kill(next.pid, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === next.pid)
})

test('a connection with half a request read is not moved: it is answered by the old process with Connection: close', async (t) => {
  // A long idle grace: the drain must not reap the connection before the test completes its request.
  const f = startFixture(t, 'transfer-app', { env: { IDLE_GRACE: '10000' } })
  const first = await f.waitFor('listening') as Listening
  const socket = net.connect(first.ports.fastify, '127.0.0.1')
  t.teardown(() => { socket.destroy() })
  await new Promise((resolve) => socket.once('connect', resolve))
  socket.write('GET / HTTP/1.1\r\nHost: x\r\n')
  let text = ''
  socket.setEncoding('utf8').on('data', (d: string) => { text += d })
  const closed = new Promise((resolve) => socket.once('close', resolve))
  process.kill(first.pid, 'SIGUSR2')
  const ready = await f.waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === first.pid)
  f.track(ready.other as number)
  const drainedLine = f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === first.pid)
  // Past probation the old process drains: it keeps this connection (half a request read), and
  // answers the request once its last bytes come.
  await f.waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === first.pid)
  socket.write('\r\n')
  await closed
  t.regex(text, /^HTTP\/1\.1 200/)
  t.regex(text, /connection: close/i)
  t.regex(text, new RegExp(`x-pid: ${first.pid}`))
  const drained = await drainedLine
  const fastify = (drained.apps as Array<{ name: string, kept: Record<string, number> }>).find((a) => a.name === 'fastify')
  t.is(fastify?.kept['mid-request'], 1)
  process.kill(ready.other as number, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === ready.other)
})

test('this Node has what the hand-over relies on: a socket handle that stops and resumes reading, and a parser that tells a partial request', async (t) => {
  const seen: net.Socket[] = []
  const server = http.createServer((_req, res) => { res.end('ok') })
  server.on('connection', (s) => { seen.push(s) })
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as net.AddressInfo).port
  const client = net.connect(port, '127.0.0.1')
  t.teardown(() => { client.destroy() })
  await new Promise((resolve) => client.once('connect', resolve))
  const answered = (): Promise<void> => new Promise((resolve) => { client.once('data', () => { resolve() }) })
  let got = answered()
  client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
  await got
  const s = seen[0] as net.Socket
  t.true(transferable(s), 'handle.readStop/readStart and parser.finish exist')
  t.true(stopReading(s))
  await new Promise<void>((resolve) => { setImmediate(resolve) })
  t.true(betweenRequests(s), 'idle after a complete request')
  resumeReading(s)
  client.write('GET / HT')
  // The server reads the partial request once it is there: wait until its byte count moves.
  const before = s.bytesRead
  await new Promise<void>((resolve) => { s.once('data', () => { resolve() }); const check = (): void => { if (s.bytesRead > before) resolve(); else setImmediate(check) }; check() })
  t.true(stopReading(s))
  t.false(betweenRequests(s), 'a partial request line is seen')
  resumeReading(s)
  got = answered()
  client.write('TP/1.1\r\nHost: x\r\n\r\n')
  await got
})
