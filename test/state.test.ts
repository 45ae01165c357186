// Runs in the test process: the state hand-over, the reboot hooks and the start graph, with real
// processes (test/fixtures/state-app.ts) rebooted for real: a counter exact through three reboots under
// keep-alive load, every structured-clone type, Express's rate-limit counts, and the failures (a
// snapshot that throws, is too large, hangs or cannot be cloned; a successor that dies after reading
// the state; a veto; a required service that fails) leaving the old process serving, its state intact.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import v8 from 'node:v8'
import test, { type ExecutionContext } from 'ava'
import { runLoad } from '../tools/load'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { getJson } from './helpers/servers'
import { everyType } from './helpers/every-type'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null, served: number, inheritedError: { code: string, message: string } | null }

function post (port: number, p: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: 'POST', agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => { resolve(JSON.parse(body) as Record<string, unknown>) })
    })
    req.on('error', reject)
    req.end()
  })
}

function start (t: ExecutionContext, env: Record<string, string> = {}): { f: Fixture, modeFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-state-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const modeFile = path.join(dir, 'mode')
  return { f: startFixture(t, 'state-app', { env: { MODE_FILE: modeFile, ...env } }), modeFile }
}

/** SIGUSR2 to `pid`; resolves once the successor listens and the old process's drain is over. */
async function reboot (f: Fixture, pid: number): Promise<Listening> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === pid)
  return next
}

/** A reboot through the admin route of the fixture that is refused or rolled back: the answer and the successor's pid, if one was spawned. */
async function failedReboot (f: Fixture, port: number): Promise<{ res: Record<string, unknown>, successor: number | undefined }> {
  const from = f.lines.length
  const res = await post(port, '/reboot')
  const successor = f.lines.slice(from).find((e) => e.event === 'handoff' && e.step === 'spawned')?.other as number | undefined
  if (successor !== undefined) f.track(successor)
  return { res, successor }
}

for (const framework of ['fastify', 'express']) {
  test(`${framework}: a counter of every request is exact after three reboots under keep-alive load; the cache arrives`, async (t) => {
    const { f } = start(t, { FRAMEWORK: framework })
    const first = await f.waitFor('listening') as Listening
    t.is(first.served, 0, 'a fresh start inherits nothing')
    const url = `http://127.0.0.1:${first.port}/`
    const load = runLoad({ url, connections: 8, mode: 'keep-alive', durationMs: 60_000 })
    const think = runLoad({ url, connections: 2, mode: 'keep-alive', durationMs: 60_000, thinkMs: 20 })
    let current = first
    const pids = [first.pid]
    const windows: number[] = []
    for (let i = 0; i < 3; i++) {
      // 300 more requests before each reboot: the state handed over is never trivially small.
      await f.waitFor((e) => e.event === 'served' && (e.n as number) >= (i + 1) * 300)
      const next = await reboot(f, current.pid)
      t.true(next.served > 0, `the successor inherited the count (${next.served})`)
      const final = await f.waitFor((e) => e.event === 'final-state' && e.pid === next.pid) as FixtureEvent & { served: number, base: number }
      windows.push(final.served - final.base)
      pids.push(next.pid)
      current = next
    }
    load.stop()
    think.stop()
    const results = await Promise.all([load.result, think.result])
    const answered = results.reduce((n, r) => n + r.answered, 0)
    for (const r of results) t.is(r.failed, 0, JSON.stringify(r.causes))
    t.true(answered >= 1000, `${answered} requests`)
    const count = await getJson<{ served: number, pid: number, cache: string[] }>(first.port, '/count')
    t.is(count.body.pid, current.pid)
    t.is(count.body.served, answered, 'every request served by any of the four processes is counted once')
    t.deepEqual(count.body.cache, ['greeting', 'when'])
    t.log(`${framework}: ${answered} requests; requests the old process served after the successor's first snapshot (the window the final snapshot closes): ${windows.join(', ')}`)
    t.is(new Set(pids).size, 4)
    process.kill(current.pid, 'SIGTERM')
    await f.closed
    for (const pid of pids) t.false(isAlive(pid))
  })
}

