// Runs in the test process: the old process of a reboot watches its successor until its own drain is
// over (test/fixtures/standby-app.ts): a successor whose event loop blocks right when it serves costs no
// request and no doubled or mixed response; a successor killed during the drain makes the old process
// the service again, for good (a late rollback); a 2 s pause is not a loss; a successor frozen for
// good is killed and the old process serves again.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }

interface Outcome { id: number, ok: boolean, why?: string, ms: number, pid?: number, startedAt: number, blockEnd?: number, connection?: string | undefined }

/** One GET /?id=N on `agent`; checks that the body names N. */
function get (agent: http.Agent, port: number, id: number): Promise<Outcome> {
  const started = performance.now()
  const startedAt = Date.now()
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/?id=${id}`, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => {
        const ms = performance.now() - started
        try {
          const b = JSON.parse(body) as { id: number, pid: number, blockEnd: number }
          resolve(b.id === id ? { id, ok: true, ms, pid: b.pid, startedAt, blockEnd: b.blockEnd, connection: res.headers.connection } : { id, ok: false, why: `answered for request ${b.id}`, ms, startedAt })
        } catch {
          resolve({ id, ok: false, why: `body ${JSON.stringify(body)} (status ${String(res.statusCode)})`, ms, startedAt })
        }
      })
      res.on('error', (err) => { resolve({ id, ok: false, why: err.message, ms: performance.now() - started, startedAt }) })
    })
    req.setTimeout(15_000, () => { req.destroy(new Error('no answer within 15 s')) })
    req.on('error', (err) => { resolve({ id, ok: false, why: err.message, ms: performance.now() - started, startedAt }) })
  })
}

/** `loops` keep-alive clients, one request at a time each, until `stop()` or `max` requests each. */
function load (port: number, loops: number, max: number): { stop: () => Promise<Outcome[]>, count: () => number, done: Promise<void> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: loops, maxFreeSockets: loops })
  let running = true
  let next = 0
  const all: Outcome[] = []
  const loop = async (): Promise<void> => {
    for (let i = 0; i < max && running; i++) all.push(await get(agent, port, ++next))
  }
  const done = Promise.all(Array.from({ length: loops }, loop)).then(() => {})
  return {
    done,
    count: () => all.length,
    stop: async () => {
      running = false
      await done
      agent.destroy()
      return all
    }
  }
}

test('a successor that blocks its event loop for 6 s right when it serves, under keep-alive load (20 clients): no request fails, none is doubled or mixed', async (t) => {
  const f = startFixture(t, 'standby-app', { env: { BLOCK_MS: '6000' } })
  const first = await f.waitFor('listening', 10_000) as Listening
  const l = load(first.port, 20, 10_000)
  const stopped: { p?: Promise<Outcome[]> } = {}
  t.teardown(async () => { await (stopped.p ?? l.stop()) })
  process.kill(first.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid, 20_000) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'blocked' && e.pid === next.pid, 20_000)
  const oldExit = await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  t.is(oldExit.code, 0, 'the blocked successor was waited for before the drain, not lost during it')
  // Then served by the successor alone for a while: 200 more requests (or the bound of the loops).
  const before = l.count()
  let over = false
  void l.done.then(() => { over = true })
  while (!over && l.count() < before + 200) await new Promise((resolve) => { setImmediate(resolve) })
  stopped.p = l.stop()
  const all = await stopped.p
  const failed = all.filter((o) => !o.ok)
  const max = Math.max(...all.map((o) => o.ms))
  t.log(`${all.length} requests, max latency ${max.toFixed(0)} ms, served by ${[...new Set(all.map((o) => o.pid))].join(' ')}`)
  t.deepEqual(failed.map((o) => `${o.id}: ${o.why ?? ''}`), [])
  t.true(all.some((o) => o.pid === next.pid), 'the successor served')
  // No client waited on the blocked loop: the successor answered no request sent well before its block
  // ended (the old process served them; 50 ms for a connection accepted as the block ends).
  const waited = all.filter((o) => o.pid === next.pid && o.blockEnd !== undefined && o.startedAt < o.blockEnd - 50)
  t.deepEqual(waited.map((o) => `${o.id}: sent ${String((o.blockEnd ?? 0) - o.startedAt)} ms before the block ended, answered after ${o.ms.toFixed(0)} ms`).slice(0, 5), [])
  t.is(new Set(all.map((o) => o.id)).size, all.length, 'each request answered once')
  process.kill(next.pid, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === next.pid, 20_000)
})

/** GET /slow?ms=N on `agent`: the long request that keeps the old process's drain going. */
function slowGet (agent: http.Agent, port: number, ms: number): Promise<{ status: number | undefined, body: string, connection: string | undefined }> {
  const p = new Promise<{ status: number | undefined, body: string, connection: string | undefined }>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `/slow?ms=${ms}`, agent }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode, body, connection: res.headers.connection }) })
    }).on('error', reject)
  })
  p.catch(() => {})
  return p
}

/** Waits, on the event loop, until `pid` is gone (reaped), at most `ms`. */
async function gone (pid: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms
  while (performance.now() < end) {
    if (!isAlive(pid)) return true
    await new Promise((resolve) => { setTimeout(resolve, 20) })
  }
  return !isAlive(pid)
}

/** Starts the fixture with a PID file, a slow request in flight on a keep-alive connection, and reboots it; resolves once the old process drains. */
async function rebootWithSlowRequest (t: ExecutionContext, slowMs: number, env: Record<string, string> = {}): Promise<{ f: Fixture, first: Listening, next: Listening, pidFile: string, slow: ReturnType<typeof slowGet> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'standby-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const pidFile = path.join(dir, 'app.pid')
  const f = startFixture(t, 'standby-app', { env: { PID_FILE: pidFile, ...env } })
  const first = await f.waitFor('listening', 10_000) as Listening
  const kept = new http.Agent({ keepAlive: true })
  t.teardown(() => { kept.destroy() })
  const slow = slowGet(kept, first.port, slowMs)
  process.kill(first.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid, 20_000) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === first.pid, 20_000)
  return { f, first, next, pidFile, slow }
}

test('a successor SIGKILLed while its old process drains a long request: the old process serves again, for good (no request from the kill on fails, the drain\'s end does not end it), and a later SIGUSR2 reboots it normally', async (t) => {
  const { f, first, next, pidFile, slow } = await rebootWithSlowRequest(t, 8000)
  const killedAt = performance.now()
  process.kill(next.pid, 'SIGKILL')
  // From the kill on: fresh clients (a pooled connection to the killed process would be reset).
  const l = load(first.port, 10, 5000)
  const stopped: { p?: Promise<Outcome[]> } = {}
  t.teardown(async () => { await (stopped.p ?? l.stop()) })
  const lost = await f.waitFor((e) => e.event === 'handoff' && e.step === 'lost' && e.pid === first.pid)
  t.like(lost, { other: next.pid, reason: `successor ${next.pid} was killed by SIGKILL`, back: true, lost: 1 })
  await f.waitFor((l) => l.pid === first.pid && l.level === 50 && typeof l.msg === 'string' && l.msg.includes(`successor ${next.pid} was killed by SIGKILL after it took over; this process called its drain off and serves again, for good`), 10_000)
  t.truthy(f.lines.find((e) => e.event === 'state' && e.state === 'running' && e.pid === first.pid), 'the old process is running again')
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(first.pid), 'the PID file names the old process again')
  const status = JSON.parse(fs.readFileSync(`${pidFile}.${first.pid}.status`, 'utf8')) as { state: string, role: string | null, attempts: Array<Record<string, unknown>> }
  t.like(status, { state: 'running', role: null }, 'its status file says it serves')
  t.like(status.attempts.at(-1), { step: 'lost', successor: next.pid, back: true })
  // The slow request, in flight on a connection its drain had told to close, ends keep-alive: the drain is off.
  const long = await slow
  t.is(long.status, 200)
  t.like(JSON.parse(long.body), { slow: true, pid: first.pid })
  t.is(long.connection, 'keep-alive', 'the response the drain had marked Connection: close is answered normally again')
  // Past the moment the drain would have ended (the slow request was its last connection): 300 more requests.
  const after = l.count()
  let over = false
  void l.done.then(() => { over = true })
  while (!over && l.count() < after + 300) await new Promise((resolve) => { setImmediate(resolve) })
  stopped.p = l.stop()
  const all = await stopped.p
  const failed = all.filter((o) => !o.ok)
  const firstSent = all.slice().sort((a, b) => a.startedAt - b.startedAt).slice(0, 10)
  t.log(`${all.length} requests from the kill on (10 clients), ${failed.length} failed; the 10 sent first were answered after ${firstSent.map((o) => o.ms.toFixed(0)).join(', ')} ms; max latency ${Math.max(...all.map((o) => o.ms)).toFixed(0)} ms; ${(performance.now() - killedAt).toFixed(0)} ms since the kill`)
  t.deepEqual(failed.map((o) => `${o.id}: ${o.why ?? ''}`), [])
  t.true(all.length >= after + 300 || over, 'the load ran past the drain\'s would-be end')
  t.deepEqual([...new Set(all.map((o) => o.pid))], [first.pid], 'the old process alone serves')
  t.true(all.slice(-50).every((o) => o.connection === 'keep-alive'), 'its responses are keep-alive again')
  t.is(f.lines.find((e) => e.event === 'exit' && e.pid === first.pid), undefined, 'the old process did not exit')
  // A later reboot is an ordinary one: the new successor serves, the old process exits 0, the PID file follows.
  process.kill(first.pid, 'SIGUSR2')
  const third = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid && e.pid !== next.pid, 20_000) as Listening
  f.track(third.pid)
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  t.is(exit.code, 0)
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(third.pid), 'the PID file names the new successor')
  const served = await get(new http.Agent({ keepAlive: false }), first.port, 1)
  t.like(served, { ok: true, pid: third.pid })
})

test('a successor paused for 2 s (SIGSTOP, then SIGCONT) while its old process drains: no request fails, the successor alone serves afterwards, the old process exits 0 and the PID file names the successor', async (t) => {
  const { f, first, next, pidFile, slow } = await rebootWithSlowRequest(t, 8000)
  process.kill(next.pid, 'SIGSTOP')
  const stoppedAt = performance.now()
  t.teardown(() => { try { process.kill(next.pid, 'SIGCONT') } catch {} })
  const l = load(first.port, 10, 5000)
  const stopped: { p?: Promise<Outcome[]> } = {}
  t.teardown(async () => { await (stopped.p ?? l.stop()) })
  // The pause is noticed (no ping answered for 1 s: the transfer stops), and lasts 2 s in all: a fault's length, not a wait for an event.
  await f.waitFor((l) => l.pid === first.pid && typeof l.msg === 'string' && l.msg.includes('did not answer'), 10_000)
  await new Promise((resolve) => { setTimeout(resolve, Math.max(0, 2000 - (performance.now() - stoppedAt))) })
  process.kill(next.pid, 'SIGCONT')
  const contAt = Date.now()
  t.log(`paused ${(performance.now() - stoppedAt).toFixed(0)} ms`)
  const long = await slow
  t.like(JSON.parse(long.body), { slow: true, pid: first.pid })
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  // Then 100 more requests, the old process gone.
  const after = l.count()
  let over = false
  void l.done.then(() => { over = true })
  while (!over && l.count() < after + 100) await new Promise((resolve) => { setImmediate(resolve) })
  stopped.p = l.stop()
  const all = await stopped.p
  const failed = all.filter((o) => !o.ok)
  t.log(`${all.length} requests, ${failed.length} failed, max latency ${Math.max(...all.map((o) => o.ms)).toFixed(0)} ms`)
  t.deepEqual(failed.map((o) => `${o.id}: ${o.why ?? ''}`), [])
  t.is(f.lines.find((e) => e.event === 'handoff' && e.step === 'lost'), undefined, 'a pause is not a loss')
  t.deepEqual([...new Set(all.filter((o) => o.startedAt > contAt).map((o) => o.pid))], [next.pid], 'after the pause, only the successor answers')
  t.is(exit.code, 0)
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(next.pid), 'the PID file names the successor')
  process.kill(next.pid, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === next.pid, 20_000)
})

test('a successor frozen for good (SIGSTOP) while its old process drains: within successorLostAfter (5 s) the old process kills it and serves again; only a request the frozen process had accepted is lost', async (t) => {
  const { f, first, next, pidFile, slow } = await rebootWithSlowRequest(t, 15_000)
  // A connection the successor accepted and served before it froze.
  const pooled = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { pooled.destroy() })
  const before = await get(pooled, first.port, 0)
  t.like(before, { ok: true, pid: next.pid })
  process.kill(next.pid, 'SIGSTOP')
  const stoppedAt = performance.now()
  // Sent to the frozen process on its own connection: lost with it.
  const onFrozen = get(pooled, first.port, -1)
  // New clients from the freeze on: they wait in the listening socket's queue.
  const l = load(first.port, 10, 5000)
  const stopped: { p?: Promise<Outcome[]> } = {}
  t.teardown(async () => { await (stopped.p ?? l.stop()) })
  const lost = await f.waitFor((e) => e.event === 'handoff' && e.step === 'lost' && e.pid === first.pid, 20_000)
  const lostMs = performance.now() - stoppedAt
  t.like(lost, { other: next.pid, back: true, lost: 1 })
  t.regex(String(lost.reason), new RegExp(`^successor ${next.pid} answered no ping for \\d+ ms \\(successorLostAfter: its event loop is frozen\\) and was killed \\(SIGKILL\\)$`))
  t.true(await gone(next.pid, 10_000), 'the frozen process is gone')
  const after = l.count()
  let over = false
  void l.done.then(() => { over = true })
  while (!over && l.count() < after + 200) await new Promise((resolve) => { setImmediate(resolve) })
  stopped.p = l.stop()
  const all = await stopped.p
  const failed = all.filter((o) => !o.ok)
  const maxMs = Math.max(...all.map((o) => o.ms))
  t.log(`lost declared ${lostMs.toFixed(0)} ms after the SIGSTOP; ${all.length} requests sent from the freeze on (10 clients), ${failed.length} failed; max latency ${maxMs.toFixed(0)} ms (waited in the listening socket's queue)`)
  t.deepEqual(failed.map((o) => `${o.id}: ${o.why ?? ''}`), [])
  t.deepEqual([...new Set(all.map((o) => o.pid))], [first.pid], 'the old process answers them all')
  const frozenRequest = await onFrozen
  t.false(frozenRequest.ok, 'a request the frozen process had read is lost with it')
  t.log(`the request sent to the frozen process on its own connection: ${frozenRequest.why ?? ''}`)
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(first.pid), 'the PID file names the process that serves')
  const long = await slow
  t.like(JSON.parse(long.body), { slow: true, pid: first.pid })
  t.is(f.lines.find((e) => e.event === 'exit' && e.pid === first.pid), undefined, 'the old process serves on')
})

