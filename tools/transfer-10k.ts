// Runs in a measuring process (`node dist/tools/transfer-10k.js [N] [R]`, after `npm run build`): opens N
// idle HTTP/1.1 keep-alive connections (default 10,000) to the Fastify app of
// test/fixtures/transfer-app.ts, reboots it R times in a row (default 1; each reboot from the
// successor of the one before, once its old process exited), and reports for each reboot how long the
// old process took to hand them all to the successor, how many it handed over, and whether any was closed
// (tools/idle-moves.ts does the work). Loopback only; every process it starts is killed by pid at the end.
// The open-file limit (`ulimit -n`) must allow N sockets in this process and in the app.
import { idleMoves } from './idle-moves'

async function main (): Promise<void> {
  const n = Number(process.argv[2] ?? 10_000)
  const reboots = Number(process.argv[3] ?? 1)
  const r = await idleMoves(n, reboots, { drainTimeoutMs: 10_000, log: (line) => { console.log(line) } })
  const closed = r.reboots.reduce((s, m) => s + m.closed, 0)
  console.log(`connections closed by the server: ${closed}; ${r.answeredBySuccessor} of ${r.sampled} sampled connections answered by the successor on the same connection`)
}

main().then(() => { process.exit(0) }, (err: unknown) => { console.error(err); process.exit(1) })
