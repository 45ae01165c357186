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
import { startFixture } from './helpers/fixture'

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
    t.regex(reboot.stdout, new RegExp(`rebooted: ${successor} serves, ${f.pid} drains`))
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
  const reboot = await runCli(['reboot', '--pid-file', pidFile, '--wait', '--timeout', '300'])
  t.is(reboot.code, 5)
  t.regex(reboot.stderr, new RegExp(`timed out after 300 ms: PID file .* still names ${f.pid}`))
  await f.waitFor((e) => e.event === 'signal' && e.signal === 'SIGUSR2')
  const shutdown = await runCli(['shutdown', '--pid-file', pidFile, '--wait', '--timeout', '300', '--signal', 'TERM'])
  t.is(shutdown.code, 5)
  t.regex(shutdown.stderr, new RegExp(`timed out after 300 ms: process ${f.pid} is still running`))
  await f.waitFor((e) => e.event === 'signal' && e.signal === 'SIGTERM')
})

test('usage errors exit 2; --help exits 0', async (t) => {
  const help = await runCli(['--help'])
  t.is(help.code, 0)
  t.regex(help.stdout, /^Usage: graceful-reboot <reboot\|shutdown> --pid-file FILE/)
  t.regex(help.stdout, /Exit codes:/)
  for (const args of [[], ['restart', '--pid-file', 'x'], ['reboot'], ['reboot', '--pid-file'], ['reboot', '--pid-file', 'x', '--timeout', '1.5'], ['reboot', '--pid-file', 'x', '--bogus'], ['reboot', '--pid-file', 'x', '--signal', 'SIGNOPE'], ['reboot', 'extra', '--pid-file', 'x']]) {
    const r = await runCli(args)
    t.is(r.code, 2, args.join(' '))
    t.regex(r.stderr, /graceful-reboot: .*\n.*--help/)
  }
})
