// Runs in the test process: the idle reaper of the HTTP/1.1 drain on a late event loop: a request
// that reached the kernel within the idle grace is answered, not reset, even when the reaper's timer
// runs before the poll phase that would read it.
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import test from 'ava'
import { createGraceful } from '../index'

const silent = { info () {}, warn () {}, error () {} }

test.serial('a request sent within the idle grace is answered even when the event loop stalls past the grace', async (t) => {
  const g = createGraceful({ exit: false, signals: false, logger: silent })
  const server = http.createServer((_req, res) => { res.end('ok') })
  g.attach(server)
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => { agent.destroy(); server.closeAllConnections(); server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
  const get = (): Promise<{ status: number, connection: string | undefined, reused: boolean }> => new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      res.resume()
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, reused: req.reusedSocket }) })
    })
    req.on('error', reject)
  })
  t.like(await get(), { status: 200, connection: 'keep-alive' })
  // The drain starts (the idle socket's 250 ms grace starts), a request goes out on the kept-alive
  // socket at once, and the event loop then stalls for longer than the grace.
  const closing = g.close(10_000)
  const during = get()
  setImmediate(() => {
    const until = performance.now() + 400
    while (performance.now() < until) { /* a late event loop */ }
  })
  t.deepEqual(await during, { status: 200, connection: 'close', reused: true })
  const result = await closing
  t.is(result.forced, 0)
})
