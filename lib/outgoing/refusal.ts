// Runs in the old process of a reboot: the rules that refuse a reboot before anything is spawned,
// each with the coded error that names the reason and the fix.
import { RebootError } from '../errors'
import type { LifecycleState } from '../events'
import type { Launcher } from '../launcher'
import type { ProcessSeam, RebootHost } from '../os'

/** What the rules look at. */
export interface RefusalFacts {
  state: LifecycleState
  /** A reboot promise is in flight. */
  rebooting: boolean
  seam: Pick<ProcessSeam, 'platform' | 'pid'>
  host: Pick<RebootHost, 'isClusterWorker' | 'exitingInit'>
  /** The launcher that runs this process (lib/launcher.ts); undefined when an app set `launcher: 'ignore'`. */
  launcher: () => Launcher | undefined
  /** Why an app cannot be handed over (e.g. Fastify bound to two addresses), if it says so. */
  blockers: () => Iterable<string | undefined>
}

type RefusalCode = 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' | 'ERR_GRACEFUL_SHUTTING_DOWN' | 'ERR_GRACEFUL_REBOOT_UNSUPPORTED'

/** Why a reboot cannot start now (the RebootError it would reject with), or undefined. */
export function rebootRefusal (f: RefusalFacts): RebootError | undefined {
  const no = (code: RefusalCode, why: string): RebootError => new RebootError(code, why)
  if (f.rebooting || f.state === 'rebooting') return no('ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'a reboot is already in progress; one at a time')
  if (f.state !== 'running') return no('ERR_GRACEFUL_SHUTTING_DOWN', `cannot reboot: the process is ${f.state}`)
  if (f.seam.platform === 'win32') return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'reboot needs socket inheritance, which Windows does not offer; use shutdown and a supervisor')
  if (f.host.isClusterWorker) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'cannot reboot a cluster worker: its listening sockets belong to the cluster primary')
  if (f.seam.pid === 1) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'cannot reboot as PID 1: its exit would end the container; run with an init (docker run --init, tini)')
  const init = f.host.exitingInit()
  if (init !== undefined) {
    return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', `cannot reboot as the direct child of ${init}: ${init} exits when this process exits, which ends the container and the successor; in a container, replace the container instead (rolling update)`)
  }
  const launcher = f.launcher()
  if (launcher?.rebootProblem !== undefined) {
    return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', `cannot reboot under ${launcher.name} (${launcher.evidence}): ${launcher.rebootProblem}; the option launcher: 'ignore' reboots anyway`)
  }
  for (const why of f.blockers()) {
    if (why !== undefined) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', why)
  }
  return undefined
}
