'use strict'
// Runs before `npm test` (pretest): installs what the tests need beyond the root's devDependencies,
// from their own lock files, when it is missing or older than its lock file: NestJS 11 in test/nest11/
// (test/nestjs.test.ts runs the app on NestJS 12, from the root, and 11).
const fs = require('node:fs')
const path = require('node:path')
const { npm } = require('./npm')

for (const dir of [path.join(__dirname, '..', 'test', 'nest11')]) {
  const installed = fs.statSync(path.join(dir, 'node_modules', '.package-lock.json'), { throwIfNoEntry: false })
  if (installed !== undefined && installed.mtimeMs >= fs.statSync(path.join(dir, 'package-lock.json')).mtimeMs) continue
  process.stdout.write(`graceful-reboot: installing ${path.relative(process.cwd(), dir) || dir} (npm ci)\n`)
  npm(dir, ['ci', '--no-audit', '--no-fund', '--prefer-offline'])
}
