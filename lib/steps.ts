// Runs in both processes (and the supervisor and the CLI read it): the one vocabulary of a reboot's
// moments, used by the 'handoff' event, the onReboot hooks, the status file and stats().

/**
 * Every moment of a reboot, in the order they can come. `beforeSpawn` (a hook may veto), `refused`
 * (it did not start), `spawned`, `ready` (the successor serves; probation starts), `serving` (it
 * passed probation), `draining` (the old process's drain starts), `failed` (rolled back, or aborted by
 * a shutdown), `lost` (the successor died or froze after it took over), `drained` (the old process's
 * drain is over: the connections handed over and kept), `announced` (a process serves: a successor
 * told its old process, or a first start).
 */
export type RebootStep = 'beforeSpawn' | 'refused' | 'spawned' | 'ready' | 'serving' | 'draining' | 'failed' | 'lost' | 'drained' | 'announced'

/** The moments `onReboot(step, fn)` can follow. */
export type RebootHookStep = Extract<RebootStep, 'beforeSpawn' | 'ready' | 'serving' | 'draining' | 'failed' | 'drained'>

/** The moments a status file and `stats().lastReboot` record for the last reboot. */
export type RecordedStep = Extract<RebootStep, 'refused' | 'spawned' | 'ready' | 'serving' | 'failed' | 'lost'>

/** Hook names of earlier versions, and the moment each is now: accepted with a deprecation warning. */
export const RENAMED_HOOK_STEPS: Readonly<Record<string, RebootHookStep>> = { rolledBack: 'failed', handedOver: 'drained' }
