// Runs in the supervisor: the `graceful-reboot run` command: reads its arguments, refuses where a
// supervisor cannot work (under PM2, in a node:cluster worker, a script that is missing or that Node
// cannot run, a PID file that is not its own), starts the workers, writes the PID file and its status
// file, tells systemd (READY=1, RELOADING=1 around a rolling reboot, STOPPING=1), and maps signals:
// SIGUSR2 rolls every worker, SIGTERM and SIGINT drain them (a second one kills them); at the end it
// says how the drain went in one line and exits with the supervisor's exit code.
import { randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import cluster from 'node:cluster'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { PidFileError } from '../errors'
import { checkPidFile, removePidFile, writePidFile } from '../pidfile'
import { alive, startEnvironment, startTicks } from '../proc'
import { removeStatus, statusFilePath, writeStatus, type StatusRecord } from '../status-file'
import { NotifyChannel } from '../systemd-notify'
import { reusePortSupported } from './protocol'
import { Supervisor, type SupervisorLogLevel } from './supervisor'

export const RUN_HELP = `Usage: graceful-reboot run [--workers N] [--surge K] [--pid-file FILE] [--node-arg ARG]...
                          [--accept-queues per-worker|shared] [--rebalance on|off] [--log-format text|json]
                          [--log-level debug|info|warn|error] [--] <script> [args...]

Starts N workers (default: the cores this process may use) running <script> with this Node and its
flags. They share the listening sockets (the app calls listen() as it does alone). Signals to this
process: SIGUSR2 replaces every worker, --surge K slots at a time (default 1), each only once its
replacement serves and passed probation; SIGTERM and SIGINT drain every worker and exit (a second
one kills them). A reboot asked in any worker (its SIGUSR2, the admin route, app.reboot()) rolls every
worker too.

Options:
  --pid-file FILE   write this process's pid to FILE once every worker serves, and a status file
                    beside it (FILE.<pid>.status) that \`graceful-reboot status\` and \`reboot --wait\` read
  --node-arg ARG    a Node flag for the workers (repeat it): --node-arg=--import=tsx runs a .ts script
  --accept-queues Q per-worker (default on Linux with Node 22.12+ or 23.1+): each worker accepts TCP
                    connections on a socket of its own (SO_REUSEPORT), so the kernel spreads them over
                    the workers; shared (the default elsewhere): every worker accepts on one socket
  --rebalance on|off on (default): a worker holding more than its share of the connections (the fair
                    share + 5 % of all) answers the next request of each one in excess with
                    Connection: close, so that its client reconnects, to another worker as often as not
  --log-format F    the supervisor's own lines: text (default) or json (one JSON object per line)
  --log-level L     info (default: one line per slot per rolling reboot), debug for every step

Exit codes: 0 every worker of the final drain drained cleanly; else the highest of them: a worker's
own exit code (75 drain deadline passed, 76 a finalizer failed, 1 crash...), 128 + the signal that
killed one; 128 + the signal after a second SIGTERM or SIGINT (143, 130); 1 when the workers could not
start; 2 refused at start (arguments, script, PID file).`

export type LogFormat = 'text' | 'json'

export interface RunArgs {
  workers: number
  surge: number
  pidFile: string | undefined
  nodeArgs: string[]
  logFormat: LogFormat
  logLevel: SupervisorLogLevel
  /** undefined: per-worker where this Node and OS support it, else shared. */
  acceptQueues: 'per-worker' | 'shared' | undefined
  rebalance: boolean
  script: string
  args: string[]
}

const LEVELS: Record<SupervisorLogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50 }

