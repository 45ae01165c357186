// Runs in the test process: the package as a user installs it from source. A fresh `git clone` of this
// repository's HEAD has no dist/ and nothing is built by hand: `npm pack` builds it (the prepare script)
// and packs dist/, LICENSE and README.md, no source map without its source; the tarball installed into
// a scratch project loads through require and import and its command runs, with no install script for
// npm to list (the packed package.json has no prepare), and the clone is left as it was. `npm install
// git+file://<clone>` (npm clones, installs the devDependencies, runs prepare and packs) gives a package
// that loads too, and so does `npm install <folder of a fresh clone>` (prepare installs the build's tools
// there first; a second install does not rebuild). npm runs offline: the packages come from npm's
// cache, which `npm ci` filled.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..')
// npm's git install runs a full install of the devDependencies in its own clone (about 25 s): CI runs
// it on one Node line only, as npm is the same on each (see .ci/run).
const SKIP_GIT_INSTALL = process.env.GRACEFUL_REBOOT_SKIP_GIT_INSTALL === '1'

type Run = { code: number | null, stdout: string, stderr: string }
/** Where a helper registers its cleanup: a test's teardown, or the file's (for what tests share). */
type Scope = { teardown: (fn: () => void) => void }

/** Runs a command to its exit; a child still running at teardown is killed with its process group. */
function run (t: Scope, command: string, args: string[], cwd: string): Promise<Run> {
  // What npm sets for the scripts it runs (npm test) would configure the npm run here: only where the
  // cache and the user's configuration live carries over.
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_registry'])
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || keep.has(k.toLowerCase())))
  const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let done = false
  t.teardown(() => { if (!done && child.pid !== undefined) try { process.kill(-child.pid, 'SIGKILL') } catch {} })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => { done = true; resolve({ code, stdout, stderr }) })
  })
}

function must (r: Run, what: string): Run {
  if (r.code !== 0) {
    const hint = /ENOTCACHED/.test(r.stderr) ? ' (a package is not in npm\'s cache: run `npm ci` first, which fills it)' : ''
    throw new Error(`${what} exited with ${r.code}${hint}\n${r.stdout}\n${r.stderr}`)
  }
  return r
}

/** A temp folder, removed at teardown. */
function tmp (t: Scope, prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  return dir
}

/** A fresh clone of HEAD (hard links off: a copy, as a user's clone would be), without a build. */
async function cloneHead (t: Scope): Promise<{ clone: string, sha: string, note?: string }> {
  const sha = must(await run(t, 'git', ['rev-parse', 'HEAD'], ROOT), 'git rev-parse').stdout.trim()
  const dirty = (await run(t, 'git', ['status', '--porcelain', '--untracked-files=no'], ROOT)).stdout.trim()
  const clone = path.join(tmp(t, 'graceful-clone-'), 'graceful-reboot')
  must(await run(t, 'git', ['clone', '--quiet', '--no-hardlinks', '--no-checkout', ROOT, clone], ROOT), 'git clone')
  must(await run(t, 'git', ['checkout', '--quiet', '--detach', sha], clone), 'git checkout')
  if (existsSync(path.join(clone, 'dist'))) throw new Error(`the clone ${clone} has a dist/ folder before any build`)
  return { clone, sha, ...(dirty === '' ? {} : { note: `uncommitted changes are not in the clone (it checks out HEAD ${sha.slice(0, 10)})` }) }
}

/** The URL of fastify-plugin's tarball, at the version of the lock file: npm installs it from its cache. */
async function fastifyPluginUrl (t: ExecutionContext): Promise<string> {
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> }
  const { version } = lock.packages['node_modules/fastify-plugin']!
  const registry = must(await run(t, 'npm', ['config', 'get', 'registry'], ROOT), 'npm config get registry').stdout.trim().replace(/\/$/, '')
  return `${registry}/fastify-plugin/-/fastify-plugin-${version}.tgz`
}

/**
 * A scratch project outside the repository with `spec` (a tarball, a git URL or a folder) installed,
 * offline; with `allowScripts`, the project allows the package's prepare script (which builds a git or
 * folder install), which npm otherwise lists as not reviewed.
 */
