// Runs in the test process: option validation (lib/options.ts) through every entry point:
// resolveOptions, expressGraceful, createGraceful (in process) and app.register(graceful) in a child
// process (a bad option must not be able to take the test worker down).
import { core } from '../lib/lifecycle'
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import type net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import express from 'express'
import { createGraceful, expressGraceful, GracefulError, InvalidOptionError, PidFileError } from '../index'
import { MAX_MS } from '../lib/limits'
import { DEFAULTS, resolveOptions } from '../lib/options'

/** [title, options as JS source (NaN and Infinity are not JSON), text the message must show] */
const REQUIRED: Array<[string, string, string]> = [
  ['negative timeout', '{ timeout: -1 }', '-1'],
  ['NaN timeout', '{ timeout: NaN }', 'NaN'],
  ['Infinity timeout', '{ timeout: Infinity }', 'Infinity'],
  ['a string timeout', "{ timeout: '10' }", '"10"'],
  ['unknown signal SIGFOO', "{ signals: { SIGFOO: 'shutdown' } }", 'SIGFOO'],
  ['uncatchable SIGKILL', "{ signals: { SIGKILL: 'shutdown' } }", 'SIGKILL'],
  ['uncatchable SIGSTOP', "{ signals: { SIGSTOP: 'reboot' } }", 'SIGSTOP'],
  ['bad signal action', "{ signals: { SIGTERM: 'restart' } }", '"restart"'],
  ['unknown option key (typo)', '{ timout: 1000 }', '"timout"'],
  ['empty admin token', "{ admin: { token: '' } }", '""'],
  ['admin token with whitespace', "{ admin: { token: 'abc def' } }", 'whitespace'],
  ['non-boolean exit', "{ exit: 'yes' }", '"yes"'],
  ['timeout above what a Node timer can wait', '{ timeout: 3e9 }', 'at most 2147483647 ms (about 24.8 days'],
  ['readinessDelay not below timeout', '{ timeout: 5000, readinessDelay: 5000 }', '"readinessDelay" (5000 ms) must be less than "timeout" (5000 ms)']
]

