// Runs in both processes: how a handed-over state travels: serialized with v8.serialize (structured
// clone: Map, Set, Date, Buffer, typed arrays, nested objects), bounded in bytes, cut into parts small
// enough that the IPC channel's other messages (pings, connections) are not held up, and read back. A
// top-level Map, Set or array is serialized in slices of about SLICE_BYTES, its items read as each
// slice is made (never listed all at once), the old process's event loop running between slices, so
// that a big cache does not stall it for the whole serialization.
import * as v8 from 'node:v8'
import { HandoverError } from '../errors'

/** Bytes of serialized state per IPC message (sent as base64 inside Node's JSON channel), when the successor reads no state pipe. */
export const STATE_PART_BYTES = 1024 * 1024

/**
 * Serialized bytes a slice aims at: 256 KiB of small records takes v8.serialize a few ms (17 ms at
 * most over the 660 slices of a 1.5 M record Map, on 2 cores shared with other work, where slices of
 * 1 MiB took up to 72 ms), so the old process's event loop is never held long by one slice.
 */
export const SLICE_BYTES = 256 * 1024

/** Items in the first slice of a Map, Set or array: the bytes they take size the next one. */
export const FIRST_SLICE_ITEMS = 16

/** A slice has at most this many times the items of the one before it (items may grow). */
const SLICE_GROWTH = 4

/** Items in a slice at most, however small they are. */
export const SLICE_ITEMS = 100_000

/** How a value travels: whole, or as the items of a top-level Map, Set or array, in slices. */
export type SliceKind = 'whole' | 'map' | 'set' | 'array'

/**
 * The slices of a value, serialized one at a time (`next`), each sized from the bytes per item of
 * the slice before it, so that each is about SLICE_BYTES (at least one item, at most SLICE_ITEMS, and
 * at most SLICE_GROWTH times the items of the one before: a few small items first do not make a
 * huge slice of the large ones behind them).
 */
export interface Slices {
  readonly kind: SliceKind
  /** Slices serialized so far. */
  readonly count: number
  /** No slice is left. */
  readonly done: boolean
  /**
   * The next slice serialized (an array of items, or the whole value), `soFar` bytes sent already: a
   * HandoverError as serializeState's when it cannot travel. Call it only while `done` is false.
   */
  next (name: string, maxBytes: number, soFar: number): Buffer
}

/**
 * The slices of `value`: a top-level Map, Set or plain array travels as its items, read in order as
 * each slice is made (an item added while it travels arrives if its place is not passed yet, one
 * deleted before its slice does not); any other value travels whole.
 */
export function slicesOf (value: unknown): Slices {
  const kind: SliceKind = value instanceof Map ? 'map' : value instanceof Set ? 'set' : Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype ? 'array' : 'whole'
  if (kind === 'whole') return new WholeValue(value)
  const arr = value as unknown[]
  let index = 0
  const take = kind === 'array'
    ? (n: number): unknown[] => {
        const items = arr.slice(index, index + n)
        index += items.length
        return items
      }
    : iteratorTake((value as Map<unknown, unknown> | Set<unknown>)[kind === 'map' ? 'entries' : 'values']())
  const more = kind === 'array' ? () => index < arr.length : undefined
  return new ItemSlices(kind, value, take, more)
}

class WholeValue implements Slices {
  readonly kind = 'whole'
  count = 0
  private readonly value: unknown
  constructor (value: unknown) { this.value = value }
  get done (): boolean { return this.count > 0 }
  next (name: string, maxBytes: number, soFar: number): Buffer {
    this.count++
    return serializeState(name, this.value, maxBytes, soFar)
  }
}

/** Items taken `n` at a time; `ended` once none is left. */
type Take = ((n: number) => unknown[]) & { ended: boolean }

