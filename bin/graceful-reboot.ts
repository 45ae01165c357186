#!/usr/bin/env node
// Runs in neither: a separate command-line process that signals the app named by its PID file
// (SIGUSR2 reboot, SIGTERM shutdown) and optionally waits for the outcome.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { readStatus, type RebootStatus, type SlotOutcome, type StatusRecord } from '../lib/status-file'
import { alive } from '../lib/proc'
import { appProcess } from '../lib/trust'
import { RUN_HELP, parseRun, runCommand } from '../lib/workers/run'

/** Exit codes (also in --help and docs/routes-and-cli.md). */
export const EXIT = {
  ok: 0,
  /** The signal could not be sent (no permission), or the process ended without a successor. */
  failed: 1,
  usage: 2,
  /** The PID file is missing, unreadable or does not hold a pid. */
  pidFile: 3,
  /** The PID file names a process that does not exist (stale). */
  stale: 4,
  /** --wait: no verdict (reboot) or the process did not exit (shutdown) in time. */
  timeout: 5,
  /** reboot --wait: the process refused to reboot (it serves on): under a launcher, in a terminal, already rebooting... */
  refused: 6,
  /** reboot --wait: the successor failed (crashed, exited or not ready in time, in probation or before): rolled back, the old process serves on. */
  rolledBack: 7,
  /** The process the PID file names is not the app (lib/trust.ts): nothing was signalled. */
  notApp: 8
} as const

/** How long a live process without a status file is given to write it (the app writes it right after the PID file). */
const STATUS_GRACE_MS = 1000

const DEFAULT_TIMEOUT_MS = 90_000
const POLL_MS = 100
/** The signal each command sends (status sends none: it only reads). */
const SIGNALS = { reboot: 'SIGUSR2', shutdown: 'SIGTERM', status: 'SIGCONT' } as const

const HELP = `Usage: graceful-reboot <reboot|shutdown|status> --pid-file FILE [--wait] [--timeout MS] [--signal NAME]
       graceful-reboot run [--workers N] [--surge K] [--pid-file FILE] [--node-arg ARG]... [--] <script> [args...]

Signals the process whose pid FILE holds: reboot sends SIGUSR2 (a successor takes over the listening
sockets), shutdown sends SIGTERM (drain and exit); status prints what the process is doing. The app
must use the pidFile option (it keeps a status file FILE.<pid>.status beside it). run starts a
supervisor of N workers of one script (graceful-reboot run --help); with --pid-file, reboot --wait
waits for its rolling reboot's verdict and status prints one row per worker.

Options:
  --pid-file FILE  the app's PID file (required)
  --wait           reboot: wait for the verdict: the successor passed probation (0), the reboot was
                   refused (6) or rolled back (7); one line per step;
                   shutdown: wait until the process is gone
  --timeout MS     how long --wait waits (default ${DEFAULT_TIMEOUT_MS}); keep it above the app's
                   rebootTimeout (reboot) or its timeout (shutdown)
  --signal NAME    send this signal instead (for a custom signals map, e.g. SIGHUP)
  --version        the package's version
  -h, --help       this text

It signals (and reads the status of) the process only if it is the app: the PID file is a regular
file; on Linux the process runs Node as the user that owns the PID file; its status file
FILE.<pid>.status exists, belongs to that user, names the pid and was written by that very process.
Otherwise it signals nothing, says why and exits 8.

Exit codes: 0 done, 1 signal not permitted or the process ended without a successor, 2 usage,
3 PID file missing or invalid, 4 stale pid (no such process), 5 --wait timed out,
6 reboot refused, 7 reboot rolled back, 8 the process is not the app (nothing signalled).`

class CliError extends Error {
  readonly exitCode: number
  constructor (exitCode: number, message: string) {
    super(message)
    this.exitCode = exitCode
  }
}

interface Command {
  action: 'reboot' | 'shutdown' | 'status'
  pidFile: string
  wait: boolean
  timeout: number
  signal: NodeJS.Signals
}

