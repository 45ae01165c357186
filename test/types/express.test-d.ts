// Type tests (tsc only, never run): the Express adapter and the framework-free core.
import http from 'node:http'
import http2 from 'node:http2'
import express, { type Express } from 'express'
import {
  createGraceful,
  expressGraceful,
  exitCodes,
  lifecycle,
  GracefulError,
  InvalidOptionError,
  RebootError,
  type GracefulExpressApp,
  type GracefulRequest,
  type GracefulHandle,
  type LifecycleState,
  type Http2DrainCounts,
  type ShutdownResult,
  type SignalAction,
  type SignalMap,
  type UnitResult,
  FINAL_GOAWAY_MAX_DELAY
} from '../../index'

export function expressApp (): void {
  const app = expressGraceful(express(), { timeout: 5_000, admin: true })
  const p: Promise<ShutdownResult> = app.shutdown(1000)
  const r: Promise<number> = app.reboot()
  const same: GracefulExpressApp<Express> = app.onShutdown(() => {}, { name: 'db', after: ['http'] })
  const stillExpress: Express = app
  app.get('/', (_req, res) => { res.send('ok') }) // Express methods are kept
  const server: http.Server = app.listen(0, '127.0.0.1')
  const handle: GracefulHandle = app.graceful
  const attached: GracefulHandle = handle.attach(http.createServer(app))
  void [p, r, same, stillExpress, server, attached]
  const warm: GracefulExpressApp<Express> = app.handover('hits', () => new Map()).onInherited<number>('n', (n) => { const x: number = n; void x }).onReboot('serving', () => {}).onStartup(() => {}, { name: 'db' })
  const hits: Promise<Map<string, number> | undefined> = app.inherited<Map<string, number>>('hits')
  const started: Promise<void> = handle.start()
  const starting: boolean = handle.starting
  void [warm, hits, started, starting]

  app.onShutdown((ctx) => {
    const s: AbortSignal = ctx.signal
    const d: number = ctx.deadline
    void [s, d]
  })

  // @ts-expect-error not an Express app
  expressGraceful({})
  // @ts-expect-error timeout is a number of ms
  expressGraceful(express(), { timeout: '10' })
  // @ts-expect-error no such option
  expressGraceful(express(), { signal: false })
  // a signals map is merged with the defaults; false removes a signal
  expressGraceful(express(), { signals: { SIGHUP: 'reboot', SIGUSR2: false } })
  const map: SignalMap = { SIGTERM: false, SIGHUP: 'shutdown' }
  const action: SignalAction = 'reboot'
  void [map, action]
  // @ts-expect-error a SignalAction is never false (false only removes a signal in a SignalMap)
  const notAnAction: SignalAction = false
  void notAnAction
  // @ts-expect-error shutdown takes ms
  void app.shutdown('1s')
}

export async function core (): Promise<void> {
  const g = createGraceful({ timeout: 1_000 })
  const server = http.createServer()
  g.attach(server).onShutdown(() => {})
  const closed: UnitResult = await g.close(500)
  const forced: number = closed.forced
  void forced
  g.ready()

  // HTTP/2 servers, h2c and TLS, attach like any other; the result reports sessions and streams.
  g.attach(http2.createServer()).attach(http2.createSecureServer({ allowHTTP1: true }))
  const h2: Http2DrainCounts = closed.http2
  const counts: number[] = [h2.sessions.drained, h2.sessions.forced, h2.streams.drained, h2.streams.forced]
  const delay: number = FINAL_GOAWAY_MAX_DELAY
  void [counts, delay]

  const state: LifecycleState = lifecycle().state
  const one: 'running' | 'draining' | 'stopped' | 'rebooting' = state
  void one
  lifecycle().on('state', (next, previous) => {
    const n: LifecycleState = next
    const p: LifecycleState = previous
    void [n, p]
  })

  const clean: 0 = exitCodes.clean
  const crash: 1 = exitCodes.crash
  const forcedCode: 75 = exitCodes.forced
  const failed: 76 = exitCodes.finalizerFailed
  void [clean, crash, forcedCode, failed]

  const err: unknown = new Error('x')
  if (err instanceof GracefulError) {
    const code: string = err.code
    void code
  }
  const inv: GracefulError = new InvalidOptionError('x')
  const rb = new RebootError('ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'busy', 12)
  const pid: number | undefined = rb.successorPid
  void [inv, pid]
  // @ts-expect-error reboot error codes are a closed set
  void new RebootError('ERR_SOMETHING_ELSE', 'x')
}

export function drainSignals (): void {
  const app = expressGraceful(express())
  app.get('/events', (req, res) => {
    const signal: AbortSignal = req.drainSignal // declared on Express.Request
    const asInterface: GracefulRequest = req
    void [signal, asInterface, res]
  })
  const onApp: AbortSignal = app.drainSignal
  const onHandle: AbortSignal = createGraceful().drainSignal
  // @ts-expect-error read-only
  app.graceful.drainSignal = new AbortController().signal
  void [onApp, onHandle]
}
