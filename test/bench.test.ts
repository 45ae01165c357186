// Runs in the test process: the benchmark's own pieces that need nothing from bench/node_modules:
// the load client's accounting across restart-like resets and refusals, split per restart as
// bench/scenarios/restart.js does, and the results -> Markdown / SVG conversion (tools/bench-report.ts).
import test from 'ava'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import net from 'node:net'
import { once } from 'node:events'
import { runLoad, type LoadResult } from '../tools/load'
import { runH2Load } from '../tools/h2-load'
import {
  HEADLINE_BEGIN,
  HEADLINE_END,
  README_BEGIN,
  README_END,
  headlineBlock,
  connectionsPerRestart,
  failuresPerRestart,
  readmeBlock,
  refusedMs,
  replaceReadmeBlock,
  resultsMarkdown,
  targets,
  throughputSeries,
  throughputSvg,
  type BenchResults,
  type RestartRun
} from '../tools/bench-report'
import { rowTargets, type CrashRun, type MovesRun, type StormRun, type WorkersRun } from '../tools/bench-report-rows'
import { latencyMarkdown, latencySvg, latencySvgs, latencyTargets, type LatencyRun } from '../tools/bench-report-latency'
import type { OpenLoopWindow } from '../tools/open-loop'

/** A port nothing listens on (bound, read, released). */
async function freePort (): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as net.AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

/**
 * A server that "restarts" like the naive contender: down() destroys every connection (busy or idle)
 * and stops listening; up() listens again on the same port.
 * (Not socket.resetAndDestroy(): on Node 20.20 a process that used it on these sockets can spin
 * forever at exit, in Environment::CleanupHandles.)
 */
async function restartingServer (): Promise<{ port: number, down: () => Promise<void>, up: () => Promise<void>, close: () => Promise<void> }> {
  const server = http.createServer((_req, res) => {
    // Answer after a short delay so that some requests are in flight at each restart.
    setTimeout(() => { res.setHeader('x-pid', '1').end('ok') }, 2)
  })
  const sockets = new Set<net.Socket>()
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  return {
    port,
    down: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    },
    up: async () => {
      server.listen(port, '127.0.0.1')
      await once(server, 'listening')
    },
    close: async () => {
      server.closeAllConnections()
      for (const s of sockets) s.destroy()
      if (server.listening) server.close()
    }
  }
}

/** Waits on the load client's own progress reports (every 250 ms), not on a fixed time. */
function progressWaiter (): { progress: (until: (r: LoadResult) => boolean) => Promise<void>, onProgress: (r: LoadResult) => void } {
  const waiters: Array<{ until: (r: LoadResult) => boolean, resolve: () => void }> = []
  return {
    progress: (until) => new Promise((resolve) => { waiters.push({ until, resolve }) }),
    onProgress: (r) => {
      for (const w of [...waiters]) {
        if (w.until(r)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve()
        }
      }
    }
  }
}

for (const mode of ['keep-alive', 'new-connection'] as const) {
  test.serial(`${mode}: every request is accounted for across resets and refusals, and per-restart failures add up`, async (t) => {
    const srv = await restartingServer()
    t.teardown(srv.close)
    const { progress, onProgress } = progressWaiter()
    const run = runLoad({ url: `http://127.0.0.1:${srv.port}/`, connections: 8, mode, durationMs: 20_000, maxRequests: 1_000_000, requestTimeoutMs: 5000, bucketMs: 50 }, { onProgress })
    const snapshots: LoadResult[] = []
    await progress((r) => r.answered > 0)
    for (let i = 0; i < 3; i++) {
      const before = run.snapshot()
      snapshots.push(before)
      await srv.down()
      await progress((r) => (r.causes.ECONNREFUSED ?? 0) > (before.causes.ECONNREFUSED ?? 0))
      await srv.up()
      const refused = run.snapshot()
      await progress((r) => r.answered > refused.answered)
    }
    run.stop()
    const r = await run.result

    t.is(r.sent, r.answered + r.failed, 'sent = answered + failed')
    t.is(Object.values(r.causes).reduce((a, b) => a + b, 0), r.failed, 'causes add up to failed')
    t.is(r.series.reduce((n, b) => n + b.ok + b.failed, 0), r.sent, 'the series holds every request')
    t.true(r.failed > 0, 'the resets and the refusals were seen')
    t.true((r.causes.ECONNREFUSED ?? 0) > 0, `refused while down: ${JSON.stringify(r.causes)}`)
    t.true(refusedMs(r) > 0 && refusedMs(r) < r.durationMs)

    const per = failuresPerRestart(snapshots, r)
    t.is(per.length, 3)
    t.is(per.reduce((n, p) => n + p.failed, 0), r.failed - (snapshots[0]?.failed ?? 0), 'per-restart failures add up')
    for (const p of per) t.is(Object.values(p.causes).reduce((a, b) => a + b, 0), p.failed)
  })
}