const MORE: Array<[string, string, string]> = [
  ['negative idleGrace', '{ idleGrace: -5 }', '-5'],
  ['string readinessDelay', "{ readinessDelay: '1s' }", '"1s"'],
  ['NaN rebootTimeout', '{ rebootTimeout: NaN }', 'NaN'],
  ['rebootTimeout 0 (every reboot would time out at once)', '{ rebootTimeout: 0 }', '"rebootTimeout" must be at least 1000 ms (a successor needs that long to start and listen; every reboot would time out), got 0'],
  ['rebootTimeout under a second', '{ rebootTimeout: 999 }', '"rebootTimeout" must be at least 1000 ms'],
  ['timeout 2^31 ms', '{ timeout: 2 ** 31 }', 'got 2147483648'],
  ['idleGrace above the timer maximum', '{ idleGrace: 2 ** 31 }', '"idleGrace" must be at most 2147483647 ms'],
  ['readinessDelay above the timer maximum', '{ readinessDelay: 3e9 }', '"readinessDelay" must be at most 2147483647 ms'],
  ['successorLostAfter under 2 s (an ordinary pause would kill the successor)', '{ successorLostAfter: 1500 }', '"successorLostAfter" must be at least 2000 ms (a shorter silence is an ordinary pause, a GC or a synchronous warm-up: the successor would be killed for it), got 1500'],
  ['successorLostAfter not a number', "{ successorLostAfter: '5s' }", '"successorLostAfter" must be a finite number of milliseconds >= 0, got "5s"'],
  ['rebootTimeout above the timer maximum', '{ rebootTimeout: 1e10 }', '"rebootTimeout" must be at most 2147483647 ms (about 24.8 days, the longest a Node timer waits), got 10000000000'],
  ['readinessDelay above timeout', '{ timeout: 1000, readinessDelay: 2000 }', '"readinessDelay" (2000 ms) must be less than "timeout" (1000 ms)'],
  ['readinessDelay with timeout 0', '{ timeout: 0, readinessDelay: 1000 }', '"readinessDelay" (1000 ms) must be less than "timeout" (0 ms)'],
  ['readinessDelay not below the default timeout', '{ readinessDelay: 30000 }', '"timeout" (30000 ms, the default)'],
  ['non-boolean crash', "{ crash: 'off' }", '"off"'],
  ['signals a string', "{ signals: 'SIGTERM' }", '"SIGTERM"'],
  ['signals an array', "{ signals: ['SIGTERM'] }", '["SIGTERM"]'],
  ['signal action true', '{ signals: { SIGTERM: true } }', 'true'],
  ['signal action null', '{ signals: { SIGUSR2: null } }', 'null'],
  ['signal action "false" (a string)', "{ signals: { SIGUSR2: 'false' } }", '"false"'],
  ['signal name in lower case', "{ signals: { sigterm: 'shutdown' } }", 'sigterm'],
  ['admin token a number', '{ admin: { token: 1234 } }', '1234'],
  ['admin unknown key', "{ admin: { tokn: 'x' } }", '"admin.tokn"'],
  ['admin prefix with trailing slash', "{ admin: { prefix: '/ops/' } }", '"/ops/"'],
  ['admin a string', "{ admin: 'secret' }", '"secret"'],
  ['health unknown key', "{ health: { path: '/h' } }", '"health.path"'],
  ['health prefix without slash', "{ health: { prefix: 'health' } }", '"health"'],
  ['empty pidFile', "{ pidFile: '' }", '""'],
  ['launcher a launcher\'s name', "{ launcher: 'nodemon' }", '"nodemon"'],
  ['launcher true', '{ launcher: true }', 'true'],
  ['logger without methods', '{ logger: { info: 1 } }', '{"info":1}'],
  ['options an array', '[1]', '[1]'],
  ['options a number', '42', '42']
]

const evaluate = (source: string): unknown => new Function(`return (${source})`)()

const EVENTS = ['SIGTERM', 'SIGINT', 'SIGUSR2', 'SIGHUP', 'uncaughtException', 'unhandledRejection'] as const
function counts (): Record<string, number> {
  return Object.fromEntries(EVENTS.map((e) => [e, process.listenerCount(e)]))
}

function checkError (t: ExecutionContext, err: unknown, shows: string): void {
  t.true(err instanceof InvalidOptionError, String(err))
  t.true(err instanceof GracefulError)
  t.is((err as GracefulError).code, 'ERR_GRACEFUL_INVALID_OPTION')
  t.true((err as Error).message.includes(shows), `message ${JSON.stringify((err as Error).message)} should show ${shows}`)
}

// ---------------------------------------------------------------------------------------------
// resolveOptions
// ---------------------------------------------------------------------------------------------

test('defaults', (t) => {
  const o = resolveOptions(undefined)
  t.like(o, {
    timeout: 30_000,
    signals: { SIGTERM: 'shutdown', SIGINT: 'shutdown', SIGUSR2: 'reboot' },
    crash: true,
    exit: true,
    idleGrace: 250,
    readinessDelay: 0,
    admin: undefined,
    health: undefined,
    pidFile: undefined,
    rebootTimeout: 60_000,
    successorLostAfter: 5_000,
    logger: undefined,
    launcher: 'auto'
  })
  t.deepEqual(o.signals, { SIGTERM: 'shutdown', SIGINT: 'shutdown', SIGUSR2: 'reboot' })
  t.not(o.signals, DEFAULTS.signals, 'a copy: changing it cannot change the defaults')
  t.deepEqual(resolveOptions({}), o)
})

test('signals: false turns crash handling off by default; crash: true turns it back on', (t) => {
  t.like(resolveOptions({ signals: false }), { signals: {}, crash: false })
  t.like(resolveOptions({ signals: false, crash: true }), { signals: {}, crash: true })
  t.like(resolveOptions({ signals: true }), { crash: true })
})

