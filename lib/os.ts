// Runs in both processes: the seam between the package and the operating system.
// Everything that touches the process (exit, signals, crash events, timers, clock: `ProcessSeam`;
// spawning a successor, the IPC channel, who started us, the parent processes the launcher detection
// reads, the controlling terminal: `RebootHost`) goes through here, so the state machine and the reboot can be unit tested
// with fakes and no forking.
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import cluster from 'node:cluster'
import * as fs from 'node:fs'
import * as net from 'node:net'

/** One ancestor process: its pid, its name (`/proc/<pid>/comm`, the process title) and its command line. */
export interface AncestorInfo {
  pid: number
  comm: string
  argv: readonly string[]
}

/** What the launcher detection (lib/launcher.ts) looks at: ancestor processes and the environment. */
export interface ProcessFacts {
  /** The parent process, then its parent for as long as `readPast` says to look further: nearest first. */
  ancestors: readonly AncestorInfo[]
  /** This process's environment (PM2's `pm_id` / `exec_mode`, npm's `npm_lifecycle_event`, systemd's `INVOCATION_ID`). */
  env: Readonly<Record<string, string | undefined>>
}

export type CrashKind = 'uncaughtException' | 'unhandledRejection'

export interface ProcessSeam {
  readonly pid: number
  readonly platform: NodeJS.Platform
  now (): number
  /**
   * Ends the process with `code` (the first call decides; later ones do nothing). The process may run
   * on for a moment (at most EXIT_GRACE_MS) while I/O already under way completes: see `realProcess`.
   */
  exit (code: number): void
  /**
   * Ends the process by `signal` (its listeners removed, the signal sent to this process), as a
   * launcher that restarts the app by that signal expects (nodemon); `exit(code)` if it survives.
   */
  exitBySignal?: (signal: NodeJS.Signals, code: number) => void
  /** Subscribes to an OS signal; returns the unsubscribe function. */
  onSignal (signal: NodeJS.Signals, fn: (signal: NodeJS.Signals) => void): () => void
  /** Subscribes to uncaught exceptions and unhandled rejections; returns the unsubscribe function. */
  onCrash (fn: (error: unknown, kind: CrashKind) => void): () => void
  /** An unref'd timer: it never keeps the process alive. Returns the cancel function. */
  timer (ms: number, fn: () => void): () => void
  /**
   * Keeps the process alive until the returned function is called (a drain whose finalizers wait
   * on nothing Node counts must still reach its deadline rather than exit 0 on an empty loop).
   */
  hold?: () => () => void
}

/** Ms at most that the process runs on after `exit()`, for I/O already under way. */
export const EXIT_GRACE_MS = 100

let exitCode: number | undefined

export const realProcess: ProcessSeam = {
  get pid () { return process.pid },
  platform: process.platform,
  now: () => Date.now(),
  exit: (code) => {
    if (exitCode !== undefined) return
    exitCode = code
    // Not process.exit() at once: a log line written asynchronously (pino's stream) may still be in
    // flight, with more queued behind it. If its reader has died (a log pipe whose reader exited), the
    // write fails with EPIPE; when that is reported first, pino stops writing, but when the process
    // exits before, pino's exit hook writes the queued lines synchronously, and sonic-boom retries a
    // failed synchronous write every 100 ms for ever: the process never ends. So the process ends the
    // way Node ends it when nothing is left to do (pino then flushes asynchronously), and by
    // process.exit() after EXIT_GRACE_MS when something else keeps it alive (an app's timer or pool).
    process.exitCode = code
    const t = setTimeout(() => { process.exit(code) }, EXIT_GRACE_MS)
    t.unref()
  },
  exitBySignal: (signal, code) => {
    process.removeAllListeners(signal)
    try {
      process.kill(process.pid, signal)
    } catch {}
    // Still here: the signal's default action does not end a process, or it was blocked.
    setImmediate(() => { process.exit(code) })
  },
  onSignal (signal, fn) {
    process.on(signal, fn)
    return () => { process.removeListener(signal, fn) }
  },
  onCrash (fn) {
    const onException = (error: unknown): void => { fn(error, 'uncaughtException') }
    const onRejection = (reason: unknown): void => { fn(reason, 'unhandledRejection') }
    process.on('uncaughtException', onException)
    process.on('unhandledRejection', onRejection)
    return () => {
      process.removeListener('uncaughtException', onException)
      process.removeListener('unhandledRejection', onRejection)
    }
  },
  timer (ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms))
    t.unref()
    return () => { clearTimeout(t) }
  },
  hold () {
    const t = setInterval(() => {}, 1 << 30)
    return () => { clearInterval(t) }
  }
}

