// Runs in the old process of a reboot: the late rollback. The successor was lost after it took over
// (it exited, its IPC channel closed, or it froze and was killed): if the drain under way is the
// reboot's alone, it is called off and this process's servers listen again on the copies of the
// listening sockets the successor sent back; the lifecycle then serves again, for good.
import type { GracefulUnit } from '../drain/app'
import type { ListenerRegistry } from '../handoff/listeners'

/** The copies of the listening sockets the standby kept (outgoing/standby.ts). */
export interface KeptCopies {
  readonly keys: string[]
  take: () => Map<string, unknown>
}

/** What the lifecycle knows when the successor is lost. */
export interface TakeBackFacts {
  readonly units: readonly GracefulUnit[]
  readonly listening: ListenerRegistry
  /** Something other than the reboot wants the drain under way to end the process (a signal, a crash, another reason). */
  readonly ending: boolean
}

/** Tells the drains of the lifecycle apart: a drain run that was called off ends without a trace. */
export class LateRollback {
  private calledOff = 0
  private endAsked = false

  /** A drain starts: its token, for `isOff`. */
  started (): number {
    this.endAsked = false
    return this.calledOff
  }

  /** `shutdown()` was called during the drain under way: it ends the process, whatever happens to the successor. */
  joined (): void { this.endAsked = true }

  /** Whether the drain started with `token` was called off. */
  isOff (token: number): boolean { return token !== this.calledOff }

  /**
   * Calls the drain under way off and listens again, if it is the reboot's alone (nothing else wants
   * it to end the process, no app's close began) and a copy of every listener passed to the successor
   * (`passed`) came back. Returns the keys it listens on, or undefined when it cannot (nothing changed).
   */
  takeBack (facts: TakeBackFacts, copies: KeptCopies, passed: readonly string[]): string[] | undefined {
    const { units, listening } = facts
    if (facts.ending || this.endAsked) return undefined
    // An app whose drain has not started (the readiness delay) has nothing to call off.
    if (units.length === 0 || !units.every((u) => u.canCallOff || !u.isDraining)) return undefined
    const kept = new Set(copies.keys)
    if (passed.length === 0 || !passed.every((key) => kept.has(key) && listening.lastServerFor(key) !== undefined)) return undefined
    this.calledOff++
    for (const u of units) u.callOff()
    const keys: string[] = []
    for (const [key, handle] of copies.take()) {
      // A server whose drain had not closed it yet listens on: its copy is not needed.
      const still = listening.lastServerFor(key)?.listening === true
      const back = still || listening.relisten(key, handle)
      if (back) keys.push(key)
      if (still || !back) closeQuietly(handle)
    }
    return keys
  }
}

function closeQuietly (handle: unknown): void {
  try { (handle as { close?: () => void }).close?.() } catch {}
}
