// Runs in the new process (a successor started by a reboot, or a process started by systemd socket
// activation): reads LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID once and hands the inherited
// listening sockets to listen() calls whose address matches.
import * as fs from 'node:fs'
import { isListenKey } from '../handoff/keys'
import type { InheritedSockets } from '../handoff/listeners'
import { FIRST_FD, HANDOVER_ENV, PARENT_ENV, READY_WITHIN_ENV, STATEFUL_ENV, STATE_ENV, STATE_FD_ENV, GENERATION_ENV } from '../handoff/protocol'

interface InheritedFd { fd: number, name: string, adopted: boolean }

export class Inherited implements InheritedSockets {
  readonly fds: InheritedFd[]
  /** Pid of the old process when this one was started by a reboot. */
  readonly parentPid: number | undefined
  /** false, or the longest wait (ms) for the old process to exit before accepting. */
  readonly stateful: number | false
  /** Started by a reboot: the ms this process has, from its start, to become ready (`rebootTimeout`). */
  readonly readyWithin: number | undefined
  /** Started by a reboot whose old process hands connections over in two phases (COMMIT / REVOKE). */
  readonly twoPhase: boolean
  /** Started by a reboot whose old process answers state requests (`inherited()`). */
  readonly handsState: boolean
  /** This process's generation in its reboot line: 0 for a first start, the old process's plus one for a successor. */
  readonly generation: number
  /** The fd of the pipe on which the old process sends the state, if it passed one. */
  stateFd: number | undefined

  constructor (fds: InheritedFd[], parentPid: number | undefined, stateful: number | false, readyWithin?: number, twoPhase = true, handsState = false, generation = 0) {
    this.fds = fds
    this.parentPid = parentPid
    this.stateful = stateful
    this.readyWithin = readyWithin
    this.twoPhase = twoPhase
    this.handsState = handsState && parentPid !== undefined
    this.generation = parentPid !== undefined ? generation : 0
    this.stateFd = undefined
  }

  /**
   * Reads the systemd socket-activation variables when LISTEN_PID names this process, and removes
   * them (and our own variables) from `env` so that processes started later do not inherit them.
   */
  static fromEnv (env: NodeJS.ProcessEnv, pid: number): Inherited {
    const count = Number(env.LISTEN_FDS)
    const forUs = env.LISTEN_PID === String(pid) && Number.isInteger(count) && count >= 0
    const names = (env.LISTEN_FDNAMES ?? '').split(':')
    const parent = Number(env[PARENT_ENV])
    const wait = Number(env[STATEFUL_ENV])
    const stateful = env[STATEFUL_ENV] !== undefined && Number.isFinite(wait) && wait >= 0 ? wait : false
    const within = Number(env[READY_WITHIN_ENV])
    const twoPhase = env[HANDOVER_ENV] === '2'
    const handsState = env[STATE_ENV] === '1'
    const stateFd = Number(env[STATE_FD_ENV])
    const g = Number(env[GENERATION_ENV])
    // An old process of an earlier version sets none: its successor is one generation on all the same.
    const generation = Number.isInteger(g) && g > 0 ? g : 1
    for (const key of ['LISTEN_FDS', 'LISTEN_FDNAMES', 'LISTEN_PID', PARENT_ENV, STATEFUL_ENV, READY_WITHIN_ENV, HANDOVER_ENV, STATE_ENV, STATE_FD_ENV, GENERATION_ENV]) delete env[key]
    if (!forUs) return new Inherited([], undefined, false)
    const fds: InheritedFd[] = []
    for (let i = 0; i < count; i++) fds.push({ fd: FIRST_FD + i, name: decode(names[i] ?? ''), adopted: false })
    // A reboot of an app with no listening socket passes LISTEN_FDS=0: still a successor.
    const parentPid = Number.isInteger(parent) && parent > 0 ? parent : undefined
    if (fds.length === 0 && parentPid === undefined) return new Inherited([], undefined, false)
    const inherited = new Inherited(fds, parentPid, stateful, parentPid !== undefined && Number.isFinite(within) && within > 0 ? within : undefined, twoPhase, handsState, generation)
    if (inherited.handsState && Number.isInteger(stateFd) && stateFd > FIRST_FD) inherited.stateFd = stateFd
    return inherited
  }

  /** The names of every inherited socket, in fd order. */
  get names (): string[] { return this.fds.map((f) => f.name) }

  get pending (): number { return this.fds.filter((f) => !f.adopted).length }

  /** Names of the inherited sockets passed by a reboot (address keys) that no listen() adopted yet. */
  get pendingKeys (): string[] { return this.fds.filter((f) => !f.adopted && isListenKey(f.name)).map((f) => f.name) }

  /**
   * The inherited fd for a listen() on `key`: the one with that exact name, else (systemd names
   * such as 'http' or 'unknown') the first not yet adopted whose name is not one of our keys.
   */
  take (key: string): number | undefined {
    const f = this.fds.find((x) => !x.adopted && x.name === key) ??
      this.fds.find((x) => !x.adopted && !isListenKey(x.name))
    if (f === undefined) return undefined
    f.adopted = true
    return f.fd
  }

  /**
   * Stateful reboot: resolves once the old process has exited (its IPC channel to us closes), or
   * after the stateful wait at the latest.
   */
  whenParentGone (): Promise<void> {
    this.parentGone ??= new Promise<void>((resolve) => {
      if (this.stateful === false || !process.connected) { resolve(); return }
      const timer = setTimeout(done, this.stateful)
      function done (): void {
        clearTimeout(timer)
        process.removeListener('disconnect', done)
        resolve()
      }
      process.once('disconnect', done)
    })
    return this.parentGone
  }

  private parentGone: Promise<void> | undefined

  /** Closes the inherited fds that no listen() adopted; returns their names. */
  closeUnadopted (): string[] {
    const closed: string[] = []
    for (const f of this.fds) {
      if (f.adopted) continue
      f.adopted = true
      try { fs.closeSync(f.fd) } catch {}
      closed.push(f.name)
    }
    return closed
  }
}

function decode (name: string): string {
  try {
    return decodeURIComponent(name)
  } catch {
    return name
  }
}

/** Reads this process's inherited sockets from its environment (the lifecycle does it once per process). */
export function readInherited (): Inherited {
  return Inherited.fromEnv(process.env, process.pid)
}
