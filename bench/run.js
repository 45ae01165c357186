'use strict'
// Runs the benchmark (`npm run bench` from the repository root, after the root build and
// `npm --prefix bench ci`). Writes results.json, results.md, throughput.svg and
// throughput-new-connection.svg to bench/results/ (a --quick run: bench/results/quick/, not committed).
// A complete full run into bench/results/ also rewrites the generated blocks of bench/README.md (every table) and README.md (the headline).
//   node bench/run.js [--quick] [--only restart,restart-h2,shutdown,websocket,overhead] [--restarts N]
//                     [--contenders key,key] [--out DIR] [--verbose]
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { performance } = require('node:perf_hooks')
const { parseArgs } = require('node:util')
const { execFileSync } = require('node:child_process')
const report = require('../dist/tools/bench-report.js')
const { Procs } = require('./lib/procs')
const { Pm2 } = require('./lib/pm2')
const { contenders: restartContenders, h2Contenders } = require('./lib/restarters')
const { restartScenario } = require('./scenarios/restart')
const { restartH2Scenario } = require('./scenarios/restart-h2')
const { shutdownScenario } = require('./scenarios/shutdown')
const { websocketScenario } = require('./scenarios/websocket')
const { overheadScenario } = require('./scenarios/overhead')
const { workersScenario, workersOptions, workersText } = require('./scenarios/workers')
const { movesScenario, movesOptions, movesText } = require('./scenarios/moves')
const { stormScenario, stormOptions, stormText } = require('./scenarios/storm')
const { crashScenario, crashOptions, crashText } = require('./scenarios/crash')
const { latencyScenario } = require('./scenarios/latency')
const { latencySvgs } = require('../dist/tools/bench-report-latency.js')

/** @import { BenchResults } from '../dist/tools/bench-report.js' */
/** @import { Contender } from './lib/restarters' */

const SCENARIOS = ['restart', 'restart-h2', 'shutdown', 'websocket', 'overhead', 'workers', 'moves', 'storm', 'crash', 'latency']

function options () {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      restarts: { type: 'string' },
      contenders: { type: 'string' },
      out: { type: 'string' },
      verbose: { type: 'boolean', default: false }
    }
  })
  const quick = values.quick
  const only = values.only === undefined ? SCENARIOS : values.only.split(',').map((s) => s.trim())
  for (const s of only) if (!SCENARIOS.includes(s)) throw new Error(`--only: unknown scenario ${s} (one of ${SCENARIOS.join(', ')})`)
  return {
    quick,
    only,
    verbose: values.verbose,
    contenders: values.contenders?.split(',').map((s) => s.trim()),
    out: path.resolve(values.out ?? path.join(__dirname, 'results', quick ? 'quick' : '')),
    // Only a complete full run into the committed results folder may speak for README.
    complete: !quick && values.only === undefined && values.contenders === undefined && values.restarts === undefined && values.out === undefined,
    restart: {
      // 6 per contender and mode in a full run: 6 contenders x 3 modes keep the whole run near 12 min on 2 cores.
      restarts: Number(values.restarts ?? (quick ? 3 : 6)),
      keepAliveConnections: 100,
      thinkConnections: 1000,
      thinkMs: /** @type {[number, number]} */ ([200, 400]),
      newConnectionLoops: 20,
      warmupMs: quick ? 700 : 1000,
      gapMs: quick ? 600 : 800,
      tailMs: 1000,
      requestTimeoutMs: 5000,
      bucketMs: 100,
      maxRunMs: 180_000,
      maxRequests: 3_000_000
    },
    restartH2: {
      restarts: Number(values.restarts ?? (quick ? 3 : 10)),
      sessions: 20,
      streams: 5,
      warmupMs: quick ? 700 : 1000,
      gapMs: quick ? 600 : 800,
      tailMs: 1000,
      maxRunMs: 180_000,
      maxRequests: 3_000_000
    },
    shutdown: { repetitions: quick ? 1 : 2, idle: 1000, inFlight: 50, slowMs: 1000, capMs: quick ? 20_000 : 90_000 },
    websocket: { repetitions: quick ? 1 : 2, clients: 100, capMs: 20_000 },
    overhead: { pairs: quick ? 12 : 32, runMs: 500, instances: quick ? 2 : 4, connections: 50, memoryConnections: 10_000, memoryRounds: quick ? 2 : 4 },
    workers: workersOptions(quick),
    moves: movesOptions(quick),
    storm: stormOptions(quick),
    crash: crashOptions(quick),
    latency: { sizes: quick ? [3000] : [3000, 10_000], periodMs: 1000, warmupMs: 2000, steadyMs: 5000, beforeMs: 1000, afterMs: 4000, tailMs: 1000, rollouts: quick ? 3 : 20, bucketMs: 100, requestTimeoutMs: 5000, maxRunMs: 600_000 }
  }
}

