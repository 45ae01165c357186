// Runs in a measuring process (`node dist/tools/workers-bench.js [--restarts N]`, after `npm run
// build`): two workers on this machine, side by side in one run: one process with the plugin, a
// node:cluster primary (round-robin) rolling its workers by fork-then-disconnect, PM2 cluster mode
// (its recommended reload: wait_ready and app.close() on SIGINT), PM2 with the plugin's drain, and
// `graceful-reboot run --workers 2` four ways (one shared accept queue or one per worker, with and
// without rebalancing; `--only key,key` picks contenders). For each it prints the throughput with 32
// keep-alive connections and with a new connection per request (and its ratio to one process), how
// the requests spread over the workers (the busiest one's share: 32 keep-alive connections opened at
// once, new connections, and a mix with 5 % slow requests, whose p99 it prints too), the failed
// requests and reconnects of pooled clients (8 back to back, 20 with think time) over N rolling
// restarts, and the supervisor's (primary's, daemon's) memory. Loopback only; every process it
// starts is killed by pid at the end.
import * as os from 'node:os'
import { runLoad } from './load'
import { blast, freePort, rssMb, supervisorContender, workerPids, workersContenders } from './workers-contenders'

// The bench's contenders, then the supervisor's other ways to accept (the default is workersContenders' 'supervisor').
const CONTENDERS = [
  ...workersContenders(2).filter((c) => c.key !== 'supervisor'),
  supervisorContender('supervisor-shared', 'graceful-reboot run --workers 2 --accept-queues shared (one queue, --rebalance off)', ['--accept-queues', 'shared', '--rebalance', 'off']),
  supervisorContender('supervisor-limit', 'graceful-reboot run --workers 2 --accept-queues shared (one queue, rebalancing)', ['--accept-queues', 'shared']),
  supervisorContender('supervisor-reuseport', 'graceful-reboot run --workers 2 --accept-queues per-worker (--rebalance off)', ['--accept-queues', 'per-worker', '--rebalance', 'off']),
  ...workersContenders(2).filter((c) => c.key === 'supervisor').map((c) => ({ ...c, label: 'graceful-reboot run --workers 2 (default: per-worker queues where Node has reusePort, rebalancing)' }))
]

async function main (): Promise<void> {
  const at = process.argv.indexOf('--restarts')
  const restarts = at === -1 ? 3 : Number(process.argv[at + 1])
  const only = process.argv.indexOf('--only')
  const keys = only === -1 ? undefined : (process.argv[only + 1] ?? '').split(',')
  const rows: string[] = []
  const shares: string[] = []
  let base = 0
  let baseNew = 0
  for (const c of CONTENDERS.filter((x) => keys === undefined || x.key === 'one' || keys.includes(x.key))) {
    const port = await freePort()
    const run = await c.start(port)
    try {
      const ka = await blast(port, 32, 5_000, true)
      const fresh = await blast(port, 8, 3_000, false)
      const mix = await blast(port, 32, 4_000, true, 0.05)
      shares.push(`| ${c.label} | ${(ka.busiest * 100).toFixed(1)} % (${ka.connections} connections) | ${(ka.placed * 100).toFixed(1)} % | ${(fresh.busiest * 100).toFixed(1)} % | ${(mix.busiest * 100).toFixed(1)} % | ${mix.p99.toFixed(1)} | ${mix.fastP99.toFixed(1)} | ${ka.failed + fresh.failed + mix.failed} |`)
      if (c.key === 'one') { base = ka.rps; baseNew = fresh.rps }
      const url = `http://127.0.0.1:${port}/`
      const backToBack = runLoad({ url, connections: 8, mode: 'keep-alive', durationMs: 300_000 })
      const think = runLoad({ url, connections: 20, mode: 'keep-alive', durationMs: 300_000, thinkMs: [50, 150], agentPerLoop: true })
      for (let i = 0; i < restarts; i++) await run.restart()
      backToBack.stop()
      think.stop()
      const [a, b] = await Promise.all([backToBack.result, think.result])
      const mem = rssMb(run.managerPid())
      rows.push(`| ${c.label} | ${Math.round(ka.rps)} (${(ka.rps / base).toFixed(2)}x) | ${(ka.busiest * 100).toFixed(0)} % | ${Math.round(fresh.rps)} (${(fresh.rps / baseNew).toFixed(2)}x) | ${(fresh.busiest * 100).toFixed(0)} % | ${a.failed} / ${a.sent} | ${a.connectionsOpened - 8} | ${b.failed} / ${b.sent} | ${b.connectionsOpened - 20} | ${mem === undefined ? '-' : mem.toFixed(0)} |`)
    } finally {
      await run.stop()
    }
    console.error(`workers-bench: ${c.key} done`)
  }
  console.log(`${restarts} rolling restarts each; node ${process.version}, ${os.availableParallelism()} cores`)
  console.log('| contender | keep-alive req/s (vs one) | busiest worker | new-connection req/s (vs one) | busiest worker | back-to-back failed / sent | reconnects | think-time failed / sent | reconnects | manager RSS MB |')
  console.log('|---|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) console.log(r)
  console.log('')
  console.log('Spread: 32 keep-alive connections opened at once (5 s), a new connection per request (8 loops, 3 s), and 32 keep-alive connections with 5 % slow requests (20 ms of CPU each, 4 s)')
  console.log('| contender | busiest worker, keep-alive burst (connections opened) | busiest, its connections at the end | busiest, new connections | busiest, slow/fast mix | p99 ms, mix (all) | p99 ms, mix (fast requests) | failed |')
  console.log('|---|---|---|---|---|---|---|---|')
  for (const r of shares) console.log(r)
}

main().catch((err: unknown) => { console.error(err); process.exitCode = 1 }).finally(() => {
  for (const pid of workerPids) { try { process.kill(pid, 'SIGKILL') } catch {} }
})
