// Runs in the old process of a reboot: answers the successor's requests for the state registered with
// `handover()`: takes the snapshot when asked (bounded by a deadline), serializes it (bounded in bytes)
// and sends it slice by slice, letting the event loop run between them; a request marked final is
// answered once this process's drain is over, when no request reaches it any more. A successor that
// reads the state pipe gets the slices there, as raw bytes; otherwise they go over the IPC channel
// in base64 parts. Nothing here writes to the app's state: a successor that fails leaves it as it was.
import type { ChildProcess } from 'node:child_process'
import { HandoverError } from '../errors'
import { STATE_MESSAGE, STATE_REQUEST_MESSAGE, messageType, type NewToOld, type OldToNew, type StateAnswer } from '../handoff/protocol'
import { frameHead } from '../handoff/state-frames'
import { partCount, slicesOf, statePart } from '../handoff/state'
import type { Logger } from '../log'

/** A snapshot function registered with `handover(name, snapshot)`: a value, or a promise of one. */
export type Snapshot = () => unknown

/** The registered snapshots and their bounds (the old process's options). */
export interface StateSource {
  snapshot (name: string): Snapshot | undefined
  readonly timeout: number
  readonly maxBytes: number
}

type Channel = Pick<ChildProcess, 'on' | 'send' | 'connected'>
type Request = Extract<NewToOld, { type: typeof STATE_REQUEST_MESSAGE }>
/** The old process's end of the state pipe (a child's stdio socket). */
export interface StatePipe {
  write: (data: Buffer, cb?: (err?: Error | null) => void) => boolean
  readonly destroyed: boolean
}

/** Lets the event loop run once (the requests waiting on it), even when the write before completed at once. */
const turn = (): Promise<void> => new Promise((resolve) => { setImmediate(resolve) })

export class StateServer {
  private readonly child: Channel
  private readonly source: () => StateSource
  private readonly timer: (ms: number, fn: () => void) => () => void
  private readonly log: Logger
  private readonly now: () => number
  private readonly finals: Request[] = []
  private readonly pipe: StatePipe | undefined

  constructor (child: Channel, source: () => StateSource, seam: { timer: (ms: number, fn: () => void) => () => void, now: () => number }, log: Logger, pipe?: StatePipe) {
    this.child = child
    this.pipe = pipe
    this.source = source
    this.timer = (ms, fn) => seam.timer(ms, fn)
    this.now = () => seam.now()
    this.log = log
    child.on('message', (m: unknown) => {
      if (messageType(m) !== STATE_REQUEST_MESSAGE) return
      const r = m as Request
      if (typeof r.id !== 'number' || typeof r.name !== 'string') return
      if (r.final) this.finals.push(r)
      else void this.answer(r)
    })
  }

  /** Answers the final requests (this process's drain is over); resolves once sent or given up. */
  async final (): Promise<void> {
    const held = this.finals.splice(0)
    for (const r of held) await this.answer(r)
  }

  private async answer (r: Request): Promise<void> {
    const { name, id } = r
    const piped = r.pipe === true && this.pipe !== undefined
    const send = (m: StateAnswer, data?: Buffer): Promise<boolean> => piped ? this.frame(m, data) : this.send(m)
    const source = this.source()
    const fn = source.snapshot(name)
    if (fn === undefined) {
      await send({ type: STATE_MESSAGE, id, none: true })
      return
    }
    const start = this.now()
    let value: unknown
    try {
      value = await this.take(name, fn, source.timeout)
    } catch (err) {
      await this.fail(id, name, err, send)
      return
    }
    const cut = slicesOf(value)
    let bytes = 0
    let serializedMs = 0
    let longestSliceMs = 0
    while (!cut.done) {
      const from = this.now()
      let slice: Buffer
      try {
        slice = cut.next(name, source.maxBytes, bytes)
      } catch (err) {
        await this.fail(id, name, err, send)
        return
      }
      serializedMs += this.now() - from
      longestSliceMs = Math.max(longestSliceMs, this.now() - from)
      bytes += slice.length
      const last = cut.done
      if (piped) {
        // One frame per slice, its bytes as they are; the next slice waits for this one's write and a
        // turn of the event loop.
        if (!await send({ type: STATE_MESSAGE, id, kind: cut.kind, data: '', end: true, last, bytes }, slice)) return
        if (!last) await turn()
        continue
      }
      // Each part waits for Node's write of the one before: the event loop serves requests in between.
      const parts = partCount(slice)
      for (let i = 0; i < parts; i++) {
        const end = i === parts - 1
        if (!await this.send({ type: STATE_MESSAGE, id, kind: cut.kind, data: statePart(slice, i), end, last: end && last, bytes })) return
      }
    }
    this.log.info({ handover: name, bytes, slices: cut.count, final: r.final, serializedMs, longestSliceMs, ms: this.now() - start }, `graceful-reboot: handed "${name}" over${r.final ? ' (final)' : ''}: ${bytes} bytes in ${this.now() - start} ms`)
  }

  /** Tells the successor why the snapshot under `name` cannot be handed over. */
  private async fail (id: number, name: string, err: unknown, send: (m: StateAnswer) => Promise<boolean>): Promise<void> {
    const e = err instanceof HandoverError
      ? err
      : new HandoverError('ERR_GRACEFUL_HANDOVER_FAILED', name, `handover "${name}": the snapshot threw: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    this.log.error({ err: e, handover: name }, `graceful-reboot: ${e.message}; the successor is told, this process's state is untouched`)
    await send({ type: STATE_MESSAGE, id, error: { code: e.code, message: e.message } })
  }

  /** Writes one answer on the state pipe, `data` raw after its head; resolves once written (false when the successor is gone). */
  private frame (m: StateAnswer, data?: Buffer): Promise<boolean> {
    const pipe = this.pipe
    if (pipe === undefined || pipe.destroyed) return Promise.resolve(false)
    const head: Record<string, unknown> = { ...m }
    delete head.data
    return new Promise<boolean>((resolve) => {
      try {
        const done = (err?: Error | null): void => { resolve(err == null) }
        if (data === undefined || data.length === 0) {
          pipe.write(frameHead(head, 0), done)
        } else {
          pipe.write(frameHead(head, data.length))
          pipe.write(data, done)
        }
      } catch {
        resolve(false)
      }
    })
  }

  /** Runs the snapshot with the deadline `ms`. */
  private async take (name: string, fn: Snapshot, ms: number): Promise<unknown> {
    let cancel = (): void => {}
    const late = new Promise<never>((_resolve, reject) => {
      cancel = this.timer(ms, () => {
        reject(new HandoverError('ERR_GRACEFUL_HANDOVER_TIMEOUT', name, `handover "${name}": the snapshot did not return within ${ms} ms (option "handoverTimeout")`))
      })
    })
    try {
      return await Promise.race([Promise.resolve().then(fn), late])
    } finally {
      cancel()
    }
  }

  /** Sends one message; resolves once Node wrote it (false when the successor is gone). */
  private send (m: OldToNew): Promise<boolean> {
    if (!this.child.connected) return Promise.resolve(false)
    return new Promise<boolean>((resolve) => {
      try {
        this.child.send(m, undefined, {}, (err) => { resolve(err == null) })
      } catch {
        resolve(false)
      }
    })
  }
}
