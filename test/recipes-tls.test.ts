// Runs in the test process: the TLS session resumption recipe of docs/recipes.md with real processes
// (test/fixtures/tls-app.ts) rebooted for real by SIGUSR2. A client saves its session (a TLS 1.3 ticket)
// from the old process and reconnects to the successor with it: without the recipe the successor's own
// ticket keys cannot read it (a full handshake); with the keys handed over, the session resumes.
import fs from 'node:fs'
import path from 'node:path'
import tls from 'node:tls'
import test from 'ava'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'

// Compiled to dist/test: the PEM files stay in the source tree.
const ca = fs.readFileSync(path.join(__dirname, '..', '..', 'test', 'fixtures', 'tls', 'cert.pem'))

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }

/**
 * One TLS connection (with `session`, an attempt to resume it) that sends a request and reads the
 * answer: whether the session was reused, the session to save (the new ticket the server issued, if any), and the pid that answered.
 */
function connect (port: number, session?: Buffer): Promise<{ reused: boolean, session: Buffer, pid: number }> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined
    let body = ''
    let reused = false
    const socket = tls.connect({ host: '127.0.0.1', port, ca, ...(session === undefined ? {} : { session }) })
    socket.on('session', (s: Buffer) => { ticket = s })
    socket.once('secureConnect', () => {
      reused = socket.isSessionReused()
      socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
    })
    socket.setEncoding('utf8').on('data', (c: string) => { body += c })
    socket.on('error', reject)
    socket.on('close', () => {
      const m = /"pid":(\d+)/.exec(body)
      const saved = ticket ?? session
      if (saved === undefined || m === null) { reject(new Error(`no session ticket or no answer: ${body}`)); return }
      resolve({ reused, session: saved, pid: Number(m[1]) })
    })
  })
}

/** SIGUSR2 to `pid`; resolves once the successor listens and the old process's drain is over. */
async function reboot (f: Fixture, pid: number): Promise<Listening> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid) as Listening
  f.track(next.pid)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === pid)
  return next
}

for (const recipe of [false, true]) {
  test.serial(recipe
    ? 'with the ticket keys handed over, a session from the old process resumes on the successor'
    : 'without the recipe, no session from the old process resumes on the successor (a full handshake)', async (t) => {
    const f = startFixture(t, 'tls-app', { env: { TICKET_KEYS: recipe ? '1' : '0' } })
    const first = await f.waitFor('listening') as Listening
    const fresh = await connect(first.port)
    t.false(fresh.reused)
    const again = await connect(first.port, fresh.session)
    t.true(again.reused, 'the same process resumes its own session')
    const next = await reboot(f, first.pid)
    if (recipe) t.like(await f.waitFor((e) => e.event === 'ticket-keys' && e.pid === next.pid), { inherited: true })
    const after = await connect(first.port, again.session)
    t.is(after.pid, next.pid, 'the successor answers')
    t.is(after.reused, recipe, recipe ? 'resumed: no full handshake' : 'a full handshake: the successor cannot read the old ticket')
    process.kill(next.pid, 'SIGTERM')
    await f.closed
    t.false(isAlive(first.pid))
    t.false(isAlive(next.pid))
  })
}
