'use strict'
// Runs in the benchmark process: raw keep-alive connections that each send one request, read its
// answer and then stay open and idle (what a pooled client leaves behind), with the moment each closed.
const net = require('node:net')
const { performance } = require('node:perf_hooks')

/**
 * @typedef {object} IdleConn
 * @property {import('node:net').Socket} socket
 * @property {number | undefined} closedAt performance.now() when it closed
 * @property {string | undefined} error the socket error's code (or message), if any
 */

/**
 * Opens `n` connections to 127.0.0.1:port, `batch` at a time; each sends `GET path` with
 * keep-alive and waits for the complete answer. Resolves once all are answered and idle.
 * @param {number} port
 * @param {number} n
 * @param {{ batch?: number, path?: string, timeoutMs?: number }} [options]
 */
async function openIdle (port, n, { batch = 250, path = '/', timeoutMs = 30_000 } = {}) {
  /** @type {IdleConn[]} */
  const conns = []
  const one = () => new Promise((resolve, reject) => {
    /** @type {IdleConn} */
    const c = { socket: net.connect({ port, host: '127.0.0.1' }), closedAt: undefined, error: undefined }
    const socket = c.socket
    socket.setNoDelay(true)
    let buf = ''
    let answered = false
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`connection ${conns.length}: no answer in ${timeoutMs} ms`)) }, timeoutMs)
    socket.on('error', (/** @type {NodeJS.ErrnoException} */ err) => { c.error = err.code ?? err.message })
    socket.on('close', () => {
      c.closedAt = performance.now()
      if (!answered) { clearTimeout(timer); reject(new Error(`connection closed before its answer (${c.error ?? 'no error'})`)) }
    })
    socket.setEncoding('latin1')
    socket.on('data', (d) => {
      if (answered) return
      buf += d
      const head = buf.indexOf('\r\n\r\n')
      if (head < 0) return
      const len = Number((/\r\ncontent-length:\s*(\d+)/i.exec(buf.slice(0, head)) ?? [])[1] ?? 0)
      if (buf.length - head - 4 < len) return
      answered = true
      clearTimeout(timer)
      resolve(c)
    })
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: keep-alive\r\n\r\n`)
    conns.push(c)
  })
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, n - i) }, one))
  }
  return {
    conns,
    /** Connections not closed by `t` (performance.now() time; default now). */
    openAt (t = performance.now()) { return conns.filter((c) => c.closedAt === undefined || c.closedAt > t).length },
    destroyAll () { for (const c of conns) c.socket.destroy() }
  }
}

module.exports = { openIdle }
