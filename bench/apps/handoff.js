'use strict'
// Runs in both processes of the "fd hand-off" contenders: a minimal emulation of socket inheritance
// without graceful-reboot (what lib/outgoing/spawn.ts does, minus everything else): on SIGUSR2 the
// old process spawns itself with the listening socket at fd 3 and an IPC channel, waits for the
// successor's 'ready' message, then runs the contender's own drain and exits.
const { spawn } = require('node:child_process')
const { performance } = require('node:perf_hooks')
const { emit, listenOptions, portOf, exitAfter } = require('./common')

/** @import { FastifyInstance, FastifyListenOptions } from 'fastify' */

const INHERITED = process.env.BENCH_LISTEN_FD

/**
 * Listens on the inherited fd (successor) or on PORT (first start); a successor then says ready.
 * @param {FastifyInstance} app
 */
async function listen (app) {
  if (INHERITED !== undefined) {
    delete process.env.BENCH_LISTEN_FD
    // Fastify passes the options on to server.listen(), which takes `fd`; its types leave `fd` out.
    await app.listen(/** @type {FastifyListenOptions} */ ({ fd: Number(INHERITED), host: '127.0.0.1' }))
    if (typeof process.send === 'function') process.send({ type: 'ready' })
  } else {
    await app.listen(listenOptions())
  }
  emit('listening', { port: portOf(app), parent: INHERITED === undefined ? null : process.ppid })
}

/**
 * Spawns the successor with the listening fd at 3; resolves with its pid once it is ready.
 * @param {FastifyInstance} app
 * @returns {Promise<number | undefined>}
 */
function handOff (app) {
  // The listening socket's fd: node's internal handle (not in its types).
  const fd = /** @type {import('node:http').Server & { _handle: { fd: number } }} */ (app.server)._handle.fd
  // argv[1]: this app's script, which node was started with.
  const child = spawn(process.execPath, [...process.execArgv, /** @type {string} */ (process.argv[1])], {
    stdio: ['inherit', 'inherit', 'inherit', fd, 'ipc'],
    env: { ...process.env, BENCH_LISTEN_FD: '3' }
  })
  emit('handoff', { step: 'spawned', successor: child.pid })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('successor not ready in 20 s')) }, 20_000)
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`successor exited (${code})`)) })
    child.on('message', (m) => {
      if (/** @type {{ type?: unknown } | undefined} */ (m)?.type !== 'ready') return
      clearTimeout(timer)
      child.removeAllListeners('exit')
      child.disconnect()
      child.unref()
      emit('handoff', { step: 'ready', successor: child.pid })
      resolve(child.pid)
    })
  })
}

/**
 * Wires the signals: SIGTERM -> drain and exit; SIGUSR2 -> hand off, then drain and exit.
 * `drain()` is the contender's way of closing (fastify.close(), http-terminator, ...).
 * @param {() => Promise<unknown>} drain
 * @returns {(app: FastifyInstance) => void}
 */
function onSignals (drain) {
  let busy = false
  /**
   * @param {boolean} withHandOff
   * @param {FastifyInstance} app
   */
  const run = async (withHandOff, app) => {
    if (busy) return
    busy = true
    try {
      if (withHandOff) await handOff(app)
      const since = performance.now()
      emit('state', { state: 'draining' })
      await drain()
      exitAfter(since)
    } catch (err) {
      emit('error', { message: /** @type {Error} */ (err).message })
      busy = false
    }
  }
  return (app) => {
    process.on('SIGTERM', () => { void run(false, app) })
    process.on('SIGUSR2', () => { void run(true, app) })
  }
}

module.exports = { listen, handOff, onSignals }
