// The falsification suite of docs/guarantee.md: it tries to break the promise of a reboot and counts
// every outcome class (refused, reset, closed without answer, timed out, wrong or doubled) for each
// trigger (signal, admin route, code, CLI, supervisor; systemd's reload is in test/systemd.test.ts),
// each connection kind (plain TCP keep-alive and new connections, Unix socket, TLS, HTTP/2, WebSocket,
// SSE), a reload storm and kill -9 runs, and prints the table of each (t.log). Every HTTP/1.1 request
// carries an id its answer must echo (tools/load.ts `check`), so a wrong or doubled answer is counted.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import WebSocket from 'ws'
import { runH2Load } from '../tools/h2-load'
import type { LoadOptions, LoadResult } from '../tools/load'
import { watchedLoad, type WatchedLoad } from './helpers/crash-load'
import { EventSourceClient } from './helpers/event-source'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { CLI, firstWorkers, rollout, supervise } from './helpers/supervisor'

// CI runs the falsification suite on one Node line (Node 20): it drives the package, not the Node internals the
// connection transfer relies on, which the transfer tests check on every line (.ci/run).
const serial = process.env.GRACEFUL_REBOOT_SKIP_LONG_SUITES === '1' ? test.skip : test.serial

const CA = fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', 'tls', 'cert.pem'))

/** The outcome classes of docs/guarantee.md, counted. */
interface Counts { sent: number, answered: number, refused: number, reset: number, closed: number, timedOut: number, wrong: number, other: Record<string, number> }

const ZERO = { refused: 0, reset: 0, closed: 0, timedOut: 0, wrong: 0, other: {} }

/** Classes a load's failure causes. */
function classes (r: { sent: number, answered: number, causes: Record<string, number> }): Counts {
  const c: Counts = { sent: r.sent, answered: r.answered, refused: 0, reset: 0, closed: 0, timedOut: 0, wrong: 0, other: {} }
  for (const [cause, n] of Object.entries(r.causes)) {
    if (cause === 'ECONNREFUSED') c.refused += n
    else if (cause === 'ECONNRESET' || cause === 'EPIPE' || cause === 'aborted') c.reset += n
    else if (cause === 'socket closed') c.closed += n
    else if (cause === 'timeout') c.timedOut += n
    else if (cause === 'wrong response' || cause.startsWith('status ')) c.wrong += n
    else c.other[cause] = n
  }
  return c
}

function add (a: Counts, b: Counts): Counts {
  const other = { ...a.other }
  for (const [k, v] of Object.entries(b.other)) other[k] = (other[k] ?? 0) + v
  return { sent: a.sent + b.sent, answered: a.answered + b.answered, refused: a.refused + b.refused, reset: a.reset + b.reset, closed: a.closed + b.closed, timedOut: a.timedOut + b.timedOut, wrong: a.wrong + b.wrong, other }
}

function diff (after: LoadResult, before: LoadResult | undefined): Counts {
  const causes: Record<string, number> = {}
  for (const [k, v] of Object.entries(after.causes)) causes[k] = v - (before?.causes[k] ?? 0)
  return classes({ sent: after.sent - (before?.sent ?? 0), answered: after.answered - (before?.answered ?? 0), causes })
}

/** One t.log table: a row per run, a column per class. */
function table (title: string, rows: ReadonlyArray<readonly [string, Counts]>): string {
  const head = '| run | sent | answered | refused | reset | closed without answer | timed out | wrong or doubled | other |'
  const lines = rows.map(([name, c]) => `| ${name} | ${c.sent} | ${c.answered} | ${c.refused} | ${c.reset} | ${c.closed} | ${c.timedOut} | ${c.wrong} | ${JSON.stringify(c.other)} |`)
  return [title, head, '|---|---|---|---|---|---|---|---|---|', ...lines].join('\n')
}

const failures = (c: Counts): Omit<Counts, 'sent' | 'answered'> => ({ refused: c.refused, reset: c.reset, closed: c.closed, timedOut: c.timedOut, wrong: c.wrong, other: c.other })

const checkId = (id: number, body: string): boolean => { try { return (JSON.parse(body) as { id?: unknown }).id === id } catch { return false } }

