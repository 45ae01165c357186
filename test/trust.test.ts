// Runs in the test process: the PID file and the CLI trust only the app (lib/trust.ts,
// lib/pidfile.ts). The CLI leaves a process that is not the app alone (a `sleep`, a root process
// named by a PID file another user wrote, a process whose status file another user planted) and
// exits 8; the PID file's folder must be the app's own (a folder others may write to is refused
// unless sticky, and then a PID file another user left there is refused too); files get mode 0644
// whatever the umask; a second instance given the PID file of a live one refuses to start, while a
// crash's leftover PID file and status file are taken over. "Another user" is nobody (uid 65534):
// the CI machine runs as root, and the tests that need a second user are skipped when not root.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn, execFile } from 'node:child_process'
import { once } from 'node:events'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { checkPidFile, writePidFile } from '../lib/pidfile'
import { readStatus, writeStatus, type StatusRecord } from '../lib/status-file'
import { startTicks } from '../lib/proc'
import { appProcess } from '../lib/trust'
import { request, runCli } from './fixtures/admin-client'
import { startFixture } from './helpers/fixture'

const ROOT = process.getuid?.() === 0
const NOBODY = 65534
const asRoot = ROOT ? test : test.skip

function tmpdir (t: ExecutionContext, mode?: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-trust-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  if (mode !== undefined) fs.chmodSync(dir, mode)
  return dir
}

/** A record as the app writes it. */
function record (pid: number, extra: Partial<StatusRecord> = {}): StatusRecord {
  const now = Date.now()
  return { pid, state: 'running', role: null, startedAt: now, updatedAt: now, reboots: { requested: 0, refused: 0, failed: 0, succeeded: 0 }, attempts: [], ...extra }
}

/** Runs `script` with node as the user nobody; resolves once it exited 0. */
function asNobody (script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { uid: NOBODY, gid: NOBODY }, (err) => { if (err === null) resolve(); else reject(err) })
  })
}

/** A `sleep` that the test kills at teardown; resolves with its pid once it runs sleep itself. */
async function sleeper (t: ExecutionContext): Promise<{ pid: number, exited: Promise<unknown> }> {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' })
  const pid = child.pid as number
  t.teardown(() => { try { process.kill(pid, 'SIGKILL') } catch {} })
  await once(child, 'spawn')
  return { pid, exited: once(child, 'exit') }
}

/** An event of a reboot (past the start's announcement) or a change of state: the app was signalled. */
const untouched = (e: { event?: string, step?: unknown }): boolean => (e.event === 'handoff' && e.step !== 'announced') || e.event === 'state'

const alive = (pid: number): boolean => { try { process.kill(pid, 0); return true } catch { return false } }

// ---------------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------------

test('a PID file naming a `sleep`: reboot, shutdown and status leave it alone and exit 8', async (t) => {
  const pidFile = path.join(tmpdir(t), 'app.pid')
  const sleep = await sleeper(t)
  fs.writeFileSync(pidFile, `${sleep.pid}\n`)
  // Even a status file beside it (the same user's) does not make a sleep the app.
  writeStatus(pidFile, record(sleep.pid))
  for (const action of ['reboot', 'shutdown', 'status']) {
    const r = await runCli([action, '--pid-file', pidFile, ...(action === 'status' ? [] : ['--wait', '--timeout', '2000'])])
    t.is(r.code, 8, `${action}: ${r.stdout}${r.stderr}`)
    t.regex(r.stderr, new RegExp(`names process ${sleep.pid}, which is not the app: process ${sleep.pid} is not a Node process \\(it runs [^)]*sleep\\); nothing was signalled`))
    t.notRegex(r.stdout, /sent/)
  }
  t.true(alive(sleep.pid), 'the sleep is still alive (SIGUSR2 or SIGTERM would have ended it)')
})

