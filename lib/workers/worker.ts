// Runs in a worker of the supervisor (`graceful-reboot run --workers N`; the environment says so): its
// link to the supervisor's control socket. It says who it is and when it serves, hands the sockets it
// bound up (the first worker), reboots or drains when told, asks the supervisor for a rolling reboot
// when a reboot is asked of it (a signal, the admin route, code), and drains when the supervisor is gone
// (killed with SIGKILL): a worker outlives no supervisor.
import type { EventEmitter } from 'node:events'
import * as net from 'node:net'
import { RebootError } from '../errors'
import type { LifecycleEvents } from '../events'
import type { ListenRequest } from '../handoff/keys'
import type { ListenerRegistry } from '../handoff/listeners'
import type { Logger } from '../log'
import type { RebootHost } from '../os'
import { PARENT_ENV, type LineCounts } from '../handoff/protocol'
import { ConnectionShare } from './share'
import { BIND_ENV, REUSEPORT_ENV, SECRET_ENV, SUPERVISOR_ENV, WORKER_ENV, WORKER_LISTENER_MESSAGE, WORKER_PID_ENV, jsonLines, type SupervisorToWorker, type WorkerToSupervisor } from './protocol'

export interface WorkerContext {
  readonly pid: number
  /** The old worker whose reboot started this one (a replacement), if so. */
  parentPid (): number | undefined
  log (): Logger
  /** This worker's own reboot (its replacement takes the slot): resolves with the replacement's pid after probation. */
  reboot (timeout: number | undefined): Promise<number>
  shutdown (timeout: number | undefined, trigger: string): void
  /** The listening servers (the first worker hands copies up). */
  readonly listening: Pick<ListenerRegistry, 'sockets' | 'serverFor'>
  /** Its `sendHandle`: the IPC channel to the supervisor (only the first worker has one). */
  readonly host: Pick<RebootHost, 'sendHandle'>
  /** The counts of this worker's reboot line, and `fn` called after each change: the supervisor adds them up. */
  stats?: () => { generation: number, reporting: boolean, counts: LineCounts }
  watchStats?: (fn: () => void) => void
}

export class WorkerLink {
  readonly slot: number
  private readonly path: string
  private readonly bind: boolean
  /** Per-worker accept queues: the port to bind each TCP listen key on, with SO_REUSEPORT (undefined: one shared queue). */
  private readonly reusePorts: Readonly<Record<string, number>> | undefined
  private readonly secret: string
  private readonly ctx: WorkerContext
  private socket: net.Socket | undefined
  private closing = false
  /** This worker's connections, kept within the limit the supervisor sets. */
  private readonly share = new ConnectionShare((open) => { this.say({ type: 'connections', pid: this.ctx.pid, open }) }, (ms, fn) => { setTimeout(fn, ms).unref() })
  private asked: { resolve: (pid: number) => void, reject: (err: unknown) => void, promise: Promise<number> } | undefined

  /** The link of a worker, or undefined outside the supervisor. */
  static fromEnv (env: NodeJS.ProcessEnv, ctx: WorkerContext): WorkerLink | undefined {
    const slot = Number(env[WORKER_ENV])
    const path = env[SUPERVISOR_ENV]
    const owner = env[WORKER_PID_ENV]
    // Started by the supervisor, or by a worker's reboot (its successor); not a process the app started.
    const mine = owner === String(ctx.pid) || (owner !== undefined && owner === env[PARENT_ENV])
    if (!mine || !Number.isInteger(slot) || slot < 1 || path === undefined || path === '') {
      for (const key of [WORKER_ENV, SUPERVISOR_ENV, WORKER_PID_ENV, BIND_ENV, REUSEPORT_ENV, SECRET_ENV]) delete env[key]
      return undefined
    }
    env[WORKER_PID_ENV] = String(ctx.pid)
    const bind = env[BIND_ENV] === '1'
    const reusePorts = bind ? parsePorts(env[REUSEPORT_ENV]) : undefined
    // A replacement started by this worker's reboot binds nothing: it inherits the sockets.
    delete env[BIND_ENV]
    delete env[REUSEPORT_ENV]
    return new WorkerLink(slot, path, bind, reusePorts, env[SECRET_ENV] ?? '', ctx)
  }

