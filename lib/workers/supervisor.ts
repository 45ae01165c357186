// Runs in the supervisor (`graceful-reboot run --workers N`): starts N workers of one script that share
// the listening sockets (the first binds them and hands copies up; the others, and every replacement,
// inherit them, systemd's LISTEN_FDS way), replaces a worker that dies (with backoff, and gives up on a
// slot whose worker keeps dying before it serves), rolls every worker one slot at a time (each worker's
// own reboot: its replacement inherits the sockets, its connections and its state, passes probation,
// then the old one drains), stops a rollout at the first failure, and drains every worker on a
// shutdown. The OS goes through `SupervisorSeam`.
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import * as net from 'node:net'
import { BIND_ENV, SUPERVISOR_ENV, WORKER_ENV, WORKER_LISTENER_MESSAGE, WORKER_PID_ENV, jsonLines, type SupervisorToWorker, type WorkerToSupervisor } from './protocol'

/** What the supervisor needs from the OS. */
export interface SupervisorSeam {
  spawn (command: string, args: readonly string[], options: SpawnOptions): ChildProcess
  timer (ms: number, fn: () => void): () => void
  now (): number
  log (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void
}

export interface SupervisorOptions {
  workers: number
  /** Slots replaced at once in a rollout (default 1). */
  surge: number
  script: string
  args: readonly string[]
  execPath: string
  execArgv: readonly string[]
  cwd: string
  env: NodeJS.ProcessEnv
  /** The control socket's path (in a folder of the supervisor's own). */
  socketPath: string
}

/** A worker that dies before it serves this many times in a row: its slot is not started again. */
export const MAX_START_CRASHES = 5
/** The first wait before a dead worker is started again; it doubles per death before serving, up to MAX_RESPAWN_MS. */
export const RESPAWN_MS = 100
export const MAX_RESPAWN_MS = 10_000

interface Proc { pid: number, slot: number, conn: net.Socket | undefined, announced: boolean, exitCode: number | undefined }
interface Slot { n: number, current: number | undefined, crashes: number, gaveUp: boolean }
type Pending = (m: WorkerToSupervisor | { type: 'gone' }) => void

export class Supervisor {
  private readonly o: SupervisorOptions
  private readonly seam: SupervisorSeam
  private readonly slots: Slot[]
  private readonly procs = new Map<number, Proc>()
  private readonly children = new Set<ChildProcess>()
  /** The listening sockets the first worker bound, kept (never accepting) for every later worker. */
  private readonly sockets: Array<{ key: string, fd: number, handle: unknown }> = []
  /** How many the first worker says it handed up. */
  private expected = Infinity
  private readonly waiting = new Map<number, { pid: number, fn: Pending }>()
  private server: net.Server | undefined
  private rolling = false
  private stopping = false
  private lastId = 0
  private serving: (() => void) | undefined
  private readonly codes: number[] = []
  private failedStart = false
  private allGone!: () => void
  private readonly ended: Promise<number>

  constructor (options: SupervisorOptions, seam: SupervisorSeam) {
    this.o = options
    this.seam = seam
    this.slots = Array.from({ length: options.workers }, (_, i) => ({ n: i + 1, current: undefined, crashes: 0, gaveUp: false }))
    this.ended = new Promise<number>((resolve) => {
      this.allGone = () => { resolve(Math.max(this.failedStart ? 1 : 0, ...this.codes)) }
    })
  }

  /**
   * Resolves once the supervisor shut down and every worker is gone, with the exit code: the highest
   * a worker exited with, at least 1 when the workers could not start.
   */
  get finished (): Promise<number> { return this.ended }

  /** Pids of the workers serving a slot now, in slot order. */
  get workers (): Array<number | undefined> { return this.slots.map((s) => s.current) }

  /** Starts the control socket and every worker; resolves once all N serve. */
  async start (): Promise<void> {
    const server = net.createServer((conn) => { this.accept(conn) })
    this.server = server
    await new Promise<void>((resolve, reject) => { server.once('error', reject).listen(this.o.socketPath, resolve) })
    const first = this.slots[0] as Slot
    const up = new Promise<void>((resolve) => { this.serving = resolve })
    this.spawn(first, true)
    await up
  }

