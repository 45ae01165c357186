// Runs in the test process: a reboot under a real pseudo-terminal (util-linux `script`). As the
// terminal's session leader (`script -c 'exec node app'`, as in a tmux pane whose command is node) the
// reboot is refused with the fix and the app keeps serving; as a job of an interactive shell on the
// same kind of terminal (bash in a pane, then `node app`) the reboot goes ahead and the successor
// serves on after the old process has exited. A process whose log pipe's reader died (`node app >
// fifo 2>&1`, read by `cat`, which dies) drains and exits at SIGTERM, every time. Also the reading of
// /proc/<pid>/stat (lib/os.ts).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import test, { type ExecutionContext } from 'ava'
import { parseTerminalSession } from '../lib/os'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

const APP = path.join(__dirname, 'fixtures', 'launcher-app.js')
const PIPE_APP = path.join(__dirname, 'fixtures', 'pipe-app.js')

function hasScript (): boolean {
  try {
    return /util-linux/.test(execFileSync('script', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))
  } catch {
    return false
  }
}

// util-linux's script is in Debian's essential bsdutils; elsewhere (macOS: BSD script) the tests are skipped.
const ptyTest = hasScript() || process.env.CI === 'true' ? test : test.skip

interface Listening extends FixtureEvent { pid: number, port: number }

function request (port: number, p: string, method = 'GET'): Promise<{ status: number, body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8').on('data', (c: string) => { body += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) as Record<string, unknown> }) })
    })
    req.on('error', reject)
    req.end()
  })
}

function ppidOf (pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
}

/** The fixture under `script` (its output through the terminal, lines ending in \r\n); every pid its events name is killed in teardown. */
function underScript (t: ExecutionContext, command: string, options: { stdin?: 'pipe' } = {}): Fixture {
  const f = startFixture(t, 'launcher-app', {
    env: { FIXTURE_LOG: '1', ADMIN: '1', PS1: '', TERM: 'dumb' },
    via: () => ['script', ['-qfec', command, '/dev/null']],
    ...options
  })
  t.teardown(() => {
    for (const e of f.lines) {
      for (const pid of [e.pid, e.other]) {
        if (typeof pid !== 'number' || pid === process.pid) continue
        try { process.kill(pid, 'SIGKILL') } catch {}
      }
    }
  })
  return f
}

test('/proc/<pid>/stat: the controlling terminal, process group, session and foreground group, past a command name with spaces and parentheses', (t) => {
  const rest = '1 4240 4200 34819 4240 4194304 100 0 0 0 1 1 0 0 20 0 7 0 5000 1000000 2000 18446744073709551615'
  t.deepEqual(parseTerminalSession(`4242 (a) b (c)) S ${rest}`), { tty: '/dev/pts/3', pid: 4242, pgrp: 4240, session: 4200, foreground: 4240 })
  t.is(parseTerminalSession('4242 (node) S 1 4242 4242 0 -1 4194304'), undefined, 'tty_nr 0: no controlling terminal')
  t.like(parseTerminalSession('10 (getty) S 1 10 10 1025 10 0'), { tty: 'tty 4:1' })
  t.is(parseTerminalSession('garbage'), undefined)
})

