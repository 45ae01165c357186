// Runs in both processes: the one owner of process state (running -> draining -> stopped, rebooting), shared by
// every app and copy of the package; it wires the jobs of the other files (registry, shutdown, exit, reboot, new side).
import { EventEmitter } from 'node:events'
import { InvalidOptionError, type RebootError, describe } from '../errors'
import type { GracefulUnit } from '../drain/app'
import type { LifecycleEvents, LifecycleState, RebootOptions, ShutdownOptions, ShutdownResult } from '../events'
import { ListenerRegistry, removeSocketPaths } from '../handoff/listeners'
import type { Inherited } from '../incoming/inherited'
import { NewSide } from '../incoming/side'
import { detectLauncher, readsPast, relaysSignals, type Launcher } from '../launcher'
import type { LogRole, Logger } from '../log'
import { realProcess, type ProcessSeam } from '../os'
import { rebootRefusal } from '../outgoing/refusal'
import { removePidFile, restorePidFile } from '../pidfile'
import { SignalMemory, installSignals, warnSignalConflicts, type SignalTarget } from '../signals'
import { endProcess } from './exit'
import { realLifecycleHost, type LifecycleHost } from './host'
import { LauncherRules } from './launcher'
import { SystemdNotifier } from './notify'
import { ProcessLoggers } from './logging'
import { RebootController } from './reboot'
import { AppRegistry } from './registry'
import { drainApps, type Cause } from './shutdown'
import type { LifecycleStats } from './stats'
import { StatusReporter } from './status'
import { LateRollback, type KeptCopies } from './takeback'
import { WarmStart } from './warm'
import { WorkerLink } from '../workers/worker'

/** The process-wide coordinator: `shutdown()` drains every app in parallel, runs their framework close, decides the exit code and exits (unless `exit: false`). */
export class ProcessLifecycle extends EventEmitter<LifecycleEvents> implements SignalTarget {
  readonly seam: ProcessSeam
  /** The listening sockets of every tracked server: what a reboot hands to the successor. */
  readonly listening = new ListenerRegistry()
  /** The state handed to a successor or inherited from the old process, and the reboot hooks. */
  readonly warm: WarmStart
  private readonly host: LifecycleHost
  private readonly units = new AppRegistry(() => this.worker !== undefined)
  readonly signalMemory = new SignalMemory()
  private readonly reboots: RebootController
  private readonly newSide: NewSide
  private readonly status: StatusReporter
  private readonly systemd: SystemdNotifier
  private readonly worker: WorkerLink | undefined
  private current: LifecycleState = 'running'
  private stopping: Promise<ShutdownResult> | undefined
  private readonly late = new LateRollback()
  private crashError: unknown
  private cause: Cause | undefined
  private uninstallSignals: () => void = () => {}
  private readonly launchers = new LauncherRules(() => detectLauncher(this.host.launcherFacts(readsPast)), () => this.host)
  private fromEnv: Inherited | undefined
  private readySwitch = true
  // In a worker of a supervisor, the package's info lines are details: the supervisor says what happened, per worker.
  private readonly loggers = new ProcessLoggers(() => ({ pid: this.seam.pid, role: this.role, detail: this.worker !== undefined }), () => this.units.list()[0]?.log)