test.serial('keep-alive clients with think time, one agent each: the connections opened are the pool, then one reconnect per client after a restart', async (t) => {
  const srv = await restartingServer()
  t.teardown(srv.close)
  const { progress, onProgress } = progressWaiter()
  const clients = 6
  const run = runLoad({ url: `http://127.0.0.1:${srv.port}/`, connections: clients, mode: 'keep-alive', agentPerLoop: true, thinkMs: [20, 40], durationMs: 20_000, maxRequests: 100_000, requestTimeoutMs: 5000 }, { onProgress })
  t.teardown(run.stop)
  // Every client answered a few times on its one connection: the pool is full and stays so.
  await progress((r) => r.answered >= clients * 4)
  const before = run.snapshot()
  t.is(before.connectionsOpened, clients, 'one connection per client, reused between requests')
  await srv.down()
  await progress((r) => (r.causes.ECONNREFUSED ?? 0) > 0)
  await srv.up()
  const up = run.snapshot()
  // Each client answered a few more times after the restart, each on its new connection.
  await progress((r) => r.answered >= up.answered + clients * 4)
  run.stop()
  const r = await run.result
  t.is(r.connectionsOpened, 2 * clients, 'one reconnect per client: refused attempts are not connections, reused ones are not new')
  t.deepEqual(connectionsPerRestart([before], r), [clients])
  t.is(r.sent, r.answered + r.failed)
})

test('runLoad: think time is validated', (t) => {
  t.throws(() => runLoad({ url: 'http://127.0.0.1:1/', connections: 1, mode: 'keep-alive', thinkMs: [40, 20] }), { instanceOf: RangeError, message: /thinkMs must be \[min, max\] with min <= max, got \[40, 20\]/ })
  t.throws(() => runLoad({ url: 'http://127.0.0.1:1/', connections: 1, mode: 'keep-alive', thinkMs: -1 }), { instanceOf: RangeError, message: /thinkMs must be a non-negative number, got -1/ })
})

test.serial('HTTP/2 load: with no server listening, every request fails once as ECONNREFUSED (not retried) and sent = answered + failed', async (t) => {
  const port = await freePort()
  const run = runH2Load({ origin: `http://127.0.0.1:${port}`, sessions: 2, streams: 2, durationMs: 10_000, maxRequests: 20 })
  const r = await run.result
  t.is(r.sent, 20)
  t.is(r.failed, 20)
  t.deepEqual(r.causes, { ECONNREFUSED: 20 })
  t.deepEqual(r.retried, {}, 'a refused connection is a failure, not a refused stream')
  t.is(r.sessionsOpened, 0)
  t.deepEqual(run.snapshot(), r)
})

test('failuresPerRestart and refusedMs on hand-made snapshots', (t) => {
  const s = (failed: number, causes: Record<string, number>): Pick<LoadResult, 'failed' | 'causes'> => ({ failed, causes })
  t.deepEqual(failuresPerRestart([s(1, { ECONNRESET: 1 }), s(4, { ECONNRESET: 3, timeout: 1 })], s(4, { ECONNRESET: 3, timeout: 1 })), [
    { failed: 3, causes: { ECONNRESET: 2, timeout: 1 } },
    { failed: 0, causes: {} }
  ])
  t.is(refusedMs({ refusedWindows: [{ start: 10, end: 30.04 }, { start: 100, end: 150 }] }), 70)
})

function restartRun (contender: string, mode: RestartRun['mode'], failed: number, extra: Partial<RestartRun> = {}): RestartRun {
  const series = Array.from({ length: 41 }, (_, i) => ({ t: i * 100, ok: i % 10 === 5 ? 0 : 50, failed: i % 10 === 5 ? failed : 0 }))
  return {
    contender,
    label: `${contender} <label> | x`,
    mode,
    connections: mode === 'keep-alive' ? 100 : 20,
    restarts: [
      { at: 500, readyMs: 300, doneMs: 320, failed, causes: failed > 0 ? { ECONNRESET: failed } : {}, newConnections: failed > 0 ? 100 : 0 },
      { at: 1500, readyMs: 310, doneMs: 330, failed: 0, causes: {}, newConnections: failed > 0 ? 100 : 0 }
    ],
    sent: 2000,
    answered: 2000 - failed,
    failed,
    causes: failed > 0 ? { ECONNRESET: failed } : {},
    refusedMs: 0,
    latency: { p50: 1, p99: 10, max: 100 },
    pids: 3,
    durationMs: 4100,
    bucketMs: 100,
    series,
    ...extra
  }
}

/** Restarts of a think-time run: `failed` each, and the connections opened at each. */
function thinkRestarts (failed: number, opened: number[]): RestartRun['restarts'] {
  return opened.map((newConnections, i) => ({ at: 500 + 1000 * i, readyMs: 300, doneMs: 320, failed, causes: failed > 0 ? { ECONNRESET: failed } : {}, newConnections }))
}

