// Runs in both processes: the one owner of process state (running -> draining -> stopped, and
// rebooting), shared by every app in the process and by every copy of the package: the registered
// apps, their listening sockets, the shutdown and its exit code. A reboot's old side lives in
// outgoing/, the new side's announcement in incoming/.
import { EventEmitter } from 'node:events'
import { InvalidOptionError, type RebootError, describe } from './errors'
import type { GracefulUnit, HandOverFor } from './drain/app'
import type { ShutdownReason } from './drain/finalizers'
import type { HandoffEvent, LifecycleEvents, LifecycleState, RebootOptions, ShutdownOptions, ShutdownResult } from './events'
import { exitCodes } from './exit-codes'
import { ListenerRegistry } from './handoff/listeners'
import { Announcer } from './incoming/announce'
import { detectLauncher, readsPast, relaysSignals, type Launcher } from './launcher'
import { readInherited, type Inherited } from './incoming/inherited'
import { IncomingReboot } from './incoming/successor'
import { taggedLogger, type LogRole, type Logger } from './log'
import { DEFAULTS, ms } from './options'
import { realHost, realProcess, type ProcessSeam, type RebootHost } from './os'
import { OutgoingReboot } from './outgoing/reboot'
import { rebootRefusal } from './outgoing/refusal'
import { removePidFile, writePidFile } from './pidfile'
import { installSignals, unionSignals } from './signals'

/** What the lifecycle needs from the process beyond the seam: the reboot host and the sockets it inherited. */
export type LifecycleHost = RebootHost & {
  /** Reads the sockets this process inherited (called once per process). */
  inherited: () => Inherited
}

const realLifecycleHost: LifecycleHost = { ...realHost, inherited: readInherited }

/** How long a cluster worker stays up after its drain, to answer connections in transit from the primary. */
export const CLUSTER_EXIT_LINGER_MS = 300

/**
 * The process-wide coordinator. `shutdown()` drains every registered app in parallel, runs their
 * framework close, decides the exit code and, unless an app asked `exit: false`, exits.
 */
export class Lifecycle extends EventEmitter<LifecycleEvents> {
  readonly seam: ProcessSeam
  /** The listening sockets of every tracked server: what a reboot hands to the successor. */
  readonly listening = new ListenerRegistry()
  private readonly host: LifecycleHost
  private current: LifecycleState = 'running'
  private readonly units = new Set<GracefulUnit>()
  private stopping: Promise<ShutdownResult> | undefined
  private crashError: unknown
  /** What started the shutdown under way. */
  private cause: { reason: ShutdownReason, trigger: string } | undefined
  /** The shutdown signal that started or joined the shutdown under way: the next one is a second signal. */
  private signalled: NodeJS.Signals | undefined
  private signalledAt: number | undefined
  private uninstallSignals: () => void = () => {}
  /** The signal of a launcher's restart that reached this shutdown (nodemon's SIGUSR2): the process exits by it. */
  private restartBy: NodeJS.Signals | undefined
  private detected: Launcher | undefined
  private launcherLogged = false
  private rebooting: Promise<number> | undefined
  private outgoing: OutgoingReboot | undefined
  /** Set by a reboot for its drain: connections move to the successor. */
  private handOver: HandOverFor | undefined
  /** Rolled-back successors that may still be draining: none may outlive this process. */
  private readonly leftovers = new Set<{ kill: () => void }>()
  private announcer: Announcer | undefined
  private fromEnv: Inherited | undefined
  /** In a successor: its side of the reboot that started it (set up at the first register). */
  private incoming: IncomingReboot | undefined
  private incomingSetUp = false
  private readySwitch = true
  /** This process started a reboot that has not failed: its role is 'old' until it exits. */
  private handingOver = false
  private processLog: Logger | undefined

  constructor (seam: ProcessSeam = realProcess, host: LifecycleHost = realLifecycleHost) {
    super()
    this.seam = seam
    this.host = host
  }

  get state (): LifecycleState { return this.current }

  /** What started the shutdown under way (its reason and trigger); undefined while none is. */
  get shutdownCause (): { reason: ShutdownReason, trigger: string } | undefined { return this.cause }

  /** The shutdown signal that started or joined the shutdown under way, if any. */
  get shutdownSignal (): NodeJS.Signals | undefined { return this.signalled }

