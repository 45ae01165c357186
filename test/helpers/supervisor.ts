// Runs in the test process: `graceful-reboot run` for real over a worker fixture: starts the
// supervisor (every worker a line names is killed in teardown), waits on what it says on stderr and on
// the workers' lines, and rolls its workers with SIGUSR2.
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import { startFixture, type Fixture, type FixtureEvent } from './fixture'

export const CLI = path.join(__dirname, '..', '..', 'bin', 'graceful-reboot.js')

export interface Listening extends FixtureEvent { pid: number, slot: string, parent: number | null, port: number, path?: string }

/** Starts the supervisor over the worker fixture; kills, in teardown, every worker a line named. */
export function supervise (t: ExecutionContext, env: Record<string, string> = {}, args: string[] = ['--workers', '2'], fixture = 'worker-app'): Fixture {
  const f = startFixture(t, fixture, { env, via: (file) => [process.execPath, [CLI, 'run', ...args, file]] })
  t.teardown(() => {
    for (const l of f.lines) if (typeof l.pid === 'number') { try { process.kill(l.pid, 'SIGKILL') } catch {} }
  })
  return f
}

/** Resolves once the supervisor's stderr, past `from` characters, matches `re`. */
export function says (f: Fixture, re: RegExp, from = 0, timeoutMs = 30_000): Promise<string> {
  const found = (): string | undefined => re.exec(f.stderr().slice(from))?.[0]
  const now = found()
  if (now !== undefined) return Promise.resolve(now)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`the supervisor did not say ${String(re)} within ${timeoutMs} ms; stderr:\n${f.stderr()}`)) }, timeoutMs)
    const check = (): void => {
      const m = found()
      if (m === undefined) return
      cleanup()
      resolve(m)
    }
    const cleanup = (): void => { clearTimeout(timer); f.child.stderr?.off('data', check) }
    // The fixture's own listener has appended the chunk by the time this one runs (registered after it).
    f.child.stderr?.on('data', check)
  })
}

/** The `n` workers serving at first. */
export async function firstWorkers (f: Fixture, n = 2): Promise<Listening[]> {
  const workers: Listening[] = []
  for (let slot = 1; slot <= n; slot++) workers.push(await f.waitFor((e) => e.event === 'listening' && e.slot === String(slot)) as Listening)
  await says(f, new RegExp(`${n} workers serving`))
  return workers
}

/** SIGUSR2 to the supervisor; resolves with the replacements once every old worker's drain is over. */
export async function rollout (f: Fixture, current: Listening[]): Promise<Listening[]> {
  const from = f.stderr().length
  process.kill(f.pid, 'SIGUSR2')
  const next: Listening[] = []
  for (const w of current) {
    next.push(await f.waitFor((e) => e.event === 'listening' && e.parent === w.pid) as Listening)
    await f.waitFor((e) => e.event === 'exiting' && e.pid === w.pid)
  }
  await says(f, /every worker replaced/, from)
  return next
}
