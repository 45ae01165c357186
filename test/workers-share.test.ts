// Runs in the test process: how `graceful-reboot run --workers 2` spreads the load over its workers,
// for real: 32 pooled keep-alive connections opened at once, and a new connection per request, each
// request answered by the worker fixture with its pid; the busiest worker's share of the requests must
// stay within 1/N + 10 points. With per-worker accept queues (the default where Node binds with
// reusePort), a rollout under that load loses nothing. On a Node without reusePort, per-worker queues
// are refused at start, naming the Node version. And the rebalancing rule of one worker, on a real
// server: above its limit, the excess connections' next responses carry `Connection: close`.
import http from 'node:http'
import test from 'ava'
import type net from 'node:net'
import { reusePortSupported } from '../lib/workers/protocol'
import { ConnectionShare } from '../lib/workers/share'
import { isAlive } from './helpers/fixture'
import { firstWorkers, rollout, says, supervise, type Listening } from './helpers/supervisor'

const perWorker = reusePortSupported(process.version, process.platform)
const withQueues = perWorker ? test.serial : test.skip
const without = perWorker ? test.skip : test

interface Spread { answers: Map<number, number>, connections: Map<number, number>, failed: number, causes: string[], total: number }

/**
 * `connections` loops, opened at once, each GETs of / one after another, at most `requests` each and
 * for at most `ms`: the answers per answering pid. Both workers are busy throughout, so a worker's share
 * is what it serves of the load, not only how many connections it got.
 */
async function burst (port: number, connections: number, requests: number, keepAlive: boolean, ms = 2_000, pool?: http.Agent): Promise<Spread> {
  const end = performance.now() + ms
  const agent = pool ?? new http.Agent({ keepAlive, maxSockets: connections })
  const answers = new Map<number, number>()
  const conns = new Map<number, number>()
  const seen = new WeakSet<object>()
  const causes: string[] = []
  let failed = 0
  const one = (): Promise<void> => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent, headers: keepAlive ? {} : { connection: 'close' } }, (res) => {
      let body = ''
      const socket = res.socket
      res.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => {
        const pid = (JSON.parse(body) as { pid: number }).pid
        answers.set(pid, (answers.get(pid) ?? 0) + 1)
        if (!seen.has(socket)) {
          seen.add(socket)
          conns.set(pid, (conns.get(pid) ?? 0) + 1)
        }
        resolve()
      })
    })
    req.setTimeout(10_000, () => { req.destroy(new Error('timeout')) })
    req.on('error', (err: NodeJS.ErrnoException) => { failed++; causes.push(err.code ?? err.message); resolve() })
  })
  await Promise.all(Array.from({ length: connections }, async () => { for (let i = 0; i < requests && performance.now() < end; i++) await one() }))
  if (pool === undefined) agent.destroy()
  return { answers, connections: conns, failed, causes, total: [...answers.values()].reduce((a, b) => a + b, 0) }
}

function busiest (s: Spread): number {
  return Math.max(0, ...s.answers.values()) / Math.max(1, s.total)
}

function describe (s: Spread, workers: Listening[]): string {
  return workers.map((w) => `slot ${w.slot} (pid ${w.pid}): ${s.answers.get(w.pid) ?? 0} requests on ${s.connections.get(w.pid) ?? 0} connections`).join(', ') + ` of ${s.total}`
}

