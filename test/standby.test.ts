// Runs in the test process: the old process of a reboot watches its successor until its own drain is
// over (test/fixtures/standby-app.ts): a successor whose event loop blocks right when it serves costs no
// request and no doubled or mixed response.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
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
  const oldExit = await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  t.is(oldExit.code, 0, 'the blocked successor was waited for before the drain, not lost during it')
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

test('a successor SIGKILLed while its old process drains a long request: the old process logs why, listens again, writes the PID file back, completes the request and exits 69', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'standby-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const pidFile = path.join(dir, 'app.pid')
  const f = startFixture(t, 'standby-app', { env: { PID_FILE: pidFile } })
  const first = await f.waitFor('listening', 10_000) as Listening
  const once = new http.Agent({ keepAlive: false })
  t.teardown(() => { once.destroy() })
  const slow = new Promise<{ status: number | undefined, body: string }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: first.port, path: '/slow?ms=8000', agent: once }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode, body }) })
    }).on('error', reject)
  })
  slow.catch(() => {})
  process.kill(first.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid, 20_000) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === first.pid, 20_000)
  const killedAt = performance.now()
  process.kill(next.pid, 'SIGKILL')
  const served = await get(once, first.port, 1)
  const backMs = performance.now() - killedAt
  t.log(`port served again ${backMs.toFixed(0)} ms after the SIGKILL`)
  t.true(served.ok, served.why)
  t.is(served.pid, first.pid, 'the old process took the service back')
  const lost = await f.waitFor((e) => e.event === 'handoff' && e.step === 'lost' && e.pid === first.pid)
  t.like(lost, { other: next.pid, reason: `successor ${next.pid} was killed by SIGKILL` })
  // The old process logs why, as an error.
  await f.waitFor((l) => l.pid === first.pid && l.level === 50 && typeof l.msg === 'string' && l.msg.includes(`successor ${next.pid} was killed by SIGKILL while this process drains`), 10_000)
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(first.pid), 'the PID file names the old process again')
  const long = await slow.catch((err: Error) => { t.log(f.lines.filter((l) => l.pid === first.pid).map((l) => JSON.stringify(l)).join('\n')); throw err })
  t.is(long.status, 200)
  t.like(JSON.parse(long.body), { slow: true, pid: first.pid })
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  t.is(exit.code, 69, 'exitCodes.successorLost: the supervisor restarts the service')
})
