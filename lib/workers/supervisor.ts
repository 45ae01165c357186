// Runs in the supervisor (`graceful-reboot run --workers N`): starts N workers of one script that share
// the listening sockets (the first binds them and hands copies up; the others, and every replacement,
// inherit them, systemd's LISTEN_FDS way), replaces a worker that dies (with backoff, and gives up on a
// slot whose worker keeps dying before it serves), rolls every worker one slot at a time (each worker's
// own reboot: its replacement inherits the sockets, its connections and its state, passes probation,
// then the old one drains), stops a rollout at the first failure, and drains every worker on a
// shutdown; its exit code is its final drain's. Its control socket is control.ts. The OS goes through
// `SupervisorSeam`.
import type { ChildProcess, SpawnOptions } from 'node:child_process'
import type * as net from 'node:net'
import { constants } from 'node:os'
import { PARENT_ENV } from '../handoff/protocol'
import { Balance } from './balance'
import { ControlSocket, type Hello } from './control'
import { BIND_ENV, REUSEPORT_ENV, SECRET_ENV, SUPERVISOR_ENV, WORKER_ENV, WORKER_LISTENER_MESSAGE, WORKER_PID_ENV, type SupervisorToWorker, type WorkerToSupervisor } from './protocol'
import type { SlotStatus } from '../status-file'
import { RolloutLog, type RolloutRecord, type SlotOutcome } from './rollouts'
import { WorkerTotals } from './totals'
import { isCounts } from '../handoff/counts'

export type SupervisorLogLevel = 'debug' | 'info' | 'warn' | 'error'

/** What the supervisor needs from the OS. */
export interface SupervisorSeam {
  spawn (command: string, args: readonly string[], options: SpawnOptions): ChildProcess
  timer (ms: number, fn: () => void): () => void
  now (): number
  log (level: SupervisorLogLevel, msg: string, fields?: Record<string, unknown>): void
  /** Whether process `pid` is alive (a zombie counts as gone). */
  alive (pid: number): boolean
  /** The environment process `pid` was started with (/proc/PID/environ, NUL-separated), or undefined where it cannot be read. */
  environ (pid: number): string | undefined
  /** Sends `signal` to `pid`; false when it is gone. */
  kill (pid: number, signal: NodeJS.Signals): boolean
  /** Called after every change a status file or a process table shows. */
  changed?: () => void
  /** Called when a rolling reboot starts (step 'spawned') and when it ends ('serving' or 'failed'). */
  rollout?: (record: RolloutRecord) => void
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
  /** The secret every worker's `hello` carries (it gets it in its environment). */
  secret: string
  /**
   * 'shared' (default): every worker accepts on the same listening sockets. 'per-worker': each slot's
   * TCP listeners are sockets of its own in an SO_REUSEPORT group (the kernel spreads connections over
   * the slots); Unix sockets stay shared. Needs a Node that binds with `reusePort` (`reusePortSupported`).
   */
  acceptQueues?: 'shared' | 'per-worker'
  /** Whether a worker above its share of the connections closes its excess keep-alive connections after their next response (default true). */
  rebalance?: boolean
}

/** A worker that dies before it serves this many times in a row: its slot is not started again. */
export const MAX_START_CRASHES = 5
/** The first wait before a dead worker is started again; it doubles per death before serving, up to MAX_RESPAWN_MS. */
export const RESPAWN_MS = 100
export const MAX_RESPAWN_MS = 10_000
/** Ms after which the supervisor says what it still waits for at start (then at each doubling, up to a minute). */
export const WAIT_NOTICE_MS = 5_000
/** The longest a rollout waits for a slot's old worker to hand its connections over before it reboots the next slot. */
const MOVED_WAIT_MAX_MS = 30_000
/** A worker that answers a rollout's reboot with ERR_GRACEFUL_REBOOT_IN_PROGRESS (its own reboot's probation) is asked again this many times, this many ms apart. */
const BUSY_RETRIES = 20
const BUSY_RETRY_MS = 250
/** Ms between two checks that a worker the supervisor did not spawn (a replacement) is gone once its connection closed. */
const GONE_POLL_MS = 20

interface Proc {
  pid: number
  slot: number
  /** The old worker whose reboot started it; null for a worker the supervisor spawned. */
  parent: number | null
  /** Set once its `hello` was verified. */
  conn: net.Socket | undefined
  /** The process the supervisor spawned (absent for a replacement a worker's reboot started). */
  child: ChildProcess | undefined
  childExit: { code: number | null, signal: NodeJS.Signals | null } | undefined
  announced: boolean
  rebooting: boolean
  /** The code its `exiting` line gave (its drain is over). */
  exitCode: number | undefined
  startedAt: number
  connClosed: boolean
  gone: boolean
  /** The connections its servers hold, as it last reported. */
  open: number
  /** Its reboot's connection transfer is over (its `moved` line); called once, or when it is gone. */
  moved: boolean
  onMoved: Array<() => void>
}
interface Slot { n: number, current: number | undefined, crashes: number, gaveUp: boolean, restarts: number, waiters: Array<(why: string | undefined) => void> }
type Pending = (m: WorkerToSupervisor | { type: 'gone' }) => void