  /** When the shutdown signal that started or joined the shutdown under way arrived (seam clock). */
  get shutdownSignalAt (): number | undefined { return this.signalledAt }

  /** Records that a shutdown signal reached the shutdown under way (or is about to start one). */
  noteShutdownSignal (signal: NodeJS.Signals): void {
    if (this.signalled !== undefined) return
    this.signalled = signal
    this.signalledAt = this.seam.now()
  }

  /**
   * Whether this process runs under a launcher in its own process group that passes a terminal's
   * signal on to it (npm, yarn, pnpm, npx, nodemon, tsx): a Ctrl-C then arrives twice.
   */
  get signalsRelayed (): boolean {
    return relaysSignals(this.launcher.kind)
  }

  /** Records the signal a launcher restarts the app with (nodemon): once drained, the process exits by it. */
  noteRestartSignal (signal: NodeJS.Signals): void {
    this.restartBy ??= signal
  }

  /**
   * What runs this process (a terminal, systemd, nodemon, node --watch, tsx, an npm script, PM2...),
   * read once from its parent process (lib/launcher.ts).
   */
  get launcher (): Launcher {
    this.detected ??= detectLauncher(this.host.launcherFacts(readsPast))
    return this.detected
  }

  /** The launcher whose expectations apply: none when an app set `launcher: 'ignore'`. */
  private launcherRules (): Launcher | undefined {
    if ([...this.units].some((u) => u.options.launcher === 'ignore')) return undefined
    return this.launcher
  }

  /** The sockets this process inherited (from the old process of a reboot, or systemd), read once. */
  get inherited (): Inherited {
    this.fromEnv ??= this.host.inherited()
    return this.fromEnv
  }

  /** Whether this process announced that it serves (`announceReady()`): /health/startup answers 200 from then on. */
  get started (): boolean { return this.announcer?.announced === true }

  /** The manual readiness switch (default true): false takes this process out of traffic (/health/ready 503) without draining. */
  get readyForTraffic (): boolean { return this.readySwitch }

  /** Sets the manual readiness switch; /health/ready also needs state 'running' (or 'rebooting') and `started`. */
  setReady (ready: boolean): void {
    if (typeof ready !== 'boolean') throw new InvalidOptionError(`setReady() takes true or false, got ${describe(ready)}`)
    this.readySwitch = ready
  }

  /** Why `reboot()` would be refused right now (the RebootError it would reject with), or undefined. */
  canReboot (): RebootError | undefined {
    return rebootRefusal({
      state: this.current,
      rebooting: this.rebooting !== undefined,
      seam: this.seam,
      host: this.host,
      launcher: () => this.launcherRules(),
      blockers: () => [...this.units].map((u) => u.rebootBlocker?.())
    })
  }

  /** The logger of the first registered app, for process-level messages (stderr lines without one). */
  get log (): Logger {
    for (const u of this.units) return u.log
    this.processLog ??= this.logger()
    return this.processLog
  }

  /**
   * The logger the package writes through for an app whose own logger is `base` (without one: lines
   * on stderr). Every line names this process's pid and its `role`; error lines also go to stderr
   * where `base` drops them (Fastify's default `logger: false`).
   */
  logger (base?: Logger): Logger {
    return taggedLogger(base, () => ({ pid: this.seam.pid, role: this.role }))
  }

  /**
   * This process's side of a reboot: 'old' from the moment it starts one until it exits (back to
   * what it was if the reboot fails), 'new' in a process started by a reboot; undefined otherwise.
   */
  get role (): LogRole | undefined {
    if (this.handingOver) return 'old'
    return this.inherited.parentPid !== undefined ? 'new' : undefined
  }

  get apps (): readonly GracefulUnit[] { return [...this.units] }

  /** Adds an app. After a completed shutdown (with `exit: false`) the lifecycle starts over. */
  register (unit: GracefulUnit): void {
    if (this.current === 'stopped') {
      this.stopping = undefined
      this.crashError = undefined
      this.cause = undefined
      this.signalled = undefined
      this.signalledAt = undefined
      this.restartBy = undefined
      this.setState('running')
    }
    this.setUpIncoming()
    unit.watchServers((server) => {
      this.listening.wrap(server, this.inherited, {
        listening: (l) => { this.announcement().listening(l) },
        unmatched: (key) => { this.incoming?.unmatched(key) }
      })
    })
    this.units.add(unit)
    this.warnSignalConflicts(unit)
    this.refreshSignals()
    this.logLauncher(unit)
  }