/** Keep-alive and new-connection loads whose answers must echo their id; stopped in teardown. */
function checkedLoads (t: ExecutionContext, base: Pick<LoadOptions, 'url' | 'socketPath' | 'ca'>, options: { keepAlive?: number, fresh?: number, thinkMs?: LoadOptions['thinkMs'], check?: LoadOptions['check'] } = {}): WatchedLoad[] {
  const common = { ...base, check: options.check ?? checkId }
  return [
    watchedLoad(t, { ...common, connections: options.keepAlive ?? 4, mode: 'keep-alive', ...(options.thinkMs !== undefined ? { thinkMs: options.thinkMs, agentPerLoop: true } : {}) }),
    watchedLoad(t, { ...common, connections: options.fresh ?? 2, mode: 'new-connection' })
  ]
}

/** Resolves once every load answered `n` more requests. */
async function answeredMore (loads: readonly WatchedLoad[], n: number): Promise<void> {
  await Promise.all(loads.map(async (l) => { await l.answeredMore(n) }))
}

const snapshots = (loads: readonly WatchedLoad[]): LoadResult[] => loads.map((l) => l.run.snapshot())
const since = (loads: readonly WatchedLoad[], before: readonly LoadResult[]): Counts => loads.map((l, i) => diff(l.run.snapshot(), before[i])).reduce(add)

async function stopAll (loads: readonly WatchedLoad[]): Promise<Counts> {
  for (const l of loads) l.run.stop()
  const results = await Promise.all(loads.map(async (l) => await l.run.result))
  return results.map((r) => classes(r)).reduce(add)
}

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }

/** Triggers a reboot; resolves with the successor once the old process has exited (its drain over). */
async function rebooted (f: Fixture, current: Listening, trigger: () => unknown): Promise<Listening> {
  await trigger()
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === current.pid, 30_000) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'exit' && e.pid === current.pid, 30_000)
  return next
}

function post (port: number, route: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: route, method: 'POST', agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.once('error', reject)
    req.end()
  })
}

function tempDir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-falsify-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  return dir
}

serial('every trigger under checked keep-alive and new-connection load: signal, admin route, code, CLI: 0 in every class', async (t) => {
  const pidFile = path.join(tempDir(t), 'app.pid')
  const f = startFixture(t, 'falsify-app', { env: { PID_FILE: pidFile } })
  let current = await f.waitFor('listening') as Listening
  const port = current.port
  const runs = checkedLoads(t, { url: `http://127.0.0.1:${port}/` })
  await answeredMore(runs, 50)
  const triggers: Array<[string, () => unknown]> = [
    ['signal (SIGUSR2)', () => { process.kill(current.pid, 'SIGUSR2') }],
    ['admin route (POST /reboot)', async () => { t.is(await post(port, '/reboot?second=30'), 202) }],
    ['code (app.reboot())', () => { void post(port, '/code-reboot') }],
    ['CLI (graceful-reboot reboot --wait)', async () => {
      const code = await new Promise<number | null>((resolve) => {
        execFile(process.execPath, [CLI, 'reboot', '--pid-file', pidFile, '--wait', '--timeout', '30000'], (err) => { resolve(err === null ? 0 : (err as { code?: number }).code ?? 1) })
      })
      t.is(code, 0)
    }]
  ]
  const rows: Array<[string, Counts]> = []
  for (const [name, trigger] of triggers) {
    const before = snapshots(runs)
    current = await rebooted(f, current, trigger)
    t.is(current.port, port)
    await answeredMore(runs, 50)
    rows.push([name, since(runs, before)])
  }
  const total = await stopAll(runs)
  t.log(table('Triggers (4 keep-alive + 2 new-connection clients, ids checked):', [...rows, ['all', total]]))
  t.deepEqual(failures(total), ZERO)
  for (const [name, c] of rows) t.true(c.answered > 0, name)
})

/** Two reboots by SIGUSR2, `busy(successor)` after each; resolves with the last successor. */
async function twoReboots (f: Fixture, first: Listening, busy: (current: Listening) => Promise<void>): Promise<Listening> {
  let current = first
  for (let i = 0; i < 2; i++) {
    current = await rebooted(f, current, () => { process.kill(current.pid, 'SIGUSR2') })
    await busy(current)
  }
  return current
}

/** SIGTERM to the last process once the load is over (its shutdown is not what is measured). */
async function end (f: Fixture, last: Listening): Promise<void> {
  process.kill(last.pid, 'SIGTERM')
  await f.closed
}