/** Parses what follows `run`; throws an Error whose message names the bad argument. */
export function parseRun (argv: readonly string[]): RunArgs | 'help' {
  let workers = os.availableParallelism()
  let surge = 1
  let pidFile: string | undefined
  let logFormat: LogFormat = 'text'
  let logLevel: SupervisorLogLevel = 'info'
  let acceptQueues: RunArgs['acceptQueues']
  let rebalance = true
  const nodeArgs: string[] = []
  let i = 0
  const count = (flag: string, value: string | undefined): number => {
    if (value === undefined || !/^[0-9]+$/.test(value) || Number(value) < 1 || Number(value) > 1024) throw new Error(`${flag} takes a whole number from 1 to 1024, got ${JSON.stringify(value ?? '')}`)
    return Number(value)
  }
  const oneOf = <T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T => {
    if (!allowed.includes(value as T)) throw new Error(`${flag} takes ${allowed.join(', ')}, got ${JSON.stringify(value ?? '')}`)
    return value as T
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
    } else if (flag === '--node-arg') {
      const arg = value()
      if (arg === undefined || !arg.startsWith('-')) throw new Error(`--node-arg takes a Node flag (--node-arg=--import=tsx), got ${JSON.stringify(arg ?? '')}`)
      nodeArgs.push(arg)
    } else if (flag === '--log-format') logFormat = oneOf('--log-format', value(), ['text', 'json'] as const)
    else if (flag === '--log-level') logLevel = oneOf('--log-level', value(), ['debug', 'info', 'warn', 'error'] as const)
    else if (flag === '--accept-queues') acceptQueues = oneOf('--accept-queues', value(), ['per-worker', 'shared'] as const)
    else if (flag === '--rebalance') rebalance = oneOf('--rebalance', value(), ['on', 'off'] as const) === 'on'
    else throw new Error(`unknown option "${a}" for run (known: --workers, --surge, --pid-file, --node-arg, --accept-queues, --rebalance, --log-format, --log-level; the script's own options go after it)`)
  }
  const script = argv[i]
  if (script === undefined) throw new Error('run needs the script to start: graceful-reboot run --workers 2 app.js')
  return { workers, surge, pidFile, nodeArgs, logFormat, logLevel, acceptQueues, rebalance, script, args: argv.slice(i + 1) as string[] }
}

/** Why a supervisor cannot run here (and what to do), or undefined. */
export function runRefusal (env: NodeJS.ProcessEnv, isClusterWorker: boolean): string | undefined {
  if (env.pm_id !== undefined) return 'graceful-reboot run does not run under PM2: PM2 would supervise the supervisor and not its workers; run it under systemd (or a container), or use PM2 alone with the plugin in each process (docs/launchers.md)'
  if (isClusterWorker) return 'graceful-reboot run does not run in a node:cluster worker: start it as the main process, with the app as its script (graceful-reboot run --workers N app.js)'
  if (env.GRACEFUL_WORKER !== undefined) return 'graceful-reboot run does not run inside one of its own workers'
  return undefined
}

/** Node flags that let a worker run a TypeScript script. */
const LOADER_FLAG = /^(--import|--loader|--experimental-loader|--require|-r|--experimental-strip-types|--experimental-transform-types)(=|$)/

/** Whether this Node runs .ts files without a flag (type stripping on by default: 22.18 and 23.6 on). */
export function stripsTypes (version: string): boolean {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number)
  return major > 23 || (major === 23 && minor >= 6) || (major === 22 && minor >= 18)
}

/** Why the workers could not run `script` (missing, or TypeScript without a loader), or undefined. */
export function scriptProblem (script: string, cwd: string, nodeArgs: readonly string[], nodeOptions: string, version: string): string | undefined {
  const file = path.resolve(cwd, script)
  try {
    require.resolve(file)
  } catch {
    return `the script ${JSON.stringify(script)} does not exist (looked for ${file})`
  }
  if (!/\.[cm]?ts$/.test(file) || stripsTypes(version)) return undefined
  const flags = [...nodeArgs, ...nodeOptions.split(/\s+/)]
  if (flags.some((f) => LOADER_FLAG.test(f))) return undefined
  return `${script} is TypeScript, which Node ${version} does not run without a loader: give the workers one (--node-arg=--import=tsx with tsx installed, or NODE_OPTIONS='--import tsx'), or run the compiled JavaScript`
}

/**
 * Why `file` cannot be this supervisor's PID file: its folder fails the package's PID-file check, or
 * it names another process that runs (a second instance would take the file over).
 */