test('a successor SIGKILLed after a shutdown signal joined its old process\'s drain: the old process serves until the drain is over, then exits 69 (the service was ending)', async (t) => {
  const { f, first, next, pidFile, slow } = await rebootWithSlowRequest(t, 6000, { LOG_LEVEL: 'info' })
  process.kill(first.pid, 'SIGTERM')
  await f.waitFor((l) => l.pid === first.pid && typeof l.msg === 'string' && l.msg.includes('SIGTERM received during a drain'), 10_000)
  process.kill(next.pid, 'SIGKILL')
  const lost = await f.waitFor((e) => e.event === 'handoff' && e.step === 'lost' && e.pid === first.pid)
  t.like(lost, { other: next.pid, reason: `successor ${next.pid} was killed by SIGKILL`, back: false })
  const served = await get(new http.Agent({ keepAlive: false }), first.port, 1)
  t.like(served, { ok: true, pid: first.pid }, 'it accepts again until its drain is over')
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(first.pid), 'the PID file names it')
  t.like(JSON.parse((await slow).body), { slow: true, pid: first.pid })
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  t.is(exit.code, 69, 'exitCodes.successorLost')
})

/** GET `path` on a fresh connection: the status and the pid that answered (x-pid), or the error. */
function pidOf (port: number, path: string): Promise<{ status?: number | undefined, pid?: number, err?: string }> {
  return new Promise((resolve) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      res.resume()
      res.on('end', () => { resolve({ status: res.statusCode, pid: Number(res.headers['x-pid']) }) })
    }).on('error', (err) => { resolve({ err: err.message }) })
  })
}

