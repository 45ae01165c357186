// Runs in the test process: `lifecycle().stats()` and the 'shutdown' event in a real Fastify process
// (test/fixtures/systemd-app.ts) through a reboot that succeeds, moving idle keep-alive connections,
// and one that rolls back; the Prometheus export of example/metrics.ts (prom-client) scraped there.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { startFixture } from './helpers/fixture'
import { getJson } from './helpers/servers'
import type { LifecycleStats } from '../index'


function start (t: ExecutionContext): { f: ReturnType<typeof startFixture>, modeFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-stats-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const modeFile = path.join(dir, 'mode')
  return { f: startFixture(t, 'systemd-app', { env: { PID_FILE: path.join(dir, 'app.pid'), MODE_FILE: modeFile } }), modeFile }
}

test('stats() after a reboot: the old process counts one reboot started and succeeded, one drain, the idle connections it handed over, and the last reboot\'s timings; the successor starts from zero', async (t) => {
  const { f } = start(t)
  const first = await f.waitFor((e) => e.event === 'listening' && e.parent === null)
  const port = first.port as number
  const before = (await getJson(port, '/stats')).body as unknown as LifecycleStats
  t.deepEqual(before, {
    reboots: { requested: 0, refused: 0, started: 0, succeeded: 0, failed: 0, lost: 0 },
    drains: 0,
    connections: { transferred: 0, kept: 0, forced: 0 },
    lastReboot: null
  })
  // Three keep-alive connections, idle in the agent's pool when the reboot starts.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 3 })
  t.teardown(() => { agent.destroy() })
  await Promise.all([1, 2, 3].map((id) => getJson(port, `/?id=${id}`, agent)))
  process.kill(f.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid)
  f.track(next.pid as number)
  const line = await f.waitFor((e) => e.event === 'stats' && e.pid === first.pid)
  const s = line.stats as LifecycleStats
  t.like(s, {
    reboots: { requested: 1, refused: 0, started: 1, succeeded: 1, failed: 0, lost: 0 },
    drains: 1,
    connections: { transferred: 3, kept: 0, forced: 0 },
    lastReboot: { trigger: 'SIGUSR2', step: 'serving', successor: next.pid }
  })
  const last = s.lastReboot
  t.true(last !== null && typeof last.readyMs === 'number' && typeof last.servingMs === 'number' && last.servingMs >= last.readyMs, JSON.stringify(last))
  // The moved connections are served by the successor, which counts nothing yet.
  const after = await getJson(port, '/stats', agent)
  t.like(after.body, { reboots: { requested: 0, started: 0 }, drains: 0, lastReboot: null })
  t.is((await getJson(port, '/?id=4', agent)).body.pid, next.pid)
})

test('stats() after a rollback: one reboot started and failed, with the error; no drain', async (t) => {
  const { f, modeFile } = start(t)
  const first = await f.waitFor((e) => e.event === 'listening' && e.parent === null)
  fs.writeFileSync(modeFile, 'crash')
  process.kill(f.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid)
  f.track(next.pid as number)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'failed' && e.pid === first.pid)
  const s = (await getJson(first.port as number, '/stats')).body as unknown as LifecycleStats
  t.like(s, {
    reboots: { requested: 1, started: 1, succeeded: 0, failed: 1 },
    drains: 0,
    lastReboot: { trigger: 'SIGUSR2', step: 'failed', successor: next.pid, error: { code: 'ERR_GRACEFUL_SUCCESSOR_PROBATION' } }
  })
  // The same, as Prometheus scrapes it from example/metrics.ts.
  const metrics = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: first.port as number, path: '/metrics', agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).on('end', () => { resolve(text) })
    }).on('error', reject)
  })
  for (const line of [
    'graceful_reboot_reboots{outcome="started"} 1',
    'graceful_reboot_reboots{outcome="failed"} 1',
    'graceful_reboot_reboots{outcome="succeeded"} 0',
    'graceful_reboot_connections{fate="transferred"} 0',
    'graceful_reboot_handoff_steps_total{step="spawned"} 1',
    'graceful_reboot_handoff_steps_total{step="failed"} 1'
  ]) t.true(metrics.split('\n').includes(line), `${line} in:\n${metrics}`)
})
