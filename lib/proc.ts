// Runs in both processes, the supervisor and the graceful-reboot CLI: facts about another process of
// this machine, read from the kernel (/proc on Linux): whether it runs, when it started, its user and
// program, and the environment it was started with.
import * as fs from 'node:fs'

/** What /proc says of a process (Linux); undefined elsewhere or when it cannot be read. */
export interface ProcessFacts {
  /** Its effective uid. */
  uid: number | undefined
  /** The file it runs (/proc/<pid>/exe; unreadable for another user's process unless root). */
  exe: string | undefined
  /** Its argv[0]. */
  argv0: string | undefined
  /** When it started, in clock ticks after boot. */
  startTicks: number | undefined
}

/** Whether `pid` names a live process (a zombie waiting to be reaped counts as gone). */
export function alive (pid: number): boolean {
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

/** When process `pid` started, in clock ticks after boot (Linux); undefined elsewhere. */
export function startTicks (pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // After "pid (comm) ": the state is field 3, the start time field 22.
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19])
    return Number.isSafeInteger(ticks) ? ticks : undefined
  } catch {
    return undefined
  }
}

/** What /proc says of process `pid`; undefined without /proc (not Linux) or when it is gone. */
export function processFacts (pid: number): ProcessFacts | undefined {
  let status: string
  try {
    status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const uids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status)
  let exe: string | undefined
  try { exe = fs.readlinkSync(`/proc/${pid}/exe`) } catch {}
  let argv0: string | undefined
  try { argv0 = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] } catch {}
  return { uid: uids === null ? undefined : Number(uids[2]), exe, argv0, startTicks: startTicks(pid) }
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
