'use strict'
// Runs in one process: contender "close-with-grace", set up as its README's "Example with Fastify":
// closeWithGrace(async ({ signal, err }) => { ...; await app.close() }) with its default options
// (delay 10 s: a close still running then ends the process with code 1). No restart: shutdown only.
const closeWithGrace = require('close-with-grace')
const { performance } = require('node:perf_hooks')
const { buildApp, emit, listenOptions, portOf } = require('./common')

async function main () {
  const app = await buildApp()
  closeWithGrace(async function ({ signal, err }) {
    emit('state', { state: 'draining' })
    const since = performance.now()
    if (err) {
      app.log.error({ err }, 'server closing with error')
    } else {
      app.log.info(`${signal} received, server closing`)
    }
    await app.close()
    emit('exit', { ms: Math.round(performance.now() - since) })
  })
  await app.listen(listenOptions())
  emit('listening', { port: portOf(app), parent: null })
}

main().catch((err) => {
  emit('boot-error', { message: err.message })
  process.exit(1)
})
