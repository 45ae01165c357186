// Runs in the test process: the PID file and the kept Unix-socket path. Unit level: the PID file is
// written through an exclusive temp file with an unpredictable name (a symlink planted at the old,
// predictable name is not written through), the temp file is removed on failure, a taken random name
// is retried, and a file planted where the old keep link went cannot make a Unix socket's path get
// lost. End to end, against Fastify and Express fixture processes: a PID file in a missing folder stops
// the start with ERR_GRACEFUL_PID_FILE (not the crash path), and a folder removed after the start-up
// check is logged while the app goes on serving.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { PidFileError } from '../lib/errors'
import { createBeside } from '../lib/exclusive'
import { keepingPath } from '../lib/handoff/keep-path'
import { writePidFile } from '../lib/pidfile'
import { request } from './fixtures/admin-client'
import { startFixture } from './helpers/fixture'

function tmpdir (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-pid-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  return dir
}

// ---------------------------------------------------------------------------------------------
// Unit: writePidFile, createBeside, keepingPath
// ---------------------------------------------------------------------------------------------

test('writePidFile writes "pid\\n" and leaves no temp file behind', (t) => {
  const dir = tmpdir(t)
  const file = path.join(dir, 'app.pid')
  writePidFile(file, 4242)
  t.is(fs.readFileSync(file, 'utf8'), '4242\n')
  writePidFile(file, 4343)
  t.is(fs.readFileSync(file, 'utf8'), '4343\n', 'an existing PID file is replaced')
  t.deepEqual(fs.readdirSync(dir), ['app.pid'])
})

test('a symlink planted at a predictable temp name is not written through', (t) => {
  const dir = tmpdir(t)
  const file = path.join(dir, 'app.pid')
  const victim = path.join(dir, 'victim')
  fs.writeFileSync(victim, 'precious\n')
  const pid = 4242
  // Every name a writer that names its temp file after a pid could pick: the pid written, this process's.
  const planted = [...new Set([pid, process.pid])].map((p) => `${file}.${p}.tmp`)
  for (const name of planted) fs.symlinkSync(victim, name)
  writePidFile(file, pid)
  t.is(fs.readFileSync(victim, 'utf8'), 'precious\n', 'the victim is untouched')
  t.false(fs.lstatSync(file).isSymbolicLink(), 'the PID file is a file of its own, not a planted link')
  t.is(fs.readFileSync(file, 'utf8'), `${pid}\n`)
  for (const name of planted) t.true(fs.lstatSync(name).isSymbolicLink(), `${name} is left as it was`)
  t.deepEqual(fs.readdirSync(dir).sort(), ['app.pid', ...planted.map((p) => path.basename(p)), 'victim'].sort(), 'no temp file left')
})

test('a write that fails is a PidFileError naming the file, and the temp file is removed', (t) => {
  const dir = tmpdir(t)
  // A folder (not empty) at the PID file's path: the temp file is written, the rename fails.
  const file = path.join(dir, 'app.pid')
  fs.mkdirSync(file)
  fs.writeFileSync(path.join(file, 'keep'), '')
  const err = t.throws(() => { writePidFile(file, 4242) }, { instanceOf: PidFileError })
  t.is(err?.code, 'ERR_GRACEFUL_PID_FILE')
  t.is((err as PidFileError).path, file)
  t.true(err?.message.includes(`could not write the PID file ${JSON.stringify(file)}`), err?.message)
  t.truthy((err?.cause as NodeJS.ErrnoException | undefined)?.code)
  t.deepEqual(fs.readdirSync(dir), ['app.pid'], 'no temp file left')
  t.throws(() => { writePidFile(path.join(dir, 'gone', 'app.pid'), 4242) }, { code: 'ERR_GRACEFUL_PID_FILE', message: /ENOENT/ })
})

test('createBeside: random names beside the target, a fresh one after EEXIST, other errors and endless EEXIST thrown', (t) => {
  const tried: string[] = []
  const got = createBeside('/run/app.pid', '.tmp', (name) => {
    tried.push(name)
    if (tried.length < 3) throw Object.assign(new Error('taken'), { code: 'EEXIST' })
    return 7
  })
  t.is(tried.length, 3)
  t.is(new Set(tried).size, 3, 'a new name each time')
  for (const name of tried) t.regex(name, /^\/run\/app\.pid\.[0-9a-f]{16}\.tmp$/)
  t.deepEqual(got, { name: tried[2], value: 7 })
  t.throws(() => createBeside('/x', '.tmp', () => { throw Object.assign(new Error('no'), { code: 'EACCES' }) }), { message: 'no' })
  let n = 0
  t.throws(() => createBeside('/x', '.tmp', () => { n++; throw Object.assign(new Error('taken'), { code: 'EEXIST' }) }), { message: 'taken' })
  t.true(n > 1 && n < 100, `gave up after ${n} tries`)
})

test("keepingPath: a file planted at the old predictable keep name does not make the socket's path get lost", async (t) => {
  const dir = tmpdir(t)
  const sock = path.join(dir, 'app.sock')
  const server = net.createServer()
  await new Promise<void>((resolve) => { server.listen(sock, resolve) })
  t.teardown(() => { server.close() })
  fs.writeFileSync(`${sock}.${process.pid}.keep`, 'planted')
  keepingPath(sock, () => { server.close() })
  t.true(fs.lstatSync(sock).isSocket(), 'the path is still there after the listening handle closed')
  t.is(fs.readFileSync(`${sock}.${process.pid}.keep`, 'utf8'), 'planted')
  t.deepEqual(fs.readdirSync(dir).sort(), ['app.sock', `app.sock.${process.pid}.keep`].sort(), 'no keep link left')
})

