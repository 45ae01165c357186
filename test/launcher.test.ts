// Runs in the test process: the launcher detection (lib/launcher.ts) over command lines recorded from
// the real tools, the reading of the parent process (lib/os.ts), and the plugin at its defaults under
// real launchers: nodemon (a save restarts the app cleanly: it drains, exits, and nodemon's next child
// listens on the same port, no orphan), an npm script and node --watch (a reboot is refused with a
// coded error that names the launcher; /reboot answers 501).
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { detectLauncher, readsPast, type AncestorInfo, type LauncherFacts, type LauncherKind } from '../lib/launcher'
import { readAncestors, readProc, readPs } from '../lib/os'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

const ROOT = path.join(__dirname, '..', '..')
const APP = path.join(__dirname, 'fixtures', 'launcher-app.js')

function facts (ancestors: Array<[number, string, string[]]>, env: Record<string, string> = {}): LauncherFacts {
  return { ancestors: ancestors.map(([pid, comm, argv]): AncestorInfo => ({ pid, comm, argv })), env }
}

const NPM_ENV = { npm_lifecycle_event: 'start', npm_config_user_agent: 'npm/11.19.1 node/v20.20.2 linux x64 workspaces/false', npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js' }
const BASH: [number, string, string[]] = [100, 'bash', ['-bash']]

// Parent process chains as /proc showed them under each tool (npm 11, yarn 1.22, pnpm 12, nodemon 3.1,
// tsx 4.23, PM2 7, node 20 --watch): the nearest process first, then past each `sh -c`.
const TABLE: Array<{ title: string, facts: LauncherFacts, kind: LauncherKind, name?: string, refused: boolean, restartSignal?: NodeJS.Signals }> = [
  { title: 'a terminal', facts: facts([BASH]), kind: 'terminal', name: 'bash', refused: false },
  { title: 'systemd', facts: facts([[1, 'systemd', ['/sbin/init']]], { INVOCATION_ID: 'abc' }), kind: 'systemd', refused: false },
  {
    title: 'a test runner started by `npm test` (npm_lifecycle_event inherited, the parent is node)',
    facts: facts([[300, 'node', ['/usr/bin/node', '/srv/app/node_modules/ava/lib/worker/base.js']]], { ...NPM_ENV, npm_lifecycle_event: 'test' }),
    kind: 'terminal',
    refused: false
  },
  { title: 'the old process of a reboot (a successor\'s parent)', facts: facts([[400, 'node', ['/usr/bin/node', '/srv/app/server.js']]]), kind: 'terminal', refused: false },
  { title: 'nodemon (fork)', facts: facts([[200, 'node', ['node', '/srv/app/node_modules/.bin/nodemon', 'app.js']], [199, 'sh', ['sh', '-c', 'nodemon app.js']], [198, 'npm run dev', ['npm run dev']]], NPM_ENV), kind: 'nodemon', name: 'nodemon', refused: true, restartSignal: 'SIGUSR2' },
  { title: 'nodemon (spawn through sh -c, global install)', facts: facts([[201, 'sh', ['sh', '-c', 'node --inspect app.js']], [200, 'node', ['node', '/usr/lib/node_modules/nodemon/bin/nodemon.js', '--inspect', 'app.js']]]), kind: 'nodemon', refused: true, restartSignal: 'SIGUSR2' },
  { title: 'nodemon --signal SIGHUP', facts: facts([[200, 'node', ['node', '/usr/bin/nodemon', '--signal', 'SIGHUP', 'app.js']]]), kind: 'nodemon', refused: true, restartSignal: 'SIGHUP' },
  { title: 'nodemon --exec \'npm start\' (nodemon signals its whole process tree)', facts: facts([[203, 'sh', ['sh', '-c', 'node app.js']], [202, 'npm start', ['npm start']], [201, 'sh', ['sh', '-c', 'npm start']], [200, 'node', ['node', '/srv/app/node_modules/.bin/nodemon', '--exec', 'npm start']]], NPM_ENV), kind: 'nodemon', refused: true, restartSignal: 'SIGUSR2' },
  { title: 'npm start from a terminal (read past npm: no nodemon above)', facts: facts([[201, 'sh', ['sh', '-c', 'node app.js']], [200, 'npm start', ['npm start']], BASH], NPM_ENV), kind: 'npm', refused: true },
  { title: 'node --watch', facts: facts([[200, 'node', ['node', '--watch', 'app.js']]]), kind: 'node --watch', refused: true },
  { title: 'node --watch-path', facts: facts([[200, 'node', ['/usr/bin/node', '--watch-path=src', '--enable-source-maps', 'app.js']]]), kind: 'node --watch', refused: true },
  { title: 'tsx', facts: facts([[200, 'node', ['node', '/srv/app/node_modules/.bin/tsx', 'app.ts']], [199, 'sh', ['sh', '-c', '\'tsx\' app.ts']], [198, 'npm exec tsx ap', ['npm exec tsx app.ts']]]), kind: 'tsx', refused: true },
  { title: 'tsx watch', facts: facts([[200, 'node', ['node', '/srv/app/node_modules/tsx/dist/cli.mjs', 'watch', 'app.ts']]]), kind: 'tsx watch', refused: true },
  { title: 'npm start (title "npm start")', facts: facts([[201, 'sh', ['sh', '-c', 'node app.js']], [200, 'npm start', ['npm start']]], NPM_ENV), kind: 'npm', name: 'npm run start', refused: true },
  { title: 'npm run through ps (no /proc)', facts: facts([[201, 'sh', ['sh', '-c', 'node', 'app.js']], [200, 'npm', ['npm', 'run', 'serve']]], { ...NPM_ENV, npm_lifecycle_event: 'serve' }), kind: 'npm', name: 'npm run serve', refused: true },
  { title: 'npx', facts: facts([[201, 'sh', ['sh', '-c', '\'node\' app.js']], [200, 'npm exec node ', ['npm exec node app.js']]], { ...NPM_ENV, npm_lifecycle_event: 'npx' }), kind: 'npx', name: 'npx', refused: true },
  { title: 'yarn run', facts: facts([[201, 'sh', ['/bin/sh', '-c', 'node app.js']], [200, 'node', ['node', '/srv/app/node_modules/yarn/bin/yarn.js', 'run', 'start']]], { ...NPM_ENV, npm_config_user_agent: 'yarn/1.22.22 npm/? node/v20.20.2 linux x64' }), kind: 'yarn', name: 'yarn run start', refused: true },
  { title: 'yarn berry', facts: facts([[201, 'sh', ['/bin/sh', '-c', 'node app.js']], [200, 'node', ['/usr/bin/node', '/srv/app/.yarn/releases/yarn-4.5.0.cjs', 'start']]]), kind: 'yarn', refused: true },
  { title: 'pnpm run (the standalone binary, its trap prelude)', facts: facts([[201, 'sh', ['sh', '-c', 'trap \'...\' INT; node app.js']], [200, 'pnpm', ['/srv/app/node_modules/@pnpm/exe.linux-x64/pnpm', 'run', 'start']]], NPM_ENV), kind: 'pnpm', name: 'pnpm run start', refused: true },
  { title: 'pnpm (node)', facts: facts([[200, 'node', ['node', '/srv/app/node_modules/pnpm/bin/pnpm.mjs', 'exec', 'node', 'app.js']]]), kind: 'pnpm', refused: true },
  { title: 'PM2 fork mode', facts: facts([[200, 'PM2 v7.0.4: God', ['PM2 v7.0.4: God Daemon (/root/.pm2)                ']]], { pm_id: '0', exec_mode: 'fork_mode' }), kind: 'pm2 fork', name: 'PM2 (fork mode)', refused: true },
  { title: 'pm2-runtime', facts: facts([[200, 'node', ['node', '/srv/app/node_modules/.bin/pm2-runtime', 'app.js']]], { pm_id: '0', exec_mode: 'fork_mode' }), kind: 'pm2 fork', refused: true },
  { title: 'PM2 cluster mode (refused as a cluster worker, not here)', facts: facts([[200, 'PM2 v7.0.4: God', ['PM2 v7.0.4: God Daemon (/root/.pm2)']]], { pm_id: '1', exec_mode: 'cluster_mode' }), kind: 'pm2 cluster', refused: false },
  { title: 'pm_id inherited by a child of an app under PM2', facts: facts([[400, 'node', ['/usr/bin/node', '/srv/app/server.js']]], { pm_id: '0', exec_mode: 'fork_mode' }), kind: 'terminal', refused: false },
  { title: 'timeout 600 node app.js', facts: facts([[200, 'timeout', ['timeout', '600', 'node', 'app.js']], BASH]), kind: 'wrapper', name: 'timeout', refused: true },
  { title: 'flock through sh -c', facts: facts([[201, 'sh', ['sh', '-c', 'node app.js']], [200, 'flock', ['/usr/bin/flock', '/run/app.lock', 'sh', '-c', 'node app.js']]]), kind: 'wrapper', name: 'flock', refused: true },
  { title: 'sudo -u app node app.js', facts: facts([[200, 'sudo', ['sudo', '-u', 'app', 'node', 'app.js']]]), kind: 'wrapper', name: 'sudo', refused: true },
  { title: 'cross-env (a Node CLI)', facts: facts([[200, 'node', ['node', '/srv/app/node_modules/.bin/cross-env', 'NODE_ENV=production', 'node', 'app.js']]]), kind: 'wrapper', name: 'cross-env', refused: true },
  { title: 'nice, nohup and env exec the app: not its parent (the shell is)', facts: facts([BASH]), kind: 'terminal', refused: false },
  { title: 'no readable parent', facts: facts([]), kind: 'unknown', refused: false }
]

for (const row of TABLE) {
  test(`detection: ${row.title} -> ${row.kind}`, (t) => {
    const l = detectLauncher(row.facts)
    t.is(l.kind, row.kind)
    if (row.name !== undefined) t.is(l.name, row.name)
    t.is(l.rebootProblem !== undefined, row.refused, l.rebootProblem ?? 'no reboot problem')
    t.is(l.restartSignal, row.restartSignal)
    if (row.facts.ancestors.length > 0) t.regex(l.evidence, new RegExp(`^parent ${row.facts.ancestors.find((a) => !/^(sh|bash)$/.test(a.comm) || !a.argv.includes('-c'))?.pid ?? ''}: `))
  })
}

test('the reboot problems name the fix', (t) => {
  const npm = detectLauncher(TABLE.find((r) => r.kind === 'npm')?.facts as LauncherFacts)
  t.regex(npm.rebootProblem ?? '', /npm exits when this process exits.*orphan.*CMD \["npm", "start"\].*run node directly.*systemd.*PID file.*or use shutdown/)
  const nodemon = detectLauncher(TABLE.find((r) => r.kind === 'nodemon')?.facts as LauncherFacts)
  t.regex(nodemon.rebootProblem ?? '', /nodemon restarts this process itself.*SIGUSR2.*EADDRINUSE/)
  const tsx = detectLauncher(TABLE.find((r) => r.kind === 'tsx')?.facts as LauncherFacts)
  t.regex(tsx.rebootProblem ?? '', /node --import tsx app\.ts/)
})

test('the parent is read through sh -c up to the launcher; /proc and ps agree on the command line', (t) => {
  const table: Record<number, { info: AncestorInfo, ppid: number }> = {
    12: { info: { pid: 12, comm: 'sh', argv: ['sh', '-c', 'node app.js'] }, ppid: 11 },
    11: { info: { pid: 11, comm: 'npm run dev', argv: ['npm run dev'] }, ppid: 10 },
    10: { info: { pid: 10, comm: 'bash', argv: ['-bash'] }, ppid: 1 }
  }
  t.deepEqual(readAncestors(12, readsPast, (pid) => table[pid]).map((a) => a.pid), [12, 11, 10], 'through sh -c and npm, up to the first process that is neither')
  t.deepEqual(readAncestors(10, readsPast, (pid) => table[pid]).map((a) => a.pid), [10])
  t.deepEqual(readAncestors(11, readsPast, (pid) => table[pid]).map((a) => a.pid), [11, 10])
  t.deepEqual(readAncestors(99, readsPast, () => undefined), [])
  // This test process's parent (AVA), read both ways.
  const proc = readProc(process.ppid)
  const ps = readPs(process.ppid)
  t.truthy(proc)
  t.truthy(ps)
  t.is(proc?.ppid, ps?.ppid)
  t.is(proc?.info.argv.join(' '), ps?.info.argv.join(' '))
  t.is(detectLauncher({ ancestors: readAncestors(process.ppid, readsPast), env: process.env }).kind, 'terminal', 'AVA is no launcher, even under npm test')
})

interface Listening extends FixtureEvent { pid: number, port: number, launcher: string, launcherName: string }

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

/** The pids whose parent is `ppid`, from /proc. */
function childrenOf (ppid: number): number[] {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      return /^PPid:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] === String(ppid)
    } catch {
      return false
    }
  })
}

