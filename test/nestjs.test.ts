// Runs in the test process: NestJS 12 and 11 under nestGraceful() (test/fixtures/nest-app.ts, the app of
// example/nestjs/; NestJS 11 from test/nest11/, through the preload test/helpers/nest11.ts), on
// @nestjs/platform-express and @nestjs/platform-fastify, in real processes: 3
// reboots under pooled and new-connection load lose nothing, and the serving process's stats() counts
// the 3 reboots of its line while a scrape loop never sees a counter go back; SIGTERM with a 1.5 s
// request in flight answers it, then runs Nest's shutdown hooks (with enableShutdownHooks() called:
// its handlers are removed); under `graceful-reboot run --workers 2` (NestJS 12) the app rolls, and the
// supervisor's sum of its workers' counts equals the sum of what each worker counts.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test from 'ava'
import { runLoad } from '../tools/load'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { scrapeLoop } from './helpers/prometheus'
import { getJson } from './helpers/servers'
import { firstWorkers, rollout, supervise } from './helpers/supervisor'
import { readStatus } from '../lib/status-file'
import { NEST11 } from './helpers/nest11'
import type { LifecycleStats } from '../index'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null, nest: number }

const PLATFORMS = ['express', 'fastify'] as const

/**
 * The NestJS majors the app runs on, with what the fixture's environment needs for each: 12 from the
 * root's devDependencies, 11 from test/nest11/ (`npm test` installs it: scripts/test-deps.js).
 */
const VERSIONS: Array<{ major: number, env: Record<string, string> }> = [
  { major: 12, env: {} },
  { major: 11, env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${path.join(__dirname, 'helpers', 'nest11.js')}`.trim() } }
]
if (!fs.existsSync(path.join(NEST11, 'node_modules', '@nestjs', 'core'))) throw new Error(`NestJS 11 is not installed in ${NEST11}: run \`npm ci --prefix test/nest11\` (npm test does)`)

/** SIGUSR2 to `pid`; resolves with its successor once the old process's drain is over. */
async function rebootBySignal (f: Fixture, pid: number): Promise<Listening> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === pid)
  return next
}

/** The first 'stats' line of `pid` (past or future) that matches. */
function statsOf (f: Fixture, pid: number, match: (s: LifecycleStats) => boolean): Promise<LifecycleStats> {
  return f.waitFor((e) => e.event === 'stats' && e.pid === pid && match(e.stats as LifecycleStats)).then((e) => e.stats as LifecycleStats)
}

for (const { major, env } of VERSIONS) for (const platform of PLATFORMS) {
  test.serial(`NestJS ${major} on ${platform}: 3 reboots under pooled and new-connection load lose nothing; the serving process's stats() counts the 3 reboots of its line; a scrape loop never sees a counter go back`, async (t) => {
    const f = startFixture(t, 'nest-app', { env: { ...env, PLATFORM: platform } })
    t.teardown(() => { if (!t.passed) t.log(f.lines.filter((e) => e.event !== 'stats').map((e) => JSON.stringify(e)).join('\n')) })
    const first = await f.waitFor('listening') as Listening
    t.is(first.nest, major, 'the NestJS the app runs on')
    const port = first.port
    const url = `http://127.0.0.1:${port}/`
    const pooled = runLoad({ url, connections: 10, mode: 'keep-alive', durationMs: 60_000 })
    const fresh = runLoad({ url, connections: 2, mode: 'new-connection', durationMs: 60_000 })
    const scrapes = scrapeLoop(port)
    const pids = [first.pid]
    let current = first
    for (let i = 0; i < 3; i++) {
      current = await rebootBySignal(f, current.pid)
      t.is(current.port, port, 'the successor adopted the inherited socket')
      pids.push(current.pid)
    }
    pooled.stop()
    fresh.stop()
    scrapes.stop()
    const [a, b, s] = await Promise.all([pooled.result, fresh.result, scrapes.done])
    t.log(`${platform}: pooled ${a.answered} answered (pids ${a.pids.join(',')}), new-connection ${b.answered}; ${s.watch.scrapes} scrapes (${s.watch.empty} from a process not reporting)`)
    for (const r of [a, b]) {
      t.is(r.failed, 0, JSON.stringify(r.causes))
      t.is(r.sent, r.answered)
      t.true(r.answered > 0)
    }
    t.true(a.pids.length >= 2, `the pooled load saw pids ${a.pids.join(',')}`)
    t.deepEqual(s.back, [], 'no counter went back')
    t.deepEqual(s.failed, [])
    t.is(s.watch.highest.get('graceful_reboot_reboots_total{outcome="succeeded"}'), 3, JSON.stringify([...s.watch.highest]))
    // The old process's final counts (its drain) reach the successor after its 'drained' step.
    const stats = await statsOf(f, current.pid, (x) => x.drains === 3)
    t.like(stats, { generation: 3, reporting: true, reboots: { requested: 3, refused: 0, started: 3, succeeded: 3, failed: 0, lost: 0 }, drains: 3 })
    t.like((await getJson(port, '/stats')).body, { generation: 3, reboots: { succeeded: 3 } })
    process.kill(current.pid, 'SIGTERM')
    await f.closed
  })

  test.serial(`NestJS ${major} on ${platform}: SIGTERM with a 1.5 s request in flight answers it, then runs Nest's shutdown hooks; enableShutdownHooks() ${platform === 'express' ? 'before' : 'after'} nestGraceful() adds no handler`, async (t) => {
    const when = platform === 'express' ? 'before' : 'after'
    const f = startFixture(t, 'nest-app', { env: { ...env, PLATFORM: platform, ENABLE_HOOKS: when } })
    const first = await f.waitFor('listening') as Listening
    t.is(first.nest, major, 'the NestJS the app runs on')
    t.truthy(f.lines.find((e) => e.event === 'log' && /enableShutdownHooks\(\) added handlers for .*SIGTERM.*they are removed/.test(String(e.msg))), 'the warning names the removed handlers')
    const slow = new Promise<{ status: number, body: string }>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: first.port, path: '/slow?ms=1500', agent: false }, (res) => {
        let body = ''
        res.setEncoding('utf8').on('data', (c: string) => { body += c }).once('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
      }).once('error', reject)
    })
    await f.waitFor('slow-started')
    process.kill(first.pid, 'SIGTERM')
    const answer = await slow
    t.is(answer.status, 200)
    t.like(JSON.parse(answer.body), { slow: true, pid: first.pid })
    const exit = await f.exited
    t.deepEqual(exit, { code: 0, signal: null })
    const order = f.lines.filter((e) => e.event === 'slow-done' || e.event === 'nest-hook').map((e) => e.event === 'nest-hook' ? e.hook : e.event)
    t.deepEqual(order, ['slow-done', 'onModuleDestroy', 'beforeApplicationShutdown', 'onApplicationShutdown'], 'the request first, then Nest\'s hooks, once')
    const exiting = f.lines.find((e) => e.event === 'exiting')
    t.true((exiting?.finalizers as string[]).includes('nest'), JSON.stringify(exiting))
  })
}