export type Spawn = (command: string, args: readonly string[], options: SpawnOptions) => ChildProcess

/** What a reboot needs from the process, apart from the ProcessSeam (a seam of its own for tests). */
export interface RebootHost {
  spawn: Spawn
  execPath: string
  execArgv: readonly string[]
  argv: readonly string[]
  /** The working directory at start-up, so a chdir() later does not move the successor. */
  cwd: string
  env: NodeJS.ProcessEnv
  isClusterWorker: boolean
  /** The name of the init this process is the direct child of when that init exits with its child (tini, docker-init, dumb-init). */
  exitingInit: () => string | undefined
  /** This process's controlling terminal and its place in that terminal's session; undefined without one (or where it cannot be read). */
  terminalSession: () => TerminalSession | undefined
  /**
   * Reads what the launcher detection looks at (lib/launcher.ts): the parent process, and its parent
   * for as long as `readPast` says so, and the environment.
   */
  launcherFacts: (readPast: (a: AncestorInfo) => boolean) => ProcessFacts
  /** Sends a message to the old process over the IPC channel, if there is one; false when it cannot. Never throws. */
  send: (message: unknown) => boolean
  /** Sends a message with a handle (kept open here) to the old process; false when it cannot. Never throws. */
  sendHandle?: (message: unknown, handle: unknown) => boolean
  /** Calls `fn` once the IPC channel to the old process closes (it exited, died or let go). */
  onParentGone?: (fn: () => void) => void
  /** Subscribes to messages from the old process (with the handle sent along, if any); returns the unsubscribe function. */
  onParentMessage: (fn: (message: unknown, handle?: unknown) => void) => () => void
  /**
   * Reads the state pipe the old process passed at `fd`, calling `onChunk` with what arrives and
   * `onEnd` once it is closed (the old process's end closed, or an error); it never keeps this process
   * alive. False when it cannot be opened.
   */
  openStatePipe?: (fd: number, onChunk: (chunk: Buffer) => void, onEnd: () => void) => boolean
}

const startCwd = process.cwd()

export const realHost: RebootHost = {
  spawn,
  execPath: process.execPath,
  execArgv: process.execArgv,
  argv: process.argv.slice(1),
  cwd: startCwd,
  env: process.env,
  isClusterWorker: cluster.isWorker,
  exitingInit: () => {
    if (process.ppid !== 1) return undefined
    try {
      const comm = fs.readFileSync('/proc/1/comm', 'utf8').trim()
      return ['tini', 'docker-init', 'dumb-init'].includes(comm) ? comm : undefined
    } catch {
      return undefined
    }
  },
  terminalSession: () => {
    try {
      return parseTerminalSession(fs.readFileSync('/proc/self/stat', 'utf8'))
    } catch {
      return undefined
    }
  },
  launcherFacts: (readPast) => ({ ancestors: readAncestors(process.ppid, readPast), env: process.env }),
  send: (message) => {
    if (typeof process.send !== 'function' || !process.connected) return false
    try {
      // With a callback, a failed send (EPIPE: the old process died) is reported to it, not thrown
      // as an 'error' event on process, which would be an uncaught exception.
      return process.send(message, undefined, {}, () => {})
    } catch {
      return false
    }
  },
  sendHandle: (message, handle) => {
    if (typeof process.send !== 'function' || !process.connected) return false
    try {
      return process.send(message, handle as net.Server, { keepOpen: true }, () => {})
    } catch {
      return false
    }
  },
  onParentGone: (fn) => {
    if (typeof process.send === 'function') process.once('disconnect', fn)
  },
  onParentMessage: (fn) => {
    if (typeof process.send !== 'function') return () => {}
    process.on('message', fn)
    // Our listener must not keep the process alive once the app is done.
    process.channel?.unref()
    return () => { process.removeListener('message', fn) }
  },
  openStatePipe: (fd, onChunk, onEnd) => {
    try {
      const pipe = new net.Socket({ fd, readable: true, writable: false })
      pipe.unref()
      pipe.on('data', onChunk)
      pipe.on('error', () => { pipe.destroy() })
      pipe.once('close', onEnd)
      return true
    } catch {
      return false
    }
  }
}