const results: BenchResults = {
  meta: {
    date: '2026-01-01T00:00:00.000Z',
    durationMs: 60_000,
    quick: true,
    command: 'node bench/run.js --quick',
    machine: { nproc: 2, cpu: 'Test CPU', node: '20.0.0', os: 'Linux', memGiB: 24, loadavgStart: [1, 1, 1], loadavgEnd: [1, 1, 1], nofile: '1024' },
    versions: { fastify: '5.0.0' }
  },
  settings: { slowMs: 1000 },
  restart: [
    restartRun('graceful-reboot', 'keep-alive', 0),
    restartRun('naive-restart', 'keep-alive', 120, { causes: { ECONNREFUSED: 100, 'status 503': 20 } }),
    restartRun('pm2-recommended', 'keep-alive', 0, { skipped: 'PM2 could not start its daemon: EACCES', restarts: [], series: [] }),
    restartRun('graceful-reboot', 'think-time', 0, { connections: 1000, thinkMs: [200, 400], restarts: thinkRestarts(0, [0, 0, 3]) }),
    restartRun('naive-restart', 'think-time', 40, { connections: 1000, thinkMs: [200, 400], restarts: thinkRestarts(20, [1000, 1000, 1000]) }),
    restartRun('graceful-reboot', 'new-connection', 0),
    restartRun('naive-restart', 'new-connection', 7)
  ],
  restartH2: [
    { contender: 'graceful-reboot', label: 'graceful-reboot', sessions: 20, streams: 5, restarts: [{ at: 500, readyMs: 300, doneMs: 320, failed: 0, causes: {}, retried: 4, newSessions: 20 }, { at: 1500, readyMs: 300, doneMs: 320, failed: 0, causes: {}, retried: 6, newSessions: 20 }], sent: 5000, answered: 5000, failed: 0, causes: {}, retried: { 'ERR_HTTP2_STREAM_ERROR rst 7': 10 }, sessionsOpened: 60, pids: 3 },
    { contender: 'naive-restart', label: 'fastify.close() + fresh start', sessions: 20, streams: 5, restarts: [{ at: 500, readyMs: 300, doneMs: 320, failed: 900, causes: { ECONNREFUSED: 900 }, retried: 0, newSessions: 20 }, { at: 1500, readyMs: 300, doneMs: 320, failed: 1100, causes: { ECONNREFUSED: 1100 }, retried: 2, newSessions: 20 }], sent: 5000, answered: 3000, failed: 2000, causes: { ECONNREFUSED: 2000 }, retried: {}, sessionsOpened: 60, pids: 3 }
  ],
  shutdown: [
    { contender: 'graceful-reboot', label: 'graceful-reboot', samples: [{ closeMs: 1020, inFlightOk: 50, inFlight: 50, lost: 0, lostCauses: {}, idle: 1000, idleOpenAtExit: 0, killed: false }] },
    { contender: 'fastify-close', label: 'fastify.close()', samples: [{ closeMs: 74_000, inFlightOk: 50, inFlight: 50, lost: 0, lostCauses: {}, idle: 1000, idleOpenAtExit: 0, killed: false }] }
  ],
  websocket: [
    { contender: 'graceful-reboot', label: 'graceful-reboot', samples: [{ clients: 100, codes: { 1001: 100 }, closeMs: 90, lastCloseMs: 70, killed: false }] },
    { contender: 'http-terminator', label: 'http-terminator', samples: [{ clients: 100, codes: { 1006: 99, 'still open': 1 }, closeMs: 1016, lastCloseMs: 1015, killed: false }] }
  ],
  overhead: {
    pairs: [{ without: 100, with: 97, ratio: 0.97 }],
    ratio: 0.97,
    withRps: 97,
    withoutRps: 100,
    memory: { connections: 10_000, samples: 4, without: { heapPerConn: 2800, rssPerConn: 7000, opened: 10_000 }, with: { heapPerConn: 3360, rssPerConn: 7100, opened: 10_000 }, heapOverheadPerConn: 560, heapOverheadRange: [555, 566], rssOverheadPerConn: 100 }
  },
  notes: ['a note']
}