function machine () {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) ?? [])[1] ?? os.cpus()[0]?.model ?? 'unknown'
  let nproc = os.availableParallelism?.() ?? os.cpus().length
  try { nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim()) } catch {}
  let nofile = 'unknown'
  try { nofile = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim() } catch {}
  return {
    nproc,
    cpu: cpu.trim(),
    node: process.versions.node,
    os: `${os.type()} ${os.release()}`,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    loadavgStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    loadavgEnd: [],
    nofile
  }
}

function versions () {
  const v = (/** @type {string} */ name) => {
    try { return require(`${name}/package.json`).version } catch { return 'missing' }
  }
  return {
    'graceful-reboot': require('../package.json').version,
    fastify: v('fastify'),
    '@fastify/websocket': v('@fastify/websocket'),
    ws: v('ws'),
    'http-terminator': v('http-terminator'),
    'close-with-grace': v('close-with-grace'),
    '@godaddy/terminus': v('@godaddy/terminus'),
    pm2: v('pm2')
  }
}

async function main () {
  const o = options()
  const started = performance.now()
  const procs = new Procs()
  /** @type {string[]} */
  const notes = []
  /** @type {Pm2 | undefined} started on first use */
  let pm2
  const getPm2 = () => { pm2 ??= new Pm2(procs); return pm2 }
  const log = (/** @type {string} */ line) => process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`)
  const ctx = { procs, log, verbose: o.verbose }

  let cleaned = false
  const cleanup = async () => {
    if (cleaned) return
    cleaned = true
    if (pm2 !== undefined) {
      const note = await pm2.close()
      if (note !== undefined) notes.push(note)
    }
    const left = procs.killAll()
    if (left.length > 0) log(`killed ${left.length} process(es) still alive: ${left.join(', ')}`)
  }
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      log(`${sig}: cleaning up`)
      void cleanup().finally(() => process.exit(130))
    })
  }

  /** @type {BenchResults} */
  const results = {
    meta: { date: new Date().toISOString(), durationMs: 0, quick: o.quick, command: `node bench/run.js ${process.argv.slice(2).join(' ')}`.trim(), machine: machine(), versions: versions() },
    settings: {},
    notes
  }
  try {
    if (o.only.includes('restart')) {
      let list = restartContenders({ pm2: getPm2, pm2Instances: 1 })
      const wanted = o.contenders
      if (wanted !== undefined) list = list.filter((c) => wanted.includes(c.key))
      await checkPm2(list, getPm2, notes, log)
      const r = o.restart
      results.settings.restart = r
      results.settings.restartText = `${r.restarts} restarts per contender and mode, one after the other: each restart waits until the new process serves and the old one is gone, then ${r.gapMs} ms. ` +
        `Load: the accounting client (tools/load.ts; it honours \`Connection: close\`, never retries, times a request out after ${r.requestTimeoutMs} ms), GET / (a small JSON answer), ` +
        `three modes: ${r.keepAliveConnections} keep-alive connections in one pool, each sending its next request as soon as the last was answered (back-to-back); ` +
        `${r.thinkConnections} clients with one keep-alive connection each (their own agent) that pause ${r.thinkMs[0]}-${r.thinkMs[1]} ms (uniformly at random) between requests (think time: the connection is idle when the old process lets go of it, the moment a client's next request can meet a closing connection); ` +
        `or ${r.newConnectionLoops} loops that each open a new connection per request. ` +
        'Failed per restart: failures between one restart and the next. ' +
        'Reconnects per restart: TCP connections the clients established in the same span (counted at the client, at each socket\'s `connect`; a refused attempt is not one); the first restart comes once every pooled connection is open, so these are the connections the clients had to open again. ' +
        'Refused: total time in which connections were refused (ECONNREFUSED). ' +
        'p99 and max: latency of the answered requests over the whole run (a restart every 1-3 s). ' +
        'New process serves after: from the trigger until the old process got the successor\'s "ready" (hand-off rows), until the new process listens (fresh start), or the time `pm2 reload` took (PM2 rows: new worker ready and old one stopped, plus the CLI\'s own start-up). ' +
        'PM2: cluster mode, 1 instance, `wait_ready: true`, `listen_timeout` 20 s (PM2\'s default 3 s), `kill_timeout` 10 s (default 1.6 s); its restart moment is when `pm2 reload` was run. ' +
        '"Bare fd hand-off" rows: the listening socket handed to a successor by bench/apps/handoff.js (a minimal hand-off written for the benchmark, not this package), then that library\'s drain.'
      results.restart = await restartScenario(ctx, list, r)
    }
    if (o.only.includes('restart-h2')) {
      let list = h2Contenders()
      const wanted = o.contenders
      if (wanted !== undefined) list = list.filter((c) => wanted.includes(c.key))
      const r = o.restartH2
      results.settings.restartH2 = r
      results.settings.restartH2Text = `The same Fastify app as an h2c server (\`Fastify({ http2: true })\`, HTTP/2 without TLS), ${r.restarts} restarts per contender as in scenario 1. ` +
        `Load: ${r.sessions} node:http2 sessions with ${r.streams} requests in flight on each, back-to-back (tools/h2-load.ts, the client of the package's HTTP/2 tests): a session that receives GOAWAY takes no new request and the next one opens a new session; ` +
        'a request the server did not process (REFUSED_STREAM, or never sent) is sent again, up to 10 times, and counts once; every other failure counts (a reset stream, a closed connection, ECONNREFUSED while no process listens). ' +
        'Failed per restart: failures between one restart and the next; refused streams retried and new sessions, per restart, in the same span.'
      results.restartH2 = await restartH2Scenario(ctx, list, r)
    }
    if (o.only.includes('shutdown')) {
      results.settings.shutdown = o.shutdown
      results.settings.slowMs = o.shutdown.slowMs
      results.settings.shutdownText = `${o.shutdown.idle} idle keep-alive connections (each answered one request) plus ${o.shutdown.inFlight} requests of ${o.shutdown.slowMs} ms in flight on their own connections; ` +
        `SIGTERM once the app reports all ${o.shutdown.inFlight} running. Time to close: signal to process exit. Contenders alternate (${rounds(o.shutdown.repetitions)}; one that needed more than a minute is not run again); a process still alive ${o.shutdown.capMs / 1000} s after the signal is killed.`
      results.shutdown = await shutdownScenario(ctx, o.shutdown)
    }
    if (o.only.includes('websocket')) {
      results.settings.websocket = o.websocket
      results.settings.websocketText = `${o.websocket.clients} \`ws\` clients connected to a Fastify + @fastify/websocket echo route, each echoed once; then SIGTERM. Close codes as the clients saw them. Contenders alternate (${rounds(o.websocket.repetitions)}).`
      results.websocket = await websocketScenario(ctx, o.websocket)
    }
    if (o.only.includes('overhead')) {
      results.settings.overhead = o.overhead
      results.settings.overheadText = `Requests per second of GET / with ${o.overhead.connections} keep-alive connections, the same Fastify app with and without the plugin (${o.overhead.instances} processes of each up, loaded one at a time), ` +
        `${o.overhead.pairs} pairs of ${o.overhead.runMs} ms runs, alternating which goes first and which process of each serves, after a warm-up of each; ratio = median of the pair ratios (IQR: their interquartile range). ` +
        'Server CPU per request: user + system CPU time of the server process over a run, divided by its requests (less sensitive to other load on the machine than requests/s). ' +
        `Memory: ${o.overhead.memoryConnections} idle keep-alive connections (each answered one request) opened on a process with no other connection, heap and RSS after gc() minus before, per connection; ` +
        `${o.overhead.memoryRounds} rounds alternating which kind goes first and which process of each is measured; the figures are medians over the rounds, and the heap per tracked connection is the median of the rounds' (with − without) differences.`
      results.overhead = await overheadScenario(ctx, o.overhead)
    }
    const pm2Skipped = o.only.includes('workers') || o.only.includes('crash') ? await pm2Unavailable(getPm2, notes, log) : undefined
    /**
     * Runs scenario `key` (5-8) with its settings and their text in results.settings; logs how long it took.
     * @template T
     * @param {string} key
     * @param {object} settings
     * @param {string} text
     * @param {() => Promise<T>} run
     * @returns {Promise<T>}
     */
    const row = async (key, settings, text, run) => {
      results.settings[key] = settings
      results.settings[`${key}Text`] = text
      const t0 = performance.now()
      const out = await run()
      log(`scenario ${key} took ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      return out
    }
    if (o.only.includes('workers')) results.workers = await row('workers', o.workers, workersText(o.workers), () => workersScenario(ctx, o.workers, { pm2Skipped }))
    if (o.only.includes('moves')) results.moves = await row('moves', o.moves, movesText(o.moves), () => movesScenario(ctx, o.moves))
    if (o.only.includes('storm')) results.storm = await row('storm', o.storm, stormText(o.storm), () => stormScenario(ctx, o.storm))
    if (o.only.includes('crash')) results.crash = await row('crash', o.crash, crashText(o.crash), () => crashScenario(ctx, o.crash, { pm2: getPm2, pm2Skipped }))
    if (o.only.includes('latency')) {
      const l = o.latency
      results.settings.latency = l
      results.settings.latencyText = `Open loop (tools/open-loop.ts): ${l.sizes.join(' and ')} keep-alive connections, each due to send GET / every ${l.periodMs} ms (the connections spread evenly over the period), whatever the server does; ` +
        'a request\'s latency counts from the moment it was due, so a request that waited for its connection (the answer before it, a reconnect) counts the wait (coordinated omission corrected); the time from the actual write is shown beside it (what a closed-loop client reports). ' +
        `Steady: ${l.steadyMs} ms with no restart, after ${l.warmupMs} ms of warm-up. Around the restart: the requests due from ${l.beforeMs} ms before the trigger until ${l.tailMs} ms after the old process is gone (at least ${l.afterMs} ms after the trigger). ` +
        `Then ${l.rollouts} rollouts of \`run --workers 2\` back to back (each window: from its trigger to the next one's). A request unanswered ${l.requestTimeoutMs} ms after it was due fails (timeout); the client never retries. ` +
        'The load generator runs in the benchmark process, on the same 2 cores as the servers: its own event-loop delay is counted in the latency (shown per window).'
      results.latency = await latencyScenario(ctx, l, o.contenders)
    }
  } finally {
    await cleanup()
  }
  results.meta.durationMs = Math.round(performance.now() - started)
  results.meta.machine.loadavgEnd = os.loadavg().map((x) => Math.round(x * 100) / 100)
  fs.mkdirSync(o.out, { recursive: true })
  fs.writeFileSync(path.join(o.out, 'results.json'), JSON.stringify(results, null, 1) + '\n')
  fs.writeFileSync(path.join(o.out, 'results.md'), report.resultsMarkdown(results))
  if (results.restart !== undefined) {
    fs.writeFileSync(path.join(o.out, 'throughput.svg'), report.throughputSvg(results, 'keep-alive'))
    fs.writeFileSync(path.join(o.out, 'throughput-new-connection.svg'), report.throughputSvg(results, 'new-connection'))
  }
  for (const [name, svg] of Object.entries(latencySvgs(results.latency))) fs.writeFileSync(path.join(o.out, name), svg)
  log(`done in ${(results.meta.durationMs / 60_000).toFixed(1)} min; wrote ${path.relative(process.cwd(), o.out) || '.'}/results.{md,json}`)
  if (o.complete) {
    const files = [
      { file: path.join(__dirname, 'README.md'), block: report.readmeBlock(results), begin: report.README_BEGIN, end: report.README_END },
      { file: path.join(__dirname, '..', 'README.md'), block: report.headlineBlock(results), begin: report.HEADLINE_BEGIN, end: report.HEADLINE_END }
    ]
    for (const f of files) {
      const name = path.relative(path.join(__dirname, '..'), f.file)
      try {
        fs.writeFileSync(f.file, report.replaceReadmeBlock(fs.readFileSync(f.file, 'utf8'), f.block, f.begin, f.end))
        log(`updated the generated block of ${name}`)
      } catch (err) {
        log(`${name} not updated: ${/** @type {Error} */ (err).message}`)
      }
    }
  }
  process.stdout.write('\n' + report.targetsTable(results) + '\n')
}

