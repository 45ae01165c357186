// Runs in both processes: what the old and the new process of a reboot say to each other: the
// environment variables beside systemd's LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID, and the IPC messages.
import type { SliceKind } from './state'

/** systemd passes sockets from fd 3 on; so does a reboot. */
export const FIRST_FD = 3
/** Environment variable naming the pid of the process that started this one by a reboot. */
export const PARENT_ENV = 'GRACEFUL_REBOOT_PARENT_PID'
/** Set, to the longest wait in ms, when the reboot is stateful (accept only once the old process exited). */
export const STATEFUL_ENV = 'GRACEFUL_REBOOT_STATEFUL'
/** The ms a successor has to become ready (`rebootTimeout`), counted by the successor itself too. */
export const READY_WITHIN_ENV = 'GRACEFUL_REBOOT_READY_WITHIN'

/**
 * Set (to '2') by an old process that hands connections over in two phases (COMMIT / REVOKE). Without
 * it (an old process of an earlier version) the successor serves a connection as soon as it arrives.
 */
export const HANDOVER_ENV = 'GRACEFUL_REBOOT_HANDOVER'
/** Set (to '1') by an old process that answers STATE_REQUEST_MESSAGE: without it, `inherited()` resolves undefined at once. */
export const STATE_ENV = 'GRACEFUL_REBOOT_STATE'
/**
 * The successor's fd of the pipe on which the old process sends the state (handoff/state-frames.ts),
 * apart from the IPC channel: raw bytes, never base64 inside JSON, and never in the way of the
 * channel's other messages.
 */
export const STATE_FD_ENV = 'GRACEFUL_REBOOT_STATE_FD'
/** The successor's generation in its reboot line: the old process's plus one (a first start is 0). */
export const GENERATION_ENV = 'GRACEFUL_REBOOT_GENERATION'

/**
 * The counts of a reboot line (every process of it so far): what `lifecycle().stats()` counts, handed
 * from the old process to its successor with CUTOVER_MESSAGE and, final, with DRAINED_MESSAGE.
 */
export interface LineCounts {
  reboots: { requested: number, refused: number, started: number, succeeded: number, failed: number, lost: number }
  drains: number
  connections: { transferred: number, kept: number, forced: number }
}

/** New -> old: this process serves (every inherited socket adopted, or `declareReady()`). */
export const READY_MESSAGE = 'graceful-reboot:ready'
/** New -> old: this process started shutting down (a crash, a signal, code) and will not serve for long. */
export const FAILING_MESSAGE = 'graceful-reboot:failing'
/** New -> old: a listen() asked for an address the old process did not pass (the new code listens elsewhere). */
export const ADOPTION_MESSAGE = 'graceful-reboot:adoption'
/**
 * New -> old: the connection of CONNECTION_MESSAGE `id` arrived and is held, not read; the old process
 * answers COMMIT_MESSAGE (it closes its copy) or, past its timeout, has sent REVOKE_MESSAGE.
 */
export const TAKEN_MESSAGE = 'graceful-reboot:taken'
/** Old -> new: the connection `id` is the successor's now: it serves it (until this, it never reads it). */
export const COMMIT_MESSAGE = 'graceful-reboot:commit'
/** Old -> new: the connection `id` stays with the old process (no TAKEN in time): the successor closes its copy unread. */
export const REVOKE_MESSAGE = 'graceful-reboot:revoke'
/**
 * New -> old, after ready, with a listening socket as the handle: a copy of the listener `key`, which the
 * old process keeps, not accepting, until its drain is over: if the successor is lost, it accepts on it.
 */
export const LISTENER_MESSAGE = 'graceful-reboot:listener'
/** Old -> new: answer PONG_MESSAGE with the same `n`, from the event loop (a blocked loop does not answer). */
export const PING_MESSAGE = 'graceful-reboot:ping'
/** New -> old: the answer to PING_MESSAGE `n`. */
export const PONG_MESSAGE = 'graceful-reboot:pong'
/** Old -> new: the reboot is rolled back; drain and exit within `timeout` ms. */
export const ABORT_MESSAGE = 'graceful-reboot:abort'
/**
 * Old -> new, with a socket as the message's handle: an idle HTTP/1.1 keep-alive connection accepted
 * on the listener named `address` (a LISTEN_FDNAMES key). Kept small: a large message can make Node
 * drop the handle (nodejs/node#13778). Not `key`: Node's handle passing writes that field.
 */
