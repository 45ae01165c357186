// Runs in the test process: the lru-cache recipe of docs/recipes.md with real processes
// (test/fixtures/lru-app.ts) rebooted for real by SIGUSR2. Handing the LRUCache itself over fails with
// a clone error that names the fix; handing over `dump()` and `load()`ing it in the successor keeps
// the entries and their remaining TTLs (an entry whose TTL ran out during the reboot is gone).
import http from 'node:http'
import test from 'ava'
import { setTimeout as sleep } from 'node:timers/promises'
import { isAlive, startFixture, type Fixture, type FixtureEvent } from './helpers/fixture'
import { getJson } from './helpers/servers'

interface Listening extends FixtureEvent { pid: number, port: number, parent: number | null }
interface Cache { pid: number, entries: Record<string, { value: string, remaining: number | null }> }

/** PUT /cache/:key; resolves with the time the answer arrived (Date.now()). */
function put (port: number, key: string, ttl?: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: `/cache/${key}${ttl === undefined ? '' : `?ttl=${ttl}`}`, method: 'PUT', agent: false }, (res) => {
      res.resume().on('end', () => { resolve(Date.now()) })
    })
    req.on('error', reject)
    req.end()
  })
}

/** SIGUSR2 to `pid`; resolves once the successor listens (its pid tracked for teardown). */
async function reboot (f: Fixture, pid: number): Promise<Listening> {
  process.kill(pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === pid) as Listening
  f.track(next.pid)
  return next
}

test.serial('handover(name, () => lru) fails with a clone error that names dump() and load()', async (t) => {
  const f = startFixture(t, 'lru-app', { env: { HANDOVER: 'instance' } })
  const first = await f.waitFor('listening') as Listening
  // Without any TTL, structured clone would not refuse it: it would hand over the cache's internals.
  await put(first.port, 'a')
  const next = await reboot(f, first.pid)
  const told = await f.waitFor((e) => e.event === 'inherited-error' && e.pid === next.pid) as FixtureEvent & { code: string, message: string }
  t.is(told.code, 'ERR_GRACEFUL_HANDOVER_CLONE')
  t.regex(told.message, /handover "lru": the snapshot cannot be cloned: value is an object of a class/)
  t.regex(told.message, /dump\(\)/, told.message)
  t.regex(told.message, /load\(\)/, told.message)
  t.log(told.message)
  await f.waitFor((e) => e.event === 'handoff' && e.step === 'drained' && e.pid === first.pid)
  process.kill(next.pid, 'SIGTERM')
  await f.closed
  t.false(isAlive(first.pid))
})

test.serial('lru.dump() in the old process, lru.load() in the successor: the entries arrive with their remaining TTLs', async (t) => {
  const f = startFixture(t, 'lru-app')
  const first = await f.waitFor('listening') as Listening
  const briefTtl = 300
  const briefSet = await put(first.port, 'brief', briefTtl)
  const longSet = await put(first.port, 'long', 60_000)
  await put(first.port, 'forever')
  const next = await reboot(f, first.pid)
  await f.waitFor((e) => e.event === 'final-state' && e.pid === next.pid)
  // The brief entry was set before its answer arrived: its TTL has run out once that time is past.
  const left = briefSet + briefTtl + 5 - Date.now()
  if (left > 0) await sleep(left)
  const asked = Date.now()
  const cache = await getJson<Cache>(first.port, '/cache')
  t.is(cache.body.pid, next.pid, 'the successor answers')
  const { entries } = cache.body
  t.deepEqual(Object.keys(entries).sort(), ['forever', 'long'], 'the brief entry expired, the others arrived')
  t.is(entries.forever?.remaining, null, 'no TTL stays no TTL')
  const remaining = entries.long?.remaining ?? -1
  // Had the successor started the TTL afresh, more would be left than 60 s minus the time since it was set.
  t.true(remaining > 0 && remaining <= 60_000 - (asked - longSet), `remaining ${remaining} ms, ${asked - longSet} ms after it was set`)
  t.log(`reboot and check took ${asked - longSet} ms; the long entry has ${remaining} ms left of 60000`)
  process.kill(next.pid, 'SIGTERM')
  await f.closed
  t.false(isAlive(first.pid))
  t.false(isAlive(next.pid))
})