/** Starts the fixture; in teardown, also kills every pid its events named (a successor the test did not expect included). */
function start (t: ExecutionContext, options: Parameters<typeof startFixture>[2]): Fixture {
  const f = startFixture(t, 'launcher-app', options)
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

function tempDir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-launcher-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  return dir
}

test('nodemon, plugin at its defaults: a save drains the app (its request completes) and nodemon\'s next child serves the same port; no orphan', async (t) => {
  const dir = tempDir(t)
  const watched = path.join(dir, 'watched')
  fs.mkdirSync(watched)
  const nodemon = path.join(ROOT, 'node_modules', 'nodemon', 'bin', 'nodemon.js')
  // The request in flight is released at the second SIGUSR2: nodemon sends it again while it waits.
  const f = start(t, {
    env: { PORT_FILE: path.join(dir, 'port'), RELEASE_ON_SIGNAL: '2' },
    via: (file) => [process.execPath, [nodemon, '--watch', watched, '--ext', 'txt', file]]
  })
  const first = await f.waitFor('listening') as Listening
  f.track(first.pid)
  t.is(first.launcher, 'nodemon')
  const held = request(first.port, '/hold')
  await f.waitFor((e) => e.event === 'hold-started' && e.pid === first.pid)

  fs.writeFileSync(path.join(watched, 'change.txt'), 'save')
  const drain = await f.waitFor((e) => e.event === 'shutdown-started' && e.pid === first.pid)
  t.like(drain, { reason: 'shutdown', trigger: 'SIGUSR2', held: 1 })
  t.like(await f.waitFor((e) => e.event === 'sigusr2' && e.pid === first.pid && e.n === 2), { held: 1 }, 'a repeat of SIGUSR2 joins the drain')
  const answer = await held
  t.is(answer.status, 200)
  t.deepEqual(answer.body, { pid: first.pid, released: true }, 'the request in flight completed')

  const next = await f.waitFor((e) => e.event === 'listening' && e.pid !== first.pid) as Listening
  f.track(next.pid)
  t.is(next.port, first.port, 'nodemon\'s next child listens on the same port')
  t.false(f.lines.some((e) => e.event === 'boot-error'), 'no EADDRINUSE')
  t.false(isAlive(first.pid), 'the old process is gone')
  t.deepEqual(childrenOf(f.pid), [next.pid], 'exactly one app process under nodemon')
  t.like((await request(next.port, '/')).body, { pid: next.pid })

  // A SIGUSR2 from elsewhere (not a save) restarts too: the process ends by SIGUSR2, as nodemon expects.
  process.kill(next.pid, 'SIGUSR2')
  const third = await f.waitFor((e) => e.event === 'listening' && e.pid !== first.pid && e.pid !== next.pid) as Listening
  f.track(third.pid)
  t.is(third.port, first.port)
  t.false(isAlive(next.pid))

  process.kill(f.pid, 'SIGTERM')
  await f.exited
  await f.closed
  for (const pid of [first.pid, next.pid, third.pid]) t.false(isAlive(pid), `pid ${pid} is gone`)
})

