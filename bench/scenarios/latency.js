'use strict'
// Runs in the benchmark process: scenario 9, latency around a reboot and a rollout, open loop. For
// each size and contender: start it, open `connections` keep-alive connections that each send one
// request every `periodMs` (tools/open-loop.ts: latency from the intended send time), measure a
// steady window with no restart, then the window around one restart (from `beforeMs` before the
// trigger until the old process is gone plus `tailMs`, at least `afterMs` after the trigger), and
// for `graceful-reboot run --workers 2` `rollouts` rollouts back to back after it.
const path = require('node:path')
const { performance } = require('node:perf_hooks')
const { openLoop } = require('../../dist/tools/open-loop.js')
const { sleep, waitGone, isAlive } = require('../lib/procs')
const { freePort } = require('../lib/net')
const { CpuSampler } = require('../lib/cpu')
const { contenders: restartContenders } = require('../lib/restarters')

/** @import { Ctx, AppHandle } from '../lib/procs' */
/** @import { Contender, RestartInfo } from '../lib/restarters' */
/** @import { LatencyRun, LatencyRolloutWindow } from '../../dist/tools/bench-report-latency.js' */

const CLI = path.join(__dirname, '..', '..', 'dist', 'bin', 'graceful-reboot.js')

/**
 * Scenario 9's settings (bench/run.js options().latency).
 * @typedef {object} LatencyOptions
 * @property {number[]} sizes connections, one run per size and contender
 * @property {number} periodMs each connection's request is due this often
 * @property {number} warmupMs
 * @property {number} steadyMs
 * @property {number} beforeMs the window around a restart starts this long before its trigger
 * @property {number} afterMs and lasts at least this long after it
 * @property {number} tailMs and at least this long after the old process is gone
 * @property {number} rollouts back-to-back rollouts of the workers contender after the first
 * @property {number} bucketMs width of a point of the latency-over-time chart
 * @property {number} requestTimeoutMs
 * @property {number} maxRunMs
 */

/**
 * `graceful-reboot run --workers 2` with bench/apps/graceful.js as its script; restart(): SIGUSR2 to
 * the supervisor, resolves once both old workers handed over (their 'ready') and are gone.
 * @returns {Contender}
 */
function workersContender () {
  /** @type {AppHandle} set by start(), which runs first */
  let proc
  /** @type {number[]} */
  let workers = []
  return {
    key: 'graceful-reboot-workers',
    label: 'graceful-reboot run --workers 2 (rollout: SIGUSR2 to the supervisor)',
    async start (ctx) {
      // node <CLI> run --workers 2 -- bench/apps/graceful.js: the workers print the app's JSON lines on the supervisor's stdout.
      proc = ctx.procs.start('graceful', { env: { PORT: String(ctx.port) }, execArgv: [CLI, 'run', '--workers', '2', '--'], verbose: ctx.verbose })
      const first = await proc.waitFor('listening', { timeoutMs: 30_000 })
      const second = await proc.waitFor((e) => e.event === 'listening' && e.pid !== first.pid, { timeoutMs: 30_000 })
      workers = [first.pid, second.pid]
    },
    async restart () {
      const t0 = performance.now()
      const since = proc.events.length
      const old = workers
      process.kill(proc.pid, 'SIGUSR2')
      /** @type {number[]} */
      const next = []
      let readyAt = t0
      for (const pid of old) {
        const ready = await proc.waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === pid, { since, timeoutMs: 60_000 })
        next.push(/** @type {number} */ (ready.other))
        readyAt = Math.max(readyAt, ready.at)
      }
      for (const pid of old) if (!(await waitGone(pid, 60_000))) throw new Error(`old worker ${pid} still alive 60 s after the rollout began`)
      workers = next
      return { readyMs: readyAt - t0, doneMs: performance.now() - t0, successor: next[0] }
    },
    async stop () {
      for (const pid of [...workers, proc.pid]) if (isAlive(pid)) process.kill(pid, 'SIGKILL')
      for (const pid of [...workers, proc.pid]) await waitGone(pid, 5000)
    }
  }
}

/** The contenders, in report order: one process, the supervisor of 2 workers, a plain restart for comparison. */
function latencyContenders () {
  const restart = restartContenders({ pm2: () => { throw new Error('no PM2 in the latency scenario') }, pm2Instances: 1 })
  const pick = (/** @type {string} */ key) => /** @type {Contender} */ (restart.find((c) => c.key === key))
  return [
    { contender: pick('graceful-reboot'), ours: true, rollouts: false },
    { contender: workersContender(), ours: true, rollouts: true },
    { contender: pick('naive-restart'), ours: false, rollouts: false }
  ]
}

/**
 * @param {Ctx} ctx
 * @param {{ contender: Contender, ours: boolean, rollouts: boolean }} entry
 * @param {number} connections
 * @param {LatencyOptions} o
 * @returns {Promise<LatencyRun>}
 */
