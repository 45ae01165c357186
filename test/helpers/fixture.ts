// Runs in the test process: starts fixture apps (test/fixtures/*) as real child processes, reads
// their JSON lines, waits on events (never on fixed sleeps) and kills every pid it learnt of.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import type { ExecutionContext } from 'ava'

export type FixtureEvent = Record<string, unknown> & { event?: string }

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

export interface Fixture {
  readonly child: ChildProcess
  readonly pid: number
  /** Every JSON line printed on stdout so far (pino log lines included). */
  readonly lines: FixtureEvent[]
  /** Everything printed on stderr so far. */
  readonly stderr: () => string
  /** Resolves with the first line (past or future) matching `match`; rejects after `timeoutMs` or at exit. */
  waitFor: (match: string | ((e: FixtureEvent) => boolean), timeoutMs?: number) => Promise<FixtureEvent>
  /** Resolves when the process exits. */
  readonly exited: Promise<Exit>
  /** Resolves when every process holding the fixture's stdout/stderr (successors too) is gone. */
  readonly closed: Promise<void>
  /** Adds a pid (a successor) to kill in teardown. */
  track: (pid: number) => void
}

const FIXTURES = path.join(__dirname, '..', 'fixtures')

/**
 * Starts `dist/test/fixtures/<name>.js`; every pid it or `track` names is killed in teardown. `via`
 * starts it another way (under a launcher: nodemon, npm run): the command and arguments to run, given
 * the fixture's file; `pid` is then the launcher's. `stdin: 'pipe'`: the test writes to `child.stdin`.
 */
export function startFixture (t: ExecutionContext, name: string, options: { env?: Record<string, string>, args?: string[], cwd?: string, listenFds?: number[], via?: (file: string) => [string, string[]], stdin?: 'pipe' } = {}): Fixture {
  const file = path.join(FIXTURES, name.endsWith('.js') ? name : `${name}.js`)
  const fds = options.listenFds ?? []
  // With listenFds, start it the way systemd socket activation does: the fds at 3.. and LISTEN_PID
  // equal to the pid of the node process (the shell's pid, which exec keeps).
  const [command, args] = options.via !== undefined
    ? options.via(file)
    : fds.length === 0
      ? [process.execPath, [file, ...(options.args ?? [])]]
      : ['/bin/sh', ['-c', 'export LISTEN_PID=$$; exec "$0" "$@"', process.execPath, file, ...(options.args ?? [])]]
  const child = spawn(command, args, {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, ...(fds.length === 0 ? {} : { LISTEN_FDS: String(fds.length) }), ...options.env },
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe', ...fds]
  })
  if (child.pid === undefined) throw new Error(`could not start fixture ${name}`)
  const pids = new Set<number>([child.pid])
  const lines: FixtureEvent[] = []
  const waiters = new Set<{ match: (e: FixtureEvent) => boolean, resolve: (e: FixtureEvent) => void }>()
  let err = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { err += chunk })
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let e: FixtureEvent
    try {
      const parsed: unknown = JSON.parse(line)
      if (parsed === null || typeof parsed !== 'object') return
      e = parsed as FixtureEvent
    } catch {
      return
    }
    lines.push(e)
    for (const w of [...waiters]) {
      if (w.match(e)) {
        waiters.delete(w)
        w.resolve(e)
      }
    }
  })
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
  const closed = new Promise<void>((resolve) => { child.once('close', () => { resolve() }) })
  t.teardown(() => {
    for (const pid of pids) {
      try { process.kill(pid, 'SIGKILL') } catch {}
    }
  })
  const waitFor = (match: string | ((e: FixtureEvent) => boolean), timeoutMs = 20_000): Promise<FixtureEvent> => {
    const m = typeof match === 'string' ? (e: FixtureEvent) => e.event === match : match
    const seen = lines.find(m)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const w = { match: m, resolve: (e: FixtureEvent) => { clearTimeout(timer); resolve(e) } }
      waiters.add(w)
      const timer = setTimeout(() => {
        waiters.delete(w)
        reject(new Error(`fixture ${name}: no ${String(match)} within ${timeoutMs} ms; stderr:\n${err}`))
      }, timeoutMs)
      // Once every process holding the fixture's output is gone, no line can come any more.
      void closed.then(() => {
        if (!waiters.has(w)) return
        waiters.delete(w)
        clearTimeout(timer)
        reject(new Error(`fixture ${name} and its successors exited before ${String(match)}; stderr:\n${err}`))
      })
    })
  }
  return { child, pid: child.pid, lines, stderr: () => err, waitFor, exited, closed, track: (pid) => { pids.add(pid) } }
}

/** Prints one JSON line: how fixtures report events to the test. */
export function emit (event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, pid: process.pid, ...fields }) + '\n')
}

/** Whether `pid` runs (a zombie waiting for a reaper does not). */
export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    if (/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))) return false
    // A process that is exiting has closed its files (the fixture's stdout among them, which is what
    // `closed` waits for) a moment before the kernel makes it a zombie: it holds no fd any more.
    return fs.readdirSync(`/proc/${pid}/fd`).length > 0
  } catch {
    return false
  }
}
