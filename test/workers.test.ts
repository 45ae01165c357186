// Runs in the test process: `graceful-reboot run --workers 2` for real: the supervisor starts the
// workers of test/fixtures/worker-app.ts (Fastify and Express), rolls them under keep-alive and
// think-time load (0 failed, 0 new connections for pooled clients, every pid new), stops a rollout whose
// new code crashes in probation, replaces a worker killed outside a rollout, drains everything on
// SIGTERM, and leaves no worker behind when it is SIGKILLed.
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import test from 'ava'
import { runLoad } from '../tools/load'
import { isAlive, type Fixture, type FixtureEvent } from './helpers/fixture'
import { firstWorkers, rollout, says, supervise, type Listening } from './helpers/supervisor'
import { getJson } from './helpers/servers'
import { parseRun, runRefusal } from '../lib/workers/run'

for (const framework of ['fastify', 'express']) {
  // One at a time: each runs 28 clients against two workers on this machine's two cores.
  test.serial(`${framework}: 5 rolling reboots under keep-alive and think-time load lose 0 requests, open 0 new connections for pooled clients during the rollouts, and change every worker's pid each time`, async (t) => {
    const f = supervise(t, { FRAMEWORK: framework })
    let workers = await firstWorkers(f)
    const url = `http://127.0.0.1:${workers[0]?.port ?? 0}/`
    const backToBack = runLoad({ url, connections: 8, mode: 'keep-alive', durationMs: 120_000 })
    const think = runLoad({ url, connections: 20, mode: 'keep-alive', durationMs: 120_000, thinkMs: [50, 150], agentPerLoop: true })
    // Before the rollouts, the workers rebalance the 28 connections (a few close once, docs/workers.md#sharing-the-load):
    // the rollouts start once 3,000 requests in a row were answered without a new connection.
    const opened = (): [number, number] => [backToBack.snapshot().connectionsOpened, think.snapshot().connectionsOpened]
    await new Promise<void>((resolve, reject) => {
      let last = ''
      let since = 0
      const guard = setTimeout(() => { clearInterval(poll); reject(new Error(`the connections did not settle within 60 s: ${last}`)) }, 60_000)
      const poll = setInterval(() => {
        const now = opened()
        const answered = backToBack.snapshot().answered + think.snapshot().answered
        if (now.join() !== last) { last = now.join(); since = answered }
        if (now[0] >= 8 && now[1] >= 20 && answered - since >= 3_000) { clearInterval(poll); clearTimeout(guard); resolve() }
      }, 20)
    })
    const settled = opened()
    const pids = workers.map((w) => w.pid)
    for (let i = 0; i < 5; i++) {
      const next = await rollout(f, workers)
      for (const [j, w] of next.entries()) t.not(w.pid, workers[j]?.pid, `rollout ${i + 1}: slot ${j + 1} has a new pid`)
      t.deepEqual(next.map((w) => w.slot), ['1', '2'])
      workers = next
      pids.push(...next.map((w) => w.pid))
    }
    backToBack.stop()
    think.stop()
    const [a, b] = await Promise.all([backToBack.result, think.result])
    for (const [name, r, conns] of [['back-to-back', a, settled[0]], ['think-time', b, settled[1]]] as const) {
      t.is(r.failed, 0, `${name}: ${JSON.stringify(r.causes)}`)
      t.true(r.answered > 0)
      t.is(r.connectionsOpened, conns, `${name}: the pooled clients never reconnected during the rollouts`)
    }
    t.log(`${framework}: connections opened before the rollouts (28 clients; the rest is rebalancing): ${settled[0]} back-to-back, ${settled[1]} think-time`)
    t.is(new Set(pids).size, 12, 'twelve distinct workers over six generations')
    t.log(`${framework}: ${a.answered} back-to-back and ${b.answered} think-time requests over 5 rolling reboots; pids seen by the clients: ${a.pids.length}`)
    process.kill(f.pid, 'SIGTERM')
    t.is((await f.exited).code, 0)
    await f.closed
    for (const pid of pids) t.false(isAlive(pid), `worker ${pid} is gone`)
  })
}

