'use strict'
// Runs in both processes: contender "graceful-reboot": the plugin with its defaults (SIGTERM/SIGINT
// shut down, SIGUSR2 reboots). After a reboot the successor adopts the inherited socket at listen().
// WS=1 adds @fastify/websocket; H2=1 makes it an h2c server (`http2: true`). NO_PLUGIN=1 leaves the
// plugin out (overhead baseline).
const graceful = require('../../dist/index.js')
const { performance } = require('node:perf_hooks')
const { emit, buildApp, listenOptions, portOf } = require('./common')

async function main () {
  const life = graceful.lifecycle()
  const usePlugin = process.env.NO_PLUGIN !== '1'
  if (usePlugin) {
    // Only 'ready' carries ms; 'drained' carries the old process's counts: connections handed to the
    // successor (transferConnections), kept and drained here (by reason), idle ones closed.
    life.on('handoff', (e) => {
      const counts = e.step === 'drained'
        ? {
            transferred: e.result.apps.reduce((n, a) => n + (a.transferred ?? 0), 0),
            kept: e.result.apps.reduce((/** @type {Record<string, number>} */ k, a) => {
              for (const [why, n] of Object.entries(a.kept ?? {})) k[why] = (k[why] ?? 0) + (n ?? 0)
              return k
            }, {}),
            idleClosed: e.result.apps.reduce((n, a) => n + a.idleClosed, 0)
          }
        : {}
      emit('handoff', { step: e.step, other: e.pid, ms: e.step === 'ready' ? e.ms : undefined, ...counts })
    })
    life.on('state', (state) => {
      emit('state', { state })
      if (state === 'draining') drainStart = performance.now()
    })
  }
  /** @type {number | undefined} performance.now() when the drain began */
  let drainStart
  const app = await buildApp({
    websocket: process.env.WS === '1',
    http2: process.env.H2 === '1',
    register: usePlugin ? (a) => a.register(graceful.default, { timeout: 30_000, rebootTimeout: 20_000 }) : undefined
  })
  if (usePlugin) {
    // Reported just before the package exits the process (its exit runs in a setImmediate).
    life.on('state', (state) => {
      if (state === 'stopped') emit('exit', { ms: Math.round(performance.now() - (drainStart ?? performance.now())) })
    })
  }
  await app.listen(listenOptions())
  emit('listening', { port: portOf(app), parent: graceful.rebootedFrom() ?? null, plugin: usePlugin })
}

main().catch((err) => {
  emit('boot-error', { message: err.message })
  process.exit(1)
})
