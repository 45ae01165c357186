// Runs in the old process: starts the successor with the listening sockets at fds 3.. (systemd's
// LISTEN_FDS convention), waits for its "ready" message, and kills it if it fails.
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import { RebootError } from '../errors'
import { PARENT_ENV, READY_MESSAGE, STATEFUL_ENV } from '../handoff/protocol'
import type { Spawn } from '../os'

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
  /** Ms the successor has to send ready before it is killed. */
  timeout: number
  spawn: Spawn
  timer: (ms: number, fn: () => void) => () => void
}

export interface Successor {
  readonly pid: number
  /** Resolves when the successor is ready; rejects with a RebootError if it exits or times out first. */
  readonly ready: Promise<void>
  /** Kills the successor (rollback). */
  kill (): void
  /** After ready: lets the old process exit without waiting for the child. Stateful: keeps the channel, unref'd. */
  release (): void
}

/**
 * Spawns `sh -c 'export LISTEN_PID=$$; exec "$0" "$@"' execPath ...execArgv ...argv`: the shell
 * makes LISTEN_PID equal the pid that node will have. stdio 0-2 are inherited (a successor whose
 * output went through a pipe of ours would die of EPIPE when we exit), the sockets follow at 3..,
 * and the IPC channel comes after them.
 */
export function startSuccessor (o: SuccessorOptions): Successor {
  const stdio: SpawnOptions['stdio'] = ['inherit', 'inherit', 'inherit', ...o.sockets.map((s) => s.fd), 'ipc']
  const env: NodeJS.ProcessEnv = {
    ...o.env,
    LISTEN_FDS: String(o.sockets.length),
    LISTEN_FDNAMES: o.sockets.map((s) => encodeURIComponent(s.key)).join(':'),
    [PARENT_ENV]: String(o.parentPid)
  }
  delete env.LISTEN_PID
  if (o.stateful !== false) env[STATEFUL_ENV] = String(o.stateful)
  else delete env[STATEFUL_ENV]
  let child: ChildProcess
  try {
    child = o.spawn('/bin/sh', ['-c', 'export LISTEN_PID=$$; exec "$0" "$@"', o.execPath, ...o.execArgv, ...o.argv], { cwd: o.cwd, env, stdio })
  } catch (err) {
    const e = new RebootError('ERR_GRACEFUL_SUCCESSOR_SPAWN', `could not start the successor: ${(err as Error).message}`)
    return { pid: 0, ready: Promise.reject(e), kill () {}, release () {} }
  }
  const pid = child.pid ?? 0
  let settled = false
  const ready = new Promise<void>((resolve, reject) => {
    const cancel = o.timer(o.timeout, () => {
      fail(new RebootError('ERR_GRACEFUL_SUCCESSOR_TIMEOUT', `successor ${pid} was not ready within ${o.timeout} ms; killed it`, pid))
      child.kill('SIGKILL')
    })
    const fail = (err: RebootError): void => {
      if (settled) return
      settled = true
      cancel()
      reject(err)
    }
    child.on('message', (m: unknown) => {
      if (settled || (m as { type?: unknown } | null)?.type !== READY_MESSAGE) return
      settled = true
      cancel()
      resolve()
    })
    child.once('error', (err) => {
      fail(new RebootError('ERR_GRACEFUL_SUCCESSOR_SPAWN', `could not start the successor: ${err.message}`, pid))
    })
    child.once('exit', (code, signal) => {
      const how = signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`
      fail(new RebootError('ERR_GRACEFUL_SUCCESSOR_EXITED', `successor ${pid} ${how} before it was ready`, pid))
    })
  })
  return {
    pid,
    ready,
    kill () {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
    release () {
      if (o.stateful !== false) {
        (child.channel as { unref?: () => void } | null | undefined)?.unref?.()
      } else if (child.connected) {
        child.disconnect()
      }
      child.unref()
    }
  }
}