test('--workers 3 --surge 2: two slots are replaced at once, then the third; a second SIGUSR2 during the rollout is refused; nothing fails', async (t) => {
  // A long probation: two replacements that start together both serve well before either passes it.
  const f = supervise(t, { PROBATION: '4000' }, ['--workers', '3', '--surge', '2'])
  const workers = await Promise.all(['1', '2', '3'].map(async (slot) => await f.waitFor((e) => e.event === 'listening' && e.slot === slot) as Listening))
  await says(f, /3 workers serving/)
  const load = runLoad({ url: `http://127.0.0.1:${workers[0]?.port ?? 0}/`, connections: 6, mode: 'keep-alive', durationMs: 60_000 })
  const from = f.stderr().length
  process.kill(f.pid, 'SIGUSR2')
  // Slots 1 and 2 start together: both replacements exist before either old worker has gone.
  const [one, two] = await Promise.all(workers.slice(0, 2).map(async (w) => await f.waitFor((e) => e.event === 'listening' && e.parent === w.pid) as Listening))
  process.kill(f.pid, 'SIGUSR2')
  await says(f, /rolling reboot \(SIGUSR2\) refused: a rolling reboot is already in progress/, from)
  await says(f, /every worker replaced/, from)
  const three = f.lines.find((e) => e.event === 'listening' && e.parent === workers[2]?.pid)
  t.truthy(three, 'slot 3 was replaced too')
  // Together: slot 2's replacement served before slot 1's old worker saw its own replacement pass probation.
  const at = (match: (e: FixtureEvent) => boolean): number => f.lines.findIndex(match)
  const served = (old: Listening | undefined): number => at((e) => e.event === 'handoff' && e.step === 'serving' && e.pid === old?.pid)
  t.true(at((e) => e.pid === two?.pid && e.event === 'listening') < served(workers[0]), 'slot 2 did not wait for slot 1')
  t.true(at((e) => e.pid === one?.pid && e.event === 'listening') < served(workers[1]), 'nor slot 1 for slot 2')
  t.true(at((e) => e === three) > Math.min(served(workers[0]), served(workers[1])), 'slot 3 waited for one of them')
  load.stop()
  const r = await load.result
  t.is(r.failed, 0, JSON.stringify(r.causes))
  t.is(r.connectionsOpened, 6)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('new code that crashes 300 ms after it serves: the rollout stops at the first slot, 0 requests fail, and the 2 old workers still serve', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-workers-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const modeFile = path.join(dir, 'mode')
  const f = supervise(t, { MODE_FILE: modeFile })
  const workers = await firstWorkers(f)
  const url = `http://127.0.0.1:${workers[0]?.port ?? 0}/`
  const load = runLoad({ url, connections: 8, mode: 'keep-alive', durationMs: 60_000 })
  fs.writeFileSync(modeFile, 'crash-after-serve')
  const from = f.stderr().length
  process.kill(f.pid, 'SIGUSR2')
  const replacement = await f.waitFor((e) => e.event === 'listening' && e.parent === workers[0]?.pid) as Listening
  const stopped = await says(f, /slot 1: the replacement of worker \d+ failed[^\n]*the rollout stopped/, from)
  t.regex(stopped, new RegExp(`worker ${String(workers[0]?.pid)} failed \\(ERR_GRACEFUL_SUCCESSOR_PROBATION\\)`))
  t.false(f.lines.some((e) => e.event === 'listening' && e.parent === workers[1]?.pid), 'slot 2 was not touched')
  load.stop()
  const r = await load.result
  t.is(r.failed, 0, JSON.stringify(r.causes))
  for (const w of workers) t.true(isAlive(w.pid), `worker ${w.pid} serves on`)
  const seen = new Set<number>()
  for (let i = 0; i < 40 && seen.size < 2; i++) seen.add((await getJson<{ pid: number }>(workers[0]?.port ?? 0, '/')).body.pid)
  t.true([...seen].every((pid) => workers.some((w) => w.pid === pid)), `served by ${[...seen].join(', ')}, the old workers; the crashed replacement was ${replacement.pid}`)
  process.kill(f.pid, 'SIGTERM')
  await f.closed
})

test('a worker SIGKILLed outside a rollout is replaced within seconds; only its own connections fail', async (t) => {
  const f = supervise(t)
  const workers = await firstWorkers(f)
  const url = `http://127.0.0.1:${workers[0]?.port ?? 0}/`
  const load = runLoad({ url, connections: 8, mode: 'keep-alive', durationMs: 60_000 })
  const killed = workers[1] as Listening
  const at = Date.now()
  process.kill(killed.pid, 'SIGKILL')
  const fresh = await f.waitFor((e) => e.event === 'listening' && e.slot === '2' && e.pid !== killed.pid) as Listening
  const ms = Date.now() - at
  t.is(fresh.parent, null)
  t.is(fresh.port, killed.port, 'on the same socket')
  load.stop()
  const r = await load.result
  t.true(r.failed <= 8, `${r.failed} failed: at most the killed worker's own connections (8 in all) ${JSON.stringify(r.causes)}`)
  t.log(`replaced in ${ms} ms; ${r.failed} of ${r.sent} requests failed (on the killed worker's connections)`)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('SIGTERM to the supervisor lets a 1.5 s request in flight finish with 200, exits 0 and leaves no process', async (t) => {
  const f = supervise(t)
  const workers = await firstWorkers(f)
  const port = workers[0]?.port ?? 0
  const slow = getJson<{ pid: number }>(port, '/slow?ms=1500')
  await f.waitFor('slow-started')
  const from = f.stderr().length
  process.kill(f.pid, 'SIGTERM')
  await says(f, /SIGTERM: draining 2 workers/, from)
  t.is((await slow).status, 200)
  t.is((await f.exited).code, 0)
  await f.closed
  for (const w of workers) t.false(isAlive(w.pid))
})

/** A raw keep-alive connection that sends `GET path` and resolves with the answering pid (x-pid) of each answer. */
function rawClient (port: number): { ask: (path?: string) => Promise<number>, socket: net.Socket, opened: Promise<void> } {
  const socket = net.connect(port, '127.0.0.1')
  socket.setEncoding('latin1')
  let buf = ''
  const waiting: Array<(pid: number) => void> = []
  socket.on('data', (d: string) => {
    buf += d
    for (;;) {
      const end = buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = buf.slice(0, end)
      const total = end + 4 + Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
      if (buf.length < total) return
      buf = buf.slice(total)
      waiting.shift()?.(Number(/x-pid: *(\d+)/i.exec(head)?.[1]))
    }
  })
  socket.on('error', () => {})
  const opened = new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const ask = (p = '/'): Promise<number> => new Promise((resolve, reject) => {
    waiting.push(resolve)
    socket.once('close', () => { reject(new Error(`the connection closed before the answer to GET ${p}`)) })
    socket.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
  })
  return { ask, socket, opened }
}

test('a rollout reboots the next slot once the old worker handed its idle connections over, not once its drain is over: a long request does not hold it back', async (t) => {
  // The slow request outlives the rollout: the drain's timeout is longer than any rollout.
  const f = supervise(t, { TIMEOUT: '120000' }, ['--workers', '2', '--log-level', 'debug'])
  const workers = await firstWorkers(f)
  const port = workers[0]?.port ?? 0
  const first = workers[0]?.pid ?? 0
  // Idle keep-alive connections on both workers, each with one answer behind it.
  const clients = Array.from({ length: 40 }, () => rawClient(port))
  t.teardown(() => { for (const c of clients) c.socket.destroy() })
  await Promise.all(clients.map((c) => c.opened))
  const before = await Promise.all(clients.map((c) => c.ask()))
  // A request that runs for a minute on slot 1's worker.
  let slow: ReturnType<typeof rawClient> | undefined
  for (let i = 0; i < 50 && slow === undefined; i++) {
    const c = rawClient(port)
    clients.push(c)
    await c.opened
    if (await c.ask() === first) slow = c
  }
  if (slow === undefined) return t.fail(`no connection reached worker ${first} in 50 tries`)
  const slowAnswer = slow.ask('/slow?ms=60000')
  await f.waitFor((e) => e.event === 'slow-started' && e.pid === first)
  const from = f.stderr().length
  const next = rollout2(f, workers)
  const line = await says(f, new RegExp(`slot 1: worker ${first} (handed its connections over|is gone|still moves connections) after \\d+ ms; next slot`), from, 30_000)
  t.regex(line, /handed its connections over/, 'slot 2 waited for the moves of slot 1, not for its drain (the slow request)')
  const [one] = await next
  t.true(isAlive(first), 'the old worker of slot 1 still drains its slow request after the rollout')
  // Every idle connection of slot 1's old worker was moved to its replacement (the same connections, no reconnect).
  const after = await Promise.all(clients.slice(0, 40).map((c) => c.ask()))
  for (const [i, pid] of before.entries()) if (pid === first) t.is(after[i], one?.pid, `connection ${i} moved from ${first} to slot 1's replacement`)
  t.true(before.includes(first), 'some idle connections were on slot 1')
  // The client gives up its slow request: the old worker's drain is over.
  slowAnswer.catch(() => {})
  slow.socket.destroy()
  await f.waitFor((e) => e.event === 'exiting' && e.pid === first)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
  await f.closed
})

/** SIGUSR2 to the supervisor; resolves with the replacements once the rollout is over (the old workers may still drain). */
async function rollout2 (f: Fixture, current: Listening[]): Promise<Listening[]> {
  const from = f.stderr().length
  process.kill(f.pid, 'SIGUSR2')
  const next: Listening[] = []
  for (const w of current) next.push(await f.waitFor((e) => e.event === 'listening' && e.parent === w.pid) as Listening)
  await says(f, /every worker replaced/, from)
  return next
}

test('a supervisor killed with SIGKILL leaves workers that notice and drain: none outlives it', async (t) => {
  const f = supervise(t)
  const workers = await firstWorkers(f)
  process.kill(f.pid, 'SIGKILL')
  for (const w of workers) {
    const exit = await f.waitFor((e) => e.event === 'exiting' && e.pid === w.pid) as FixtureEvent & { code: number }
    t.is(exit.code, 0)
  }
  await f.closed
  for (const w of workers) t.false(isAlive(w.pid))
})

test('app.reboot() in a worker rolls every worker and resolves with its own replacement\'s pid', async (t) => {
  const f = supervise(t)
  const workers = await firstWorkers(f)
  const res = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: workers[0]?.port, path: '/reboot', method: 'POST', agent: false }, (r) => {
      let body = ''
      r.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => { resolve(JSON.parse(body) as Record<string, unknown>) })
    })
    req.on('error', reject)
    req.end()
  })
  t.true(res.ok, JSON.stringify(res))
  const replacements = await Promise.all(workers.map(async (w) => await f.waitFor((e) => e.event === 'listening' && e.parent === w.pid) as Listening))
  t.true(replacements.some((r) => r.pid === res.successor), 'it names a replacement')
  process.kill(f.pid, 'SIGTERM')
  await f.closed
})

