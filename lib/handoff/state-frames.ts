// Runs in both processes: the frames in which an old process sends the state to its successor over
// the pipe given to the successor for it (the fd after the IPC channel): a head (the answer without
// its bytes, as JSON: none, an error, or a slice's kind, last and bytes so far) and then the slice's
// bytes as v8.serialize made them, written as they are: never copied into a string (base64 inside
// the IPC channel's JSON would allocate three more bytes on the heap for each byte handed over).
// Layout: [u32 head length][u48 data length][head, UTF-8 JSON][data].

/** Bytes before a frame's head: its length (u32) and the data's (u48). */
export const FRAME_PREFIX = 10

/** A head longer than this is not one of ours (a stray writer, a bug): the stream is refused. */
const MAX_HEAD = 64 * 1024

/** The prefix and head of a frame whose data is `dataLength` bytes: write it, then the data. */
export function frameHead (head: object, dataLength: number): Buffer {
  const json = Buffer.from(JSON.stringify(head), 'utf8')
  const b = Buffer.allocUnsafe(FRAME_PREFIX + json.length)
  b.writeUInt32BE(json.length, 0)
  b.writeUIntBE(dataLength, 4, 6)
  json.copy(b, FRAME_PREFIX)
  return b
}

/**
 * Cuts a byte stream into frames: `onFrame(head, data)` for each, the data copied once, from the
 * stream's chunks into a buffer of its size. `push` throws on a stream that is not made of frames.
 */
export class FrameReader {
  private readonly onFrame: (head: unknown, data: Buffer) => void
  /** The prefix and head read so far. */
  private start: Buffer = Buffer.alloc(0)
  private headLength = -1
  private head: unknown = undefined
  private data: Buffer | undefined
  private filled = 0

  constructor (onFrame: (head: unknown, data: Buffer) => void) {
    this.onFrame = onFrame
  }

  push (chunk: Buffer): void {
    let at = 0
    while (at < chunk.length) {
      if (this.data === undefined) {
        const need = this.headLength < 0 ? FRAME_PREFIX : FRAME_PREFIX + this.headLength
        const take = Math.min(need - this.start.length, chunk.length - at)
        this.start = Buffer.concat([this.start, chunk.subarray(at, at + take)])
        at += take
        if (this.start.length < need) return
        if (this.headLength < 0) {
          this.headLength = this.start.readUInt32BE(0)
          if (this.headLength > MAX_HEAD) throw new RangeError(`a frame head of ${this.headLength} bytes (at most ${MAX_HEAD})`)
          if (this.headLength > 0) continue
        }
        this.head = JSON.parse(this.start.subarray(FRAME_PREFIX).toString('utf8'))
        this.data = Buffer.allocUnsafe(this.start.readUIntBE(4, 6))
        this.filled = 0
        this.start = Buffer.alloc(0)
        this.headLength = -1
      } else {
        const take = Math.min(this.data.length - this.filled, chunk.length - at)
        chunk.copy(this.data, this.filled, at, at + take)
        this.filled += take
        at += take
      }
      if (this.data !== undefined && this.filled === this.data.length) {
        const head = this.head
        const data = this.data
        this.head = undefined
        this.data = undefined
        this.onFrame(head, data)
      }
    }
  }
}
