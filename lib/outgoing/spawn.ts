// Runs in the old process of a reboot: starts the successor with the listening sockets at fds 3..
// (systemd's LISTEN_FDS convention), waits for its "ready" message, watches it through probation,
// and stops it (asked to drain first, killed at the end of a grace) when the reboot is rolled back.
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import type * as net from 'node:net'
import { AdoptionError, RebootError, StartupError } from '../errors'
import { ABORT_MESSAGE, ADOPTION_MESSAGE, FAILING_MESSAGE, HANDOVER_ENV, PARENT_ENV, READY_MESSAGE, READY_WITHIN_ENV, STATEFUL_ENV, STATE_ENV, STATE_FD_ENV, GENERATION_ENV, messageType, type NewToOld, type OldToNew } from '../handoff/protocol'
import type { Spawn } from '../os'
import { ConnectionSender } from './handover'
import { Heartbeat } from './heartbeat'
import { Standby } from './standby'
import { StateServer, type StatePipe, type StateSource } from './state'
import type { Logger } from '../log'

export { TAKEN_TIMEOUT_MS } from './handover'

/** Ms a rolled-back successor is given to drain what it accepted (asked over IPC, else SIGTERM) before SIGKILL. */
export const ROLLBACK_GRACE_MS = 5_000

export interface SuccessorOptions {
  /** Listening sockets to pass, in order: they become fds 3, 4, ... */
  sockets: ReadonlyArray<{ fd: number, key: string }>
  /** The command line to run again. */
  execPath: string
  execArgv: readonly string[]
  argv: readonly string[]
  cwd: string
  env: NodeJS.ProcessEnv
  parentPid: number
  /** false, or the ms after which a stateful successor accepts even if the old process still runs. */
  stateful: number | false
  /** Ms the successor has to send ready before it is stopped. */
  timeout: number
  /** Ms of silence after which a successor that took over is frozen (killed, and this process serves again). */
  lostAfter?: number | undefined
  spawn: Spawn
  timer: (ms: number, fn: () => void) => () => void
  /** Told why the connection transfer stopped (the successor unresponsive, gone, or too slow to confirm). */
  transferStopped?: (why: string) => void
  /** Told each time the successor's event loop stops answering pings (a pause, or the start of a freeze). */
  unresponsive?: (ms: number) => void
  /** The successor's generation in its reboot line (this process's plus one). */
  generation?: number | undefined
  /** The state registered with `handover()`, which the successor may ask for; absent: it gets none. */
  state?: { source: () => StateSource, now: () => number, log: Logger } | undefined
}

export interface Successor {
  readonly pid: number
  /** Resolves when the successor is ready; rejects with a RebootError (or AdoptionError) if it fails first. */
  readonly ready: Promise<void>
  /**
   * After ready: resolves once `ms` have passed with the successor serving and its event loop then
   * answered a ping (within `timeout` more ms); rejects with a RebootError as soon as it reports that
   * it shuts down, its IPC channel closes or it exits, or when no ping is answered in time.
   */
  probation (ms: number): Promise<void>
  /** Rollback: asks the successor to drain within `graceMs` (over IPC, else SIGTERM), then kills it. */
  stop (graceMs?: number): void
  /** Kills a successor that is still there (this process exits before the grace of `stop()` is over). */
  kill (): void
  /**
   * After probation: hands a connection accepted on the listener `address` over (two phases, see
   * handover.ts). Resolves with true once the successor holds it and was told it is its own (the caller
   * closes this process's copy then), false when it stays here, whole, never read by the successor (not
   * sent, the successor gone, no confirmation within TAKEN_TIMEOUT_MS of the write, the transfer stopped).
   */
  sendSocket (address: string, socket: net.Socket): Promise<boolean>
  /** The copies of the listening sockets the successor sends back after ready, and the watch over it. */
  readonly standby: Standby | undefined
  /** After ready: lets the old process exit without waiting for the child. Stateful: keeps the channel, unref'd. */
  release (): void
  /** Tells the successor a step of the reboot (cutover, drained); false when it cannot be told. */
  tell (message: OldToNew): boolean
  /** Answers the successor's requests for final snapshots (this process's drain is over). */
  finalState (): Promise<void>
}

/**
 * Spawns `sh -c 'export LISTEN_PID=$$; exec "$0" "$@"' execPath ...execArgv ...argv`: the shell
 * makes LISTEN_PID equal the pid that node will have. stdio 0-2 are inherited (a successor whose
 * output went through a pipe of ours would die of EPIPE when we exit), the sockets follow at 3..,
 * the IPC channel comes after them, and the state pipe (STATE_FD_ENV) after it when the state is
 * handed over.
 */
