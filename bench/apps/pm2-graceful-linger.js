'use strict'
// Runs in a PM2 cluster worker: pm2-graceful.js plus a finalizer that keeps the worker alive 300 ms
// after its last HTTP connection closed. Used by bench/pm2-probe.js --linger only (not a contender):
// it tests whether the hung connections come from a worker exiting while the cluster primary
// still hands it connections.
const graceful = require('../../dist/index.js')
const { buildApp, listenOptions } = require('./common')

async function main () {
  const app = await buildApp({
    register: (a) => a.register(graceful.default, { timeout: 8_000, signals: { SIGUSR2: false } })
  })
  app.onShutdown(() => new Promise((resolve) => setTimeout(resolve, 300)), { name: 'linger', after: ['http'] })
  await app.listen(listenOptions())
  // A PM2 cluster worker always has its IPC channel; without one this threw a TypeError here before.
  if (process.send === undefined) throw new Error('no IPC channel: run this app through PM2')
  process.send('ready')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
