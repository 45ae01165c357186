// Runs in the test process: a Fastify app and an Express app in one process
// (test/fixtures/multi-app.ts) share one coordinator: one SIGTERM drains both.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import http from 'node:http'
import { startFixture, type Fixture } from './helpers/fixture'
import { fetchOutcome, type Outcome } from './fixtures/signal-client'

async function start (t: ExecutionContext, env: Record<string, string> = {}): Promise<{ f: Fixture, ports: Record<'fastify' | 'express', number> }> {
  const f = startFixture(t, 'multi-app', { env })
  const [a, b] = await Promise.all([
    f.waitFor((e) => e.event === 'listening' && e.app === 'fastify'),
    f.waitFor((e) => e.event === 'listening' && e.app === 'express')
  ])
  return { f, ports: { fastify: a.port as number, express: b.port as number } }
}

/**
 * Starts a slow request on each app, on keep-alive connections (so a `Connection: close` reply is
 * the server's doing), and waits until both handlers are running.
 */
async function bothInFlight (t: ExecutionContext, f: Fixture, ports: Record<'fastify' | 'express', number>, ms: number): Promise<{ fastify: Promise<Outcome>, express: Promise<Outcome> }> {
  const agent = new http.Agent({ keepAlive: true })
  t.teardown(() => { agent.destroy() })
  const outcomes = {
    fastify: fetchOutcome(ports.fastify, `/slow?ms=${ms}`, agent),
    express: fetchOutcome(ports.express, `/slow?ms=${ms}`, agent)
  }
  await Promise.all([
    f.waitFor((e) => e.event === 'request' && e.app === 'fastify'),
    f.waitFor((e) => e.event === 'request' && e.app === 'express')
  ])
  return outcomes
}

function body (t: ExecutionContext, o: Outcome): unknown {
  if (!o.ok) {
    t.fail(`request failed: ${o.error.code ?? ''} ${o.error.message}`)
    return undefined
  }
  t.is(o.reply.status, 200)
  t.is(o.reply.headers.connection, 'close', 'told to close: the server is draining')
  return JSON.parse(o.reply.body)
}

test('one SIGTERM drains a Fastify and an Express app in one process: both slow requests 200, both finalizers, exit 0', async (t) => {
  const { f, ports } = await start(t)
  t.not(ports.fastify, ports.express)
  const slow = await bothInFlight(t, f, ports, 800)
  f.child.kill('SIGTERM')
  await f.waitFor((e) => e.event === 'state' && e.state === 'draining')
  const [fo, eo] = await Promise.all([slow.fastify, slow.express])
  t.deepEqual(body(t, fo), { app: 'fastify' })
  t.deepEqual(body(t, eo), { app: 'express' })
  t.deepEqual(await f.exited, { code: 0, signal: null })
  const finalizers = f.lines.filter((e) => e.event === 'finalizer')
  t.deepEqual(finalizers.map((e) => e.app).sort(), ['express', 'fastify'], 'each app ran its own finalizer once')
  for (const e of finalizers) t.like(e, { reason: 'shutdown', trigger: 'SIGTERM' })
  t.deepEqual(f.lines.filter((e) => e.event === 'state').map((e) => e.state), ['draining', 'stopped'], 'one shutdown, not one per app')
  t.like(await f.waitFor('exit'), { code: 0 })
})

test('both listeners stop accepting during the drain (new connections refused), while both in-flight requests still complete', async (t) => {
  const { f, ports } = await start(t)
  const slow = await bothInFlight(t, f, ports, 1_500)
  f.child.kill('SIGTERM')
  // Printed by an unordered finalizer of each app, which starts once that app's listener is closed.
  const marks = await Promise.all([
    f.waitFor((e) => e.event === 'listener-closed' && e.app === 'fastify'),
    f.waitFor((e) => e.event === 'listener-closed' && e.app === 'express')
  ])
  t.deepEqual(marks.map((m) => m.listening), [false, false])
  const [lateF, lateE] = await Promise.all([fetchOutcome(ports.fastify, '/slow?ms=0'), fetchOutcome(ports.express, '/slow?ms=0')])
  t.like(lateF, { ok: false })
  t.like(lateE, { ok: false })
  if (!lateF.ok) t.is(lateF.error.code, 'ECONNREFUSED')
  if (!lateE.ok) t.is(lateE.error.code, 'ECONNREFUSED')
  const [fo, eo] = await Promise.all([slow.fastify, slow.express])
  t.deepEqual(body(t, fo), { app: 'fastify' })
  t.deepEqual(body(t, eo), { app: 'express' })
  t.deepEqual(await f.exited, { code: 0, signal: null })
})

test('the deadline applies to both apps: a request past it on either app is cut, exit 75', async (t) => {
  const { f, ports } = await start(t, { TIMEOUT: '400' })
  const slow = await bothInFlight(t, f, ports, 30_000)
  f.child.kill('SIGTERM')
  const [fo, eo] = await Promise.all([slow.fastify, slow.express])
  t.false(fo.ok)
  t.false(eo.ok)
  t.deepEqual(await f.exited, { code: 75, signal: null })
  t.deepEqual(f.lines.filter((e) => e.event === 'finalizer').map((e) => e.app).sort(), ['express', 'fastify'],
    'finalizers after "http" still run after a forced drain')
})
