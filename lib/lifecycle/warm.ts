// Runs in both processes: what lets a successor start warm: the state this process hands to a successor
// (`handover()`), the state it inherited from the old process that started it (`inherited()`,
// `onInherited()`), and the app's hooks around the steps of a reboot, fed from the lifecycle's events
// (old process) and from the old process's messages (successor).
import type { EventEmitter } from 'node:events'
import { HandoverError, InvalidOptionError, describe } from '../errors'
import { handedOver, type LifecycleEvents, type LifecycleState } from '../events'
import { ABORT_MESSAGE, CUTOVER_MESSAGE, DRAINED_MESSAGE, messageType, type OldToNew } from '../handoff/protocol'
import type { Inherited } from '../incoming/inherited'
import { StateClient } from '../incoming/state'
import type { Logger } from '../log'
import { DEFAULTS } from '../options'
import type { ProcessSeam, RebootHost } from '../os'
import type { Snapshot, StateSource } from '../outgoing/state'
import { RebootHooks, type RebootHookContext } from './hooks'

export interface WarmContext {
  readonly seam: Pick<ProcessSeam, 'pid' | 'timer' | 'hold'>
  readonly host: Pick<RebootHost, 'send' | 'onParentMessage' | 'onParentGone' | 'openStatePipe'>
  inherited (): Inherited
  log (): Logger
  /** The options of the first registered app (the bounds of a snapshot), if any. */
  options (): { handoverTimeout: number, handoverMaxBytes: number } | undefined
  /** Whether `owner` (an app) is still registered: a name it registered may be taken again once it is not. */
  registered (owner: object): boolean
  /** Whether this process is the old side of a reboot (for the 'draining' hook). */
  handingOver (): boolean
}

export class WarmStart {
  readonly hooks = new RebootHooks()
  private readonly ctx: WarmContext
  private readonly snapshots = new Map<string, { fn: Snapshot, owner: object }>()
  private client: StateClient | undefined
  private watching = false

  constructor (ctx: WarmContext, events: Pick<EventEmitter<LifecycleEvents>, 'on'>) {
    this.ctx = ctx
    const pid = ctx.seam.pid
    let successor: number | undefined
    let trigger: string | undefined
    events.on('handoff', (e) => {
      if (e.step === 'spawned') {
        successor = e.pid
        trigger = e.trigger
      } else if (e.step === 'ready' || e.step === 'serving') {
        this.run({ step: e.step, role: 'old', pid, successor, trigger, ms: e.ms })
      } else if (e.step === 'failed') {
        this.run({ step: 'failed', role: 'old', pid, successor, trigger, error: e.error })
      } else if (e.step === 'drained') {
        this.run({ step: 'drained', role: 'old', pid, successor, trigger, ...handedOver(e.result) })
      } else if (e.step === 'announced' && e.parentPid !== undefined) {
        this.run({ step: 'ready', role: 'new', pid, parent: e.parentPid })
      }
    })
    events.on('state', (next: LifecycleState) => {
      if (next === 'draining' && ctx.handingOver()) this.run({ step: 'draining', role: 'old', pid, successor, trigger })
    })
  }

  /** Registers the snapshot a successor of this process gets under `name` (see `handover()` in index.ts). */
  handover (name: string, fn: Snapshot, owner: object): void {
    if (typeof name !== 'string' || name === '') throw new InvalidOptionError(`handover() needs a non-empty name, got ${describe(name)}`)
    if (typeof fn !== 'function') throw new InvalidOptionError(`handover("${name}") needs a snapshot function, got ${describe(fn)}`)
    const taken = this.snapshots.get(name)
    if (taken !== undefined && taken.owner !== owner && this.ctx.registered(taken.owner)) {
      throw new HandoverError('ERR_GRACEFUL_HANDOVER_DUPLICATE', name, `handover("${name}") is already registered by another app in this process; names are process-wide`)
    }
    this.snapshots.set(name, { fn, owner })
  }

  /** What the old side of a reboot hands over (the bounds read now, at the spawn). */
  source (): StateSource {
    const o = this.ctx.options()
    const snapshots = this.snapshots
    return {
      snapshot: (name) => snapshots.get(name)?.fn,
      timeout: o?.handoverTimeout ?? DEFAULTS.handoverTimeout,
      maxBytes: o?.handoverMaxBytes ?? DEFAULTS.handoverMaxBytes
    }
  }

  /** See `inherited()` in index.ts. */
  inherited (name: string): Promise<unknown> {
    return this.state().inherited(name)
  }

  /** See `onInherited()` in index.ts. */
  onInherited (name: string, fn: (value: unknown) => unknown): void {
    if (typeof fn !== 'function') throw new InvalidOptionError(`onInherited("${String(name)}") needs a function, got ${describe(fn)}`)
    this.state().final(name).then((value) => {
      if (value === undefined) return
      try {
        const out = fn(value)
        if (out instanceof Promise) out.catch((err: unknown) => { this.ctx.log().error({ err, handover: name }, `graceful-reboot: the onInherited("${name}") function failed`) })
      } catch (err) {
        this.ctx.log().error({ err, handover: name }, `graceful-reboot: the onInherited("${name}") function failed`)
      }
    }, (err: unknown) => {
      this.ctx.log().error({ err, handover: name }, `graceful-reboot: the final state "${name}" did not arrive: ${(err as Error).message}`)
    })
  }

  /** In a successor: follows the old process's messages for the hooks (once, at the first registration). */
  watchParent (): void {
    const parent = this.ctx.inherited().parentPid
    if (this.watching || parent === undefined) return
    this.watching = true
    const pid = this.ctx.seam.pid
    this.ctx.host.onParentMessage((m) => {
      const type = messageType(m)
      if (type === CUTOVER_MESSAGE) this.run({ step: 'serving', role: 'new', pid, parent })
      else if (type === ABORT_MESSAGE) this.run({ step: 'failed', role: 'new', pid, parent, error: new Error('the old process rolled this reboot back') })
      else if (type === DRAINED_MESSAGE) {
        const d = m as Extract<OldToNew, { type: typeof DRAINED_MESSAGE }>
        this.run({ step: 'drained', role: 'new', pid, parent, transferred: d.transferred, kept: d.kept })
      }
    })
  }

  /** The 'beforeSpawn' hooks' veto (a reason, or undefined); undefined at once without such hooks. */
  veto (trigger: string): Promise<string | undefined> | undefined {
    if (!this.hooks.has('beforeSpawn')) return undefined
    return this.hooks.veto({ step: 'beforeSpawn', role: 'old', pid: this.ctx.seam.pid, trigger }, (ms, fn) => this.ctx.seam.timer(ms, fn), this.ctx.log())
  }

  private run (context: RebootHookContext): void {
    this.hooks.run(context, this.ctx.log())
  }

  private state (): StateClient {
    const ctx = this.ctx
    this.client ??= new StateClient({
      host: ctx.host,
      enabled: ctx.inherited().handsState,
      timer: (ms, fn) => ctx.seam.timer(ms, fn),
      hold: () => ctx.seam.hold?.() ?? (() => {}),
      timeout: () => ctx.options()?.handoverTimeout ?? DEFAULTS.handoverTimeout,
      openPipe: (onChunk, onEnd) => {
        const fd = ctx.inherited().stateFd
        return fd !== undefined && ctx.host.openStatePipe !== undefined && ctx.host.openStatePipe(fd, onChunk, onEnd)
      }
    })
    return this.client
  }
}
