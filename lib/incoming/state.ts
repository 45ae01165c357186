// Runs in the new process of a reboot: asks the old process for the state it registered with
// `handover()` (`inherited(name)`, while this process boots) and for the final snapshot taken once the
// old process's drain is over (`onInherited(name, fn)`). The old process may be gone at any moment:
// a request then resolves undefined; a silent old process is a coded error, never a hang.
import { HandoverError, InvalidOptionError, describe, type HandoverErrorCode } from '../errors'
import { STATE_MESSAGE, STATE_REQUEST_MESSAGE, messageType, type StateAnswer } from '../handoff/protocol'
import { addSlice, deserializeState } from '../handoff/state'
import type { RebootHost } from '../os'

/** Ms added to `handoverTimeout` for the first answer (the old process's own deadline fires first). */
export const ANSWER_MARGIN_MS = 2_000
/** Ms without a part, once the first arrived, before the transfer counts as stalled. */
export const PART_STALL_MS = 5_000

interface Pending {
  name: string
  /** The parts of the slice arriving, and what the slices before it add up to. */
  parts: Buffer[]
  value: unknown
  slices: number
  final: boolean
  resolve: (value: unknown) => void
  reject: (err: unknown) => void
  cancel: () => void
  release: () => void
}

export interface StateClientContext {
  readonly host: Pick<RebootHost, 'send' | 'onParentMessage' | 'onParentGone'>
  /** Whether an old process that answers state requests started this one (GRACEFUL_REBOOT_STATE). */
  readonly enabled: boolean
  timer (ms: number, fn: () => void): () => void
  /** Keeps the process alive until the returned function is called (a boot awaiting its state has nothing else to wait on). */
  hold (): () => void
  /** This process's `handoverTimeout`. */
  timeout (): number
}

export class StateClient {
  private readonly ctx: StateClientContext
  private readonly pending = new Map<number, Pending>()
  private lastId = 0
  private listening = false
  private gone = false

  constructor (ctx: StateClientContext) {
    this.ctx = ctx
  }

  /**
   * The snapshot the old process registered under `name`, taken now; undefined on a fresh start, when
   * nothing is registered under it, or when the old process is gone. Rejects with a HandoverError when
   * the snapshot failed, was too large, or did not arrive in time.
   */
  inherited (name: string): Promise<unknown> {
    return this.request(name, false)
  }

  /**
   * Asks for the final snapshot under `name`, taken once the old process's drain is over; resolves
   * with it, or undefined when there is none (the old process is gone first, nothing registered).
   */
  final (name: string): Promise<unknown> {
    return this.request(name, true)
  }

  private request (name: string, final: boolean): Promise<unknown> {
    if (typeof name !== 'string' || name === '') {
      return Promise.reject(new InvalidOptionError(`${final ? 'onInherited' : 'inherited'}() needs a non-empty name, got ${describe(name)}`))
    }
    if (!this.ctx.enabled || this.gone) return Promise.resolve(undefined)
    this.listen()
    const id = ++this.lastId
    return new Promise<unknown>((resolve, reject) => {
      // A final request waits on the old process's drain, which it does not keep this process up for.
      const p: Pending = { name, parts: [], value: undefined, slices: 0, final, resolve, reject, cancel: () => {}, release: final ? () => {} : this.ctx.hold() }
      this.pending.set(id, p)
      if (!final) this.wait(id, p, this.ctx.timeout() + ANSWER_MARGIN_MS)
      if (!this.ctx.host.send({ type: STATE_REQUEST_MESSAGE, id, name, final })) this.settle(id, undefined)
    })
  }

  private wait (id: number, p: Pending, ms: number): void {
    p.cancel()
    p.cancel = this.ctx.timer(ms, () => {
      this.settle(id, new HandoverError('ERR_GRACEFUL_HANDOVER_TIMEOUT', p.name, `inherited("${p.name}"): the old process sent ${p.parts.length + p.slices === 0 ? 'no answer' : 'no more of it'} within ${ms} ms`), true)
    })
  }

  private listen (): void {
    if (this.listening) return
    this.listening = true
    this.ctx.host.onParentGone?.(() => {
      this.gone = true
      for (const id of [...this.pending.keys()]) this.settle(id, undefined)
    })
    this.ctx.host.onParentMessage((m) => {
      if (messageType(m) !== STATE_MESSAGE) return
      const a = m as StateAnswer
      const p = this.pending.get(a.id)
      if (p === undefined) return
      // A malformed answer fails its request (a coded error); it never throws in the IPC listener.
      try {
        if ('none' in a) return this.settle(a.id, undefined)
        if ('error' in a) return this.settle(a.id, new HandoverError(String(a.error.code) as HandoverErrorCode, p.name, String(a.error.message)), true)
        if (typeof a.data !== 'string') throw new TypeError(`a part without data (${describe(a.data)})`)
        p.parts.push(Buffer.from(a.data, 'base64'))
        if (a.end) {
          p.value = addSlice(a.kind, p.value, deserializeState(p.name, p.parts.splice(0)))
          p.slices++
        }
      } catch (err) {
        return this.settle(a.id, err instanceof HandoverError ? err : new HandoverError('ERR_GRACEFUL_HANDOVER_FAILED', p.name, `inherited("${p.name}"): the old process sent a malformed answer (${(err as Error).message})`, { cause: err }), true)
      }
      if (a.last) return this.settle(a.id, p.value)
      if (!p.final) this.wait(a.id, p, PART_STALL_MS)
    })
  }

  private settle (id: number, value: unknown, failed = false): void {
    const p = this.pending.get(id)
    if (p === undefined) return
    this.pending.delete(id)
    p.cancel()
    p.release()
    if (failed) p.reject(value)
    else p.resolve(value)
  }
}
