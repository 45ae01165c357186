// Runs in both processes (and the graceful-reboot CLI reads it): the status file beside the PID file,
// one per process (`<pidFile>.<pid>.status`, JSON), so that the CLI learns a reboot's verdict
// (refused, rolled back, serving after probation) instead of guessing it from the PID file.
import * as fs from 'node:fs'
import type { RecordedStep } from './steps'
import { writeAtomically } from './pidfile'

/**
 * A reboot's steps as the status file records them (lib/steps.ts, the one vocabulary); 'refused',
 * 'failed' and 'serving' are verdicts; 'lost' comes after 'serving': the successor died or stopped
 * answering while this process drained.
 */
export type { RecordedStep } from './steps'

/** The last reboot this process was asked for. */
export interface RebootStatus {
  /** 1 for this process's first reboot request, then 2, ...: the CLI waits for one above what it read before signalling. */
  seq: number
  trigger: string
  step: RecordedStep
  /** When the step was reached (ms since the epoch). */
  at: number
  /** The successor's pid, from 'spawned' on. */
  successor?: number
  /** Why it was refused or failed: the RebootError's code and message. */
  error?: { code: string, message: string }
  /** 'lost': why the old process took the service back (the successor exited, its channel closed, it froze and was killed). */
  lost?: string
  /** 'lost': true when the old process serves again for good (a late rollback), false when it serves until its drain is over. */
  back?: boolean
  /** A supervisor's rolling reboot: how each slot went, in the order they ended. */
  slots?: SlotOutcome[]
}

/** How one slot's part of a supervisor's rolling reboot went. */
export interface SlotOutcome {
  slot: number
  ok: boolean
  /** The worker replaced (null: the slot had none serving, and its new worker started with the code on disk). */
  old: number | null
  /** The worker that serves the slot now, when it went well. */
  successor: number | null
  message: string
  /** The RebootError code of a failure. */
  code?: string | undefined
  ms: number
}

/** One slot of a supervisor (`graceful-reboot run`): a row of `graceful-reboot status`. */
export interface SlotStatus {
  slot: number
  /** The worker serving the slot, or null while it is started again (or given up). */
  pid: number | null
  state: 'starting' | 'serving' | 'rebooting' | 'draining' | 'restarting' | 'given up'
  /** When the slot's worker started (ms since the epoch), or null. */
  startedAt: number | null
  /** Workers of the slot that died and were started again (a rollout's replacement is not a restart). */
  restarts: number
  /** The counts of the slot's reboot lines (`lifecycle().stats()` of the worker that reports it), null before its first report. */
  stats?: (LineCountsRecord & { generation: number }) | null
}

/** The counts of a reboot line, or of a supervisor's workers added up (`lifecycle().stats()` without its per-process fields). */
export interface LineCountsRecord {
  reboots: { requested: number, refused: number, started: number, succeeded: number, failed: number, lost: number }
  drains: number
  connections: { transferred: number, kept: number, forced: number }
}

/** What a process writes to its status file at every change of state and at every reboot step. */
export interface StatusRecord {
  pid: number
  /** 'running', 'rebooting', 'draining' or 'stopped'. */
  state: string
  /** 'old' while handing over to a successor, 'new' in a process a reboot started, null otherwise. */
  role: string | null
  /** Ms since the epoch: when this process started, and when it wrote this record. */
  startedAt: number
  updatedAt: number
  /** Reboot counts of this process's reboot line (a successor's include its old process's); a supervisor's: its rolling reboots. */
  reboots: { requested: number, refused: number, failed: number, succeeded: number }
  /** The last reboot requests (up to 8), oldest first; a refusal is one too. A supervisor's are its rolling reboots. */
  attempts: RebootStatus[]
  /** 'supervisor' for `graceful-reboot run` (absent for one process). */
  kind?: 'supervisor'
  /** A supervisor's slots. */
  slots?: SlotStatus[]
  /**
   * When the process started, in clock ticks after boot (field 22 of /proc/<pid>/stat; Linux only):
   * a reader tells the process that wrote the record from a later one given the same pid.
   */
  startTicks?: number
  /** A supervisor's: its workers' counts added up (every slot's lines). */
  totals?: LineCountsRecord
}

/** The status file of process `pid` whose PID file is `pidFile`. */
export function statusFilePath (pidFile: string, pid: number): string {
  return `${pidFile}.${pid}.status`
}

/** Writes the record atomically (a temp file renamed over the status file), with mode 0644. */
export function writeStatus (pidFile: string, record: StatusRecord): void {
  writeAtomically(statusFilePath(pidFile, record.pid), JSON.stringify(record) + '\n')
}

/**
 * The record of process `pid`, or undefined when it has none (gone, or a version without status
 * files) or it cannot be parsed. With `owner` (a uid): only a regular file that belongs to that user
 * (the app's) is read; a symbolic link or another user's file counts as none.
 */
export function readStatus (pidFile: string, pid: number, owner?: number): StatusRecord | undefined {
  let text: string
  try {
    text = readOwned(statusFilePath(pidFile, pid), owner)
  } catch {
    return undefined
  }
  try {
    const r = JSON.parse(text) as StatusRecord
    return typeof r === 'object' && r !== null && r.pid === pid ? r : undefined
  } catch {
    return undefined
  }
}

/** The text of `file`, opened without following a symbolic link; with `owner`, it must be a regular file of that uid. Throws otherwise. */
export function readOwned (file: string, owner?: number): string {
  if (owner === undefined) return fs.readFileSync(file, 'utf8')
  const fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0) | (fs.constants.O_NONBLOCK ?? 0))
  try {
    const st = fs.fstatSync(fd)
    if (!st.isFile()) throw new Error(`${file} is not a regular file`)
    if (st.uid !== owner) throw new Error(`${file} belongs to uid ${st.uid}, not ${owner}`)
    return fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
}

/** Removes the status file of process `pid`, if any. */
export function removeStatus (pidFile: string, pid: number): void {
  try { fs.unlinkSync(statusFilePath(pidFile, pid)) } catch {}
}