const OPTIONS = ['--pid-file', '--wait', '--timeout', '--signal', '--help', '--version']

/** node:util's parse errors in the words of this command: the option named, what is known, the nearest. */
function usageError (err: Error & { code?: string }): string {
  const unknown = /^Unknown option '([^']+)'/.exec(err.message)?.[1]
  if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown !== undefined) {
    const bare = unknown.replace(/[-_]/g, '').toLowerCase()
    const near = OPTIONS.find((o) => o.replace(/-/g, '') === bare)
    return `unknown option "${unknown}"${near === undefined ? '' : ` (did you mean ${near}?)`}; known: ${OPTIONS.join(', ')}`
  }
  const missing = /^Option '([^']+)' argument missing/.exec(err.message)?.[1]
  if (missing !== undefined) return `option ${missing.split(',').pop()?.trim().replace(/ <value>$/, '') ?? missing} needs a value`
  return err.message
}

function parse (argv: string[]): Command | 'help' | 'version' {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        'pid-file': { type: 'string' },
        wait: { type: 'boolean' },
        timeout: { type: 'string' },
        signal: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' }
      }
    })
  } catch (err) {
    throw new CliError(EXIT.usage, usageError(err as Error & { code?: string }))
  }
  const { values, positionals } = parsed
  if (values.help === true) return 'help'
  if (values.version === true) return 'version'
  const action = positionals[0]
  if (action !== 'reboot' && action !== 'shutdown' && action !== 'status') {
    throw new CliError(EXIT.usage, action === undefined ? 'missing command: reboot, shutdown or status' : `unknown command "${action}": reboot, shutdown or status`)
  }
  if (positionals.length > 1) throw new CliError(EXIT.usage, `unexpected argument "${positionals[1] ?? ''}"`)
  const pidFile = values['pid-file']
  if (pidFile === undefined || pidFile === '') throw new CliError(EXIT.usage, 'missing --pid-file FILE')
  let timeout = DEFAULT_TIMEOUT_MS
  if (values.timeout !== undefined) {
    if (!/^[0-9]+$/.test(values.timeout)) throw new CliError(EXIT.usage, `--timeout takes milliseconds (digits only), got "${values.timeout}"`)
    timeout = Number(values.timeout)
  }
  if (action === 'status' && values.signal !== undefined) throw new CliError(EXIT.usage, 'status sends no signal: --signal is for reboot and shutdown')
  const signal = (values.signal ?? SIGNALS[action]).toUpperCase()
  const name = signal.startsWith('SIG') ? signal : `SIG${signal}`
  if (!(name in os.constants.signals)) throw new CliError(EXIT.usage, `unknown signal "${values.signal ?? ''}"`)
  return { action, pidFile, wait: values.wait === true, timeout, signal: name as NodeJS.Signals }
}

/** The pid in the file, or undefined when the file is gone; throws for an unreadable or malformed file. */
function readPid (file: string): number | undefined {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT') return undefined
    throw new CliError(EXIT.pidFile, `cannot read PID file ${file}: ${e.message}`)
  }
  const t = text.trim()
  const pid = Number(t)
  if (!/^[0-9]+$/.test(t) || !Number.isSafeInteger(pid) || pid < 1) {
    throw new CliError(EXIT.pidFile, `PID file ${file} does not hold a pid: ${JSON.stringify(t.slice(0, 40))}`)
  }
  return pid
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => { setTimeout(resolve, ms) })
}

const took = (start: number): string => `${((Date.now() - start) / 1000).toFixed(1)} s`

