'use strict'
// Runs in a PM2 cluster worker: contender "PM2 reload + graceful-reboot's drain": the plugin handles
// the SIGINT that PM2 sends on reload (the default SIGINT and SIGTERM -> shutdown, `signals: { SIGUSR2: false }`:
// no reboot inside a cluster worker, PM2 does the restart); `process.send('ready')` with `wait_ready`.
const graceful = require('../../dist/index.js')
const { buildApp, listenOptions } = require('./common')

async function main () {
  const app = await buildApp({
    register: (a) => a.register(graceful.default, { timeout: 8_000, signals: { SIGUSR2: false } })
  })
  await app.listen(listenOptions())
  // A PM2 cluster worker always has its IPC channel; without one this threw a TypeError here before.
  if (process.send === undefined) throw new Error('no IPC channel: run this app through PM2')
  process.send('ready')
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
