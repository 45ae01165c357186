'use strict'
// Runs in every contender app: the same Fastify routes everywhere, and one JSON line per event on
// stdout for the benchmark (bench/lib/procs.js) to wait on.
const { performance } = require('node:perf_hooks')
const Fastify = require('fastify')

/** @import { FastifyInstance } from 'fastify' */
/** @import { WebsocketPluginOptions } from '@fastify/websocket' */

/**
 * @param {string} event
 * @param {Record<string, unknown>} [fields]
 */
function emit (event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, pid: process.pid, ...fields }) + '\n')
}

/**
 * A Fastify app with:
 *   GET /           small JSON answer (the load target), header x-pid
 *   GET /slow?ms=N  answers after N ms; emits 'slow-started' once `SLOW_REPORT` requests are running
 *   GET /cpu        process.cpuUsage()
 *   GET /mem        runs gc() when exposed and answers process.memoryUsage() plus `connections`, the
 *                   server's open connections (this request's own included)
 *   GET /ws         echo WebSocket route when `websocket` is true (@fastify/websocket)
 * `register(app)` runs before the routes (plugins). `http2`: an h2c server (`Fastify({ http2: true })`,
 * HTTP/2 without TLS), which serves the same routes (not /ws). `forceCloseConnections`: Fastify's
 * option of that name set to true (its documented way to have close() close HTTP/2 sessions).
 * @param {{ register?: ((app: FastifyInstance) => unknown) | undefined, websocket?: boolean, websocketOptions?: WebsocketPluginOptions, http2?: boolean, forceCloseConnections?: boolean }} [options]
 */
async function buildApp ({ register, websocket = false, websocketOptions, http2 = false, forceCloseConnections = false } = {}) {
  const force = forceCloseConnections ? { forceCloseConnections: true } : {}
  // The h2c instance is typed as the HTTP/1.1 one: the code here uses only what both have.
  const app = http2
    ? /** @type {FastifyInstance} */ (/** @type {unknown} */ (Fastify({ logger: false, http2: true, ...force })))
    : Fastify({ logger: false, ...force })
  if (register !== undefined) await register(app)
  if (websocket) await app.register(require('@fastify/websocket'), websocketOptions ?? {})
  const pid = String(process.pid)
  app.addHook('onSend', async (_req, reply) => { reply.header('x-pid', pid) })
  app.get('/', async () => ({ hello: 'world' }))
  let slowRunning = 0
  const slowReport = Number(process.env.SLOW_REPORT ?? 0)
  app.get('/slow', async (req) => {
    const ms = Number(/** @type {{ ms?: string }} */ (req.query).ms ?? 1000)
    slowRunning++
    if (slowRunning === slowReport) emit('slow-started', { running: slowRunning })
    await new Promise((resolve) => setTimeout(resolve, ms))
    slowRunning--
    return { slept: ms }
  })
  app.get('/cpu', async () => process.cpuUsage())
  app.get('/mem', async () => {
    const connections = await new Promise((resolve) => { app.server.getConnections((err, n) => resolve(err ? -1 : n)) })
    if (typeof globalThis.gc === 'function') { globalThis.gc(); globalThis.gc() }
    return { ...process.memoryUsage(), connections }
  })
  if (websocket) {
    app.get('/ws', { websocket: true }, (socket) => {
      socket.on('message', (data) => { socket.send(data) })
    })
  }
  return app
}

/** listen() options for the benchmark port (PORT, or 0), on 127.0.0.1 only. */
function listenOptions () {
  return { port: Number(process.env.PORT ?? 0), host: '127.0.0.1' }
}

/** @param {FastifyInstance} app */
function portOf (app) {
  return /** @type {import('node:net').AddressInfo} */ (app.server.address()).port
}

/**
 * Emits 'exit' with the ms since `since` right before the process exits.
 * @param {number} since performance.now() time
 * @param {number} [code]
 */
function exitAfter (since, code = 0) {
  emit('exit', { ms: Math.round(performance.now() - since), code })
  process.exit(code)
}

module.exports = { emit, buildApp, listenOptions, portOf, exitAfter }
