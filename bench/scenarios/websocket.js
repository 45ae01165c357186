'use strict'
// Runs in the benchmark process: scenario 3, WebSockets. 100 `ws` clients on a Fastify +
// @fastify/websocket echo route, each echoed once, then SIGTERM: the close code every client saw
// (1001 going away, 1005 no code, 1006 no close frame at all) and how long it took.
const { performance } = require('node:perf_hooks')
const WebSocket = require('ws')
const { freePort } = require('../lib/net')
const { sleep, waitGone } = require('../lib/procs')

/** @import { Ctx } from '../lib/procs' */
/** @import { WebSocketRun } from '../../dist/tools/bench-report.js' */

/**
 * Scenario 3's settings (bench/run.js options().websocket).
 * @typedef {{ repetitions: number, clients: number, capMs: number }} WebSocketOptions
 */

/** @typedef {{ key: string, label: string, app: string }} WebSocketContender */

/**
 * A client: the close code it saw and when (performance.now()); `ready` resolves once its hello was echoed.
 * @typedef {{ ws: WebSocket, code: number | undefined, closedAt: number | undefined, closed: Promise<void>, ready: Promise<void> }} Client
 */

/** @type {WebSocketContender[]} */
const CONTENDERS = [
  { key: 'graceful-reboot', label: 'graceful-reboot shutdown (SIGTERM)', app: 'graceful' },
  { key: 'fastify-close', label: "fastify.close() + @fastify/websocket's preClose (its README's example: close(1001) every client)", app: 'fastify-close' },
  { key: 'http-terminator', label: 'http-terminator (default 1 s timeout)', app: 'http-terminator' }
]

/**
 * @param {number} port
 * @param {number} n
 */
async function connect (port, n) {
  const clients = Array.from({ length: n }, (_, i) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`)
    // `closed` and `ready` are set right below.
    const c = /** @type {Client} */ ({ ws, code: undefined, closedAt: undefined })
    c.closed = new Promise((resolve) => {
      ws.once('close', (code) => { c.code = code; c.closedAt = performance.now(); resolve() })
    })
    ws.on('error', () => {})
    c.ready = new Promise((resolve, reject) => {
      ws.once('open', () => ws.send(`hello ${i}`))
      ws.once('message', () => resolve())
      ws.once('close', () => reject(new Error('closed before the echo')))
    })
    return c
  })
  await Promise.all(clients.map((c) => c.ready))
  return clients
}

/**
 * @param {Ctx} ctx
 * @param {WebSocketContender} c
 * @param {WebSocketOptions} o
 * @returns {Promise<WebSocketRun['samples'][number]>}
 */
async function sample (ctx, c, o) {
  const port = await freePort()
  const app = ctx.procs.start(c.app, { env: { PORT: String(port), WS: '1' }, verbose: ctx.verbose })
  await app.waitFor('listening')
  const clients = await connect(port, o.clients)
  const t0 = performance.now()
  process.kill(app.pid, 'SIGTERM')
  const exited = await Promise.race([app.exited, sleep(o.capMs).then(() => undefined)])
  let killed = false
  if (exited === undefined) {
    killed = true
    process.kill(app.pid, 'SIGKILL')
    await app.exited
  }
  // Once the process is gone every client learns it (a closed TCP connection is a 1006).
  await Promise.race([Promise.all(clients.map((x) => x.closed)), sleep(5000)])
  /** @type {Record<string, number>} */
  const codes = {}
  for (const x of clients) {
    const k = x.code === undefined ? 'still open' : String(x.code)
    codes[k] = (codes[k] ?? 0) + 1
    if (x.code === undefined) x.ws.terminate()
  }
  await waitGone(app.pid, 5000)
  return {
    clients: o.clients,
    codes,
    closeMs: Math.round(app.exitInfo.at - t0),
    lastCloseMs: Math.round(Math.max(...clients.map((x) => x.closedAt ?? performance.now())) - t0),
    killed
  }
}

/**
 * @param {Ctx} ctx
 * @param {WebSocketOptions} o
 */
async function websocketScenario (ctx, o) {
  /** @type {WebSocketRun[]} */
  const runs = CONTENDERS.map((c) => ({ contender: c.key, label: c.label, samples: [] }))
  for (let rep = 0; rep < o.repetitions; rep++) {
    for (let i = 0; i < CONTENDERS.length; i++) {
      // Both in range: the index is taken modulo the length, and `runs` has a run per contender.
      const c = /** @type {WebSocketContender} */ (CONTENDERS[(i + rep) % CONTENDERS.length])
      const run = /** @type {WebSocketRun} */ (runs.find((r) => r.contender === c.key))
      ctx.log(`scenario 3: ${c.label}, round ${rep + 1}`)
      try {
        const s = await sample(ctx, c, o)
        ctx.log(`  => codes ${JSON.stringify(s.codes)}, last client closed after ${s.lastCloseMs} ms, exit after ${s.closeMs} ms${s.killed ? ' (killed)' : ''}`)
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

module.exports = { websocketScenario }
