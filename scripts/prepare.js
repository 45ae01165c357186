'use strict'
// Runs at npm's `prepare` (an install of this package from git or from a folder, `npm install` or
// `npm pack` in a checkout): builds the package into dist/ (`npm run build:package`) unless its last
// build is newer than every source, so installing a built clone leaves it as it is. A folder install
// (`npm install ../graceful-reboot`) links a clone that may never have had `npm ci`: the build's tools
// (TypeScript and Node's types, devDependencies) are installed there first, from the lock file.
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
/** Written by build:package once the build is complete: its mtime is the build's. */
const STAMP = path.join(ROOT, 'dist', '.package-build')
const SOURCES = ['index.ts', 'prometheus.ts', 'index.mjs', 'index.d.mts', 'tsconfig.json', 'tsconfig.build.json', 'lib', 'bin']

/** The newest mtime (ms) of a file, or of the files under a folder. */
function newest (file) {
  const st = fs.statSync(file, { throwIfNoEntry: false })
  if (st === undefined) return 0
  if (!st.isDirectory()) return st.mtimeMs
  return fs.readdirSync(file).reduce((max, name) => Math.max(max, newest(path.join(file, name))), st.mtimeMs)
}

/** npm's own settings for the install that runs this script (`--omit=dev`, `--global`, ...) must not reach the commands run here; where its cache and configuration are, and whether it is offline, does. */
function env () {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_registry', 'npm_config_offline', 'npm_config_prefer_offline'])
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || keep.has(k.toLowerCase())))
}

function npm (args) {
  const npmCli = process.env.npm_execpath
  const [command, argv] = npmCli !== undefined && npmCli.endsWith('.js') ? [process.execPath, [npmCli, ...args]] : ['npm', args]
  const r = spawnSync(command, argv, { cwd: ROOT, env: env(), stdio: 'inherit' })
  if (r.status !== 0) {
    process.stderr.write(`graceful-reboot: \`npm ${args.join(' ')}\` in ${ROOT} failed (${r.error?.message ?? `exit ${r.status}`})\n`)
    process.exit(r.status ?? 1)
  }
}

const stamp = fs.statSync(STAMP, { throwIfNoEntry: false })
if (stamp !== undefined && stamp.mtimeMs >= Math.max(...SOURCES.map((s) => newest(path.join(ROOT, s))))) {
  process.stdout.write(`graceful-reboot: dist/ is up to date (built ${stamp.mtime.toISOString()}): not rebuilt\n`)
  process.exit(0)
}
const tools = ['typescript/package.json', '@types/node/package.json']
if (!tools.every((t) => fs.existsSync(path.join(ROOT, 'node_modules', t)))) {
  process.stdout.write(`graceful-reboot: installing the build's tools (devDependencies, from package-lock.json) in ${ROOT}\n`)
  npm(['ci', '--ignore-scripts', '--include=dev', '--no-audit', '--no-fund'])
}
npm(['run', 'build:package'])