test('a Node process without a status file beside the PID file is not the app: exit 8 after a short grace, nothing signalled', async (t) => {
  const pidFile = path.join(tmpdir(t), 'app.pid')
  const f = startFixture(t, 'admin-stubborn')
  await f.waitFor('ready')
  fs.writeFileSync(pidFile, `${f.pid}\n`)
  const r = await runCli(['reboot', '--pid-file', pidFile])
  t.is(r.code, 8, r.stdout + r.stderr)
  t.regex(r.stderr, new RegExp(`process ${f.pid} has no status file ${pidFile.replace(/[.]/g, '\\.')}\\.${f.pid}\\.status`))
  t.false(f.lines.some((e) => e.event === 'signal'), 'no signal reached it')
})

test("a status file left by an earlier process with the same pid (another start time) is not the app's", async (t) => {
  const pidFile = path.join(tmpdir(t), 'app.pid')
  const f = startFixture(t, 'admin-stubborn')
  await f.waitFor('ready')
  fs.writeFileSync(pidFile, `${f.pid}\n`)
  const ticks = startTicks(f.pid)
  if (ticks === undefined) return t.pass('no /proc: no start times to compare')
  writeStatus(pidFile, record(f.pid, { startTicks: ticks - 1 }))
  const stale = appProcess(pidFile, f.pid)
  t.false(stale.app)
  t.regex((stale as { why: string }).why, /written by an earlier process with pid \d+ .*a stale file/)
  const r = await runCli(['shutdown', '--pid-file', pidFile])
  t.is(r.code, 8, r.stdout + r.stderr)
  writeStatus(pidFile, record(f.pid, { startTicks: ticks }))
  t.true(appProcess(pidFile, f.pid).app, 'control: the same record with its own start time is the app')
})

asRoot("a PID file another user wrote in a sticky folder, naming root's app: the CLI as root signals nothing (exit 8)", async (t) => {
  const dir = tmpdir(t, 0o1777)
  const pidFile = path.join(dir, 'app.pid')
  const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: 'fastify', PID_FILE: path.join(tmpdir(t), 'own.pid'), ADMIN: '0' } })
  const { port } = await f.waitFor('listening') as { port: number }
  // nobody points a PID file (and a matching status file) at root's app.
  await asNobody(`const fs = require('fs'); fs.writeFileSync(${JSON.stringify(pidFile)}, '${f.pid}\\n'); fs.writeFileSync(${JSON.stringify(`${pidFile}.${f.pid}.status`)}, ${JSON.stringify(JSON.stringify(record(f.pid)))})`)
  t.is(fs.statSync(pidFile).uid, NOBODY)
  for (const action of ['shutdown', 'reboot']) {
    const r = await runCli([action, '--pid-file', pidFile])
    t.is(r.code, 8, r.stdout + r.stderr)
    t.regex(r.stderr, new RegExp(`process ${f.pid} runs as uid 0, but the PID file belongs to uid ${NOBODY}; nothing was signalled`))
  }
  t.is((await request(port, '/')).body.pid, f.pid, 'the app serves on, untouched')
  t.false(f.lines.some(untouched), 'no reboot or shutdown began')
})

asRoot('a status file planted by another user beside the PID file: the CLI ignores it and refuses (exit 8); readStatus with an owner skips it', async (t) => {
  const dir = tmpdir(t, 0o1777)
  const pidFile = path.join(dir, 'app.pid')
  const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: 'fastify', PID_FILE: pidFile, ADMIN: '0' } })
  const { port } = await f.waitFor('listening') as { port: number }
  const status = `${pidFile}.${f.pid}.status`
  const ok = await runCli(['status', '--pid-file', pidFile])
  t.is(ok.code, 0, 'control: the app\'s own status file is read' + ok.stderr)
  // The app's file gone (as if nobody had created the name first), nobody writes a verdict of its choosing.
  fs.unlinkSync(status)
  await asNobody(`require('fs').writeFileSync(${JSON.stringify(status)}, ${JSON.stringify(JSON.stringify(record(f.pid, { attempts: [{ seq: 1, trigger: 'SIGUSR2', step: 'serving', at: Date.now(), successor: 1 }] })))})`)
  t.is(fs.statSync(status).uid, NOBODY)
  for (const action of ['status', 'reboot']) {
    const r = await runCli([action, '--pid-file', pidFile, ...(action === 'reboot' ? ['--wait', '--timeout', '5000'] : [])])
    t.is(r.code, 8, `${action}: ${r.stdout}${r.stderr}`)
    t.regex(r.stderr, new RegExp(`its status file ${status.replace(/[.]/g, '\\.')} belongs to uid ${NOBODY}, not 0 \\(the PID file's owner\\): not written by the app; nothing was signalled`))
    t.notRegex(r.stdout, /serves|passed probation/)
  }
  t.is(readStatus(pidFile, f.pid, 0), undefined, 'readStatus(…, owner) skips another user\'s file')
  t.is(readStatus(pidFile, f.pid)?.pid, f.pid, 'without an owner it would have read it')
  t.is((await request(port, '/')).body.pid, f.pid, 'the app serves on')
  t.false(f.lines.some(untouched), 'no reboot or shutdown began')
})

