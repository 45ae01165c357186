'use strict'
// Runs in the benchmark process: the contenders of scenario 1 (restart under load). Each has
// start() -> port, restart() -> { readyMs, doneMs, successor }, stop(). restart() resolves once the
// new process serves and the old one is gone.
const path = require('node:path')
const { performance } = require('node:perf_hooks')
const { waitGone, isAlive } = require('./procs')

/** @import { AppHandle, AppEvent, Ctx } from './procs' */
/** @import { Pm2 } from './pm2' */

/**
 * What restart() measured: ms from the trigger until the new process served (`readyMs`) and until
 * the old one was gone too (`doneMs`); PM2 rows also give how long after the start of restart()
 * the trigger (`pm2 reload`) came (`signalOffsetMs`); graceful-reboot rows, the connections the old
 * process handed to the successor (`transferred`, from its 'drained' event).
 * @typedef {{ readyMs: number, doneMs: number, successor: number | undefined, signalOffsetMs?: number, transferred?: number }} RestartInfo
 */

/**
 * A contender of scenario 1. `skipped` is set by run.js when it cannot run here (PM2 without its daemon).
 * @typedef {object} Contender
 * @property {string} key
 * @property {string} label
 * @property {boolean} [pm2]
 * @property {string} [skipped]
 * @property {(ctx: Ctx & { port: number }) => Promise<void>} start
 * @property {() => Promise<RestartInfo>} restart
 * @property {() => Promise<void>} stop
 */

/**
 * A contender whose old process hands its socket to a successor on SIGUSR2 (graceful-reboot or an emulation).
 * `drainedEvent`: the old process reports its drain counts (graceful-reboot).
 * @param {{ key: string, label: string, app: string, env?: Record<string, string>, readyEvent: (e: AppEvent, old: number) => boolean, drainedEvent?: boolean }} options
 * @returns {Contender}
 */
function handOffContender ({ key, label, app, env = {}, readyEvent, drainedEvent = false }) {
  /** @type {AppHandle} set by start(), which runs first */
  let proc
  /** @type {number | undefined} the process that serves now */
  let current
  return {
    key,
    label,
    async start (ctx) {
      proc = ctx.procs.start(app, { env: { PORT: String(ctx.port), ...env }, verbose: ctx.verbose })
      await proc.waitFor('listening')
      current = proc.pid
    },
    async restart () {
      const t0 = performance.now()
      const since = proc.events.length
      // start() or the previous restart() set it (a ready event names its successor).
      const old = /** @type {number} */ (current)
      process.kill(old, 'SIGUSR2')
      const ready = await proc.waitFor((e) => readyEvent(e, old), { since, timeoutMs: 30_000 })
      const successor = ready.successor ?? ready.other
      const readyMs = ready.at - t0
      if (!(await waitGone(old, 40_000))) throw new Error(`${label}: old process ${old} still alive 40 s after the hand-off`)
      const doneMs = performance.now() - t0
      current = successor
      if (!drainedEvent) return { readyMs, doneMs, successor }
      // Printed before the old process exited; read from the pipe by now or in a moment.
      const drained = await proc.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === old, { since, timeoutMs: 5000 })
      return { readyMs, doneMs, successor, ...(typeof drained.transferred === 'number' ? { transferred: drained.transferred } : {}) }
    },
    async stop () {
      if (current !== undefined && isAlive(current)) process.kill(current, 'SIGKILL')
      if (current !== undefined) await waitGone(current, 5000)
    }
  }
}

/**
 * Naive restart: SIGTERM -> the app runs fastify.close() and exits -> a fresh process starts on the same port.
 * @param {{ label?: string, env?: Record<string, string> }} [options]
 * @returns {Contender}
 */
function naiveContender ({ label = 'fastify.close() + fresh start', env = {} } = {}) {
  /** @type {AppHandle} set by start(), which runs first */
  let proc
  /** @type {Ctx & { port: number }} set by start() */
  let ctxRef
  return {
    key: 'naive-restart',
    label,
    async start (ctx) {
      ctxRef = ctx
      proc = ctx.procs.start('fastify-close', { env: { PORT: String(ctx.port), ...env }, verbose: ctx.verbose })
      await proc.waitFor('listening')
    },
    async restart () {
      const t0 = performance.now()
      const old = proc
      process.kill(old.pid, 'SIGTERM')
      await old.exited
      proc = ctxRef.procs.start('fastify-close', { env: { PORT: String(ctxRef.port), ...env }, verbose: ctxRef.verbose })
      const ready = await proc.waitFor('listening', { timeoutMs: 30_000 })
      return { readyMs: ready.at - t0, doneMs: performance.now() - t0, successor: proc.pid }
    },
    async stop () {
      if (proc !== undefined && isAlive(proc.pid)) process.kill(proc.pid, 'SIGKILL')
      if (proc !== undefined) await waitGone(proc.pid, 5000)
    }
  }
}