  private constructor (slot: number, path: string, bind: boolean, reusePorts: Record<string, number> | undefined, secret: string, ctx: WorkerContext) {
    this.slot = slot
    this.path = path
    this.bind = bind
    this.reusePorts = reusePorts
    this.secret = secret
    this.ctx = ctx
  }

  /**
   * The options a listen() that inherited no socket binds with, when this worker has an accept queue
   * of its own: a TCP listener joins its key's SO_REUSEPORT group, on the port the slots share.
   * Undefined (listen as asked) otherwise, and for Unix sockets (one shared queue).
   */
  bindOptions (key: string, req: ListenRequest): net.ListenOptions | undefined {
    if (this.reusePorts === undefined || req.port === undefined || req.path !== undefined) return undefined
    const options: net.ListenOptions & { reusePort: boolean } = { ...req.options, port: this.reusePorts[key] ?? req.port, reusePort: true }
    if (req.host !== undefined) options.host = req.host
    if (req.backlog !== undefined) options.backlog = req.backlog
    return options
  }

  /** Connects to the supervisor (once) and follows the lifecycle's announcement and exit. */
  connect (events: Pick<EventEmitter<LifecycleEvents>, 'on'>): void {
    if (this.socket !== undefined) return
    const socket = net.createConnection(this.path)
    this.socket = socket
    // The link never keeps the process alive by itself.
    socket.unref()
    socket.setEncoding('utf8').on('data', jsonLines((m) => { this.command(m as SupervisorToWorker) }, undefined, () => { socket.destroy(new Error('a line longer than the control protocol allows')) }))
    socket.on('error', (err) => { this.ctx.log().error({ err, supervisor: this.path }, `graceful-reboot: the supervisor's control socket failed: ${err.message}`) })
    socket.on('close', () => {
      if (this.closing) return
      this.ctx.log().error({ slot: this.slot, supervisor: this.path }, 'graceful-reboot: the supervisor is gone; draining (a worker outlives no supervisor)')
      this.ctx.shutdown(undefined, 'supervisor-gone')
    })
    this.say({ type: 'hello', slot: this.slot, pid: this.ctx.pid, parent: this.ctx.parentPid() ?? null, secret: this.secret })
    events.on('handoff', (e) => {
      if (e.step !== 'announced') return
      let sent = 0
      // The raw handle, not the server: the supervisor keeps the socket without accepting on it.
      for (const { key } of this.bind ? this.ctx.listening.sockets() : []) {
        const server = this.ctx.listening.serverFor(key) as (net.Server & { _handle?: unknown }) | undefined
        const handle = server?._handle
        const address = server?.address()
        const port = typeof address === 'object' && address !== null ? address.port : undefined
        if (handle != null && this.ctx.host.sendHandle?.({ type: WORKER_LISTENER_MESSAGE, key, port }, handle) === true) sent++
      }
      for (const { server } of this.ctx.listening.sockets()) this.share.watch(server)
      this.say({ type: 'announced', pid: this.ctx.pid, listeners: sent })
      this.sendStats()
    })
    // Sent at once (not batched): the last counts go out before the link closes at the end of the drain.
    this.ctx.watchStats?.(() => { this.sendStats() })
    events.on('shutdown', (result) => {
      this.share.pause(true)
      this.closing = true
      this.say({ type: 'exiting', pid: this.ctx.pid, code: result.code })
      socket.end()
    })
  }

