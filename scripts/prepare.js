'use strict'
// Runs at npm's `prepare` (an install of this package from git or from a folder, `npm install` or
// `npm pack` in a checkout): builds the package into dist/ (`npm run build:package`) unless its last
// build is newer than every source, so installing a built clone leaves it as it is. A folder install
// (`npm install ../graceful-reboot`) links a clone that may never have had `npm ci`: the build's tools
// (TypeScript and Node's types, devDependencies) are installed there first, from the lock file.
const fs = require('node:fs')
const path = require('node:path')
const { npm } = require('./npm')

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

const stamp = fs.statSync(STAMP, { throwIfNoEntry: false })
if (stamp !== undefined && stamp.mtimeMs >= Math.max(...SOURCES.map((s) => newest(path.join(ROOT, s))))) {
  process.stdout.write(`graceful-reboot: dist/ is up to date (built ${stamp.mtime.toISOString()}): not rebuilt\n`)
  process.exit(0)
}
const tools = ['typescript/package.json', '@types/node/package.json']
if (!tools.every((t) => fs.existsSync(path.join(ROOT, 'node_modules', t)))) {
  process.stdout.write(`graceful-reboot: installing the build's tools (devDependencies, from package-lock.json) in ${ROOT}\n`)
  npm(ROOT, ['ci', '--ignore-scripts', '--include=dev', '--no-audit', '--no-fund'])
}
npm(ROOT, ['run', 'build:package'])
