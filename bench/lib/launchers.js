'use strict'
// Runs in the benchmark process: the contenders of scenario 8 (crash refusals). Each starts the
// graceful-reboot app (bench/apps/graceful.js, or PM2's recommended app) under a launcher that
// starts it again when it dies: the benchmark process as a plain restart loop (like systemd's
// `Restart=always` with `RestartSec=100ms`, the app binding its own port), the benchmark process as
// a socket-activating parent (like a systemd socket unit: it holds the listening socket and passes it
// as fd 3 with LISTEN_FDS=1 and LISTEN_PID, and never accepts on it), `graceful-reboot run --workers 1`,
// and PM2 cluster mode (1 instance, autorestart). `servingPid()` names the process to SIGKILL.
const path = require('node:path')
const { isAlive, waitGone } = require('./procs')

/** @import { AppHandle, Ctx } from './procs' */
/** @import { Pm2 } from './pm2' */

const CLI = path.join(__dirname, '..', '..', 'dist', 'bin', 'graceful-reboot.js')
const GRACEFUL_APP = path.join(__dirname, '..', 'apps', 'graceful.js')
const RESTART_DELAY_MS = 100

/**
 * @typedef {object} Launcher
 * @property {string} key
 * @property {string} label
 * @property {boolean} keepsSocket the listening socket outlives the app's process
 * @property {boolean} [pm2]
 * @property {string} [skipped]
 * @property {(ctx: Ctx & { port: number }) => Promise<void>} start resolves once the app serves
 * @property {() => Promise<number>} servingPid the pid of the process that serves now
 * @property {() => Promise<void>} stop
 */

/**
 * A restart loop in this process: `launch()` starts the app; when it exits, it is started again
 * RESTART_DELAY_MS later, until stop().
 * @param {(ctx: Ctx & { port: number }) => AppHandle} launch
 * @param {() => void} [closed] called by stop()
 */
function restartLoop (launch, closed = () => {}) {
  /** @type {AppHandle | undefined} */
  let current
  let stopped = false
  /** @type {NodeJS.Timeout | undefined} */
  let timer
  /** @param {Ctx & { port: number }} ctx */
  const run = (ctx) => {
    const app = launch(ctx)
    current = app
    void app.exited.then(() => {
      if (!stopped) timer = setTimeout(() => { if (!stopped) run(ctx) }, RESTART_DELAY_MS)
    })
    return app
  }
  return {
    /** @param {Ctx & { port: number }} ctx */
    async start (ctx) { await run(ctx).waitFor('listening') },
    async servingPid () {
      const app = /** @type {AppHandle} */ (current)
      await app.waitFor('listening', { timeoutMs: 30_000 })
      return app.pid
    },
    async stop () {
      stopped = true
      clearTimeout(timer)
      if (current !== undefined && isAlive(current.pid)) process.kill(current.pid, 'SIGKILL')
      if (current !== undefined) await waitGone(current.pid, 5000)
      closed()
    }
  }
}

/** @returns {Launcher} */
function plainRestart () {
  const loop = restartLoop((ctx) => ctx.procs.start('graceful', { env: { PORT: String(ctx.port) }, verbose: ctx.verbose }))
  return { key: 'plain-restart', label: `one process, restarted ${RESTART_DELAY_MS} ms after it exits (like Restart=always), binding its own port`, keepsSocket: false, ...loop }
}

/**
 * A socket bound to 127.0.0.1:port and not listening: the first app's listen() on the inherited fd makes
 * it listen, and it stays listening while this process holds the fd (connections then wait in its
 * accept queue). Binding through tcp_wrap (the handle under node:net) gives an fd that libuv never polls
 * here, so this process never accepts.
 * @param {number} port
 * @returns {{ fd: number, close: () => void }}
 */