  constructor (seam: ProcessSeam = realProcess, host: LifecycleHost = realLifecycleHost) {
    super()
    this.seam = seam
    this.host = host
    this.reboots = new RebootController({
      seam, host, log: () => this.log, listening: this.listening, units: this.units,
      takeBack: (copies, passed) => this.takeBack(copies, passed), resume: () => { this.resume() }, emit: (e) => { this.emit('handoff', e) },
      drain: (t, trigger) => this.shutdown(t, { reason: 'reboot', trigger }), state: () => this.warm.source(), veto: (trigger) => this.warm.veto(trigger),
      counts: (result) => this.status.stats.carried(result), generation: () => this.inherited.generation,
      moved: () => { this.worker?.moved() }
    })
    this.newSide = new NewSide({
      seam, host, inherited: () => this.inherited, log: () => this.log,
      serverFor: (address) => this.listening.serverFor(address),
      running: () => this.current === 'running',
      shutdown: (timeout, trigger) => { void this.shutdown(timeout, { reason: 'shutdown', trigger }) },
      pidFile: () => this.units.pidFile(), manual: () => this.units.manualReadiness, startup: () => this.units.startup(seam),
      startupFailed: (err) => { this.crash(err, 'a required startup service failed') },
      probation: () => this.units.probation, emit: (e) => { this.emit('handoff', e) }
    })
    const options = (): GracefulUnit['options'] | undefined => this.units.list()[0]?.options
    this.warm = new WarmStart({ seam, host, inherited: () => this.inherited, log: () => this.log, options, registered: (u) => this.units.list().includes(u as GracefulUnit), handingOver: () => this.reboots.handingOver }, this)
    this.worker = WorkerLink.fromEnv(host.env, { pid: seam.pid, parentPid: () => this.inherited.parentPid, log: () => this.log, reboot: (t) => this.reboot(t, { trigger: 'supervisor' }), shutdown: (t, trigger) => { void this.shutdown(t, { trigger }) }, listening: this.listening, host,
      stats: () => {
        const { generation, reporting, reboots, drains, connections } = this.stats()
        return { generation, reporting, counts: { reboots, drains, connections } }
      },
      watchStats: (fn) => { this.status.stats.watch(fn) } })
    this.on('handoff', (e) => { if (e.step === 'announced') this.launchers.announced(this.units.launcherIgnored) })
    this.systemd = new SystemdNotifier(this, { pid: seam.pid, host, cause: () => this.cause, parentMayRollBack: () => this.newSide.parentWaits() !== undefined, state: () => this.current, timer: (ms, fn) => seam.timer(ms, fn), log: () => this.log })
    this.status = new StatusReporter(this, { pid: seam.pid, pidFile: () => this.units.pidFile(), state: () => this.current, role: () => this.role, log: () => this.log, told: (fn) => { this.systemd.told(fn) } })
  }

  get state (): LifecycleState { return this.current }
  /** What started the shutdown under way (its reason and trigger); undefined while none is. */
  get shutdownCause (): Cause | undefined { return this.cause }
  /** Whether a launcher in this process's group passes a terminal's signals on (npm, nodemon, tsx): a Ctrl-C arrives twice. */
  get signalsRelayed (): boolean { return relaysSignals(this.launcher.kind) }
  /** What runs this process (a terminal, systemd, nodemon, an npm script, PM2...), read once from its parent (lib/launcher.ts). */
  get launcher (): Launcher { return this.launchers.launcher }
  /** The sockets this process inherited (from the old process of a reboot, or systemd), read once. */
  get inherited (): Inherited {
    this.fromEnv ??= this.host.inherited()
    return this.fromEnv
  }

