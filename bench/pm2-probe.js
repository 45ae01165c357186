'use strict'
// Reproduces the requests that hang in PM2's daemon during `pm2 reload` (cluster mode), and shows
// where they are: connections the daemon (the cluster primary) accepted and never handed to a live
// worker, still ESTABLISHED in the daemon with the request unread in their receive queue.
//   node bench/pm2-probe.js [--app pm2-graceful|pm2-recommended|pm2-graceful-linger] [--reloads 8]
// (`npm --prefix bench ci` and the root build first.) Loopback only; PM2_HOME in a temp dir; pm2 kill at the end.
const { execFileSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { parseArgs } = require('node:util')
const { runLoad } = require('../dist/tools/load.js')
const { Procs, sleep } = require('./lib/procs')
const { Pm2 } = require('./lib/pm2')
const { freePort } = require('./lib/net')

async function main () {
  const { values } = parseArgs({ options: { app: { type: 'string', default: 'pm2-graceful' }, reloads: { type: 'string', default: '8' } } })
  const procs = new Procs()
  const pm2 = new Pm2(procs)
  const port = await freePort()
  let report = ''
  try {
    await pm2.start({ name: 'probe', script: path.join(__dirname, 'apps', `${values.app}.js`), exec_mode: 'cluster', instances: 1, wait_ready: true, listen_timeout: 20_000, kill_timeout: 10_000, env: { PORT: String(port) } })
    // A long client timeout: a request that is still unanswered seconds after the last reload is stuck.
    const run = runLoad({ url: `http://127.0.0.1:${port}/`, connections: 20, mode: 'new-connection', durationMs: 120_000, maxRequests: 1_000_000, requestTimeoutMs: 60_000 })
    await sleep(800)
    for (let i = 0; i < Number(values.reloads); i++) {
      await pm2.reload('probe')
      await sleep(500)
    }
    run.stop()
    await sleep(3000)
    const s = run.snapshot()
    const pending = s.sent - s.answered - s.failed
    const daemon = fs.readFileSync(path.join(pm2.home, 'pm2.pid'), 'utf8').trim()
    report += (`${values.app}: ${values.reloads} reloads, ${s.sent} requests, ${s.failed} failed ${JSON.stringify(s.causes)}, ${pending} still unanswered 3 s after the load stopped\n`)
    const ss = execFileSync('ss', ['-tnp', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' })
    const held = ss.split('\n').filter((l) => l.includes(`pid=${daemon},`))
    report += (`connections held by the PM2 daemon (pid ${daemon}), Recv-Q = request bytes never read:\n${held.join('\n') || '(none)'}\n`)
    run.stop()
  } finally {
    await pm2.close()
    procs.killAll()
  }
  // Printed only once PM2 is stopped: a closed stdout (`| head`) must not skip the clean-up.
  process.stdout.write(report)
}

for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`)
  process.exitCode = 1
})