for (const platform of PLATFORMS) {
  test.serial(`NestJS on ${platform} under graceful-reboot run --workers 2: the workers roll; a scrape loop never sees a counter go back; the supervisor's totals equal the sum of each worker's counts`, async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-nest-workers-'))
    t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
    const pidFile = path.join(dir, 'app.pid')
    const f = supervise(t, { PLATFORM: platform }, ['--workers', '2', '--pid-file', pidFile], 'nest-app')
    const workers = await firstWorkers(f)
    const port = workers[0]?.port as number
    t.true(workers.every((w) => w.port === port), 'every worker serves the same port')
    const pooled = runLoad({ url: `http://127.0.0.1:${port}/`, connections: 6, mode: 'keep-alive', durationMs: 60_000 })
    const scrapes = scrapeLoop(port)
    const next = await rollout(f, workers)
    pooled.stop()
    scrapes.stop()
    const [load, s] = await Promise.all([pooled.result, scrapes.done])
    t.is(load.failed, 0, JSON.stringify(load.causes))
    t.true(load.answered > 0)
    t.deepEqual(s.back, [], 'no counter went back')
    t.deepEqual(s.failed, [])
    const series = [...s.watch.highest.keys()]
    t.true(series.length > 0 && series.every((k) => /worker="[12]"/.test(k)), `each series names its worker's slot: ${series.join(' ')}`)
    // Each replacement, once its old worker's final counts arrived: one reboot, one drain.
    const own = await Promise.all(next.map((w) => statsOf(f, w.pid, (x) => x.drains === 1)))
    for (const x of own) t.like(x, { generation: 1, reporting: true, reboots: { requested: 1, started: 1, succeeded: 1 }, drains: 1 })
    const expected = {
      reboots: { requested: 0, refused: 0, started: 0, succeeded: 0, failed: 0, lost: 0 },
      drains: 0,
      connections: { transferred: 0, kept: 0, forced: 0 }
    }
    for (const x of own) {
      for (const k of Object.keys(expected.reboots) as Array<keyof typeof expected.reboots>) expected.reboots[k] += x.reboots[k]
      for (const k of Object.keys(expected.connections) as Array<keyof typeof expected.connections>) expected.connections[k] += x.connections[k]
      expected.drains += x.drains
    }
    // The supervisor rewrites its status file (a rename in `dir`) at each worker's message: read it until it has them.
    const watcher = fs.watch(dir)
    t.teardown(() => { watcher.close() })
    const changed = (): Promise<void> => new Promise((resolve) => {
      const done = (): void => { watcher.off('change', done); clearTimeout(timer); resolve() }
      const timer = setTimeout(done, 500)
      watcher.on('change', done)
    })
    const until = Date.now() + 15_000
    let totals: unknown
    for (;;) {
      totals = readStatus(pidFile, f.pid)?.totals
      if (JSON.stringify(totals) === JSON.stringify(expected) || Date.now() > until) break
      await changed()
    }
    t.deepEqual(totals, expected)
    const slots = readStatus(pidFile, f.pid)?.slots ?? []
    t.deepEqual(slots.map((x) => x.stats?.generation), [1, 1])
    process.kill(f.pid, 'SIGTERM')
    await f.exited
  })
}