  /** Whether this process announced that it serves (`announceReady()`): /health/startup answers 200 from then on. */
  get started (): boolean { return this.newSide.announced }
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
      state: this.current, rebooting: this.reboots.inFlight, seam: this.seam, host: this.host, listening: () => this.listening.count(),
      launcher: () => this.launchers.applying(this.units.launcherIgnored),
      blockers: () => this.units.blockers(),
      parentWaits: () => this.newSide.parentWaits(),
      pidFile: () => this.units.pidFile()
    })
  }

  /** The logger of the first registered app, for process-level messages (stderr lines without one). */
  get log (): Logger { return this.loggers.log }
  /** The logger for an app whose own logger is `base`: every line names this pid and role (lib/log.ts). */
  logger (base?: Logger): Logger { return this.loggers.logger(base) }
  /** 'old' from the start of a reboot until exit (unless it fails), 'new' in a process a reboot started. */
  get role (): LogRole | undefined {
    if (this.reboots.handingOver) return 'old'
    return this.inherited.parentPid !== undefined ? 'new' : undefined
  }

  /** The registered apps (for tests and diagnostics). */
  get apps (): readonly GracefulUnit[] { return this.units.list() }
  /** Adds an app (refused if its PID file names another live instance). After a completed shutdown (with `exit: false`) the lifecycle starts over. */
  register (unit: GracefulUnit): void {
    this.units.refuseOtherInstance(unit, [this.seam.pid, this.inherited.parentPid], this.host.isClusterWorker)
    if (this.current === 'stopped') {
      this.stopping = undefined
      this.crashError = undefined
      this.cause = undefined
      this.signalMemory.reset()
      this.listening.restart()
      this.newSide.restart()
      this.setState('running')
    }
    this.newSide.start()
    this.warm.watchParent()
    if (this.inherited.parentPid !== undefined) this.status.stats.followParent(this.inherited.generation, this.host)
    this.worker?.connect(this)
    unit.watchServers((server) => {
      this.listening.wrap(server, this.inherited, {
        listening: (l) => { this.newSide.announcement().listening(l) },
        unmatched: (key) => { this.newSide.incoming?.unmatched(key) },
        bind: (key, req) => this.worker?.bindOptions(key, req)
      })
    })
    // A worker's Unix socket paths belong to its supervisor, which removes them when it exits.
    unit.keepSocketPaths = this.worker !== undefined
    this.units.add(unit)
    warnSignalConflicts(this.units.list(), unit)
    // Seconds by mistake (timeout: 30) would cut every drain after 30 ms.
    const t = unit.options.timeout
    if (t > 0 && t < 1000) unit.log.warn({ timeout: t }, `graceful-reboot: "timeout" is ${t} ms, so every drain is cut after ${t} ms: the option is in milliseconds (${t} s is ${t * 1000})`)
    this.refreshSignals()
    this.launchers.logOnce(unit, this.units.launcherIgnored)
  }

  /** Removes an app (when it closes); removes the process listeners with the last one. */
  unregister (unit: GracefulUnit): void {
    if (this.units.delete(unit)) this.refreshSignals()
  }

  /** See `Lifecycle.shutdown` (index.ts). */
  shutdown (timeout?: number, options: ShutdownOptions = {}): Promise<ShutdownResult> {
    if (this.stopping !== undefined) {
      this.late.joined()
      return this.stopping
    }
    const limit = this.units.deadline(timeout)
    if (typeof limit !== 'number') return Promise.reject(limit.error)
    this.reboots.abort()
    this.cause = { reason: options.reason ?? 'shutdown', trigger: options.trigger ?? 'code' }
    this.stopping = this.runShutdown(limit, this.cause)
    return this.stopping
  }

  /** See `Lifecycle.reboot` (index.ts). */
  reboot (timeout?: number, options: RebootOptions = {}): Promise<number> {
    // In a worker, every worker reboots, one slot at a time: the supervisor runs it.
    if (this.worker !== undefined && options.trigger !== 'supervisor') return this.worker.rollout(options.trigger ?? 'code')
    const refusal = this.canReboot()
    if (refusal !== undefined) {
      this.emit('handoff', { step: 'refused', pid: this.seam.pid, error: refusal, trigger: options.trigger ?? 'code' })
      return Promise.reject(refusal)
    }
    const limit = this.units.deadline(timeout)
    if (typeof limit !== 'number') return Promise.reject(limit.error)
    this.setState('rebooting')
    return this.reboots.start(limit, options)
  }

  /** See `Lifecycle.stats` (index.ts). */
  stats (): LifecycleStats { return this.status.stats.snapshot() }

  /** See `Lifecycle.announceReady` (index.ts). */
  announceReady (): void {
    this.newSide.announcement().announce()
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
    const pidFile = this.units.pidFile()
    if (pidFile !== undefined) removePidFile(pidFile, this.seam.pid)
    this.status.remove()
    this.exit(code)
  }

  /** Ends the process once systemd has its last messages; a rolled-back successor still draining goes with it (it would hold the port). */
  private exit (code: number): void {
    if (!this.systemd.idle) return void this.systemd.settled().then(() => { this.exit(code) })
    this.reboots.killLeftovers()
    this.seam.exit(code)
  }

  /** A late rollback (lifecycle/takeback.ts): the drain is called off, the servers listen again; undefined when it cannot be (in a worker too: its supervisor fills the slot again). */
  private takeBack (copies: KeptCopies, passed: readonly string[]): string[] | undefined {
    const ending = this.worker !== undefined || this.cause?.reason !== 'reboot' || this.crashError !== undefined || this.signalMemory.shutdownSignal !== undefined || this.signalMemory.restartSignal !== undefined
    const keys = this.late.takeBack({ units: this.units.list(), listening: this.listening, ending }, copies, passed)
    if (keys === undefined) return undefined
    this.stopping = undefined
    this.cause = undefined
    this.signalMemory.reset()
    this.setState('running')
    return keys
  }

  /** A failed reboot: serving on as before, and the PID file (which a successor may have rewritten) names this process again. */
  private resume (): void {
    this.setState('running')
    restorePidFile(this.units.pidFile(), this.seam.pid, this.log)
  }

  private async runShutdown (timeout: number, { reason, trigger }: Cause): Promise<ShutdownResult> {
    const start = this.seam.now()
    const log = this.log
    const release = this.seam.hold?.() ?? (() => {})
    const run = this.late.started()
    try {
      this.setState('draining')
      // An old process in probation rolls back, serves on and takes the PID file back (do not remove it).
      const rolledBack = this.newSide.failing(reason, trigger, this.crashError)
      const units = this.units.list()
      // No app registered: nothing of ours to end the process for; a crash (below) ends it even with exit: false.
      const exit = units.length > 0 && units.every((u) => u.options.exit)
      log.info({ reason, trigger, timeout, apps: units.length }, 'graceful-reboot: shutting down')
      const handOver = this.reboots.takeHandOver()
      // Sockets a reboot passed on (a first start's from systemd stay systemd's).
      const adoptedPaths = this.inherited.parentPid === undefined ? [] : this.listening.adoptedPaths()
      const result = await drainApps({
        seam: this.seam, units, start, timeout, reason, trigger, readinessDelay: this.units.readinessDelay,
        handOver: reason === 'reboot' ? handOver : undefined,
        crashed: () => this.crashError !== undefined,
        gaveUp: () => this.newSide.incoming?.gaveUp === true,
        lost: () => this.reboots.successorLost,
        off: () => this.late.isOff(run)
      })
      // Called off (a late rollback): this process serves again; nothing of the end below happens.
      if (this.late.isOff(run)) return result
      if (reason === 'reboot') await this.reboots.afterDrain(result)
      // The apps of the drain: a Fastify app has unregistered itself in its own close() by now.
      const pidFile = this.units.pidFile(units)
      if (pidFile !== undefined && !rolledBack) removePidFile(pidFile, this.seam.pid)
      // The last process of its line: no one accepts on those paths any more (a rollback's old process
      // does; a worker's supervisor keeps them, and removes them when it exits).
      if (reason !== 'reboot' && !rolledBack && trigger !== 'rollback' && this.worker === undefined) removeSocketPaths(adoptedPaths)
      try { this.emit('shutdown', result) } catch (err) { log.error({ err }, "graceful-reboot: a 'shutdown' listener threw; exiting anyway") }
      this.setState('stopped')
      for (const u of units) this.unregister(u)
      const by = this.signalMemory.restartSignal
      endProcess({
        code: result.code, clusterWorker: this.host.isClusterWorker, seam: this.seam, log,
        restartBy: by === undefined ? undefined : { signal: by, launcher: this.launcher.name },
        exit: (c) => { this.exit(c) },
        beforeSignal: () => { this.reboots.killLeftovers() }
      }, { ...result, exits: exit || (units.length > 0 && result.reason === 'crash') })
      return result
    } finally {
      release()
    }
  }

  private setState (next: LifecycleState): void {
    const prev = this.current
    if (prev === next) return
    this.current = next
    this.emit('state', next, prev)
  }

  private refreshSignals (): void {
    this.uninstallSignals()
    const restart = this.units.size > 0 ? this.launchers.restart(this.units.launcherIgnored) : undefined
    this.uninstallSignals = installSignals(this, this.units.list().map((u) => u.options), restart)
  }
}
