// Runs in the test process: the graceful-reboot command line against fixture processes with a PID
// file: a reboot that waits until the pid changes, a shutdown that waits until the process is gone,
// and the failures (missing or malformed PID file, stale pid, timeout, usage) with their exit codes.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { request, runCli } from './fixtures/admin-client'
import { startFixture, type Fixture } from './helpers/fixture'

function tmpdir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-cli-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** A pid that surely names no process: one that ran and has been reaped. */
async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  const pid = child.pid as number
  await once(child, 'exit')
  return pid
}

for (const framework of ['fastify', 'express'] as const) {
  test(`${framework}: "reboot --wait" returns once the pid changed; "shutdown --wait" once the process is gone`, async (t) => {
    const pidFile = path.join(tmpdir(t), 'app.pid')
    const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: framework, PID_FILE: pidFile, ADMIN: '0' } })
    const { port } = await f.waitFor('listening') as { port: number }
    t.is(fs.readFileSync(pidFile, 'utf8'), `${f.pid}\n`)

    const reboot = await runCli(['reboot', '--pid-file', pidFile, '--wait', '--timeout', '30000'])
    const successor = Number(fs.readFileSync(pidFile, 'utf8'))
    f.track(successor)
    t.is(reboot.code, 0, reboot.stderr)
    t.not(successor, f.pid)
    t.regex(reboot.stdout, new RegExp(`sent SIGUSR2 to ${f.pid}`))
    // The verdict comes after the ready step; the old process may have drained and exited by then.
    t.regex(reboot.stdout, new RegExp(`successor ${successor} ready; probation[^]*rebooted: ${successor} serves, ${f.pid} (drains|has exited)`))
    t.deepEqual(await f.exited, { code: 0, signal: null }, 'the old process drained and exited 0')
    t.is((await request(port, '/')).body.pid, successor, 'the successor serves the same port')

    const shutdown = await runCli(['shutdown', '--pid-file', pidFile, '--wait', '--timeout', '30000'])
    t.is(shutdown.code, 0, shutdown.stderr)
    t.regex(shutdown.stdout, new RegExp(`sent SIGTERM to ${successor}[^]*${successor} shut down`))
    t.false(fs.existsSync(pidFile), 'the PID file is removed at shutdown')
    await f.closed
  })
}

test('a missing PID file: exit 3 with a message', async (t) => {
  const pidFile = path.join(tmpdir(t), 'nope.pid')
  const r = await runCli(['reboot', '--pid-file', pidFile])
  t.is(r.code, 3)
  t.regex(r.stderr, new RegExp(`PID file ${pidFile.replace(/[.]/g, '\\.')} not found`))
  t.is(r.stdout, '')
})

test('a PID file without a pid: exit 3 with a message', async (t) => {
  const pidFile = path.join(tmpdir(t), 'bad.pid')
  for (const content of ['', 'abc\n', '-5', '12 34', '0']) {
    fs.writeFileSync(pidFile, content)
    const r = await runCli(['shutdown', '--pid-file', pidFile])
    t.is(r.code, 3, JSON.stringify(content))
    t.regex(r.stderr, /does not hold a pid/)
  }
})

test('a stale PID file: exit 4 with a message, nothing signalled', async (t) => {
  const pidFile = path.join(tmpdir(t), 'stale.pid')
  const pid = await deadPid()
  fs.writeFileSync(pidFile, `${pid}\n`)
  for (const action of ['reboot', 'shutdown']) {
    const r = await runCli([action, '--pid-file', pidFile, '--wait'])
    t.is(r.code, 4)
    t.regex(r.stderr, new RegExp(`stale PID file .*no process ${pid} is running`))
  }
})

test('--wait times out with exit 5 when the process ignores the signal', async (t) => {
  const pidFile = path.join(tmpdir(t), 'stubborn.pid')
  const f = startFixture(t, 'admin-stubborn')
  await f.waitFor('ready')
  fs.writeFileSync(pidFile, `${f.pid}\n`)
  // What the app keeps beside its PID file, without which the CLI takes the process for another program.
  fs.writeFileSync(`${pidFile}.${f.pid}.status`, JSON.stringify({ pid: f.pid, state: 'running', role: null, startedAt: Date.now(), updatedAt: Date.now(), reboots: { requested: 0, refused: 0, failed: 0, succeeded: 0 }, attempts: [] }))
  const reboot = await runCli(['reboot', '--pid-file', pidFile, '--wait', '--timeout', '300'])
  t.is(reboot.code, 5)
  t.regex(reboot.stderr, new RegExp(`timed out after 300 ms: no verdict from ${f.pid}`))
  await f.waitFor((e) => e.event === 'signal' && e.signal === 'SIGUSR2')
  const shutdown = await runCli(['shutdown', '--pid-file', pidFile, '--wait', '--timeout', '300', '--signal', 'TERM'])
  t.is(shutdown.code, 5)
  t.regex(shutdown.stderr, new RegExp(`timed out after 300 ms: process ${f.pid} is still running`))
  await f.waitFor((e) => e.event === 'signal' && e.signal === 'SIGTERM')
})