  /** Removes an app (when it closes); removes the process listeners with the last one. */
  unregister (unit: GracefulUnit): void {
    if (!this.units.delete(unit)) return
    this.refreshSignals()
  }

  /**
   * Drains every app (each with the deadline `timeout` ms from now), then exits with the code of
   * `exitCodes` unless an app has `exit: false`. Idempotent: a second call returns the same promise.
   * `timeout` defaults to the largest `timeout` option of the registered apps.
   */
  shutdown (timeout?: number, options: ShutdownOptions = {}): Promise<ShutdownResult> {
    if (this.stopping !== undefined) return this.stopping
    let limit: number
    try {
      limit = ms(timeout, 'timeout', this.defaultTimeout())
    } catch (err) {
      return Promise.reject(err)
    }
    // Shutdown wins over a reboot whose successor is not ready yet: kill it, then drain.
    this.outgoing?.abort()
    this.cause = { reason: options.reason ?? 'shutdown', trigger: options.trigger ?? 'code' }
    this.stopping = this.runShutdown(limit, this.cause.reason, this.cause.trigger)
    return this.stopping
  }

  /**
   * Re-executes the program as a successor that inherits every listening socket, waits until it is
   * ready (`rebootTimeout`), then drains this process with the deadline `timeout` ms and exits.
   * Resolves with the successor's pid once it is ready and through probation (`rebootProbation`). Rejects with a RebootError, and keeps
   * serving, when the reboot cannot start (another reboot in flight, shutting down, Windows, a
   * cluster worker, PID 1) or the successor exits or stays silent; with ERR_GRACEFUL_REBOOT_ABORTED,
   * and drains, when a shutdown starts before the successor is ready.
   */
  reboot (timeout?: number, options: RebootOptions = {}): Promise<number> {
    const refusal = this.canReboot()
    if (refusal !== undefined) return Promise.reject(refusal)
    let limit: number
    try {
      limit = ms(timeout, 'timeout', this.defaultTimeout())
    } catch (err) {
      return Promise.reject(err)
    }
    this.setState('rebooting')
    this.handingOver = true
    const outgoing = new OutgoingReboot({
      seam: this.seam,
      host: this.host,
      log: this.log,
      sockets: () => this.listening.sockets().map((l) => ({ fd: l.fd, key: l.key })),
      successorTimeout: Math.max(0, ...[...this.units].map((u) => u.options.rebootTimeout)),
      probation: Math.max(0, ...[...this.units].map((u) => u.options.rebootProbation)),
      leftover: (s) => { this.leftovers.add(s) },
      resume: () => { this.resume() },
      emit: (e) => { this.emit('handoff', e) },
      keyOf: (server) => this.listening.keyOf(server),
      drain: (t, trigger, handOver) => {
        this.handOver = handOver
        return this.shutdown(t, { reason: 'reboot', trigger })
      }
    })
    this.outgoing = outgoing
    this.rebooting = outgoing.run(limit, options.trigger ?? 'code', options.stateful === true)
    const clear = (): void => {
      this.rebooting = undefined
      this.outgoing = undefined
    }
    this.rebooting.then(clear, () => {
      clear()
      this.handingOver = false
    })
    return this.rebooting
  }

  /**
   * This process serves: writes the PID file, tells the old process (when started by a reboot) and
   * closes inherited sockets nothing adopted. Automatic once every inherited socket is adopted,
   * unless an app has `readiness: 'manual'`. Idempotent.
   */
  announceReady (): void {
    this.announcement().announce()
  }

  /** An uncaught exception or unhandled rejection: drain and exit with the crash code. */
  crash (error: unknown, kind: string): void {
    // Only the first is logged: a crash in the logging itself (EPIPE on a closed stdout) would loop.
    if (this.crashError !== undefined) return
    this.crashError = error
    this.log.error({ err: error, kind }, `graceful-reboot: ${kind}; shutting down`)
    void this.shutdown(undefined, { reason: 'crash', trigger: kind })
  }

  /** Ends the process at once (a second signal during a drain); removes the PID file if it holds this pid. */
  exitNow (code: number, why: string): void {
    this.log.error({ code }, `graceful-reboot: ${why}; exiting at once`)
    const pidFile = this.pidFile()
    if (pidFile !== undefined) removePidFile(pidFile, this.seam.pid)
    this.exit(code)
  }