  /** Rolls every worker, `surge` slots at a time; resolves with the outcome (one rollout at a time). */
  async rollout (trigger: string): Promise<{ ok: boolean, message: string, refused?: true }> {
    const refused = this.rolling ? 'a rolling reboot is already in progress; one at a time' : this.stopping ? 'the supervisor is shutting down' : undefined
    if (refused !== undefined) {
      this.seam.log('warn', `graceful-reboot: supervisor: rolling reboot (${trigger}) refused: ${refused}`, { trigger })
      return { ok: false, message: refused, refused: true }
    }
    this.rolling = true
    const start = this.seam.now()
    this.seam.log('info', `graceful-reboot: supervisor: rolling reboot of ${this.slots.length} workers (${trigger}), ${this.o.surge} at a time`, { trigger })
    const queue = this.slots.filter((s) => s.current !== undefined)
    let failure: string | undefined
    const runner = async (): Promise<void> => {
      for (let slot = queue.shift(); slot !== undefined && failure === undefined; slot = queue.shift()) {
        const why = await this.rebootSlot(slot)
        if (why !== undefined) failure ??= why
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, this.o.surge) }, runner))
    this.rolling = false
    const ms = this.seam.now() - start
    const outcome = failure === undefined
      ? { ok: true, message: `every worker replaced in ${ms} ms: ${this.workers.join(', ')}` }
      : { ok: false, message: `${failure}; the rollout stopped, the slots not yet replaced keep their workers (${this.workers.join(', ')} serve)` }
    this.seam.log(outcome.ok ? 'info' : 'error', `graceful-reboot: supervisor: ${outcome.message}`, { ok: outcome.ok, ms })
    this.broadcast({ type: 'rollout-done', ...outcome })
    return outcome
  }

  /** Drains every worker; resolves with the exit code once all are gone (see `finished`). Idempotent. */
  shutdown (trigger: string): Promise<number> {
    if (!this.stopping) {
      this.stopping = true
      this.seam.log('info', `graceful-reboot: supervisor: ${trigger}: draining ${this.procs.size} workers`, { trigger })
      this.broadcast({ type: 'shutdown', timeout: null, trigger })
      this.checkGone()
    }
    return this.ended
  }

  /** Kills every worker it knows of (a second shutdown signal, or the supervisor's own failure). */
  kill (): void {
    for (const pid of this.procs.keys()) { try { process.kill(pid, 'SIGKILL') } catch {} }
    for (const c of this.children) c.kill('SIGKILL')
  }

  private rebootSlot (slot: Slot): Promise<string | undefined> {
    const pid = slot.current
    const proc = pid === undefined ? undefined : this.procs.get(pid)
    if (proc === undefined) return Promise.resolve(`slot ${slot.n} has no worker`)
    const id = ++this.lastId
    return new Promise((resolve) => {
      this.waiting.set(id, { pid: proc.pid, fn: (m) => {
        this.waiting.delete(id)
        if (m.type === 'rebooted') {
          slot.current = m.successor
          this.seam.log('info', `graceful-reboot: supervisor: slot ${slot.n}: worker ${proc.pid} replaced by ${m.successor}`, { slot: slot.n, old: proc.pid, successor: m.successor })
          resolve(undefined)
        } else if (m.type === 'reboot-failed') {
          resolve(`slot ${slot.n}: the replacement of worker ${proc.pid} failed (${m.code}): ${m.message}`)
        } else {
          resolve(`slot ${slot.n}: worker ${proc.pid} died during its reboot`)
        }
      } })
      this.tell(proc, { type: 'reboot', id, timeout: null })
    })
  }

  private accept (conn: net.Socket): void {
    let proc: Proc | undefined
    conn.setEncoding('utf8').on('data', jsonLines((raw) => {
      const m = raw as WorkerToSupervisor
      if (m.type === 'hello') {
        proc = { pid: m.pid, slot: m.slot, conn, announced: false, exitCode: undefined }
        this.procs.set(m.pid, proc)
        if (this.stopping) this.tell(proc, { type: 'shutdown', timeout: null, trigger: 'supervisor' })
      } else if (proc !== undefined) {
        this.message(proc, m)
      }
    }))
    conn.on('error', () => {})
    conn.on('close', () => { if (proc !== undefined) this.gone(proc) })
  }

  private message (proc: Proc, m: WorkerToSupervisor): void {
    const slot = this.slots[proc.slot - 1]
    if (m.type === 'announced') {
      proc.announced = true
      if (slot !== undefined && slot.current === proc.pid) slot.crashes = 0
      if (m.listeners > 0) this.expected = m.listeners
      this.announced()
    } else if (m.type === 'rollout') {
      // A rollout that runs tells every worker at its end; one refused tells the worker that asked.
      void this.rollout(`${m.trigger} in worker ${proc.pid}`).then((o) => { if (o.refused === true) this.tell(proc, { type: 'rollout-done', ok: false, message: o.message }) })
    } else if (m.type === 'rebooted' || m.type === 'reboot-failed') {
      this.waiting.get(m.id)?.fn(m)
    } else if (m.type === 'exiting') {
      proc.exitCode = m.code
      // The supervisor's exit code is its final drain's: an old worker of a rollout, or a crash replaced, does not count.
      if (this.stopping) this.codes.push(m.code)
    }
  }

  /** A worker announced: once the first has handed its sockets up, the others start; once all serve, the supervisor does. */
  private announced (): void {
    if (this.stopping || this.sockets.length === 0 || this.sockets.length < this.expected) return
    for (const s of this.slots) if (s.current === undefined && !s.gaveUp) this.spawn(s, false)
    if (this.slots.every((s) => s.current !== undefined && this.procs.get(s.current)?.announced === true)) {
      const serve = this.serving
      this.serving = undefined
      serve?.()
    }
  }

  private gone (proc: Proc): void {
    this.procs.delete(proc.pid)
    for (const w of [...this.waiting.values()]) if (w.pid === proc.pid) w.fn({ type: 'gone' })
    const slot = this.slots[proc.slot - 1]
    if (slot !== undefined && slot.current === proc.pid) {
      slot.current = undefined
      if (!this.stopping) this.respawn(slot, proc)
    }
    this.checkGone()
  }

  private respawn (slot: Slot, proc: Proc): void {
    if (!proc.announced) slot.crashes++
    if (slot.crashes >= MAX_START_CRASHES) {
      slot.gaveUp = true
      this.seam.log('error', `graceful-reboot: supervisor: slot ${slot.n}: its worker died ${slot.crashes} times before it served; not starting it again (fix the app; the other slots serve on)`, { slot: slot.n })
      // Without the sockets of a first worker that served, no other worker can start either.
      if (this.sockets.length === 0 || this.slots.every((s) => s.gaveUp)) {
        this.failedStart = true
        void this.shutdown('every worker fails at start')
      }
      return
    }
    const wait = Math.min(RESPAWN_MS * 2 ** Math.max(0, slot.crashes - 1), MAX_RESPAWN_MS)
    this.seam.log('warn', `graceful-reboot: supervisor: slot ${slot.n}: worker ${proc.pid} is gone${proc.exitCode === undefined ? ' (it did not drain: killed or crashed)' : ` (exit code ${proc.exitCode})`}; a new worker in ${wait} ms`, { slot: slot.n, pid: proc.pid, wait })
    this.seam.timer(wait, () => { if (!this.stopping && slot.current === undefined) this.spawn(slot, this.sockets.length === 0) })
  }

  private spawn (slot: Slot, bind: boolean): void {
    const fds = bind ? [] : this.sockets.map((s) => s.fd)
    const env: NodeJS.ProcessEnv = { ...this.o.env, [WORKER_ENV]: String(slot.n), [SUPERVISOR_ENV]: this.o.socketPath }
    // The supervisor is the unit's main process: a worker never talks to systemd itself.
    delete env.NOTIFY_SOCKET
    delete env.LISTEN_PID
    if (bind) {
      env[BIND_ENV] = '1'
      delete env.LISTEN_FDS
      delete env.LISTEN_FDNAMES
    } else {
      env.LISTEN_FDS = String(fds.length)
      env.LISTEN_FDNAMES = this.sockets.map((s) => encodeURIComponent(s.key)).join(':')
    }
    const stdio: SpawnOptions['stdio'] = ['inherit', 'inherit', 'inherit', ...fds, ...(bind ? ['ipc' as const] : [])]
    // A session of its own: a terminal's Ctrl-C reaches the supervisor only, which drains the workers.
    const child = this.seam.spawn('/bin/sh', ['-c', `export LISTEN_PID=$$ ${WORKER_PID_ENV}=$$; exec "$0" "$@"`, this.o.execPath, ...this.o.execArgv, this.o.script, ...this.o.args], { cwd: this.o.cwd, env, stdio, detached: true })
    slot.current = child.pid
    this.children.add(child)
    child.on('error', (err) => { this.seam.log('error', `graceful-reboot: supervisor: could not start a worker: ${err.message}`) })
    child.once('exit', () => {
      this.children.delete(child)
      // A worker that died before it connected is gone all the same.
      if (child.pid !== undefined && !this.procs.has(child.pid) && slot.current === child.pid) {
        this.gone({ pid: child.pid, slot: slot.n, conn: undefined, announced: false, exitCode: child.exitCode ?? undefined })
      }
      this.checkGone()
    })
    if (bind) {
      child.on('message', (m: unknown, handle: unknown) => {
        const msg = m as { type?: string, key?: string }
        if (msg?.type !== WORKER_LISTENER_MESSAGE || handle == null || typeof msg.key !== 'string') return
        const fd = (handle as { fd?: number }).fd
        if (typeof fd === 'number' && fd >= 0) this.sockets.push({ key: msg.key, fd, handle })
        if (this.sockets.length >= this.expected && child.connected) child.disconnect()
        this.announced()
      })
    }
    this.seam.log('info', `graceful-reboot: supervisor: slot ${slot.n}: started worker ${String(child.pid)}${bind ? ' (it binds the listening sockets)' : ''}`, { slot: slot.n, pid: child.pid })
  }

  private checkGone (): void {
    if (!this.stopping || this.procs.size > 0 || this.children.size > 0) return
    this.server?.close()
    this.allGone()
  }

  private tell (proc: Proc, m: SupervisorToWorker): void {
    if (proc.conn !== undefined && !proc.conn.destroyed) proc.conn.write(JSON.stringify(m) + '\n')
  }

  private broadcast (m: SupervisorToWorker): void {
    for (const p of this.procs.values()) this.tell(p, m)
  }
}