export const CONNECTION_MESSAGE = 'graceful-reboot:connection'

/**
 * New -> old: the snapshot registered under `name` (`handover()`), answered with STATE_MESSAGE parts of
 * the same `id`. With `final`, answered only once the old process's drain is over (no request reaches it then).
 * With `pipe`, the successor reads the state pipe (STATE_FD_ENV): the answers come on it, as frames.
 */
export const STATE_REQUEST_MESSAGE = 'graceful-reboot:state-request'
/**
 * Old -> new: the answer to STATE_REQUEST_MESSAGE `id`: `none` (nothing registered under that name), an
 * `error` (code and message), or one part of a slice of the value serialized with v8.serialize, in
 * base64 (`data`): `end` on a slice's last part, `last` on the value's, `kind` how the slices add up
 * (handoff/state.ts), `bytes` serialized so far. Parts are small (STATE_PART_BYTES): a large IPC
 * message would hold up the others. On the state pipe the same answers travel as frames, the head
 * without `data` and a slice in one frame, its bytes raw.
 */
export const STATE_MESSAGE = 'graceful-reboot:state'
/** Old -> new: probation passed; the old process drains now and hands its connections over. `counts`: its line's counts now (the successor reports them from now on). */
export const CUTOVER_MESSAGE = 'graceful-reboot:cutover'
/** Old -> new: the old process's drain is over: `transferred` connections are the successor's, `kept` drained there; `counts`: its line's final counts. */
export const DRAINED_MESSAGE = 'graceful-reboot:drained'

export type StateAnswer =
  | { type: typeof STATE_MESSAGE, id: number, none: true }
  | { type: typeof STATE_MESSAGE, id: number, error: { code: string, message: string } }
  | { type: typeof STATE_MESSAGE, id: number, kind: SliceKind, data: string, end: boolean, last: boolean, bytes: number }

/**
 * In FAILING_MESSAGE: a required startup service of the new process failed (its StartupError), so that
 * the old process's reboot() rejects with that error instead of "started shutting down".
 */
export interface StartupFailure { code: string, message: string, service: string }

export type NewToOld =
  | { type: typeof READY_MESSAGE, pid: number }
  | { type: typeof FAILING_MESSAGE, pid: number, reason: string, trigger: string, error?: StartupFailure }
  | { type: typeof ADOPTION_MESSAGE, pid: number, asked: string, inherited: string[] }
  | { type: typeof TAKEN_MESSAGE, id: number }
  | { type: typeof PONG_MESSAGE, n: number }
  | { type: typeof LISTENER_MESSAGE, key: string }
  | { type: typeof STATE_REQUEST_MESSAGE, id: number, name: string, final: boolean, pipe?: boolean }

export type OldToNew =
  | { type: typeof ABORT_MESSAGE, timeout: number }
  | { type: typeof CONNECTION_MESSAGE, address: string, id: number }
  | { type: typeof COMMIT_MESSAGE, id: number }
  | { type: typeof REVOKE_MESSAGE, id: number }
  | { type: typeof PING_MESSAGE, n: number }
  | StateAnswer
  | { type: typeof CUTOVER_MESSAGE, counts?: LineCounts | undefined }
  | { type: typeof DRAINED_MESSAGE, transferred: number, kept: number, counts?: LineCounts | undefined }

/** The `type` of an IPC message, if it is one of ours. */
export function messageType (m: unknown): string | undefined {
  if (m === null || typeof m !== 'object') return undefined
  const type = (m as { type?: unknown }).type
  return typeof type === 'string' && type.startsWith('graceful-reboot:') ? type : undefined
}
