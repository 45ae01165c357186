// Runs in the test process: the package as a consumer gets it, in fresh projects outside this
// repository made from the packed tarball (`npm pack`): TypeScript projects for each module setting a
// user may have (nodenext and node16, ES module and CommonJS; bundler; commonjs without
// esModuleInterop) type-check the README's snippets and a Fastify app whose options are typed, and
// the ES module and CommonJS entries run. An Express-only project type-checks without fastify.
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..')
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')

// The package as `npm pack` makes it (only the files of package.json "files"), packed once. Without
// its scripts: `prepare` would rebuild dist/ under the tests that run from it; `npm test` built it.
let tarball: string
test.before(() => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'graceful-pack-'))
  const r = spawnSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: ROOT, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`npm pack failed: ${r.stderr}`)
  tarball = path.join(dir, r.stdout.trim().split('\n').pop()!)
})
test.after.always(() => { if (tarball !== undefined) rmSync(path.dirname(tarball), { recursive: true, force: true }) })

/** A project in the system temp folder with the packed package unpacked and the given packages linked in. */
function project (t: { teardown: (fn: () => void) => void }, linked: string[], files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'graceful-consumer-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const pkg = path.join(dir, 'node_modules', 'graceful-reboot')
  mkdirSync(pkg, { recursive: true })
  const r = spawnSync('tar', ['-xzf', tarball, '-C', pkg, '--strip-components=1'], { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`)
  for (const name of linked) {
    const target = path.join(dir, 'node_modules', name)
    mkdirSync(path.dirname(target), { recursive: true })
    symlinkSync(path.join(ROOT, 'node_modules', name), target)
  }
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text)
  return dir
}

function tsc (dir: string): Promise<{ code: number | null, out: string }> {
  return run(dir, [TSC, '-p', dir])
}

function run (cwd: string, args: string[]): Promise<{ code: number | null, out: string }> {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { out += c })
  return new Promise((resolve) => { child.once('close', (code) => { resolve({ code, out }) }) })
}

function tsconfig (compilerOptions: Record<string, unknown>, noEmit = true): string {
  return JSON.stringify({
    compilerOptions: { strict: true, noEmit, skipLibCheck: false, target: 'ES2022', types: ['node'], ...compilerOptions },
    include: ['*.ts']
  })
}

/** The ```ts blocks of the README. */
function readmeBlocks (): string[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!)
}

/** The README's Fastify snippet (an ES module: top-level await) and its CommonJS form (an async main()). */
function readmeFastify (kind: 'esm' | 'cjs'): string {
  const blocks = readmeBlocks().filter((b) => b.includes("import graceful from 'graceful-reboot'") && b.includes('import Fastify'))
  const block = blocks.find((b) => b.includes('async function main') === (kind === 'cjs'))
  if (block === undefined) throw new Error(`the README has no ${kind} Fastify snippet`)
  return block + (kind === 'esm' ? '\nexport {}\n' : '')
}

// A Fastify app as the README writes it. The wrong option must not compile: if the plugin's options
// were untyped (any), the @ts-expect-error would be unused and fail the build (TS2578).
const FASTIFY_BODY = `
  const app = Fastify()
  await app.register(graceful, { timeout: 1000, signals: false, exit: false })
  await app.register(fastifyGraceful, { timeout: 1000 })
  // @ts-expect-error timeout is a number of ms
  await app.register(graceful, { timeout: '1000' })
  const options: GracefulOptions = { timeout: 1000, health: true }
  app.onShutdown(async (ctx) => { void ctx.reason }, { name: 'db', after: ['http'] })
  const result: ShutdownResult = await app.shutdown(1000)
  const pid: Promise<number> = app.reboot(10_000)
  void [options, result, pid, exitCodes.forced, lifecycle().state]
`
const IMPORTS = `import Fastify from 'fastify'
import graceful, { fastifyGraceful, exitCodes, lifecycle, type GracefulOptions, type ShutdownResult } from 'graceful-reboot'
`
const FASTIFY_ESM = IMPORTS + FASTIFY_BODY.replace(/^ {2}/gm, '') + 'export {}\n'
const FASTIFY_CJS = IMPORTS + `export async function main (): Promise<void> {${FASTIFY_BODY}}\n`

// Where `run` is set, the project is also compiled and run.ts run: the default import is the plugin itself.
const RUN = `
  const app = Fastify()
  await app.register(graceful, { timeout: 1000, signals: false, exit: false })
  await app.ready()
  const result = await app.shutdown(1000)
  process.stdout.write(JSON.stringify({ defaultIsPlugin: graceful === fastifyGraceful, decorated: typeof app.reboot, code: result.code, forced: exitCodes.forced }))
`
const RUN_IMPORTS = "import Fastify from 'fastify'\nimport graceful, { fastifyGraceful, exitCodes } from 'graceful-reboot'\n"
const RUN_ESM = RUN_IMPORTS + RUN + 'export {}\n'
const RUN_CJS = RUN_IMPORTS + `async function main (): Promise<void> {${RUN}}\nvoid main()\n`

const FASTIFY_LINKS = ['@types', 'fastify', 'fastify-plugin']

// Checking every declaration file (Fastify's, pino's, node's) takes seconds per project on a busy
// machine: the nodenext projects (which load both the .d.mts and the .d.ts entry) and the Express one
// check them all; the other setups check how the package's types are used.
const QUICK = { skipLibCheck: true }

const SETUPS: Array<{ title: string, type: 'module' | 'commonjs', options: Record<string, unknown>, run?: true }> = [
  { title: 'nodenext, ES module', type: 'module', options: { module: 'nodenext' }, run: true },
  { title: 'node16, ES module', type: 'module', options: { module: 'node16', ...QUICK } },
  { title: 'bundler (esnext)', type: 'module', options: { module: 'esnext', moduleResolution: 'bundler', ...QUICK } },
  { title: 'nodenext, CommonJS', type: 'commonjs', options: { module: 'nodenext' }, run: true },
  { title: 'node16, CommonJS', type: 'commonjs', options: { module: 'node16', ...QUICK } },
  // pino's own declarations need esModuleInterop (TS1259 in pino.d.ts), so such a project skips lib
  // checks; this package's declarations are checked without esModuleInterop by the Express test below.
  { title: 'commonjs (node10), no esModuleInterop', type: 'commonjs', options: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: false, skipLibCheck: true } }
]

for (const setup of SETUPS) {
  const ran = setup.run === true ? ' and run' : ''
  test.serial(`Fastify: the default import, the named imports and the README snippet type-check${ran} (${setup.title}); options are typed`, async (t) => {
    const esm = setup.type === 'module'
    const dir = project(t, FASTIFY_LINKS, {
      'package.json': JSON.stringify({ type: setup.type }),
      'tsconfig.json': tsconfig(setup.run === true ? { ...setup.options, outDir: 'out' } : setup.options, setup.run !== true),
      'app.ts': esm ? FASTIFY_ESM : FASTIFY_CJS,
      'readme.ts': readmeFastify(esm ? 'esm' : 'cjs'),
      ...(setup.run === true ? { 'run.ts': esm ? RUN_ESM : RUN_CJS } : {})
    })
    const r = await tsc(dir)
    t.is(r.code, 0, r.out)
    if (setup.run !== true) return
    const ran = await run(dir, [path.join('out', 'run.js')])
    t.is(ran.code, 0, ran.out)
    t.deepEqual(JSON.parse(ran.out), { defaultIsPlugin: true, decorated: 'function', code: 0, forced: 75 })
  })
}

test.serial('Fastify: a wrong option type fails to compile (TS2769: a string for the number of ms)', async (t) => {
  const dir = project(t, FASTIFY_LINKS, {
    'package.json': JSON.stringify({ type: 'module' }),
    'tsconfig.json': tsconfig({ module: 'nodenext', ...QUICK }),
    'app.ts': "import Fastify from 'fastify'\nimport graceful from 'graceful-reboot'\nawait Fastify().register(graceful, { timeout: '1000' })\n"
  })
  const r = await tsc(dir)
  t.not(r.code, 0)
  t.regex(r.out, /app\.ts\(3,\d+\): error TS2769: No overload matches this call/)
  t.regex(r.out, /Type 'string' is not assignable to type 'number'/)
})

test.serial('control: the README\'s top-level-await snippet does not compile as CommonJS (why the README gives an async main())', async (t) => {
  const dir = project(t, FASTIFY_LINKS, {
    'package.json': JSON.stringify({ type: 'commonjs' }),
    'tsconfig.json': tsconfig({ module: 'nodenext', ...QUICK }),
    'readme.ts': readmeFastify('esm')
  })
  const r = await tsc(dir)
  t.not(r.code, 0)
  t.regex(r.out, /TS1309: The current file is a CommonJS module and cannot use 'await' at the top level/)
})

test.serial('the README\'s first snippet runs as written (saved as app.mjs): it serves, SIGUSR2 reboots it into a successor on the same port, SIGTERM shuts that down; no error logged', async (t) => {
  t.timeout(60_000)
  const dir = project(t, FASTIFY_LINKS, { 'app.mjs': readmeFastify('esm').replace(/\nexport \{\}\n$/, '\n') })
  const child = spawn(process.execPath, ['app.mjs'], { cwd: dir, env: { ...process.env, PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  const pids = new Set<number>([child.pid as number])
  t.teardown(() => { for (const pid of pids) try { process.kill(pid, 'SIGKILL') } catch {} })
  // Fastify's logger: one JSON line per event, from the app and (same stdout) its successor.
  const lines: Array<{ level: number, pid: number, msg: string }> = []
  const waiters = new Set<() => void>()
  let err = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  let rest = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => {
    rest += c
    const parts = rest.split('\n')
    rest = parts.pop() ?? ''
    for (const l of parts) {
      try { lines.push(JSON.parse(l) as { level: number, pid: number, msg: string }) } catch { continue }
      pids.add(lines[lines.length - 1]!.pid)
    }
    for (const w of [...waiters]) w()
  })
  const closed = new Promise<void>((resolve) => { child.once('close', () => { resolve() }) })
  const waitLine = (match: (l: { level: number, pid: number, msg: string }) => boolean, what: string): Promise<{ level: number, pid: number, msg: string }> => new Promise((resolve, reject) => {
    const check = (): void => {
      const hit = lines.find(match)
      if (hit !== undefined) { waiters.delete(check); resolve(hit) }
    }
    waiters.add(check)
    void closed.then(() => { if (waiters.delete(check)) reject(new Error(`no ${what}; the app wrote:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${err}`)) })
    check()
  })
  const listening = /^Server listening at http:\/\/127\.0\.0\.1:(\d+)$/
  const first = await waitLine((l) => listening.test(l.msg), 'listening line')
  const port = Number(listening.exec(first.msg)![1])
  const get = async (): Promise<{ hello: string, pid: number }> => await (await fetch(`http://127.0.0.1:${port}/`)).json() as { hello: string, pid: number }
  t.deepEqual(await get(), { hello: 'world', pid: child.pid })
  process.kill(child.pid as number, 'SIGUSR2')
  const next = await waitLine((l) => listening.test(l.msg) && l.pid !== child.pid, 'successor listening')
  t.is(Number(listening.exec(next.msg)![1]), port, 'the successor serves the same port')
  await waitLine((l) => l.pid === child.pid && l.msg === 'graceful-reboot: exiting', 'the old process\'s exit line')
  t.deepEqual(await get(), { hello: 'world', pid: next.pid })
  process.kill(next.pid, 'SIGTERM')
  // Both processes write to this pipe: it closes once both are gone.
  await closed
  await t.throwsAsync(get(), undefined, 'nothing listens any more')
  t.deepEqual(lines.filter((l) => l.level >= 50), [], 'no error logged')
  t.is(err, '', 'nothing on stderr')
})

test.serial('plain JavaScript: import and require give the same module, the default is the plugin', async (t) => {
  const dir = project(t, FASTIFY_LINKS, {
    'esm.mjs': `
      import graceful, * as ns from 'graceful-reboot'
      import { createRequire } from 'node:module'
      const cjs = createRequire(import.meta.url)('graceful-reboot')
      // Node 23+ adds a 'module.exports' name to the namespace of a CommonJS module.
      const names = (o) => Object.keys(o).filter((k) => k !== '__esModule' && k !== 'default' && k !== 'module.exports').sort()
      process.stdout.write(JSON.stringify({
        defaultIsPlugin: graceful === cjs.fastifyGraceful,
        sameInstance: ns.lifecycle === cjs.lifecycle,
        sameNames: JSON.stringify(names(ns)) === JSON.stringify(names(cjs)),
        cjsDefault: cjs.default === cjs.fastifyGraceful
      }))
    `
  })
  const r = await run(dir, ['esm.mjs'])
  t.is(r.code, 0, r.out)
  t.deepEqual(JSON.parse(r.out), { defaultIsPlugin: true, sameInstance: true, sameNames: true, cjsDefault: true })
})

const EXPRESS_APP = `
import express = require('express')
import { expressGraceful, createGraceful, lifecycle, type GracefulOptions, type ShutdownResult } from 'graceful-reboot'
const options: GracefulOptions = { timeout: 10_000, health: true }
const app = expressGraceful(express(), options)
app.onShutdown(async () => {}, { name: 'db', after: ['http'] })
const done: Promise<ShutdownResult> = app.shutdown(5_000)
void done
createGraceful()
lifecycle().on('state', (s) => { console.log(s) })
`

const CJS_NODE10 = tsconfig({ module: 'commonjs', moduleResolution: 'node10' })

test('an Express-only TypeScript project type-checks without fastify installed (skipLibCheck off, no esModuleInterop)', async (t) => {
  const dir = project(t, ['@types', 'express'], { 'tsconfig.json': CJS_NODE10, 'app.ts': EXPRESS_APP })
  const r = await tsc(dir)
  t.is(r.code, 0, r.out)
})

test('control: in that project fastify is really missing (an import of it fails)', async (t) => {
  const dir = project(t, ['@types', 'express'], { 'tsconfig.json': CJS_NODE10, 'app.ts': "import type { FastifyInstance } from 'fastify'\nexport type X = FastifyInstance\n" })
  const r = await tsc(dir)
  t.not(r.code, 0)
  t.regex(r.out, /TS2307: Cannot find module 'fastify'/)
})

const NEST_APP = `
import { NestFactory } from '@nestjs/core'
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify'
import { nestGraceful, type NestGracefulHandle, type ShutdownResult } from 'graceful-reboot'

class AppModule {}

export async function main (): Promise<void> {
  const app = await NestFactory.create(AppModule)
  const g: NestGracefulHandle = await nestGraceful(app, { timeout: 10_000, health: true })
  g.onShutdown(async () => {}, { name: 'db', after: ['nest'] }).onStartup(async () => {}, { name: 'cache' })
  const done: Promise<ShutdownResult> = g.shutdown(5_000)
  void done
  await app.listen(3000)
  const f = await NestFactory.create<NestFastifyApplication>(AppModule, new FastifyAdapter())
  const platform: 'express' | 'fastify' = (await nestGraceful(f)).platform
  void platform
  // @ts-expect-error not a Nest application
  await nestGraceful({ listen: 3000 })
  // @ts-expect-error timeout is a number of ms
  await nestGraceful(app, { timeout: '10' })
}
`

test.serial('a NestJS 12 TypeScript project (nodenext): nestGraceful() takes the Express and the Fastify Nest apps; a wrong argument does not compile', async (t) => {
  const dir = project(t, ['@types', '@nestjs', '@fastify', 'fastify', 'fastify-plugin', 'rxjs', 'reflect-metadata', 'express', 'tslib', 'light-my-request', 'find-my-way', 'path-to-regexp', 'iterare', 'uid', 'pino', 'avvio', 'fast-querystring'], {
    'package.json': JSON.stringify({ type: 'module' }),
    'tsconfig.json': tsconfig({ module: 'nodenext', experimentalDecorators: true, ...QUICK }),
    'app.ts': NEST_APP
  })
  const r = await tsc(dir)
  t.is(r.code, 0, r.out)
})
