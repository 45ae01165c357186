// Runs in the test process: reboots under faults (test/fixtures/fault-app.ts): the old process dies
// before the successor is ready, the successor crashes in probation, hangs with no parent left,
// is rolled back while it serves, listens elsewhere; two copies of the package in one process.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { runLoad } from '../tools/load'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, ports: Record<string, number>, parent: number | null }

function get (port: number, p = '/'): Promise<{ status: number, pid: number, body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, pid: Number(res.headers['x-pid']), body }) })
    }).on('error', reject)
  })
}

function tmpdir (t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'graceful-faults-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** Starts the fault app with a mode file; resolves with its first 'listening' line. */
async function start (t: ExecutionContext, env: Record<string, string> = {}): Promise<{ f: Fixture, first: Listening, modeFile: string }> {
  const dir = tmpdir(t)
  const modeFile = path.join(dir, 'mode')
  writeFileSync(modeFile, '')
  const f = startFixture(t, 'fault-app', { env: { MODE_FILE: modeFile, ...env } })
  const first = await f.waitFor('listening') as Listening
  return { f, first, modeFile }
}

/** SIGUSR2 to `pid`; resolves with the successor's pid (from the old process's 'spawned' step). */
async function reboot (f: Fixture, pid: number): Promise<number> {
  const before = f.lines.length
  process.kill(pid, 'SIGUSR2')
  const spawned = await f.waitFor((e) => e.event === 'handoff' && e.step === 'spawned' && e.pid === pid && f.lines.indexOf(e) >= before)
  const successor = spawned.other as number
  f.track(successor)
  return successor
}

test('the old process dies before the successor is ready: the successor carries on alone, serves and writes the PID file', async (t) => {
  const pidFile = path.join(tmpdir(t), 'app.pid')
  const { f, first } = await start(t, { PID_FILE: pidFile })
  // Killed as soon as it reports the spawn: the successor is still loading, its IPC channel not yet read.
  const successor = await reboot(f, first.pid)
  process.kill(first.pid, 'SIGKILL')
  await f.exited
  const next = await f.waitFor((e) => e.event === 'listening' && e.pid === successor) as Listening
  t.is(next.parent, first.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'announced' && e.pid === successor)
  const r = await get(first.ports.a as number)
  t.is(r.status, 200)
  t.is(r.pid, successor, 'the successor serves on the inherited socket')
  t.is(readFileSync(pidFile, 'utf8').trim(), String(successor))
  t.false(f.lines.some((e) => e.event === 'state' && e.pid === successor && e.state === 'draining'), 'no crash drain in the successor')
  process.kill(successor, 'SIGTERM')
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === successor)
  t.is(exit.code, 0)
})

test('a successor that crashes within probation is rolled back: 0 failed requests, the old process serves on, the PID file names it again', async (t) => {
  const { f, first, modeFile } = await start(t, { PROBATION: '5000' })
  const port = first.ports.a as number
  const load = runLoad({ url: `http://127.0.0.1:${port}/`, connections: 4, mode: 'new-connection', durationMs: 60_000 })
  t.teardown(() => { load.stop() })
  writeFileSync(modeFile, 'crash-after-listen')
  const successor = await reboot(f, first.pid)
  const failed = await f.waitFor((e) => e.event === 'handoff' && e.step === 'failed' && e.pid === first.pid)
  t.is(failed.code, 'ERR_GRACEFUL_SUCCESSOR_PROBATION')
  t.regex(String(failed.message), /started shutting down \(uncaughtException\)/)
  t.true(f.lines.some((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === first.pid), 'it was ready before it crashed')
  const crashed = await f.waitFor((e) => e.event === 'exit' && e.pid === successor)
  t.is(crashed.code, 1)
  // The old process never drained, and serves every request from here on.
  t.false(f.lines.some((e) => e.event === 'state' && e.pid === first.pid && e.state === 'draining'))
  const after = await get(port)
  t.is(after.pid, first.pid)
  load.stop()
  const r = await load.result
  t.is(r.failed, 0, JSON.stringify(r.causes))
  t.true(r.answered > 0)
})

test('rollback restores the PID file to the old process', async (t) => {
  const dir = tmpdir(t)
  const pidFile = path.join(dir, 'app.pid')
  const { f, first, modeFile } = await start(t, { PROBATION: '5000', PID_FILE: pidFile })
  t.is(readFileSync(pidFile, 'utf8').trim(), String(first.pid))
  writeFileSync(modeFile, 'crash-after-listen')
  const successor = await reboot(f, first.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'announced' && e.pid === successor)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'failed' && e.pid === first.pid)
  await f.waitFor((e) => e.event === 'exit' && e.pid === successor)
  t.is(readFileSync(pidFile, 'utf8').trim(), String(first.pid))
})

