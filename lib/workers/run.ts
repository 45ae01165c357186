// Runs in the supervisor: the `graceful-reboot run` command: reads its arguments, refuses where a
// supervisor cannot work (under PM2, in a node:cluster worker), starts the workers, writes the PID
// file and tells systemd once they all serve, and maps signals: SIGUSR2 rolls every worker, SIGTERM
// and SIGINT drain them (a second one kills them) and exit with the highest code a worker exited with.
import { execFile, spawn } from 'node:child_process'
import cluster from 'node:cluster'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { writePidFile, removePidFile } from '../pidfile'
import { Supervisor } from './supervisor'

export const RUN_HELP = `Usage: graceful-reboot run [--workers N] [--surge K] [--pid-file FILE] [--] <script> [args...]

Starts N workers (default: the cores this process may use) running <script> with this Node and its
flags. They share the listening sockets (the app calls listen() as it does alone). Signals to this
process: SIGUSR2 replaces every worker, --surge K slots at a time (default 1), each only once its
replacement serves and passed probation; SIGTERM and SIGINT drain every worker and exit. A reboot asked
in any worker (its SIGUSR2, the admin route, app.reboot()) rolls every worker too.`

export interface RunArgs { workers: number, surge: number, pidFile: string | undefined, script: string, args: string[] }

/** Parses what follows `run`; throws an Error whose message names the bad argument. */
export function parseRun (argv: readonly string[]): RunArgs | 'help' {
  let workers = os.availableParallelism()
  let surge = 1
  let pidFile: string | undefined
  let i = 0
  const count = (flag: string, value: string | undefined): number => {
    if (value === undefined || !/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > 1024) throw new Error(`${flag} takes a whole number from 1 to 1024, got ${JSON.stringify(value ?? '')}`)
    return Number(value)
  }
  for (; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--') { i++; break }
    if (!a.startsWith('-')) break
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined]
    const value = (): string | undefined => inline ?? argv[++i]
    if (flag === '-h' || flag === '--help') return 'help'
    else if (flag === '--workers') workers = count('--workers', value())
    else if (flag === '--surge') surge = count('--surge', value())
    else if (flag === '--pid-file') {
      pidFile = value()
      if (pidFile === undefined || pidFile === '') throw new Error('--pid-file takes a path')
    } else throw new Error(`unknown option "${a}" for run (known: --workers, --surge, --pid-file; the script's own options go after it)`)
  }
  const script = argv[i]
  if (script === undefined) throw new Error('run needs the script to start: graceful-reboot run --workers 2 app.js')
  return { workers, surge, pidFile, script, args: argv.slice(i + 1) as string[] }
}

/** Why a supervisor cannot run here (and what to do), or undefined. */
export function runRefusal (env: NodeJS.ProcessEnv, isClusterWorker: boolean): string | undefined {
  if (env.pm_id !== undefined) return 'graceful-reboot run does not run under PM2: PM2 would supervise the supervisor and not its workers; run it under systemd (or a container), or use PM2 alone with the plugin in each process (docs/launchers.md)'
  if (isClusterWorker) return 'graceful-reboot run does not run in a node:cluster worker: start it as the main process, with the app as its script (graceful-reboot run --workers N app.js)'
  if (env.GRACEFUL_WORKER !== undefined) return 'graceful-reboot run does not run inside one of its own workers'
  return undefined
}

/** The command: resolves with the exit code once every worker is gone. */
export async function runCommand (a: RunArgs, log: (line: string) => void): Promise<number> {
  const refusal = runRefusal(process.env, cluster.isWorker)
  if (refusal !== undefined) {
    log(`graceful-reboot: ${refusal}`)
    return 2
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-supervisor-'))
  const supervisor = new Supervisor({
    workers: a.workers,
    surge: a.surge,
    script: a.script,
    args: a.args,
    execPath: process.execPath,
    execArgv: process.execArgv,
    cwd: process.cwd(),
    env: process.env,
    socketPath: path.join(dir, 'control.sock')
  }, {
    spawn: (command, args, options) => spawn(command, args, options),
    timer: (ms, fn) => { const t = setTimeout(fn, ms); return () => { clearTimeout(t) } },
    now: () => Date.now(),
    log: (level, msg, fields) => { log(`[${level}] pid=${process.pid} ${msg}${fields === undefined ? '' : ' ' + JSON.stringify(fields)}`) }
  })
  let signals = 0
  const stop = (sig: NodeJS.Signals): void => {
    if (++signals > 1) {
      log(`[error] pid=${process.pid} graceful-reboot: supervisor: ${sig} again during the drain; killing every worker`)
      supervisor.kill()
      return
    }
    void supervisor.shutdown(sig)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('SIGUSR2', () => { void supervisor.rollout('SIGUSR2') })
  try {
    const started = await Promise.race([supervisor.start().then(() => true), supervisor.finished.then(() => false)])
    if (started) {
      if (a.pidFile !== undefined) writePidFile(a.pidFile, process.pid)
      if ((process.env.NOTIFY_SOCKET ?? '') !== '') execFile('systemd-notify', ['--ready', `--pid=${process.pid}`, `--status=${a.workers} workers serving`], () => {})
      log(`[info] pid=${process.pid} graceful-reboot: supervisor: ${a.workers} workers serving: ${supervisor.workers.join(', ')}`)
    }
    return await supervisor.finished
  } finally {
    if (a.pidFile !== undefined) removePidFile(a.pidFile, process.pid)
    fs.rmSync(dir, { recursive: true, force: true })
  }
}
