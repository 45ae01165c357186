// Runs in the test process: the built package's declaration files as a consumer's TypeScript sees
// them, in fresh projects outside this repository: an Express-only project without fastify
// installed type-checks with skipLibCheck off and without esModuleInterop.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

const ROOT = path.join(__dirname, '..', '..')
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')

/** A project in the system temp folder with the packed files of graceful-reboot and the given packages linked in. */
function project (t: { teardown: (fn: () => void) => void }, linked: string[], files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'graceful-consumer-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  const pkg = path.join(dir, 'node_modules', 'graceful-reboot')
  mkdirSync(pkg, { recursive: true })
  cpSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'))
  cpSync(path.join(ROOT, 'dist', 'index.d.ts'), path.join(pkg, 'dist', 'index.d.ts'))
  cpSync(path.join(ROOT, 'dist', 'index.js'), path.join(pkg, 'dist', 'index.js'))
  cpSync(path.join(ROOT, 'dist', 'lib'), path.join(pkg, 'dist', 'lib'), { recursive: true })
  for (const name of linked) {
    const target = path.join(dir, 'node_modules', name)
    mkdirSync(path.dirname(target), { recursive: true })
    symlinkSync(path.join(ROOT, 'node_modules', name), target)
  }
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text)
  return dir
}

function tsc (dir: string): { code: number | null, out: string } {
  const r = spawnSync(process.execPath, [TSC, '-p', dir], { encoding: 'utf8' })
  return { code: r.status, out: r.stdout + r.stderr }
}

const TSCONFIG = JSON.stringify({
  compilerOptions: { strict: true, noEmit: true, skipLibCheck: false, module: 'commonjs', moduleResolution: 'node10', target: 'ES2022', types: ['node'] },
  include: ['*.ts']
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

test('an Express-only TypeScript project type-checks without fastify installed (skipLibCheck off, no esModuleInterop)', (t) => {
  const dir = project(t, ['@types', 'express'], { 'tsconfig.json': TSCONFIG, 'app.ts': EXPRESS_APP })
  const r = tsc(dir)
  t.is(r.code, 0, r.out)
})

test('control: in that project fastify is really missing (an import of it fails)', (t) => {
  const dir = project(t, ['@types', 'express'], { 'tsconfig.json': TSCONFIG, 'app.ts': "import type { FastifyInstance } from 'fastify'\nexport type X = FastifyInstance\n" })
  const r = tsc(dir)
  t.not(r.code, 0)
  t.regex(r.out, /TS2307: Cannot find module 'fastify'/)
})