test('two apps in one process (Fastify with a long request, Express drained already): a successor SIGKILLed during the drain makes both serve again, for good; a later reboot is ordinary', async (t) => {
  const f = startFixture(t, 'transfer-app')
  const first = await f.waitFor('listening', 10_000) as FixtureEvent & { pid: number, ports: { fastify: number, express: number } }
  const { fastify, express } = first.ports
  const slow = pidOf(fastify, '/slow?ms=7000')
  process.kill(first.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid, 20_000) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === first.pid, 20_000)
  process.kill(next.pid, 'SIGKILL')
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'lost' && e.pid === first.pid)
  t.like(await pidOf(express, '/'), { status: 200, pid: first.pid })
  t.like(await pidOf(fastify, '/'), { status: 200, pid: first.pid })
  t.like(await slow, { status: 200, pid: first.pid })
  // The request that kept the drain going is over: both apps still serve, the process runs on.
  t.like(await pidOf(express, '/'), { status: 200, pid: first.pid })
  t.like(await pidOf(fastify, '/'), { status: 200, pid: first.pid })
  t.is(f.lines.find((e) => e.event === 'exit' && e.pid === first.pid), undefined)
  process.kill(first.pid, 'SIGUSR2')
  const third = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid && e.pid !== next.pid, 20_000) as Listening
  f.track(third.pid)
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid, 30_000)
  t.is(exit.code, 0)
  t.like(await pidOf(express, '/'), { status: 200, pid: third.pid })
  t.like(await pidOf(fastify, '/'), { status: 200, pid: third.pid })
})
