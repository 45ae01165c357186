// Runs in the test process: the health routes. Unit level: every probe against every lifecycle state.
// End to end, against Fastify and Express fixture processes: /health/ready turns 503 the moment a drain
// starts (readinessDelay included) while /health/live answers 200 until exit; the manual switch;
// /health/startup 503 until the app declares itself ready.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import http from 'node:http'
import { lifecycle, type LifecycleState } from '../index'
import { probe, type HealthSource } from '../lib/routes/health'
import { request } from './fixtures/admin-client'
import { startFixture, type Fixture } from './helpers/fixture'

test('probe: live is always 200; startup follows the announcement; ready needs running, started, switch on, app not closing', (t) => {
  const s = (state: LifecycleState, started = true, readyForTraffic = true): HealthSource => ({ state, started, readyForTraffic })
  const states: LifecycleState[] = ['running', 'rebooting', 'draining', 'stopped']
  for (const state of states) {
    for (const started of [true, false]) {
      for (const on of [true, false]) {
        t.deepEqual(probe('live', s(state, started, on)), { status: 200, body: { status: 'ok' } })
        t.deepEqual(probe('startup', s(state, started, on)), started ? { status: 200, body: { status: 'ok' } } : { status: 503, body: { status: 'starting' } })
      }
    }
  }
  t.deepEqual(probe('ready', s('running')), { status: 200, body: { status: 'ok' } })
  t.deepEqual(probe('ready', s('rebooting')), { status: 200, body: { status: 'ok' } }, 'still serving until the successor is ready')
  t.deepEqual(probe('ready', s('draining')), { status: 503, body: { status: 'draining' } })
  t.deepEqual(probe('ready', s('stopped')), { status: 503, body: { status: 'stopped' } })
  t.deepEqual(probe('ready', s('running', false)), { status: 503, body: { status: 'starting' } })
  t.deepEqual(probe('ready', s('running', true, false)), { status: 503, body: { status: 'not-ready' } })
  t.deepEqual(probe('ready', s('draining', true, false)), { status: 503, body: { status: 'draining' } }, 'draining wins over the switch')
  t.deepEqual(probe('ready', s('running'), true), { status: 503, body: { status: 'draining' } }, 'this app alone closing')
})

test('lifecycle: the manual switch is process-wide and takes booleans only', (t) => {
  const life = lifecycle()
  t.true(life.readyForTraffic)
  life.setReady(false)
  t.false(life.readyForTraffic)
  life.setReady(true)
  t.true(life.readyForTraffic)
  t.throws(() => { life.setReady('no' as unknown as boolean) }, { code: 'ERR_GRACEFUL_INVALID_OPTION' })
  t.true(life.readyForTraffic)
})

const FRAMEWORKS = ['fastify', 'express'] as const

async function start (t: ExecutionContext, framework: string, env: Record<string, string> = {}): Promise<{ f: Fixture, port: number }> {
  const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: framework, ...env } })
  const ready = await f.waitFor('listening')
  return { f, port: ready.port as number }
}

async function statuses (port: number, prefix = '/health', options: { agent?: http.Agent } = {}): Promise<Record<string, [number, unknown]>> {
  const out: Record<string, [number, unknown]> = {}
  for (const which of ['live', 'startup', 'ready']) {
    const r = await request(port, `${prefix}/${which}`, options)
    out[which] = [r.status, r.body.status]
  }
  return out
}

