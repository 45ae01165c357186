// Runs in the test process: what a new user sees on stderr with the default logging
// (test/fixtures/log-app.ts, real processes): a crash is never silent, even with Fastify's logger
// off, and during a reboot every line names its pid and its role (old/new).
import test from 'ava'
import type { ExecutionContext } from 'ava'
import net from 'node:net'
import { once } from 'node:events'
import Fastify from 'fastify'
import graceful from '../index'
import { startFixture, type Fixture } from './helpers/fixture'

const STACK_LINE = /\n {4}at .+\(.+:\d+:\d+\)\n/

test('Fastify() (logger off): a throw in a timer prints the error and its stack on stderr, exit 1', async (t) => {
  const f = startFixture(t, 'log-app', { env: { APP: 'fastify', CRASH: 'timer' } })
  await f.waitFor('listening')
  t.deepEqual(await f.exited, { code: 1, signal: null })
  await f.closed
  const err = f.stderr()
  t.regex(err, /^\[error\] pid=\d+ graceful-reboot: uncaughtException; shutting down/m)
  t.regex(err, /^Error: boom from a timer\n {4}at /m, 'the stack, as Node prints it')
  t.regex(err, STACK_LINE)
})

test('Fastify() (logger off): a listen() on a port already taken prints the EADDRINUSE error, exit 1', async (t) => {
  const taken = net.createServer()
  taken.listen(0, '127.0.0.1')
  await once(taken, 'listening')
  t.teardown(() => { taken.close() })
  const port = (taken.address() as net.AddressInfo).port
  const f = startFixture(t, 'log-app', { env: { APP: 'fastify', PORT: String(port) } })
  t.deepEqual(await f.exited, { code: 1, signal: null })
  await f.closed
  const err = f.stderr()
  t.regex(err, /^\[error\] pid=\d+ graceful-reboot: unhandledRejection; shutting down/m)
  t.regex(err, new RegExp(`^Error: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\\n {4}at `, 'm'))
  t.regex(err, /code: 'EADDRINUSE'/)
  t.false(f.lines.some((e) => e.event === 'listening'))
})

test('control: with Fastify\'s logger on, the crash goes through pino only (not twice)', async (t) => {
  const f = startFixture(t, 'log-app', { env: { APP: 'fastify-pino', CRASH: 'timer' } })
  await f.waitFor('listening')
  t.deepEqual(await f.exited, { code: 1, signal: null })
  await f.closed
  const crash = pinoLines(f).find((l) => l.msg === 'graceful-reboot: uncaughtException; shutting down')
  t.truthy(crash, f.stderr())
  t.regex((crash?.err as { stack?: string } | undefined)?.stack ?? '', /^Error: boom from a timer\n {4}at /)
  t.notRegex(f.stderr(), /^\[error\]/m)
})

interface Rebooted { f: Fixture, oldPid: number, newPid: number }

/** Starts the app, reboots it with SIGUSR2, then shuts the successor down with SIGTERM; resolves once both are gone. */
async function rebootThenStop (t: ExecutionContext, app: string, env: Record<string, string> = {}): Promise<Rebooted> {
  const f = startFixture(t, 'log-app', { env: { APP: app, ...env } })
  await f.waitFor('listening')
  f.child.kill('SIGUSR2')
  const spawned = await f.waitFor((e) => e.event === 'handoff' && e.step === 'spawned')
  const newPid = spawned.other as number
  f.track(newPid)
  await f.waitFor((e) => e.event === 'listening' && e.pid === newPid)
  t.deepEqual(await f.exited, { code: 0, signal: null })
  process.kill(newPid, 'SIGTERM')
  await f.closed
  return { f, oldPid: f.pid, newPid }
}

test('stderr logger (Express): during a reboot every line names its pid and its role, old or new', async (t) => {
  const { f, oldPid, newPid } = await rebootThenStop(t, 'express')
  const lines = f.stderr().split('\n').filter((l) => l.startsWith('['))
  const parsed = lines.map((l) => /^\[(info|warn|error)\] pid=(\d+)(?: role=(old|new))? (graceful-reboot: .*)$/.exec(l))
  t.deepEqual(lines.filter((_l, i) => parsed[i] === null), [], 'every line starts with its level, pid and role')
  const of = (pid: number): Array<{ role: string | undefined, msg: string }> =>
    parsed.filter((m) => m !== null && Number(m[2]) === pid).map((m) => ({ role: m![3], msg: m![4]! }))
  const old = of(oldPid)
  const spawnedAt = old.findIndex((l) => l.msg.startsWith('graceful-reboot: successor spawned'))
  t.true(spawnedAt > 0, f.stderr())
  t.deepEqual(old.slice(0, spawnedAt).map((l) => l.role), Array(spawnedAt).fill(undefined), 'no role before the reboot')
  t.deepEqual(old.slice(spawnedAt).map((l) => l.role), Array(old.length - spawnedAt).fill('old'), 'old from the spawn to the exit')
  t.true(old.some((l) => l.msg.startsWith('graceful-reboot: drain started')))
  t.true(old.some((l) => l.msg.startsWith('graceful-reboot: exiting')))
  const young = of(newPid)
  t.true(young.some((l) => l.msg.startsWith('graceful-reboot: adopted an inherited socket')), f.stderr())
  t.true(young.some((l) => l.msg.startsWith('graceful-reboot: SIGTERM received')))
  t.deepEqual(young.map((l) => l.role), Array(young.length).fill('new'), 'new in the successor')
  t.is(old.length + young.length, lines.length, 'no line from another pid')
})