// ---------------------------------------------------------------------------------------------
// The folder and the files
// ---------------------------------------------------------------------------------------------

test('a folder writable by others and not sticky is refused at start, naming its owner, mode and the fix', async (t) => {
  const dir = tmpdir(t, 0o777)
  const file = path.join(dir, 'app.pid')
  const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: 'express', PID_FILE: file, ADMIN: '0' } })
  const e = await f.waitFor('boot-error')
  t.like(e, { name: 'PidFileError', code: 'ERR_GRACEFUL_PID_FILE' })
  t.is(e.message, `"pidFile" ${JSON.stringify(file)} cannot be written: its folder ${dir} (owner uid ${fs.statSync(dir).uid}, mode 0777) is writable by other users and not sticky: ` +
    `another user could replace the PID file or plant its status file; use a folder only the app's user may write to (chmod go-w ${dir}), e.g. /run/<app>`)
  t.deepEqual(await f.exited, { code: 2, signal: null })
  t.throws(() => { checkPidFile(path.join(tmpdir(t, 0o770), 'app.pid')) }, { code: 'ERR_GRACEFUL_PID_FILE', message: /mode 0770\) is writable by other users and not sticky/ }, 'group-writable too')
  t.notThrows(() => { checkPidFile(path.join(tmpdir(t, 0o755), 'app.pid')) }, 'control: the app\'s own folder')
  t.notThrows(() => { checkPidFile(path.join(tmpdir(t, 0o1777), 'app.pid')) }, 'control: a sticky folder with no PID file yet')
})

asRoot('a folder of another user is refused; a PID file another user left in a sticky folder is refused at start', async (t) => {
  const theirs = tmpdir(t, 0o755)
  fs.chownSync(theirs, NOBODY, NOBODY)
  t.throws(() => { checkPidFile(path.join(theirs, 'app.pid')) }, { code: 'ERR_GRACEFUL_PID_FILE', message: new RegExp(`its folder ${theirs} \\(owner uid ${NOBODY}, mode 0755\\) belongs to another user than this process's \\(uid 0\\) and root`) })

  const sticky = tmpdir(t, 0o1777)
  const file = path.join(sticky, 'app.pid')
  await asNobody(`require('fs').writeFileSync(${JSON.stringify(file)}, '1\\n')`)
  const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: 'fastify', PID_FILE: file, ADMIN: '0' } })
  const e = await f.waitFor('boot-error')
  t.like(e, { code: 'ERR_GRACEFUL_PID_FILE' })
  t.regex(e.message as string, new RegExp(`mode 1777\\) is writable by other users \\(sticky\\), and ${file.replace(/[.]/g, '\\.')} already exists and belongs to uid ${NOBODY}, not to this process's user \\(uid 0\\)`))
  t.deepEqual(await f.exited, { code: 2, signal: null })
  t.is(fs.readFileSync(file, 'utf8'), '1\n', 'the file is left as it was')

  // Control: the same folder with the PID file gone: the app starts and writes its own.
  fs.unlinkSync(file)
  const g = startFixture(t, 'admin-app', { env: { FRAMEWORK: 'fastify', PID_FILE: file, ADMIN: '0' } })
  await g.waitFor('listening')
  t.is(fs.readFileSync(file, 'utf8'), `${g.pid}\n`)
})