export class Supervisor {
  private readonly o: SupervisorOptions
  private readonly seam: SupervisorSeam
  private readonly slots: Slot[]
  /** Every worker the supervisor knows: spawned by it, or a replacement whose `hello` was verified. */
  private readonly procs = new Map<number, Proc>()
  /** Pids of workers gone (the slot each served), for the replacement of a worker killed during its reboot. */
  private readonly former = new Map<number, number>()
  /** The listening sockets the first worker bound, kept (never accepting) for every later worker. */
  private readonly sockets: Array<{ key: string, fd: number, handle: unknown }> = []
  /**
   * Per-worker accept queues: each slot's own sockets (its first worker bound them), kept (never
   * accepting) for the slot's later workers, so that a slot's queue never closes while the supervisor
   * runs: connections hashed to it wait there while its worker is replaced.
   */
  /** Per-worker accept queues: the port the first worker's TCP listeners got, per listen key (every slot binds there). */
  private readonly ports: Record<string, number> = {}
  private readonly slotSockets = new Map<number, Array<{ key: string, fd: number, handle: unknown }>>()
  /** How many the first worker says it handed up (unknown until it announced). */
  private expected = Infinity
  /** The worker started to bind the listening sockets (until one announced). */
  private binder: number | undefined
  private readonly waiting = new Map<number, { pid: number, fn: Pending }>()
  private readonly control: ControlSocket<Proc>
  /** The counts of the workers' reboot lines, added up. */
  readonly totals = new WorkerTotals()
  private rolling = false
  private stopping = false
  /** Rebalancing: each worker's connection limit, from the counts they report. */
  private readonly balance: Balance<Proc>
  private lastId = 0
  private serving: (() => void) | undefined
  /** The exit code of each worker of the final drain (see `outcome`). */
  private readonly codes: number[] = []
  private failedStart = false
  /** The second signal that killed every worker: the exit code is 128 + its number. */
  private killedBy: number | undefined
  private allGone!: () => void
  private readonly ended: Promise<number>
  readonly rollouts = new RolloutLog()
  /** Counts of the final drain, for the summary line. */
  readonly drained = { clean: 0, failed: 0 }
  readonly startedAt: number

  constructor (options: SupervisorOptions, seam: SupervisorSeam) {
    this.o = options
    this.seam = seam
    this.startedAt = seam.now()
    this.slots = Array.from({ length: options.workers }, (_, i) => ({ n: i + 1, current: undefined, crashes: 0, gaveUp: false, restarts: 0, waiters: [] }))
    this.balance = new Balance<Proc>({
      timer: (ms, fn) => seam.timer(ms, fn),
      workers: () => this.procs.values(),
      serving: () => this.slots.filter((s) => s.current !== undefined && this.procs.get(s.current)?.announced === true).length,
      busy: () => this.rolling || this.stopping,
      tell: (p, m) => { this.tell(p, m) }
    }, options.rebalance !== false)
    this.control = new ControlSocket<Proc>({
      secret: options.secret,
      slots: options.workers,
      timer: (ms, fn) => seam.timer(ms, fn),
      warn: (msg, fields) => { seam.log('warn', msg, fields) },
      alive: (pid) => seam.alive(pid),
      environ: (pid) => seam.environ(pid),
      admit: (m, startedByReboot) => this.admit(m, startedByReboot),
      joined: (proc, conn) => { this.joined(proc, conn) },
      message: (proc, m) => { this.message(proc, m) },
      closed: (proc) => {
        proc.connClosed = true
        this.checkProc(proc)
      }
    })
    this.ended = new Promise<number>((resolve) => {
      this.allGone = () => { resolve(this.exitCode()) }
    })
  }

  /**
   * Resolves once the supervisor shut down and every worker is gone, with the exit code: 128 + the
   * signal after a second signal killed the workers; else the highest of its final drain's workers
   * (a worker's own exit code, 128 + the signal that killed it, 1 for one that died without draining);
   * at least 1 when the workers could not start.
   */
  get finished (): Promise<number> { return this.ended }

  /** Pids of the workers serving a slot now, in slot order. */
  get workers (): Array<number | undefined> { return this.slots.map((s) => s.current) }