function boundSocket (port) {
  // process.binding is deprecated, but tcp_wrap is the only way to hold a socket without accepting on it.
  const { TCP, constants } = /** @type {any} */ (process).binding('tcp_wrap')
  const handle = new TCP(constants.SERVER)
  const err = handle.bind('127.0.0.1', port)
  if (err !== 0) throw new Error(`socket activation: cannot bind 127.0.0.1:${port} (error ${err})`)
  return { fd: handle.fd, close: () => handle.close() }
}

/** @returns {Launcher} */
function socketActivation () {
  /** @type {{ fd: number, close: () => void } | undefined} */
  let socket
  const loop = restartLoop((ctx) => {
    socket ??= boundSocket(ctx.port)
    // The shell makes LISTEN_PID the pid node will have (exec), as systemd sets it.
    return ctx.procs.startCommand('graceful (socket-activated)', '/bin/sh', ['-c', 'export LISTEN_PID=$$; exec "$0" "$@"', process.execPath, GRACEFUL_APP], {
      env: { PORT: String(ctx.port), LISTEN_FDS: '1', LISTEN_FDNAMES: 'http' },
      verbose: ctx.verbose,
      stdio3: socket.fd
    })
  }, () => { socket?.close(); socket = undefined })
  return { key: 'socket-activation', label: `socket activation: a parent holds the listening socket and passes it (LISTEN_FDS), restarting the app ${RESTART_DELAY_MS} ms after it exits`, keepsSocket: true, ...loop }
}

/** @returns {Launcher} */
function supervisor () {
  /** @type {AppHandle} set by start() */
  let proc
  return {
    key: 'run-workers-1',
    label: '`graceful-reboot run --workers 1` (the supervisor holds the socket and restarts the worker)',
    keepsSocket: true,
    async start (ctx) {
      proc = ctx.procs.startCommand('run --workers 1', process.execPath, [CLI, 'run', '--workers', '1', GRACEFUL_APP], { env: { PORT: String(ctx.port) }, verbose: ctx.verbose })
      await proc.waitFor('listening')
    },
    async servingPid () {
      // The newest worker that said it listens and still runs.
      for (;;) {
        const e = [...proc.events].reverse().find((x) => x.event === 'listening')
        if (e !== undefined && isAlive(e.pid)) return e.pid
        await proc.waitFor((x) => x.event === 'listening' && x !== e, { since: proc.events.length, timeoutMs: 30_000 })
      }
    },
    async stop () {
      if (isAlive(proc.pid)) process.kill(proc.pid, 'SIGKILL')
      for (const e of proc.events) if (isAlive(e.pid)) process.kill(e.pid, 'SIGKILL')
      await waitGone(proc.pid, 5000)
    }
  }
}

/**
 * @param {() => Pm2} getPm2
 * @returns {Launcher}
 */
function pm2Autorestart (getPm2) {
  const name = 'crash-pm2'
  /** @type {Pm2} set by start() */
  let pm2
  return {
    key: 'pm2',
    label: 'PM2 cluster mode, 1 instance, autorestart (wait_ready + app.close() on SIGINT)',
    keepsSocket: false,
    pm2: true,
    async start (ctx) {
      pm2 = getPm2()
      await pm2.start({
        name,
        script: path.join(__dirname, '..', 'apps', 'pm2-recommended.js'),
        exec_mode: 'cluster',
        instances: 1,
        autorestart: true,
        wait_ready: true,
        listen_timeout: 20_000,
        kill_timeout: 10_000,
        env: { PORT: String(ctx.port) }
      })
    },
    async servingPid () {
      for (let i = 0; i < 100; i++) {
        const [pid] = await pm2.pids(name)
        if (pid !== undefined) return pid
      }
      throw new Error('PM2 names no worker')
    },
    async stop () { await pm2.delete(name) }
  }
}

/**
 * Scenario 8's contenders.
 * @param {{ pm2: () => Pm2 }} options
 * @returns {Launcher[]}
 */
function launchers ({ pm2 }) {
  return [plainRestart(), socketActivation(), supervisor(), pm2Autorestart(pm2)]
}

module.exports = { launchers, RESTART_DELAY_MS }
