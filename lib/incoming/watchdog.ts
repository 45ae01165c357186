// Runs in the new process of a reboot: a successor that is not ready within `rebootTimeout` of its
// own start gives up by itself, so that a supervisor can act even when the old process (whose
// watchdog would have stopped it) is gone.
import type { ProcessSeam } from '../os'

/** Calls `late` once `ms` have passed unless `ready()` is true by then. Returns the cancel function. */
export function readyWatchdog (seam: Pick<ProcessSeam, 'timer'>, ms: number, ready: () => boolean, late: () => void): () => void {
  return seam.timer(ms, () => { if (!ready()) late() })
}
