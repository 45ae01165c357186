'use strict'
// Runs in both processes: contender "fastify.close()": SIGTERM -> `await app.close()` and exit (the
// naive restart and the shutdown rows); SIGUSR2 -> fd hand-off to a successor, then `app.close()`.
// WS=1 adds @fastify/websocket with its default close (no close code).
const { buildApp } = require('./common')
const { listen, onSignals } = require('./handoff')

async function main () {
  const app = await buildApp({ websocket: process.env.WS === '1' })
  onSignals(() => app.close())(app)
  await listen(app)
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ event: 'boot-error', pid: process.pid, message: err.message }) + '\n')
  process.exit(1)
})
