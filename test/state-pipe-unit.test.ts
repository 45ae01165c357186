// Runs in the test process: the state pipe without processes: its frames cut back out of a byte
// stream however it is chunked, and a StateServer (old) answering a StateClient (new) on a fake pipe:
// values, none and errors on it and nothing in the IPC channel, and the final snapshot still read
// when the IPC channel closes before the pipe's last bytes are.
import { EventEmitter } from 'node:events'
import test from 'ava'
import { HandoverError } from '../lib/errors'
import { STATE_MESSAGE, type OldToNew } from '../lib/handoff/protocol'
import { FRAME_PREFIX, FrameReader, frameHead } from '../lib/handoff/state-frames'
import { StateClient } from '../lib/incoming/state'
import { StateServer } from '../lib/outgoing/state'
import { FakeSeam, memoryLogger, settle } from './fixtures/finalizer-fake-seam'

test('frames: cut back out of the stream whatever its chunks (one byte at a time, 7 bytes, all at once), empty data too; a stream of something else throws', (t) => {
  const frames: Array<[object, Buffer]> = [
    [{ id: 1, kind: 'map' }, Buffer.from(Array.from({ length: 1000 }, (_, i) => i & 255))],
    [{ id: 2, none: true }, Buffer.alloc(0)],
    [{ id: 3, name: 'é漢' }, Buffer.from('x')]
  ]
  const stream = Buffer.concat(frames.flatMap(([h, d]) => [frameHead(h, d.length), d]))
  for (const size of [1, 7, stream.length]) {
    const got: Array<[unknown, Buffer]> = []
    const r = new FrameReader((head, data) => { got.push([head, Buffer.from(data)]) })
    for (let at = 0; at < stream.length; at += size) r.push(stream.subarray(at, at + size))
    t.deepEqual(got, frames, `chunks of ${size}`)
  }
  const bad = Buffer.alloc(FRAME_PREFIX)
  bad.writeUInt32BE(1 << 20, 0)
  t.throws(() => { new FrameReader(() => {}).push(bad) }, { instanceOf: RangeError, message: /frame head of 1048576 bytes/ })
})

/** A StateServer and a StateClient joined by a fake IPC channel and a fake state pipe. */
function piped (): { seam: FakeSeam, client: StateClient, server: StateServer, ipc: OldToNew[], snapshots: Map<string, () => unknown>, parentGone: () => void, pipeEnd: () => void, hold: () => void } {
  const seam = new FakeSeam()
  const child = new EventEmitter() as EventEmitter & { connected: boolean, send: (m: unknown, h: unknown, o: unknown, cb: (err: Error | null) => void) => boolean }
  const ipc: OldToNew[] = []
  const toNew = new Set<(m: unknown) => void>()
  child.connected = true
  child.send = (m, _h, _o, cb) => {
    ipc.push(m as OldToNew)
    setImmediate(() => { for (const fn of toNew) fn(m); cb(null) })
    return true
  }
  let onChunk: (chunk: Buffer) => void = () => {}
  let onEnd: () => void = () => {}
  let held = false
  const waiting: Buffer[] = []
  const pipe = {
    destroyed: false,
    write: (data: Buffer, cb?: (err?: Error | null) => void) => {
      const copy = Buffer.from(data)
      setImmediate(() => {
        if (held) waiting.push(copy)
        else onChunk(copy)
        cb?.(null)
      })
      return true
    }
  }
  const snapshots = new Map<string, () => unknown>()
  const server = new StateServer(child as never, () => ({ snapshot: (n) => snapshots.get(n), timeout: 1000, maxBytes: 64 << 20 }), seam, memoryLogger(), pipe)
  let gone: () => void = () => {}
  const client = new StateClient({
    host: {
      send: (m) => { setImmediate(() => child.emit('message', m)); return true },
      onParentMessage: (fn) => { toNew.add(fn); return () => { toNew.delete(fn) } },
      onParentGone: (fn) => { gone = fn }
    },
    enabled: true,
    timer: (ms, fn) => seam.timer(ms, fn),
    hold: () => () => {},
    timeout: () => 1000,
    openPipe: (chunk, end) => { onChunk = chunk; onEnd = end; return true }
  })
  return {
    seam,
    client,
    server,
    ipc,
    snapshots,
    parentGone: () => { gone() },
    // The pipe's bytes are held back until its end: as when the IPC channel's close is read first.
    hold: () => { held = true },
    pipeEnd: () => { for (const c of waiting.splice(0)) onChunk(c); onEnd() }
  }
}

test('piped: a Map in many slices, a name not registered and a failed snapshot all arrive on the pipe; the IPC channel carries no state', async (t) => {
  const c = piped()
  const big = new Map(Array.from({ length: 60_000 }, (_, i) => [`k${i}`, { i, at: new Date(i) }]))
  c.snapshots.set('big', () => big)
  c.snapshots.set('throws', () => { throw new Error('nope') })
  t.deepEqual(await c.client.inherited('big'), big)
  t.is(await c.client.inherited('missing'), undefined)
  await t.throwsAsync(c.client.inherited('throws'), { instanceOf: HandoverError, code: 'ERR_GRACEFUL_HANDOVER_FAILED', message: 'handover "throws": the snapshot threw: nope' })
  t.deepEqual(c.ipc.filter((m) => m.type === STATE_MESSAGE), [])
})

test('piped: a final snapshot whose bytes are read after the IPC channel closed still arrives; a request left unanswered settles at the pipe\'s end, not before', async (t) => {
  const c = piped()
  c.snapshots.set('n', () => 42)
  c.snapshots.set('hangs', () => new Promise(() => {}))
  const final = c.client.final('n')
  let left: unknown = 'pending'
  const unanswered = c.client.inherited('hangs').then((v) => { left = v })
  await settle()
  c.hold()
  await c.server.final()
  await settle()
  c.parentGone()
  await settle()
  t.is(left, 'pending', 'the pipe is still open: its last bytes may be on the way')
  c.pipeEnd()
  t.is(await final, 42)
  await unanswered
  t.is(left, undefined)
})
