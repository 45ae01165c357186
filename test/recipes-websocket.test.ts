// Runs in the test process: the WebSocket room recipe of docs/recipes.md with real processes
// (test/fixtures/ws-room-app.ts, @fastify/websocket) rebooted for real by SIGUSR2, and real `ws`
// clients. A publisher publishes without pause through the reboot; the clients get 1001 from the old
// process and reconnect to the successor with the last id they have; clients who join afterwards ask
// for the whole history; in the end every client has every id, once. RECIPE_MERGE=0 starts the fixture
// without the merge of the final snapshot (the check that the test fails without it).
import http from 'node:http'
import test from 'ava'
import WebSocket from 'ws'
import { isAlive, startFixture, type FixtureEvent } from './helpers/fixture'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }

/** POST /publish?id=N on a new connection; retried while the connection fails (nothing is lost to the test's client). */
async function publish (port: number, id: number): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, path: `/publish?id=${id}`, method: 'POST', agent: false }, (res) => {
          res.resume().on('end', () => { if (res.statusCode === 200) resolve(); else reject(new Error(`status ${String(res.statusCode)}`)) })
        })
        req.on('error', reject)
        req.end()
      })
      return
    } catch (err) {
      if (attempt >= 20) throw err
    }
  }
}

/**
 * A room member that reconnects when the server closes it, sending the highest id up to which it has
 * every message; it keeps each id once (a replay after a reconnect may repeat some).
 */
class Member {
  readonly ids: number[] = []
  readonly have = new Set<number>()
  readonly closes: number[] = []
  repeated = 0
  private ws: WebSocket | undefined
  private stopped = false
  private waiting: { upTo: number, resolve: () => void } | undefined

  constructor (readonly port: number) {}

  /** The highest id up to which every message arrived. */
  contiguous (): number {
    let n = 0
    while (this.have.has(n + 1)) n++
    return n
  }

  connect (): Promise<void> {
    const ws = new WebSocket(`ws://127.0.0.1:${this.port}/room?since=${this.contiguous()}`)
    this.ws = ws
    ws.on('error', () => {})
    ws.on('message', (data: Buffer) => {
      const { id } = JSON.parse(data.toString()) as { id: number }
      if (this.have.has(id)) { this.repeated++; return }
      this.have.add(id)
      this.ids.push(id)
      if (this.waiting !== undefined && this.contiguous() >= this.waiting.upTo) this.waiting.resolve()
    })
    ws.on('close', (code: number) => {
      this.closes.push(code)
      if (!this.stopped) void this.connect().catch(() => {})
    })
    return new Promise((resolve, reject) => { ws.once('open', () => { resolve() }).once('error', reject) })
  }

  /** Resolves once every id up to `n` arrived. */
  all (n: number): Promise<void> {
    if (this.contiguous() >= n) return Promise.resolve()
    return new Promise((resolve) => { this.waiting = { upTo: n, resolve } })
  }

  stop (): void {
    this.stopped = true
    this.ws?.terminate()
  }
}

test('clients of a room get 1001, reconnect to the successor with their last id and have every message once; so do clients who join afterwards', async (t) => {
  const f = startFixture(t, 'ws-room-app', { env: { MERGE: process.env.RECIPE_MERGE ?? '1' } })
  const first = await f.waitFor('listening') as Listening
  const members = Array.from({ length: 3 }, () => new Member(first.port))
  for (const m of members) t.teardown(() => { m.stop() })
  await Promise.all(members.map(async (m) => { await m.connect() }))

  let published = 0
  let stop = false
  const publisher = (async () => {
    while (!stop) await publish(first.port, ++published)
  })()
  while (published < 50) await new Promise((resolve) => setImmediate(resolve))
  process.kill(first.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === first.pid)
  const atDrain = published
  while (published < atDrain + 50) await new Promise((resolve) => setImmediate(resolve))
  stop = true
  await publisher
  const final = await f.waitFor((e) => e.event === 'final-state' && e.pid === next.pid).catch(() => undefined)
  // Members who join afterwards and ask for the whole history (since=0): what the old process got
  // published after its first snapshot reaches them only through the final snapshot's merge.
  const late = Array.from({ length: 2 }, () => new Member(first.port))
  for (const m of late) t.teardown(() => { m.stop() })
  await Promise.all(late.map(async (m) => { await m.connect() }))
  members.push(...late)
  await Promise.race([
    Promise.all(members.map(async (m) => { await m.all(published) })),
    new Promise((resolve) => { setTimeout(resolve, 10_000).unref() })
  ])
  for (const [i, m] of members.entries()) {
    if (i < 3) t.true(m.closes.includes(1001), `member ${i} was closed with 1001 by the old process: ${m.closes.join(', ')}`)
    t.is(m.ids.length, published, `member ${i}: ${m.ids.length} messages of ${published}`)
    t.deepEqual([...m.ids].sort((a, b) => a - b), Array.from({ length: published }, (_, k) => k + 1), `member ${i}: every id from 1 to ${published}, none twice`)
  }
  t.log(`${published} messages; ${atDrain - 50} published during the reboot; the final snapshot merged ${String(final?.merged)}; ids replayed twice after a reconnect and dropped by the clients: ${members.map((m) => m.repeated).join(', ')}`)
  for (const m of members) m.stop()
  process.kill(next.pid, 'SIGTERM')
  await f.closed
  t.false(isAlive(first.pid))
  t.false(isAlive(next.pid))
})