/** One line for a reboot step the status file records. */
function stepLine (r: RebootStatus, pid: number): string {
  switch (r.step) {
    case 'spawned': return `successor ${r.successor ?? '?'} spawned by ${pid}`
    case 'ready': return `successor ${r.successor ?? '?'} ready; probation`
    case 'serving': return `successor ${r.successor ?? '?'} passed probation and serves; ${pid} drains`
    case 'refused': return `${pid} refused to reboot`
    case 'failed': return `successor ${r.successor ?? '?'} failed; rolled back`
    case 'lost': return `successor ${r.successor ?? '?'} was lost after it took over (${r.lost ?? 'no reason given'}); ${pid} serves again${r.back === true ? ', for good' : ' until its drain ends'}`
  }
}

/**
 * reboot --wait: the verdict from the process's status file (a reboot numbered above `before`),
 * read only when it belongs to `owner` (the PID file's owner). Once the process is gone (its status
 * file with it, perhaps right after 'serving'), done if the PID file names a new live process that
 * is the app.
 */
async function awaitVerdict (cmd: Command, pid: number, owner: number | undefined, before: StatusRecord | undefined, out: (line: string) => void): Promise<void> {
  const start = Date.now()
  const deadline = start + cmd.timeout
  const seq = before?.attempts.at(-1)?.seq ?? 0
  let seen = before !== undefined
  let shown: string | undefined
  for (;;) {
    // Only a file of the app's user: one planted by another user is no verdict.
    const r = readStatus(cmd.pidFile, pid, owner)
    seen ||= r !== undefined
    // The first request after the one last recorded before the signal: the signal's own.
    const last = r?.attempts.find((a) => a.seq > seq)
    if (last !== undefined) {
      if (last.step !== shown) out(`graceful-reboot: ${r?.kind === 'supervisor' ? rolloutLine(last, pid) : stepLine(last, pid)} (${took(start)})`)
      shown = last.step
      const why = last.error === undefined ? '' : `: ${last.error.message} (${last.error.code})`
      if (r?.kind === 'supervisor' && (last.step === 'serving' || last.step === 'failed')) for (const s of last.slots ?? []) out(`graceful-reboot: ${slotLine(s)}`)
      if (last.step === 'serving') {
        out(r?.kind === 'supervisor'
          ? `graceful-reboot: rolled: every worker of supervisor ${pid} replaced and past probation (${took(start)})`
          : `graceful-reboot: rebooted: ${last.successor ?? '?'} serves, ${pid} drains (${took(start)})`)
        return
      }
      if (last.step === 'refused') throw new CliError(EXIT.refused, `process ${pid} refused the reboot${why}; it serves on`)
      if (last.step === 'failed') {
        if (r?.kind === 'supervisor') throw new CliError(EXIT.rolledBack, `the rolling reboot of supervisor ${pid} failed${why}; every slot serves`)
        throw new CliError(EXIT.rolledBack, last.error?.code === 'ERR_GRACEFUL_REBOOT_ABORTED'
          ? `the reboot was aborted by a shutdown${why}; ${pid} drains`
          : `the reboot was rolled back${why}; ${pid} serves on`)
      }
    }
    if (!seen || !alive(pid)) {
      // No status file to go by, or the process is gone (its status file with it, perhaps right after 'serving').
      const now = readPid(cmd.pidFile)
      if (now !== undefined && now !== pid && alive(now) && appProcess(cmd.pidFile, now).app) {
        out(`graceful-reboot: rebooted: ${now} serves, ${pid} ${alive(pid) ? 'drains' : 'has exited'} (${took(start)})`)
        return
      }
      if (!alive(pid)) throw new CliError(EXIT.failed, `process ${pid} ended without a successor taking over (PID file ${now === undefined ? 'removed' : `holds ${now}`})`)
    }
    if (Date.now() >= deadline) {
      throw new CliError(EXIT.timeout, `timed out after ${cmd.timeout} ms: no verdict from ${pid} (the reboot is slower than --timeout, or ${cmd.signal} does not reboot this app; see its log)`)
    }
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())))
  }
}