test('a signals map is merged with the defaults: it adds and replaces actions, false removes a signal', (t) => {
  // The common case that used to drop the graceful SIGTERM: a map that only adds SIGHUP.
  t.deepEqual(resolveOptions({ signals: { SIGHUP: 'reboot' } }).signals, { SIGTERM: 'shutdown', SIGINT: 'shutdown', SIGUSR2: 'reboot', SIGHUP: 'reboot' })
  t.deepEqual(resolveOptions({ signals: { SIGUSR2: false } }).signals, { SIGTERM: 'shutdown', SIGINT: 'shutdown' })
  t.deepEqual(resolveOptions({ signals: { SIGINT: 'reboot' } }).signals, { SIGTERM: 'shutdown', SIGINT: 'reboot', SIGUSR2: 'reboot' })
  t.deepEqual(resolveOptions({ signals: { SIGTERM: false, SIGINT: false, SIGUSR2: false, SIGHUP: 'shutdown' } }).signals, { SIGHUP: 'shutdown' })
  t.deepEqual(resolveOptions({ signals: { SIGHUP: false } }).signals, DEFAULTS.signals, 'removing a signal the defaults do not have changes nothing')
  t.deepEqual(resolveOptions({ signals: {} }).signals, DEFAULTS.signals)
  t.deepEqual(resolveOptions({ signals: { SIGTERM: false, SIGINT: false, SIGUSR2: false } }), { ...resolveOptions({}), signals: {} }, 'crash handling stays on: only signals: false turns it off by default')
  t.deepEqual(DEFAULTS.signals, { SIGTERM: 'shutdown', SIGINT: 'shutdown', SIGUSR2: 'reboot' }, 'the defaults are not changed by a merge')
})

test('a bad signal action names the choices, false included', (t) => {
  const err = t.throws(() => resolveOptions({ signals: { SIGTERM: 'restart' } }))
  t.is(err?.message, `"signals.SIGTERM" must be 'shutdown', 'reboot' or false (to remove it), got "restart"`)
})

test('good values are kept', (t) => {
  const logger = { info () {}, warn () {}, error () {} }
  const input = {
    timeout: 5_000,
    signals: { SIGHUP: 'reboot', SIGTERM: 'shutdown' },
    crash: false,
    exit: false,
    idleGrace: 10,
    readinessDelay: 1_000,
    admin: { token: 't0k', prefix: '/_admin' },
    health: { prefix: '/probe' },
    pidFile: path.join(os.tmpdir(), 'x.pid'),
    rebootTimeout: 5_000,
    successorLostAfter: 3_000,
    logger,
    launcher: 'ignore'
  } as const
  const o = resolveOptions(input)
  t.like(o, input)
  t.deepEqual(o.signals, { SIGHUP: 'reboot', SIGTERM: 'shutdown', SIGINT: 'shutdown', SIGUSR2: 'reboot' }, 'merged with the defaults')
  t.is(o.logger, logger)
  t.deepEqual(resolveOptions({ admin: true, health: true }).admin, {})
  t.deepEqual(resolveOptions({ admin: true, health: true }).health, { prefix: '/health', checks: [] })
  t.is(resolveOptions({ admin: false, health: false }).admin, undefined)
})

test('edges: every duration may be 0 or 2147483647 ms; readinessDelay just below timeout; timeout 0 without a delay', (t) => {
  t.is(DEFAULTS.timeout, 30_000)
  t.is(MAX_MS, 2 ** 31 - 1)
  const max = { timeout: MAX_MS, idleGrace: MAX_MS, readinessDelay: MAX_MS - 1, rebootTimeout: MAX_MS }
  t.like(resolveOptions(max), max)
  const zero = { timeout: 0, idleGrace: 0, readinessDelay: 0 }
  t.like(resolveOptions(zero), zero)
  t.like(resolveOptions({ rebootTimeout: 1_000 }), { rebootTimeout: 1_000 }, 'the shortest rebootTimeout')
  t.like(resolveOptions({ successorLostAfter: 2_000 }), { successorLostAfter: 2_000 }, 'the shortest successorLostAfter')
  t.like(resolveOptions({ successorLostAfter: MAX_MS }), { successorLostAfter: MAX_MS })
  t.like(resolveOptions({ timeout: 1_000, readinessDelay: 999 }), { timeout: 1_000, readinessDelay: 999 })
  t.like(resolveOptions({ readinessDelay: 29_999 }), { timeout: 30_000, readinessDelay: 29_999 })
})