test('pino (Fastify logger on): during a reboot the package\'s lines carry pid and role', async (t) => {
  const { f, oldPid, newPid } = await rebootThenStop(t, 'fastify-pino')
  const ours = pinoLines(f).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('graceful-reboot: '))
  const old = ours.filter((l) => l.pid === oldPid)
  const young = ours.filter((l) => l.pid === newPid)
  t.is(old.length + young.length, ours.length, 'every line names one of the two pids')
  const spawnedAt = old.findIndex((l) => (l.msg as string).startsWith('graceful-reboot: successor spawned'))
  t.true(spawnedAt > 0, f.stderr())
  t.deepEqual(old.slice(0, spawnedAt).map((l) => l.role), Array(spawnedAt).fill(undefined))
  t.deepEqual(old.slice(spawnedAt).map((l) => l.role), Array(old.length - spawnedAt).fill('old'))
  t.true(young.length > 0)
  t.deepEqual(young.map((l) => l.role), Array(young.length).fill('new'))
  t.notRegex(f.stderr(), /"pid":[^\n]*"pid":/, 'pid is not written twice on a line')
})

test('pino at "warn": a successful reboot writes no line at all; at "info" every line the two processes write is JSON', async (t) => {
  const quiet = await rebootThenStop(t, 'fastify-pino', { LEVEL: 'warn' })
  t.is(quiet.f.stderr(), '', 'nothing at warn or above')
  const { f } = await rebootThenStop(t, 'fastify-pino')
  const lines = f.stderr().split('\n').filter((l) => l !== '')
  t.true(lines.length > 5)
  t.deepEqual(lines.filter((l) => !l.startsWith('{')), [], 'no plain-text line among the JSON')
  t.is(pinoLines(f).length, lines.length)
  t.deepEqual(pinoLines(f).filter((l) => (l.level as number) >= 40), [], 'no warning or error in a successful reboot')
})

test('a refused reboot (a successor asked to reboot within its probation) is one warning with its reason, no error and no stack', async (t) => {
  const f = startFixture(t, 'log-app', { env: { APP: 'fastify-pino', PROBATION: '8000' } })
  await f.waitFor('listening')
  f.child.kill('SIGUSR2')
  const spawned = await f.waitFor((e) => e.event === 'handoff' && e.step === 'spawned')
  const successor = spawned.other as number
  f.track(successor)
  await f.waitFor((e) => e.event === 'listening' && e.pid === successor)
  // Its old process can still roll it back for 8 s: it refuses.
  process.kill(successor, 'SIGUSR2')
  const refused = await new Promise<Record<string, unknown>>((resolve) => {
    const look = (): void => {
      const l = pinoLines(f).find((l) => l.pid === successor && String(l.msg).includes('refused'))
      if (l !== undefined) { f.child.stderr?.off('data', look); resolve(l) }
    }
    f.child.stderr?.on('data', look)
    look()
  })
  t.is(refused.level, 40, String(refused.msg))
  t.is(refused.err, undefined, 'no error object, no stack')
  t.is(refused.code, 'ERR_GRACEFUL_REBOOT_IN_PROGRESS')
  // The old process's shutdown aborts the reboot and stops the successor.
  process.kill(f.pid, 'SIGTERM')
  await f.closed
  t.deepEqual(pinoLines(f).filter((l) => l.pid === successor && (l.level as number) >= 50), [], 'no error line')
})

/** The JSON (pino) lines on the fixture's stderr. */
function pinoLines (f: Fixture): Array<Record<string, unknown>> {
  return f.stderr().split('\n').flatMap((l) => {
    try {
      const v: unknown = JSON.parse(l)
      return v !== null && typeof v === 'object' ? [v as Record<string, unknown>] : []
    } catch {
      return []
    }
  })
}

test('dropsErrors: Fastify\'s logger when off and pino at "silent" drop error lines; pino on and plain loggers do not', async (t) => {
  const { dropsErrors } = await import('../lib/log')
  const Fastify = (await import('fastify')).default
  t.true(dropsErrors(Fastify().log), 'Fastify() (logger: false, the default)')
  t.true(dropsErrors(Fastify({ logger: { level: 'silent' } }).log))
  t.true(dropsErrors(Fastify({ logger: { level: 'fatal' } }).log))
  t.false(dropsErrors(Fastify({ logger: true }).log))
  t.false(dropsErrors(Fastify({ logger: { level: 'error' } }).log))
  t.false(dropsErrors({ info () {}, warn () {}, error () {} }), 'a logger of the user\'s own')
  t.false(dropsErrors(console as unknown as Parameters<typeof dropsErrors>[0]))
})

test.serial('the logger option is used on Fastify too, in place of fastify.log', async (t) => {
  const lines: string[] = []
  const logger = { info: (_o: object, msg: string) => { lines.push(msg) }, warn: (_o: object, msg: string) => { lines.push(msg) }, error: (_o: object, msg: string) => { lines.push(msg) } }
  const app = Fastify()
  await app.register(graceful, { exit: false, signals: false, logger })
  await app.listen({ port: 0, host: '127.0.0.1' })
  await app.close()
  t.true(lines.some((m) => /graceful-reboot: drain started/.test(m)), lines.join('\n'))
})
