'use strict'
// Runs in the benchmark process: scenario 4, overhead. Requests per second of the same Fastify app
// with and without the plugin (both processes up, loaded one at a time, alternating which goes
// first), and the memory each open keep-alive connection costs with and without it: the heap the
// plugin adds per tracked connection is (with − without) / connections, after gc(), in `memoryRounds`
// alternating rounds (median of the per-round differences).
const http = require('node:http')
const { runLoad } = require('../../dist/tools/load.js')
const { median } = require('../../dist/tools/bench-report.js')
const { openIdle } = require('../lib/conns')
const { freePort } = require('../lib/net')
const { performance } = require('node:perf_hooks')
const { sleep, waitGone } = require('../lib/procs')

/** @import { AppHandle, Ctx } from '../lib/procs' */
/** @import { OverheadResult } from '../../dist/tools/bench-report.js' */

/**
 * Scenario 4's settings (bench/run.js options().overhead).
 * @typedef {{ pairs: number, runMs: number, instances: number, connections: number, memoryConnections: number, memoryRounds: number }} OverheadOptions
 */

/** @typedef {'without' | 'with'} Kind the app without or with the plugin */
/** @typedef {{ rps: number, cpuUs: number }} Rps */
/** @typedef {{ instance: number, without: number, with: number, ratio: number, cpuUsWithout: number, cpuUsWith: number }} Pair */
/** @typedef {{ heapPerConn: number, rssPerConn: number, opened: number }} Memory */

/**
 * Starts `instances` processes of each kind: processes of the same kind differ by a few percent
 * from one another here (an A/A comparison of two processes without the plugin showed 4 %), so
 * every kind is measured over several processes.
 * @param {Ctx} ctx
 * @param {number} instances
 */
async function startApps (ctx, instances) {
  /** @type {Record<Kind, Array<{ app: AppHandle, port: number }>>} */
  const apps = { without: [], with: [] }
  for (let i = 0; i < instances; i++) {
    for (const [name, env] of /** @type {Array<[Kind, Record<string, string>]>} */ ([['without', { NO_PLUGIN: '1' }], ['with', {}]])) {
      const port = await freePort()
      const app = ctx.procs.start('graceful', { env: { PORT: String(port), ...env }, execArgv: ['--expose-gc'], verbose: ctx.verbose })
      const e = await app.waitFor('listening')
      if (e.plugin !== (name === 'with')) throw new Error(`the ${name} app reports plugin=${e.plugin}`)
      apps[name].push({ app, port })
    }
  }
  return apps
}

/**
 * One run: requests per second, and the server's CPU time per request (µs).
 * @param {number} port
 * @param {{ connections: number, runMs: number }} o
 * @returns {Promise<Rps>}
 */
async function rps (port, o) {
  const cpu0 = /** @type {NodeJS.CpuUsage} */ (await get(port, '/cpu'))
  const r = await runLoad({ url: `http://127.0.0.1:${port}/`, connections: o.connections, mode: 'keep-alive', durationMs: o.runMs, requestTimeoutMs: 5000 }).result
  const cpu1 = /** @type {NodeJS.CpuUsage} */ (await get(port, '/cpu'))
  if (r.failed > 0) throw new Error(`overhead run: ${r.failed} failed ${JSON.stringify(r.causes)}`)
  return { rps: r.answered / (r.durationMs / 1000), cpuUs: (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / r.answered }
}

/**
 * The app's memory after gc(), and its open connections (this request's own included).
 * @param {number} port
 */
function mem (port) { return /** @type {Promise<NodeJS.MemoryUsage & { connections: number }>} */ (get(port, '/mem')) }

/**
 * Resolves once the app has no connection open but the one asking (those of earlier runs closed).
 * @param {number} port
 */
async function settled (port) {
  const end = performance.now() + 20_000
  let m = await mem(port)
  while (m.connections > 1 && performance.now() < end) {
    await sleep(100)
    m = await mem(port)
  }
  if (m.connections > 1) throw new Error(`${m.connections - 1} connections of earlier runs still open after 20 s`)
}

/**
 * GET `path` on its own connection; resolves with the parsed JSON body.
 * @param {number} port
 * @param {string} path
 * @returns {Promise<unknown>}
 */
function get (port, path) {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (d) => { body += d }).on('end', () => resolve(JSON.parse(body)))
    }).on('error', reject)
  })
}

/**
 * Heap and RSS per idle keep-alive connection: `n` connections that each answered one request,
 * measured after gc() against the same process before they were opened (with nothing else open).
 * @param {number} port
 * @param {number} n
 * @returns {Promise<Memory>}
 */
async function memoryPerConnection (port, n) {
  await settled(port)
  const before = await mem(port)
  const idle = await openIdle(port, n, { batch: 500 })
  const after = await mem(port)
  const open = idle.openAt()
  idle.destroyAll()
  if (after.connections - before.connections !== n) throw new Error(`the app counts ${after.connections - before.connections} new connections, not ${n}`)
  return { heapPerConn: (after.heapUsed - before.heapUsed) / n, rssPerConn: (after.rss - before.rss) / n, opened: open }
}

/**
 * @param {Ctx} ctx
 * @param {OverheadOptions} o
 * @returns {Promise<OverheadResult>}
 */