for (const [title, source, shows] of [...REQUIRED, ...MORE]) {
  test(`resolveOptions refuses ${title}: ${source}`, (t) => {
    const err = t.throws(() => resolveOptions(evaluate(source)))
    checkError(t, err, shows)
  })
}

test('admin.token: whitespace, control and non-ASCII characters are refused, naming the problem, never the token', (t) => {
  const bad: Array<[token: string, problem: RegExp]> = [
    ['s3cret-token\n', /whitespace: it has a newline at its end .*trim it/],
    ['s3cret-token\r\n', /whitespace: it has a carriage return at index 12/],
    [' s3cret-token', /whitespace: it has a space at its start/],
    ['s3cret token', /whitespace: it has a space at index 6/],
    ['s3cret\ttoken', /whitespace: it has a tab at index 6/],
    ['s3cret\u00a0token', /whitespace/],
    ['s3cret\u0000token', /visible ASCII .*a control character \(U\+0000\) at index 6/],
    ['s3cret\u007ftoken', /a control character \(U\+007F\)/],
    ['p\u00e4sswort-token', /a character beyond ASCII \(U\+00E4\) at index 1/],
    ['s3cret-token\u{1F511}', /a character beyond ASCII \(U\+1F511\) at its end/]
  ]
  for (const [token, problem] of bad) {
    const err = t.throws(() => resolveOptions({ admin: { token } }), { instanceOf: InvalidOptionError, code: 'ERR_GRACEFUL_INVALID_OPTION' }, JSON.stringify(token))
    t.regex(err?.message ?? '', /^"admin\.token" must /, JSON.stringify(token))
    t.regex(err?.message ?? '', problem, JSON.stringify(token))
    t.false((err?.message ?? '').includes('s3cret'), 'the token is not shown')
  }
  // Every visible ASCII character is fine (what /^Bearer +(\S+) *$/ reads back as one word).
  for (const token of ['t', 's3cret-token', 'A-Za-z0-9._~+/=', '!"#$%&\'()*,:;<>?@[\\]^`{|}']) {
    t.is(resolveOptions({ admin: { token } }).admin?.token, token)
  }
})

function pidDir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-options-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  return dir
}

test('pidFile: its folder must exist and be a folder, and the path must not be a folder (PidFileError)', (t) => {
  const dir = pidDir(t)
  fs.writeFileSync(path.join(dir, 'plain'), '')
  fs.mkdirSync(path.join(dir, 'sub'))
  const cases: Array<[string, string]> = [
    [path.join(dir, 'missing', 'app.pid'), `its folder ${path.join(dir, 'missing')} does not exist`],
    [path.join(dir, 'plain', 'app.pid'), `${path.join(dir, 'plain')} is not a folder`],
    [path.join(dir, 'sub'), 'it is a folder']
  ]
  for (const [file, problem] of cases) {
    const err = t.throws(() => resolveOptions({ pidFile: file }))
    t.true(err instanceof PidFileError, String(err))
    t.true(err instanceof GracefulError)
    t.is((err as GracefulError).code, 'ERR_GRACEFUL_PID_FILE')
    t.is((err as PidFileError).path, file)
    t.is(err?.message, `"pidFile" ${JSON.stringify(file)} cannot be written: ${problem}`)
  }
  t.is(resolveOptions({ pidFile: path.join(dir, 'app.pid') }).pidFile, path.join(dir, 'app.pid'))
  t.is(resolveOptions({ pidFile: path.join(dir, 'sub', 'app.pid') }).pidFile, path.join(dir, 'sub', 'app.pid'))
  t.false(fs.existsSync(path.join(dir, 'app.pid')), 'the check writes nothing')
})

