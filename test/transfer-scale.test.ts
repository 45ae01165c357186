// Runs in the test process: connection moves at scale, with real processes (test/fixtures/transfer-app.ts):
// a reboot from a successor moves every idle keep-alive connection as the first reboot did, and a
// transfer slower than the drain's timeout stops in time for the connections still waiting to drain
// here (answered, then closed) instead of being destroyed at the deadline; one its client closes
// while it waits is neither moved nor kept.
import * as net from 'node:net'
import test from 'ava'
import { startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, ports: { fastify: number, express: number }, parent: number | null }
interface AppCounts { name: string, transferred: number, forced: number, idleClosed: number, kept: Record<string, number> }

const REQUEST = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'

/**
 * A raw keep-alive connection that counts its requests: each `send()` is answered or, if the server
 * closes the connection first, failed; a response with `Connection: close` is followed by the close.
 */
class Conn {
  readonly socket: net.Socket
  sent = 0
  answered = 0
  closedByServer = 0
  readonly pids: number[] = []
  private buf = ''
  constructor (port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.setEncoding('latin1')
    this.socket.on('error', () => {})
    this.socket.on('data', (d: string) => { this.read(d) })
    this.socket.on('end', () => { this.socket.end() })
  }

  get failed (): number { return this.socket.destroyed ? this.sent - this.answered : 0 }

  /** Sends a request; resolves once it is answered (or the connection closed). */
  send (): Promise<void> {
    this.sent++
    const want = this.sent
    this.socket.write(REQUEST)
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.answered >= want || this.socket.destroyed) {
          this.socket.removeListener('data', check)
          this.socket.removeListener('close', check)
          resolve()
        }
      }
      this.socket.on('data', check)
      this.socket.on('close', check)
    })
  }

  private read (d: string): void {
    this.buf += d
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n')
      if (end === -1) return
      const head = this.buf.slice(0, end)
      const total = end + 4 + Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0)
      if (this.buf.length < total) return
      this.buf = this.buf.slice(total)
      this.answered++
      this.pids.push(Number(/x-pid: *(\d+)/i.exec(head)?.[1]))
      if (/connection: *close/i.test(head)) this.closedByServer++
    }
  }
}

/** Opens `n` connections to `port`, 200 at a time, each answered once (idle keep-alive connections then). */
async function open (t: { teardown: (fn: () => void) => void }, port: number, n: number): Promise<Conn[]> {
  const conns: Conn[] = []
  t.teardown(() => { for (const c of conns) c.socket.destroy() })
  for (let i = 0; i < n; i += 200) {
    const batch = Array.from({ length: Math.min(200, n - i) }, () => new Conn(port))
    conns.push(...batch)
    await Promise.all(batch.map((c) => c.send()))
  }
  return conns
}

/** SIGUSR2 to `pid`: resolves with the successor's pid and the old process's drain counts of the Fastify app. */
async function reboot (f: Fixture, pid: number): Promise<{ next: number, fastify: AppCounts }> {
  process.kill(pid, 'SIGUSR2')
  const ready = await f.waitFor((e) => e.event === 'handoff' && e.step === 'ready' && e.pid === pid, 60_000)
  const next = ready.other as number
  f.track(next)
  const drained = await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === pid, 60_000)
  return { next, fastify: (drained.apps as AppCounts[]).find((a) => a.name === 'fastify') as AppCounts }
}

test('two reboots of one process with 2,000 idle keep-alive connections: the second, from the successor that received them, moves them all too; none closed, every request answered', async (t) => {
  t.timeout(180_000)
  const f = startFixture(t, 'transfer-app', { env: { CONNECTION_EVENTS: 'false' } })
  const first = await f.waitFor('listening') as Listening
  const conns = await open(t, first.ports.fastify, 2000)
  let closed = 0
  for (const c of conns) c.socket.on('close', () => { closed++ })
  const one = await reboot(f, first.pid)
  t.is(one.fastify.transferred, 2000, `reboot 1: ${JSON.stringify(one.fastify)}`)
  // The second reboot starts from the successor that received them, once its old process drained.
  const two = await reboot(f, one.next)
  t.is(two.fastify.transferred, 2000, `reboot 2: ${JSON.stringify(two.fastify)}`)
  t.deepEqual(two.fastify.kept, {})
  t.is(two.fastify.forced, 0)
  t.is(closed, 0, 'no connection closed')
  await Promise.all(conns.map((c) => c.send()))
  t.is(conns.reduce((n, c) => n + c.failed, 0), 0, 'no request failed')
  t.true(conns.every((c) => c.pids.at(-1) === two.next), 'each connection answered by the last successor')
  process.kill(two.next, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === two.next)
})

test('a transfer slower than the drain\'s timeout stops before the deadline: the connections still waiting drain here (a request answered with Connection: close, an idle connection closed), none destroyed', async (t) => {
  t.timeout(120_000)
  // The successor's event loop is blocked 50 ms at each turn: it answers every ping, but takes about
  // one connection a turn; 400 cannot move within the 3 s drain.
  const f = startFixture(t, 'transfer-app', { env: { CONNECTION_EVENTS: 'false', TIMEOUT: '3000', SLOW_SUCCESSOR: '50/50' } })
  const first = await f.waitFor('listening') as Listening
  const conns = await open(t, first.ports.fastify, 400)
  // The last 40 (the last to move) send a request every 100 ms throughout the drain (each waits for its answer).
  const active = conns.slice(-40)
  let running = true
  const loops = active.map(async (c) => {
    while (running && !c.socket.destroyed && !c.socket.writableEnded && c.closedByServer === 0) {
      await c.send()
      await new Promise((resolve) => { setTimeout(resolve, 100) })
    }
  })
  // 40 others, among the last to move, are closed by their clients while they wait: neither moved nor kept.
  const leaving = conns.slice(-80, -40)
  void f.waitFor((e) => e.event === 'state' && e.state === 'draining' && e.pid === first.pid).then(() => { for (const c of leaving) c.socket.end() })
  const { next, fastify } = await reboot(f, first.pid)
  running = false
  await Promise.all(loops)
  t.log(JSON.stringify(fastify))
  t.is(fastify.forced, 0, `nothing destroyed at the deadline: ${JSON.stringify(fastify)}`)
  t.true(fastify.transferred < 400, `the transfer did not finish: ${fastify.transferred} moved`)
  t.is(fastify.transferred + (fastify.kept['send-failed'] ?? 0), 360, JSON.stringify(fastify))
  t.is(fastify.kept.unsupported, undefined, 'a connection its client closed is not counted as kept')
  t.is(conns.reduce((n, c) => n + c.failed, 0), 0, 'every request sent was answered')
  t.true(active.some((c) => c.closedByServer > 0), 'a connection left here was answered with Connection: close')
  process.kill(next, 'SIGTERM')
  await f.waitFor((e) => e.event === 'exit' && e.pid === next)
})