test('the PID file and the status file get mode 0644 whatever the umask', (t) => {
  const dir = tmpdir(t)
  const pidFile = path.join(dir, 'app.pid')
  const before = process.umask(0o077)
  try {
    writePidFile(pidFile, 4242)
    writeStatus(pidFile, record(4242))
  } finally {
    process.umask(before)
  }
  t.is(fs.statSync(pidFile).mode & 0o777, 0o644)
  t.is(fs.statSync(`${pidFile}.4242.status`).mode & 0o777, 0o644)
  process.umask(0)
  try {
    writePidFile(pidFile, 4343)
  } finally {
    process.umask(before)
  }
  t.is(fs.statSync(pidFile).mode & 0o777, 0o644, 'not 0666 under umask 0')
})

// ---------------------------------------------------------------------------------------------
// A second instance
// ---------------------------------------------------------------------------------------------

for (const framework of ['fastify', 'express'] as const) {
  test(`${framework}: a second instance given the PID file of a live one refuses to start; the first stays reachable from the CLI`, async (t) => {
    const pidFile = path.join(tmpdir(t), 'app.pid')
    const first = startFixture(t, 'admin-app', { env: { FRAMEWORK: framework, PID_FILE: pidFile, ADMIN: '0' } })
    await first.waitFor('listening')
    const second = startFixture(t, 'admin-app', { env: { FRAMEWORK: framework, PID_FILE: pidFile, ADMIN: '0' } })
    const e = await second.waitFor('boot-error')
    t.like(e, { name: 'PidFileError', code: 'ERR_GRACEFUL_PID_FILE' })
    t.regex(e.message as string, new RegExp(`names process ${first.pid}, another live instance of this app .*give each instance its own pidFile, or stop ${first.pid} first`))
    t.deepEqual(await second.exited, { code: 2, signal: null })
    t.false(second.lines.some((l) => l.event === 'listening'), 'it never served')
    t.is(fs.readFileSync(pidFile, 'utf8'), `${first.pid}\n`, 'the PID file still names the first')
    const status = await runCli(['status', '--pid-file', pidFile])
    t.is(status.code, 0, status.stderr)
    t.regex(status.stdout, new RegExp(`process ${first.pid}: running`))
  })
}

test('the workers of a node:cluster primary (PM2 cluster mode) share their options, pidFile included: none refuses', async (t) => {
  const pidFile = path.join(tmpdir(t), 'app.pid')
  const f = startFixture(t, 'admin-cluster', { env: { WORKERS: '2', PID_FILE: pidFile, ADMIN: '0' } })
  const pids = new Set<number>()
  while (pids.size < 2) {
    const e = await f.waitFor((l) => (l.event === 'listening' || l.event === 'boot-error') && !pids.has(l.pid as number))
    f.track(e.pid as number)
    t.is(e.event, 'listening', JSON.stringify(e))
    pids.add(e.pid as number)
  }
  t.false(f.lines.some((l) => l.event === 'boot-error'))
})

test('a PID file and status file left by a killed instance (SIGKILL) are taken over by the next start', async (t) => {
  const pidFile = path.join(tmpdir(t), 'app.pid')
  const first = startFixture(t, 'admin-app', { env: { FRAMEWORK: 'fastify', PID_FILE: pidFile, ADMIN: '0' } })
  await first.waitFor('listening')
  process.kill(first.pid, 'SIGKILL')
  await first.exited
  t.true(fs.existsSync(`${pidFile}.${first.pid}.status`), 'the killed process left its status file')
  t.is(fs.readFileSync(pidFile, 'utf8'), `${first.pid}\n`, 'and its PID file')
  const next = startFixture(t, 'admin-app', { env: { FRAMEWORK: 'fastify', PID_FILE: pidFile, ADMIN: '0' } })
  const { port } = await next.waitFor('listening') as { port: number }
  t.is((await request(port, '/')).body.pid, next.pid)
  t.is(fs.readFileSync(pidFile, 'utf8'), `${next.pid}\n`)
})
