'use strict'
// Runs in the benchmark process: scenario 4, overhead. Requests per second of the same Fastify app
// with and without the plugin (both processes up, loaded one at a time, alternating which goes
// first), and the memory each open keep-alive connection costs with and without it.
const http = require('node:http')
const { runLoad } = require('../../dist/tools/load.js')
const { median } = require('../../dist/tools/bench-report.js')
const { openIdle } = require('../lib/conns')
const { freePort } = require('../lib/net')
const { waitGone } = require('../lib/procs')

/** @import { AppHandle, Ctx } from '../lib/procs' */
/** @import { OverheadResult } from '../../dist/tools/bench-report.js' */

/**
 * Scenario 4's settings (bench/run.js options().overhead).
 * @typedef {{ pairs: number, runMs: number, instances: number, connections: number, memoryConnections: number }} OverheadOptions
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

/** @param {number} port */
function mem (port) { return /** @type {Promise<NodeJS.MemoryUsage>} */ (get(port, '/mem')) }

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
 * @param {Ctx} ctx
 * @param {number} port
 * @param {number} n
 * @returns {Promise<Memory>}
 */
async function memoryPerConnection (ctx, port, n) {
  const before = await mem(port)
  const idle = await openIdle(port, n, { batch: 500 })
  const after = await mem(port)
  const open = idle.openAt()
  idle.destroyAll()
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
    ctx.log(`scenario 4: memory at ${o.memoryConnections} connections`)
    /** @type {{ without?: Memory, with?: Memory, error?: string }} */
    const m = {}
    for (const k of /** @type {Kind[]} */ (['without', 'with'])) {
      try {
        m[k] = await memoryPerConnection(ctx, /** @type {{ port: number }} */ (apps[k][0]).port, o.memoryConnections)
        ctx.log(`  ${k}: ${Math.round(m[k].heapPerConn)} B heap, ${Math.round(m[k].rssPerConn)} B rss per connection (${m[k].opened} open)`)
      } catch (err) {
        const message = /** @type {Error} */ (err).message
        ctx.log(`  ${k}: ${message}`)
        m.error = `${k}: ${message.split('\n')[0]}`
        break
      }
    }
    if (m.with !== undefined && m.without !== undefined) {
      result.memory = {
        connections: o.memoryConnections,
        without: round(m.without),
        with: round(m.with),
        heapOverheadPerConn: Math.round(m.with.heapPerConn - m.without.heapPerConn),
        rssOverheadPerConn: Math.round(m.with.rssPerConn - m.without.rssPerConn)
      }
    } else {
      // The loop broke off on an error, which it recorded.
      result.memoryError = /** @type {string} */ (m.error)
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

/** @param {Memory} m */
function round (m) {
  return { heapPerConn: Math.round(m.heapPerConn), rssPerConn: Math.round(m.rssPerConn), opened: m.opened }
}

module.exports = { overheadScenario }