async function install (t: ExecutionContext, spec: string, allowScripts = true): Promise<{ dir: string, out: Run }> {
  const dir = tmp(t, 'graceful-app-')
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, ...(allowScripts ? { allowScripts: { 'graceful-reboot': true, [spec]: true } } : {}) }))
  // The dependency's range needs the registry's package list, which npm's cache lacks offline: the
  // exact tarball it resolves to is given along.
  const out = must(await run(t, 'npm', ['install', '--offline', '--no-audit', '--no-fund', await fastifyPluginUrl(t), spec], dir), `npm install ${spec}`)
  return { dir, out }
}

const LOAD_CJS = `
  const g = require('graceful-reboot')
  process.stdout.write(JSON.stringify({ fastify: typeof g.fastifyGraceful, express: typeof g.expressGraceful, isDefault: g.default === g.fastifyGraceful, file: require.resolve('graceful-reboot') }))
`
const LOAD_ESM = `
  import graceful, { fastifyGraceful, expressGraceful } from 'graceful-reboot'
  process.stdout.write(JSON.stringify({ fastify: typeof fastifyGraceful, express: typeof expressGraceful, isDefault: graceful === fastifyGraceful, file: import.meta.resolve('graceful-reboot') }))
`

/** require and import of the installed package, from the scratch project. */
async function checkLoads (t: ExecutionContext, dir: string): Promise<void> {
  // A folder install is a link: Node resolves the package to the folder itself.
  const installed = realpathSync(path.join(dir, 'node_modules', 'graceful-reboot'))
  const cjs = must(await run(t, process.execPath, ['-e', LOAD_CJS], dir), 'require')
  t.deepEqual(JSON.parse(cjs.stdout), { fastify: 'function', express: 'function', isDefault: true, file: path.join(installed, 'dist', 'index.js') })
  const esm = must(await run(t, process.execPath, ['--input-type=module', '-e', LOAD_ESM], dir), 'import')
  t.deepEqual(JSON.parse(esm.stdout), { fastify: 'function', express: 'function', isDefault: true, file: `file://${path.join(installed, 'dist', 'index.mjs')}` })
  // The Prometheus helper is a subpath of its own (prom-client, its optional peer, is the app's to install).
  const prom = must(await run(t, process.execPath, ['-e', "console.log(require.resolve('graceful-reboot/prometheus'))"], dir), 'resolve graceful-reboot/prometheus')
  t.is(prom.stdout.trim(), path.join(installed, 'dist', 'prometheus.js'))
  const cli = await run(t, path.join(dir, 'node_modules', '.bin', 'graceful-reboot'), ['--help'], dir)
  t.is(cli.code, 0, cli.stderr)
  t.regex(cli.stdout, /^Usage: graceful-reboot <reboot\|shutdown\|status> --pid-file FILE/)
  t.regex(readFileSync(path.join(installed, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) 2026 graceful-reboot contributors\n/)
  t.false(existsSync(path.join(installed, 'dist', 'test')), 'no test build')
}

/** Every `//# sourceMappingURL=` of the installed .js files names a file that is there. */
function mapsResolve (t: ExecutionContext, dir: string): void {
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)])
  for (const file of walk(path.join(dir, 'node_modules', 'graceful-reboot')).filter((f) => f.endsWith('.js'))) {
    const ref = /^\/\/# sourceMappingURL=(.+)$/m.exec(readFileSync(file, 'utf8'))?.[1]
    if (ref !== undefined) t.true(existsSync(path.resolve(path.dirname(file), ref)), `${file} names ${ref}`)
  }
}

// The clone packed once; both pack tests wait on it. Its folders go when the file's tests are done.
const shared: Array<() => void> = []
test.after.always(() => { for (const fn of shared.reverse()) fn() })
type Packed = { clone: string, tarball: string, files: string[], note?: string }
let packed: Promise<Packed> | undefined
function pack (): Promise<Packed> {
  const t: Scope = { teardown: (fn) => { shared.push(fn) } }
  packed ??= (async () => {
    const { clone, note } = await cloneHead(t)
    // What `npm ci` would install there (the build's compiler and types), linked from this checkout.
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(clone, 'node_modules'))
    const out = path.join(path.dirname(clone), 'out')
    mkdirSync(out)
    const r = must(await run(t, 'npm', ['pack', '--json', '--offline', '--pack-destination', out], clone), 'npm pack')
    const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as Array<{ filename: string, files: Array<{ path: string }> }>
    return { clone, tarball: path.join(out, info!.filename), files: info!.files.map((f) => f.path), ...(note === undefined ? {} : { note }) }
  })()
  return packed
}

