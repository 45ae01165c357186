// Runs in the test process: what the built package exports, to CommonJS and ESM consumers, and
// that package.json points at files that exist after the build.
import test from 'ava'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..')
const DIST_INDEX = path.join(__dirname, '..', 'index.js')
const load = createRequire(__filename)
type Pkg = typeof import('../index')
const pkg = load(DIST_INDEX) as Pkg
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string
  main: string
  types: string
  files: string[]
  exports: Record<string, string | Record<string, string | Record<string, string>>>
}

test('the default export is the Fastify plugin, wrapped by fastify-plugin', (t) => {
  const plugin = pkg.default as unknown as Record<symbol, unknown> & ((...a: unknown[]) => unknown)
  t.is(typeof plugin, 'function')
  t.is(plugin[Symbol.for('fastify.display-name')], 'graceful-reboot')
  t.is(plugin[Symbol.for('skip-override')], true, 'decorators reach the parent instance')
  t.like(plugin[Symbol.for('plugin-meta')] as object, { name: 'graceful-reboot', fastify: '5.x' })
})

test('named exports: fastifyGraceful is the default; the other functions and constants', (t) => {
  t.is(pkg.fastifyGraceful, pkg.default)
  for (const name of ['expressGraceful', 'createGraceful', 'nestGraceful', 'lifecycle'] as const) {
    t.is(typeof pkg[name], 'function', name)
  }
  t.is(pkg.GOING_AWAY, 1001)
  t.like(pkg.exitCodes, { clean: 0, crash: 1, forced: 75, finalizerFailed: 76 })
  t.is(pkg.exitCodes.secondSignalBase, 128)
  t.is(pkg.FINAL_GOAWAY_MAX_DELAY, 250)
  for (const [key, value] of Object.entries(pkg)) t.not(value, undefined, `export ${key} is defined`)
})

test('lifecycle() is one process-wide instance, shared through globalThis', (t) => {
  const a = pkg.lifecycle()
  t.is(pkg.lifecycle(), a)
  t.is((globalThis as unknown as Record<symbol, unknown>)[Symbol.for('graceful-reboot.lifecycle')], a)
  t.true(['running', 'draining', 'stopped', 'rebooting'].includes(a.state))
})