test('results.md: a row per contender and mode, skipped reasons shown, every table row as wide as its header', (t) => {
  const md = resultsMarkdown(results)
  const tables = md.split('\n\n').filter((block) => block.startsWith('| '))
  t.is(tables.length, 8, 'targets, three restart tables, the HTTP/2 restart table, shutdown, websocket, overhead')
  for (const block of tables) {
    const widths = block.split('\n').map((line) => line.replace(/\\\|/g, '').split('|').length)
    t.true(widths.every((w) => w === widths[0]), block)
  }
  const keepAlive = tables[1] ?? ''
  t.is(keepAlive.split('\n').length, 2 + 3)
  t.true(keepAlive.includes('not run: PM2 could not start its daemon: EACCES'))
  t.true(keepAlive.includes('ECONNREFUSED 100, status 503 20'), 'causes, most frequent first')
  t.true(keepAlive.includes('graceful-reboot <label> \\| x'), 'a pipe in a label is escaped')
  t.true(keepAlive.includes('Reconnects per restart'))
  t.true(md.includes('### Keep-alive clients with think time: 1,000 clients, one connection each, 200–400 ms between requests'))
  const think = tables[2] ?? ''
  t.true(think.includes('| **0 (0–3)** |'), 'reconnects per restart: median (range)')
  t.true(think.includes('| **1,000** |'), think)
  t.false((tables[3] ?? '').includes('Reconnects'), 'not with a new connection per request: every request opens one')
  const h2 = tables[4] ?? ''
  t.true(md.includes('## 1b. Restart under load, HTTP/2 (h2c)'))
  t.true(h2.includes('| fastify.close() + fresh start | 2 | 5,000 | **2,000** | ECONNREFUSED 2,000 | 900–1,100 | 1 (0–2) | 20 | 300 |'), h2)
  t.true((tables[7] ?? '').includes('**+560 B per tracked connection** (555–566) (target ≤ 300)'))
  t.true(md.includes('(**quick run**'))
  t.true(md.includes('- a note'))
})

test('targets: met and missed, with the numbers', (t) => {
  const list = targets(results)
  t.deepEqual(list.map((x) => x.met), [true, true, true, true, true, false, false])
  t.regex(list[0]?.result ?? '', /graceful-reboot: 0 failed .* 3 of 3 other runs lost requests/)
  t.is(list[1]?.result, 'graceful-reboot: 0 of 100 (keep-alive), 0–3 of 1,000 (think-time) per restart; the other contenders: median 100 (keep-alive), 1,000 (think-time)')
  t.regex(list[2]?.result ?? '', /^graceful-reboot: 0 failed over 2 restarts; fastify.close\(\) \+ fresh start: 2,000$/)
  t.regex(list[6]?.result ?? '', /^560 B per connection .*median of 4 measurements/)
  const reconnecting = { ...results, restart: [restartRun('graceful-reboot', 'think-time', 0, { connections: 1000, restarts: thinkRestarts(0, [0, 11]) })] }
  t.false(targets(reconnecting)[1]?.met, 'more than 1 % of the connections reconnected at a restart')
  const lighter = { ...results, overhead: { ...results.overhead, memory: { ...results.overhead?.memory, heapOverheadPerConn: 300 } } } as BenchResults
  t.true(targets(lighter)[6]?.met)
  t.is(list[4]?.result, '100 of 100 clients saw 1001')
  t.regex(list[5]?.result ?? '', /0\.970/)
  const lossy = { ...results, restart: [restartRun('graceful-reboot', 'keep-alive', 1)] }
  t.false(targets(lossy)[0]?.met)
})

test('throughput series: requests per second re-bucketed, restarts as marks, skipped runs left out', (t) => {
  const series = throughputSeries(results.restart ?? [], 'keep-alive', 200)
  t.deepEqual(series.map((s) => s.name), ['graceful-reboot <label> | x: 0 failed', 'naive-restart <label> | x: 120 failed'])
  const first = series[0]
  t.deepEqual(first?.marks, [0.5, 1.5])
  // 40 complete 100 ms buckets (the last, partial one is dropped) -> 20 points of 200 ms.
  t.is(first?.points.length, 20)
  t.deepEqual(first?.points[0], { t: 0, value: 500 })
  t.deepEqual(first?.points[2], { t: 0.4, value: 250 }, '50 + 0 answered in 200 ms')
})

test('throughput.svg: a well-formed document, one panel per contender with its line, failures and restart marks', (t) => {
  const svg = throughputSvg(results, 'keep-alive')
  checkWellFormed(t, svg)
  t.is((svg.match(/<svg /g) ?? []).length, 1 + 2, 'the document and two panels')
  t.is((svg.match(/<polyline /g) ?? []).length, 2 * 2, 'answered and failed per panel')
  t.is((svg.match(/class="mark"/g) ?? []).length, 4)
  t.true(svg.includes('naive-restart &lt;label&gt; | x: 120 of 2,000 requests failed'))
  t.true(svg.includes('not run (PM2 could not start its daemon: EACCES)'))
  checkWellFormed(t, throughputSvg({ ...results, restart: [] }, 'new-connection'))
})

test('README: the generated block is replaced between its markers only', (t) => {
  const block = readmeBlock(results)
  t.true(block.startsWith(README_BEGIN) && block.endsWith(README_END))
  const readme = `# x\n\n## Benchmark\n\nhand-written\n\n${README_BEGIN}\nold\n${README_END}\n\nafter\n`
  const next = replaceReadmeBlock(readme, block)
  t.true(next.startsWith('# x\n\n## Benchmark\n\nhand-written\n\n'))
  t.true(next.endsWith(`${README_END}\n\nafter\n`))
  t.false(next.includes('\nold\n'))
  t.throws(() => replaceReadmeBlock('# no markers\n', block))
})