  /** The supervisor's state, as one process's: 'running', 'rebooting' (a rollout runs) or 'draining'. */
  get state (): 'running' | 'rebooting' | 'draining' { return this.stopping ? 'draining' : this.rolling ? 'rebooting' : 'running' }

  /** The process table: one row per slot. */
  table (): SlotStatus[] {
    return this.slots.map((s) => {
      const p = s.current === undefined ? undefined : this.procs.get(s.current)
      const state: SlotStatus['state'] = p === undefined ? (s.gaveUp ? 'given up' : 'restarting') : this.stopping ? 'draining' : p.rebooting ? 'rebooting' : p.announced ? 'serving' : 'starting'
      return { slot: s.n, pid: p?.pid ?? null, state, startedAt: p?.startedAt ?? null, restarts: s.restarts, stats: this.totals.slot(s.n) ?? null }
    })
  }

  /** The listening sockets the workers share (kept by the supervisor until it exits). */
  get listeners (): ReadonlyArray<{ key: string, fd: number }> { return this.sockets }

  /** Starts the control socket and every worker; resolves once all N serve. */
  async start (): Promise<void> {
    await this.control.listen(this.o.socketPath)
    const first = this.slots[0] as Slot
    const up = new Promise<void>((resolve) => { this.serving = resolve })
    this.spawn(first, true)
    this.noticeWaits(WAIT_NOTICE_MS)
    await up
  }

