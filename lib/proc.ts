// Runs in the supervisor and in the graceful-reboot CLI: facts about another process of this machine,
// read from the kernel (/proc on Linux): whether it runs, and the environment it was started with.
import * as fs from 'node:fs'

/** Whether `pid` names a live process (a zombie waiting to be reaped counts as gone). */
export function isRunning (pid: number): boolean {
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

/** The environment `pid` was started with (NUL-separated `NAME=value`), or undefined where it cannot be read (not Linux, gone, another user's). */
export function startEnvironment (pid: number): string | undefined {
  if (process.platform !== 'linux') return undefined
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, 'latin1')
  } catch {
    return undefined
  }
}