/** Takes up to `n` items of an iterator at a time (one item read ahead, to know when it is exhausted). */
function iteratorTake (it: Iterator<unknown>): Take {
  let ahead = it.next()
  const take: Take = Object.assign((n: number): unknown[] => {
    const items: unknown[] = []
    while (items.length < n && ahead.done !== true) {
      items.push(ahead.value)
      ahead = it.next()
    }
    take.ended = ahead.done === true
    return items
  }, { ended: ahead.done === true })
  return take
}

class ItemSlices implements Slices {
  readonly kind: SliceKind
  count = 0
  private readonly whole: unknown
  private readonly take: Take | ((n: number) => unknown[])
  private readonly more: (() => boolean) | undefined
  /** Items and bytes of the last slice. */
  private items = 0
  private bytes = 0
  constructor (kind: SliceKind, whole: unknown, take: Take | ((n: number) => unknown[]), more: (() => boolean) | undefined) {
    this.kind = kind
    this.whole = whole
    this.take = take
    this.more = more
  }

  get done (): boolean {
    if (this.count === 0) return false
    return this.more === undefined ? (this.take as Take).ended : !this.more()
  }

  next (name: string, maxBytes: number, soFar: number): Buffer {
    const n = this.count === 0 ? FIRST_SLICE_ITEMS : Math.min(this.items * SLICE_GROWTH, sliceItems(this.bytes / Math.max(1, this.items)))
    const items = this.take(Math.max(1, n))
    const bytes = serializeState(name, items, maxBytes, soFar, this.whole)
    this.count++
    this.items = items.length
    this.bytes = bytes.length
    return bytes
  }
}

/** Items per slice for items of `perItem` serialized bytes on average: about SLICE_BYTES, at least 1, at most SLICE_ITEMS. */
export function sliceItems (perItem: number): number {
  return Math.max(1, Math.min(SLICE_ITEMS, Math.floor(SLICE_BYTES / Math.max(1, perItem))))
}

/** Adds one deserialized slice to what arrived so far (undefined before the first). */
export function addSlice (kind: SliceKind, so: unknown, slice: unknown): unknown {
  if (kind === 'whole') return slice
  const items = slice as unknown[]
  if (kind === 'map') {
    const m = (so as Map<unknown, unknown> | undefined) ?? new Map()
    for (const [k, v] of items as Array<[unknown, unknown]>) m.set(k, v)
    return m
  }
  if (kind === 'set') {
    const s = (so as Set<unknown> | undefined) ?? new Set()
    for (const v of items) s.add(v)
    return s
  }
  const a = (so as unknown[] | undefined) ?? []
  for (const v of items) a.push(v)
  return a
}

/** Nodes looked at, at most, to name the part of a value that cannot be cloned. */
const FIND_LIMIT = 100_000

/**
 * Serializes (a slice of) the snapshot registered under `name`, `soFar` bytes of it sent already: a
 * HandoverError (CLONE naming the bad part of `whole`, or TOO_LARGE naming the size) when it cannot travel.
 */
export function serializeState (name: string, value: unknown, maxBytes: number, soFar = 0, whole: unknown = value): Buffer {
  // Structured clone would drop the class of a cache object and hand over its internals (or refuse a
  // function among them only once some entry has a TTL): refuse it always, naming the way that works.
  const hint = soFar === 0 && value === whole ? dumpHint(whole) : ''
  if (hint !== '') {
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_CLONE', name,
      `handover "${name}": the snapshot cannot be cloned: value is an object of a class (structured clone would lose the class and hand over its internals)${hint}`)
  }
  let bytes: Buffer
  try {
    bytes = v8.serialize(value)
  } catch (err) {
    const bad = findUncloneable(whole)
    const where = bad === undefined ? '' : `: ${bad.path} is ${bad.what}`
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_CLONE', name,
      `handover "${name}": the snapshot cannot be cloned${where} (${(err as Error).message}); hand over plain data (objects, arrays, Map, Set, Date, Buffer, typed arrays)${dumpHint(whole)}`, { cause: err })
  }
  if (soFar + bytes.length > maxBytes) {
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_TOO_LARGE', name,
      `handover "${name}": the snapshot is ${soFar > 0 ? 'at least ' : ''}${soFar + bytes.length} bytes serialized, over the limit of ${maxBytes} (option "handoverMaxBytes")`)
  }
  return bytes
}