test('nodemon stopped by kill -TERM (it passes SIGTERM and SIGINT on, together): the second joins the drain, and the request in flight gets its answer', async (t) => {
  const dir = tempDir(t)
  const watched = path.join(dir, 'watched')
  fs.mkdirSync(watched)
  const nodemon = path.join(ROOT, 'node_modules', 'nodemon', 'bin', 'nodemon.js')
  // The request in flight is released a second after both signals have arrived.
  const f = start(t, {
    env: { PORT_FILE: path.join(dir, 'port'), RELEASE_ON_STOP: '2' },
    via: (file) => [process.execPath, [nodemon, '--watch', watched, '--ext', 'txt', file]]
  })
  const first = await f.waitFor('listening') as Listening
  f.track(first.pid)
  t.is(first.launcher, 'nodemon')
  const held = request(first.port, '/hold')
  await f.waitFor((e) => e.event === 'hold-started' && e.pid === first.pid)
  process.kill(f.pid, 'SIGTERM')
  const second = await f.waitFor((e) => e.event === 'stop-signal' && e.pid === first.pid && e.n === 2)
  const signals = f.lines.filter((e) => e.event === 'stop-signal' && e.pid === first.pid).map((e) => e.signal as string)
  t.deepEqual([...signals].sort(), ['SIGINT', 'SIGTERM'], 'nodemon sent both')
  t.like(second, { held: 1 })
  const answer = await held
  t.is(answer.status, 200)
  t.deepEqual(answer.body, { pid: first.pid, released: true }, 'the request in flight completed')
  await f.exited
  await f.closed
  t.false(isAlive(first.pid))
})