for (const framework of FRAMEWORKS) {
  test(`${framework}: ready turns 503 when the drain starts, live stays 200 until exit`, async (t) => {
    // After the drain starts, readinessDelay (300 ms) and then a before-http finalizer that waits for
    // the test (HTTP_GATE) keep the listener open: the probes below run in that window whatever the
    // machine's load. A long idle grace keeps two pooled keep-alive connections usable after the
    // listener closed.
    const { f, port } = await start(t, framework, { READINESS_DELAY: '300', HTTP_GATE: '1', IDLE_GRACE: '20000' })
    t.deepEqual(await statuses(port), { live: [200, 'ok'], startup: [200, 'ok'], ready: [200, 'ok'] })
    const r = await request(port, '/health/ready')
    t.is(r.headers['cache-control'], 'no-store')
    t.regex(String(r.headers['content-type']), /^application\/json/)

    const pool = new http.Agent({ keepAlive: true, maxSockets: 2 })
    t.teardown(() => { pool.destroy() })
    const warm = await Promise.all([request(port, '/slow?ms=50', { agent: pool }), request(port, '/slow?ms=50', { agent: pool })])
    t.deepEqual(warm.map((w) => w.headers.connection), ['keep-alive', 'keep-alive'])

    const slow = request(port, '/slow?ms=4000')
    await f.waitFor((e) => e.event === 'slow-started' && e.ms === 4000)
    process.kill(f.pid, 'SIGTERM')
    await f.waitFor((e) => e.event === 'state' && e.state === 'draining')
    // During readinessDelay or the gate: the listener still accepts, ready says 503, live and startup 200.
    t.deepEqual(await statuses(port), { live: [200, 'ok'], startup: [200, 'ok'], ready: [503, 'draining'] })
    await f.waitFor('gate-held')
    t.deepEqual(await statuses(port), { live: [200, 'ok'], startup: [200, 'ok'], ready: [503, 'draining'] })
    t.false(f.lines.some((e) => e.event === 'listeners-closed'), 'the listener stays open until the gate opens')
    t.is((await request(port, '/gate/open')).status, 200)

    // Once the listener is closed: only open connections reach the app, live still answers 200.
    await f.waitFor('listeners-closed')
    const refused = await request(port, '/health/live').then(() => 'answered', (err: NodeJS.ErrnoException) => err.code)
    t.is(refused, 'ECONNREFUSED')
    const live = await request(port, '/health/live', { agent: pool })
    t.deepEqual([live.status, live.body.status, live.headers.connection], [200, 'ok', 'close'])
    const ready = await request(port, '/health/ready', { agent: pool })
    t.deepEqual([ready.status, ready.body.status], [503, 'draining'])

    t.is((await slow).status, 200)
    t.deepEqual(await f.exited, { code: 0, signal: null })
  })

  test(`${framework}: the manual switch takes the instance out of traffic and back`, async (t) => {
    const { port } = await start(t, framework)
    t.deepEqual((await request(port, '/traffic?on=0')).body, { ready: false })
    t.deepEqual(await statuses(port), { live: [200, 'ok'], startup: [200, 'ok'], ready: [503, 'not-ready'] })
    t.is((await request(port, '/')).status, 200, 'still serving whoever still sends traffic')
    t.deepEqual((await request(port, '/traffic?on=1')).body, { ready: true })
    t.deepEqual(await statuses(port), { live: [200, 'ok'], startup: [200, 'ok'], ready: [200, 'ok'] })
  })

  test(`${framework}: startup and ready are 503 until the app declares itself ready (custom prefix)`, async (t) => {
    const { port } = await start(t, framework, { READINESS: 'manual', HEALTH_PREFIX: '/_probe' })
    t.deepEqual(await statuses(port, '/_probe'), { live: [200, 'ok'], startup: [503, 'starting'], ready: [503, 'starting'] })
    t.is((await request(port, '/health/live')).status, 404, 'only under the prefix')
    t.is((await request(port, '/declare-ready')).status, 200)
    t.deepEqual(await statuses(port, '/_probe'), { live: [200, 'ok'], startup: [200, 'ok'], ready: [200, 'ok'] })
  })
}

test('HEAD on a probe answers the status without a body', async (t) => {
  const { port } = await start(t, 'fastify', { READINESS: 'manual' })
  const r = await request(port, '/health/startup', { method: 'HEAD' })
  t.is(r.status, 503)
  t.is(r.text, '')
})
