// Runs in every process that shuts down (the old process of a reboot too): one application (a Fastify
// instance, an Express app, or plain servers) with its servers, its finalizers and its drain sequence.
import { setMaxListeners } from 'node:events'
import type * as net from 'node:net'
import { ServerDrain } from './server'
import { addHttp2, noHttp2, type Http2DrainCounts } from './http2'
import type { HandOver, KeptReason } from '../handoff/socket'

/** A reboot's connection transfer for each server (undefined: that server drains as usual). */
export type HandOverFor = (server: net.Server) => HandOver | undefined
import { Finalizers, type FinalizerOutcome, type ShutdownReason } from './finalizers'
import type { Logger } from '../log'
import type { ProcessSeam } from '../os'
import { unsetTokens, type ResolvedOptions } from '../options'
import { DrainStartedError } from '../errors'
import { StartupGraph } from '../startup/graph'

/** What one application's drain did. */
export interface UnitResult {
  name: string
  /** HTTP connections destroyed at the deadline: HTTP/1.1 connections plus HTTP/2 sessions (`http2.sessions.forced`). */
  forced: number
  /** Upgraded (WebSocket) sockets destroyed at the deadline. */
  forcedUpgraded: number
  /** Idle HTTP/1.1 keep-alive or never-spoke connections closed after the idle grace. */
  idleClosed: number
  /** HTTP/2 sessions and streams: how many ended during the drain (`drained`) and how many were destroyed at the deadline (`forced`). */
  http2: Http2DrainCounts
  /** In a reboot: HTTP/1.1 keep-alive connections handed to the successor (`transferConnections`). */
  transferred: number
  /** In a reboot: connections offered to the successor but drained here, by reason ('mid-request': a request was partly read or queued; 'send-failed': the successor could not take it; 'unsupported': this Node lacks what the hand-over needs). */
  kept: Partial<Record<KeptReason, number>>
  finalizers: FinalizerOutcome[]
  /** Set when the finalizer graph was invalid (only if the app never became ready). */
  graphError: unknown
  ms: number
}

export class GracefulUnit {
  readonly name: string
  readonly options: ResolvedOptions
  readonly log: Logger
  readonly finalizers = new Finalizers()
  /** The listening Unix socket paths outlive this process's drain (a worker of a supervisor, which removes them when it exits). */
  keepSocketPaths = false
  /** The services the app starts (`onStartup()`): it announces ready once every required one started. */
  readonly startup = new StartupGraph()
  /** Set by the adapter: the framework's own close, run after the drain (Fastify's onClose hooks). */
  closeApp: (() => Promise<void>) | undefined
  /** Set once the HTTP drain of the drain under way is over (no connection left): a framework close from a finalizer need not wait for the rest. */
  httpDrained = false
  /** Set by the adapter: why this app cannot be rebooted now (e.g. sockets not handed over), if so. */
  rebootBlocker: (() => string | undefined) | undefined
  /** Set by the lifecycle when the app registers: watches a server's listen() (adoption, hand-over keys). */
  private watchListen: ((server: net.Server) => void) | undefined
  private readonly seam: ProcessSeam
  private readonly drains = new Map<net.Server, ServerDrain>()
  private draining: Promise<UnitResult> | undefined
  private stopping: Promise<UnitResult> | undefined
  /** The app's one drain signal, made on first read (nothing per request). */
  private drainAbort: AbortController | undefined
  /** Set when the HTTP drain starts: the signal's reason. */
  private drainStarted: DrainStartedError | undefined
  /** The drain under way, which `callOff()` may still stop; undefined when none runs or it cannot be. */
  private run: DrainRun | undefined

  constructor (name: string, options: ResolvedOptions, log: Logger, seam: ProcessSeam) {
    this.name = name
    this.options = options
    this.log = log
    this.seam = seam
    if (options.admin !== undefined && unsetTokens.has(options.admin)) {
      log.warn({ option: 'admin.token' }, 'graceful-reboot: "admin.token" is given but undefined (an unset environment variable?): the admin routes serve plain local calls only; set the variable, or leave "token" out to mean no token')
    }
  }

  /** Starts tracking a server's connections. Attach before it listens. Idempotent. */
  attach (server: net.Server): ServerDrain {
    let d = this.drains.get(server)
    if (d === undefined) {
      d = new ServerDrain(server, this.seam, this.options.idleGrace)
      this.drains.set(server, d)
      this.watchListen?.(server)
      if (this.draining !== undefined) void d.drain(this.seam.now() + this.options.timeout)
    }
    return d
  }