/** Runs the fixture as `npm run app` in a project of its own. */
function underNpm (t: ExecutionContext, env: Record<string, string> = {}): Fixture {
  // FIXTURE_LOG: the package's log lines (pino JSON on stdout) are events too.
  const dir = tempDir(t)
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'launcher-app', private: true, scripts: { app: `node ${JSON.stringify(APP)}` } }))
  return start(t, {
    cwd: dir,
    env: { ADMIN: '1', FIXTURE_LOG: '1', ...env },
    via: () => [process.platform === 'win32' ? 'npm.cmd' : 'npm', ['run', 'app']]
  })
}

test('npm run: reboot(), SIGUSR2 and /reboot are refused with a coded error that names npm; the app keeps serving', async (t) => {
  const f = underNpm(t)
  const l = await f.waitFor('listening') as Listening
  f.track(l.pid)
  t.is(l.launcher, 'npm')
  t.is(l.launcherName, 'npm run app')
  const r = await request(l.port, '/reboot', 'POST')
  t.like(r.body, { ok: false, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' })
  t.regex(r.body.message as string, /^cannot reboot under npm run app \(parent \d+: npm run app.*\): npm exits when this process exits.*run node directly.*launcher: 'ignore'/)
  const admin = await request(l.port, '/_admin/reboot?second=1', 'POST')
  t.is(admin.status, 501)
  t.like(admin.body, { code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' })
  t.regex(admin.body.message as string, /under npm run app/)
  process.kill(l.pid, 'SIGUSR2')
  const logged = await f.waitFor((e) => typeof e.msg === 'string' && e.msg.includes('reboot refused:'))
  t.like(logged, { pid: l.pid, level: 40, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' }, 'a warning with its code, no error')
  t.regex(logged.reason as string, /cannot reboot under npm run app/)
  t.like((await request(l.port, '/')).body, { pid: l.pid }, 'still serving, no successor')
  process.kill(l.pid, 'SIGTERM')
  await f.exited
  t.false(isAlive(l.pid))
})

test('npm run with launcher: \'ignore\': the reboot goes ahead (the user opted in)', async (t) => {
  const f = underNpm(t, { LAUNCHER: 'ignore' })
  const l = await f.waitFor('listening') as Listening
  f.track(l.pid)
  t.is(l.launcher, 'npm', 'still detected')
  const r = await request(l.port, '/reboot', 'POST')
  t.like(r.body, { ok: true })
  const successor = r.body.successor as number
  f.track(successor)
  const next = await f.waitFor((e) => e.event === 'listening' && e.pid === successor) as Listening
  t.is(next.port, l.port)
  t.is(next.launcher, 'terminal', 'the successor\'s parent is the old process')
  await f.exited
  t.true(isAlive(successor), 'npm ended with its child; the successor runs on (what the refusal prevents)')
  process.kill(successor, 'SIGTERM')
  await f.closed
})

test('node --watch: a change drains the app (its request completes) and the next child serves the same port; a reboot is refused', async (t) => {
  const dir = tempDir(t)
  const watched = path.join(dir, 'watched')
  fs.mkdirSync(watched)
  const f = start(t, {
    env: { PORT_FILE: path.join(dir, 'port'), ADMIN: '1' },
    via: (file) => [process.execPath, [`--watch-path=${watched}`, file]]
  })
  const first = await f.waitFor('listening') as Listening
  f.track(first.pid)
  t.is(first.launcher, 'node --watch')
  const r = await request(first.port, '/reboot', 'POST')
  t.like(r.body, { ok: false, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' })
  t.regex(r.body.message as string, /^cannot reboot under node --watch .*restarts this process itself on a file change/)

  const held = request(first.port, '/hold')
  await f.waitFor((e) => e.event === 'hold-started' && e.pid === first.pid)
  fs.writeFileSync(path.join(watched, 'change.txt'), 'save')
  t.like(await f.waitFor((e) => e.event === 'shutdown-started' && e.pid === first.pid), { trigger: 'SIGTERM', held: 1 })
  t.deepEqual((await held).body, { pid: first.pid, released: true })
  const next = await f.waitFor((e) => e.event === 'listening' && e.pid !== first.pid) as Listening
  f.track(next.pid)
  t.is(next.port, first.port)
  t.false(isAlive(first.pid))
  t.deepEqual(childrenOf(f.pid), [next.pid])
  process.kill(f.pid, 'SIGTERM')
  await f.closed
  t.false(isAlive(next.pid))
})

test('under `timeout 120 node app.js` reboot(), SIGUSR2 and /reboot are refused naming timeout and the fix; the app keeps serving, no orphan', async (t) => {
  const f = start(t, { env: { ADMIN: '1', FIXTURE_LOG: '1' }, via: (file) => ['timeout', ['120', process.execPath, file]] })
  const l = await f.waitFor('listening') as Listening
  f.track(l.pid)
  t.not(l.pid, f.pid, 'timeout is the parent')
  t.is(l.launcher, 'wrapper')
  t.is(l.launcherName, 'timeout')
  const r = await request(l.port, '/reboot', 'POST')
  t.like(r.body, { ok: false, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' })
  t.regex(r.body.message as string, new RegExp(`^cannot reboot under timeout \\(parent ${f.pid}: timeout 120 .*\\): timeout waits for this process and exits when it exits, so a reboot's successor would run on as an orphan.*RuntimeMaxSec=.*launcher: 'ignore'`))
  const admin = await request(l.port, '/_admin/reboot?second=1', 'POST')
  t.is(admin.status, 501)
  process.kill(l.pid, 'SIGUSR2')
  const logged = await f.waitFor((e) => typeof e.msg === 'string' && e.msg.includes('reboot refused:'))
  t.like(logged, { pid: l.pid, level: 40, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' }, 'a warning with its code, no error')
  t.like((await request(l.port, '/')).body, { pid: l.pid }, 'still serving, no successor')
  t.false(f.lines.some((e) => e.event === 'handoff' && e.step === 'spawned'), 'nothing spawned')
  process.kill(l.pid, 'SIGTERM')
  await f.exited
  t.false(isAlive(l.pid))
})

test('a plain `node app.js` (the parent is this test runner, even under npm test) may reboot', async (t) => {
  const f = start(t, { env: { npm_lifecycle_event: 'test', npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js' } })
  const l = await f.waitFor('listening') as Listening
  f.track(l.pid)
  t.is(l.launcher, 'terminal')
  const r = await request(l.port, '/reboot', 'POST')
  t.like(r.body, { ok: true })
  const successor = r.body.successor as number
  f.track(successor)
  await f.exited
  process.kill(successor, 'SIGTERM')
  await f.closed
  t.false(isAlive(successor))
})
