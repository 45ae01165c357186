// Runs in the new process of a reboot: asks the old process for the state it registered with
// `handover()` (`inherited(name)`, while this process boots) and for the final snapshot taken once the
// old process's drain is over (`onInherited(name, fn)`). The old process may be gone at any moment:
// a request then resolves undefined; a silent old process is a coded error, never a hang. The answers
// come on the state pipe when this process could open it (raw bytes in frames), else on the IPC channel.
import { HandoverError, InvalidOptionError, describe, type HandoverErrorCode } from '../errors'
import { STATE_MESSAGE, STATE_REQUEST_MESSAGE, messageType, type StateAnswer } from '../handoff/protocol'
import { addSlice, deserializeState } from '../handoff/state'
import { FrameReader } from '../handoff/state-frames'
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
  /**
   * Opens the state pipe the old process passed, calling `onChunk` with what arrives on it and `onEnd`
   * once, when it is closed; false when there is none or it cannot be opened (the answers come on the
   * IPC channel then).
   */
  openPipe? (onChunk: (chunk: Buffer) => void, onEnd: () => void): boolean
}

export class StateClient {
  private readonly ctx: StateClientContext
  private readonly pending = new Map<number, Pending>()
  private lastId = 0
  private listening = false
  private gone = false
  private piped = false
  /** The state pipe is open: what the old process wrote on it before it went may still be read. */
  private pipeOpen = false

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
      if (!this.ctx.host.send({ type: STATE_REQUEST_MESSAGE, id, name, final, pipe: this.piped })) this.settle(id, undefined)
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
    const orphan = (): void => { for (const id of [...this.pending.keys()]) this.settle(id, undefined) }
    this.ctx.host.onParentGone?.(() => {
      this.gone = true
      // The answers on the state pipe race the IPC channel's close: those left are settled at its end.
      if (!this.pipeOpen) orphan()
    })
    this.ctx.host.onParentMessage((m) => {
      if (messageType(m) !== STATE_MESSAGE) return
      this.receive(m as StateAnswer)
    })
    const reader = new FrameReader((head, data) => {
      if (messageType(head) !== STATE_MESSAGE) throw new TypeError(`a frame that is not an answer (${describe(head)})`)
      this.receive(head as StateAnswer, data)
    })
    this.piped = this.ctx.openPipe?.((chunk) => {
      try {
        reader.push(chunk)
      } catch (err) {
        // A stream that is not made of frames fails every request waiting on it.
        for (const [id, p] of [...this.pending]) this.settle(id, new HandoverError('ERR_GRACEFUL_HANDOVER_FAILED', p.name, `inherited("${p.name}"): the old process sent a malformed answer (${(err as Error).message})`, { cause: err }), true)
      }
    }, () => {
      // Requests from now on are answered on the IPC channel.
      this.pipeOpen = false
      this.piped = false
      if (this.gone) orphan()
    }) ?? false
    this.pipeOpen = this.piped
  }

  /** One answer, from the IPC channel (a part's `data` in base64) or the state pipe (a slice's bytes in `raw`). */
  private receive (a: StateAnswer, raw?: Buffer): void {
    const p = this.pending.get(a.id)
    if (p === undefined) return
    // A malformed answer fails its request (a coded error); it never throws in the IPC listener.
    try {
      if ('none' in a) return this.settle(a.id, undefined)
      if ('error' in a) return this.settle(a.id, new HandoverError(String(a.error.code) as HandoverErrorCode, p.name, String(a.error.message)), true)
      if (raw !== undefined) p.parts.push(raw)
      else if (typeof a.data !== 'string') throw new TypeError(`a part without data (${describe(a.data)})`)
      else p.parts.push(Buffer.from(a.data, 'base64'))
      if (a.end) {
        p.value = addSlice(a.kind, p.value, deserializeState(p.name, p.parts.splice(0)))
        p.slices++
      }
    } catch (err) {
      return this.settle(a.id, err instanceof HandoverError ? err : new HandoverError('ERR_GRACEFUL_HANDOVER_FAILED', p.name, `inherited("${p.name}"): the old process sent a malformed answer (${(err as Error).message})`, { cause: err }), true)
    }
    if (a.last) return this.settle(a.id, p.value)
    if (!p.final) this.wait(a.id, p, PART_STALL_MS)
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
