'use strict'
// Runs in the benchmark process: scenario 2, shutdown latency. 1,000 idle keep-alive connections
// plus 50 in-flight 1 s requests (each on its own keep-alive connection of a pooled agent), then
// SIGTERM; time from the signal to the process's exit, and what happened to the requests.
const http = require('node:http')
const { performance } = require('node:perf_hooks')
const { openIdle } = require('../lib/conns')
const { freePort } = require('../lib/net')
const { sleep, waitGone } = require('../lib/procs')

/** @import { Ctx } from '../lib/procs' */
/** @import { ShutdownRun } from '../../dist/tools/bench-report.js' */

/**
 * Scenario 2's settings (bench/run.js options().shutdown).
 * @typedef {{ repetitions: number, idle: number, inFlight: number, slowMs: number, capMs: number }} ShutdownOptions
 */

/** @typedef {{ key: string, label: string, app: string }} ShutdownContender */

/** @type {ShutdownContender[]} */
const CONTENDERS = [
  { key: 'graceful-reboot', label: 'graceful-reboot shutdown (SIGTERM)', app: 'graceful' },
  { key: 'fastify-close', label: 'fastify.close()', app: 'fastify-close' },
  { key: 'http-terminator', label: 'http-terminator (default 1 s timeout)', app: 'http-terminator' },
  { key: 'close-with-grace', label: "close-with-grace + fastify.close() (its README's Fastify example, default 10 s delay)", app: 'close-with-grace' },
  { key: 'terminus', label: '@godaddy/terminus (default options: 1 s timeout)', app: 'terminus' }
]

/**
 * Starts `n` GET /slow?ms=... on their own keep-alive connections; resolves per request with 'ok' or a cause.
 * @param {number} port
 * @param {number} n
 * @param {number} ms
 * @param {http.Agent} agent
 * @returns {Array<Promise<string>>}
 */
function inFlight (port, n, ms, agent) {
  return Array.from({ length: n }, () => new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/slow?ms=${ms}`, agent }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`))
      res.on('error', (/** @type {NodeJS.ErrnoException} */ err) => resolve(err.code ?? err.message))
      res.on('aborted', () => resolve('aborted'))
    })
    req.on('error', (/** @type {NodeJS.ErrnoException} */ err) => resolve(err.code ?? err.message))
  }))
}

/**
 * @param {Ctx} ctx
 * @param {ShutdownContender} c
 * @param {ShutdownOptions} o
 * @param {number} capMs
 * @returns {Promise<ShutdownRun['samples'][number]>}
 */
async function sample (ctx, c, o, capMs) {
  const port = await freePort()
  const app = ctx.procs.start(c.app, { env: { PORT: String(port), SLOW_REPORT: String(o.inFlight) }, verbose: ctx.verbose })
  await app.waitFor('listening')
  const idle = await openIdle(port, o.idle)
  const agent = new http.Agent({ keepAlive: true, maxSockets: o.inFlight * 2 })
  const requests = inFlight(port, o.inFlight, o.slowMs, agent)
  await app.waitFor('slow-started', { timeoutMs: 20_000 })
  const t0 = performance.now()
  process.kill(app.pid, 'SIGTERM')
  const exited = await Promise.race([app.exited, sleep(capMs).then(() => undefined)])
  let killed = false
  if (exited === undefined) {
    killed = true
    process.kill(app.pid, 'SIGKILL')
    await app.exited
  }
  const exitAt = app.exitInfo.at
  const outcomes = await Promise.all(requests)
  /** @type {Record<string, number>} */
  const lostCauses = {}
  for (const out of outcomes) if (out !== 'ok') lostCauses[out] = (lostCauses[out] ?? 0) + 1
  const ok = outcomes.filter((x) => x === 'ok').length
  const s = {
    closeMs: Math.round(exitAt - t0),
    inFlightOk: ok,
    inFlight: o.inFlight,
    lost: o.inFlight - ok,
    lostCauses,
    idle: o.idle,
    idleOpenAtExit: idle.openAt(exitAt - 1),
    killed
  }
  idle.destroyAll()
  agent.destroy()
  await waitGone(app.pid, 5000)
  return s
}

/**
 * @param {Ctx} ctx
 * @param {ShutdownOptions} o
 */
async function shutdownScenario (ctx, o) {
  /** @type {ShutdownRun[]} */
  const runs = CONTENDERS.map((c) => ({ contender: c.key, label: c.label, samples: [] }))
  for (let rep = 0; rep < o.repetitions; rep++) {
    for (let i = 0; i < CONTENDERS.length; i++) {
      // Both in range: the index is taken modulo the length, and `runs` has a run per contender.
      const c = /** @type {ShutdownContender} */ (CONTENDERS[(i + rep) % CONTENDERS.length])
      const run = /** @type {ShutdownRun} */ (runs.find((r) => r.contender === c.key))
      // A contender that needed more than a minute once is measured once: it is not noise.
      if (run.samples.some((s) => s.closeMs > 60_000)) continue
      ctx.log(`scenario 2: ${c.label}, round ${rep + 1}`)
      try {
        const s = await sample(ctx, c, o, o.capMs)
        ctx.log(`  => closed in ${s.closeMs} ms${s.killed ? ' (killed at the cap)' : ''}, in-flight ok ${s.inFlightOk}/${s.inFlight}, lost ${JSON.stringify(s.lostCauses)}, idle open at exit ${s.idleOpenAtExit}`)
        run.samples.push(s)
      } catch (err) {
        const message = /** @type {Error} */ (err).message
        ctx.log(`  ${c.key}: ${message}`)
        run.error = /** @type {string} */ (message.split('\n')[0])
      }
    }
  }
  return runs
}

module.exports = { shutdownScenario }
