'use strict'
// Runs in one process: contender "@godaddy/terminus", set up as its README's usage with the default
// options: createTerminus(server) on Fastify's server, SIGTERM, `timeout` 1 s (then the remaining
// connections are destroyed), no `onSignal` cleanup to run; when the server has closed it re-sends
// the signal to the process. Its Kubernetes advice (a `beforeShutdown` delay while the endpoints
// update, `useExit0`) is for a load balancer this benchmark does not have. No restart: shutdown only.
const { createTerminus } = require('@godaddy/terminus')
const { buildApp, emit, listenOptions, portOf } = require('./common')

async function main () {
  const app = await buildApp()
  createTerminus(app.server, {
    signal: 'SIGTERM',
    timeout: 1000,
    beforeShutdown: async () => { emit('state', { state: 'draining' }) }
  })
  await app.listen(listenOptions())
  emit('listening', { port: portOf(app), parent: null })
}

main().catch((err) => {
  emit('boot-error', { message: err.message })
  process.exit(1)
})
