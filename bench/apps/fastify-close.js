'use strict'
// Runs in both processes: contender "fastify.close()": SIGTERM -> `await app.close()` and exit (the
// naive restart and the shutdown rows); SIGUSR2 -> fd hand-off to a successor, then `app.close()`.
// WS=1 adds @fastify/websocket with the `preClose` of its README ("Custom preClose hook": close every
// client with 1001 "going away", then close the WebSocket server); H2=1 makes it an h2c server
// (`http2: true`); FORCE_CLOSE=1 sets `forceCloseConnections: true` (Fastify's docs: with it close()
// also closes the HTTP/2 sessions; before Node 24 it does not otherwise).
const { buildApp } = require('./common')
const { listen, onSignals } = require('./handoff')

/** @import { WebsocketPluginOptions } from '@fastify/websocket' */

/** @type {WebsocketPluginOptions} */
const websocketOptions = {
  preClose: function (done) {
    const server = this.websocketServer
    for (const socket of server.clients) {
      socket.close(1001, 'WS server is going offline in custom manner, sending a code + message')
    }
    server.close(done)
  }
}

async function main () {
  const app = await buildApp({ websocket: process.env.WS === '1', websocketOptions, http2: process.env.H2 === '1', forceCloseConnections: process.env.FORCE_CLOSE === '1' })
  onSignals(() => app.close())(app)
  await listen(app)
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ event: 'boot-error', pid: process.pid, message: err.message }) + '\n')
  process.exit(1)
})