// ---------------------------------------------------------------------------------------------
// End to end: fixture processes
// ---------------------------------------------------------------------------------------------

// Root may write anywhere: then the check runs as nobody (uid 65534), in a folder only root may write to.
const AS_NOBODY = process.getuid?.() === 0

/** The first folder on the way to `file` (or `file` itself) that others (nobody) may not enter or run. */
function blockedForOthers (file: string): string | undefined {
  for (let p = file; ; p = path.dirname(p)) {
    if ((fs.statSync(p).mode & 0o001) === 0) return p
    if (p === path.dirname(p)) return undefined
  }
}

// The child runs as nobody, which cannot enter a clone under a private folder (mktemp -d, /root): it
// loads a copy of the compiled lib/ in a world-readable temp folder instead of the one next to this
// file. What nobody still needs: to run node and to enter the temp folder.
const BLOCKED = AS_NOBODY ? blockedForOthers(process.execPath) ?? blockedForOthers(os.tmpdir()) : undefined

/** A copy of the compiled lib/ that every user may read; removed at teardown. */
function readableLib (t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-lib-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  fs.cpSync(path.join(__dirname, '..', 'lib'), path.join(dir, 'lib'), { recursive: true })
  fs.chmodSync(dir, 0o755)
  return path.join(dir, 'lib')
}

/** Runs resolveOptions({ pidFile }) from `lib` in a child process (as `nobody` when asked) and reports. */
function resolveInChild (lib: string, file: string, asNobody: boolean): Promise<{ code?: string, message?: string, accepted?: boolean }> {
  const options = path.join(lib, 'options.js')
  const script = `try { require(${JSON.stringify(options)}).resolveOptions({ pidFile: ${JSON.stringify(file)} }); console.log(JSON.stringify({ accepted: true })) }` +
    ' catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })) }'
  const child = spawn(process.execPath, ['-e', script], { cwd: lib, stdio: ['ignore', 'pipe', 'inherit'], ...(asNobody ? { uid: 65534, gid: 65534 } : {}) })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', () => {
      try { resolve(JSON.parse(out) as { code?: string, message?: string }) } catch (err) { reject(err) }
    })
  })
}

const NOT_WRITABLE = 'a PID file folder this process may not write to is refused when the options are resolved'
const notWritable = BLOCKED === undefined ? test : test.skip
notWritable(NOT_WRITABLE + (BLOCKED === undefined ? '' : ` (skipped: the user nobody cannot reach ${BLOCKED})`), async (t) => {
  const dir = tmpdir(t)
  const locked = path.join(dir, 'locked')
  fs.mkdirSync(locked)
  fs.chmodSync(dir, 0o755)
  fs.chmodSync(locked, AS_NOBODY ? 0o755 : 0o555)
  const lib = readableLib(t)
  const file = path.join(locked, 'app.pid')
  const r = await resolveInChild(lib, file, AS_NOBODY)
  t.is(r.code, 'ERR_GRACEFUL_PID_FILE', JSON.stringify(r))
  t.is(r.message, `"pidFile" ${JSON.stringify(file)} cannot be written: its folder ${locked} is not writable by this process (EACCES)`)
  const control = await resolveInChild(lib, path.join(dir, 'app.pid'), false)
  t.deepEqual(control, { accepted: true }, 'control: a writable folder is accepted')
})

for (const framework of ['fastify', 'express'] as const) {
  test(`${framework}: a PID file in a missing folder stops the start with ERR_GRACEFUL_PID_FILE, not the crash path`, async (t) => {
    const dir = tmpdir(t)
    const file = path.join(dir, 'missing', 'app.pid')
    const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: framework, PID_FILE: file, ADMIN: '0', LOG_ERRORS: '1' } })
    const e = await f.waitFor('boot-error')
    t.like(e, { name: 'PidFileError', code: 'ERR_GRACEFUL_PID_FILE' })
    t.is(e.message, `"pidFile" ${JSON.stringify(file)} cannot be written: its folder ${path.dirname(file)} does not exist`)
    t.deepEqual(await f.exited, { code: 2, signal: null }, "the app's own start-up failure, not the crash drain's exit 1")
    t.false(f.lines.some((l) => l.event === 'listening'), 'it never served')
    t.notRegex(f.stderr(), /uncaughtException|shutting down/)
    t.false(fs.existsSync(path.dirname(file)))
  })

  test(`${framework}: a PID file folder removed after the start-up check is logged; the app serves on`, async (t) => {
    const dir = tmpdir(t)
    const file = path.join(dir, 'run', 'app.pid')
    fs.mkdirSync(path.dirname(file))
    const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: framework, PID_FILE: file, ADMIN: '0', LOG_ERRORS: '1', REMOVE_PID_DIR: '1' } })
    const { port } = await f.waitFor('listening') as { port: number }
    t.false(fs.existsSync(path.dirname(file)), 'the folder is gone')
    t.is((await request(port, '/')).body.pid, f.pid, 'it serves')
    t.deepEqual((await request(port, '/health/startup')).body, { status: 'ok' }, 'it announced that it serves')
    t.regex(f.stderr(), /could not write the PID file/)
    t.true(f.stderr().includes(file), f.stderr())
    t.regex(f.stderr(), /ERR_GRACEFUL_PID_FILE/)
    t.regex(f.stderr(), /serving without it/)
    t.notRegex(f.stderr(), /uncaughtException/)
    process.kill(f.pid, 'SIGTERM')
    t.deepEqual(await f.exited, { code: 0, signal: null }, 'and shuts down cleanly')
  })
}