test('error classes: names, codes and the instanceof chain', (t) => {
  const { GracefulError, InvalidOptionError, FinalizerGraphError, FinalizerTimeoutError, RebootError, AdoptionError, AlreadyRegisteredError, PidFileError, DrainStartedError } = pkg
  const cases: Array<[Error & { code: string }, string, string]> = [
    [new GracefulError('ERR_GRACEFUL_X', 'base'), 'GracefulError', 'ERR_GRACEFUL_X'],
    [new InvalidOptionError('bad'), 'InvalidOptionError', 'ERR_GRACEFUL_INVALID_OPTION'],
    [new FinalizerGraphError('ERR_GRACEFUL_FINALIZER_CYCLE', 'cycle'), 'FinalizerGraphError', 'ERR_GRACEFUL_FINALIZER_CYCLE'],
    [new FinalizerGraphError('ERR_GRACEFUL_FINALIZER_UNKNOWN', 'unknown'), 'FinalizerGraphError', 'ERR_GRACEFUL_FINALIZER_UNKNOWN'],
    [new FinalizerTimeoutError('db', 1500), 'FinalizerTimeoutError', 'ERR_GRACEFUL_FINALIZER_TIMEOUT'],
    [new RebootError('ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'busy'), 'RebootError', 'ERR_GRACEFUL_REBOOT_IN_PROGRESS'],
    [new AdoptionError('no fd'), 'AdoptionError', 'ERR_GRACEFUL_ADOPTION'],
    [new AlreadyRegisteredError('twice'), 'AlreadyRegisteredError', 'ERR_GRACEFUL_ALREADY_REGISTERED'],
    [new PidFileError('/run/app.pid', 'no folder'), 'PidFileError', 'ERR_GRACEFUL_PID_FILE'],
    [new DrainStartedError('fastify', 'reboot'), 'DrainStartedError', 'ERR_GRACEFUL_DRAINING']
  ]
  for (const [err, name, code] of cases) {
    t.true(err instanceof Error, name)
    t.true(err instanceof GracefulError, name)
    t.is(err.name, name)
    t.is(err.code, code)
    t.is(typeof err.stack, 'string')
    t.true(err.stack!.startsWith(`${name}: `), err.stack)
  }
  t.false(new InvalidOptionError('x') instanceof FinalizerGraphError)
  t.false(new RebootError('ERR_GRACEFUL_REBOOT_ABORTED', 'x') instanceof AdoptionError)
  t.regex(new FinalizerTimeoutError('db', 1500).message, /"db".*1500 ms/)
  t.is(new RebootError('ERR_GRACEFUL_SUCCESSOR_EXITED', 'x', 1234).successorPid, 1234)
  t.is(new RebootError('ERR_GRACEFUL_SUCCESSOR_EXITED', 'x').successorPid, undefined)
  t.is(new PidFileError('/run/app.pid', 'x').path, '/run/app.pid')
  t.is(new DrainStartedError('fastify', 'reboot').reason, 'reboot')
  const cause = new Error('root')
  t.is(new GracefulError('ERR_GRACEFUL_X', 'wrapped', { cause }).cause, cause)
})

test('package.json main, types, exports and files point at files that exist after the build', (t) => {
  t.is(manifest.name, 'graceful-reboot')
  const targets = [manifest.main, manifest.types]
  const root = manifest.exports['.']
  t.is(typeof root, 'object')
  const conditions = root as Record<string, Record<string, string> | string>
  t.deepEqual(Object.keys(conditions), ['import', 'require', 'default'])
  const esm = conditions.import as Record<string, string>
  const cjs = conditions.require as Record<string, string>
  for (const c of [esm, cjs]) {
    t.deepEqual(Object.keys(c), ['types', 'default'], '"types" comes first, as TypeScript requires')
    targets.push(...Object.values(c))
  }
  for (const target of targets) t.true(existsSync(path.join(ROOT, target)), `${target} exists`)
  t.is(path.resolve(ROOT, manifest.main), DIST_INDEX)
  t.is(path.resolve(ROOT, cjs.default!), DIST_INDEX)
  t.is(path.resolve(ROOT, conditions.default as string), DIST_INDEX)
  t.is(path.resolve(ROOT, manifest.types), path.resolve(ROOT, cjs.types!))
  t.is(path.resolve(ROOT, esm.default!), path.join(ROOT, 'dist', 'index.mjs'))
  t.is(path.resolve(ROOT, esm.types!), path.join(ROOT, 'dist', 'index.d.mts'))
  // An entry starting with "!" excludes files (the test build's source maps); the others name files.
  const packed = manifest.files.filter((f) => !f.startsWith('!'))
  for (const entry of packed) t.true(existsSync(path.join(ROOT, entry)), `files entry ${entry} exists`)
  for (const target of targets) t.true(packed.some((f) => path.join(ROOT, target).startsWith(path.join(ROOT, f))), `${target} is packed`)
  // The Prometheus helper: a subpath export of its own, packed.
  const prom = manifest.exports['./prometheus'] as Record<string, string>
  t.deepEqual(Object.keys(prom), ['types', 'default'])
  for (const target of Object.values(prom)) {
    t.true(existsSync(path.join(ROOT, target)), `${target} exists`)
    t.true(packed.some((f) => path.join(ROOT, target) === path.join(ROOT, f)), `${target} is packed`)
  }
})

test('graceful-reboot/prometheus resolves to the helper; it registers the line\'s counters on a prom-client registry', async (t) => {
  const fromRoot = createRequire(path.join(ROOT, 'package.json'))
  t.is(fromRoot.resolve('graceful-reboot/prometheus'), path.join(ROOT, 'dist', 'prometheus.js'))
  const { gracefulMetrics } = fromRoot('graceful-reboot/prometheus') as typeof import('../prometheus')
  const { Registry } = await import('prom-client')
  const registry = new Registry()
  gracefulMetrics(registry, { worker: '2' })
  const text = await registry.metrics()
  for (const line of ['graceful_reboot_reboots_total{worker="2",outcome="succeeded"} 0', 'graceful_reboot_drains_total{worker="2"} 0', 'graceful_reboot_generation{worker="2"} 0']) {
    t.true(text.split('\n').includes(line), `${line} in:\n${text}`)
  }
})

test('the package name resolves (self-reference through "exports") to the built entry; internals are not exported', (t) => {
  const fromRoot = createRequire(path.join(ROOT, 'package.json'))
  t.is(fromRoot.resolve('graceful-reboot'), DIST_INDEX)
  t.is(fromRoot('graceful-reboot'), pkg, 'the same module instance')
  t.is((fromRoot('graceful-reboot/package.json') as { name: string }).name, 'graceful-reboot')
  const err = t.throws(() => fromRoot.resolve('graceful-reboot/dist/lib/adapters/http.js'))
  t.is((err as NodeJS.ErrnoException).code, 'ERR_PACKAGE_PATH_NOT_EXPORTED')
})

test('the declaration file declares the default and named exports', (t) => {
  const dts = readFileSync(path.join(ROOT, manifest.types), 'utf8')
  t.regex(dts, /export default fastifyGraceful/)
  const dmts = readFileSync(path.join(ROOT, 'dist', 'index.d.mts'), 'utf8')
  t.regex(dmts, /^export \* from '\.\/index\.js'$/m, 'the ES module entry declares the named exports of the CommonJS one')
  t.regex(dmts, /^export default fastifyGraceful$/m, 'and the plugin as its default')
  for (const name of ['fastifyGraceful', 'expressGraceful', 'createGraceful', 'nestGraceful', 'NestGracefulHandle', 'lifecycle', 'exitCodes', 'GracefulError',
    'InvalidOptionError', 'FinalizerGraphError', 'FinalizerTimeoutError', 'RebootError', 'AdoptionError', 'AlreadyRegisteredError', 'PidFileError', 'DrainStartedError',
    'ShutdownResult', 'GracefulOptions', 'FinalizerContext']) {
    t.true(dts.includes(name), name)
  }
  const fastifyDts = readFileSync(path.join(ROOT, 'dist', 'lib', 'adapters', 'fastify.d.ts'), 'utf8')
  t.regex(fastifyDts, /declare module 'fastify'/, 'the FastifyInstance augmentation ships in the types')
})

test('an ESM consumer: named imports work and the default import is the plugin itself, registered in Fastify', async (t) => {
  const script = `
    import graceful, { fastifyGraceful, expressGraceful, nestGraceful, exitCodes, lifecycle } from 'graceful-reboot'
    import { gracefulMetrics } from 'graceful-reboot/prometheus'
    import Fastify from 'fastify'
    const app = Fastify()
    await app.register(graceful, { signals: false, exit: false })
    await app.ready()
    const out = {
      named: typeof fastifyGraceful, express: typeof expressGraceful, nest: typeof nestGraceful, metrics: typeof gracefulMetrics, forced: exitCodes.forced,
      lifecycle: typeof lifecycle, decorated: typeof app.shutdown, defaultIsPlugin: graceful === fastifyGraceful
    }
    await app.close()
    process.stdout.write(JSON.stringify(out))
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { try { if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL') } catch {} })
  let out = ''
  let err = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
  const code = await new Promise<number | null>((resolve) => { child.once('close', resolve) })
  t.is(code, 0, err)
  const r = JSON.parse(out) as Record<string, unknown>
  // The ES module entry (dist/index.mjs) exports the plugin as its default, so the default import is
  // the plugin itself, not the CommonJS module.exports object that Node would give otherwise.
  t.like(r, { named: 'function', express: 'function', nest: 'function', metrics: 'function', forced: 75, lifecycle: 'function', decorated: 'function', defaultIsPlugin: true })
})