export function startSuccessor (o: SuccessorOptions): Successor {
  const stdio: SpawnOptions['stdio'] = ['inherit', 'inherit', 'inherit', ...o.sockets.map((s) => s.fd), 'ipc']
  const stateFd = o.state === undefined ? undefined : stdio.push('pipe') - 1
  const env: NodeJS.ProcessEnv = {
    ...o.env,
    LISTEN_FDS: String(o.sockets.length),
    LISTEN_FDNAMES: o.sockets.map((s) => encodeURIComponent(s.key)).join(':'),
    [PARENT_ENV]: String(o.parentPid),
    [READY_WITHIN_ENV]: String(o.timeout),
    [HANDOVER_ENV]: '2',
    [STATE_ENV]: '1'
  }
  delete env.LISTEN_PID
  if (stateFd !== undefined) env[STATE_FD_ENV] = String(stateFd)
  else delete env[STATE_FD_ENV]
  if (o.stateful !== false) env[STATEFUL_ENV] = String(o.stateful)
  else delete env[STATEFUL_ENV]
  if (o.generation !== undefined) env[GENERATION_ENV] = String(o.generation)
  else delete env[GENERATION_ENV]
  let child: ChildProcess
  try {
    child = o.spawn('/bin/sh', ['-c', 'export LISTEN_PID=$$; exec "$0" "$@"', o.execPath, ...o.execArgv, ...o.argv], { cwd: o.cwd, env, stdio })
  } catch (err) {
    const e = new RebootError('ERR_GRACEFUL_SUCCESSOR_SPAWN', `could not start the successor: ${(err as Error).message}`)
    return { pid: 0, ready: Promise.reject(e), probation: () => Promise.reject(e), stop () {}, kill () {}, sendSocket: () => Promise.resolve(false), release () {}, standby: undefined, tell: () => false, finalState: () => Promise.resolve() }
  }
  const pid = child.pid ?? 0
  const alive = (): boolean => child.exitCode === null && child.signalCode === null
  // An IPC error (the successor died with a message in flight) is never a crash of ours.
  child.on('error', () => {})
  let settled = false
  const ready = new Promise<void>((resolve, reject) => {
    const cancel = o.timer(o.timeout, () => {
      fail(new RebootError('ERR_GRACEFUL_SUCCESSOR_TIMEOUT', `successor ${pid} was not ready within ${o.timeout} ms (it is ready once ${o.sockets.length === 0 ? 'a listen() ran' : `a listen() adopted each of ${o.sockets.map((s) => s.key).join(', ')}`}, or declareReady() with readiness 'manual'); stopping it`, pid))
    })
    const fail = (err: Error): void => {
      if (settled) return
      settled = true
      cancel()
      reject(err)
    }
    child.on('message', (m: unknown) => {
      const type = messageType(m)
      if (type === READY_MESSAGE && !settled) {
        settled = true
        cancel()
        resolve()
      } else if (type === ADOPTION_MESSAGE) {
        const a = m as Extract<NewToOld, { type: typeof ADOPTION_MESSAGE }>
        fail(new AdoptionError(`successor ${pid} listens on ${a.asked}, which this process did not pass; it inherited ${a.inherited.join(', ')} (listen on the same addresses, or restart instead of rebooting)`))
      } else if (type === FAILING_MESSAGE) {
        const f = m as Extract<NewToOld, { type: typeof FAILING_MESSAGE }>
        // A required startup service failed: the reboot fails with that service's error.
        if (f.error?.code === 'ERR_GRACEFUL_STARTUP_FAILED') fail(new StartupError(f.error.service, `successor ${pid} did not start: ${f.error.message}`))
        else fail(new RebootError('ERR_GRACEFUL_SUCCESSOR_EXITED', `successor ${pid} started shutting down (${f.trigger}) before it was ready`, pid))
      }
    })
    child.once('error', (err) => {
      fail(new RebootError('ERR_GRACEFUL_SUCCESSOR_SPAWN', `could not start the successor: ${err.message}`, pid))
    })
    child.once('exit', (code, signal) => {
      fail(new RebootError('ERR_GRACEFUL_SUCCESSOR_EXITED', `successor ${pid} ${exitWords(code, signal)} before it was ready`, pid))
    })
  })
  let stopping = false
  const sender = new ConnectionSender(child, o.timer, o.transferStopped)
  const heartbeat = new Heartbeat(child, o.timer, o.lostAfter)
  ready.then(() => { heartbeat.start() }, () => {})
  child.once('exit', () => { heartbeat.stop() })
  child.once('disconnect', () => { heartbeat.stop() })
  // A successor whose loop stops answering (a pause) gets no more connections: they drain here.
  heartbeat.onUnresponsive((ms) => {
    o.unresponsive?.(ms)
    sender.stop(`the successor's event loop did not answer for ${ms} ms`)
  })
  const standby = new Standby(child, heartbeat, o.timer)
  // The state pipe never keeps this process alive (a write in flight does, until it is written).
  const pipe = stateFd === undefined ? undefined : child.stdio?.[stateFd] as (StatePipe & { on: (e: 'error', fn: () => void) => void, unref?: () => void, destroy: () => void }) | null | undefined
  pipe?.on('error', () => {})
  pipe?.unref?.()
  if (pipe != null) child.once('exit', () => { pipe.destroy() })
  const state = o.state === undefined ? undefined : new StateServer(child, o.state.source, { timer: o.timer, now: o.state.now }, o.state.log, pipe ?? undefined)
  return {
    pid,
    ready,
    standby,
    probation (ms) {
      return new Promise<void>((resolve, reject) => {
        let done = false
        const end = (err?: RebootError): void => {
          if (done) return
          done = true
          cancel()
          child.removeListener('message', onMessage)
          child.removeListener('disconnect', onDisconnect)
          child.removeListener('exit', onExit)
          if (err === undefined) resolve()
          else reject(err)
        }
        const failed = (why: string): RebootError =>
          new RebootError('ERR_GRACEFUL_SUCCESSOR_PROBATION', `successor ${pid} ${why} within the ${ms} ms probation; rolled back, this process goes on serving`, pid)
        const onMessage = (m: unknown): void => {
          if (messageType(m) !== FAILING_MESSAGE) return
          const f = m as Extract<NewToOld, { type: typeof FAILING_MESSAGE }>
          end(failed(`started shutting down (${f.trigger})`))
        }
        const onDisconnect = (): void => { end(failed('closed its IPC channel')) }
        const onExit = (code: number | null, signal: NodeJS.Signals | null): void => { end(failed(exitWords(code, signal))) }
        let cancel = (): void => {}
        const answered = (): void => {
          // Serving means an event loop that answers, not only a process that has not crashed.
          heartbeat.onAnswer(() => { end() })
          cancel = o.timer(o.timeout, () => {
            end(new RebootError('ERR_GRACEFUL_SUCCESSOR_PROBATION', `successor ${pid} answered no ping for ${o.timeout} ms (rebootTimeout) after its ${ms} ms probation: its event loop is blocked; rolled back, this process goes on serving`, pid))
          })
        }
        if (ms > 0) cancel = o.timer(ms, answered)
        else answered()
        child.on('message', onMessage)
        child.once('disconnect', onDisconnect)
        child.once('exit', onExit)
        if (!alive()) onExit(child.exitCode, child.signalCode)
        else if (!child.connected) onDisconnect()
      })
    },
    stop (graceMs = ROLLBACK_GRACE_MS) {
      if (stopping || !alive()) return
      stopping = true
      const abort: OldToNew = { type: ABORT_MESSAGE, timeout: graceMs }
      let asked = false
      if (child.connected) {
        try {
          asked = child.send(abort, () => {})
        } catch {}
      }
      if (!asked) child.kill('SIGTERM')
      const cancel = o.timer(graceMs + 500, () => { if (alive()) child.kill('SIGKILL') })
      child.once('exit', cancel)
    },
    kill () {
      if (alive()) child.kill('SIGKILL')
    },
    sendSocket (address, socket) {
      return sender.send(address, socket)
    },
    tell (message) {
      if (!child.connected) return false
      try {
        return child.send(message, undefined, {}, () => {})
      } catch {
        return false
      }
    },
    finalState: () => state?.final() ?? Promise.resolve(),
    release () {
      heartbeat.stop()
      sender.close()
      if (o.stateful !== false) {
        (child.channel as { unref?: () => void } | null | undefined)?.unref?.()
      } else if (child.connected) {
        child.disconnect()
      }
      child.unref()
    }
  }
}

function exitWords (code: number | null, signal: NodeJS.Signals | null): string {
  return signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`
}