  get servers (): net.Server[] { return [...this.drains.keys()] }

  /** Whether this server is attached already. */
  tracks (server: net.Server): boolean { return this.drains.has(server) }

  /** The lifecycle watches every server's listen(), those attached already and those to come. */
  watchServers (watch: (server: net.Server) => void): void {
    this.watchListen = watch
    for (const server of this.drains.keys()) watch(server)
  }

  get isDraining (): boolean { return this.draining !== undefined }

  /**
   * One AbortSignal for the whole app, made on first read: aborted, with a DrainStartedError as its
   * reason, when the app's HTTP drain starts (its listeners are closed; in a reboot the successor
   * serves). Read after that, it is already aborted.
   */
  get drainSignal (): AbortSignal {
    if (this.drainAbort === undefined) {
      this.drainAbort = new AbortController()
      // Every long response of the app may listen to it at once: no leak warning past 10 listeners.
      setMaxListeners(0, this.drainAbort.signal)
      if (this.drainStarted !== undefined) this.drainAbort.abort(this.drainStarted)
    }
    return this.drainAbort.signal
  }

  /** The drain sequence (docs/shutdown.md, "What a shutdown does") for every server of this app. Idempotent. */
  drain (deadline: number, reason: ShutdownReason, trigger: string, handOver?: HandOverFor): Promise<UnitResult> {
    if (this.draining === undefined) {
      const run = this.run = new DrainRun()
      this.draining = this.runDrain(run, deadline, reason, trigger, handOver)
    } else {
      // Someone else waits for this drain to end (the app's close()): it can no longer be called off.
      this.run = undefined
    }
    return this.draining
  }

  /** Drain, then the framework's own close. Idempotent. `handOver`: a reboot's connection transfer, per server. */
  shutdown (deadline: number, reason: ShutdownReason, trigger: string, handOver?: HandOverFor): Promise<UnitResult> {
    if (this.stopping === undefined) {
      const drained = this.drain(deadline, reason, trigger, handOver)
      const run = this.run
      this.stopping = drained.then(async (result) => {
        if (run?.off === true) return result
        if (this.closeApp !== undefined) {
          // The framework's close starts: the drain can no longer be called off.
          if (this.run === run) this.run = undefined
          try {
            await this.closeApp()
          } catch (error) {
            this.log.error({ err: error }, 'graceful-reboot: closing the app failed')
            result.finalizers.push({ name: 'close', ok: false, ms: 0, timedOut: false, error })
          }
        }
        return result
      })
    } else {
      // Someone else waits for this drain to end (the app's close()): it can no longer be called off.
      this.run = undefined
    }
    return this.stopping
  }

  /** A drain runs, or ran, that `callOff()` can undo: nothing else waits for it, and no framework's close began (an app without one, Express or plain http, can be undone once drained too). */
  get canCallOff (): boolean { return this.run !== undefined }

  /**
   * Calls the drain under way off, for good (the old process of a reboot serves again): each server's
   * HTTP drain stops (`ServerDrain.resume`: no more `Connection: close`, no reaping; a connection told
   * to close already closes), no finalizer starts any more (those running run to their end), upgraded
   * sockets are not destroyed at the deadline, the framework's close does not run, and `drainSignal`
   * is a fresh signal from now on. The servers stay closed: the caller listens again. The next drain
   * starts afresh. False when no drain can be called off (`canCallOff`).
   */
  callOff (): boolean {
    const run = this.run
    if (run === undefined || run.off) return false
    run.stop()
    for (const d of this.drains.values()) d.resume()
    this.run = undefined
    this.draining = undefined
    this.stopping = undefined
    this.drainStarted = undefined
    if (this.drainAbort?.signal.aborted === true) this.drainAbort = undefined
    return true
  }

  /** Stops tracking every server. */
  detach (): void {
    for (const d of this.drains.values()) d.detach()
  }