test('every structured-clone type arrives equal; large Maps, Sets and arrays arrive whole', async (t) => {
  const { f } = start(t)
  const first = await f.waitFor('listening') as Listening
  const next = await reboot(f, first.pid)
  const types = await f.waitFor((e) => e.event === 'types' && e.pid === next.pid) as FixtureEvent & { serialized: string }
  t.deepEqual(v8.deserialize(Buffer.from(types.serialized, 'base64')), everyType())
  // A top-level Map, Set or array of more than 10,000 items travels in slices and arrives whole, in order.
  const big = await f.waitFor((e) => e.event === 'big' && e.pid === next.pid)
  t.like(big, { map: 25_001, first: 'k0', last: 'k25000', value: { i: 20_000, even: true }, set: 12_345, has: true, array: 20_000, at: 'item-19999', isArray: true })
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})

test('express-rate-limit: the counts of a store handed over go on in the successor', async (t) => {
  const { f } = start(t, { FRAMEWORK: 'express' })
  const first = await f.waitFor('listening') as Listening
  for (let i = 1; i <= 5; i++) t.is((await getJson<{ hits: number }>(first.port, '/limited')).body.hits, i)
  const next = await reboot(f, first.pid)
  const after = await getJson<{ hits: number, pid: number }>(first.port, '/limited')
  t.is(after.body.pid, next.pid)
  t.is(after.body.hits, 6, 'the sixth request of this client is counted as the sixth')
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})

const failures: Array<[mode: string, code: string, message: RegExp]> = [
  ['throw', 'ERR_GRACEFUL_HANDOVER_FAILED', /"counter": the snapshot threw: the snapshot broke/],
  ['large', 'ERR_GRACEFUL_HANDOVER_TOO_LARGE', /"counter": the snapshot is \d+ bytes serialized, over the limit of 1048576 \(option "handoverMaxBytes"\)/],
  ['hang', 'ERR_GRACEFUL_HANDOVER_TIMEOUT', /"counter": the snapshot did not return within 1000 ms \(option "handoverTimeout"\)/],
  ['function', 'ERR_GRACEFUL_HANDOVER_CLONE', /"counter": the snapshot cannot be cloned: value\.close is a function \(close\)/]
]

test('a snapshot that throws, is too large, hangs or cannot be cloned: the successor is told why and fails its boot; the old process serves on, its state intact, no request lost', async (t) => {
  const { f, modeFile } = start(t, { STRICT: '1' })
  const first = await f.waitFor('listening') as Listening
  const load = runLoad({ url: `http://127.0.0.1:${first.port}/`, connections: 4, mode: 'keep-alive', durationMs: 60_000 })
  for (const [mode, code, message] of failures) {
    fs.writeFileSync(modeFile, mode)
    const { res, successor } = await failedReboot(f, first.port)
    t.is(res.ok, false, mode)
    t.is(res.code, 'ERR_GRACEFUL_SUCCESSOR_EXITED', `${mode}: ${String(res.message)}`)
    const told = f.lines.find((e) => e.event === 'inherited-error' && e.pid === successor) as FixtureEvent & { code: string, message: string } | undefined
    t.is(told?.code, code, mode)
    t.regex(String(told?.message), message)
  }
  fs.writeFileSync(modeFile, '')
  load.stop()
  const r = await load.result
  t.is(r.failed, 0, JSON.stringify(r.causes))
  const count = await getJson<{ served: number, pid: number }>(first.port, '/count')
  t.is(count.body.pid, first.pid, 'still the first process')
  t.is(count.body.served, r.answered, 'its counter saw every request: nothing reset it')
  process.kill(first.pid, 'SIGTERM')
  await f.closed
})

test('without STRICT, a successor told the snapshot failed starts fresh; the old process has kept its count', async (t) => {
  const { f, modeFile } = start(t)
  const first = await f.waitFor('listening') as Listening
  for (let i = 0; i < 3; i++) await getJson(first.port, '/')
  fs.writeFileSync(modeFile, 'throw')
  const next = await reboot(f, first.pid)
  t.is(next.inheritedError?.code, 'ERR_GRACEFUL_HANDOVER_FAILED')
  t.is(next.served, 0)
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})

