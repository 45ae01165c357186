// Runs in both processes: how a handed-over state travels: serialized with v8.serialize (structured
// clone: Map, Set, Date, Buffer, typed arrays, nested objects), bounded in bytes, cut into parts small
// enough that the IPC channel's other messages (pings, connections) are not held up, and read back.
import * as v8 from 'node:v8'
import { HandoverError } from '../errors'

/** Bytes of serialized state per IPC message (sent as base64 inside Node's JSON channel). */
export const STATE_PART_BYTES = 1024 * 1024

/** Nodes looked at, at most, to name the part of a value that cannot be cloned. */
const FIND_LIMIT = 100_000

/**
 * Serializes the snapshot `value` registered under `name`: a HandoverError (CLONE naming the bad part,
 * or TOO_LARGE naming the size) when it cannot travel.
 */
export function serializeState (name: string, value: unknown, maxBytes: number): Buffer {
  let bytes: Buffer
  try {
    bytes = v8.serialize(value)
  } catch (err) {
    const bad = findUncloneable(value)
    const where = bad === undefined ? '' : `: ${bad.path} is ${bad.what}`
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_CLONE', name,
      `handover "${name}": the snapshot cannot be cloned${where} (${(err as Error).message}); hand over plain data (objects, arrays, Map, Set, Date, Buffer, typed arrays)`, { cause: err })
  }
  if (bytes.length > maxBytes) {
    throw new HandoverError('ERR_GRACEFUL_HANDOVER_TOO_LARGE', name,
      `handover "${name}": the snapshot is ${bytes.length} bytes serialized, over the limit of ${maxBytes} (option "handoverMaxBytes")`)
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