function kindTable (t: ExecutionContext, name: string, c: Counts): void {
  t.log(table('2 reboots (SIGUSR2):', [[name, c]]))
  t.true(c.answered > 0)
  t.is(c.refused, 0, 'refused')
  t.is(c.wrong, 0, 'wrong or doubled')
}

serial('kind: Unix socket, 2 reboots under checked keep-alive and new-connection load: 0 in every class', async (t) => {
  const socketPath = path.join(tempDir(t), 'app.sock')
  const f = startFixture(t, 'falsify-app', { env: { SOCKET_PATH: socketPath } })
  const first = await f.waitFor('listening') as Listening
  const runs = checkedLoads(t, { url: 'http://localhost/', socketPath })
  await answeredMore(runs, 50)
  const last = await twoReboots(f, first, async () => { await answeredMore(runs, 50) })
  const c = await stopAll(runs)
  await end(f, last)
  kindTable(t, 'Unix socket (4 keep-alive + 2 new-connection)', c)
  t.deepEqual(failures(c), ZERO)
})

serial('kind: TLS, 2 reboots under 20 pooled clients pausing 20-100 ms and 2 new-connection clients: never refused or wrong; what the idle race costs is counted (TLS connections drain, they do not move)', async (t) => {
  const f = startFixture(t, 'falsify-app', { env: { TLS: '1' } })
  const first = await f.waitFor('listening') as Listening
  const runs = checkedLoads(t, { url: `https://127.0.0.1:${first.port}/`, ca: CA }, { keepAlive: 20, fresh: 2, thinkMs: [20, 100] })
  await answeredMore(runs, 20)
  const last = await twoReboots(f, first, async () => { await answeredMore(runs, 20) })
  const c = await stopAll(runs)
  await end(f, last)
  kindTable(t, 'TLS (20 keep-alive pausing 20-100 ms + 2 new-connection)', c)
})

serial('kind: HTTP/2 (h2c), 2 reboots under 4 sessions x 2 streams: 0 in every class (streams the server never processed are retried, as the protocol allows)', async (t) => {
  const f = startFixture(t, 'h2-app')
  const first = await f.waitFor('listening') as Listening
  const run = runH2Load({ origin: `http://127.0.0.1:${first.port}`, sessions: 4, streams: 2, durationMs: 120_000, maxRequests: 300_000 })
  t.teardown(() => { run.stop() })
  // The app says when a process has answered 50 requests.
  const busy = async (l: Listening): Promise<void> => { await f.waitFor((e) => e.event === 'answered' && e.pid === l.pid) }
  await busy(first)
  const last = await twoReboots(f, first, busy)
  run.stop()
  const r = await run.result
  await end(f, last)
  const c = classes(r)
  kindTable(t, `HTTP/2 h2c (4 sessions x 2 streams; retried ${JSON.stringify(r.retried)})`, c)
  t.deepEqual(failures(c), ZERO)
})

serial('kind: WebSocket, 2 reboots under 4 clients sending one message at a time: never refused or wrong; the closes (1001 from the old process) are counted, the clients reconnect', async (t) => {
  const f = startFixture(t, 'falsify-app')
  const first = await f.waitFor('listening') as Listening
  const ws = wsLoad(t, `ws://127.0.0.1:${first.port}/ws`, 4)
  await ws.answeredMore(20)
  const last = await twoReboots(f, first, async () => { await ws.answeredMore(20) })
  const c = await ws.stop()
  await end(f, last)
  kindTable(t, `WebSocket (4 clients; closes by code ${JSON.stringify(ws.closes)})`, c)
  t.is(c.reset, 0, 'no abnormal close')
})

