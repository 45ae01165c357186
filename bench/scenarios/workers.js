'use strict'
// Runs in the benchmark process: scenario 5, workers. The contenders of tools/workers-contenders.ts
// (`graceful-reboot run --workers N`, a node:cluster primary, PM2 cluster mode with its recommended
// reload, one process with the plugin), one after the other: closed-loop throughput with pooled
// keep-alive connections and with a new connection per request, with the busiest worker's share of
// the answers (x-pid); then `restarts` rolling restarts under two accounting loads (pooled back-to-back
// and pooled with think time): failed requests and reconnects.
const { performance } = require('node:perf_hooks')
const { runLoad } = require('../../dist/tools/load.js')
const wc = require('../../dist/tools/workers-contenders.js')
const { PM2_BIN } = require('../lib/pm2')
const { sleep } = require('../lib/procs')

/** @import { Ctx } from '../lib/procs' */
/** @import { WorkersRun, RowLoad } from '../../dist/tools/bench-report-rows.js' */
/** @import { LoadResult } from '../../dist/tools/load.js' */

/**
 * @typedef {object} WorkersOptions
 * @property {number} workers
 * @property {string[]} contenders keys of tools/workers-contenders.ts, in report order
 * @property {number} restarts rolling restarts per contender
 * @property {number} keepAliveConnections of the throughput run
 * @property {number} keepAliveMs
 * @property {number} freshLoops of the new-connection throughput run
 * @property {number} freshMs
 * @property {number} backToBack pooled connections during the restarts
 * @property {number} think pooled clients with think time during the restarts
 * @property {[number, number]} thinkMs
 */

/**
 * @param {LoadResult} r
 * @param {number} connections
 * @returns {RowLoad}
 */
function rowLoad (r, connections) {
  return { connections, sent: r.sent, answered: r.answered, failed: r.failed, causes: r.causes, reconnects: Math.max(0, r.connectionsOpened - connections) }
}

/**
 * @param {Ctx} ctx
 * @param {WorkersOptions} o
 * @param {{ pm2Skipped?: string | undefined }} [deps]
 * @returns {Promise<WorkersRun[]>}
 */
