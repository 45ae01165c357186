// Runs in both processes: how the process ends once its shutdown is over: by a launcher's restart
// signal (nodemon waits for the process to end by it), after a short linger in a cluster worker, or
// with the exit code on the next turn of the event loop.
import type { Logger } from '../log'
import type { ProcessSeam } from '../os'

/** How long a cluster worker stays up after its drain, to answer connections in transit from the primary. */
export const CLUSTER_EXIT_LINGER_MS = 300

/** What ending the process needs. */
export interface ExitPlan {
  readonly code: number
  /** The signal of a launcher's restart that reached the shutdown (nodemon's SIGUSR2), and the launcher's name. */
  readonly restartBy: { signal: NodeJS.Signals, launcher: string } | undefined
  readonly clusterWorker: boolean
  readonly seam: ProcessSeam
  readonly log: Logger
  /** Ends the process with a code (and whatever must go with it: rolled-back successors). */
  exit (code: number): void
  /** Called just before the process ends by a signal (which skips `exit`). */
  beforeSignal (): void
}

/** After a shutdown: logs its outcome and, when `exits`, ends the process as `plan` says. */
export function endProcess (plan: ExitPlan, result: { exits: boolean, ms: number, forced: number, failedFinalizers: string[] }): void {
  const { code, restartBy, seam, log } = plan
  const { ms, forced, failedFinalizers } = result
  if (!result.exits) {
    log.info({ code, ms, forced, failedFinalizers }, 'graceful-reboot: stopped')
    return
  }
  log.info({ code, ms, forced, failedFinalizers }, 'graceful-reboot: exiting')
  if (restartBy !== undefined && seam.exitBySignal !== undefined) {
    // The launcher restarts the app by this signal and waits for the process to end by it (nodemon).
    const { signal } = restartBy
    log.info({ signal }, `graceful-reboot: exiting by ${signal}, as ${restartBy.launcher} expects`)
    setImmediate(() => {
      plan.beforeSignal()
      seam.exitBySignal?.(signal, code)
    })
  } else if (plan.clusterWorker) {
    // The cluster primary (PM2's daemon too) may have handed us a connection just as our listener
    // closed; a worker still alive hands it back, one that has exited leaves it hanging there.
    const release = seam.hold?.() ?? (() => {})
    seam.timer(CLUSTER_EXIT_LINGER_MS, () => { release(); plan.exit(code) })
  } else {
    setImmediate(() => { plan.exit(code) })
  }
}