test('a successor whose old process died and that never becomes ready gives up by itself after rebootTimeout (exit 70)', async (t) => {
  const { f, first } = await start(t, { READINESS: 'manual', REBOOT_TIMEOUT: '8000' })
  const successor = await reboot(f, first.pid)
  await f.waitFor((e) => e.event === 'listening' && e.pid === successor)
  process.kill(first.pid, 'SIGKILL')
  await f.exited
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === successor, 30_000)
  t.is(exit.code, 70)
  t.true(f.lines.some((e) => e.event === 'state' && e.pid === successor && e.state === 'draining'), 'it drained before it exited')
})

test('rollback of a successor that already accepts (readiness manual, never declared): its requests complete, it is asked to drain, not killed', async (t) => {
  const { f, first } = await start(t, { READINESS: 'manual', REBOOT_TIMEOUT: '8000' })
  const port = first.ports.a as number
  const successor = await reboot(f, first.pid)
  await f.waitFor((e) => e.event === 'listening' && e.pid === successor)
  // Requests on new connections land on either process (both accept on the shared socket): send
  // them one by one until the successor holds one (bounded), leaving the others held by the old one.
  const holds: Array<ReturnType<typeof get>> = []
  for (let i = 0; i < 200 && !f.lines.some((e) => e.event === 'hold-started' && e.pid === successor); i++) {
    const before = f.lines.length
    holds.push(get(port, '/hold'))
    await f.waitFor((e) => e.event === 'hold-started' && f.lines.indexOf(e) >= before)
  }
  t.true(f.lines.some((e) => e.event === 'hold-started' && e.pid === successor), 'the successor holds a request')
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'failed' && e.pid === first.pid && e.code === 'ERR_GRACEFUL_SUCCESSOR_TIMEOUT', 30_000)
  const exit = await f.waitFor((e) => e.event === 'exit' && e.pid === successor)
  t.is(exit.code, 0, 'it drained and exited by itself')
  t.true(f.lines.some((e) => e.event === 'state' && e.pid === successor && e.state === 'draining'))
  process.kill(first.pid, 'SIGTERM')
  const results = await Promise.all(holds)
  t.deepEqual(results.map((r) => r.status), results.map(() => 200))
  t.true(results.some((r) => r.pid === successor), 'the request held by the successor was answered by it')
})

test('a successor that listens elsewhere fails the reboot at once with ERR_GRACEFUL_ADOPTION; the old process serves on', async (t) => {
  const { f, first, modeFile } = await start(t, { REBOOT_TIMEOUT: '60000' })
  writeFileSync(modeFile, 'elsewhere')
  const successor = await reboot(f, first.pid)
  const failed = await f.waitFor((e) => e.event === 'handoff' && e.step === 'failed' && e.pid === first.pid)
  t.is(failed.code, 'ERR_GRACEFUL_ADOPTION')
  t.regex(String(failed.message), /listens on tcp:127\.0\.0\.2:0.*inherited tcp:127\.0\.0\.1:0/)
  await f.waitFor((e) => e.event === 'exit' && e.pid === successor)
  t.is((await get(first.ports.a as number)).pid, first.pid)
})

test('two copies of the package in one process share the listener registry: a reboot hands over both apps', async (t) => {
  const root = path.join(__dirname, '..')
  const copy = mkdtempSync(path.join(root, '.copy-'))
  t.teardown(() => { rmSync(copy, { recursive: true, force: true }) })
  cpSync(path.join(root, 'index.js'), path.join(copy, 'index.js'))
  cpSync(path.join(root, 'lib'), path.join(copy, 'lib'), { recursive: true })
  const { f, first } = await start(t, { COPY: copy })
  const c = await f.waitFor('copy')
  t.deepEqual([c.sameLifecycle, c.samePlugin], [true, false], 'a second copy, one lifecycle')
  const successor = await reboot(f, first.pid)
  const next = await f.waitFor((e) => e.event === 'listening' && e.pid === successor) as Listening
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === first.pid)
  t.deepEqual(next.ports, first.ports)
  const [a, b] = await Promise.all([get(first.ports.a as number), get(first.ports.b as number)])
  t.deepEqual([a.pid, b.pid], [successor, successor])
  process.kill(successor, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === successor)
})