  /**
   * A reboot asked of this worker (not by the supervisor): the supervisor rolls every worker, one slot
   * at a time. Resolves with this worker's replacement's pid once it passed probation; rejects when the
   * rollout is refused or stops before.
   */
  rollout (trigger: string): Promise<number> {
    if (this.asked !== undefined) return this.asked.promise
    let resolve!: (pid: number) => void
    let reject!: (err: unknown) => void
    const promise = new Promise<number>((res, rej) => { resolve = res; reject = rej })
    promise.catch(() => {})
    this.asked = { resolve, reject, promise }
    if (!this.say({ type: 'rollout', pid: this.ctx.pid, trigger })) {
      this.settle(new RebootError('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'this worker could not reach its supervisor to ask for a rolling reboot'))
    }
    return promise
  }

  /** This worker's reboot handed its connections over (its drain goes on): the rollout may go on to the next slot. */
  moved (): void {
    this.say({ type: 'moved', pid: this.ctx.pid })
  }

  private command (m: SupervisorToWorker): void {
    if (m.type === 'reboot') {
      this.share.pause(true)
      this.ctx.reboot(m.timeout ?? undefined).then((successor) => {
        this.say({ type: 'rebooted', pid: this.ctx.pid, id: m.id, successor })
        this.settle(successor)
      }, (err: unknown) => {
        this.share.pause(false)
        const e = err as { code?: string, message?: string }
        this.say({ type: 'reboot-failed', pid: this.ctx.pid, id: m.id, code: e.code ?? 'ERR_GRACEFUL_REBOOT_FAILED', message: e.message ?? String(err) })
      })
    } else if (m.type === 'share') {
      this.share.setLimit(typeof m.limit === 'number' && m.limit >= 0 ? m.limit : undefined, typeof m.basis === 'number' ? m.basis : undefined)
    } else if (m.type === 'shutdown') {
      this.share.pause(true)
      this.ctx.shutdown(m.timeout ?? undefined, m.trigger)
    } else if (m.type === 'rollout-done') {
      this.settle(m.ok ? this.ctx.pid : rolloutError(m))
    }
  }

  private sendStats (): void {
    const s = this.ctx.stats?.()
    if (s !== undefined) this.say({ type: 'stats', pid: this.ctx.pid, generation: s.generation, reporting: s.reporting, counts: s.counts })
  }

  private settle (outcome: number | Error): void {
    const a = this.asked
    if (a === undefined) return
    this.asked = undefined
    if (typeof outcome === 'number') a.resolve(outcome)
    else a.reject(outcome)
  }

  private say (m: WorkerToSupervisor): boolean {
    const s = this.socket
    if (s === undefined || s.destroyed || !s.writable) return false
    s.write(JSON.stringify(m) + '\n')
    return true
  }
}

/** REUSEPORT_ENV's object (listen key -> port); undefined when absent or malformed. */
function parsePorts (text: string | undefined): Record<string, number> | undefined {
  if (text === undefined) return undefined
  try {
    const o = JSON.parse(text) as unknown
    if (o === null || typeof o !== 'object' || Array.isArray(o)) return undefined
    const out: Record<string, number> = {}
    for (const [k, v] of Object.entries(o)) if (Number.isInteger(v) && (v as number) >= 0 && (v as number) < 65536) out[k] = v as number
    return out
  } catch {
    return undefined
  }
}

/** The error a worker's `reboot()` rejects with when the rollout it asked for is refused or stops. */
function rolloutError (m: Extract<SupervisorToWorker, { type: 'rollout-done' }>): RebootError {
  const code = (m.code ?? 'ERR_GRACEFUL_SUCCESSOR_EXITED') as ConstructorParameters<typeof RebootError>[0]
  const refused = code === 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' || code === 'ERR_GRACEFUL_SHUTTING_DOWN' || code === 'ERR_GRACEFUL_REBOOT_UNSUPPORTED'
  return new RebootError(code, refused ? `the supervisor refused the rolling reboot: ${m.message}` : `the rolling reboot stopped: ${m.message}`)
}
