// Runs in the test process: a reboot that cannot work is refused at once. With no listening socket
// the package tracks (reboot() before listen(), an Express app on a server of its own that was not
// attached, SIGUSR2 before listen()), the reboot is refused with ERR_GRACEFUL_REBOOT_NO_LISTENER naming
// the fix, and no successor is spawned (the app's start-up runs once: a successor would run it again).
import test from 'ava'
import { startFixture, type Fixture } from './helpers/fixture'

/** Kills every successor the fixture spawned (it should spawn none). */
function trackSuccessors (f: Fixture): void {
  for (const e of f.lines) if (e.event === 'handoff' && e.step === 'spawned') f.track(e.other as number)
}

for (const mode of ['before-listen', 'own-server'] as const) {
  const what = mode === 'before-listen' ? 'Fastify: reboot() after ready(), before listen()' : 'Express on http.createServer(app), not attached: reboot()'
  test(`${what} is refused at once with ERR_GRACEFUL_REBOOT_NO_LISTENER; no successor runs the start-up again`, async (t) => {
    const f = startFixture(t, 'no-listener-app', { env: { MODE: mode } })
    const r = await f.waitFor((e) => e.event === 'refused' || e.event === 'rebooted')
    trackSuccessors(f)
    t.is(r.event, 'refused', JSON.stringify(r))
    t.is(r.code, 'ERR_GRACEFUL_REBOOT_NO_LISTENER')
    t.regex(r.message as string, /no server this package tracks is listening.*reboot once the app listens.*graceful\.attach\(server\) before its listen\(\)/)
    t.false(f.lines.some((e) => e.event === 'handoff' && e.step === 'spawned'), 'nothing was spawned')
    t.deepEqual(f.lines.filter((e) => e.event === 'startup').map((e) => e.pid), [f.pid], 'the start-up ran once, in this process')
    t.like(f.lines.find((e) => e.event === 'handoff'), { step: 'refused', code: 'ERR_GRACEFUL_REBOOT_NO_LISTENER' })
  })
}

test('SIGUSR2 before listen() is refused (logged), nothing spawned', async (t) => {
  const f = startFixture(t, 'no-listener-app', { env: { MODE: 'signal' } })
  const e = await f.waitFor((l) => l.event === 'handoff' && (l.step === 'refused' || l.step === 'spawned'))
  trackSuccessors(f)
  t.like(e, { step: 'refused', code: 'ERR_GRACEFUL_REBOOT_NO_LISTENER' })
  await f.exited
  t.regex(f.stderr(), /ERR_GRACEFUL_REBOOT_NO_LISTENER|no server this package tracks is listening/)
  t.deepEqual(f.lines.filter((l) => l.event === 'startup').map((l) => l.pid), [f.pid])
})