test('README: the headline block is replaced between its own markers, not those of bench/README.md', (t) => {
  const block = headlineBlock(results)
  t.true(block.startsWith(HEADLINE_BEGIN) && block.endsWith(HEADLINE_END))
  t.true(block.includes('[bench/README.md](bench/README.md)'))
  const readme = `# x\n\n${HEADLINE_BEGIN}\nold\n${HEADLINE_END}\n\nafter\n`
  const next = replaceReadmeBlock(readme, block, HEADLINE_BEGIN, HEADLINE_END)
  t.true(next.startsWith('# x\n\n') && next.endsWith(`${HEADLINE_END}\n\nafter\n`))
  t.false(next.includes('\nold\n'))
  t.throws(() => replaceReadmeBlock(readme, readmeBlock(results)), undefined, 'README.md has no block of bench/README.md')
})

test('bench/README.md and README.md show the committed results: their generated blocks match bench/results/results.json', (t) => {
  const root = path.join(__dirname, '..', '..')
  const file = path.join(root, 'bench', 'results', 'results.json')
  // The results are committed (git ls-files bench/results): a missing file is a broken checkout, not a pass.
  t.true(fs.existsSync(file), `${file} is missing: restore it (git checkout -- bench/results/results.json) or run \`npm run bench\``)
  if (!fs.existsSync(file)) return
  const committed = JSON.parse(fs.readFileSync(file, 'utf8')) as BenchResults
  const bench = fs.readFileSync(path.join(root, 'bench', 'README.md'), 'utf8')
  t.is(replaceReadmeBlock(bench, readmeBlock(committed)), bench, 'run `npm run bench` (a full run rewrites the block) or restore bench/README.md')
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8')
  t.is(replaceReadmeBlock(readme, headlineBlock(committed), HEADLINE_BEGIN, HEADLINE_END), readme, 'run `npm run bench` (a full run rewrites the headline) or restore README.md')
})

function workersRun (contender: string, workers: number, busiest: [number, number], failed = 0): WorkersRun {
  const load = (connections: number, f: number): WorkersRun['backToBack'] => ({ connections, sent: 1000, answered: 1000 - f, failed: f, causes: f > 0 ? { ECONNRESET: f } : {}, reconnects: f > 0 ? connections : 0 })
  return {
    contender,
    label: `${contender} | label`,
    workers,
    keepAlive: { connections: 32, rps: 4000, busiest: busiest[0], failed: 0 },
    fresh: { connections: 8, rps: 1200, busiest: busiest[1], failed: 0 },
    restarts: 3,
    backToBack: load(8, failed),
    think: load(20, 0),
    managerRssMb: 60
  }
}

function movesRun (connections: number, drainMs: number[], extra: Partial<MovesRun['reboots'][number]> = {}): MovesRun {
  return { connections, openMs: 2000, reboots: drainMs.map((ms) => ({ drainMs: ms, transferred: connections, kept: {}, forced: 0, closed: 0, ...extra })), sampled: 500, answeredBySuccessor: 500 }
}

function crashRun (contender: string, keepsSocket: boolean, refused: number[]): CrashRun {
  return { contender, label: `${contender} label`, keepsSocket, loops: 4, crashes: refused.map((n) => ({ refused: n, failed: n + 1, causes: n > 0 ? { ECONNREFUSED: n, ECONNRESET: 1 } : { ECONNRESET: 1 }, servingAfterMs: 800 })) }
}

const storm: StormRun = {
  durationMs: 30_000,
  intervalMs: 200,
  signals: 150,
  reboots: 20,
  refused: 130,
  loads: [
    { mode: 'keep-alive', connections: 8, sent: 30_000, answered: 30_000, failed: 0, causes: {}, reconnects: 0 },
    { mode: 'new-connection', connections: 4, sent: 6000, answered: 6000, failed: 0, causes: {}, reconnects: 0 }
  ]
}

const rows: BenchResults = {
  ...results,
  workers: [
    workersRun('supervisor', 2, [0.6, 0.55]),
    workersRun('cluster', 2, [0.52, 0.51], 10),
    { ...workersRun('pm2', 2, [0, 0]), skipped: 'PM2 could not start its daemon: EACCES' },
    workersRun('one', 1, [1, 1])
  ],
  moves: [movesRun(3000, [1400, 1100]), movesRun(10_000, [6600, 7000, 6900])],
  storm,
  crash: [crashRun('plain-restart', false, [358, 442]), crashRun('socket-activation', true, [0, 0]), crashRun('run-workers-1', true, [0, 0]), { ...crashRun('pm2', false, []), skipped: 'PM2 could not start its daemon: EACCES' }]
}