test('each replacement gets the state its old worker hands over (test/fixtures/state-app.ts: a counter of requests)', async (t) => {
  const f = supervise(t, {}, ['--workers', '2'], 'state-app')
  await says(f, /2 workers serving/)
  const workers = f.lines.filter((e) => e.event === 'listening') as Listening[]
  const port = workers[0]?.port ?? 0
  // A new connection per request: the kernel spreads them over both workers.
  for (let i = 0; i < 200; i++) t.is((await getJson(port, '/')).status, 200)
  const from = f.stderr().length
  process.kill(f.pid, 'SIGUSR2')
  await says(f, /every worker replaced/, from)
  const next = await Promise.all(workers.map(async (w) => await f.waitFor((e) => e.event === 'listening' && e.parent === w.pid) as Listening & { served: number }))
  t.is(next.reduce((n, w) => n + w.served, 0), 200, `the replacements inherited ${next.map((w) => w.served).join(' + ')} requests`)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('a node process the app itself starts in a worker is not a worker: it does not take the supervisor\'s variables for its own', async (t) => {
  const f = supervise(t)
  const workers = await firstWorkers(f)
  const child = await getJson<{ worker: string | null, supervisor: string | null, launcher: string }>(workers[0]?.port ?? 0, '/child')
  t.is(child.status, 200)
  t.like(child.body, { worker: null, supervisor: null })
  t.not(child.body.launcher, 'supervisor')
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('a script that dies at start: the supervisor gives up after 5 attempts with backoff, names why, and exits 1', async (t) => {
  const f = supervise(t, { PORT: 'not-a-port' })
  const exit = await f.exited
  t.is(exit.code, 1)
  t.regex(f.stderr(), /slot 1: its worker died 5 times before it served; not starting it again/)
  t.regex(f.stderr(), /a new worker in 100 ms[\s\S]*in 200 ms[\s\S]*in 400 ms[\s\S]*in 800 ms/)
})

test('run: arguments are checked, naming the bad one; PM2 and node:cluster are refused with the fix', (t) => {
  t.deepEqual(parseRun(['--workers', '3', '--surge=2', 'app.js', '--port', '80']), { workers: 3, surge: 2, pidFile: undefined, nodeArgs: [], logFormat: 'text', logLevel: 'info', acceptQueues: undefined, rebalance: true, script: 'app.js', args: ['--port', '80'] })
  t.deepEqual(parseRun(['--', '--weird.js']), { workers: os.availableParallelism(), surge: 1, pidFile: undefined, nodeArgs: [], logFormat: 'text', logLevel: 'info', acceptQueues: undefined, rebalance: true, script: '--weird.js', args: [] })
  t.like(parseRun(['--node-arg=--import=tsx', '--node-arg', '--enable-source-maps', '--log-format', 'json', '--log-level=debug', 'app.ts']), { nodeArgs: ['--import=tsx', '--enable-source-maps'], logFormat: 'json', logLevel: 'debug', script: 'app.ts' })
  t.throws(() => parseRun(['--node-arg', 'tsx', 'app.ts']), { message: '--node-arg takes a Node flag (--node-arg=--import=tsx), got "tsx"' })
  t.throws(() => parseRun(['--log-format', 'yaml', 'app.js']), { message: '--log-format takes text, json, got "yaml"' })
  t.like(parseRun(['--accept-queues=shared', 'app.js']), { acceptQueues: 'shared' })
  t.like(parseRun(['--accept-queues', 'per-worker', 'app.js']), { acceptQueues: 'per-worker' })
  t.like(parseRun(['--rebalance=off', 'app.js']), { rebalance: false })
  t.throws(() => parseRun(['--rebalance', 'no', 'app.js']), { message: '--rebalance takes on, off, got "no"' })
  t.throws(() => parseRun(['--accept-queues', 'one', 'app.js']), { message: '--accept-queues takes per-worker, shared, got "one"' })
  t.throws(() => parseRun(['--workers', '0', 'app.js']), { message: '--workers takes a whole number from 1 to 1024, got "0"' })
  t.throws(() => parseRun(['--worker', '2', 'app.js']), { message: /unknown option "--worker" for run/ })
  t.throws(() => parseRun(['--workers', '2']), { message: /run needs the script to start/ })
  t.regex(runRefusal({ pm_id: '0' }, false) ?? '', /does not run under PM2/)
  t.regex(runRefusal({}, true) ?? '', /does not run in a node:cluster worker/)
  t.is(runRefusal({}, false), undefined)
})