test.serial('pidFile in a missing folder: expressGraceful and createGraceful throw ERR_GRACEFUL_PID_FILE and install nothing', (t) => {
  const file = path.join(pidDir(t), 'missing', 'app.pid')
  for (const make of [() => expressGraceful(express(), { pidFile: file }), () => createGraceful({ pidFile: file })]) {
    const before = counts()
    const apps = core().apps.length
    t.throws(make, { instanceOf: PidFileError, code: 'ERR_GRACEFUL_PID_FILE', message: /does not exist/ })
    t.deepEqual(counts(), before)
    t.is(core().apps.length, apps)
  }
})

test('an unknown key error lists the known ones', (t) => {
  const err = t.throws(() => resolveOptions({ timout: 1 }))
  t.regex(err?.message ?? '', /known: .*timeout/)
})

// ---------------------------------------------------------------------------------------------
// Express and createGraceful, in process (serial: they share the process-wide lifecycle)
// ---------------------------------------------------------------------------------------------

for (const [title, source, shows] of REQUIRED) {
  test.serial(`expressGraceful refuses ${title} and installs nothing`, (t) => {
    const before = counts()
    const apps = core().apps.length
    const app = express()
    const err = t.throws(() => expressGraceful(app, evaluate(source) as never))
    checkError(t, err, shows)
    t.deepEqual(counts(), before, 'no process listener was added')
    t.is(core().apps.length, apps, 'no app was registered')
    t.false('shutdown' in app)
    t.false('graceful' in app)
  })
}

test.serial('createGraceful refuses bad options and installs nothing', (t) => {
  for (const [, source, shows] of REQUIRED) {
    const before = counts()
    const apps = core().apps.length
    const err = t.throws(() => createGraceful(evaluate(source) as never))
    checkError(t, err, shows)
    t.deepEqual(counts(), before)
    t.is(core().apps.length, apps)
  }
})

test.serial('createGraceful refuses health and admin (a plain server has no routes), naming them and the adapters', (t) => {
  const cases: Array<[object, string]> = [
    [{ health: true }, '"health" would do nothing'],
    [{ admin: { token: 'x' } }, '"admin" would do nothing'],
    [{ health: true, admin: true }, '"health" and "admin" would do nothing: use the Fastify plugin or expressGraceful()']
  ]
  for (const [options, shows] of cases) {
    const before = counts()
    const apps = core().apps.length
    checkError(t, t.throws(() => createGraceful(options as never)), shows)
    t.deepEqual(counts(), before)
    t.is(core().apps.length, apps)
  }
})

test.serial('expressGraceful refuses what is not an Express app with a coded error naming the value', (t) => {
  for (const [app, shows] of [[undefined, 'got undefined'], [null, 'got null'], [{}, 'got {}'], [() => {}, 'got a function']] as const) {
    const apps = core().apps.length
    checkError(t, t.throws(() => expressGraceful(app as never)), `expressGraceful() needs an Express app (const app = express()), ${shows}`)
    t.is(core().apps.length, apps)
  }
})

test.serial('attach() after listen() is refused, naming the address and the fix; before listen it is accepted', async (t) => {
  const handle = createGraceful({ exit: false, signals: false, timeout: 1_000, logger: { info () {}, warn () {}, error () {} } })
  t.teardown(async () => { await handle.close() })
  const late = http.createServer()
  await new Promise<void>((resolve) => late.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { late.close() })
  const port = (late.address() as net.AddressInfo).port
  checkError(t, t.throws(() => handle.attach(late)), `attach() got a server that already listens on {"address":"127.0.0.1","family":"IPv4","port":${port}}: call attach(server) before server.listen()`)
  const early = handle.attach(http.createServer())
  t.is(early, handle)
})