async function awaitExit (cmd: Command, pid: number, out: (line: string) => void): Promise<void> {
  const start = Date.now()
  const deadline = start + cmd.timeout
  while (alive(pid)) {
    if (Date.now() >= deadline) throw new CliError(EXIT.timeout, `timed out after ${cmd.timeout} ms: process ${pid} is still running (still draining, or it ignores ${cmd.signal})`)
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())))
  }
  out(`graceful-reboot: ${pid} shut down (${took(start)})`)
}

/** `status`: what the process says it is doing, from its status file. */
function printStatus (r: StatusRecord, pid: number, out: (line: string) => void): void {
  if (r.kind === 'supervisor') {
    printTable(r, out)
    return
  }
  const up = Math.round((Date.now() - r.startedAt) / 1000)
  out(`graceful-reboot: process ${pid}: ${r.state}${r.role === null ? '' : ` (${r.role} side of a reboot)`}, up ${up} s`)
  const n = r.reboots
  out(`  reboots: ${n.requested} requested, ${n.succeeded} succeeded, ${n.refused} refused, ${n.failed} failed`)
  const last = r.attempts.at(-1)
  if (last !== undefined) {
    const why = last.error === undefined ? '' : `: ${last.error.message} (${last.error.code})`
    out(`  last reboot: #${last.seq} by ${last.trigger}, ${stepLine(last, pid)}${why}, at ${new Date(last.at).toISOString()}`)
  }
}

/** One line for a supervisor's rolling reboot as its status file records it. */
function rolloutLine (r: RebootStatus, pid: number): string {
  switch (r.step) {
    case 'spawned': return `supervisor ${pid}: rolling reboot #${r.seq} (${r.trigger}) under way, ${r.slots?.length ?? 0} slots done`
    case 'serving': return `supervisor ${pid}: rolling reboot #${r.seq} done`
    case 'refused': return `supervisor ${pid} refused the rolling reboot`
    default: return `supervisor ${pid}: rolling reboot #${r.seq} stopped`
  }
}

function slotLine (s: SlotOutcome): string {
  return `slot ${s.slot}: ${s.ok ? (s.old === null ? `worker ${s.successor ?? '?'} started` : `worker ${s.old} replaced by ${s.successor ?? '?'}`) : `failed: ${s.message}`} (${(s.ms / 1000).toFixed(1)} s)`
}

/** A worker's resident memory in MB (VmRSS), or '?' where it cannot be read. */
function rss (pid: number): string {
  try {
    const kb = /^VmRSS:\s+([0-9]+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]
    return kb === undefined ? '?' : `${Math.round(Number(kb) / 1024)} MB`
  } catch {
    return '?'
  }
}

const ago = (since: number): string => {
  const s = Math.max(0, Math.round((Date.now() - since) / 1000))
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`
}

/** `status` of a supervisor: one row per slot, then its last rolling reboots. */
function printTable (r: StatusRecord, out: (line: string) => void): void {
  const slots = r.slots ?? []
  out(`graceful-reboot: supervisor ${r.pid}: ${r.state}, ${slots.filter((s) => s.state === 'serving').length} of ${slots.length} workers serving, up ${ago(r.startedAt)}`)
  const rows = [['slot', 'pid', 'state', 'uptime', 'restarts', 'rss', 'started'], ...slots.map((s) => [
    String(s.slot), s.pid === null ? '-' : String(s.pid), s.state, s.startedAt === null ? '-' : ago(s.startedAt), String(s.restarts),
    s.pid === null ? '-' : rss(s.pid), s.startedAt === null ? '-' : new Date(s.startedAt).toISOString()
  ])]
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0))) ?? []
  for (const row of rows) out('  ' + row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd())
  const n = r.reboots
  out(`  rolling reboots: ${n.requested} requested, ${n.succeeded} succeeded, ${n.refused} refused, ${n.failed} failed`)
  const w = r.totals
  if (w !== undefined) {
    out(`  workers' reboots (every slot's line): ${w.reboots.requested} requested, ${w.reboots.succeeded} succeeded, ${w.reboots.refused} refused, ${w.reboots.failed} failed, ${w.reboots.lost} lost; ` +
      `${w.drains} drains; connections ${w.connections.transferred} transferred, ${w.connections.kept} kept, ${w.connections.forced} forced`)
  }
  for (const a of r.attempts.slice(-3)) {
    const why = a.error === undefined ? '' : `: ${a.error.message} (${a.error.code})`
    out(`  #${a.seq} by ${a.trigger} at ${new Date(a.at).toISOString()}: ${a.step === 'serving' ? 'done' : a.step === 'spawned' ? 'under way' : a.step}${why}`)
  }
}

