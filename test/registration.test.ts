// Runs in the test process: registering graceful-reboot twice on one app is refused at once with a
// coded error (Fastify in a child process, so a regression cannot take the test worker down).
import { core } from '../lib/lifecycle'
import test from 'ava'
import { spawn } from 'node:child_process'
import path from 'node:path'
import readline from 'node:readline'
import express from 'express'
import { AlreadyRegisteredError, expressGraceful } from '../index'

interface TwiceReport {
  first: string
  second: { code?: string, name?: string, message?: string } | 'resolved'
  apps: number
  sigterm: number
  ready: string
}

// Each step is reported as soon as it settles; the test waits on the report line (an event), never
// on a clock. Without the check, the second register throws Fastify's "decorator already added"
// as an uncaught exception (the child dies before reporting) and avvio would only reject 10 s later.
const CHILD = `
const Fastify = require('fastify')
const pkg = require(process.env.PKG)
const { core } = require(require('path').join(require('path').dirname(process.env.PKG), 'lib', 'lifecycle'))
;(async () => {
  const app = Fastify()
  const before = { apps: core().apps.length, sigterm: process.listenerCount('SIGTERM') }
  await app.register(pkg.default, { exit: false })
  const report = { first: typeof app.shutdown }
  try {
    await app.register(pkg.default, { exit: false })
    report.second = 'resolved'
  } catch (e) {
    report.second = { code: e.code, name: e.name, message: e.message }
  }
  report.apps = core().apps.length - before.apps
  report.sigterm = process.listenerCount('SIGTERM') - before.sigterm
  report.ready = await app.ready().then(() => 'ready', (e) => 'rejected: ' + e.message)
  process.stdout.write(JSON.stringify(report) + '\\n')
  await app.close()
})()
`

test('fastify: a second app.register(graceful) rejects at once with ERR_GRACEFUL_ALREADY_REGISTERED; the first registration stays', async (t) => {
  const child = spawn(process.execPath, ['-e', CHILD], {
    cwd: path.join(__dirname, '..', '..'),
    env: { ...process.env, PKG: path.join(__dirname, '..', 'index.js') },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { try { if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL') } catch {} })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const report = await new Promise<TwiceReport | undefined>((resolve) => {
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      try { resolve(JSON.parse(line) as TwiceReport) } catch {}
    })
    child.once('close', () => { resolve(undefined) })
  })
  if (report === undefined) {
    t.fail(`the process died before reporting; stderr:\n${stderr}`)
    return
  }
  t.deepEqual(report.second, {
    code: 'ERR_GRACEFUL_ALREADY_REGISTERED',
    name: 'AlreadyRegisteredError',
    message: 'graceful-reboot is already registered on this Fastify instance (or a parent of it); register it once, on the root instance'
  })
  t.is(report.first, 'function', 'the first registration decorated the app')
  t.is(report.apps, 1, 'one app in the lifecycle')
  t.is(report.sigterm, 1, 'one SIGTERM listener')
  t.regex(report.ready, /^rejected: graceful-reboot is already registered/, 'like any failed plugin, it fails the boot too')
  t.is(await new Promise((resolve) => { if (child.exitCode !== null) resolve(child.exitCode); else child.once('exit', resolve) }), 0, stderr)
})

test.serial('express: a second expressGraceful(app) throws ERR_GRACEFUL_ALREADY_REGISTERED and registers nothing', async (t) => {
  const app = express()
  const apps = core().apps.length
  const once = expressGraceful(app, { exit: false, signals: false, logger: { info () {}, warn () {}, error () {} } })
  t.teardown(async () => { await once.graceful.close(0) })
  const err = t.throws(() => expressGraceful(app, { exit: false, signals: false }), { instanceOf: AlreadyRegisteredError })
  t.is(err?.code, 'ERR_GRACEFUL_ALREADY_REGISTERED')
  t.regex(err?.message ?? '', /already called on this app/)
  t.is(core().apps.length, apps + 1)
  t.is((app as unknown as { graceful: unknown }).graceful, once.graceful, 'the first handle stays')
})
