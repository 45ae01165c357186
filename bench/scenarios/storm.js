'use strict'
// Runs in the benchmark process: scenario 7, a reload storm. The falsification suite's app
// (test/fixtures/falsify-app.ts: the plugin with a PID file and a 200 ms probation; its answers echo
// the request's id) under pooled keep-alive and new-connection load whose answers are checked; a
// SIGUSR2 every `intervalMs` for `durationMs` to the process the PID file names. Then every successor
// spawned must serve and every process but the last exit; counted: failed requests, reboots done,
// reboots refused (one under way).
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { performance } = require('node:perf_hooks')
const { runLoad } = require('../../dist/tools/load.js')
const { sleep } = require('../lib/procs')

/** @import { Ctx, AppEvent } from '../lib/procs' */
/** @import { StormRun } from '../../dist/tools/bench-report-rows.js' */
/** @import { LoadRun } from '../../dist/tools/load.js' */

const APP = path.join(__dirname, '..', '..', 'dist', 'test', 'fixtures', 'falsify-app.js')

/**
 * @typedef {object} StormOptions
 * @property {number} durationMs
 * @property {number} intervalMs
 * @property {number} probationMs the app's rebootProbation
 * @property {number} keepAlive pooled keep-alive connections
 * @property {number} fresh loops opening a new connection per request
 * @property {number} requestTimeoutMs
 */

/**
 * @param {LoadRun[]} loads
 * @param {number} n
 */
async function answeredMore (loads, n) {
  const from = loads.map((l) => l.snapshot().answered)
  const end = performance.now() + 30_000
  while (loads.some((l, i) => l.snapshot().answered < (from[i] ?? 0) + n)) {
    if (performance.now() > end) throw new Error(`the loads did not answer ${n} more requests within 30 s`)
    await sleep(10)
  }
}

const checkId = (/** @type {number} */ id, /** @type {string} */ body) => { try { return JSON.parse(body).id === id } catch { return false } }

/**
 * @param {Ctx} ctx
 * @param {StormOptions} o
 * @returns {Promise<StormRun>}
 */
async function stormScenario (ctx, o) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-bench-storm-'))
  const pidFile = path.join(dir, 'app.pid')
  const app = ctx.procs.startCommand('falsify-app', process.execPath, [APP], { env: { PID_FILE: pidFile, PROBATION: String(o.probationMs), PORT: '0' }, verbose: ctx.verbose })
  /** @type {LoadRun[]} */
  let loads = []
  let signals = 0
  /** @type {string | undefined} */
  let error
  try {
    const first = await app.waitFor('listening')
    const url = `http://127.0.0.1:${Number(first.port)}/`
    const common = { url, check: checkId, durationMs: o.durationMs + 120_000, maxRequests: 5_000_000, requestTimeoutMs: o.requestTimeoutMs }
    loads = [
      runLoad({ ...common, connections: o.keepAlive, mode: 'keep-alive' }),
      runLoad({ ...common, connections: o.fresh, mode: 'new-connection' })
    ]
    await answeredMore(loads, 50)
    ctx.log(`scenario 7: a SIGUSR2 every ${o.intervalMs} ms for ${o.durationMs / 1000} s`)
    const started = performance.now()
    while (performance.now() - started < o.durationMs) {
      try { process.kill(Number(fs.readFileSync(pidFile, 'utf8').trim()), 'SIGUSR2'); signals++ } catch {}
      await sleep(o.intervalMs)
    }
    // Each successor spawned serves; then every process but the last drains and exits.
    const spawned = app.events.filter((e) => e.event === 'handoff' && e.step === 'spawned').length
    await app.waitFor(() => app.events.filter((e) => e.event === 'listening' && e.parent !== null).length >= spawned, { timeoutMs: 60_000 })
    const serving = app.events.filter((e) => e.event === 'listening')
    const last = /** @type {AppEvent} */ (serving[serving.length - 1])
    for (const l of serving) {
      if (l === last) continue
      await app.waitFor((e) => e.event === 'exit' && e.pid === l.pid, { timeoutMs: 60_000 })
    }
    await answeredMore(loads, 50)
  } catch (err) {
    error = /** @type {Error} */ (err).message.split('\n')[0]
    ctx.log(`  storm: ${/** @type {Error} */ (err).message}`)
  }
  for (const l of loads) l.stop()
  const results = await Promise.all(loads.map((l) => l.result))
  for (const e of app.events) if (e.event === 'listening') { try { process.kill(e.pid, 'SIGKILL') } catch {} }
  fs.rmSync(dir, { recursive: true, force: true })
  const run = {
    ...(error !== undefined ? { error } : {}),
    durationMs: o.durationMs,
    intervalMs: o.intervalMs,
    signals,
    reboots: app.events.filter((e) => e.event === 'listening' && e.parent !== null).length,
    refused: app.events.filter((e) => e.event === 'handoff' && e.step === 'refused').length,
    loads: results.map((r, i) => {
      const connections = i === 0 ? o.keepAlive : o.fresh
      return { mode: /** @type {'keep-alive' | 'new-connection'} */ (i === 0 ? 'keep-alive' : 'new-connection'), connections, sent: r.sent, answered: r.answered, failed: r.failed, causes: r.causes, reconnects: i === 0 ? Math.max(0, r.connectionsOpened - connections) : 0 }
    })
  }
  ctx.log(`  => ${run.signals} signals, ${run.reboots} reboots done, ${run.refused} refused; failed ${run.loads.map((l) => `${l.failed} of ${l.sent} (${l.mode})`).join(', ')}`)
  return run
}

/**
 * @param {boolean} quick
 * @returns {StormOptions}
 */
function stormOptions (quick) {
  return { durationMs: quick ? 5000 : 30_000, intervalMs: 200, probationMs: 200, keepAlive: 8, fresh: 4, requestTimeoutMs: 5000 }
}

/** @param {StormOptions} o */
function stormText (o) {
  return `The falsification suite's app (test/fixtures/falsify-app.ts: the plugin with a PID file and \`rebootProbation\` ${o.probationMs} ms; each answer echoes its request's id, and a wrong answer counts as failed) under ${o.keepAlive} pooled keep-alive connections (back-to-back) and ${o.fresh} loops opening a new connection per request; ` +
    `a SIGUSR2 every ${o.intervalMs} ms for ${o.durationMs / 1000} s to the process the PID file names. A signal that comes while a reboot is under way is refused (counted); the run ends once every successor spawned serves and every process but the last has exited. ` +
    'Reconnects: connections the pooled clients opened beyond their first ones.'
}

module.exports = { stormScenario, stormOptions, stormText }