/**
 * Whether `pid` is the app (lib/trust.ts `appProcess`); a live process whose only fault is a missing
 * status file is given STATUS_GRACE_MS to write it (it writes it just after the PID file).
 */
async function theApp (pidFile: string, pid: number): Promise<ReturnType<typeof appProcess>> {
  const deadline = Date.now() + STATUS_GRACE_MS
  for (;;) {
    const check = appProcess(pidFile, pid)
    if (check.app || check.noStatus !== true || Date.now() >= deadline || !alive(pid)) return check
    await sleep(POLL_MS)
  }
}

async function run (cmd: Command, out: (line: string) => void): Promise<void> {
  const pid = readPid(cmd.pidFile)
  if (pid === undefined) throw new CliError(EXIT.pidFile, `PID file ${cmd.pidFile} not found (is the app running, with the pidFile option?)`)
  if (!alive(pid)) throw new CliError(EXIT.stale, `stale PID file ${cmd.pidFile}: no process ${pid} is running`)
  const check = await theApp(cmd.pidFile, pid)
  if (!check.app) throw new CliError(EXIT.notApp, `PID file ${cmd.pidFile} names process ${pid}, which is not the app: ${check.why}; nothing was signalled`)
  if (cmd.action === 'status') {
    printStatus(check.record, pid, out)
    return
  }
  const before = cmd.action === 'reboot' ? check.record : undefined
  try {
    process.kill(pid, cmd.signal)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ESRCH') throw new CliError(EXIT.stale, `stale PID file ${cmd.pidFile}: process ${pid} is gone`)
    throw new CliError(EXIT.failed, `cannot send ${cmd.signal} to ${pid}: ${e.code === 'EPERM' ? 'not permitted (run as the app\'s user)' : e.message}`)
  }
  out(`graceful-reboot: sent ${cmd.signal} to ${pid} (${cmd.action})`)
  if (!cmd.wait) return
  if (cmd.action === 'reboot') await awaitVerdict(cmd, pid, check.owner, before, out)
  else await awaitExit(cmd, pid, out)
}

/** The package's version, from its package.json (two folders above dist/bin). */
function version (): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: string }
  return pkg.version ?? 'unknown'
}

/** The CLI: returns the exit code. */
export async function main (argv: string[], out = (s: string) => { process.stdout.write(s + '\n') }, err = (s: string) => { process.stderr.write(s + '\n') }): Promise<number> {
  try {
    if (argv[0] === 'run') {
      let a: ReturnType<typeof parseRun>
      try {
        a = parseRun(argv.slice(1))
      } catch (e) {
        throw new CliError(EXIT.usage, (e as Error).message)
      }
      if (a === 'help') {
        out(RUN_HELP)
        return EXIT.ok
      }
      return await runCommand(a, err)
    }
    const cmd = parse(argv)
    if (cmd === 'help' || cmd === 'version') {
      out(cmd === 'help' ? HELP : version())
      return EXIT.ok
    }
    await run(cmd, out)
    return EXIT.ok
  } catch (e) {
    if (!(e instanceof CliError)) throw e
    err(`graceful-reboot: ${e.message}`)
    if (e.exitCode === EXIT.usage) err('Try "graceful-reboot --help".')
    return e.exitCode
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (e: unknown) => {
    process.stderr.write(`graceful-reboot: ${(e as Error).stack ?? String(e)}\n`)
    process.exitCode = EXIT.failed
  })
}