test.serial('admin.token given but undefined (an unset variable) warns once at mount, naming the option; a token or no key does not', (t) => {
  const warned: string[] = []
  const logger = { info () {}, warn (_o: object, msg: string) { warned.push(msg) }, error () {} }
  const apps: Array<{ graceful: { close: () => Promise<unknown> } }> = []
  t.teardown(async () => { for (const a of apps) await a.graceful.close() })
  apps.push(expressGraceful(express(), { exit: false, logger, admin: { token: process.env.GR_SURELY_UNSET_VARIABLE } } as never))
  t.is(warned.length, 1)
  t.regex(warned[0] ?? '', /"admin\.token" is given but undefined .*plain local calls only; set the variable, or leave "token" out/)
  apps.push(expressGraceful(express(), { exit: false, logger, admin: { token: 'set' } }))
  apps.push(expressGraceful(express(), { exit: false, logger, admin: true }))
  t.is(warned.length, 1, 'no warning with a token or without the key')
})

test.serial('close(ms) refuses a deadline above what a Node timer can wait, then closes with a good one', async (t) => {
  const handle = createGraceful({ exit: false, signals: false, timeout: 1_000, logger: { info () {}, warn () {}, error () {} } })
  const apps = core().apps.length
  await t.throwsAsync(handle.close(3e9), { instanceOf: InvalidOptionError, message: /"timeout" must be at most 2147483647 ms.*got 3000000000/ })
  t.is(core().apps.length, apps, 'still registered')
  await handle.close()
  t.is(core().apps.length, apps - 1)
})

test.serial('control: good options do register (so the checks above can see a registration)', async (t) => {
  const before = counts()
  const apps = core().apps.length
  const app = expressGraceful(express(), { exit: false, timeout: 1_000, logger: { info () {}, warn () {}, error () {} } })
  t.is(core().apps.length, apps + 1)
  t.is(process.listenerCount('SIGTERM'), (before.SIGTERM ?? 0) + 1)
  await app.graceful.close()
  t.deepEqual(counts(), before)
  t.is(core().apps.length, apps)
})

// ---------------------------------------------------------------------------------------------
// Fastify: app.register(graceful, bad), in a child process
// ---------------------------------------------------------------------------------------------

interface RegisterReport {
  rejected: boolean
  code?: string
  name?: string
  message?: string
  decorated: boolean
  before: Record<string, number>
  after: Record<string, number>
}

const CHILD = `
const Fastify = require('fastify')
const pkg = require(process.env.PKG)
const { core } = require(require('path').join(require('path').dirname(process.env.PKG), 'lib', 'lifecycle'))
const EVENTS = ${JSON.stringify(EVENTS)}
const snapshot = () => {
  const o = Object.fromEntries(EVENTS.map((e) => [e, process.listenerCount(e)]))
  o.apps = core().apps.length
  return o
}
;(async () => {
  const before = snapshot()
  const app = Fastify()
  let err
  try {
    await app.register(pkg.default, new Function('return (' + process.env.OPTS + ')')())
    await app.ready()
  } catch (e) {
    err = e
  }
  const report = { rejected: err !== undefined, decorated: app.hasDecorator('shutdown'), before, after: snapshot() }
  if (err !== undefined) Object.assign(report, { code: err.code, name: err.name, message: err.message })
  process.stdout.write(JSON.stringify(report) + '\\n')
  await app.close().catch(() => {})
})()
`

