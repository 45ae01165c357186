'use strict'
// Runs in the benchmark process: a free TCP port on 127.0.0.1 (bound, read, released).
const net = require('node:net')

/** @returns {Promise<number>} */
function freePort () {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (s.address())
      s.close(() => resolve(port))
    })
  })
}

module.exports = { freePort }