test('usage errors exit 2; --help exits 0', async (t) => {
  const help = await runCli(['--help'])
  t.is(help.code, 0)
  t.regex(help.stdout, /^Usage: graceful-reboot <reboot\|shutdown\|status> --pid-file FILE/)
  t.regex(help.stdout, /Exit codes:/)
  for (const args of [[], ['restart', '--pid-file', 'x'], ['reboot'], ['reboot', '--pid-file'], ['reboot', '--pid-file', 'x', '--timeout', '1.5'], ['reboot', '--pid-file', 'x', '--bogus'], ['reboot', '--pid-file', 'x', '--signal', 'SIGNOPE'], ['reboot', 'extra', '--pid-file', 'x']]) {
    const r = await runCli(args)
    t.is(r.code, 2, args.join(' '))
    t.regex(r.stderr, /graceful-reboot: .*\n.*--help/)
  }
  // The option named in the command's words, the nearest known one suggested; never node:util's text.
  const typo = await runCli(['status', '--pidfile', 'x'])
  t.is(typo.code, 2)
  t.is(typo.stderr.split('\n')[0], 'graceful-reboot: unknown option "--pidfile" (did you mean --pid-file?); known: --pid-file, --wait, --timeout, --signal, --help, --version')
  const bare = await runCli(['reboot', '--pid-file'])
  t.is(bare.stderr.split('\n')[0], 'graceful-reboot: option --pid-file needs a value')
})

/** The fault app (test/fixtures/fault-app.ts) with a PID file; MODE_FILE says how a successor behaves. */
async function faultApp (t: ExecutionContext, probation: number): Promise<{ f: Fixture, pid: number, pidFile: string, modeFile: string }> {
  const dir = tmpdir(t)
  const pidFile = path.join(dir, 'app.pid')
  const modeFile = path.join(dir, 'mode')
  fs.writeFileSync(modeFile, '')
  const f = startFixture(t, 'fault-app', { env: { PID_FILE: pidFile, MODE_FILE: modeFile, PROBATION: String(probation) } })
  const { pid } = await f.waitFor('listening') as { pid: number }
  return { f, pid, pidFile, modeFile }
}

/** Every successor the fixture's reboots spawned is killed at teardown. */
function trackSuccessors (f: Fixture): void {
  for (const e of f.lines) if (e.event === 'handoff' && e.step === 'spawned') f.track(e.other as number)
}

test('"reboot --wait" waits for the verdict: a successor that crashes in probation exits 7 (rolled back), not 0 when the PID file changed', async (t) => {
  const { f, pid, pidFile, modeFile } = await faultApp(t, 3000)
  fs.writeFileSync(modeFile, 'crash-after-listen')
  const r = await runCli(['reboot', '--pid-file', pidFile, '--wait', '--timeout', '30000'])
  trackSuccessors(f)
  t.is(r.code, 7, r.stdout + r.stderr)
  t.regex(r.stdout, /successor \d+ spawned by \d+/)
  t.regex(r.stderr, new RegExp(`the reboot was rolled back: .*\\(ERR_GRACEFUL_SUCCESSOR_[A-Z]+\\); ${pid} serves on`))
  t.notRegex(r.stdout, /rebooted/)
  const failed = f.lines.find((e) => e.event === 'handoff' && e.step === 'failed')
  t.truthy(failed, 'the old process rolled back')
  t.is(fs.readFileSync(pidFile, 'utf8'), `${pid}\n`, 'the PID file names the old process again')
  const status = await runCli(['status', '--pid-file', pidFile])
  t.is(status.code, 0, status.stderr)
  t.regex(status.stdout, new RegExp(`process ${pid}: running, up \\d+ s`))
  t.regex(status.stdout, /reboots: 1 requested, 0 succeeded, 0 refused, 1 failed/)
  t.regex(status.stdout, /last reboot: #1 by SIGUSR2, successor \d+ failed; rolled back: /)
})

test('"reboot --wait" while a reboot is in flight exits 6 (refused) at once; the first exits 0 once its successor passed probation', async (t) => {
  const { f, pid, pidFile } = await faultApp(t, 1500)
  const first = runCli(['reboot', '--pid-file', pidFile, '--wait', '--timeout', '30000'])
  const spawned = await f.waitFor((e) => e.event === 'handoff' && e.step === 'spawned')
  trackSuccessors(f)
  const started = Date.now()
  const second = await runCli(['reboot', '--pid-file', pidFile, '--wait', '--timeout', '30000'])
  t.log(`refused verdict after ${Date.now() - started} ms`)
  t.is(second.code, 6, second.stdout + second.stderr)
  t.regex(second.stderr, new RegExp(`process ${pid} refused the reboot: a reboot is already in progress; one at a time \\(ERR_GRACEFUL_REBOOT_IN_PROGRESS\\); it serves on`))
  const r = await first
  t.is(r.code, 0, r.stdout + r.stderr)
  const successor = spawned.other as number
  t.regex(r.stdout, new RegExp(`successor ${successor} ready; probation[^]*rebooted: ${successor} serves, ${pid} (drains|has exited)`))
  t.truthy(f.lines.find((e) => e.event === 'handoff' && e.step === 'serving' && e.pid === pid), 'the old process saw probation pass')
  await f.waitFor((e) => e.event === 'exit' && e.pid === pid)
  const status = await runCli(['status', '--pid-file', pidFile])
  t.regex(status.stdout, new RegExp(`process ${successor}: running \\(new side of a reboot\\)`))
  t.false(fs.existsSync(`${pidFile}.${pid}.status`), 'the old process removed its status file as it exited')
})

test('--version prints the package\'s version', async (t) => {
  const r = await runCli(['--version'])
  t.is(r.code, 0)
  t.is(r.stdout.trim(), (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version)
})