async function runOne (ctx, { contender, ours, rollouts }, connections, o) {
  const port = await freePort()
  await contender.start({ ...ctx, port })
  // The contender's processes (every pid the benchmark learnt of; the gone ones are skipped).
  const cpu = new CpuSampler(() => ctx.procs.pids)
  const load = openLoop({ port, connections, periodMs: o.periodMs, durationMs: o.maxRunMs, requestTimeoutMs: o.requestTimeoutMs })
  /** @type {string | undefined} */
  let error
  let steadyFrom = 0
  let steadyTo = 0
  let trigger = NaN
  /** @type {RestartInfo | undefined} */
  let info
  let aroundTo = 0
  /** @type {Array<{ at: number, info: RestartInfo }>} */
  const storm = []
  let end = 0
  const until = async (/** @type {number} */ t) => { while (load.now() < t) await sleep(Math.min(50, t - load.now())) }
  try {
    await load.ready
    await sleep(o.warmupMs)
    steadyFrom = load.now()
    await until(steadyFrom + o.steadyMs)
    steadyTo = load.now()
    await until(steadyTo + o.beforeMs)
    trigger = load.now()
    info = await contender.restart()
    ctx.log(`  ${contender.key} ${connections}: restart ready ${Math.round(info.readyMs)} ms, done ${Math.round(info.doneMs)} ms` + (info.transferred !== undefined ? `, ${info.transferred} handed to the successor` : ''))
    await until(Math.max(trigger + o.afterMs, trigger + info.doneMs + o.tailMs))
    aroundTo = load.now()
    if (rollouts) {
      for (let i = 0; i < o.rollouts; i++) {
        const at = load.now()
        const r = await contender.restart()
        storm.push({ at, info: r })
        ctx.log(`  ${contender.key} ${connections}: rollout ${i + 1}/${o.rollouts} ready ${Math.round(r.readyMs)} ms, done ${Math.round(r.doneMs)} ms`)
      }
      await sleep(o.tailMs)
    }
  } catch (err) {
    const message = /** @type {Error} */ (err).message
    error = message.split('\n')[0]
    ctx.log(`  ${contender.key} ${connections}: ${message}`)
  }
  end = load.now()
  if (aroundTo === 0) aroundTo = end
  const base = performance.now() - load.now()
  await load.stop()
  cpu.stop()
  try { await contender.stop() } catch {}
  const cores = (/** @type {number} */ from, /** @type {number} */ to) => cpu.between(base + from, base + to)
  const all = load.window(-Infinity, Infinity)
  const from = Number.isNaN(trigger) ? steadyFrom : trigger - o.beforeMs
  /** @type {LatencyRolloutWindow[]} */
  const windows = storm.map((s, i) => ({
    ...load.window(s.at, storm[i + 1]?.at ?? end),
    readyMs: round(s.info.readyMs),
    doneMs: round(s.info.doneMs)
  }))
  return {
    contender: contender.key,
    label: contender.label,
    ours,
    connections,
    periodMs: o.periodMs,
    ...(error !== undefined ? { error } : {}),
    steady: load.window(steadyFrom, steadyTo),
    around: {
      ...load.window(from, aroundTo),
      readyMs: round(info?.readyMs ?? NaN),
      doneMs: round(info?.doneMs ?? NaN),
      ...(info?.transferred !== undefined ? { transferred: info.transferred } : {})
    },
    ...(rollouts ? { rollouts: windows } : {}),
    due: all.due,
    answered: all.answered,
    failed: all.failed,
    causes: all.causes,
    latency: all.latency,
    reconnects: load.reconnects,
    cpu: {
      steady: cores(steadyFrom, steadyTo),
      around: cores(from, aroundTo),
      ...(rollouts && storm.length > 0 ? { rollouts: cores(storm[0]?.at ?? 0, end) } : {})
    },
    chart: {
      trigger: round(trigger),
      bucketMs: o.bucketMs,
      points: load.series(steadyTo - 2000, aroundTo, o.bucketMs)
    }
  }
}

/**
 * Runs every contender at every size (sizes in order; contenders alternate their order per size).
 * @param {Ctx} ctx
 * @param {LatencyOptions} o
 * @param {string[] | undefined} wanted contender keys (all when undefined)
 * @returns {Promise<LatencyRun[]>}
 */
async function latencyScenario (ctx, o, wanted) {
  /** @type {LatencyRun[]} */
  const runs = []
  const list = latencyContenders().filter((e) => wanted === undefined || wanted.includes(e.contender.key))
  for (const [i, n] of o.sizes.entries()) {
    for (const entry of i % 2 === 0 ? list : [...list].reverse()) {
      ctx.log(`scenario 9: ${entry.contender.label}, ${n} connections`)
      const r = await runOne(ctx, entry, n, o)
      ctx.log(`  => steady p99 ${r.steady.latency.p99} max ${r.steady.latency.max} ms; around the restart p99 ${r.around.latency.p99} max ${r.around.latency.max} ms, failed ${r.around.failed}` +
        (r.rollouts !== undefined ? `; ${r.rollouts.length} rollouts: worst p99 ${Math.max(0, ...r.rollouts.map((w) => w.latency.p99))} max ${Math.max(0, ...r.rollouts.map((w) => w.latency.max))} ms` : ''))
      runs.push(r)
    }
  }
  const order = new Map(list.map((e, i) => [e.contender.key, i]))
  return runs.sort((a, b) => a.connections - b.connections || (order.get(a.contender) ?? 0) - (order.get(b.contender) ?? 0))
}

/** @param {number} n */
function round (n) { return Math.round(n * 10) / 10 }

module.exports = { latencyScenario }
