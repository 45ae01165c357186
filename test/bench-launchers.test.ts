// Runs in the test process: the launchers of the benchmark's crash scenario (bench/lib/launchers.js),
// driven for real: the graceful-reboot app of bench/apps under a socket-activating parent refuses no
// connection when it is SIGKILLed (the parent holds the listening socket), while the same app under a
// plain restart loop refuses some (the measurement sees refusals when there are any).
import test from 'ava'
import net from 'node:net'
import path from 'node:path'
import { once } from 'node:events'
import { runLoad, type LoadResult } from '../tools/load'

interface Ctx { procs: unknown, log: (line: string) => void, verbose: boolean }
interface Launcher { key: string, keepsSocket: boolean, start: (ctx: Ctx & { port: number }) => Promise<void>, servingPid: () => Promise<number>, stop: () => Promise<void> }

const BENCH_LIB = path.join(__dirname, '..', '..', 'bench', 'lib')
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { launchers } = require(path.join(BENCH_LIB, 'launchers.js')) as { launchers: (o: { pm2: () => never }) => Launcher[] }
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Procs } = require(path.join(BENCH_LIB, 'procs.js')) as { Procs: new () => { killAll: () => number[] } }

async function freePort (): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const { port } = s.address() as net.AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

/** Kills the serving process once under 4 new-connection loops; the load's counts from the kill on. */
async function crashOnce (t: import('ava').ExecutionContext, key: string): Promise<{ refused: number, failed: number, killed: number, servedBy: number[] }> {
  const procs = new Procs()
  t.teardown(() => { procs.killAll() })
  const launcher = launchers({ pm2: () => { throw new Error('PM2 is not used here') } }).find((l) => l.key === key) as Launcher
  const port = await freePort()
  await launcher.start({ procs, log: () => {}, verbose: false, port })
  t.teardown(async () => { await launcher.stop() })
  const waiters = new Set<{ until: (r: LoadResult) => boolean, resolve: () => void }>()
  // Each wait fails with its name after 30 s rather than at AVA's timeout.
  const progress = (until: (r: LoadResult) => boolean, what: string): Promise<void> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${key}: no ${what} within 30 s: ${JSON.stringify(run.snapshot().causes)}`)) }, 30_000)
    waiters.add({ until, resolve: () => { clearTimeout(timer); resolve() } })
  })
  const run = runLoad({ url: `http://127.0.0.1:${port}/`, connections: 4, mode: 'new-connection', durationMs: 60_000, requestTimeoutMs: 5000 }, {
    onProgress: (r) => { for (const w of [...waiters]) if (w.until(r)) { waiters.delete(w); w.resolve() } }
  })
  t.teardown(run.stop)
  await progress((r) => r.answered >= 50, '50 answers')
  const killed = await launcher.servingPid()
  const before = run.snapshot()
  process.kill(killed, 'SIGKILL')
  // A new process answers, then 50 more answers.
  await progress((r) => r.pids.some((p) => !before.pids.includes(p)), 'answer from a new process')
  const back = run.snapshot().answered
  await progress((r) => r.answered >= back + 50, '50 answers after the crash')
  run.stop()
  const r = await run.result
  return { refused: (r.causes.ECONNREFUSED ?? 0) - (before.causes.ECONNREFUSED ?? 0), failed: r.failed - before.failed, killed, servedBy: r.pids.filter((p) => !before.pids.includes(p)) }
}

test.serial('bench crash launchers: socket activation refuses no connection when the app is SIGKILLed; a plain restart loop refuses some', async (t) => {
  const activated = await crashOnce(t, 'socket-activation')
  t.log(`socket activation: ${activated.refused} refused, ${activated.failed} failed; served again by ${activated.servedBy.join(', ')}`)
  t.is(activated.refused, 0, 'the parent holds the listening socket: connections wait for the next app')
  t.true(activated.failed <= 4, `at most the requests in flight on the killed process are lost (${activated.failed})`)
  t.true(activated.servedBy.length > 0 && !activated.servedBy.includes(activated.killed), 'a new process serves')
  const plain = await crashOnce(t, 'plain-restart')
  t.log(`plain restart: ${plain.refused} refused, ${plain.failed} failed`)
  t.true(plain.refused > 0, 'nothing listens between the crash and the restart: connections are refused')
})
