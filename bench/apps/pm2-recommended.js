'use strict'
// Runs in a PM2 cluster worker: contender "PM2 reload, recommended setup" (PM2's graceful-start and
// graceful-shutdown docs): `process.send('ready')` once listening (with `wait_ready: true`), and on
// SIGINT (what PM2 sends on reload/stop) `await app.close()` then exit.
const { buildApp, listenOptions } = require('./common')

async function main () {
  const app = await buildApp()
  process.on('SIGINT', () => {
    app.close().then(() => process.exit(0), () => process.exit(1))
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