/** @param {number} n */
function rounds (n) { return n === 1 ? '1 round' : `${n} rounds` }

/**
 * Why PM2 cannot start here (noted once), or undefined when it can.
 * @param {() => Pm2} getPm2
 * @param {string[]} notes
 * @param {(line: string) => void} log
 * @returns {Promise<string | undefined>}
 */
async function pm2Unavailable (getPm2, notes, log) {
  try {
    await getPm2().cli(['ping'], 60_000)
    return undefined
  } catch (err) {
    const why = `PM2 could not start its daemon: ${/** @type {Error} */ (err).message.split('\n').find((l) => l.trim() !== '') ?? 'unknown error'}`
    log(why)
    if (!notes.includes(why)) notes.push(why)
    return why
  }
}

/**
 * Marks the PM2 contenders skipped, with the reason, when PM2 cannot start here.
 * @param {Contender[]} list
 * @param {() => Pm2} getPm2
 * @param {string[]} notes
 * @param {(line: string) => void} log
 */
async function checkPm2 (list, getPm2, notes, log) {
  if (!list.some((c) => c.pm2)) return
  try {
    await getPm2().cli(['ping'], 60_000)
  } catch (err) {
    const why = `PM2 could not start its daemon: ${/** @type {Error} */ (err).message.split('\n').find((l) => l.trim() !== '') ?? 'unknown error'}`
    log(why)
    notes.push(why)
    for (const c of list) if (c.pm2) c.skipped = why
  }
}

// A closed stdout or stderr (`| head`) must not end the run before its clean-up.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`)
  process.exitCode = 1
})