  /** Ends the process; a rolled-back successor still draining goes with it (it would hold the port). */
  private exit (code: number): void {
    this.killLeftovers()
    this.seam.exit(code)
  }

  private killLeftovers (): void {
    for (const s of this.leftovers) s.kill()
    this.leftovers.clear()
  }

  /** In a process started by a reboot: its side of that reboot (set up once, at the first register). */
  private setUpIncoming (): void {
    if (this.incomingSetUp) return
    this.incomingSetUp = true
    if (this.inherited.parentPid === undefined) return
    const log = (): Logger => this.log
    this.incoming = new IncomingReboot({
      seam: this.seam,
      host: this.host,
      inherited: this.inherited,
      get log () { return log() },
      serverFor: (address) => this.listening.serverFor(address),
      settled: () => this.started || this.current !== 'running',
      shutdown: (timeout, trigger) => { void this.shutdown(timeout, { reason: 'shutdown', trigger }) }
    })
  }

  /** A failed reboot: serving on as before, and the PID file (which a successor may have rewritten) names this process again. */
  private resume (): void {
    this.setState('running')
    const pidFile = this.pidFile()
    if (pidFile === undefined) return
    try {
      writePidFile(pidFile, this.seam.pid)
    } catch (err) {
      this.log.error({ err, pidFile }, 'graceful-reboot: could not restore the PID file')
    }
  }

  /** The PID file of the first app that has one (of `units`: an app that closed during the drain counts too). */
  private pidFile (units: Iterable<GracefulUnit> = this.units): string | undefined {
    return [...units].find((u) => u.options.pidFile !== undefined)?.options.pidFile
  }

  private announcement (): Announcer {
    this.announcer ??= new Announcer({
      pid: this.seam.pid,
      tellParent: () => this.incoming?.parent.ready() === true,
      inherited: this.inherited,
      log: this.log,
      pidFile: () => this.pidFile(),
      manual: () => [...this.units].some((u) => u.options.readiness === 'manual'),
      emit: (e: HandoffEvent) => { this.emit('handoff', e) }
    })
    return this.announcer
  }

  private async runShutdown (timeout: number, reason: ShutdownReason, trigger: string): Promise<ShutdownResult> {
    const start = this.seam.now()
    const log = this.log
    const release = this.seam.hold?.() ?? (() => {})
    try {
      return await this.drainAll(start, log, timeout, reason, trigger)
    } finally {
      release()
    }
  }

  private async drainAll (start: number, log: Logger, timeout: number, reason: ShutdownReason, trigger: string): Promise<ShutdownResult> {
    this.setState('draining')
    // A successor in probation: the old process rolls back at once, goes on serving and takes the PID
    // file back (removing it here could delete the one it has just rewritten).
    const rolledBack = this.incoming?.parent.failing(reason, trigger) === true
    const units = [...this.units]
    // With no app registered there is nothing of ours to end the process for.
    const exit = units.length > 0 && units.every((u) => u.options.exit)
    log.info({ reason, trigger, timeout, apps: units.length }, 'graceful-reboot: shutting down')
    const delay = Math.min(timeout, Math.max(0, ...units.map((u) => u.options.readinessDelay)))
    if (delay > 0) await new Promise<void>((resolve) => { this.seam.timer(delay, resolve) })
    const deadline = start + timeout
    const handOver = reason === 'reboot' ? this.handOver : undefined
    this.handOver = undefined
    const apps = await Promise.all(units.map((u) => u.shutdown(deadline, reason, trigger, handOver)))
    const forced = apps.reduce((n, a) => n + a.forced + a.forcedUpgraded, 0)
    const failedFinalizers = apps.flatMap((a) => a.finalizers.filter((f) => !f.ok).map((f) => f.name))
    const code = this.crashError !== undefined
      ? exitCodes.crash
      : this.incoming?.gaveUp === true ? exitCodes.notReady : failedFinalizers.length > 0 ? exitCodes.finalizerFailed : forced > 0 ? exitCodes.forced : exitCodes.clean
    const result: ShutdownResult = { code, reason: this.crashError !== undefined ? 'crash' : reason, trigger, ms: this.seam.now() - start, forced, failedFinalizers, apps }
    // The apps of the drain: a Fastify app has unregistered itself in its own close() by now.
    const pidFile = this.pidFile(units)
    if (pidFile !== undefined && !rolledBack) removePidFile(pidFile, this.seam.pid)
    this.setState('stopped')
    for (const u of units) this.unregister(u)
    if (exit) {
      log.info({ code, ms: result.ms, forced, failedFinalizers }, 'graceful-reboot: exiting')
      const by = this.restartBy
      if (by !== undefined && this.seam.exitBySignal !== undefined) {
        // The launcher restarts the app by this signal and waits for the process to end by it (nodemon).
        log.info({ signal: by }, `graceful-reboot: exiting by ${by}, as ${this.launcher.name} expects`)
        setImmediate(() => {
          this.killLeftovers()
          this.seam.exitBySignal?.(by, code)
        })
      } else if (this.host.isClusterWorker) {
        // The cluster primary (PM2's daemon too) may have handed us a connection just as our listener
        // closed; a worker still alive hands it back, one that has exited leaves it hanging there.
        const release = this.seam.hold?.() ?? (() => {})
        this.seam.timer(CLUSTER_EXIT_LINGER_MS, () => { release(); this.exit(code) })
      } else {
        setImmediate(() => { this.exit(code) })
      }
    } else {
      log.info({ code, ms: result.ms, forced, failedFinalizers }, 'graceful-reboot: stopped')
    }
    return result
  }