/** Registers the plugin with `source` options in a fresh process; resolves with its report. */
function registerInChild (t: ExecutionContext, source: string): Promise<{ report: RegisterReport | undefined, code: number | null, stderr: string }> {
  const child = spawn(process.execPath, ['-e', CHILD], {
    cwd: path.join(__dirname, '..', '..'),
    env: { ...process.env, PKG: path.join(__dirname, '..', 'index.js'), OPTS: source },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { try { if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL') } catch {} })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  let report: RegisterReport | undefined
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try { report = JSON.parse(line) as RegisterReport } catch {}
  })
  return new Promise((resolve) => {
    child.once('close', (code) => { resolve({ report, code, stderr }) })
  })
}

test('control: app.register(graceful, good options) registers one app and its listeners (child process)', async (t) => {
  const { report, code, stderr } = await registerInChild(t, '{ timeout: 1000, exit: false }')
  t.is(code, 0, stderr)
  t.truthy(report, stderr)
  t.false(report!.rejected)
  t.true(report!.decorated)
  t.is(report!.after.apps, report!.before.apps! + 1)
  t.is(report!.after.SIGTERM, report!.before.SIGTERM! + 1)
})

test("Fastify's own register options (prefix, logLevel, logSerializers) are not taken for unknown keys (child process)", async (t) => {
  const { report, code, stderr } = await registerInChild(t, "{ prefix: '/v1', logLevel: 'warn', logSerializers: {}, exit: false }")
  t.is(code, 0, stderr)
  t.false(report?.rejected, report?.message)
  t.true(report?.decorated)
})

test('app.register(graceful, { pidFile in a missing folder }) rejects with ERR_GRACEFUL_PID_FILE and installs nothing (child process)', async (t) => {
  const file = path.join(pidDir(t), 'missing', 'app.pid')
  const { report, stderr } = await registerInChild(t, `{ pidFile: ${JSON.stringify(file)} }`)
  t.truthy(report, stderr)
  t.like(report, { rejected: true, code: 'ERR_GRACEFUL_PID_FILE', name: 'PidFileError', decorated: false })
  t.true(report?.message?.includes(`${JSON.stringify(file)} cannot be written`), report?.message)
  t.deepEqual(report?.after, report?.before)
})

// Regression guard: the plugin is a callback plugin (fastify, opts, done); avvio 9 does not catch a
// sync throw from one, so a bad option used to be an uncaught exception that killed the process
// instead of a rejection of `await app.register()` / `ready()` (fixed in lib/adapters/fastify.ts, 26f60a3).
// Run in a child process so a regression cannot take the test worker down.
for (const [title, source, shows] of REQUIRED) {
  test(`app.register(graceful, ${source}) rejects (${title}) and installs nothing`, async (t) => {
    const { report, stderr } = await registerInChild(t, source)
    if (report === undefined) {
      t.fail(`the process died before reporting; stderr:\n${stderr.split('\n').slice(0, 3).join('\n')}`)
      return
    }
    t.true(report.rejected)
    t.is(report.code, 'ERR_GRACEFUL_INVALID_OPTION')
    t.is(report.name, 'InvalidOptionError')
    t.true(report.message?.includes(shows), report.message)
    t.deepEqual(report.after, report.before, 'no listener added, no app registered')
    t.false(report.decorated)
  })
}

test.serial('timeout: 30 (seconds by mistake) is accepted with a warning that it is milliseconds', async (t) => {
  const lines: Array<{ obj: object, msg: string }> = []
  const logger = { info: () => {}, warn: (obj: object, msg: string) => { lines.push({ obj, msg }) }, error: () => {} }
  const g = createGraceful({ timeout: 30, logger, signals: false })
  t.teardown(async () => { await g.close() })
  t.like(lines.find((l) => l.msg.includes('"timeout" is 30 ms')), { obj: { timeout: 30 } })
  t.regex(lines.find((l) => l.msg.includes('"timeout"'))?.msg ?? '', /the option is in milliseconds \(30 s is 30000\)/)
  const quiet: string[] = []
  const h = createGraceful({ timeout: 30_000, logger: { info: () => {}, warn: (_o: object, msg: string) => { quiet.push(msg) }, error: () => {} }, signals: false })
  t.teardown(async () => { await h.close() })
  t.false(quiet.some((m) => m.includes('"timeout"')), 'no warning for 30 s')
})