test('results.md and bench/README.md: the workers, moves, storm and crash tables, every row as wide as its header', (t) => {
  const md = resultsMarkdown(rows)
  const tables = md.split('\n\n').filter((block) => block.startsWith('| '))
  t.is(tables.length, 8 + 4, 'the eight tables before, then workers, moves, storm and crash')
  for (const block of tables) {
    const widths = block.split('\n').map((line) => line.replace(/\\\|/g, '').split('|').length)
    t.true(widths.every((w) => w === widths[0]), block)
  }
  for (const heading of ['## 5. Workers', '## 6. Moves', '## 7. Reload storm', '## 8. Crash refusals']) t.true(md.includes(heading), heading)
  const [workers, moves, stormTable, crash] = tables.slice(8)
  t.is(workers?.split('\n').length, 2 + 4)
  t.true(workers?.includes('| supervisor \\| label | 4,000 | 60.0 % | 1,200 | 55.0 % | 3 | **0** / 1,000 | 0 | **0** / 1,000 | 0 | 60 |'), workers)
  t.true(workers?.includes('**10** / 1,000 (ECONNRESET 10) | 8 |'), 'failures with their causes, reconnects')
  t.true(workers?.includes('| one \\| label | 4,000 | — | 1,200 | — |'), 'no spread for one process')
  t.true(workers?.includes('not run: PM2 could not start its daemon: EACCES'))
  t.is(moves?.split('\n').length, 2 + 5, 'a row per reboot')
  t.true(moves?.includes('| 10,000 | 1 | 10,000 | — | **0** | 0 | 6,600 | 1,515 |'), moves)
  t.true(stormTable?.includes('| 8 pooled keep-alive connections | 150 | 20 | 130 | 30,000 | **0** | — | 0 |'), stormTable)
  t.true(crash?.includes('| plain-restart label | no | 2 | **358, 442** | 359, 443 | ECONNREFUSED 800, ECONNRESET 2 | 800, 800 |'), crash)
  const block = readmeBlock(rows)
  for (const title of ['**5. Workers', '**6. Moves', '**7. Reload storm', '**8. Crash refusals']) t.true(block.includes(title), title)
  t.false(readmeBlock(results).includes('**5. Workers'), 'a run without the scenario has no section for it')
})

test('targets of workers, moves, storm and crash: computed from the results, after the others', (t) => {
  const list = targets(rows)
  t.is(list.length, targets(results).length + 6, 'workers: failed and spread; moves: one per size; storm; crash')
  t.deepEqual(list.slice(-6), rowTargets(rows))
  t.deepEqual(rowTargets(rows).map((x) => x.met), [true, true, true, true, true, true])
  const [failed, spread, moves3k, , stormTarget, crash] = rowTargets(rows)
  t.is(failed?.result, 'run --workers: 0 of 2,000 over 3 restarts; node:cluster: 10 of 2,000 over 3 restarts; one process: 0 of 2,000 over 3 restarts')
  t.is(spread?.target, 'Scenario 5: the busiest of 2 workers of `run --workers 2` takes at most 1/2 + 10 points (60.0 %) of the requests')
  t.is(spread?.result, 'keep-alive 60.0 %, new connections 55.0 %; node:cluster: 52.0 %, 51.0 %')
  t.is(moves3k?.result, 'reboot 1: 3,000 moved in 1,400 ms (2,143/s), 0 destroyed; reboot 2: 3,000 moved in 1,100 ms (2,727/s), 0 destroyed')
  t.is(stormTarget?.result, '0 failed of 36,000; 150 signals, 20 reboots done, 130 refused (one under way)')
  t.is(crash?.result, 'plain restart: 358, 442 refused; socket activation: 0, 0 refused; run --workers 1: 0, 0 refused')
})

