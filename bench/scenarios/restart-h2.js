'use strict'
// Runs in the benchmark process: scenario 1b, restart under HTTP/2 load. The same Fastify app as an
// h2c server (`http2: true`); node:http2 clients (tools/h2-load.ts) that open a new session after a
// GOAWAY and send again a request the server never processed (REFUSED_STREAM): what a well-behaved
// h2 client does. For each contender: start it, run the load, trigger `restarts` restarts one after
// the other (each waits until the new process serves and the old one is gone, then `gapMs`).
const { performance } = require('node:perf_hooks')
const { runH2Load } = require('../../dist/tools/h2-load.js')
const { causeDelta } = require('../../dist/tools/bench-report.js')
const { sleep } = require('../lib/procs')
const { freePort } = require('../lib/net')

/** @import { Ctx } from '../lib/procs' */
/** @import { Contender } from '../lib/restarters' */
/** @import { H2RestartRun } from '../../dist/tools/bench-report.js' */
/** @import { H2LoadResult } from '../../dist/tools/h2-load.js' */

/**
 * Scenario 1b's settings (bench/run.js options().restartH2).
 * @typedef {object} H2RestartOptions
 * @property {number} restarts
 * @property {number} sessions sessions open at a time
 * @property {number} streams requests in flight per session, back-to-back
 * @property {number} warmupMs
 * @property {number} gapMs
 * @property {number} tailMs
 * @property {number} maxRunMs
 * @property {number} maxRequests
 */

/**
 * @param {Ctx} ctx
 * @param {Contender} contender
 * @param {H2RestartOptions} o
 * @returns {Promise<H2RestartRun>}
 */
async function runOne (ctx, contender, o) {
  const port = await freePort()
  await contender.start({ ...ctx, port })
  const t0 = performance.now()
  const run = runH2Load({ origin: `http://127.0.0.1:${port}`, sessions: o.sessions, streams: o.streams, durationMs: o.maxRunMs, maxRequests: o.maxRequests })
  /** @type {H2LoadResult[]} */
  const snapshots = []
  /** @type {Array<{ at: number, readyMs: number, doneMs: number }>} */
  const samples = []
  /** @type {string | undefined} */
  let error
  try {
    await sleep(o.warmupMs)
    for (let i = 0; i < o.restarts; i++) {
      const snap = run.snapshot()
      const at = performance.now() - t0
      const info = await contender.restart()
      snapshots.push(snap)
      samples.push({ at: round(at), readyMs: round(info.readyMs), doneMs: round(info.doneMs) })
      const now = run.snapshot()
      ctx.log(`  ${contender.key} h2: restart ${i + 1}/${o.restarts} ready ${Math.round(info.readyMs)} ms, done ${Math.round(info.doneMs)} ms, failed so far ${now.failed}, sessions opened so far ${now.sessionsOpened}`)
      await sleep(o.gapMs)
    }
  } catch (err) {
    const message = /** @type {Error} */ (err).message
    error = message.split('\n')[0]
    ctx.log(`  ${contender.key} h2: ${message}`)
  }
  await sleep(o.tailMs)
  run.stop()
  const result = await run.result
  try { await contender.stop() } catch {}
  const restarts = samples.map((s, i) => {
    const before = /** @type {H2LoadResult} */ (snapshots[i])
    const after = snapshots[i + 1] ?? result
    return {
      ...s,
      failed: after.failed - before.failed,
      causes: causeDelta(before.causes, after.causes),
      retried: sum(Object.values(after.retried)) - sum(Object.values(before.retried)),
      newSessions: after.sessionsOpened - before.sessionsOpened
    }
  })
  return {
    contender: contender.key,
    label: contender.label,
    sessions: o.sessions,
    streams: o.streams,
    ...(error !== undefined ? { error } : {}),
    restarts,
    sent: result.sent,
    answered: result.answered,
    failed: result.failed,
    causes: result.causes,
    retried: result.retried,
    sessionsOpened: result.sessionsOpened,
    pids: result.pids.length
  }
}

/**
 * @param {Ctx} ctx
 * @param {Contender[]} contenders
 * @param {H2RestartOptions} o
 */
async function restartH2Scenario (ctx, contenders, o) {
  /** @type {H2RestartRun[]} */
  const runs = []
  for (const c of contenders) {
    ctx.log(`scenario 1b: ${c.label}, HTTP/2 (h2c)`)
    const r = await runOne(ctx, c, o)
    ctx.log(`  => sent ${r.sent}, failed ${r.failed} ${JSON.stringify(r.causes)}, retried ${JSON.stringify(r.retried)}, new sessions per restart ${r.restarts.map((s) => s.newSessions).join(' ')}`)
    runs.push(r)
  }
  return runs
}

/** @param {number[]} values */
function sum (values) { return values.reduce((a, b) => a + b, 0) }

/** @param {number} n */
function round (n) { return Math.round(n * 10) / 10 }

module.exports = { restartH2Scenario }
