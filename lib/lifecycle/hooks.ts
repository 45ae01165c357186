// Runs in both processes: the app's hooks around the steps of a reboot (`onReboot(step, fn)`), called in
// the old process and in the successor. A hook that throws or rejects is logged with its name and
// never stops the reboot, except 'beforeSpawn', whose hooks may veto it: the reboot is then refused.
import { InvalidOptionError, describe } from '../errors'
import { MAX_MS } from '../limits'
import type { Logger } from '../log'
import { RENAMED_HOOK_STEPS, type RebootHookStep } from '../steps'

export const REBOOT_HOOK_STEPS: readonly RebootHookStep[] = ['beforeSpawn', 'ready', 'serving', 'draining', 'failed', 'drained']

/** A step name of an earlier version (`rolledBack`, `handedOver`): still accepted, with a deprecation warning. */
export type DeprecatedHookStep = 'rolledBack' | 'handedOver'

/**
 * What a hook receives. In the old process (`role: 'old'`): 'beforeSpawn' (no successor yet), 'ready'
 * (the successor serves; probation starts), 'serving' (probation passed), 'failed' (rolled back, with
 * `error`), 'draining' (this process's drain started), 'drained' (the drain is over: `transferred`
 * connections moved, `kept` drained here). In the successor (`role: 'new'`): 'ready' (it told the old
 * process it serves), 'serving', 'failed' (the old process rolled it back), 'drained'. The step names
 * are those of the 'handoff' event (lib/steps.ts).
 */
export interface RebootHookContext {
  step: RebootHookStep
  role: 'old' | 'new'
  /** This process. */
  pid: number
  /** The successor's pid, in the old process (from 'ready' on). */
  successor?: number | undefined
  /** The old process's pid, in the successor. */
  parent?: number | undefined
  /** What started the reboot ('SIGUSR2', 'admin', 'code', 'cli'), in the old process. */
  trigger?: string | undefined
  /** Ms since the successor was spawned ('ready', 'serving'), in the old process. */
  ms?: number | undefined
  /** Why it was rolled back ('failed'). */
  error?: unknown | undefined
  /** Connections handed to the successor, and kept and drained by the old process ('drained'). */
  transferred?: number | undefined
  kept?: number | undefined
}

/** A reboot hook. For 'beforeSpawn', a returned non-empty string (or a throw) vetoes the reboot and is its reason. */
export type RebootHook = (context: RebootHookContext) => unknown

export interface RebootHookOptions {
  /** Names the hook in logs and in a veto's error. Default: the function's name, else `<step>#n`. */
  name?: string
  /** 'beforeSpawn' only: ms the hook may take; past it the reboot is refused. Default 5000. */
  timeout?: number
}

/** Default ms a 'beforeSpawn' hook may take. */
export const VETO_TIMEOUT_MS = 5_000

interface Entry { step: RebootHookStep, name: string, fn: RebootHook, timeout: number }

/** What a beforeSpawn hook's race resolves with when its timeout passes: no value a hook returns is it. */
const LATE: unique symbol = Symbol('late')

export class RebootHooks {
  private readonly entries: Entry[] = []
  private count = 0

  /** Adds a hook; validates at once (InvalidOptionError naming the bad value). */
  add (asked: RebootHookStep | DeprecatedHookStep, fn: RebootHook, options: RebootHookOptions = {}): void {
    const renamed = typeof asked === 'string' ? RENAMED_HOOK_STEPS[asked] : undefined
    const step = renamed ?? asked as RebootHookStep
    if (!REBOOT_HOOK_STEPS.includes(step)) {
      throw new InvalidOptionError(`onReboot() step must be one of ${REBOOT_HOOK_STEPS.map((s) => `'${s}'`).join(', ')}, got ${describe(asked)}`)
    }
    if (renamed !== undefined) {
      process.emitWarning(`onReboot('${String(asked)}') is now onReboot('${renamed}'): the steps of a reboot have one name each, as the 'handoff' event names them`, { type: 'DeprecationWarning', code: 'GRACEFUL_REBOOT_HOOK_STEP' })
    }
    if (typeof fn !== 'function') throw new InvalidOptionError(`onReboot('${step}') needs a function, got ${describe(fn)}`)
    if (options === null || typeof options !== 'object') throw new InvalidOptionError(`onReboot() options must be an object, got ${describe(options)}`)
    this.count++
    const name = options.name ?? (fn.name !== '' ? fn.name : `${step}#${this.count}`)
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError(`onReboot() option "name" must be a non-empty string, got ${describe(name)}`)
    const timeout = options.timeout ?? VETO_TIMEOUT_MS
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0 || timeout > MAX_MS) {
      throw new InvalidOptionError(`onReboot() option "timeout" must be a positive number of ms, at most ${MAX_MS}, got ${describe(timeout)}`)
    }
    this.entries.push({ step, name, fn, timeout })
  }

  /** Whether a hook follows `step`. */
  has (step: RebootHookStep): boolean { return this.entries.some((e) => e.step === step) }

  /** Runs the 'beforeSpawn' hooks one after the other: the first veto's reason (naming the hook), or undefined. */
  async veto (context: RebootHookContext, timer: (ms: number, fn: () => void) => () => void, log: Logger): Promise<string | undefined> {
    for (const e of this.entries.filter((h) => h.step === 'beforeSpawn')) {
      let cancel = (): void => {}
      const late = new Promise<typeof LATE>((resolve) => { cancel = timer(e.timeout, () => { resolve(LATE) }) })
      try {
        const out = await Promise.race([Promise.resolve().then(() => e.fn({ ...context })), late])
        if (out === LATE) return `the beforeSpawn hook "${e.name}" did not return within ${e.timeout} ms`
        if (typeof out === 'string' && out !== '') return `the beforeSpawn hook "${e.name}" vetoed it: ${out}`
      } catch (err) {
        log.error({ err, hook: e.name }, `graceful-reboot: the beforeSpawn hook "${e.name}" threw; the reboot is refused`)
        return `the beforeSpawn hook "${e.name}" threw: ${(err as Error)?.message ?? String(err)}`
      } finally {
        cancel()
      }
    }
    return undefined
  }

  /** Calls every hook of `context.step`; a throw or a rejection is logged with the hook's name. */
  run (context: RebootHookContext, log: Logger): void {
    for (const e of this.entries) {
      if (e.step !== context.step || e.step === 'beforeSpawn') continue
      const failed = (err: unknown): void => {
        log.error({ err, hook: e.name, step: e.step }, `graceful-reboot: the ${e.step} hook "${e.name}" failed: ${(err as Error)?.message ?? String(err)}; the reboot goes on`)
      }
      try {
        const out = e.fn({ ...context })
        if (out instanceof Promise) out.catch(failed)
      } catch (err) {
        failed(err)
      }
    }
  }
}