serial('kind: SSE, 2 reboots under 4 EventSource clients: no error, every event id the last + 1 across the reconnections', async (t) => {
  const f = startFixture(t, 'stream-app', { env: { KIND: 'fastify' } })
  const first = await f.waitFor('listening') as Listening
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  const clients = Array.from({ length: 4 }, () => new EventSourceClient(`http://127.0.0.1:${first.port}/events`, agent))
  t.teardown(() => { for (const c of clients) c.close() })
  const idOf = (data: string | undefined): number => (JSON.parse(data ?? '{}') as { id: number }).id
  const busy = async (): Promise<void> => {
    await Promise.all(clients.map(async (c) => { const n = c.events.length; await c.waitFor(() => c.events.length >= n + 5, '5 more events') }))
  }
  await busy()
  let current = first
  for (let i = 0; i < 2; i++) {
    current = await rebooted(f, current, () => { process.kill(current.pid, 'SIGUSR2') })
    await busy()
  }
  for (const c of clients) c.close()
  const counts: Counts = { sent: 0, answered: 0, ...ZERO, other: {} }
  for (const c of clients) {
    counts.sent += c.events.length
    c.events.forEach((e, i) => {
      if (i === 0 || idOf(e.data) === idOf(c.events[i - 1]?.data) + 1) counts.answered++
      else counts.wrong++
    })
    for (const err of c.errors) counts.other[String(err)] = (counts.other[String(err)] ?? 0) + 1
  }
  process.kill(current.pid, 'SIGTERM')
  await f.closed
  kindTable(t, 'SSE (4 EventSource clients; events, each id the last + 1)', counts)
  t.deepEqual(failures(counts), ZERO)
})

/** WebSocket clients sending one message at a time and checking each echo; a closed client reconnects. */
function wsLoad (t: ExecutionContext, url: string, n: number): { answeredMore: (k: number) => Promise<void>, stop: () => Promise<Counts>, closes: Record<string, number> } {
  const c: Counts = { sent: 0, answered: 0, ...ZERO, other: {} }
  const closes: Record<string, number> = {}
  const waiters = new Set<{ at: number, resolve: () => void }>()
  const answered = (): void => {
    c.answered++
    for (const w of [...waiters]) if (c.answered >= w.at) { waiters.delete(w); w.resolve() }
  }
  let running = true
  const sockets = new Set<WebSocket>()
  t.teardown(() => { running = false; for (const s of sockets) s.terminate() })
  const client = async (): Promise<void> => {
    while (running) {
      const ws = new WebSocket(url)
      sockets.add(ws)
      const queue: Array<{ data?: string, code?: number, error?: string }> = []
      let wake: (() => void) | undefined
      const push = (item: { data?: string, code?: number, error?: string }): void => { queue.push(item); wake?.() }
      ws.on('message', (data: Buffer) => { push({ data: data.toString() }) })
      ws.on('close', (code: number) => { push({ code }) })
      ws.on('error', (err: NodeJS.ErrnoException) => { push({ error: err.code ?? err.message }) })
      const next = async (): Promise<{ data?: string, code?: number, error?: string } | undefined> => {
        if (queue.length === 0) {
          const timer = new Promise<void>((resolve) => { setTimeout(resolve, 10_000).unref() })
          await Promise.race([new Promise<void>((resolve) => { wake = resolve }), timer])
          wake = undefined
        }
        return queue.shift()
      }
      const opened = await new Promise<boolean>((resolve) => { ws.once('open', () => { resolve(true) }); ws.once('error', () => { resolve(false) }) })
      if (!opened) {
        const err = queue.find((q) => q.error !== undefined)?.error ?? 'error'
        if (err === 'ECONNREFUSED') c.refused++
        else c.other[`connect ${err}`] = (c.other[`connect ${err}`] ?? 0) + 1
        sockets.delete(ws)
        continue
      }
      for (;;) {
        if (!running) { ws.close(1000); sockets.delete(ws); return }
        const id = String(c.sent++)
        ws.send(id)
        let got = await next()
        while (got?.error !== undefined) got = await next()
        if (got === undefined) { c.timedOut++; ws.terminate(); break }
        if (got.code !== undefined) {
          closes[got.code] = (closes[got.code] ?? 0) + 1
          if (got.code === 1006) c.reset++
          else c.closed++
          break
        }
        if ((JSON.parse(got.data ?? '{}') as { msg?: string }).msg === id) answered()
        else c.wrong++
      }
      sockets.delete(ws)
    }
  }
  const all = Promise.all(Array.from({ length: n }, client))
  return {
    closes,
    answeredMore: (k) => new Promise((resolve) => { waiters.add({ at: c.answered + k, resolve }) }),
    stop: async () => { running = false; await all; return c }
  }
}

