'use strict'
// Runs in the benchmark process: starts contender apps as child processes, reads the JSON line each
// prints per event (successors share the first process's stdout), waits on events, and remembers
// every pid it learns of (from `pid`, `successor` and `other` fields) so that killAll() can end them.
const { spawn } = require('node:child_process')
const fs = require('node:fs')
const { performance } = require('node:perf_hooks')
const readline = require('node:readline')
const path = require('node:path')

const APPS = path.join(__dirname, '..', 'apps')
const PID_FIELDS = ['pid', 'successor', 'other']

/**
 * What run.js hands every scenario.
 * @typedef {object} Ctx
 * @property {Procs} procs
 * @property {(line: string) => void} log
 * @property {boolean} verbose
 */

/**
 * One JSON line an app printed (bench/apps/common.js emit()), plus `at`: performance.now() when it was read.
 * @typedef {{ event: string, pid: number, at: number, step?: string, successor?: number, other?: number, plugin?: boolean, [field: string]: unknown }} AppEvent
 */

/** @typedef {{ code: number | null, signal: NodeJS.Signals | null, at: number }} ExitInfo */

/** @typedef {import('node:child_process').ChildProcessByStdio<null, import('node:stream').Readable, import('node:stream').Readable>} AppChild */

/** @typedef {{ what: string, match: (e: AppEvent) => boolean, resolve: (e: AppEvent) => void, reject: (err: Error) => void }} Waiter */

/**
 * A started app: the class App below (not exported).
 * @typedef {App} AppHandle
 */

class Procs {
  constructor () {
    /**
     * Every pid started or reported; killed by killAll().
     * @type {Set<number>}
     */
    this.pids = new Set()
  }

  /** @param {number | undefined} pid */
  track (pid) {
    if (pid !== undefined && Number.isInteger(pid) && pid > 0 && pid !== process.pid) this.pids.add(pid)
  }

  /**
   * Starts bench/apps/<name>.js; returns an App handle.
   * @param {string} name
   * @param {{ env?: Record<string, string>, execArgv?: string[], verbose?: boolean }} [options]
   */
  start (name, { env = {}, execArgv = [], verbose = false } = {}) {
    const file = path.join(APPS, `${name}.js`)
    const child = spawn(process.execPath, [...execArgv, file], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    this.track(child.pid)
    return new App(this, name, child, verbose)
  }

  /**
   * Starts `command args` (a program other than an app of bench/apps); returns an App handle.
   * `stdio3`: a file descriptor to pass as fd 3 (a listening socket).
   * @param {string} name
   * @param {string} command
   * @param {string[]} args
   * @param {{ env?: Record<string, string>, verbose?: boolean, stdio3?: number }} [options]
   */
  startCommand (name, command, args, { env = {}, verbose = false, stdio3 } = {}) {
    const child = /** @type {AppChild} */ (spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: stdio3 === undefined ? ['ignore', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe', stdio3]
    }))
    this.track(child.pid)
    return new App(this, name, child, verbose)
  }

  /** SIGKILLs every pid still alive; returns the pids that were alive. */
  killAll () {
    /** @type {number[]} */
    const alive = []
    for (const pid of this.pids) {
      if (isAlive(pid)) {
        alive.push(pid)
        try { process.kill(pid, 'SIGKILL') } catch {}
      }
    }
    return alive
  }
}

class App {
  /**
   * @param {Procs} procs
   * @param {string} name
   * @param {AppChild} child
   * @param {boolean} verbose
   */
  constructor (procs, name, child, verbose) {
    this.procs = procs
    this.name = name
    this.child = child
    // Undefined only when the spawn failed, and then the child's unhandled 'error' ends this process.
    this.pid = /** @type {number} */ (child.pid)
    /** @type {AppEvent[]} */
    this.events = []
    /** @type {Set<Waiter>} */
    this.waiters = new Set()
    this.stderrText = ''
    /** @type {Promise<ExitInfo>} */
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        /** How the process ended; set when `exited` resolves. */
        this.exitInfo = { code, signal, at: performance.now() }
        resolve(this.exitInfo)
      })
    })
    this.closed = new Promise((resolve) => { child.once('close', resolve) })
    child.stderr.setEncoding('utf8').on('data', (d) => {
      if (this.stderrText.length < 20_000) this.stderrText += d
      if (verbose) process.stderr.write(`[${name} stderr] ${d}`)
    })
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      let e
      try { e = JSON.parse(line) } catch { return }
      if (e === null || typeof e !== 'object') return
      e.at = performance.now()
      for (const f of PID_FIELDS) if (typeof e[f] === 'number') procs.track(e[f])
      if (verbose) process.stderr.write(`[${name}] ${line}\n`)
      this.events.push(e)
      for (const w of [...this.waiters]) {
        if (w.match(e)) { this.waiters.delete(w); w.resolve(e) }
      }
    })
    void this.closed.then(() => {
      for (const w of [...this.waiters]) {
        this.waiters.delete(w)
        w.reject(new Error(`${name}: every process exited before ${w.what}; stderr:\n${this.stderrText.slice(-2000)}`))
      }
    })
  }

  /**
   * Resolves with the first event (from `since` on in this.events) that matches; rejects after
   * timeoutMs or once every process holding the output is gone.
   * @param {string | ((e: AppEvent) => boolean)} match an event name, or a test
   * @param {{ timeoutMs?: number, since?: number }} [options]
   * @returns {Promise<AppEvent>}
   */
  waitFor (match, { timeoutMs = 20_000, since = 0 } = {}) {
    const m = typeof match === 'string' ? (/** @type {AppEvent} */ e) => e.event === match : match
    const what = typeof match === 'string' ? match : 'a matching event'
    const seen = this.events.slice(since).find(m)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(w)
        reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms; stderr:\n${this.stderrText.slice(-2000)}`))
      }, timeoutMs)
      /** @type {Waiter} */
      const w = {
        what,
        match: m,
        resolve: (e) => { clearTimeout(timer); resolve(e) },
        reject: (err) => { clearTimeout(timer); reject(err) }
      }
      this.waiters.add(w)
    })
  }
}

/**
 * Whether `pid` runs. A zombie counts as gone: orphaned successors are reparented to PID 1, which
 * on some machines reaps them only every few seconds.
 * @param {number} pid
 */
function isAlive (pid) {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return /** @type {NodeJS.ErrnoException} */ (err).code === 'EPERM'
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    return true
  }
}

/**
 * Resolves once `pid` no longer exists (polled every 20 ms: it may not be our child), or false after timeoutMs.
 * @param {number} pid
 * @param {number} [timeoutMs]
 */
async function waitGone (pid, timeoutMs = 20_000) {
  const end = performance.now() + timeoutMs
  while (performance.now() < end) {
    if (!isAlive(pid)) return true
    await sleep(20)
  }
  return false
}

/**
 * @param {number} ms
 * @returns {Promise<void>}
 */
function sleep (ms) { return new Promise((resolve) => setTimeout(resolve, ms)) }

module.exports = { Procs, isAlive, waitGone, sleep }