ptyTest('script -c "exec node app" (the terminal\'s session leader): reboot(), SIGUSR2 and /_admin/reboot are refused with the fix; the app keeps serving', async (t) => {
  const f = underScript(t, `exec ${process.execPath} ${APP}`)
  const l = await f.waitFor('listening') as Listening
  f.track(l.pid)
  const r = await request(l.port, '/reboot', 'POST')
  t.like(r.body, { ok: false, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' })
  t.regex(r.body.message as string, new RegExp(`^cannot reboot: this process \\(${l.pid}\\) is the session leader of the terminal /dev/pts/\\d+; .*kills the successor \\(SIGHUP\\).*systemd or PM2.*setsid node app`))
  const admin = await request(l.port, '/_admin/reboot?second=1', 'POST')
  t.is(admin.status, 501)
  t.like(admin.body, { code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' })
  process.kill(l.pid, 'SIGUSR2')
  const logged = await f.waitFor((e) => typeof e.msg === 'string' && e.msg.includes('reboot refused:'))
  t.like(logged, { pid: l.pid, level: 40, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' }, 'a warning with its code, no error')
  t.deepEqual(f.lines.filter((e) => e.event === 'handoff' && e.step !== 'announced' && e.step !== 'refused'), [], 'nothing was spawned')
  t.is(f.lines.filter((e) => e.event === 'handoff' && e.step === 'refused').length, 2, 'reboot() and SIGUSR2 each report a refused step')
  t.like((await request(l.port, '/')).body, { pid: l.pid }, 'still serving')
  process.kill(l.pid, 'SIGTERM')
  await f.exited
  await f.closed
  t.false(isAlive(l.pid))
})

ptyTest('bash -i on the terminal, then node app (a job of its own): the reboot goes ahead and the successor serves on once the old process has exited', async (t) => {
  const f = underScript(t, 'exec bash --norc --noprofile -i', { stdin: 'pipe' })
  // Typed ahead: bash runs the second line once the job (the old process) has ended.
  f.child.stdin?.write(`${process.execPath} ${APP}\necho '{"event":"job-done","status":'$?'}'\n`)
  const l = await f.waitFor('listening') as Listening
  f.track(l.pid)
  f.track(ppidOf(l.pid))
  const r = await request(l.port, '/reboot', 'POST')
  t.like(r.body, { ok: true })
  const successor = r.body.successor as number
  f.track(successor)
  t.like(await f.waitFor('job-done'), { status: 0 }, 'the old process drained and exited 0; the shell has the terminal back')
  t.false(isAlive(l.pid))
  t.like((await request(l.port, '/')).body, { pid: successor }, 'the successor serves')
  t.true(isAlive(successor))
  process.kill(successor, 'SIGTERM')
  f.child.stdin?.end('exit\n')
  await f.exited
})

function exitOf (child: ChildProcess): Promise<{ code: number | null, signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode })
    else child.once('exit', (code, signal) => { resolve({ code, signal }) })
  })
}

/**
 * One run: test/fixtures/pipe-app (Fastify's logger on, the default 30 s timeout) as `node app > fifo 2>&1`, the
 * FIFO read by `cat`, whose output the test reads; once the app listens, cat is killed, then the app
 * gets SIGTERM. Resolves with how the app exited, or 'still running' when it has not within `waitMs`.
 */
async function deadReaderRun (t: ExecutionContext, dir: string, n: number, waitMs: number): Promise<{ code: number | null, signal: NodeJS.Signals | null } | 'still running'> {
  const fifo = path.join(dir, `log-${n}`)
  execFileSync('mkfifo', [fifo])
  const cat = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'ignore'] })
  // sh opens the FIFO for writing (once cat has opened it for reading), then becomes node.
  const app = spawn('/bin/sh', ['-c', 'exec "$0" "$1" > "$2" 2>&1', process.execPath, PIPE_APP, fifo], { stdio: 'ignore' })
  t.teardown(() => {
    for (const c of [cat, app]) {
      try { if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL') } catch {}
    }
  })
  const listening = await new Promise<void>((resolve, reject) => {
    const lines = readline.createInterface({ input: cat.stdout as NodeJS.ReadableStream })
    lines.on('line', (line) => {
      try {
        if ((JSON.parse(line) as { event?: string }).event === 'listening') resolve()
      } catch {}
    })
    app.once('exit', () => { reject(new Error('the app exited before it listened')) })
  })
  t.is(listening, undefined)
  const catGone = exitOf(cat)
  cat.kill('SIGKILL')
  await catGone
  const exited = exitOf(app)
  app.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const result = await Promise.race([exited, new Promise<'still running'>((resolve) => { timer = setTimeout(() => { resolve('still running') }, waitMs) })])
  clearTimeout(timer)
  return result
}

test('node app > fifo 2>&1, the FIFO\'s reader dies, then SIGTERM: the app drains and exits 0, six runs out of six', async (t) => {
  t.timeout(120_000)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-pipe-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const outcomes = []
  for (let n = 0; n < 6; n++) outcomes.push(await deadReaderRun(t, dir, n, 12_000))
  t.deepEqual(outcomes, Array.from({ length: 6 }, () => ({ code: 0, signal: null })))
})
