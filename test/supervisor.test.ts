// Runs in the test process: `graceful-reboot run` as an operator and an adversary meet it, with real
// processes (test/fixtures/worker-app.ts): exit codes that tell the truth (a second signal, a worker
// dying in the final drain), a control socket that only its own workers can use (forged hellos, a
// line without end), apps that listen on nothing, PID files it must not take over, a Unix socket path
// that lives as long as the supervisor, the old worker of a reboot killed mid-way, a rollout during a
// crash loop, the verdict of `reboot --wait` and the process table of `status`.
import { execFile, spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import test, { type ExecutionContext } from 'ava'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { CLI, firstWorkers, rollout, says, supervise, type Listening } from './helpers/supervisor'
import { scriptProblem, stripsTypes } from '../lib/workers/run'

const run = promisify(execFile)

function tmpDir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-supervisor-test-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** A GET that resolves with its status, or with the error that ended it. */
function attempt (options: http.RequestOptions): Promise<{ status?: number, error?: string }> {
  return new Promise((resolve) => {
    http.get({ agent: false, ...options }, (res) => {
      res.resume().on('end', () => { resolve({ status: res.statusCode ?? 0 }) }).on('error', (err) => { resolve({ error: err.message }) })
    }).on('error', (err: NodeJS.ErrnoException) => { resolve({ error: err.code ?? err.message }) })
  })
}

/** `graceful-reboot ARGS...`: its exit code and output (never rejects). */
async function cli (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { encoding: 'utf8' })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

/** A process that is no worker (killed in teardown). */
function bystander (t: ExecutionContext): number {
  const child = spawn('sleep', ['120'], { stdio: 'ignore' })
  t.teardown(() => { child.kill('SIGKILL') })
  return child.pid as number
}

/** The supervisor's control socket and secret, read where any process of the same user could: a worker's environment. */
function controlOf (worker: number): { socket: string, secret: string } {
  const vars = fs.readFileSync(`/proc/${worker}/environ`, 'latin1').split('\0')
  const get = (name: string): string => (vars.find((v) => v.startsWith(`${name}=`)) ?? '').slice(name.length + 1)
  return { socket: get('GRACEFUL_SUPERVISOR'), secret: get('GRACEFUL_SUPERVISOR_SECRET') }
}

/** Connects to the control socket, writes `data`, and resolves once the supervisor closed the connection. */
function forge (t: ExecutionContext, socketPath: string, data: string | Buffer): Promise<void> {
  return new Promise((resolve) => {
    const c = net.createConnection(socketPath)
    t.teardown(() => { c.destroy() })
    c.on('error', () => {})
    c.on('close', () => { resolve() })
    c.write(data)
  })
}

test('a second SIGTERM during the drain kills the workers: the request in flight is cut, and the supervisor exits 143, not 0', async (t) => {
  const f = supervise(t)
  const workers = await firstWorkers(f)
  const slow = attempt({ host: '127.0.0.1', port: workers[0]?.port, path: '/slow?ms=8000' })
  await f.waitFor('slow-started')
  const from = f.stderr().length
  process.kill(f.pid, 'SIGTERM')
  await says(f, /SIGTERM: draining 2 workers/, from)
  process.kill(f.pid, 'SIGTERM')
  const answer = await slow
  t.is(answer.status, undefined, `the 8 s request was cut: ${JSON.stringify(answer)}`)
  t.is((await f.exited).code, 143)
  t.regex(f.stderr(), /SIGTERM again during the drain; killing every worker/)
  t.regex(f.stderr(), /exiting with code 143/)
  await f.closed
  for (const w of workers) t.false(isAlive(w.pid))
})

test('workers that die in the final drain make the exit code non-zero: 137 for a worker the supervisor started (SIGKILL), 1 for a replacement (its status is unknown)', async (t) => {
  const dir = tmpDir(t)
  const modeFile = path.join(dir, 'mode')
  fs.writeFileSync(modeFile, 'die-on-drain')
  const first = supervise(t, { MODE_FILE: modeFile })
  await firstWorkers(first)
  process.kill(first.pid, 'SIGTERM')
  t.is((await first.exited).code, 137)
  t.regex(first.stderr(), /exiting with code 137: 0 workers drained cleanly, 2 did not/)

  fs.rmSync(modeFile)
  const second = supervise(t, { MODE_FILE: modeFile })
  const workers = await firstWorkers(second)
  // The replacements read the mode at start: they die when their drain starts.
  fs.writeFileSync(modeFile, 'die-on-drain')
  await rollout(second, workers)
  process.kill(second.pid, 'SIGTERM')
  t.is((await second.exited).code, 1)
  // An old worker of the rollout still draining when SIGTERM came counts as clean.
  t.regex(second.stderr(), /exiting with code 1: \d+ workers drained cleanly, 2 did not/)
})

test('forged hellos on the control socket are dropped: no secret, an unrelated pid, a pid already connected, a false replacement, a 2 MB line; the supervisor starts no extra worker and its stop waits for none of them', async (t) => {
  const dir = tmpDir(t)
  const pidFile = path.join(dir, 'app.pid')
  const f = supervise(t, {}, ['--workers', '2', '--pid-file', pidFile])
  const workers = await firstWorkers(f)
  const [one, two] = workers as [Listening, Listening]
  const { socket, secret } = controlOf(one.pid)
  t.true(socket !== '' && secret.length >= 32, 'the secret is in the worker\'s environment')
  const sleeper = bystander(t)
  const hello = (fields: Record<string, unknown>): string => JSON.stringify({ type: 'hello', slot: 1, parent: null, ...fields }) + '\n'
  const cases: Array<[string, string | Buffer, RegExp]> = [
    ['no secret', hello({ pid: sleeper }), /dropped a connection to the control socket: a hello without the supervisor's secret/],
    ['an unrelated pid', hello({ pid: sleeper, secret }), new RegExp(`pid ${sleeper} is not a worker this supervisor started`)],
    ['a real worker\'s pid', hello({ pid: two.pid, slot: 2, secret }), new RegExp(`pid ${two.pid} is already connected`)],
    ['a false replacement', hello({ pid: sleeper, parent: one.pid, secret }), new RegExp(`pid ${sleeper} was not started by the reboot of worker ${one.pid}`)],
    ['a 2 MB line', Buffer.alloc(2 * 1024 * 1024, 'x'), /a line longer than the control protocol allows/]
  ]
  for (const [name, data, said] of cases) {
    const from = f.stderr().length
    await forge(t, socket, data)
    t.regex(await says(f, said, from), said, name)
  }
  // A connection that says nothing stays open while the supervisor stops.
  const silent = net.createConnection(socket)
  silent.on('error', () => {})
  t.teardown(() => { silent.destroy() })
  await new Promise((resolve) => silent.once('connect', resolve))
  const status = await cli('status', '--pid-file', pidFile)
  t.is(status.code, 0, status.stderr)
  t.regex(status.stdout, /2 of 2 workers serving/)
  for (const w of workers) t.regex(status.stdout, new RegExp(`\\b${w.pid}\\s+serving`))
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
  t.is(f.lines.filter((e) => e.event === 'listening').length, 2, 'no third worker was started')
  t.true(isAlive(sleeper), 'the unrelated process was never signalled')
})

test('the control socket\'s folder of a supervisor killed with SIGKILL is removed by the next supervisor\'s start', async (t) => {
  // A temporary folder of this test's own: other tests' supervisors clean the shared one at their start.
  const tmp = tmpDir(t)
  const first = supervise(t, { TMPDIR: tmp }, ['--workers', '1'])
  const [worker] = await firstWorkers(first, 1) as [Listening]
  const folder = path.dirname(controlOf(worker.pid).socket)
  t.is(path.dirname(folder), tmp)
  t.regex(path.basename(folder), new RegExp(`^graceful-supervisor-${first.pid}-`))
  process.kill(first.pid, 'SIGKILL')
  await first.waitFor((e) => e.event === 'exiting' && e.pid === worker.pid)
  await first.closed
  t.true(fs.existsSync(folder), 'nothing removed it')
  const second = supervise(t, { TMPDIR: tmp }, ['--workers', '1'])
  await firstWorkers(second, 1)
  t.false(fs.existsSync(folder), 'the next start removed it')
  process.kill(second.pid, 'SIGTERM')
  t.is((await second.exited).code, 0)
})

test('a first worker that listens on nothing (a queue consumer): the others start anyway, and the supervisor says so', async (t) => {
  const f = supervise(t, { CONSUMER: '1' })
  const workers = await firstWorkers(f)
  t.deepEqual(workers.map((w) => w.port), [null, null])
  t.regex(f.stderr(), /the first worker serves on no listening socket the package tracks: the other workers start without sockets/)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('a first worker that never says it serves: within seconds the supervisor says what it waits for and how to fix it', async (t) => {
  const f = supervise(t, { CONSUMER: 'silent' })
  await f.waitFor((e) => e.event === 'listening' && e.slot === '1')
  t.regex(await says(f, /still waiting after \d+ s: slot 1: worker \d+ has not announced that it serves[^\n]*announceReady/), /slot 1/)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('--pid-file is checked before any worker starts: a missing folder and a file naming another running process are refused with exit 2 and one line', async (t) => {
  const dir = tmpDir(t)
  const missing = supervise(t, {}, ['--workers', '2', '--pid-file', path.join(dir, 'nope', 'app.pid')])
  t.is((await missing.exited).code, 2)
  t.regex(missing.stderr(), /--pid-file "[^"]*app\.pid" cannot be written: its folder [^ ]+ does not exist/)
  t.is(missing.stderr().trim().split('\n').length, 1)
  const other = bystander(t)
  const taken = path.join(dir, 'app.pid')
  fs.writeFileSync(taken, `${other}\n`)
  const second = supervise(t, {}, ['--workers', '2', '--pid-file', taken])
  t.is((await second.exited).code, 2)
  t.regex(second.stderr(), new RegExp(`names process ${other}, which is running: another instance\\?`))
  t.false(second.lines.some((e) => e.event === 'listening'), 'no worker started')
  t.is(fs.readFileSync(taken, 'utf8').trim(), String(other), 'the file is left alone')
})

test('a missing script and a .ts script without a loader fail at once, with one line naming the fix', async (t) => {
  const f = startMissing(t)
  t.is((await f.exited).code, 2)
  t.regex(f.stderr(), /run: the script "no-such-app\.js" does not exist/)
  t.is(f.stderr().trim().split('\n').length, 1)
  const dir = tmpDir(t)
  const ts = path.join(dir, 'app.ts')
  fs.writeFileSync(ts, 'export {}\n')
  t.regex(scriptProblem(ts, dir, [], '', 'v20.20.2') ?? '', /app\.ts is TypeScript, which Node v20\.20\.2 does not run without a loader: give the workers one \(--node-arg=--import=tsx/)
  t.is(scriptProblem(ts, dir, ['--import=tsx'], '', 'v20.20.2'), undefined)
  t.is(scriptProblem(ts, dir, [], '--import tsx', 'v20.20.2'), undefined)
  t.true(stripsTypes('v22.18.0') && stripsTypes('v24.1.0') && !stripsTypes('v22.12.0') && !stripsTypes('v20.20.2'))
})

function startMissing (t: ExecutionContext): Fixture {
  return supervise(t, {}, ['--workers', '2', 'no-such-app.js', '--'], 'worker-app')
}

test('a Unix socket path lives as long as the supervisor: a crash of the worker that bound it and SIGTERM to its successor keep it; the supervisor removes it when it exits', async (t) => {
  const dir = tmpDir(t)
  const socketPath = path.join(dir, 'app.sock')
  const f = supervise(t, { SOCKET_PATH: socketPath })
  const workers = await firstWorkers(f)
  t.like(await attempt({ socketPath, path: '/' }), { status: 200 })
  // The first worker bound the path: an uncaught exception in it runs the crash path (a drain, exit 1).
  const binder = workers[0] as Listening
  // A new connection each: the kernel gives it to either worker; the one named crashes.
  for (let i = 0; i < 100 && !f.lines.some((e) => e.event === 'exiting'); i++) await attempt({ socketPath, path: `/crash?pid=${binder.pid}` })
  const crashed = await f.waitFor((e) => e.event === 'exiting') as FixtureEvent & { pid: number, code: number, slot: string }
  t.is(crashed.pid, binder.pid)
  t.is(crashed.code, 1, 'the crash path ran')
  const fresh = await f.waitFor((e) => e.event === 'listening' && e.slot === crashed.slot && e.pid !== crashed.pid) as Listening
  t.true(fs.existsSync(socketPath), 'the path survived the crash of a worker')
  for (let i = 0; i < 10; i++) t.like(await attempt({ socketPath, path: '/' }), { status: 200 })
  process.kill(fresh.pid, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exiting' && e.pid === fresh.pid)
  t.true(fs.existsSync(socketPath), 'and the drain of a worker')
  await f.waitFor((e) => e.event === 'listening' && e.slot === crashed.slot && e.pid !== crashed.pid && e.pid !== fresh.pid)
  t.like(await attempt({ socketPath, path: '/' }), { status: 200 })
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
  t.false(fs.existsSync(socketPath), 'removed with the supervisor')
})

for (const step of ['spawned', 'ready'] as const) {
  test(`the old worker SIGKILLed at '${step}' of its reboot: its replacement takes the slot or drains; never a third worker, and the next rollout replaces both slots`, async (t) => {
    const f = supervise(t)
    const workers = await firstWorkers(f)
    const [one, two] = workers as [Listening, Listening]
    const from = f.stderr().length
    process.kill(f.pid, 'SIGUSR2')
    const at = await f.waitFor((e) => e.event === 'handoff' && e.step === step && e.pid === one.pid) as FixtureEvent & { other: number }
    const orphan = at.other
    f.track(orphan)
    process.kill(one.pid, 'SIGKILL')
    const fate = await says(f, new RegExp(`its replacement ${orphan} (takes the slot|drains)`), from)
    await says(f, /the rollout stopped/, from)
    if (fate.endsWith('drains')) await f.waitFor((e) => e.event === 'exiting' && e.pid === orphan)
    t.log(`at '${step}': ${fate}`)
    const again = f.stderr().length
    process.kill(f.pid, 'SIGUSR2')
    await says(f, /every worker replaced/, again)
    t.truthy(f.lines.find((e) => e.event === 'listening' && e.parent === two.pid), 'slot 2 was replaced')
    // The replacement that took slot 1 is replaced like any worker; a new worker that had not served yet serves on.
    if (fate.endsWith('takes the slot')) t.truthy(f.lines.find((e) => e.event === 'listening' && e.parent === orphan), 'slot 1 (the adopted replacement) was replaced')
    const parentless = f.lines.filter((e) => e.event === 'listening' && e.parent === null)
    t.is(parentless.length, fate.endsWith('drains') ? 3 : 2, 'a new worker for slot 1 only when the replacement drained')
    process.kill(f.pid, 'SIGTERM')
    t.is((await f.exited).code, 0)
    await f.closed
  })
}

test('a rolling reboot asked while a slot crash-loops waits for that slot to serve with the code on disk, and succeeds once it does', async (t) => {
  const dir = tmpDir(t)
  const modeFile = path.join(dir, 'mode')
  fs.writeFileSync(modeFile, 'crash-at-start-slot-2')
  // Two slots at once: the rollout reaches slot 2 while it still crash-loops.
  const f = supervise(t, { MODE_FILE: modeFile }, ['--workers', '2', '--surge', '2'])
  const one = await f.waitFor((e) => e.event === 'listening' && e.slot === '1') as Listening
  await says(f, /slot 2: worker \d+ is gone \(exit code 3, without draining\); a new worker in 100 ms/)
  const from = f.stderr().length
  process.kill(f.pid, 'SIGUSR2')
  await says(f, /slot 2 (is starting a new worker|was given up: started again); the rollout waits for it to serve/, from)
  // The fix reaches the disk while the rollout runs.
  fs.rmSync(modeFile)
  await says(f, /every worker replaced/, from)
  t.truthy(f.lines.find((e) => e.event === 'listening' && e.parent === one.pid), 'slot 1 was replaced')
  const two = f.lines.find((e) => e.event === 'listening' && e.slot === '2') as Listening
  t.truthy(two, 'slot 2 serves')
  t.regex(f.stderr().slice(from), new RegExp(`slot 2: worker ${two.pid} started with the code on disk`))
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('graceful-reboot reboot --wait against a supervisor: 0 with one line per slot after a good rollout, 7 with the failing slot after a bad one; status prints the process table', async (t) => {
  const dir = tmpDir(t)
  const pidFile = path.join(dir, 'app.pid')
  const modeFile = path.join(dir, 'mode')
  const f = supervise(t, { MODE_FILE: modeFile }, ['--workers', '2', '--pid-file', pidFile])
  const workers = await firstWorkers(f)
  t.is(fs.readFileSync(pidFile, 'utf8').trim(), String(f.pid), 'the PID file names the supervisor')
  const status = await cli('status', '--pid-file', pidFile)
  t.is(status.code, 0, status.stderr)
  t.regex(status.stdout, new RegExp(`supervisor ${f.pid}: running, 2 of 2 workers serving`))
  t.regex(status.stdout, /slot\s+pid\s+state\s+uptime\s+restarts\s+rss\s+started/)
  for (const [i, w] of workers.entries()) t.regex(status.stdout, new RegExp(`\\n\\s+${i + 1}\\s+${w.pid}\\s+serving\\s+\\d+ s\\s+0\\s+\\d+ MB\\s+\\d{4}-`))

  const good = await cli('reboot', '--pid-file', pidFile, '--wait', '--timeout', '60000')
  t.is(good.code, 0, good.stderr)
  const next = workers.map((w) => f.lines.find((e) => e.event === 'listening' && e.parent === w.pid) as Listening)
  for (const [i, w] of workers.entries()) t.regex(good.stdout, new RegExp(`slot ${i + 1}: worker ${w.pid} replaced by ${next[i]?.pid ?? 'none'}`))
  t.regex(good.stdout, /rolled: every worker of supervisor \d+ replaced and past probation/)

  fs.writeFileSync(modeFile, 'crash-after-serve')
  const bad = await cli('reboot', '--pid-file', pidFile, '--wait', '--timeout', '60000')
  t.is(bad.code, 7, bad.stdout + bad.stderr)
  t.regex(bad.stdout, /slot 1: failed: slot 1: the replacement of worker \d+ failed \(ERR_GRACEFUL_SUCCESSOR_PROBATION\)/)
  t.regex(bad.stderr, /the rolling reboot of supervisor \d+ failed/)
  const after = await cli('status', '--pid-file', pidFile)
  t.regex(after.stdout, /rolling reboots: 2 requested, 1 succeeded, 0 refused, 1 failed/)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
  // The replacements are not the supervisor's children: it exits only once they are gone.
  for (const w of next) t.false(isAlive(w.pid), `replacement ${w.pid} is gone when the supervisor exits`)
  t.false(fs.existsSync(pidFile), 'the PID file goes with the supervisor')
  t.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('app.pid')), [], 'and its status file')
})

test('a worker\'s app.reboot() gets the refusal code of one process when the supervisor refuses the rollout', async (t) => {
  const f = supervise(t, { PROBATION: '3000' })
  const workers = await firstWorkers(f)
  const from = f.stderr().length
  process.kill(f.pid, 'SIGUSR2')
  await says(f, /rolling reboot of 2 workers/, from)
  const res = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: workers[1]?.port, path: '/reboot', method: 'POST', agent: false }, (r) => {
      let body = ''
      r.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => { resolve(JSON.parse(body) as Record<string, unknown>) })
    })
    req.on('error', reject)
    req.end()
  })
  t.like(res, { ok: false, code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' })
  t.regex(String(res.message), /the supervisor refused the rolling reboot: a rolling reboot is already in progress/)
  await says(f, /every worker replaced/, from)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})

test('--log-format json: every line the supervisor writes is one JSON object with pino\'s level numbers', async (t) => {
  const f = supervise(t, {}, ['--workers', '2', '--log-format', 'json'])
  await f.waitFor((e) => e.event === 'listening' && e.slot === '2')
  await says(f, /workers serving/)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
  const lines = f.stderr().trim().split('\n')
  t.true(lines.length >= 3)
  for (const line of lines) {
    const o = JSON.parse(line) as { level: number, msg: string, pid: number }
    t.true([20, 30, 40, 50].includes(o.level), line)
    t.is(o.pid, f.pid)
  }
  t.truthy(lines.find((l) => l.includes('exiting with code 0')))
})

const tini = ['/usr/bin/tini', '/sbin/tini'].find((f) => fs.existsSync(f))
// CI installs tini (.ci/run); a developer's machine without it skips this one, naming why.
const withTini = tini !== undefined || process.env.CI === 'true' ? test : test.skip
if (tini === undefined && process.env.CI !== 'true') console.log('test/supervisor.test.ts: the container recipe test is skipped: tini is not installed (apt-get install tini)')

withTini('the container recipe, tini -- graceful-reboot run: SIGTERM to tini drains every worker, a request in flight gets 200, exit 0', async (t) => {
  const f = startFixture(t, 'worker-app', { via: (file) => [tini ?? 'tini', ['-s', '--', process.execPath, CLI, 'run', '--workers', '2', file]] })
  t.teardown(() => {
    for (const l of f.lines) if (typeof l.pid === 'number') { try { process.kill(l.pid, 'SIGKILL') } catch {} }
  })
  const workers = await firstWorkers(f)
  const slow = attempt({ host: '127.0.0.1', port: workers[0]?.port, path: '/slow?ms=1500' })
  await f.waitFor('slow-started')
  process.kill(f.pid, 'SIGTERM')
  t.like(await slow, { status: 200 })
  t.is((await f.exited).code, 0)
  await f.closed
  for (const w of workers) t.false(isAlive(w.pid))
})

test('logs a person can read: an Express rollout of 2 workers writes one line per slot at info, and the workers\' own steps go to debug', async (t) => {
  const f = supervise(t, { FRAMEWORK: 'express' })
  const workers = await firstWorkers(f)
  const from = f.stderr().length
  await rollout(f, workers)
  const lines = f.stderr().slice(from).trim().split('\n')
  t.deepEqual(lines.filter((l) => !l.includes('graceful-reboot: supervisor: ')), [], 'no worker line at info')
  t.is(lines.filter((l) => /supervisor: slot \d: worker \d+ replaced by \d+/.test(l)).length, 2, lines.join('\n'))
  t.true(lines.length <= 4, `${lines.length} lines: the rollout's start, a line per slot, its outcome`)
  process.kill(f.pid, 'SIGTERM')
  t.is((await f.exited).code, 0)
})
