// Runs in the test process: `lifecycle().stats()` and the 'shutdown' event in a real Fastify process
// (test/fixtures/systemd-app.ts) through a reboot that succeeds, moving idle keep-alive connections
// (the successor carries the line's counts on), and one that rolls back; the Prometheus helper
// (graceful-reboot/prometheus) scraped there, and scraped in a loop across 3 reboots.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { startFixture } from './helpers/fixture'
import { scrape, scrapeLoop } from './helpers/prometheus'
import { getJson } from './helpers/servers'
import type { LifecycleStats } from '../index'


function start (t: ExecutionContext): { f: ReturnType<typeof startFixture>, modeFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-stats-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const modeFile = path.join(dir, 'mode')
  return { f: startFixture(t, 'systemd-app', { env: { PID_FILE: path.join(dir, 'app.pid'), MODE_FILE: modeFile } }), modeFile }
}

test('stats() after a reboot: the old process counts one reboot started and succeeded, one drain, the idle connections it handed over, and the last reboot\'s timings; the successor carries the line\'s counts on, one generation later', async (t) => {
  const { f } = start(t)
  const first = await f.waitFor((e) => e.event === 'listening' && e.parent === null)
  const port = first.port as number
  const before = (await getJson(port, '/stats')).body as unknown as LifecycleStats
  t.deepEqual(before, {
    generation: 0,
    reporting: true,
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
    generation: 0,
    reporting: false,
    reboots: { requested: 1, refused: 0, started: 1, succeeded: 1, failed: 0, lost: 0 },
    drains: 1,
    connections: { transferred: 3, kept: 0, forced: 0 },
    lastReboot: { trigger: 'SIGUSR2', step: 'serving', successor: next.pid }
  })
  const last = s.lastReboot
  t.true(last !== null && typeof last.readyMs === 'number' && typeof last.servingMs === 'number' && last.servingMs >= last.readyMs, JSON.stringify(last))
  // The moved connections are served by the successor, which reports the line: the old process's
  // final counts (its drain included) arrive once that drain is over.
  let after = (await getJson(port, '/stats', agent)).body as unknown as LifecycleStats
  for (let i = 0; i < 200 && after.drains < 1; i++) after = (await getJson(port, '/stats', agent)).body as unknown as LifecycleStats
  t.deepEqual(after, {
    generation: 1,
    reporting: true,
    reboots: { requested: 1, refused: 0, started: 1, succeeded: 1, failed: 0, lost: 0 },
    drains: 1,
    connections: { transferred: 3, kept: 0, forced: 0 },
    lastReboot: null
  })
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
  // The same, as Prometheus scrapes it from graceful-reboot/prometheus.
  const metrics = await new Promise<string>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: first.port as number, path: '/metrics', agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).on('end', () => { resolve(text) })
    }).on('error', reject)
  })
  for (const line of [
    'graceful_reboot_reboots_total{outcome="started"} 1',
    'graceful_reboot_reboots_total{outcome="failed"} 1',
    'graceful_reboot_reboots_total{outcome="succeeded"} 0',
    'graceful_reboot_connections_total{fate="transferred"} 0',
    'graceful_reboot_drains_total 0',
    'graceful_reboot_generation 0'
  ]) t.true(metrics.split('\n').includes(line), `${line} in:\n${metrics}`)
})

test('a Prometheus scrape loop across 3 reboots never sees a counter go back; the successor of a successor counts the whole line', async (t) => {
  const { f } = start(t)
  const first = await f.waitFor((e) => e.event === 'listening' && e.parent === null)
  const port = first.port as number
  const scrapes = scrapeLoop(port)
  let pid = first.pid as number
  for (let i = 0; i < 3; i++) {
    process.kill(pid, 'SIGUSR2')
    const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid)
    f.track(next.pid as number)
    await f.waitFor((e) => e.event === 'stats' && e.pid === pid)
    pid = next.pid as number
  }
  // Until the last old process's final counts arrived.
  for (let i = 0; i < 200; i++) {
    if (((await scrape(port)).get('graceful_reboot_drains_total') ?? 0) >= 3) break
  }
  scrapes.stop()
  const s = await scrapes.done
  t.log(`${s.watch.scrapes} scrapes, ${s.watch.empty} answered by a process that does not report its line`)
  t.deepEqual(s.back, [])
  t.deepEqual(s.failed, [])
  const last = await scrape(port)
  t.is(last.get('graceful_reboot_reboots_total{outcome="succeeded"}'), 3)
  t.is(last.get('graceful_reboot_drains_total'), 3)
  t.like((await getJson(port, '/stats')).body, { generation: 3, reporting: true })
})
