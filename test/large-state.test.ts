// Runs in the test process: a large state (a Map of 200,000 records in many slices, and a 4 MB
// Buffer) handed over through the real API by two reboots in a row of a real app under keep-alive
// load (test/fixtures/large-state-app.ts): every record and every byte arrives intact, in order,
// each time, over the state pipe (no IPC message carries it), and no request fails.
import test from 'ava'
import { runLoad } from '../tools/load'
import { isAlive, startFixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }
interface Verified extends FixtureEvent { pid: number, size: number, bad: number, faults: string[], blobBytes: number, blobBad: number, ipcState: number }

test('a large state arrives whole, every value intact, over two reboots under load; none of it travels in the IPC channel', async (t) => {
  t.timeout(180_000)
  const f = startFixture(t, 'large-state-app')
  const first = await f.waitFor('listening', 60_000) as Listening
  const load = runLoad({ url: `http://127.0.0.1:${first.port}/`, connections: 4, mode: 'keep-alive', durationMs: 120_000 })
  let current = first
  const pids = [first.pid]
  for (let i = 0; i < 2; i++) {
    process.kill(current.pid, 'SIGUSR2')
    const next = await f.waitFor((e) => e.event === 'listening' && e.parent === current.pid, 90_000) as Listening
    f.track(next.pid)
    const v = await f.waitFor((e) => e.event === 'verified' && e.pid === next.pid) as Verified
    t.deepEqual({ size: v.size, bad: v.bad, faults: v.faults, blobBytes: v.blobBytes, blobBad: v.blobBad }, { size: 200_000, bad: 0, faults: [], blobBytes: 4 * 1024 * 1024, blobBad: 0 }, `reboot ${i + 1}`)
    t.is(v.ipcState, 0, `reboot ${i + 1}: the state travels on its own pipe, not in the IPC channel`)
    // The next reboot starts from a successor whose old process is gone.
    await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === current.pid, 60_000)
    pids.push(next.pid)
    current = next
  }
  load.stop()
  const r = await load.result
  t.is(r.failed, 0, JSON.stringify(r.causes))
  t.true(r.answered > 0)
  process.kill(current.pid, 'SIGTERM')
  await f.closed
  for (const pid of pids) t.false(isAlive(pid))
})
