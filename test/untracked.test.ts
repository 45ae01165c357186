// Runs in the test process: expressGraceful() on an app whose server it does not track (a server made
// with http.createServer(app) and never attached, as Nest's own server is without nestGraceful()): a
// reboot is refused, naming the fix (alone: nothing listens; beside an app that listens: that app's
// socket would leave this one's behind), and the first request it serves logs a warning naming it too.
import http from 'node:http'
import test from 'ava'
import express from 'express'
import { expressGraceful, lifecycle, type RebootError } from '../index'
import { getJson } from './helpers/servers'

test.serial('an Express app whose server is not tracked: reboot() is refused, alone and beside an app that listens, and the first request warns, each naming attach() and nestGraceful()', async (t) => {
  const warnings: string[] = []
  const logger = { info () {}, warn (_o: unknown, msg?: string) { warnings.push(String(msg)) }, error () {} }
  const app = expressGraceful(express(), { exit: false, signals: false, launcher: 'ignore', logger })
  app.get('/', (_req, res) => { res.json({ ok: true }) })
  const server = http.createServer(app)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  t.teardown(() => { server.close() })
  const alone = await t.throwsAsync(app.reboot()) as RebootError
  t.is(alone.code, 'ERR_GRACEFUL_REBOOT_NO_LISTENER')
  t.regex(alone.message, /graceful\.attach\(server\) before its listen\(\).*nestGraceful\(app, options\) before app\.listen\(\)/)
  // Another app of the process listens: its socket would move, this app's server would be left behind.
  const other = expressGraceful(express(), { exit: false, signals: false, launcher: 'ignore', logger })
  const otherServer = other.listen(0, '127.0.0.1')
  await new Promise((resolve) => otherServer.once('listening', resolve))
  t.teardown(() => { otherServer.close() })
  const err = await t.throwsAsync(app.reboot()) as RebootError
  t.is(err.code, 'ERR_GRACEFUL_REBOOT_UNSUPPORTED')
  t.regex(err.message, /expressGraceful\(\) tracks no server.*app\.graceful\.attach\(server\) before server\.listen\(\).*nestGraceful\(app, options\)/)
  const port = (server.address() as { port: number }).port
  t.is((await getJson(port, '/')).status, 200)
  t.is((await getJson(port, '/')).status, 200)
  const about = warnings.filter((w) => /serves a request, but expressGraceful\(\) tracks no server/.test(w))
  t.is(about.length, 1, warnings.join('\n'))
  t.regex(about[0] ?? '', /nestGraceful/)
  t.is(lifecycle().canReboot()?.code, 'ERR_GRACEFUL_REBOOT_UNSUPPORTED')
})

test.serial('an Express app whose server is tracked (app.listen()) serves without that warning', async (t) => {
  const warnings: string[] = []
  const logger = { info () {}, warn (_o: unknown, msg?: string) { warnings.push(String(msg)) }, error () {} }
  const app = expressGraceful(express(), { exit: false, signals: false, launcher: 'ignore', logger })
  app.get('/', (_req, res) => { res.json({ ok: true }) })
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  t.teardown(() => { server.close() })
  t.is((await getJson((server.address() as { port: number }).port, '/')).status, 200)
  t.deepEqual(warnings.filter((w) => /tracks no server/.test(w)), [])
})