serial('graceful-reboot run --workers 2: a rolling reboot under checked load, 0 in every class', async (t) => {
  const f = supervise(t)
  const workers = await firstWorkers(f)
  const port = workers[0]?.port as number
  // The worker app answers { pid, slot }: the check is that the answer is the app's.
  const check = (_id: number, body: string): boolean => { try { return typeof (JSON.parse(body) as { pid?: unknown }).pid === 'number' } catch { return false } }
  const runs = checkedLoads(t, { url: `http://127.0.0.1:${port}/` }, { check })
  await answeredMore(runs, 50)
  await rollout(f, workers)
  await answeredMore(runs, 50)
  const total = await stopAll(runs)
  t.log(table('Supervisor (SIGUSR2 to graceful-reboot run --workers 2):', [['rolling reboot of 2 workers', total]]))
  t.deepEqual(failures(total), ZERO)
})

const STORM_MS = 20_000

serial(`reload storm: a SIGUSR2 every 200 ms for ${STORM_MS / 1000} s to the process the PID file names (rebootProbation 200 ms), under checked load: 0 in every class`, async (t) => {
  const pidFile = path.join(tempDir(t), 'app.pid')
  const f = startFixture(t, 'falsify-app', { env: { PID_FILE: pidFile, PROBATION: '200' } })
  const first = await f.waitFor('listening') as Listening
  const runs = checkedLoads(t, { url: `http://127.0.0.1:${first.port}/` })
  await answeredMore(runs, 50)
  let signals = 0
  const started = Date.now()
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      if (Date.now() - started >= STORM_MS) { resolve(); return }
      try { process.kill(Number(fs.readFileSync(pidFile, 'utf8').trim()), 'SIGUSR2'); signals++ } catch {}
      setTimeout(tick, 200)
    }
    tick()
  })
  // Each successor spawned serves (the code is healthy); then every process but the last drains and exits.
  const spawned = f.lines.filter((e) => e.event === 'handoff' && e.step === 'spawned').length
  await f.waitFor(() => f.lines.filter((e) => e.event === 'listening' && e.parent !== null).length >= spawned, 30_000)
  const serving = f.lines.filter((e) => e.event === 'listening') as Listening[]
  for (const l of serving) f.track(l.pid)
  const last = serving[serving.length - 1] as Listening
  await Promise.all(serving.filter((l) => l !== last).map(async (l) => await f.waitFor((e) => e.event === 'exit' && e.pid === l.pid, 30_000)))
  await answeredMore(runs, 50)
  const total = await stopAll(runs)
  const refused = f.lines.filter((e) => e.event === 'handoff' && e.step === 'refused').length
  t.log(table(`Reload storm: ${signals} signals, ${serving.length - 1} reboots done, ${refused} refused (one under way):`, [['storm', total]]))
  t.true(serving.length - 1 >= 3, 'several reboots went through')
  t.deepEqual(failures(total), ZERO)
  process.kill(last.pid, 'SIGTERM')
  await f.closed
})

serial('kill -9: the successor in probation (rolled back) and the old process in its drain (the successor carries on): never refused or wrong; only requests in flight on the killed process are lost', async (t) => {
  const f = startFixture(t, 'falsify-app', { env: { PROBATION: '3000' } })
  const first = await f.waitFor('listening') as Listening
  const runs = checkedLoads(t, { url: `http://127.0.0.1:${first.port}/` })
  await answeredMore(runs, 50)
  const rows: Array<[string, Counts]> = []

  let before = snapshots(runs)
  process.kill(first.pid, 'SIGUSR2')
  const doomed = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid) as Listening
  f.track(doomed.pid)
  await answeredMore(runs, 20)
  process.kill(doomed.pid, 'SIGKILL')
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'failed' && e.pid === first.pid)
  await answeredMore(runs, 50)
  rows.push(['successor SIGKILLed in probation', since(runs, before)])

  before = snapshots(runs)
  process.kill(first.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid && e.pid !== doomed.pid) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'serving' && e.pid === first.pid)
  process.kill(first.pid, 'SIGKILL')
  await answeredMore(runs, 50)
  rows.push(['old process SIGKILLed in its drain', since(runs, before)])
  const total = await stopAll(runs)
  t.log(table('kill -9 (4 keep-alive + 2 new-connection clients):', [...rows, ['all', total]]))
  for (const [name, c] of rows) {
    t.is(c.refused, 0, `${name}: refused`)
    t.is(c.wrong, 0, `${name}: wrong`)
    t.true(c.reset + c.closed <= 6, `${name}: at most one request in flight per client lost (${c.reset + c.closed})`)
    t.is(c.timedOut, 0, `${name}: timed out`)
  }
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})
