// Runs in the test process: the app's own health checks (`health.checks`) on real Fastify and Express
// servers: a failing or slow check turns its probe 503 with the check's name and error; a check runs
// once at a time however many probes arrive; a probe runs only the checks for it; a closing app answers
// 'draining' without running them; bad check options are refused naming the value.
import http from 'node:http'
import test from 'ava'
import { resolveOptions } from '../lib/options'
import { builders, fastifyBuilder, getJson } from './helpers/servers'

interface Answer { status: number, body: { status: string, checks?: Record<string, { ok: boolean, ms: number, error?: string }> } }

function probe (port: number, p: string, agent: http.Agent | false = false): Promise<Answer> {
  return getJson<Answer['body']>(port, p, agent)
}

for (const b of builders) {
  test(`${b.name}: a passing check answers 200 with its outcome; a failing one 503 'failing' with its name and error; only the probes it is for run it`, async (t) => {
    let dbUp = true
    let startupRuns = 0
    const s = await b.start(t, {
      health: {
        checks: [
          { name: 'db', check: async () => { if (!dbUp) throw new Error('connect ECONNREFUSED 127.0.0.1:5432') } },
          { name: 'warm-cache', for: 'startup', check: () => { startupRuns++ } }
        ]
      }
    })
    const ok = await probe(s.port, '/health/ready')
    t.is(ok.status, 200)
    t.is(ok.body.status, 'ok')
    t.like(ok.body.checks, { db: { ok: true } })
    t.deepEqual(Object.keys(ok.body.checks ?? {}), ['db'], 'the startup check is not run by /ready')
    t.is(startupRuns, 0)
    dbUp = false
    const failing = await probe(s.port, '/health/ready')
    t.is(failing.status, 503)
    t.deepEqual(failing.body.status, 'failing')
    t.like(failing.body.checks, { db: { ok: false, error: 'connect ECONNREFUSED 127.0.0.1:5432' } })
    const live = await probe(s.port, '/health/live')
    t.deepEqual(live, { status: 200, body: { status: 'ok' } }, 'no check is for live')
    const startup = await probe(s.port, '/health/startup')
    t.is(startup.status, 200)
    t.like(startup.body.checks, { 'warm-cache': { ok: true } })
    t.is(startupRuns, 1)
  })

  test(`${b.name}: a slow check answers 503 'timed out after N ms'; probes that arrive while it runs share that one run; the next probe after it settles runs it again`, async (t) => {
    let runs = 0
    let release = (): void => {}
    const s = await b.start(t, {
      health: {
        checks: [{
          name: 'upstream',
          timeout: 100,
          check: () => {
            runs++
            return new Promise<void>((resolve) => { release = resolve })
          }
        }]
      }
    })
    const answers = await Promise.all(Array.from({ length: 5 }, () => probe(s.port, '/health/ready')))
    for (const a of answers) {
      t.is(a.status, 503)
      t.like(a.body, { status: 'failing', checks: { upstream: { ok: false, error: 'timed out after 100 ms' } } })
    }
    t.is(runs, 1, 'five probes, one run')
    // Still hanging: a new probe waits for the same run instead of starting another.
    t.is((await probe(s.port, '/health/ready')).status, 503)
    t.is(runs, 1)
    release()
    await new Promise((resolve) => { setImmediate(resolve) })
    const again = await probe(s.port, '/health/ready')
    t.is(runs, 2)
    t.is(again.status, 503, 'the new run hangs too')
    release()
  })
}

test('fastify: an app that is closing answers /ready 503 draining without running its checks', async (t) => {
  let runs = 0
  const s = await fastifyBuilder.start(t, { timeout: 5000, health: { checks: [{ name: 'db', check: () => { runs++ } }] } })
  t.is((await probe(s.port, '/health/ready')).status, 200)
  t.is(runs, 1)
  // The probe goes out on a connection opened before the close; the close answers it, then drains.
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  await new Promise<void>((resolve, reject) => { http.get({ host: '127.0.0.1', port: s.port, path: '/health/live', agent }, (res) => { res.resume().on('end', resolve) }).on('error', reject) })
  const closing = s.close()
  const during = await probe(s.port, '/health/ready', agent)
  await closing
  t.deepEqual(during, { status: 503, body: { status: 'draining' } })
  t.is(runs, 1, 'not run while draining')
})

test('health.checks options are checked, naming the bad value', (t) => {
  const bad: Array<[unknown, RegExp]> = [
    [{ name: 'db' }, /"health\.checks\[0\]"\.check \("db"\) must be a function, got undefined/],
    [{ name: '', check: () => {} }, /"health\.checks\[0\]"\.name must be a non-empty string, got ""/],
    [{ name: 'db', check: () => {}, for: 'ready!' }, /"health\.checks\[0\]"\.for \("db"\) must be 'ready', 'live', 'startup' or an array of them, got "ready!"/],
    [{ name: 'db', check: () => {}, timeout: 0 }, /"health\.checks\[0\]"\.timeout \("db"\) must be a whole number of ms from 1 to 2147483647, got 0/],
    [{ name: 'db', check: () => {}, every: 5 }, /unknown option "health\.checks\[0\]"\.every \(known: name, check, for, timeout\)/]
  ]
  for (const [check, message] of bad) t.throws(() => resolveOptions({ health: { checks: [check] } }), { code: 'ERR_GRACEFUL_INVALID_OPTION', message })
  t.throws(() => resolveOptions({ health: { checks: [{ name: 'db', check: () => {} }, { name: 'db', check: () => {} }] } }), { message: /"health\.checks\[1\]"\.name "db" is given twice/ })
  t.throws(() => resolveOptions({ health: { checks: 'db' } }), { message: /"health\.checks" must be an array of \{ name, check, for\?, timeout\? \}, got "db"/ })
  t.like(resolveOptions({ health: { checks: [{ name: 'db', check: () => {} }] } }).health?.checks[0], { name: 'db', for: ['ready'], timeout: 1000 })
})