async function overheadScenario (ctx, o) {
  const apps = await startApps(ctx, o.instances)
  try {
    ctx.log('scenario 4: warm-up')
    for (let i = 0; i < 2; i++) {
      for (const a of [...apps.without, ...apps.with]) await rps(a.port, { ...o, runMs: 1000 })
    }
    /** @type {Pair[]} */
    const pairs = []
    for (let i = 0; i < o.pairs; i++) {
      // ABBA: which app goes first alternates from pair to pair.
      /** @type {Kind[]} */
      const order = i % 2 === 0 ? ['without', 'with'] : ['with', 'without']
      // Filled for both kinds by the loop below.
      const p = /** @type {Record<Kind, Rps>} */ ({})
      // ... and which process of each kind serves it, every two pairs (instance < o.instances, the processes of a kind).
      const instance = Math.floor(i / 2) % o.instances
      for (const k of order) p[k] = await rps(/** @type {{ port: number }} */ (apps[k][instance]).port, o)
      const pair = {
        instance,
        without: Math.round(p.without.rps),
        with: Math.round(p.with.rps),
        ratio: round3(p.with.rps / p.without.rps),
        cpuUsWithout: round3(p.without.cpuUs),
        cpuUsWith: round3(p.with.cpuUs)
      }
      ctx.log(`  pair ${i + 1}/${o.pairs}: without ${pair.without} req/s (${pair.cpuUsWithout} µs CPU/req), with ${pair.with} req/s (${pair.cpuUsWith} µs CPU/req), ratio ${pair.ratio}`)
      pairs.push(pair)
    }
    /** @type {OverheadResult} */
    const result = {
      pairs,
      ratio: round3(median(pairs.map((p) => p.ratio))),
      ratioIqr: quartiles(pairs.map((p) => p.ratio)),
      withRps: Math.round(median(pairs.map((p) => p.with))),
      withoutRps: Math.round(median(pairs.map((p) => p.without))),
      cpuUsWith: round3(median(pairs.map((p) => p.cpuUsWith))),
      cpuUsWithout: round3(median(pairs.map((p) => p.cpuUsWithout))),
      // The noise floor: how far apart the per-process medians of the same kind are (max / min).
      sameKindSpread: {
        without: spread(apps.without.map((_, i) => median(pairs.filter((p) => p.instance === i).map((p) => p.without)))),
        with: spread(apps.with.map((_, i) => median(pairs.filter((p) => p.instance === i).map((p) => p.with))))
      }
    }
    ctx.log(`scenario 4: memory at ${o.memoryConnections} connections, ${o.memoryRounds} rounds`)
    try {
      /** @type {Array<Record<Kind, Memory>>} */
      const rounds = []
      for (let i = 0; i < o.memoryRounds; i++) {
        // Which kind goes first alternates, and which process of each kind is measured.
        /** @type {Kind[]} */
        const order = i % 2 === 0 ? ['without', 'with'] : ['with', 'without']
        // Filled for both kinds by the loop below.
        const m = /** @type {Record<Kind, Memory>} */ ({})
        for (const k of order) {
          m[k] = await memoryPerConnection(/** @type {{ port: number }} */ (apps[k][i % o.instances]).port, o.memoryConnections)
          ctx.log(`  round ${i + 1}, ${k}: ${Math.round(m[k].heapPerConn)} B heap, ${Math.round(m[k].rssPerConn)} B rss per connection (${m[k].opened} open)`)
        }
        ctx.log(`  round ${i + 1}: +${Math.round(m.with.heapPerConn - m.without.heapPerConn)} B heap per tracked connection`)
        rounds.push(m)
      }
      const pick = (/** @type {Kind} */ k) => ({
        heapPerConn: Math.round(median(rounds.map((m) => m[k].heapPerConn))),
        rssPerConn: Math.round(median(rounds.map((m) => m[k].rssPerConn))),
        opened: Math.min(...rounds.map((m) => m[k].opened))
      })
      const heap = rounds.map((m) => m.with.heapPerConn - m.without.heapPerConn)
      /** @type {[number, number]} */
      const heapRange = [Math.round(Math.min(...heap)), Math.round(Math.max(...heap))]
      result.memory = {
        connections: o.memoryConnections,
        samples: rounds.length,
        without: pick('without'),
        with: pick('with'),
        heapOverheadPerConn: Math.round(median(heap)),
        heapOverheadRange: heapRange,
        rssOverheadPerConn: Math.round(median(rounds.map((m) => m.with.rssPerConn - m.without.rssPerConn)))
      }
      ctx.log(`  => +${result.memory.heapOverheadPerConn} B heap per tracked connection (median of ${rounds.length}; range ${heapRange.join('–')} B)`)
    } catch (err) {
      const message = /** @type {Error} */ (err).message
      ctx.log(`  memory: ${message}`)
      result.memoryError = message.split('\n')[0] ?? message
    }
    return result
  } finally {
    for (const { app } of [...apps.without, ...apps.with]) {
      try { process.kill(app.pid, 'SIGKILL') } catch {}
      await waitGone(app.pid, 5000)
    }
  }
}

/** @param {number} n */
function round3 (n) { return Math.round(n * 1000) / 1000 }

/** @param {number[]} values */
function spread (values) {
  const v = values.filter((x) => x > 0)
  return v.length < 2 ? 1 : round3(Math.max(...v) / Math.min(...v))
}

/**
 * @param {number[]} values at least one
 * @returns {[number, number]}
 */
function quartiles (values) {
  const s = [...values].sort((a, b) => a - b)
  const at = (/** @type {number} */ q) => /** @type {number} */ (s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))])
  return [round3(at(0.25)), round3(at(0.75))]
}

module.exports = { overheadScenario }