test('targets of workers, moves, storm and crash: met flips to missed when a number crosses its target', (t) => {
  const met = (r: Partial<BenchResults>): boolean[] => rowTargets({ ...results, ...r }).map((x) => x.met)
  // Workers: one failed request of graceful-reboot (one process or the supervisor); the busiest worker past 60 %.
  t.deepEqual(met({ workers: [workersRun('supervisor', 2, [0.6, 0.6]), workersRun('one', 1, [1, 1])] }), [true, true])
  t.deepEqual(met({ workers: [workersRun('supervisor', 2, [0.6, 0.6]), workersRun('one', 1, [1, 1], 1)] }), [false, true])
  t.deepEqual(met({ workers: [workersRun('supervisor', 2, [0.601, 0.5])] }), [true, false])
  t.deepEqual(met({ workers: [workersRun('supervisor', 2, [0.5, 0.61])] }), [true, false])
  t.deepEqual(met({ workers: [workersRun('supervisor', 3, [0.43, 0.43])] }), [true, true], '1/3 + 10 points')
  t.deepEqual(met({ workers: [workersRun('supervisor', 3, [0.44, 0.43])] }), [true, false])
  t.deepEqual(met({ workers: [workersRun('cluster', 2, [0.9, 0.9], 50)] }), [], 'no graceful-reboot row: no target')
  // Moves: within 10 s; every connection moved, none destroyed; the rate not falling below half the one before.
  t.deepEqual(met({ moves: [movesRun(10_000, [9_000, 10_000])] }), [true])
  t.deepEqual(met({ moves: [movesRun(10_000, [6_600, 10_001])] }), [false])
  t.deepEqual(met({ moves: [movesRun(10_000, [2_000, 4_000, 8_000])] }), [true], 'half the rate of the reboot before is still not a drop')
  t.deepEqual(met({ moves: [movesRun(10_000, [2_000, 4_100])] }), [false])
  t.regex(rowTargets({ ...results, moves: [movesRun(10_000, [2_000, 4_100])] })[0]?.result ?? '', /the rate dropped at reboot 2$/)
  t.deepEqual(met({ moves: [movesRun(10_000, [1_000, 1_000], { transferred: 9_999, kept: { busy: 1 } })] }), [false], 'one connection not moved')
  t.deepEqual(met({ moves: [movesRun(10_000, [1_000, 1_000], { forced: 1 })] }), [false], 'one connection destroyed at the deadline')
  t.deepEqual(met({ moves: [movesRun(10_000, [1_000])] }), [false], 'one reboot cannot show the rate holding')
  t.deepEqual(met({ moves: [{ ...movesRun(10_000, []), error: 'EMFILE' }] }), [false])
  // Storm: one failed request, or no reboot at all.
  t.deepEqual(met({ storm }), [true])
  t.deepEqual(met({ storm: { ...storm, loads: [{ ...(storm.loads[0] as StormRun['loads'][number]), failed: 1 }] } }), [false])
  t.deepEqual(met({ storm: { ...storm, reboots: 0 } }), [false])
  // Crash: one refused connection for a contender that keeps the socket; refusals elsewhere do not count.
  t.deepEqual(met({ crash: [crashRun('plain-restart', false, [500]), crashRun('socket-activation', true, [0, 0])] }), [true])
  t.deepEqual(met({ crash: [crashRun('plain-restart', false, [500]), crashRun('socket-activation', true, [0, 1])] }), [false])
  t.deepEqual(met({ crash: [crashRun('socket-activation', true, [])] }), [false], 'no crash measured')
})