export function pidFileProblem (file: string, self: number): string | undefined {
  try {
    checkPidFile(file, statusFilePath(file, self))
  } catch (err) {
    if (err instanceof PidFileError) return err.message.replace('"pidFile"', '--pid-file')
    throw err
  }
  let text = ''
  try { text = fs.readFileSync(file, 'utf8').trim() } catch {}
  const pid = Number(text)
  if (/^[0-9]+$/.test(text) && pid !== self && alive(pid)) {
    return `--pid-file ${JSON.stringify(file)} names process ${pid}, which is running: another instance? Stop it first, or give this one a PID file of its own`
  }
  return undefined
}

/** The supervisor's lines: `[level] pid=N message {fields}`, or one JSON object per line (pino's level numbers). */
export function supervisorLogger (format: LogFormat, level: SupervisorLogLevel, write: (line: string) => void): (level: SupervisorLogLevel, msg: string, fields?: Record<string, unknown>) => void {
  return (l, msg, fields) => {
    if (LEVELS[l] < LEVELS[level]) return
    if (format === 'json') write(JSON.stringify({ level: LEVELS[l], time: Date.now(), pid: process.pid, name: 'graceful-reboot-supervisor', ...fields, msg }))
    else write(`[${l}] pid=${process.pid} ${msg}${fields === undefined || Object.keys(fields).length === 0 ? '' : ' ' + JSON.stringify(fields)}`)
  }
}

const TEMP_PREFIX = 'graceful-supervisor-'

/** Removes the folders of supervisors that are gone (killed with SIGKILL: nothing removed them), this user's only. */
export function removeStaleFolders (tmp: string): void {
  let names: string[] = []
  try { names = fs.readdirSync(tmp) } catch {}
  for (const name of names) {
    const pid = /^graceful-supervisor-([0-9]+)-/.exec(name)?.[1]
    if (pid === undefined || alive(Number(pid))) continue
    const dir = path.join(tmp, name)
    try {
      if (fs.lstatSync(dir).uid === process.getuid?.()) fs.rmSync(dir, { recursive: true, force: true })
    } catch {}
  }
}

/** Unlinks the Unix socket paths the workers listened on (still a socket: nothing else took the path's place). */
function removeSocketPaths (listeners: ReadonlyArray<{ key: string, fd: number }>, cwd: string): void {
  for (const l of listeners) {
    if (!l.key.startsWith('unix:')) continue
    const file = path.resolve(cwd, l.key.slice('unix:'.length))
    try {
      if (fs.lstatSync(file).isSocket()) fs.unlinkSync(file)
    } catch {}
  }
}