/**
 * A cache object with dump() and load() (lru-cache, quick-lru style): the way to hand it over, or ''.
 */
function dumpHint (value: unknown): string {
  if (value === null || typeof value !== 'object' || Object.getPrototypeOf(value) === Object.prototype) return ''
  const v = value as { dump?: unknown, load?: unknown }
  if (typeof v.dump !== 'function' || typeof v.load !== 'function') return ''
  return `; it has dump() and load() (an lru-cache?): hand over \`() => cache.dump()\` and call \`cache.load(await inherited(name))\` in the successor`
}

/** How many parts `bytes` travel in (one at least, for an empty value too). */
export function partCount (bytes: Buffer): number {
  return Math.max(1, Math.ceil(bytes.length / STATE_PART_BYTES))
}

/** Part `i` of `bytes`, in base64 (made when it is sent: the parts never sit in memory all at once). */
export function statePart (bytes: Buffer, i: number): string {
  return bytes.subarray(i * STATE_PART_BYTES, Math.min((i + 1) * STATE_PART_BYTES, bytes.length)).toString('base64')
}

/** Reads back the parts of a state. */
export function deserializeState (name: string, parts: readonly Buffer[]): unknown {
  try {
    return v8.deserialize(parts.length === 1 ? parts[0] as Buffer : Buffer.concat(parts))
  } catch (err) {
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_FAILED', name, `handover "${name}": the state could not be read back (${(err as Error).message})`, { cause: err })
  }
}

/**
 * The first part of `value` that structured clone refuses (a function, a symbol, a Promise, a
 * WeakMap...), with its path (`value.sessions.get("a").close`); undefined if none is found.
 */
export function findUncloneable (value: unknown): { path: string, what: string } | undefined {
  const seen = new Set<object>()
  let looked = 0
  const visit = (v: unknown, path: string): { path: string, what: string } | undefined => {
    if (++looked > FIND_LIMIT) return undefined
    if (typeof v === 'function') return { path, what: `a function${v.name === '' ? '' : ` (${v.name})`}` }
    if (typeof v === 'symbol') return { path, what: `a symbol (${String(v.description)})` }
    if (v === null || typeof v !== 'object') return undefined
    if (seen.has(v)) return undefined
    seen.add(v)
    for (const [type, what] of REFUSED) if (v instanceof type) return { path, what }
    if (v instanceof Map) {
      for (const [k, item] of v) {
        const found = visit(k, `${path} (a key)`) ?? visit(item, `${path}.get(${label(k)})`)
        if (found !== undefined) return found
      }
      return undefined
    }
    if (v instanceof Set) {
      let i = 0
      for (const item of v) {
        const found = visit(item, `${path} (item ${i++} of the Set)`)
        if (found !== undefined) return found
      }
      return undefined
    }
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof Date || v instanceof RegExp) return undefined
    for (const key of Object.keys(v)) {
      const found = visit((v as Record<string, unknown>)[key], Array.isArray(v) ? `${path}[${key}]` : `${path}.${key}`)
      if (found !== undefined) return found
    }
    return undefined
  }
  return visit(value, 'value')
}

const REFUSED: Array<[new (...args: never[]) => object, string]> = [
  [Promise, 'a Promise'],
  [WeakMap, 'a WeakMap'],
  [WeakSet, 'a WeakSet'],
  [WeakRef, 'a WeakRef']
]

function label (key: unknown): string {
  return typeof key === 'string' ? JSON.stringify(key) : typeof key === 'object' && key !== null ? 'an object key' : String(key)
}