/** A process's controlling terminal, and its process group and session (`/proc/<pid>/stat`). */
export interface TerminalSession {
  /** The terminal's name: `/dev/pts/3`, or `tty 4:1` (major:minor) for another kind. */
  tty: string
  pid: number
  /** This process's process group and session (the pid of their leaders). */
  pgrp: number
  session: number
  /** The terminal's foreground process group. */
  foreground: number
}

/**
 * The controlling terminal in a `/proc/<pid>/stat` line: fields 1 (pid), 5 (pgrp), 6 (session),
 * 7 (tty_nr) and 8 (tpgid), counted past the command name in parentheses (which may hold spaces and
 * parentheses). Undefined when the process has no controlling terminal (tty_nr 0) or the line is not one.
 */
export function parseTerminalSession (stat: string): TerminalSession | undefined {
  const close = stat.lastIndexOf(')')
  if (close < 0) return undefined
  const pid = Number.parseInt(stat, 10)
  // After ") ": state, ppid, pgrp, session, tty_nr, tpgid, ...
  const f = stat.slice(close + 2).split(' ').map(Number)
  const [pgrp, session, ttyNr, foreground] = [f[2], f[3], f[4], f[5]]
  if (pgrp === undefined || session === undefined || ttyNr === undefined || foreground === undefined) return undefined
  if (![pid, pgrp, session, ttyNr, foreground].every(Number.isInteger) || ttyNr === 0) return undefined
  const major = (ttyNr >> 8) & 0xfff
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00)
  // Unix98 pseudo-terminals: majors 136-143.
  const tty = major >= 136 && major <= 143 ? `/dev/pts/${(major - 136) * 256 + minor}` : `tty ${major}:${minor}`
  return { tty, pid, pgrp, session, foreground }
}

/** How many processes above the parent are read at most. */
const MAX_ABOVE = 5

/**
 * The parent process and, while `readPast` says so of the one read (the launcher detection: a shell
 * running a command string, a package manager), its parent: from /proc where there is one (Linux),
 * else from `ps`. Empty when neither can be read.
 */
export function readAncestors (ppid: number, readPast: (a: AncestorInfo) => boolean, read: (pid: number) => ProcessEntry | undefined = (pid) => readProc(pid) ?? readPs(pid)): AncestorInfo[] {
  const out: AncestorInfo[] = []
  let pid = ppid
  for (let i = 0; i <= MAX_ABOVE && pid > 0; i++) {
    const a = read(pid)
    if (a === undefined) break
    out.push(a.info)
    if (!readPast(a.info)) break
    pid = a.ppid
  }
  return out
}

/** One process as read for the launcher detection, with its parent's pid. */
export interface ProcessEntry { info: AncestorInfo, ppid: number }

/** A process from /proc (Linux): `cmdline` (the title a process set, npm's `npm run dev`, included), `comm`, `status`. */
export function readProc (pid: number): ProcessEntry | undefined {
  try {
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
    if (argv.at(-1) === '') argv.pop()
    const comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').replace(/\n$/, '')
    const ppid = Number(/^PPid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0)
    return { info: { pid, comm, argv }, ppid }
  } catch {
    return undefined
  }
}

/** A process from `ps` (no /proc: macOS, the BSDs); ps shows the command line as one string, split on spaces. */
export function readPs (pid: number): ProcessEntry | undefined {
  try {
    const out = execFileSync('ps', ['-o', 'ppid=', '-o', 'args=', '-p', String(pid)], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] })
    const m = /^\s*(\d+)\s+(.*)$/.exec(out.trim())
    if (m === null) return undefined
    const argv = (m[2] as string).split(/\s+/)
    return { info: { pid, comm: (argv[0] ?? '').split('/').pop() ?? '', argv }, ppid: Number(m[1]) }
  } catch {
    return undefined
  }
}
