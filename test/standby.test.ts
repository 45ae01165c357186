// Runs in the test process: the old process of a reboot watches its successor until its own drain is
// over (test/fixtures/standby-app.ts): a successor whose event loop blocks right when it serves costs no
// request and no doubled or mixed response.
import http from 'node:http'
import test from 'ava'
import { startFixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }

interface Outcome { id: number, ok: boolean, why?: string, ms: number, pid?: number, startedAt: number, blockEnd?: number }

/** One GET /?id=N on `agent`; checks that the body names N. */
function get (agent: http.Agent, port: number, id: number): Promise<Outcome> {
  const started = performance.now()
  const startedAt = Date.now()
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/?id=${id}`, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => {
        const ms = performance.now() - started
        try {
          const b = JSON.parse(body) as { id: number, pid: number, blockEnd: number }
          resolve(b.id === id ? { id, ok: true, ms, pid: b.pid, startedAt, blockEnd: b.blockEnd } : { id, ok: false, why: `answered for request ${b.id}`, ms, startedAt })
        } catch {
          resolve({ id, ok: false, why: `body ${JSON.stringify(body)} (status ${String(res.statusCode)})`, ms, startedAt })
        }
      })
      res.on('error', (err) => { resolve({ id, ok: false, why: err.message, ms: performance.now() - started, startedAt }) })
    })
    req.setTimeout(15_000, () => { req.destroy(new Error('no answer within 15 s')) })
    req.on('error', (err) => { resolve({ id, ok: false, why: err.message, ms: performance.now() - started, startedAt }) })
  })
}

/** `loops` keep-alive clients, one request at a time each, until `stop()` or `max` requests each. */
function load (port: number, loops: number, max: number): { stop: () => Promise<Outcome[]>, count: () => number, done: Promise<void> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: loops, maxFreeSockets: loops })
  let running = true
  let next = 0
  const all: Outcome[] = []
  const loop = async (): Promise<void> => {
    for (let i = 0; i < max && running; i++) all.push(await get(agent, port, ++next))
  }
  const done = Promise.all(Array.from({ length: loops }, loop)).then(() => {})
  return {
    done,
    count: () => all.length,
    stop: async () => {
      running = false
      await done
      agent.destroy()
      return all
    }
  }
}

test('a successor that blocks its event loop for 6 s right when it serves, under keep-alive load (20 clients): no request fails, none is doubled or mixed', async (t) => {
  const f = startFixture(t, 'standby-app', { env: { BLOCK_MS: '6000' } })
  const first = await f.waitFor('listening', 10_000) as Listening
  const l = load(first.port, 20, 10_000)
  const stopped: { p?: Promise<Outcome[]> } = {}
  t.teardown(async () => { await (stopped.p ?? l.stop()) })
  process.kill(first.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid, 20_000) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'blocked' && e.pid === next.pid, 20_000)
  await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  // Then served by the successor alone for a while: 200 more requests (or the bound of the loops).
  const before = l.count()
  let over = false
  void l.done.then(() => { over = true })
  while (!over && l.count() < before + 200) await new Promise((resolve) => { setImmediate(resolve) })
  stopped.p = l.stop()
  const all = await stopped.p
  const failed = all.filter((o) => !o.ok)
  const max = Math.max(...all.map((o) => o.ms))
  t.log(`${all.length} requests, max latency ${max.toFixed(0)} ms, served by ${[...new Set(all.map((o) => o.pid))].join(' ')}`)
  t.deepEqual(failed.map((o) => `${o.id}: ${o.why ?? ''}`), [])
  t.true(all.some((o) => o.pid === next.pid), 'the successor served')
  // No client waited on the blocked loop: the successor answered no request sent well before its block
  // ended (the old process served them; 50 ms for a connection accepted as the block ends).
  const waited = all.filter((o) => o.pid === next.pid && o.blockEnd !== undefined && o.startedAt < o.blockEnd - 50)
  t.deepEqual(waited.map((o) => `${o.id}: sent ${String((o.blockEnd ?? 0) - o.startedAt)} ms before the block ended, answered after ${o.ms.toFixed(0)} ms`).slice(0, 5), [])
  t.is(new Set(all.map((o) => o.id)).size, all.length, 'each request answered once')
  process.kill(next.pid, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === next.pid, 20_000)
})
