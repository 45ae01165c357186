#!/usr/bin/env node
// Runs in neither: a separate command-line process that signals the app named by its PID file
// (SIGUSR2 reboot, SIGTERM shutdown) and optionally waits for the outcome.
import fs from 'node:fs'
import os from 'node:os'
import { parseArgs } from 'node:util'

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
  /** --wait: the pid did not change (reboot) or the process did not exit (shutdown) in time. */
  timeout: 5
} as const

const DEFAULT_TIMEOUT_MS = 90_000
const POLL_MS = 100
const SIGNALS = { reboot: 'SIGUSR2', shutdown: 'SIGTERM' } as const

const HELP = `Usage: graceful-reboot <reboot|shutdown> --pid-file FILE [--wait] [--timeout MS] [--signal NAME]

Signals the process whose pid FILE holds: reboot sends SIGUSR2 (a successor takes over the listening
sockets), shutdown sends SIGTERM (drain and exit). The app must use the pidFile option.

Options:
  --pid-file FILE  the app's PID file (required)
  --wait           reboot: wait until the PID file names a new live process (the successor is ready);
                   shutdown: wait until the process is gone
  --timeout MS     how long --wait waits (default ${DEFAULT_TIMEOUT_MS}); keep it above the app's
                   rebootTimeout (reboot) or its timeout (shutdown)
  --signal NAME    send this signal instead (for a custom signals map, e.g. SIGHUP)
  -h, --help       this text

Exit codes: 0 done, 1 signal not permitted or the process ended without a successor, 2 usage,
3 PID file missing or invalid, 4 stale pid (no such process), 5 --wait timed out.`

class CliError extends Error {
  readonly exitCode: number
  constructor (exitCode: number, message: string) {
    super(message)
    this.exitCode = exitCode
  }
}

interface Command {
  action: 'reboot' | 'shutdown'
  pidFile: string
  wait: boolean
  timeout: number
  signal: NodeJS.Signals
}

function parse (argv: string[]): Command | 'help' {
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
        help: { type: 'boolean', short: 'h' }
      }
    })
  } catch (err) {
    throw new CliError(EXIT.usage, (err as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help === true) return 'help'
  const action = positionals[0]
  if (action !== 'reboot' && action !== 'shutdown') {
    throw new CliError(EXIT.usage, action === undefined ? 'missing command: reboot or shutdown' : `unknown command "${action}": reboot or shutdown`)
  }
  if (positionals.length > 1) throw new CliError(EXIT.usage, `unexpected argument "${positionals[1] ?? ''}"`)
  const pidFile = values['pid-file']
  if (pidFile === undefined || pidFile === '') throw new CliError(EXIT.usage, 'missing --pid-file FILE')
  let timeout = DEFAULT_TIMEOUT_MS
  if (values.timeout !== undefined) {
    if (!/^[0-9]+$/.test(values.timeout)) throw new CliError(EXIT.usage, `--timeout takes milliseconds (digits only), got "${values.timeout}"`)
    timeout = Number(values.timeout)
  }
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

/** Whether `pid` names a live process (a zombie waiting to be reaped counts as gone). */
function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    // EPERM: it exists, it just is not ours.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  if (process.platform !== 'linux') return true
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z'
  } catch {
    return false
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => { setTimeout(resolve, ms) })
}

async function run (cmd: Command, out: (line: string) => void): Promise<void> {
  const pid = readPid(cmd.pidFile)
  if (pid === undefined) throw new CliError(EXIT.pidFile, `PID file ${cmd.pidFile} not found (is the app running, with the pidFile option?)`)
  if (!alive(pid)) throw new CliError(EXIT.stale, `stale PID file ${cmd.pidFile}: no process ${pid} is running`)
  try {
    process.kill(pid, cmd.signal)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ESRCH') throw new CliError(EXIT.stale, `stale PID file ${cmd.pidFile}: process ${pid} is gone`)
    throw new CliError(EXIT.failed, `cannot send ${cmd.signal} to ${pid}: ${e.code === 'EPERM' ? 'not permitted (run as the app\'s user)' : e.message}`)
  }
  out(`graceful-reboot: sent ${cmd.signal} to ${pid} (${cmd.action})`)
  if (!cmd.wait) return
  const start = Date.now()
  const deadline = start + cmd.timeout
  const took = (): string => `${((Date.now() - start) / 1000).toFixed(1)} s`
  for (;;) {
    if (cmd.action === 'reboot') {
      const now = readPid(cmd.pidFile)
      if (now !== undefined && now !== pid && alive(now)) {
        out(`graceful-reboot: rebooted: ${now} serves, ${pid} drains (${took()})`)
        return
      }
      if (!alive(pid)) {
        throw new CliError(EXIT.failed, `process ${pid} ended without a successor taking over (PID file ${now === undefined ? 'removed' : `holds ${now}`})`)
      }
    } else if (!alive(pid)) {
      out(`graceful-reboot: ${pid} shut down (${took()})`)
      return
    }
    if (Date.now() >= deadline) {
      throw new CliError(EXIT.timeout, cmd.action === 'reboot'
        ? `timed out after ${cmd.timeout} ms: PID file ${cmd.pidFile} still names ${pid} (the reboot failed, or is slower than --timeout; see the app's log)`
        : `timed out after ${cmd.timeout} ms: process ${pid} is still running (still draining, or it ignores ${cmd.signal})`)
    }
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())))
  }
}

/** The CLI: returns the exit code. */
export async function main (argv: string[], out = (s: string) => { process.stdout.write(s + '\n') }, err = (s: string) => { process.stderr.write(s + '\n') }): Promise<number> {
  try {
    const cmd = parse(argv)
    if (cmd === 'help') {
      out(HELP)
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
