'use strict'
// Runs in the benchmark process: scenario 8, crash refusals. For each launcher (bench/lib/launchers.js):
// start the app under it, run `loops` loops that open a new connection per request, then SIGKILL the
// serving process `crashes` times, each once the previous one's replacement answers and has answered
// `settle` more requests. Per crash: requests refused (ECONNREFUSED) and failed from this kill to the
// next one, and the time from the kill until a new process answered (a new x-pid).
const { performance } = require('node:perf_hooks')
const { runLoad } = require('../../dist/tools/load.js')
const { failuresPerRestart } = require('../../dist/tools/bench-report.js')
const { sleep, waitGone } = require('../lib/procs')
const { freePort } = require('../lib/net')
const { launchers, RESTART_DELAY_MS } = require('../lib/launchers')

/** @import { Ctx } from '../lib/procs' */
/** @import { Pm2 } from '../lib/pm2' */
/** @import { CrashRun } from '../../dist/tools/bench-report-rows.js' */
/** @import { LoadResult } from '../../dist/tools/load.js' */

/**
 * @typedef {object} CrashOptions
 * @property {number} crashes per launcher
 * @property {number} loops of the new-connection load
 * @property {number} settle requests answered by the new process before the next kill
 * @property {number} requestTimeoutMs
 */

/**
 * Waits until `test(snapshot)` holds, polling every 10 ms; throws after `timeoutMs`.
 * @param {{ snapshot: () => LoadResult }} run
 * @param {(r: LoadResult) => boolean} test
 * @param {string} what
 * @param {number} [timeoutMs]
 */
async function until (run, test, what, timeoutMs = 30_000) {
  const end = performance.now() + timeoutMs
  while (!test(run.snapshot())) {
    if (performance.now() > end) throw new Error(`no ${what} within ${timeoutMs} ms`)
    await sleep(10)
  }
}

/**
 * @param {Ctx} ctx
 * @param {CrashOptions} o
 * @param {{ pm2: () => Pm2, pm2Skipped?: string | undefined }} deps
 * @returns {Promise<CrashRun[]>}
 */
async function crashScenario (ctx, o, { pm2, pm2Skipped }) {
  /** @type {CrashRun[]} */
  const runs = []
  for (const l of launchers({ pm2 })) {
    const base = { contender: l.key, label: l.label, keepsSocket: l.keepsSocket, loops: o.loops }
    if (l.pm2 === true && pm2Skipped !== undefined) {
      runs.push({ ...base, skipped: pm2Skipped, crashes: [] })
      continue
    }
    ctx.log(`scenario 8: ${l.label}`)
    const port = await freePort()
    /** @type {LoadResult[]} */
    const snapshots = []
    /** @type {number[]} */
    const servingAfter = []
    /** @type {string | undefined} */
    let error
    /** @type {ReturnType<typeof runLoad> | undefined} */
    let run
    try {
      await l.start({ ...ctx, port })
      run = runLoad({ url: `http://127.0.0.1:${port}/`, connections: o.loops, mode: 'new-connection', durationMs: 300_000, maxRequests: 3_000_000, requestTimeoutMs: o.requestTimeoutMs })
      const r = run
      await until(r, (s) => s.answered >= o.settle, 'answer')
      for (let i = 0; i < o.crashes; i++) {
        const pid = await l.servingPid()
        ctx.procs.track(pid)
        const before = r.snapshot()
        const known = new Set(before.pids)
        snapshots.push(before)
        const t0 = performance.now()
        process.kill(pid, 'SIGKILL')
        await until(r, (s) => s.pids.some((p) => !known.has(p)), 'answer from a new process')
        servingAfter.push(Math.round(performance.now() - t0))
        await waitGone(pid, 5000)
        const back = r.snapshot().answered
        await until(r, (s) => s.answered >= back + o.settle, `${o.settle} answers after crash ${i + 1}`)
        const now = r.snapshot()
        ctx.log(`  crash ${i + 1}/${o.crashes}: serving again after ${servingAfter[i]} ms; refused so far ${now.causes.ECONNREFUSED ?? 0}, failed so far ${now.failed}`)
      }
    } catch (err) {
      error = /** @type {Error} */ (err).message.split('\n')[0]
      ctx.log(`  ${l.key}: ${/** @type {Error} */ (err).message}`)
    }
    run?.stop()
    const result = run === undefined ? undefined : await run.result
    try { await l.stop() } catch {}
    const per = result === undefined ? [] : failuresPerRestart(snapshots, result)
    runs.push({
      ...base,
      ...(error !== undefined ? { error } : {}),
      crashes: per.slice(0, servingAfter.length).map((p, i) => ({ refused: p.causes.ECONNREFUSED ?? 0, failed: p.failed, causes: p.causes, servingAfterMs: servingAfter[i] ?? 0 }))
    })
  }
  return runs
}

/**
 * @param {boolean} quick
 * @returns {CrashOptions}
 */
function crashOptions (quick) {
  return { crashes: quick ? 2 : 3, loops: 4, settle: 100, requestTimeoutMs: 5000 }
}

/** @param {CrashOptions} o */
function crashText (o) {
  return `${o.crashes} SIGKILLs of the serving process per contender, under ${o.loops} loops that each open a new connection per request (tools/load.ts: never retries, times a request out after ${o.requestTimeoutMs / 1000} s); ` +
    `each kill once the process before answered ${o.settle} requests. The launchers restart the app ${RESTART_DELAY_MS} ms after it exits (the plain loop and socket activation; \`run --workers 1\` and PM2 by their own rules). ` +
    'Refused per crash: requests refused (ECONNREFUSED) from the kill to the next one; failed per crash: every failure in that span (refused, reset or timed out). ' +
    'Serving again after: from the kill until an answer came from a new process. Socket activation is written for the benchmark (bench/lib/launchers.js): the benchmark process holds the bound socket and passes it as fd 3 with LISTEN_FDS=1 and LISTEN_PID, as systemd does, and never accepts on it.'
}

module.exports = { crashScenario, crashOptions, crashText }
