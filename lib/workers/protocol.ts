// Runs in the supervisor (`graceful-reboot run --workers N`) and in its workers: what they say to
// each other: the environment a worker gets, and the JSON lines on the supervisor's control socket (a
// Unix socket every worker connects to, the replacements a worker's reboot starts too), so that the
// supervisor knows every worker of every slot, whoever spawned it.
import type { LineCounts } from '../handoff/protocol'

/** The worker's slot, 1..N (a replacement keeps its slot). Set by the supervisor; the contract of DESIGN.md section 9. */
export const WORKER_ENV = 'GRACEFUL_WORKER'
/** The path of the supervisor's control socket. */
export const SUPERVISOR_ENV = 'GRACEFUL_SUPERVISOR'
/**
 * The supervisor's secret (random, one per supervisor): a worker's `hello` carries it, and the
 * supervisor also finds it in the environment the claimed pid was started with (/proc/PID/environ), so
 * that a local process that is not one of its workers cannot speak on the control socket.
 */
export const SECRET_ENV = 'GRACEFUL_SUPERVISOR_SECRET'
/**
 * The pid of the worker these variables belong to: the supervisor's spawn sets it to the worker's own
 * pid, and each worker sets it to its own, so that its reboot's successor (whose old process it names)
 * is a worker too, and any other process the app starts is not.
 */
export const WORKER_PID_ENV = 'GRACEFUL_WORKER_PID'
/** Set to '1' for a worker that binds its listening sockets and hands copies up over its IPC channel (the first one; with per-worker queues, each slot's first). */
export const BIND_ENV = 'GRACEFUL_WORKER_BIND'
/**
 * Per-worker accept queues: set (with BIND_ENV) to a JSON object of listen key -> port. The worker
 * binds its TCP listeners with SO_REUSEPORT, on the port the object gives for the key (the port the
 * first worker got, for a listen() on port 0), else on the port asked: one queue per slot in one group.
 */
export const REUSEPORT_ENV = 'GRACEFUL_WORKER_REUSEPORT'

/** Whether this Node can bind with SO_REUSEPORT (`listen({ reusePort })`: 22.12+ and 23.1+), on Linux, where the kernel spreads connections over the group. */
export function reusePortSupported (version: string, platform: string): boolean {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number)
  return platform === 'linux' && (major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12))
}

/** Worker -> supervisor (IPC, with a listening socket as the handle): a copy of the listener `key` (and its TCP `port`) a binding worker listens on. */
export const WORKER_LISTENER_MESSAGE = 'graceful-reboot:worker-listener'

/** The longest line either side accepts on the control socket: a longer one closes the connection. */
export const MAX_LINE_BYTES = 64 * 1024

export type WorkerToSupervisor =
  /**
   * The first line of every worker: its slot and pid, the old worker whose reboot started it (a
   * replacement), and the supervisor's secret.
   */
  | { type: 'hello', slot: number, pid: number, parent: number | null, secret: string }
  /** The worker serves (its announcement: every inherited socket adopted, every required startup service up); the first worker then has handed up `listeners` sockets. */
  | { type: 'announced', pid: number, listeners: number }
  /** A reboot was asked of this worker by a signal, the admin route or code: the supervisor rolls every worker. */
  | { type: 'rollout', pid: number, trigger: string }
  /** The outcome of a reboot the supervisor commanded: the replacement passed probation, or why not. */
  | { type: 'rebooted', pid: number, id: number, successor: number }
  | { type: 'reboot-failed', pid: number, id: number, code: string, message: string }
  /**
   * The old worker of a reboot the supervisor commanded has handed its idle connections over (or its
   * transfer window closed); its drain goes on. The rollout reboots the next slot only then.
   */
  | { type: 'moved', pid: number }
  /** The worker's drain is over: it exits with `code`. */
  | { type: 'exiting', pid: number, code: number }
  /**
   * The counts of the worker's reboot line (`lifecycle().stats()`), its generation and whether it
   * reports the line: sent when it announces and after every change. The supervisor adds them up.
   */
  | { type: 'stats', pid: number, generation: number, reporting: boolean, counts: LineCounts }
  /** The connections the worker's servers hold (sent, coalesced, after a change): the supervisor sets every worker's limit from them. */
  | { type: 'connections', pid: number, open: number }

export type SupervisorToWorker =
  /** Reboot this worker (its replacement takes its slot, its connections and its state). */
  | { type: 'reboot', id: number, timeout: number | null }
  /** Drain and exit. */
  | { type: 'shutdown', timeout: number | null, trigger: string }
  /**
   * The rollout a worker asked for is over: how it went. `code`: the RebootError code a refusal or a
   * failure gives the worker's `reboot()` (ERR_GRACEFUL_REBOOT_IN_PROGRESS, ERR_GRACEFUL_SHUTTING_DOWN, ...).
   */
  | { type: 'rollout-done', ok: boolean, message: string, code?: string | undefined }
  /**
   * The most connections a worker should hold (null: no limit); above it, its excess keep-alive
   * connections close after their next response. `basis`: the worker's count the limit was set from
   * (a worker whose count has changed since ignores the limit).
   */
  | { type: 'share', limit: number | null, basis?: number }

/**
 * Splits a stream of JSON lines; calls `fn` with each parsed object (a malformed line is skipped).
 * Each chunk is scanned once; a line longer than `max` characters calls `tooLong` (once) and drops
 * everything after it: the caller closes the stream.
 */
export function jsonLines (fn: (m: Record<string, unknown>) => void, max = MAX_LINE_BYTES, tooLong: () => void = () => {}): (chunk: string) => void {
  let buf = ''
  let broken = false
  return (chunk) => {
    if (broken) return
    let from = 0
    for (let at = chunk.indexOf('\n'); at !== -1; at = chunk.indexOf('\n', from)) {
      const line = buf + chunk.slice(from, at)
      buf = ''
      from = at + 1
      if (line.length > max) { broken = true; tooLong(); return }
      if (line === '') continue
      try {
        const m = JSON.parse(line) as unknown
        if (m !== null && typeof m === 'object') fn(m as Record<string, unknown>)
      } catch {}
    }
    buf += chunk.slice(from)
    if (buf.length > max) { broken = true; buf = ''; tooLong() }
  }
}