  /** Rolls every worker, `surge` slots at a time; resolves with the outcome (one rollout at a time). */
  async rollout (trigger: string): Promise<{ ok: boolean, message: string, refused?: true, code?: string }> {
    const refused = this.rolling
      ? { message: 'a rolling reboot is already in progress; one at a time', code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' }
      : this.stopping ? { message: 'the supervisor is shutting down', code: 'ERR_GRACEFUL_SHUTTING_DOWN' } : undefined
    if (refused !== undefined) {
      this.seam.log('warn', `graceful-reboot: supervisor: rolling reboot (${trigger}) refused: ${refused.message}`, { trigger })
      this.rollouts.refused(trigger, refused, this.seam.now())
      this.seam.changed?.()
      return { ok: false, refused: true, ...refused }
    }
    this.rolling = true
    this.balance.apply()
    const start = this.seam.now()
    const record = this.rollouts.begin(trigger, start)
    this.seam.rollout?.(record)
    this.seam.changed?.()
    this.seam.log('info', `graceful-reboot: supervisor: rolling reboot of ${this.slots.length} workers (${trigger}), ${this.o.surge} at a time`, { trigger })
    const queue = [...this.slots]
    let failure: { message: string, code: string } | undefined
    const runner = async (): Promise<void> => {
      for (let slot = queue.shift(); slot !== undefined && failure === undefined; slot = queue.shift()) {
        const outcome = await this.rebootSlot(slot, record)
        if (!outcome.ok) failure ??= { message: outcome.message, code: outcome.code ?? 'ERR_GRACEFUL_SUCCESSOR_EXITED' }
        // The next slot once this one's old worker has handed its connections over: the moves and the next start-up do not compete for the cores.
        else if (outcome.old !== null && queue.length > 0) await this.handedOver(slot, outcome.old)
      }
    }
    await Promise.all(Array.from({ length: Math.max(1, this.o.surge) }, runner))
    this.rolling = false
    // The new workers' counts may not be in yet: a limit from the counts once they settle.
    this.balance.unsettled()
    const ms = this.seam.now() - start
    const outcome = failure === undefined
      ? { ok: true, message: `every worker replaced in ${ms} ms: ${this.serveList()}` }
      : { ok: false, message: `${failure.message}; the rollout stopped, the slots not yet replaced keep their workers (${this.serveList()})`, code: failure.code }
    this.rollouts.end(record, outcome, this.seam.now())
    this.seam.rollout?.(record)
    this.seam.changed?.()
    this.seam.log(outcome.ok ? 'info' : 'error', `graceful-reboot: supervisor: ${outcome.message}`, { ok: outcome.ok, ms })
    this.broadcast({ type: 'rollout-done', ...outcome })
    return outcome
  }

  /** Drains every worker; resolves with the exit code once all are gone (see `finished`). Idempotent. */
  shutdown (trigger: string): Promise<number> {
    if (!this.stopping) {
      this.stopping = true
      this.balance.apply()
      this.seam.log('info', `graceful-reboot: supervisor: ${trigger}: draining ${this.procs.size} workers`, { trigger })
      this.control.refuse('the supervisor is shutting down')
      this.broadcast({ type: 'shutdown', timeout: null, trigger })
      // A worker that has not connected yet is told when it does; one that never will is stopped by a signal.
      for (const p of this.procs.values()) if (p.conn === undefined && p.child !== undefined) p.child.kill('SIGTERM')
      for (const s of this.slots) for (const fn of s.waiters.splice(0)) fn('the supervisor is shutting down')
      this.seam.changed?.()
      this.checkGone()
    }
    return this.ended
  }

  /** Kills every worker it knows of (a second shutdown signal, number `signo`): the exit code is then 128 + `signo`. */
  kill (signo: number): void {
    this.killedBy ??= signo
    for (const p of this.procs.values()) {
      if (p.child !== undefined) p.child.kill('SIGKILL')
      else this.seam.kill(p.pid, 'SIGKILL')
    }
  }

  private exitCode (): number {
    if (this.killedBy !== undefined) return 128 + this.killedBy
    return Math.max(this.failedStart ? 1 : 0, ...this.codes)
  }

  private serveList (): string {
    return this.slots.map((s) => `slot ${s.n}: ${s.current ?? 'none'}`).join(', ')
  }

  private async rebootSlot (slot: Slot, record: RolloutRecord): Promise<SlotOutcome> {
    const pid = slot.current
    const proc = pid === undefined ? undefined : this.procs.get(pid)
    const started = this.seam.now()
    const done = (o: Omit<SlotOutcome, 'slot' | 'ms'>): SlotOutcome => {
      const outcome = { slot: slot.n, ms: this.seam.now() - started, ...o }
      this.rollouts.slot(record, outcome)
      this.seam.changed?.()
      return outcome
    }
    if (proc === undefined || !proc.announced) {
      // A slot whose worker is being started again (or was given up) runs the code on disk once it serves.
      const again = slot.gaveUp
      if (again) {
        slot.gaveUp = false
        slot.crashes = 0
        if (slot.current === undefined) this.spawn(slot, this.sockets.length === 0)
      }
      this.seam.log('info', `graceful-reboot: supervisor: slot ${slot.n} ${again ? 'was given up: started again' : 'is starting a new worker'}; the rollout waits for it to serve`, { slot: slot.n })
      const why = await this.awaitServing(slot)
      if (why !== undefined) return done({ ok: false, old: null, successor: null, message: `slot ${slot.n}: ${why}` })
      const message = `slot ${slot.n}: worker ${String(slot.current)} started with the code on disk`
      this.seam.log('info', `graceful-reboot: supervisor: ${message}`, { slot: slot.n, successor: slot.current })
      return done({ ok: true, old: null, successor: slot.current ?? null, message })
    }
    proc.rebooting = true
    this.seam.changed?.()
    let outcome = await this.askReboot(slot, proc)
    // A worker that a reboot started a moment ago may still be in its own probation: ask again once it is over.
    for (let i = 0; i < BUSY_RETRIES && !outcome.ok && outcome.code === 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' && !this.stopping && this.procs.has(proc.pid); i++) {
      this.seam.log('debug', `graceful-reboot: supervisor: slot ${slot.n}: worker ${proc.pid} cannot reboot yet; asking again in ${BUSY_RETRY_MS} ms`, { slot: slot.n, pid: proc.pid })
      await new Promise<void>((resolve) => { this.seam.timer(BUSY_RETRY_MS, resolve) })
      outcome = await this.askReboot(slot, proc)
    }
    proc.rebooting = false
    const ms = this.seam.now() - started
    this.seam.log(outcome.ok ? 'info' : 'error', `graceful-reboot: supervisor: ${outcome.message} (${ms} ms)`, { slot: slot.n, old: proc.pid, successor: outcome.successor, ms })
    return done(outcome)
  }

  /**
   * Resolves once the old worker `pid` of a slot's reboot has handed its connections over (its `moved`
   * line), is gone, or MOVED_WAIT_MAX_MS passed (its drain goes on: long requests do not hold the rollout).
   */
  private async handedOver (slot: Slot, pid: number): Promise<void> {
    const proc = this.procs.get(pid)
    if (proc === undefined || proc.moved) return
    const from = this.seam.now()
    await new Promise<void>((resolve) => {
      const cancel = this.seam.timer(MOVED_WAIT_MAX_MS, () => { proc.onMoved = proc.onMoved.filter((fn) => fn !== done); resolve() })
      const done = (): void => { cancel(); resolve() }
      proc.onMoved.push(done)
    })
    this.seam.log('debug', `graceful-reboot: supervisor: slot ${slot.n}: worker ${pid} ${proc.moved ? 'handed its connections over' : proc.gone ? 'is gone' : 'still moves connections'} after ${this.seam.now() - from} ms; next slot`, { slot: slot.n, pid, moved: proc.moved })
  }

  /** Tells `proc` to reboot; resolves with how it went. */
  private askReboot (slot: Slot, proc: Proc): Promise<Omit<SlotOutcome, 'slot' | 'ms'>> {
    const id = ++this.lastId
    return new Promise((resolve) => {
      this.waiting.set(id, { pid: proc.pid, fn: (m) => {
        this.waiting.delete(id)
        if (m.type === 'rebooted') {
          slot.current = m.successor
          resolve({ ok: true, old: proc.pid, successor: m.successor, message: `slot ${slot.n}: worker ${proc.pid} replaced by ${m.successor}` })
        } else if (m.type === 'reboot-failed') {
          resolve({ ok: false, old: proc.pid, successor: null, code: m.code, message: `slot ${slot.n}: the replacement of worker ${proc.pid} failed (${m.code}): ${m.message}` })
        } else {
          const heir = slot.current !== undefined && slot.current !== proc.pid ? ` (its replacement ${slot.current} took the slot)` : ''
          resolve({ ok: false, old: proc.pid, successor: null, message: `slot ${slot.n}: worker ${proc.pid} died during its reboot${heir}` })
        }
      } })
      this.tell(proc, { type: 'reboot', id, timeout: null })
    })
  }

  /** Resolves once a worker of `slot` serves (undefined), or with why it will not. */
  private awaitServing (slot: Slot): Promise<string | undefined> {
    const p = slot.current === undefined ? undefined : this.procs.get(slot.current)
    if (p?.announced === true) return Promise.resolve(undefined)
    if (this.stopping) return Promise.resolve('the supervisor is shutting down')
    return new Promise((resolve) => { slot.waiters.push(resolve) })
  }

  /** The worker a verified `hello` names, or why the supervisor does not know it. */
  private admit (m: Hello, startedByReboot: (parent: number) => string | undefined): Proc | string {
    const { pid, slot } = m
    const known = this.procs.get(pid)
    if (known?.conn !== undefined) return `pid ${pid} is already connected`
    if (known !== undefined) return known.slot === slot && !known.gone ? known : `pid ${pid} claims slot ${slot}, not its own`
    // A replacement a worker's reboot started: its old worker is (or was) a worker of the same slot.
    const parent = m.parent
    if (typeof parent !== 'number') return `pid ${pid} is not a worker this supervisor started`
    const parentSlot = this.procs.get(parent)?.slot ?? this.former.get(parent)
    if (parentSlot === undefined) return `pid ${pid} names ${parent} as its old worker, which is not a worker`
    if (parentSlot !== slot) return `pid ${pid} claims slot ${slot}, its old worker's is ${parentSlot}`
    const why = startedByReboot(parent)
    if (why !== undefined) return why
    if (this.seam.environ(pid) === undefined && this.procs.get(parent)?.conn === undefined) return `pid ${pid} names ${parent} as its old worker, which is not connected`
    const proc: Proc = { ...this.newProc(pid, slot, undefined), parent }
    this.procs.set(pid, proc)
    return proc
  }

  /** A verified worker connected: a replacement whose old worker is gone takes the slot, or drains if the slot has a worker again. */
  private joined (proc: Proc, conn: net.Socket): void {
    proc.conn = conn
    this.seam.log('debug', `graceful-reboot: supervisor: worker ${proc.pid} of slot ${proc.slot} connected`, { slot: proc.slot, pid: proc.pid, parent: proc.parent })
    if (this.stopping) {
      this.tell(proc, { type: 'shutdown', timeout: null, trigger: 'supervisor' })
      return
    }
    const slot = this.slots[proc.slot - 1] as Slot
    if (proc.parent === null || this.procs.has(proc.parent) || slot.current === proc.pid) return
    if (slot.current === undefined) {
      slot.current = proc.pid
      this.seam.log('warn', `graceful-reboot: supervisor: slot ${slot.n}: worker ${proc.parent} died during its reboot; its replacement ${proc.pid} takes the slot`, { slot: slot.n, pid: proc.pid })
      this.seam.changed?.()
    } else {
      this.seam.log('warn', `graceful-reboot: supervisor: slot ${slot.n}: worker ${proc.parent} died during its reboot and the slot has a new worker (${slot.current}); its replacement ${proc.pid} drains`, { slot: slot.n, pid: proc.pid })
      this.tell(proc, { type: 'shutdown', timeout: null, trigger: 'supervisor' })
    }
  }

  private message (proc: Proc, m: WorkerToSupervisor): void {
    const slot = this.slots[proc.slot - 1]
    if (m.type === 'announced') {
      proc.announced = true
      if (slot !== undefined && slot.current === proc.pid) {
        slot.crashes = 0
        for (const fn of slot.waiters.splice(0)) fn(undefined)
      }
      // The first worker says how many sockets it bound (0 for an app that listens on none the package tracks).
      if (this.expected === Infinity && proc.pid === this.binder) this.expected = m.listeners
      this.seam.changed?.()
      this.announced()
      this.balance.unsettled()
    } else if (m.type === 'rollout') {
      // A rollout that runs tells every worker at its end; one refused tells the worker that asked.
      void this.rollout(`${m.trigger} in worker ${proc.pid}`).then((o) => { if (o.refused === true) this.tell(proc, { type: 'rollout-done', ok: false, message: o.message, code: o.code }) })
    } else if (m.type === 'rebooted' || m.type === 'reboot-failed') {
      const w = this.waiting.get(m.id)
      if (w?.pid === proc.pid) w.fn(m)
    } else if (m.type === 'moved') {
      this.movedOn(proc)
    } else if (m.type === 'exiting') {
      proc.exitCode = typeof m.code === 'number' ? m.code : 1
    } else if (m.type === 'stats') {
      this.stats(proc, m)
    } else if (m.type === 'connections') {
      this.balance.counted(proc, m.open)
    }
  }

  /** A worker's counts: added up per slot (`totals`), shown in the status file. */
  private stats (proc: Proc, m: Extract<WorkerToSupervisor, { type: 'stats' }>): void {
    if (!isCounts(m.counts) || typeof m.reporting !== 'boolean' || !Number.isInteger(m.generation)) return
    this.totals.update(proc.slot, proc.pid, { generation: m.generation, reporting: m.reporting, counts: m.counts, parent: proc.parent })
    this.seam.changed?.()
  }

  /** A worker announced: once the first has handed its sockets up, the others start; once all serve, the supervisor does. */
  private announced (): void {
    if (this.stopping || this.expected === Infinity || this.sockets.length < this.expected) return
    if (this.expected === 0 && this.serving !== undefined && this.slots.some((s) => s.current === undefined)) {
      this.seam.log('warn', 'graceful-reboot: supervisor: the first worker serves on no listening socket the package tracks: the other workers start without sockets (an app that serves HTTP listens with the plugin registered, or attaches its server: docs/workers.md)')
    }
    // At start only: later, a slot without a worker is started again by `respawn` (with its backoff).
    if (this.serving !== undefined) for (const s of this.slots) if (s.current === undefined && !s.gaveUp) this.spawn(s, false)
    // A slot given up does not hold the start back: the others serve (and the log said why).
    if (this.slots.every((s) => s.gaveUp || (s.current !== undefined && this.procs.get(s.current)?.announced === true))) {
      const serve = this.serving
      this.serving = undefined
      serve?.()
    }
  }

  /** At start: says, after `ms` and then at each doubling, which workers the supervisor still waits for. */
  private noticeWaits (ms: number): void {
    this.seam.timer(ms, () => {
      if (this.serving === undefined || this.stopping) return
      const waits = this.slots.flatMap((s) => {
        const p = s.current === undefined ? undefined : this.procs.get(s.current)
        if (p === undefined) return s.gaveUp || s.n === 1 || this.expected !== Infinity ? [] : [`slot ${s.n} starts once worker 1 serves`]
        if (p.announced) return []
        if (p.conn === undefined) return [`slot ${s.n}: worker ${p.pid} has not connected (does the script load graceful-reboot? it connects when it registers the plugin or calls createGraceful())`]
        return [`slot ${s.n}: worker ${p.pid} has not announced that it serves (it does once its server listens with the plugin registered; an app with no server calls lifecycle().announceReady())`]
      })
      if (waits.length > 0) this.seam.log('warn', `graceful-reboot: supervisor: still waiting after ${Math.round((this.seam.now() - this.startedAt) / 1000)} s: ${waits.join('; ')}`)
      this.noticeWaits(Math.min(ms * 2, 60_000))
    })
  }

  /** A worker is gone once its connection closed and its process ended. */
  private checkProc (proc: Proc): void {
    if (proc.gone || (proc.conn !== undefined && !proc.connClosed)) return
    if (proc.child !== undefined) {
      if (proc.childExit !== undefined) this.gone(proc)
      return
    }
    // A replacement is not the supervisor's child: it is gone once no such process runs.
    if (!this.seam.alive(proc.pid)) this.gone(proc)
    else this.seam.timer(GONE_POLL_MS, () => { this.checkProc(proc) })
  }

  private movedOn (proc: Proc): void {
    proc.moved = true
    for (const fn of proc.onMoved.splice(0)) fn()
  }

  private gone (proc: Proc): void {
    proc.gone = true
    for (const fn of proc.onMoved.splice(0)) fn()
    this.procs.delete(proc.pid)
    this.former.set(proc.pid, proc.slot)
    if (this.former.size > 256) this.former.delete(this.former.keys().next().value as number)
    for (const w of [...this.waiting.values()]) if (w.pid === proc.pid) w.fn({ type: 'gone' })
    if (this.stopping) {
      const code = outcome(proc)
      this.codes.push(code)
      if (code === 0) this.drained.clean++
      else this.drained.failed++
    }
    const slot = this.slots[proc.slot - 1]
    if (slot !== undefined && slot.current === proc.pid) {
      // The replacement its reboot started, if it runs, takes the slot.
      const heir = [...this.procs.values()].find((p) => p.parent === proc.pid && p.conn !== undefined && !p.connClosed)
      slot.current = heir?.pid
      if (heir !== undefined) {
        this.seam.log('warn', `graceful-reboot: supervisor: slot ${slot.n}: worker ${proc.pid} died during its reboot; its replacement ${heir.pid} takes the slot`, { slot: slot.n, pid: heir.pid })
        if (heir.announced) for (const fn of slot.waiters.splice(0)) fn(undefined)
      } else if (!this.stopping) {
        this.respawn(slot, proc)
      }
    }
    this.balance.unsettled()
    this.seam.changed?.()
    this.checkGone()
  }

  private respawn (slot: Slot, proc: Proc): void {
    if (!proc.announced) slot.crashes++
    if (slot.crashes >= MAX_START_CRASHES) {
      slot.gaveUp = true
      this.closeQueues(slot)
      for (const fn of slot.waiters.splice(0)) fn(`its worker died ${slot.crashes} times before it served`)
      this.seam.log('error', `graceful-reboot: supervisor: slot ${slot.n}: its worker died ${slot.crashes} times before it served; not starting it again (fix the app; the other slots serve on; a rolling reboot starts it again)`, { slot: slot.n })
      // Without the sockets of a first worker that served, no other worker can start either.
      if (this.expected === Infinity || this.slots.every((s) => s.gaveUp)) {
        this.failedStart = true
        void this.shutdown('every worker fails at start')
      } else {
        this.announced()
      }
      return
    }
    const wait = Math.min(RESPAWN_MS * 2 ** Math.max(0, slot.crashes - 1), MAX_RESPAWN_MS)
    const how = outcomeText(proc)
    this.seam.log('warn', `graceful-reboot: supervisor: slot ${slot.n}: worker ${proc.pid} is gone (${how}); a new worker in ${wait} ms`, { slot: slot.n, pid: proc.pid, wait })
    this.seam.timer(wait, () => {
      if (this.stopping || slot.current !== undefined) return
      slot.restarts++
      this.spawn(slot, this.expected === Infinity)
    })
  }

  /**
   * Starts a worker of `slot`. `bind`: the first worker, which binds every listening socket. Otherwise
   * it inherits the shared sockets; with per-worker queues, the slot's own sockets, or (a slot that has
   * none yet) only the shared Unix sockets, and it binds its TCP listeners into their SO_REUSEPORT groups.
   */
  private spawn (slot: Slot, bind: boolean): void {
    const perWorker = this.o.acceptQueues === 'per-worker'
    const own = perWorker ? this.slotSockets.get(slot.n) : undefined
    const joins = perWorker && !bind && own === undefined && this.sockets.some((s) => s.key.startsWith('tcp:'))
    const inherit = bind ? [] : joins ? this.sockets.filter((s) => !s.key.startsWith('tcp:')) : own ?? this.sockets
    const binds = bind || joins
    const fds = inherit.map((s) => s.fd)
    const env: NodeJS.ProcessEnv = { ...this.o.env, [WORKER_ENV]: String(slot.n), [SUPERVISOR_ENV]: this.o.socketPath, [SECRET_ENV]: this.o.secret }
    // The supervisor is the unit's main process: a worker never talks to systemd itself.
    delete env.NOTIFY_SOCKET
    delete env.LISTEN_PID
    delete env[PARENT_ENV]
    delete env[REUSEPORT_ENV]
    if (binds) env[BIND_ENV] = '1'
    else delete env[BIND_ENV]
    // The slots' TCP sockets share the port the first worker got (it may have asked for port 0).
    if (perWorker && binds) env[REUSEPORT_ENV] = JSON.stringify(this.ports)
    if (bind) {
      delete env.LISTEN_FDS
      delete env.LISTEN_FDNAMES
    } else {
      env.LISTEN_FDS = String(fds.length)
      env.LISTEN_FDNAMES = inherit.map((s) => encodeURIComponent(s.key)).join(':')
    }
    const stdio: SpawnOptions['stdio'] = ['inherit', 'inherit', 'inherit', ...fds, ...(binds ? ['ipc' as const] : [])]
    // A session of its own: a terminal's Ctrl-C reaches the supervisor only, which drains the workers.
    const child = this.seam.spawn('/bin/sh', ['-c', `export LISTEN_PID=$$ ${WORKER_PID_ENV}=$$; exec "$0" "$@"`, this.o.execPath, ...this.o.execArgv, this.o.script, ...this.o.args], { cwd: this.o.cwd, env, stdio, detached: true })
    child.on('error', (err) => { this.seam.log('error', `graceful-reboot: supervisor: could not start a worker: ${err.message}`) })
    if (child.pid === undefined) {
      // spawn failed at once ('error' follows): counts as a death before serving.
      slot.current = undefined
      if (!this.stopping) this.respawn(slot, this.newProc(0, slot.n, undefined))
      return
    }
    const proc = this.newProc(child.pid, slot.n, child)
    if (bind) this.binder = child.pid
    slot.current = child.pid
    this.procs.set(child.pid, proc)
    child.once('exit', (code, signal) => {
      proc.childExit = { code, signal }
      // A worker that exits closes its connection: wait for that too, so that its last lines are read.
      this.checkProc(proc)
    })
    if (binds) {
      child.on('message', (m: unknown, handle: unknown) => {
        const msg = m as { type?: string, key?: string, port?: unknown }
        if (msg?.type !== WORKER_LISTENER_MESSAGE || handle == null || typeof msg.key !== 'string') return
        const fd = (handle as { fd?: number }).fd
        if (bind && typeof fd === 'number' && fd >= 0) {
          this.sockets.push({ key: msg.key, fd, handle })
          if (typeof msg.port === 'number') this.ports[msg.key] = msg.port
        }
        if (typeof fd === 'number' && fd >= 0) {
          const own = this.slotSockets.get(slot.n) ?? []
          own.push({ key: msg.key, fd, handle })
          this.slotSockets.set(slot.n, own)
          if (own.length >= this.expected && child.connected) child.disconnect()
        }
        this.announced()
      })
    }
    this.seam.log('debug', `graceful-reboot: supervisor: slot ${slot.n}: started worker ${String(child.pid)}${bind ? ' (it binds the listening sockets)' : joins ? ' (it binds its own accept queues)' : ''}`, { slot: slot.n, pid: child.pid })
    this.seam.changed?.()
  }

  /**
   * A slot given up closes its own TCP queues (per-worker queues): no worker would accept what the
   * kernel hashes to them. Connections queued there are reset; later ones go to the other slots.
   */
  private closeQueues (slot: Slot): void {
    if (this.o.acceptQueues !== 'per-worker') return
    const own = this.slotSockets.get(slot.n)
    if (own === undefined) return
    this.slotSockets.delete(slot.n)
    for (const s of own) {
      if (!s.key.startsWith('tcp:')) continue
      try { (s.handle as { close?: () => void }).close?.() } catch {}
    }
  }

  private newProc (pid: number, slot: number, child: ChildProcess | undefined): Proc {
    return { pid, slot, parent: null, conn: undefined, child, childExit: undefined, announced: false, rebooting: false, exitCode: undefined, startedAt: this.seam.now(), connClosed: false, gone: false, open: 0, moved: false, onMoved: [] }
  }

  private checkGone (): void {
    if (!this.stopping || this.procs.size > 0) return
    this.control.close()
    this.allGone()
  }

  private tell (proc: Proc, m: SupervisorToWorker): void {
    if (proc.conn !== undefined && !proc.conn.destroyed) proc.conn.write(JSON.stringify(m) + '\n')
  }

  private broadcast (m: SupervisorToWorker): void {
    for (const p of this.procs.values()) this.tell(p, m)
  }
}

/**
 * A worker's part in the supervisor's exit code: 128 + the signal that killed it; else the code its
 * drain reported (its `exiting` line); else its exit code; 1 when it died without draining and it was
 * not the supervisor's child (a replacement, whose exit status the supervisor cannot read).
 */
export function outcome (p: Pick<Proc, 'childExit' | 'exitCode'>): number {
  const signal = p.childExit?.signal
  if (signal != null) return 128 + signalNumber(signal)
  if (p.exitCode !== undefined) return p.exitCode
  if (p.childExit?.code != null) return p.childExit.code
  return 1
}

function outcomeText (p: Pick<Proc, 'childExit' | 'exitCode'>): string {
  if (p.childExit?.signal != null) return `killed by ${p.childExit.signal}`
  if (p.exitCode !== undefined) return `drained, exit code ${p.exitCode}`
  if (p.childExit?.code != null) return `exit code ${p.childExit.code}, without draining`
  return 'it did not drain: killed or crashed'
}

function signalNumber (signal: NodeJS.Signals): number {
  return constants.signals[signal] ?? 0
}