/**
 * PM2 cluster mode, `pm2 reload <name>`: `pm2 reload` returns once the old workers were stopped.
 * @param {{ key: string, label: string, script: string, ctxPm2: () => Pm2, instances: number }} options
 * @returns {Contender}
 */
function pm2Contender ({ key, label, script, ctxPm2, instances }) {
  const name = key
  /** @type {Pm2} set by start(), which runs first */
  let pm2
  return {
    key,
    label,
    pm2: true,
    async start (ctx) {
      pm2 = ctxPm2()
      await pm2.start({
        name,
        script: path.join(__dirname, '..', 'apps', script),
        exec_mode: 'cluster',
        instances,
        wait_ready: true,
        listen_timeout: 20_000,
        kill_timeout: 10_000,
        env: { PORT: String(ctx.port) }
      })
    },
    async restart () {
      const t0 = performance.now()
      const old = await pm2.pids(name)
      const t1 = performance.now()
      await pm2.reload(name)
      const readyMs = performance.now() - t1
      for (const pid of old) {
        if (!(await waitGone(pid, 20_000))) throw new Error(`${label}: old worker ${pid} still alive after the reload`)
      }
      const now = await pm2.pids(name)
      return { readyMs, doneMs: performance.now() - t0, successor: now[0], signalOffsetMs: t1 - t0 }
    },
    async stop () {
      await pm2.delete(name)
    }
  }
}

/** The old process reports the successor ready (it drains from then on). */
const handOffReady = (/** @type {AppEvent} */ e, /** @type {number} */ old) => e.event === 'handoff' && e.step === 'ready' && e.pid === old

/**
 * Scenario 1's contenders. The "bare fd hand-off" rows use bench/apps/handoff.js, a minimal socket
 * hand-off written for the benchmark (not this package), followed by another library's drain.
 * @param {{ pm2: () => Pm2, pm2Instances: number }} options the PM2 driver (started on first use) and the workers per PM2 app
 * @returns {Contender[]}
 */
function contenders ({ pm2, pm2Instances }) {
  return [
    handOffContender({ key: 'graceful-reboot', label: 'graceful-reboot (SIGUSR2 reboot)', app: 'graceful', readyEvent: handOffReady, drainedEvent: true }),
    naiveContender(),
    handOffContender({ key: 'fd-fastify-close', label: 'bare fd hand-off + fastify.close() drain', app: 'fastify-close', readyEvent: handOffReady }),
    handOffContender({ key: 'fd-http-terminator', label: 'bare fd hand-off + http-terminator drain', app: 'http-terminator', readyEvent: handOffReady }),
    pm2Contender({ key: 'pm2-recommended', label: 'PM2 reload (wait_ready + app.close() on SIGINT)', script: 'pm2-recommended.js', ctxPm2: pm2, instances: pm2Instances }),
    pm2Contender({ key: 'pm2-graceful', label: "PM2 reload + graceful-reboot's drain on SIGINT", script: 'pm2-graceful.js', ctxPm2: pm2, instances: pm2Instances })
  ]
}

/**
 * The HTTP/2 restart scenario's contenders: the same apps as h2c servers (`Fastify({ http2: true })`).
 * Fastify's close() leaves HTTP/2 sessions open before Node 24 unless `forceCloseConnections: true`
 * (its docs: "When used with HTTP/2 server, it will also close all active HTTP/2 sessions"), so the
 * fastify.close() rows set it; without it the old process answers 503 on the sessions it keeps
 * until they have been idle for `http2SessionTimeout` (72 s), which busy clients never are.
 * @returns {Contender[]}
 */
function h2Contenders () {
  const h2 = { H2: '1' }
  const force = { H2: '1', FORCE_CLOSE: '1' }
  return [
    handOffContender({ key: 'graceful-reboot', label: 'graceful-reboot (SIGUSR2 reboot)', app: 'graceful', env: h2, readyEvent: handOffReady, drainedEvent: true }),
    naiveContender({ label: 'fastify.close() (forceCloseConnections: true) + fresh start', env: force }),
    handOffContender({ key: 'fd-fastify-close', label: 'bare fd hand-off + fastify.close() drain (forceCloseConnections: true)', app: 'fastify-close', env: force, readyEvent: handOffReady })
  ]
}

module.exports = { contenders, h2Contenders }