withQueues('per-worker queues (the default): 32 keep-alive connections opened at once and a new connection per request spread over 2 workers, the busiest within 60 %', async (t) => {
  const f = supervise(t, {}, ['--workers', '2'])
  const workers = await firstWorkers(f)
  const port = workers[0]?.port ?? 0
  t.deepEqual(new Set(workers.map((w) => w.port)), new Set([port]), 'both workers serve the one port')
  // A pool of 32 keep-alive connections opened at once, under load; then rounds of one request on each
  // of its connections: a round's answers per worker are the placement of the pool's connections.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })
  t.teardown(() => { agent.destroy() })
  const pooled = await burst(port, 32, 2_000, true, 2_000, agent)
  t.is(pooled.failed, 0, pooled.causes.join(', '))
  t.log(`32 keep-alive connections at once, 2 s: ${describe(pooled, workers)} (the requests a worker serves also depend on the CPU it gets)`)
  // Within the target for 10 rounds in a row (bounded: 500 rounds).
  let within = 0
  let rounds = 0
  let round: Spread | undefined
  for (; rounds < 500 && within < 10; rounds++) {
    round = await burst(port, 32, 1, true, 10_000, agent)
    t.is(round.failed, 0, round.causes.join(', '))
    within = round.total === 32 && busiest(round) <= 0.6 ? within + 1 : 0
  }
  t.log(`the pool's 32 connections after ${rounds} rounds: ${describe(round as Spread, workers)}`)
  t.is(within, 10, `the busiest worker holds more than 60 % of the pool's connections: ${describe(round as Spread, workers)}`)
  const fresh = await burst(port, 8, 500, false)
  t.is(fresh.failed, 0, fresh.causes.join(', '))
  t.log(`a new connection per request: ${describe(fresh, workers)}`)
  t.true(busiest(fresh) <= 0.6, `the busiest worker took ${(busiest(fresh) * 100).toFixed(1)} % of the new-connection requests: ${describe(fresh, workers)}`)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

withQueues('per-worker queues: a rollout under 32 keep-alive connections opened at once and new connections loses no request, and the new workers share the load', async (t) => {
  const f = supervise(t, {}, ['--workers', '2'])
  const workers = await firstWorkers(f)
  const port = workers[0]?.port ?? 0
  let stop = false
  const rounds: Spread[] = []
  // One pool of 32 keep-alive connections opened at once, kept through the rollout, in turns with new connections.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 })
  t.teardown(() => { agent.destroy() })
  const load = (async () => {
    // Bounded: at most 400 rounds, however long the rollout takes.
    for (let i = 0; i < 400 && !stop; i++) rounds.push(i % 2 === 0 ? await burst(port, 32, 5, true, 10_000, agent) : await burst(port, 8, 2, false))
  })()
  const next = await rollout(f, workers)
  // A round wholly after the rollout: the new workers' share.
  const after = rounds.length
  await new Promise<void>((resolve) => { const poll = setInterval(() => { if (rounds.length >= after + 2) { clearInterval(poll); resolve() } }, 20) })
  stop = true
  await load
  const failed = rounds.reduce((n, r) => n + r.failed, 0)
  const total = rounds.reduce((n, r) => n + r.total, 0)
  t.is(failed, 0, `failed during the rollout: ${rounds.flatMap((r) => r.causes).join(', ')}`)
  t.true(total > 0)
  const last = rounds[rounds.length - 1] as Spread
  t.log(`${total} requests in ${rounds.length} rounds around a rollout (a pool of 32 keep-alive connections, and new connections), 0 failed; last round: ${describe(last, next)}`)
  t.true(next.every((w) => (last.answers.get(w.pid) ?? 0) > 0), `both new workers answer: ${describe(last, next)}`)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
  for (const w of [...workers, ...next]) t.false(isAlive(w.pid), `worker ${w.pid} is gone`)
})

without('on a Node without reusePort, --accept-queues per-worker is refused at start (exit 2), naming the Node version; the default is the shared queue', async (t) => {
  const f = supervise(t, {}, ['--workers', '2', '--accept-queues', 'per-worker'])
  t.is((await f.exited).code, 2)
  await says(f, new RegExp(`--accept-queues per-worker needs SO_REUSEPORT .*Node ${process.version.replace(/\./g, '\\.')}`))
})

test('a worker above its connection limit answers one request of each connection in excess with Connection: close, and only those; paused, it closes none', async (t) => {
  const reports: number[] = []
  const share = new ConnectionShare((open) => { reports.push(open) }, (ms, fn) => { setTimeout(fn, ms) })
  const server = http.createServer((_req, res) => { res.end('ok') })
  share.watch(server)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const port = (server.address() as net.AddressInfo).port
  const agent = new http.Agent({ keepAlive: true, maxSockets: 6 })
  t.teardown(() => { agent.destroy() })
  const get = (): Promise<string | undefined> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, agent }, (res) => { res.resume().on('end', () => { resolve(res.headers.connection) }) }).on('error', reject)
  })
  // Six connections at once, no limit yet: all stay open.
  t.deepEqual(await Promise.all(Array.from({ length: 6 }, get)), Array(6).fill('keep-alive'))
  t.is(share.connections, 6)
  share.setLimit(4)
  const answers = await Promise.all(Array.from({ length: 6 }, get))
  t.is(answers.filter((c) => c === 'close').length, 2, `two connections over the limit of 4 close: ${answers.join(', ')}`)
  await new Promise<void>((resolve) => { const poll = setInterval(() => { if (share.connections === 4) { clearInterval(poll); resolve() } }, 5) })
  t.deepEqual(await Promise.all(Array.from({ length: 4 }, get)), Array(4).fill('keep-alive'), 'at the limit: none closes')
  share.setLimit(1)
  share.pause(true)
  t.deepEqual(await Promise.all(Array.from({ length: 4 }, get)), Array(4).fill('keep-alive'), 'paused (rebooting or draining): none closes')
  share.pause(false)
  share.setLimit(undefined)
  t.deepEqual(await Promise.all(Array.from({ length: 4 }, get)), Array(4).fill('keep-alive'), 'no limit: none closes')
  share.setLimit(1, 6)
  t.deepEqual(await Promise.all(Array.from({ length: 4 }, get)), Array(4).fill('keep-alive'), 'a limit set from another count (6, not 4) is ignored')
  share.setLimit(3, 4)
  // A fifth connection opens (its own agent): the limit no longer holds, none closes.
  const extra = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { extra.destroy() })
  await new Promise<void>((resolve, reject) => { http.get({ host: '127.0.0.1', port, agent: extra }, (res) => { res.resume().on('end', resolve) }).on('error', reject) })
  t.deepEqual(await Promise.all(Array.from({ length: 4 }, get)), Array(4).fill('keep-alive'), 'a new connection drops the limit until the next one')
  // The count is reported once it stops changing: 5 open connections now.
  await new Promise<void>((resolve) => { const poll = setInterval(() => { if (reports[reports.length - 1] === 5) { clearInterval(poll); resolve() } }, 5) })
  t.pass(`reports: ${reports.join(', ')}`)
})
