'use strict'
// Runs in the benchmark process: scenario 6, moves of idle keep-alive connections. For each size,
// tools/idle-moves.ts opens that many idle keep-alive connections to test/fixtures/transfer-app.ts and
// reboots it `reboots` times in a row; per reboot: time from the old process's drain start to its
// 'drained' report, connections moved, kept, destroyed at the deadline, and closed as the clients saw.
const { idleMoves } = require('../../dist/tools/idle-moves.js')

/** @import { Ctx } from '../lib/procs' */
/** @import { MovesRun } from '../../dist/tools/bench-report-rows.js' */

/**
 * @typedef {object} MovesOptions
 * @property {number[]} connections the sizes, one run each
 * @property {number} reboots per size
 * @property {number} drainTimeoutMs the app's drain deadline (the plugin's `timeout`)
 */

/**
 * @param {Ctx} ctx
 * @param {MovesOptions} o
 * @returns {Promise<MovesRun[]>}
 */
async function movesScenario (ctx, o) {
  /** @type {MovesRun[]} */
  const runs = []
  for (const n of o.connections) {
    ctx.log(`scenario 6: ${n} idle keep-alive connections, ${o.reboots} reboots`)
    try {
      const r = await idleMoves(n, o.reboots, { drainTimeoutMs: o.drainTimeoutMs, log: (line) => { ctx.log(`  ${line}`) }, onPid: (pid) => { ctx.procs.track(pid) } })
      runs.push({ connections: n, openMs: r.openMs, reboots: r.reboots.map(({ pid: _pid, ...m }) => m), sampled: r.sampled, answeredBySuccessor: r.answeredBySuccessor })
    } catch (err) {
      ctx.log(`  ${n}: ${/** @type {Error} */ (err).message}`)
      runs.push({ connections: n, error: /** @type {Error} */ (err).message.split('\n')[0] ?? 'error', openMs: 0, reboots: [], sampled: 0, answeredBySuccessor: 0 })
    }
  }
  return runs
}

/**
 * @param {boolean} quick
 * @returns {MovesOptions}
 */
function movesOptions (quick) {
  return { connections: quick ? [3000] : [3000, 10_000], reboots: quick ? 2 : 3, drainTimeoutMs: 30_000 }
}

/** @param {MovesOptions} o */
function movesText (o) {
  return `${o.connections.map((n) => n.toLocaleString('en-US')).join(' and ')} idle HTTP/1.1 keep-alive connections (each answered one request, opened 200 at a time) to the Fastify app of test/fixtures/transfer-app.ts ` +
    `(the plugin, drain \`timeout\` ${o.drainTimeoutMs / 1000} s), rebooted ${o.reboots} times in a row by SIGUSR2, each reboot from the successor of the one before once its old process exited (tools/idle-moves.ts). ` +
    'Time to move all: from the old process\'s \'draining\' state to its \'drained\' report (every connection handed to the successor, kept and drained, or destroyed at the deadline). ' +
    'Moved per second: moved / that time. Closed: connections the clients saw closed during the reboot.'
}

module.exports = { movesScenario, movesOptions, movesText }