  private async runDrain (run: DrainRun, deadline: number, reason: ShutdownReason, trigger: string, handOver: HandOverFor | undefined): Promise<UnitResult> {
    const start = this.seam.now()
    const drains = [...this.drains.values()]
    const sessions = drains.reduce((n, d) => n + d.sessions, 0)
    const started: Record<string, unknown> = { reason, trigger, connections: drains.reduce((n, d) => n + d.connections, 0), timeout: deadline - start }
    if (sessions > 0) Object.assign(started, { sessions, streams: drains.reduce((n, d) => n + d.streams, 0) })
    this.log.info(started, 'graceful-reboot: drain started')
    let forced = 0
    let idleClosed = 0
    const http2 = noHttp2()
    let transferred = 0
    const kept: Partial<Record<KeptReason, number>> = {}
    const http = async (): Promise<void> => {
      // Called off while the finalizers before 'http' ran: the listeners stay.
      if (run.off) return
      for (const d of drains) d.stopAccepting(reason === 'reboot' || this.keepSocketPaths)
      const transfer = this.options.transferConnections ? handOver : undefined
      const pending = drains.map((d) => d.drain(deadline, transfer?.(d.server)))
      // Every connection now drains: a response a handler ends on the signal closes (or moves) its connection.
      this.drainStarted = new DrainStartedError(this.name, reason)
      this.drainAbort?.abort(this.drainStarted)
      const results = await Promise.all(pending)
      for (const r of results) {
        forced += r.forced
        idleClosed += r.idleClosed
        addHttp2(http2, r.http2)
        transferred += r.transferred
        for (const [why, n] of Object.entries(r.kept) as Array<[KeptReason, number]>) kept[why] = (kept[why] ?? 0) + n
      }
      this.httpDrained = true
    }
    // Upgraded sockets are destroyed at the deadline whatever the finalizers are doing.
    const upgraded = this.closeUpgraded(drains, deadline, run)
    const { outcomes, graphError } = await this.finalizers.run(http, deadline, { reason, trigger }, this.seam, () => run.off)
    if (graphError !== undefined) this.log.error({ err: graphError }, 'graceful-reboot: finalizer graph is invalid; ran every finalizer in parallel')
    for (const o of outcomes) {
      if (!o.ok) this.log.error({ finalizer: o.name, err: o.error, timedOut: o.timedOut }, 'graceful-reboot: finalizer failed')
    }
    const forcedUpgraded = await upgraded
    const result: UnitResult = { name: this.name, forced, forcedUpgraded, idleClosed, http2, transferred, kept, finalizers: outcomes, graphError, ms: this.seam.now() - start }
    if (run.off) {
      this.log.info({ finalizers: outcomes.map((o) => o.name), ms: result.ms }, 'graceful-reboot: drain called off (the finalizers listed had run)')
      return result
    }
    const level = forced + forcedUpgraded > 0 ? 'warn' : 'info'
    const drained: Record<string, unknown> = { forced, forcedUpgraded, idleClosed, ms: result.ms }
    // HTTP/2 apart from HTTP/1.1: sessions and streams, each drained and forced.
    if (http2.sessions.drained + http2.sessions.forced > 0) {
      Object.assign(drained, { sessions: http2.sessions, streams: http2.streams })
    }
    // A reboot: connections handed to the successor, and those kept here with why.
    if (handOver !== undefined) Object.assign(drained, { transferred, kept })
    this.log[level](drained, 'graceful-reboot: drained')
    return result
  }

  /** Waits for upgraded sockets (including ones upgraded during the drain) to close until the deadline, then destroys the rest. */
  private async closeUpgraded (drains: ServerDrain[], deadline: number, run: DrainRun): Promise<number> {
    let cancel = (): void => {}
    const late = new Promise<'late'>((resolve) => { cancel = this.seam.timer(deadline - this.seam.now(), () => { resolve('late') }) })
    for (;;) {
      const open = drains.filter((d) => d.upgraded.size > 0)
      if (open.length === 0 || run.off) {
        cancel()
        return 0
      }
      const first = await Promise.race([Promise.all(open.map((d) => d.upgraded.whenEmpty())), late, run.stopped])
      if (run.off) {
        cancel()
        return 0
      }
      if (first === 'late') return drains.reduce((n, d) => n + d.upgraded.destroyAll(), 0)
    }
  }
}

/** One drain of an app, which the old process of a reboot may call off. */
class DrainRun {
  off = false
  /** Resolves once the drain is called off. */
  readonly stopped: Promise<void>
  private wake: () => void = () => {}

  constructor () {
    this.stopped = new Promise<void>((resolve) => { this.wake = resolve })
  }

  stop (): void {
    this.off = true
    this.wake()
  }
}
