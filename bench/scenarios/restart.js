'use strict'
// Runs in the benchmark process: scenario 1, restart under load. For each contender and each load
// mode: start it, run the accounting load client, trigger `restarts` restarts one after the other
// (each waits until the new process serves and the old one is gone, then `gapMs`), stop the load.
// Modes: `keep-alive` (pooled connections, back-to-back requests), `think-time` (clients with one
// pooled connection each that pause between requests), `new-connection` (a connection per request).
// Per restart: failed requests, and the connections the clients opened (with pooled clients: reconnects).
const { performance } = require('node:perf_hooks')
const { runLoad } = require('../../dist/tools/load.js')
const { failuresPerRestart, connectionsPerRestart, refusedMs } = require('../../dist/tools/bench-report.js')
const { sleep } = require('../lib/procs')
const { freePort } = require('../lib/net')

/** @import { Ctx } from '../lib/procs' */
/** @import { Contender } from '../lib/restarters' */
/** @import { RestartRun, RestartSample } from '../../dist/tools/bench-report.js' */
/** @import { LoadResult } from '../../dist/tools/load.js' */

/**
 * Scenario 1's settings (bench/run.js options().restart).
 * @typedef {object} RestartOptions
 * @property {number} restarts
 * @property {number} keepAliveConnections
 * @property {number} thinkConnections clients of the think-time mode, one pooled connection each
 * @property {[number, number]} thinkMs their pause between requests (uniform in [min, max])
 * @property {number} newConnectionLoops
 * @property {number} warmupMs
 * @property {number} gapMs
 * @property {number} tailMs
 * @property {number} requestTimeoutMs
 * @property {number} bucketMs
 * @property {number} maxRunMs
 * @property {number} maxRequests
 */

/**
 * @param {Ctx} ctx
 * @param {Contender} contender
 * @param {RestartRun['mode']} mode
 * @param {RestartOptions} o
 * @returns {Promise<RestartRun>}
 */
async function runOne (ctx, contender, mode, o) {
  const port = await freePort()
  const connections = mode === 'keep-alive' ? o.keepAliveConnections : mode === 'think-time' ? o.thinkConnections : o.newConnectionLoops
  const base = { contender: contender.key, label: contender.label, mode, connections, ...(mode === 'think-time' ? { thinkMs: o.thinkMs } : {}) }
  await contender.start({ ...ctx, port })
  const t0 = performance.now()
  const run = runLoad({
    url: `http://127.0.0.1:${port}/`,
    connections,
    ...(mode === 'think-time' ? { mode: 'keep-alive', thinkMs: o.thinkMs, agentPerLoop: true } : { mode }),
    durationMs: o.maxRunMs,
    maxRequests: o.maxRequests,
    requestTimeoutMs: o.requestTimeoutMs,
    bucketMs: o.bucketMs
  })
  /** @type {LoadResult[]} */
  const snapshots = []
  /** @type {Array<Omit<RestartSample, 'failed' | 'causes' | 'newConnections'>>} */
  const samples = []
  /** @type {string | undefined} */
  let error
  try {
    await sleep(o.warmupMs)
    // Pooled clients: the first restart comes once every connection is open, so that the connections
    // opened after it are reconnects (on a busy machine 1,000 clients may take longer than the warm-up).
    if (mode !== 'new-connection') {
      const until = performance.now() + 20_000
      while (run.snapshot().connectionsOpened < connections && performance.now() < until) await sleep(50)
      const opened = run.snapshot().connectionsOpened
      if (opened < connections) throw new Error(`only ${opened} of ${connections} keep-alive connections open 20 s after the start`)
    }
    for (let i = 0; i < o.restarts; i++) {
      const snap = run.snapshot()
      const at = performance.now() - t0
      const info = await contender.restart()
      snapshots.push(snap)
      samples.push({ at: round(at + (info.signalOffsetMs ?? 0)), readyMs: round(info.readyMs), doneMs: round(info.doneMs), ...(info.transferred !== undefined ? { transferred: info.transferred } : {}) })
      const now = run.snapshot()
      ctx.log(`  ${contender.key} ${mode}: restart ${i + 1}/${o.restarts} ready ${Math.round(info.readyMs)} ms, done ${Math.round(info.doneMs)} ms, failed so far ${now.failed}, connections opened so far ${now.connectionsOpened}` +
        (info.transferred !== undefined ? `, ${info.transferred} handed to the successor` : ''))
      await sleep(o.gapMs)
    }
  } catch (err) {
    const message = /** @type {Error} */ (err).message
    error = message.split('\n')[0]
    ctx.log(`  ${contender.key} ${mode}: ${message}`)
  }
  await sleep(o.tailMs)
  run.stop()
  const result = await run.result
  try { await contender.stop() } catch {}
  const per = failuresPerRestart(snapshots, result)
  const opened = connectionsPerRestart(snapshots, result)
  const restarts = samples.map((s, i) => ({ ...s, failed: per[i]?.failed ?? 0, causes: per[i]?.causes ?? {}, newConnections: opened[i] ?? 0 }))
  return {
    ...base,
    ...(error !== undefined ? { error } : {}),
    restarts,
    sent: result.sent,
    answered: result.answered,
    failed: result.failed,
    causes: result.causes,
    refusedMs: refusedMs(result),
    connectionsOpened: result.connectionsOpened,
    latency: result.latency,
    pids: result.pids.length,
    durationMs: round(result.durationMs),
    bucketMs: o.bucketMs,
    series: result.series
  }
}

/** The load modes, in report order. */
const MODES = /** @type {const} */ (['keep-alive', 'think-time', 'new-connection'])

/**
 * Runs every contender in every mode; every other pass runs the contenders in reverse order.
 * @param {Ctx} ctx
 * @param {Contender[]} contenders
 * @param {RestartOptions} o
 */
async function restartScenario (ctx, contenders, o) {
  /** @type {RestartRun[]} */
  const runs = []
  for (const [m, mode] of MODES.entries()) {
    const order = m % 2 === 0 ? contenders : [...contenders].reverse()
    for (const c of order) {
      if (c.skipped !== undefined) {
        runs.push({ contender: c.key, label: c.label, mode, connections: 0, skipped: c.skipped, restarts: [], sent: 0, answered: 0, failed: 0, causes: {}, refusedMs: 0, connectionsOpened: 0, latency: { p50: 0, p99: 0, max: 0 }, pids: 0, durationMs: 0, bucketMs: o.bucketMs, series: [] })
        continue
      }
      ctx.log(`scenario 1: ${c.label}, ${mode}`)
      const r = await runOne(ctx, c, mode, o)
      ctx.log(`  => sent ${r.sent}, failed ${r.failed} ${JSON.stringify(r.causes)}, new connections per restart ${r.restarts.map((s) => s.newConnections).join(' ')}, refused ${r.refusedMs} ms, p99 ${r.latency.p99} ms, max ${r.latency.max} ms`)
      runs.push(r)
    }
  }
  // Report in contender order.
  const index = new Map(contenders.map((c, i) => [c.key, i]))
  // Every run's contender is in `index`: the runs were made from `contenders`.
  const at = (/** @type {RestartRun} */ r) => /** @type {number} */ (index.get(r.contender))
  return runs.sort((a, b) => MODES.indexOf(a.mode) - MODES.indexOf(b.mode) || at(a) - at(b))
}

/** @param {number} n */
function round (n) { return Math.round(n * 10) / 10 }

module.exports = { restartScenario }
