// Runs in both processes: how a handed-over state travels: serialized with v8.serialize (structured
// clone: Map, Set, Date, Buffer, typed arrays, nested objects), bounded in bytes, cut into parts small
// enough that the IPC channel's other messages (pings, connections) are not held up, and read back. A
// large top-level Map, Set or array is serialized SLICE_ITEMS items at a time, the old process's event
// loop running between slices, so that a big cache does not stall it for the whole serialization.
import * as v8 from 'node:v8'
import { HandoverError } from '../errors'

/** Bytes of serialized state per IPC message (sent as base64 inside Node's JSON channel). */
export const STATE_PART_BYTES = 1024 * 1024

/** Items of a top-level Map, Set or array serialized at a time (beyond this many, the value travels in slices). */
export const SLICE_ITEMS = 10_000

/** How a value travels: whole, or as the items of a top-level Map, Set or array, in slices. */
export type SliceKind = 'whole' | 'map' | 'set' | 'array'

/** The slices of `value`: `count` of them, `at(i)` the value to serialize for slice i (an array of items, or the value itself). */
export function slicesOf (value: unknown): { kind: SliceKind, count: number, at: (i: number) => unknown } {
  const items = value instanceof Map ? [...value] : value instanceof Set ? [...value] : Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype ? value : undefined
  if (items === undefined || items.length <= SLICE_ITEMS) return { kind: 'whole', count: 1, at: () => value }
  const kind: SliceKind = value instanceof Map ? 'map' : value instanceof Set ? 'set' : 'array'
  return { kind, count: Math.ceil(items.length / SLICE_ITEMS), at: (i) => items.slice(i * SLICE_ITEMS, (i + 1) * SLICE_ITEMS) }
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
  let bytes: Buffer
  try {
    bytes = v8.serialize(value)
  } catch (err) {
    const bad = findUncloneable(whole)
    const where = bad === undefined ? '' : `: ${bad.path} is ${bad.what}`
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_CLONE', name,
      `handover "${name}": the snapshot cannot be cloned${where} (${(err as Error).message}); hand over plain data (objects, arrays, Map, Set, Date, Buffer, typed arrays)`, { cause: err })
  }
  if (soFar + bytes.length > maxBytes) {
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_TOO_LARGE', name,
      `handover "${name}": the snapshot is ${soFar > 0 ? 'at least ' : ''}${soFar + bytes.length} bytes serialized, over the limit of ${maxBytes} (option "handoverMaxBytes")`)
  }
  return bytes
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
    return v8.deserialize(Buffer.concat(parts))
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