  private defaultTimeout (): number {
    let t = 0
    for (const u of this.units) t = Math.max(t, u.options.timeout)
    return this.units.size === 0 ? DEFAULTS.timeout : t
  }

  private setState (next: LifecycleState): void {
    const prev = this.current
    if (prev === next) return
    this.current = next
    this.emit('state', next, prev)
  }

  /** Two apps that map one signal to different actions: the first registered keeps it; say so. */
  private warnSignalConflicts (added: GracefulUnit): void {
    const units = [...this.units]
    const index = units.indexOf(added)
    for (const c of unionSignals(units.map((u) => u.options)).conflicts) {
      if (c.dropped.index !== index) continue
      const first = units[c.kept.index]
      added.log.warn({ signal: c.signal, kept: c.kept.action, dropped: c.dropped.action },
        `graceful-reboot: signal map conflict: ${c.signal} is '${c.dropped.action}' in app ${index + 1} (${added.name}) ` +
        `but '${c.kept.action}' in app ${c.kept.index + 1} (${first?.name ?? '?'}), registered earlier; ` +
        `${c.signal} will ${c.kept.action === 'shutdown' ? 'shut down' : 'reboot'} (the app registered first keeps a signal)`)
    }
  }

  private refreshSignals (): void {
    this.uninstallSignals()
    const launcher = this.units.size > 0 ? this.launcherRules() : undefined
    const restart = launcher?.restartSignal === undefined ? undefined : { signal: launcher.restartSignal, by: launcher.name }
    this.uninstallSignals = installSignals(this, [...this.units].map((u) => u.options), restart)
  }

  /** Once per process: under a launcher that changes what signals and reboot do, say so. */
  private logLauncher (unit: GracefulUnit): void {
    if (this.launcherLogged) return
    const launcher = this.launcherRules()
    if (launcher === undefined || (launcher.restartSignal === undefined && launcher.rebootProblem === undefined)) return
    this.launcherLogged = true
    const restart = launcher.restartSignal === undefined ? '' : `${launcher.restartSignal} drains and exits so that ${launcher.name} restarts the app; `
    unit.log.info({ launcher: launcher.kind, evidence: launcher.evidence },
      `graceful-reboot: running under ${launcher.name}: ${restart}reboot is refused (the option launcher: 'ignore' allows it)`)
  }
}

const GLOBAL_KEY = Symbol.for('graceful-reboot.lifecycle')

/** The process-wide lifecycle, shared even by several copies of this package. */
export function lifecycle (): Lifecycle {
  const g = globalThis as unknown as Record<symbol, Lifecycle | undefined>
  let l = g[GLOBAL_KEY]
  if (l === undefined) {
    l = new Lifecycle()
    g[GLOBAL_KEY] = l
  }
  return l
}

/** The pid of the old process when this process was started by a reboot; undefined otherwise. */
export function rebootedFrom (): number | undefined {
  return lifecycle().inherited.parentPid
}
