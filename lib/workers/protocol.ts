// Runs in the supervisor (`graceful-reboot run --workers N`) and in its workers: what they say to
// each other: the environment a worker gets, and the JSON lines on the supervisor's control socket (a
// Unix socket every worker connects to, the replacements a worker's reboot starts too), so that the
// supervisor knows every worker of every slot, whoever spawned it.

/** The worker's slot, 1..N (a replacement keeps its slot). Set by the supervisor; the contract of DESIGN.md section 9. */
export const WORKER_ENV = 'GRACEFUL_WORKER'
/** The path of the supervisor's control socket. */
export const SUPERVISOR_ENV = 'GRACEFUL_SUPERVISOR'
/**
 * The pid of the worker these variables belong to: the supervisor's spawn sets it to the worker's own
 * pid, and each worker sets it to its own, so that its reboot's successor (whose old process it names)
 * is a worker too, and any other process the app starts is not.
 */
export const WORKER_PID_ENV = 'GRACEFUL_WORKER_PID'
/** Set to '1' for the first worker, which binds the listening sockets and hands copies up over its IPC channel. */
export const BIND_ENV = 'GRACEFUL_WORKER_BIND'

/** Worker -> supervisor (IPC, with a listening socket as the handle): a copy of the listener `key` the first worker bound. */
export const WORKER_LISTENER_MESSAGE = 'graceful-reboot:worker-listener'

export type WorkerToSupervisor =
  /** The first line of every worker: its slot and pid, and the old worker whose reboot started it (a replacement). */
  | { type: 'hello', slot: number, pid: number, parent: number | null }
  /** The worker serves (its announcement: every inherited socket adopted, every required startup service up); the first worker then has handed up `listeners` sockets. */
  | { type: 'announced', pid: number, listeners: number }
  /** A reboot was asked of this worker by a signal, the admin route or code: the supervisor rolls every worker. */
  | { type: 'rollout', pid: number, trigger: string }
  /** The outcome of a reboot the supervisor commanded: the replacement passed probation, or why not. */
  | { type: 'rebooted', pid: number, id: number, successor: number }
  | { type: 'reboot-failed', pid: number, id: number, code: string, message: string }
  /** The worker's drain is over: it exits with `code`. */
  | { type: 'exiting', pid: number, code: number }

export type SupervisorToWorker =
  /** Reboot this worker (its replacement takes its slot, its connections and its state). */
  | { type: 'reboot', id: number, timeout: number | null }
  /** Drain and exit. */
  | { type: 'shutdown', timeout: number | null, trigger: string }
  /** The rollout a worker asked for is over: how it went. */
  | { type: 'rollout-done', ok: boolean, message: string }

/** Splits a stream of JSON lines; calls `fn` with each parsed object (a malformed line is skipped). */
export function jsonLines (fn: (m: Record<string, unknown>) => void): (chunk: string) => void {
  let buf = ''
  return (chunk) => {
    buf += chunk
    for (let at = buf.indexOf('\n'); at !== -1; at = buf.indexOf('\n')) {
      const line = buf.slice(0, at)
      buf = buf.slice(at + 1)
      if (line === '') continue
      try {
        const m = JSON.parse(line) as unknown
        if (m !== null && typeof m === 'object') fn(m as Record<string, unknown>)
      } catch {}
    }
  }
}
