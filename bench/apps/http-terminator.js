'use strict'
// Runs in both processes: contender "http-terminator" (default options: 1 s graceful timeout):
// SIGTERM -> `terminator.terminate()` and exit; SIGUSR2 -> fd hand-off to a successor, then terminate().
// WS=1 adds @fastify/websocket.
const { createHttpTerminator } = require('http-terminator')
const { buildApp } = require('./common')
const { listen, onSignals } = require('./handoff')

async function main () {
  const app = await buildApp({ websocket: process.env.WS === '1' })
  const terminator = createHttpTerminator({ server: app.server })
  onSignals(() => terminator.terminate())(app)
  await listen(app)
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ event: 'boot-error', pid: process.pid, message: err.message }) + '\n')
  process.exit(1)
})
