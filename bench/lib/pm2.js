'use strict'
// Runs in the benchmark process: PM2 driven through its own CLI, with an isolated PM2_HOME in a
// temporary directory; `close()` runs `pm2 kill` there and SIGKILLs whatever pid PM2 left behind.
const { execFile } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const PM2_BIN = path.join(__dirname, '..', 'node_modules', 'pm2', 'bin', 'pm2')

class Pm2 {
  /** @param {import('./procs').Procs} procs */
  constructor (procs) {
    this.procs = procs
    this.home = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-bench-pm2-'))
    /** @type {NodeJS.ProcessEnv} */
    this.env = { ...process.env, PM2_HOME: this.home, PM2_DISCRETE_MODE: 'true' }
    delete this.env.PM2_PROGRAMMATIC
  }

  /**
   * Runs `pm2 ...args`; resolves with stdout, rejects with stdout+stderr on a non-zero exit.
   * @param {string[]} args
   * @param {number} [timeoutMs]
   * @returns {Promise<string>}
   */
  cli (args, timeoutMs = 60_000) {
    return new Promise((resolve, reject) => {
      execFile(process.execPath, [PM2_BIN, ...args], { env: this.env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        this.trackDaemon()
        if (err) {
          err.message += `\n${stdout}\n${stderr}`
          reject(err)
        } else {
          resolve(stdout)
        }
      })
    })
  }

  trackDaemon () {
    try {
      this.procs.track(Number(fs.readFileSync(path.join(this.home, 'pm2.pid'), 'utf8').trim()))
    } catch {}
  }

  /**
   * Starts an app from an ecosystem object; resolves once `pm2 start` returns.
   * @param {{ name: string, [option: string]: unknown }} app
   */
  async start (app) {
    const file = path.join(this.home, `${app.name}.config.js`)
    fs.writeFileSync(file, `module.exports = ${JSON.stringify({ apps: [app] }, null, 2)}\n`)
    await this.cli(['start', file])
    await this.pids(app.name)
  }

  /**
   * Pids of the app's online workers (tracked for the final kill).
   * @param {string} name
   */
  async pids (name) {
    /** @type {Array<{ name: string, pid: number }>} */
    const list = JSON.parse(await this.cli(['jlist']))
    const pids = list.filter((p) => p.name === name && p.pid > 0).map((p) => p.pid)
    for (const pid of pids) this.procs.track(pid)
    return pids
  }

  /** @param {string} name */
  reload (name) { return this.cli(['reload', name]) }

  /** @param {string} name */
  async delete (name) {
    try { await this.cli(['delete', name]) } catch {}
  }

  /** Stops the daemon (`pm2 kill`) and removes PM2_HOME; returns a note if it had to SIGKILL. */
  async close () {
    this.trackDaemon()
    let note
    try {
      await this.cli(['kill'], 30_000)
    } catch (err) {
      note = `pm2 kill failed: ${/** @type {Error} */ (err).message.split('\n')[0]}`
    }
    try { fs.rmSync(this.home, { recursive: true, force: true }) } catch {}
    return note
  }
}

module.exports = { Pm2, PM2_BIN }