test('a successor that dies after reading the state is rolled back and changes nothing in the old process', async (t) => {
  const { f, modeFile } = start(t)
  const first = await f.waitFor('listening') as Listening
  for (let i = 0; i < 7; i++) await getJson(first.port, '/')
  fs.writeFileSync(modeFile, 'die-after-read')
  const { res, successor } = await failedReboot(f, first.port)
  t.is(res.ok, false)
  const dying = await f.waitFor((e) => e.event === 'dying' && e.pid === successor) as FixtureEvent & { served: number }
  t.is(dying.served, 7, 'it had read the count')
  fs.writeFileSync(modeFile, '')
  await getJson(first.port, '/')
  const count = await getJson<{ served: number, pid: number }>(first.port, '/count')
  t.deepEqual(count.body, { served: 8, pid: first.pid, cache: ['greeting', 'when'] })
  const hooks = f.lines.filter((e) => e.event === 'hook' && e.pid === first.pid).map((e) => e.step)
  t.deepEqual(hooks, ['beforeSpawn', 'failed'])
  const next = await reboot(f, first.pid)
  t.is(next.served, 8, 'a later reboot hands over the count as it is')
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})

test('hooks: a beforeSpawn veto refuses the reboot naming the hook; otherwise both processes see their steps in order', async (t) => {
  const { f, modeFile } = start(t)
  const first = await f.waitFor('listening') as Listening
  fs.writeFileSync(modeFile, 'veto')
  const { res, successor } = await failedReboot(f, first.port)
  t.is(successor, undefined, 'nothing was spawned')
  t.is(res.code, 'ERR_GRACEFUL_REBOOT_VETOED')
  t.is(res.message, 'reboot refused: the beforeSpawn hook "migrations" vetoed it: a migration is running')
  fs.writeFileSync(modeFile, '')
  // An idle keep-alive connection to move: the hand-over counts it.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { agent.destroy() })
  await getJson(first.port, '/', agent)
  const next = await reboot(f, first.pid)
  await f.waitFor((e) => e.event === 'hook' && e.pid === next.pid && e.step === 'drained')
  const steps = (pid: number): unknown[] => f.lines.filter((e) => e.event === 'hook' && e.pid === pid).map((e) => e.step)
  t.deepEqual(steps(first.pid), ['beforeSpawn', 'beforeSpawn', 'ready', 'serving', 'draining', 'drained'])
  t.deepEqual(steps(next.pid), ['ready', 'serving', 'drained'])
  const old = f.lines.find((e) => e.event === 'hook' && e.pid === first.pid && e.step === 'drained') as FixtureEvent & { successor: number, transferred: number }
  t.is(old.successor, next.pid)
  t.is(old.transferred, 1)
  const mine = f.lines.find((e) => e.event === 'hook' && e.pid === next.pid && e.step === 'drained') as FixtureEvent & { parentPid: number, transferred: number }
  t.is(mine.parentPid, first.pid)
  t.is(mine.transferred, 1)
  process.kill(next.pid, 'SIGTERM')
  await f.closed
})

for (const framework of ['fastify', 'express']) {
  test(`${framework}: a successor whose required service fails after its retries does not serve: the reboot rolls back with the service's StartupError, the old process serves on`, async (t) => {
    const { f, modeFile } = start(t, { FRAMEWORK: framework })
    const first = await f.waitFor('listening') as Listening
    fs.writeFileSync(modeFile, 'db-down')
    const { res, successor } = await failedReboot(f, first.port)
    t.is(res.ok, false)
    // The old process's reboot() rejects with the service's error, not "started shutting down (uncaughtException)".
    t.is(res.code, 'ERR_GRACEFUL_STARTUP_FAILED', String(res.message))
    t.regex(String(res.message), new RegExp(`^successor ${String(successor)} did not start: required service "db" failed after 3 attempts: connect ECONNREFUSED`))
    const failed = f.lines.find((e) => e.event === 'boot-failed' && e.pid === successor)
    t.is(failed?.code, 'ERR_GRACEFUL_STARTUP_FAILED')
    t.regex(String(failed?.message), /required service "db" failed after 3 attempts: connect ECONNREFUSED/)
    t.false(f.lines.some((e) => e.event === 'listening' && e.pid === successor), 'it never listened')
    t.is((await getJson<{ pid: number }>(first.port, '/count')).body.pid, first.pid)
    fs.writeFileSync(modeFile, '')
    process.kill(first.pid, 'SIGTERM')
    await f.closed
  })
}