/** Tags balanced, attributes quoted, no raw '<' or stray '&' in text or attribute values. */
function checkWellFormed (t: { true: (v: boolean, m?: string) => void, is: (a: unknown, b: unknown, m?: string) => void }, xml: string): void {
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '')
  const stack: string[] = []
  const token = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/gy
  let roots = 0
  let consumed = 0
  for (let m = token.exec(body); m !== null; m = token.exec(body)) {
    consumed = token.lastIndex
    const [, closing, name, attrs, selfClosing, text] = m
    const entities = /&(?!(?:amp|lt|gt|quot|#39|#\d+);)/
    if (text !== undefined) {
      t.true(stack.length > 0 || text.trim() === '', 'no text outside the root')
      t.true(!entities.test(text), `a stray & in text: ${text.slice(0, 40)}`)
      continue
    }
    t.true(!entities.test(attrs ?? ''), `a stray & in attributes of <${name ?? ''}>`)
    if (closing === '/') {
      t.is(stack.pop(), name, `</${name ?? ''}> closes the open element`)
    } else if (selfClosing !== '/') {
      if (stack.length === 0) roots++
      stack.push(name ?? '')
    } else if (stack.length === 0) {
      roots++
    }
  }
  t.is(consumed, body.length, 'the whole document is tags and text')
  t.is(stack.length, 0, 'every element is closed')
  t.is(roots, 1, 'one root element')
}

/** An open-loop window with the given latency (p99, max) and failures. */
function olw (p99: number, max: number, failed = 0): OpenLoopWindow {
  return { from: 0, to: 1000, due: 1000, answered: 1000 - failed, failed, causes: failed > 0 ? { ECONNREFUSED: failed } : {}, latency: { count: 1000 - failed, p50: 1, p99, max }, service: { count: 1000 - failed, p50: 0.5, p99: p99 / 2, max }, clientLagMaxMs: 12 }
}

function latencyRun (contender: string, connections: number, steady: OpenLoopWindow, around: OpenLoopWindow, rollouts?: OpenLoopWindow[]): LatencyRun {
  return {
    contender,
    label: `${contender} <label>`,
    ours: contender.startsWith('graceful-reboot'),
    connections,
    periodMs: 1000,
    steady,
    around: { ...around, readyMs: 300, doneMs: 2500, transferred: connections },
    ...(rollouts !== undefined ? { rollouts: rollouts.map((w) => ({ ...w, readyMs: 900, doneMs: 3000 })) } : {}),
    due: 20_000,
    answered: 20_000,
    failed: around.failed,
    causes: around.causes,
    reconnects: 0,
    cpu: { steady: { servers: 0.61, client: 0.3, machine: 1.2, cores: 2 }, around: { servers: 1.4, client: 0.35, machine: 2, cores: 2 } },
    chart: { trigger: 7000, bucketMs: 100, points: Array.from({ length: 60 }, (_, i) => ({ t: 5000 + i * 100, count: 300, failed: 0, p50: 1, p99: i === 25 ? 90 : 5, max: i === 25 ? 95 : 8 })) }
  }
}

const latencyRuns: LatencyRun[] = [
  // steady p99 10, max 30: limits p99 40, max 280.
  latencyRun('graceful-reboot', 3000, olw(10, 30), olw(40, 280)),
  latencyRun('graceful-reboot', 10_000, olw(10, 30), olw(40.1, 100)),
  latencyRun('graceful-reboot-workers', 10_000, olw(10, 30), olw(20, 281), [olw(20, 100), olw(39, 279), olw(41, 100)]),
  latencyRun('naive-restart', 3000, olw(5, 20), olw(1200, 1300, 1895))
]

test('latency targets: p99 ≤ 2 × steady p99 + 20 ms and max ≤ steady max + 250 ms around the restart, met at the limits and missed past them, with the numbers; only for the package\'s runs', (t) => {
  const list = latencyTargets(latencyRuns)
  t.is(list.length, 4, 'three runs of ours, and the rollouts of the workers run; none for the plain restart')
  t.deepEqual(list.map((x) => x.met), [true, false, false, false])
  t.is(list[0]?.result, 'p99 40.0 ms (limit 40.0), max 280 ms (limit 280); steady 10.0 / 30; 0 failed')
  t.regex(list[1]?.result ?? '', /^p99 40\.1 ms \(limit 40\.0, missed\), max 100 ms \(limit 280\)/)
  t.regex(list[2]?.result ?? '', /max 281 ms \(limit 280, missed\)/)
  t.regex(list[2]?.target ?? '', /around a rollout of `run --workers 2`, 10,000 connections/)
  t.is(list[3]?.result, '2 of 3 rollouts met it; worst p99 41.0 ms (limit 40.0), worst max 279 ms (limit 280); 0 failed')
  const failing = latencyRun('graceful-reboot', 3000, olw(10, 30), olw(12, 40, 1))
  t.false(latencyTargets([failing])[0]?.met, 'a failed request misses the target')
  t.regex(latencyTargets([failing])[0]?.result ?? '', /; 1 failed$/)
  t.true(targets({ ...results, latency: latencyRuns }).some((x) => x.target.startsWith('Scenario 9: the same over back-to-back rollouts')), 'hooked into the targets table')
})

test('latency section: tables as wide as their headers, the plain restart shown for comparison, one chart per size', (t) => {
  const md = latencyMarkdown(latencyRuns, 'method text').join('\n')
  const tables = md.split('\n\n').filter((block) => block.startsWith('| '))
  t.is(tables.length, 2, 'steady vs around, and the back-to-back rollouts')
  for (const block of tables) {
    const widths = block.split('\n').map((line) => line.replace(/\\\|/g, '').split('|').length)
    t.true(widths.every((w) => w === widths[0]), block)
  }
  t.is((tables[0] ?? '').split('\n').length, 2 + 4)
  t.true((tables[0] ?? '').includes('| **1.0 / 1,200.0 / 1,300** |'), 'the plain restart, around')
  t.true((tables[0] ?? '').includes('**1,895** (ECONNREFUSED 1,895)'))
  t.true((tables[0] ?? '').includes('| 0.61 / 0.30 / 1.20 → 1.40 / 0.35 / 2.00 (of 2) |'), 'where the cores went')
  t.true((tables[1] ?? '').includes('| 3 | 2 of 3 | 39.0 (41.0) | 100 (279) | 0 | 3,000 |'), tables[1])
  t.deepEqual(Object.keys(latencySvgs(latencyRuns)), ['latency-3000.svg', 'latency-10000.svg'])
  t.true(md.includes('](latency-3000.svg)') && md.includes('method text'))
  t.true(resultsMarkdown({ ...results, latency: latencyRuns }).includes('## 9. Latency around a reboot and a rollout (open loop)'))
  t.true(readmeBlock({ ...results, latency: latencyRuns }).includes('](results/latency-10000.svg)'))
  t.false(resultsMarkdown(results).includes('## 9.'), 'no section without the scenario')
})

test('latency.svg: a well-formed document, a panel per contender at that size with p50, p99, max, the p99 limit and three marks', (t) => {
  const svg = latencySvg(latencyRuns, 3000)
  checkWellFormed(t, svg)
  t.is((svg.match(/<svg /g) ?? []).length, 1 + 2, 'the document and two panels (graceful-reboot, naive-restart)')
  t.is((svg.match(/<polyline /g) ?? []).length, 4 + 3, 'p50, p99, max and the limit for ours; no limit for the plain restart')
  t.is((svg.match(/class="mark"/g) ?? []).length, 2 * 3, 'trigger, ready, old process gone')
  t.true(svg.includes('naive-restart &lt;label&gt;'))
  // x in seconds from the trigger: the bucket at 7.0 s of the run is at 0.
  t.true(svg.includes('>-2<') || svg.includes('>-2.0<'), 'negative seconds before the trigger')
})