test.serial('npm pack on a fresh clone builds the package (prepare) and packs dist/, LICENSE and README.md; no source map without its source', async (t) => {
  t.timeout(180_000)
  const { clone, files, note } = await pack()
  if (note !== undefined) t.log(note)
  for (const f of ['package.json', 'LICENSE', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/index.mjs', 'dist/index.d.mts',
    'dist/bin/graceful-reboot.js', 'dist/lib/options.js', 'dist/lib/adapters/fastify.js', 'dist/lib/adapters/fastify.d.ts',
    'dist/prometheus.js', 'dist/prometheus.d.ts', 'dist/lib/adapters/prometheus.js', 'dist/lib/adapters/nest.js']) {
    t.true(files.includes(f), `${f} is packed`)
  }
  t.deepEqual(files.filter((f) => !/^dist\/(index\.|prometheus\.|lib\/|bin\/)/.test(f) && !['package.json', 'LICENSE', 'README.md'].includes(f)), [], 'nothing else')
  for (const map of files.filter((f) => f.endsWith('.map'))) {
    const { sources } = JSON.parse(readFileSync(path.join(clone, map), 'utf8')) as { sources: string[] }
    for (const s of sources) t.true(files.includes(path.posix.join(path.posix.dirname(map), s)), `${map}: its source ${s} is packed`)
  }
})

test.serial('the packed tarball installed into a scratch project: require and import load fastifyGraceful and expressGraceful; the command runs', async (t) => {
  t.timeout(180_000)
  const { tarball } = await pack()
  // No allowScripts: a tarball has nothing to build, and npm has no install script to list.
  const { dir, out } = await install(t, tarball, false)
  t.notRegex(out.stdout + out.stderr, /install-scripts|prepare/, 'npm lists no install script')
  const manifest = JSON.parse(readFileSync(path.join(dir, 'node_modules', 'graceful-reboot', 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  t.is(manifest.scripts.prepare, undefined, 'the packed package.json has no prepare script')
  await checkLoads(t, dir)
  mapsResolve(t, dir)
})

test.serial('npm pack leaves the clone as it was: package.json byte for byte, nothing left over', async (t) => {
  t.timeout(180_000)
  const { clone } = await pack()
  const status = must(await run(t, 'git', ['status', '--porcelain', '--ignored'], clone), 'git status').stdout
  // dist/ (the build) and the node_modules link are the only things there that git does not track.
  t.deepEqual(status.split('\n').filter((l) => l !== '' && !/^!! (dist|node_modules)\/?$/.test(l)), [])
})

const gitTest = SKIP_GIT_INSTALL ? test.skip : test.serial
gitTest(`npm install git+file://<fresh clone> builds the package (prepare) and it loads through require and import${SKIP_GIT_INSTALL ? ' (GRACEFUL_REBOOT_SKIP_GIT_INSTALL=1)' : ''}`, async (t) => {
  t.timeout(300_000)
  const { clone, sha, note } = await cloneHead(t)
  if (note !== undefined) t.log(note)
  const { dir } = await install(t, `git+file://${clone}#${sha}`)
  await checkLoads(t, dir)
  mapsResolve(t, dir)
  t.true(existsSync(path.join(dir, 'node_modules', 'graceful-reboot', 'dist', 'lib')), 'the build is installed')
})

gitTest(`npm install <folder of a fresh clone> installs the build's tools there and builds it; a second install leaves the built clone as it is${SKIP_GIT_INSTALL ? ' (GRACEFUL_REBOOT_SKIP_GIT_INSTALL=1)' : ''}`, async (t) => {
  t.timeout(300_000)
  const { clone, note } = await cloneHead(t)
  if (note !== undefined) t.log(note)
  t.false(existsSync(path.join(clone, 'node_modules')), 'the clone never had npm ci')
  const first = (await install(t, clone)).dir
  t.is(realpathSync(path.join(first, 'node_modules', 'graceful-reboot')), realpathSync(clone), 'npm links the folder')
  await checkLoads(t, first)
  const stamp = statSync(path.join(clone, 'dist', '.package-build')).mtimeMs
  const second = (await install(t, clone)).dir
  await checkLoads(t, second)
  t.is(statSync(path.join(clone, 'dist', '.package-build')).mtimeMs, stamp, 'not rebuilt')
  t.is(must(await run(t, 'git', ['status', '--porcelain'], clone), 'git status').stdout, '', 'the clone\'s tracked files are as they were')
})