/** The command: resolves with the exit code once every worker is gone. */
export async function runCommand (a: RunArgs, write: (line: string) => void): Promise<number> {
  const log = supervisorLogger(a.logFormat, a.logLevel, write)
  const refuse = (why: string): number => {
    log('error', `graceful-reboot: ${why}`)
    return 2
  }
  const refusal = runRefusal(process.env, cluster.isWorker)
  if (refusal !== undefined) return refuse(refusal)
  const cwd = process.cwd()
  const script = scriptProblem(a.script, cwd, a.nodeArgs, process.env.NODE_OPTIONS ?? '', process.version)
  if (script !== undefined) return refuse(`run: ${script}`)
  const pidFile = a.pidFile === undefined ? undefined : path.resolve(cwd, a.pidFile)
  const pidProblem = pidFile === undefined ? undefined : pidFileProblem(pidFile, process.pid)
  if (pidProblem !== undefined) return refuse(`run: ${pidProblem}`)
  const reusePort = reusePortSupported(process.version, process.platform)
  if (a.acceptQueues === 'per-worker' && !reusePort) return refuse(`run: --accept-queues per-worker needs SO_REUSEPORT through listen({ reusePort }): Node 22.12+ or 23.1+ on Linux; this is Node ${process.version} on ${process.platform} (use --accept-queues shared, or a newer Node)`)
  const acceptQueues = a.acceptQueues ?? (reusePort ? 'per-worker' : 'shared')
  removeStaleFolders(os.tmpdir())
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${TEMP_PREFIX}${process.pid}-`))
  const notify = new NotifyChannel({ env: process.env, spawn: (c, args, o) => spawn(c, args, o), timer, warn: (fields, msg) => { log('warn', msg, { notifySocket: fields.notifySocket }) } })
  const supervisor: Supervisor = new Supervisor({
    workers: a.workers,
    surge: a.surge,
    script: a.script,
    args: a.args,
    execPath: process.execPath,
    execArgv: [...process.execArgv, ...a.nodeArgs],
    cwd,
    env: process.env,
    socketPath: path.join(dir, 'control.sock'),
    secret: randomBytes(24).toString('hex'),
    acceptQueues,
    rebalance: a.rebalance
  }, {
    spawn: (command, args, options) => spawn(command, args, options),
    timer,
    now: () => Date.now(),
    log,
    alive,
    environ: startEnvironment,
    kill: (pid, signal) => { try { process.kill(pid, signal); return true } catch { return false } },
    changed: () => { notify.told(status) },
    rollout: (r) => {
      if (r.step === 'spawned') notify.send('RELOADING=1', `STATUS=rolling reboot #${r.seq} (${r.trigger})`)
      else notify.send('READY=1', `STATUS=${a.workers} workers serving; rolling reboot #${r.seq} ${r.step === 'serving' ? 'done' : `failed: ${r.error?.message ?? ''}`}`)
    }
  })
  const ticks = startTicks(process.pid)
  let statusWritten = false
  let statusWarned = false
  function status (): void {
    if (pidFile === undefined) return
    const record: StatusRecord = {
      pid: process.pid,
      state: supervisor.state,
      role: null,
      startedAt: supervisor.startedAt,
      updatedAt: Date.now(),
      ...(ticks === undefined ? {} : { startTicks: ticks }),
      reboots: { ...supervisor.rollouts.counts },
      attempts: [...supervisor.rollouts.records],
      kind: 'supervisor',
      slots: supervisor.table(),
      totals: supervisor.totals.sum()
    }
    try {
      writeStatus(pidFile, record)
      statusWritten = true
    } catch (err) {
      if (statusWarned) return
      statusWarned = true
      log('warn', `graceful-reboot: supervisor: could not write the status file beside the PID file: ${(err as Error).message}; \`graceful-reboot reboot --wait\` cannot give a verdict`)
    }
  }
  const signals: NodeJS.Signals[] = []
  const stop = (sig: NodeJS.Signals): void => {
    signals.push(sig)
    if (signals.length > 1) {
      log('error', `graceful-reboot: supervisor: ${sig} again during the drain; killing every worker`)
      supervisor.kill(os.constants.signals[sig])
      return
    }
    notify.send('STOPPING=1', `STATUS=draining ${a.workers} workers (${sig})`)
    void supervisor.shutdown(sig)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.on('SIGUSR2', () => { void supervisor.rollout('SIGUSR2') })
  try {
    const started = await Promise.race([supervisor.start().then(() => true), supervisor.finished.then(() => false)])
    if (started) {
      if (pidFile !== undefined) {
        try {
          writePidFile(pidFile, process.pid)
        } catch (err) {
          // Checked at start: if it cannot be written now, the workers serve all the same.
          log('error', `graceful-reboot: supervisor: ${(err as Error).message}; serving without it`)
        }
      }
      const gaveUp = supervisor.table().filter((s) => s.state === 'given up').length
      const serving = a.workers - gaveUp
      const given = gaveUp > 0 ? ` (${gaveUp} slots given up)` : ''
      notify.send('READY=1', `MAINPID=${process.pid}`, `STATUS=${serving} workers serving${given}`)
      log(given === '' ? 'info' : 'warn', `graceful-reboot: supervisor: ${serving} workers serving${given}: ${supervisor.workers.join(', ')}`)
    }
    const code = await supervisor.finished
    const { clean, failed } = supervisor.drained
    log(code === 0 ? 'info' : 'error', `graceful-reboot: supervisor: exiting with code ${code}: ${clean} workers drained cleanly, ${failed} did not (forced, crashed or killed)${signals.length > 1 ? `; killed by a second ${signals[1] ?? ''}` : ''}`, { code, clean, failed })
    await notify.settled()
    return code
  } finally {
    removeSocketPaths(supervisor.listeners, cwd)
    if (pidFile !== undefined) {
      removePidFile(pidFile, process.pid)
      if (statusWritten) removeStatus(pidFile, process.pid)
    }
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

function timer (ms: number, fn: () => void): () => void {
  const t = setTimeout(fn, ms)
  return () => { clearTimeout(t) }
}