async function workersScenario (ctx, o, { pm2Skipped } = {}) {
  wc.usePm2(PM2_BIN)
  const all = wc.workersContenders(o.workers)
  /** @type {WorkersRun[]} */
  const runs = []
  const zero = { connections: 0, sent: 0, answered: 0, failed: 0, causes: {}, reconnects: 0 }
  for (const key of o.contenders) {
    const c = all.find((x) => x.key === key)
    if (c === undefined) throw new Error(`workers: unknown contender ${key} (one of ${all.map((x) => x.key).join(', ')})`)
    const base = { contender: c.key, label: c.label, workers: c.key === 'one' ? 1 : o.workers }
    const empty = { keepAlive: { connections: o.keepAliveConnections, rps: 0, busiest: 0, failed: 0 }, fresh: { connections: o.freshLoops, rps: 0, busiest: 0, failed: 0 }, restarts: 0, backToBack: zero, think: zero }
    if (c.key.startsWith('pm2') && pm2Skipped !== undefined) {
      runs.push({ ...base, skipped: pm2Skipped, ...empty })
      continue
    }
    ctx.log(`scenario 5: ${c.label}`)
    const port = await wc.freePort()
    /** @type {Awaited<ReturnType<typeof c.start>> | undefined} */
    let running
    try {
      running = await c.start(port)
      const ka = await wc.blast(port, o.keepAliveConnections, o.keepAliveMs, true)
      const fresh = await wc.blast(port, o.freshLoops, o.freshMs, false)
      ctx.log(`  keep-alive ${Math.round(ka.rps)} req/s (busiest ${(ka.busiest * 100).toFixed(0)} %), new connections ${Math.round(fresh.rps)} req/s (busiest ${(fresh.busiest * 100).toFixed(0)} %)`)
      const url = `http://127.0.0.1:${port}/`
      const backToBack = runLoad({ url, connections: o.backToBack, mode: 'keep-alive', durationMs: 300_000, requestTimeoutMs: 5000 })
      const think = runLoad({ url, connections: o.think, mode: 'keep-alive', durationMs: 300_000, thinkMs: o.thinkMs, agentPerLoop: true, requestTimeoutMs: 5000 })
      /** @type {string | undefined} */
      let error
      let restarts = 0
      try {
        const end = performance.now() + 20_000
        while ((backToBack.snapshot().connectionsOpened < o.backToBack || think.snapshot().connectionsOpened < o.think) && performance.now() < end) await sleep(20)
        for (let i = 0; i < o.restarts; i++) {
          const t0 = performance.now()
          await running.restart()
          restarts++
          ctx.log(`  rolling restart ${i + 1}/${o.restarts} in ${Math.round(performance.now() - t0)} ms; failed so far ${backToBack.snapshot().failed + think.snapshot().failed}`)
        }
      } catch (err) {
        error = /** @type {Error} */ (err).message.split('\n')[0]
        ctx.log(`  ${c.key}: ${/** @type {Error} */ (err).message}`)
      }
      backToBack.stop()
      think.stop()
      const [a, b] = await Promise.all([backToBack.result, think.result])
      const rss = wc.rssMb(running.managerPid())
      runs.push({
        ...base,
        ...(error !== undefined ? { error } : {}),
        keepAlive: { connections: o.keepAliveConnections, rps: Math.round(ka.rps), busiest: round3(ka.busiest), failed: ka.failed },
        fresh: { connections: o.freshLoops, rps: Math.round(fresh.rps), busiest: round3(fresh.busiest), failed: fresh.failed },
        restarts,
        backToBack: rowLoad(a, o.backToBack),
        think: rowLoad(b, o.think),
        ...(rss !== undefined ? { managerRssMb: Math.round(rss) } : {})
      })
    } catch (err) {
      ctx.log(`  ${c.key}: ${/** @type {Error} */ (err).message}`)
      runs.push({ ...base, error: /** @type {Error} */ (err).message.split('\n')[0] ?? 'error', ...empty })
    } finally {
      for (const pid of wc.workerPids) ctx.procs.track(pid)
      try { await running?.stop() } catch {}
      for (const pid of wc.workerPids) ctx.procs.track(pid)
    }
  }
  return runs
}

/** @param {number} x */
function round3 (x) { return Math.round(x * 1000) / 1000 }

/**
 * @param {boolean} quick
 * @returns {WorkersOptions}
 */
function workersOptions (quick) {
  return {
    workers: 2,
    contenders: ['supervisor', 'cluster', 'pm2', 'one'],
    restarts: quick ? 1 : 3,
    keepAliveConnections: 32,
    keepAliveMs: quick ? 1500 : 5000,
    freshLoops: 8,
    freshMs: quick ? 1000 : 3000,
    backToBack: 8,
    think: 20,
    thinkMs: [50, 150]
  }
}

/** @param {WorkersOptions} o */
function workersText (o) {
  return `${o.workers} workers of the same Fastify app (tools/workers-app.ts) under each manager (tools/workers-contenders.ts), one after the other: \`graceful-reboot run --workers ${o.workers}\` (rolling reboot on SIGUSR2), ` +
    `a node:cluster primary (round-robin, Node's default on Linux; rolls by forking a new worker, then disconnecting the old one), PM2 cluster mode (${o.workers} instances, \`pm2 reload\` with \`wait_ready\` and \`app.close()\` on SIGINT, its documented setup), and one process with the plugin (rebooted by SIGUSR2). ` +
    `Throughput: ${o.keepAliveConnections} pooled keep-alive connections for ${o.keepAliveMs / 1000} s, then ${o.freshLoops} loops opening a new connection per request for ${o.freshMs / 1000} s, each loop one request at a time; busiest worker: its share of the answers (x-pid). ` +
    `Then ${o.restarts} rolling restart${o.restarts === 1 ? '' : 's'}, one after the other, under ${o.backToBack} pooled keep-alive connections (back-to-back) and ${o.think} clients with one pooled connection each and ${o.thinkMs[0]}-${o.thinkMs[1]} ms of think time (tools/load.ts): failed requests and reconnects (connections opened beyond the first ones). ` +
    'Manager RSS: the supervisor\'s, the primary\'s or the PM2 daemon\'s resident memory after the restarts.'
}

module.exports = { workersScenario, workersOptions, workersText }
