// Runs in the test process: the pieces of a warm successor without forking: the state's encoding
// (the bad part of a value that cannot be cloned, slices of large Maps, Sets and arrays), the
// successor's requests against a fake old process (answers, silence, a parent gone, a fresh start),
// the old process's answers over a fake channel, the reboot hooks, and the options.
import { EventEmitter } from 'node:events'
import { isDeepStrictEqual } from 'node:util'
import test from 'ava'
import { HandoverError, InvalidOptionError } from '../lib/errors'
import { STATE_MESSAGE, STATE_REQUEST_MESSAGE, type OldToNew } from '../lib/handoff/protocol'
import { FIRST_SLICE_ITEMS, SLICE_BYTES, SLICE_ITEMS, addSlice, deserializeState, findUncloneable, serializeState, sliceItems, slicesOf } from '../lib/handoff/state'
import { ANSWER_MARGIN_MS, StateClient } from '../lib/incoming/state'
import { RebootHooks } from '../lib/lifecycle/hooks'
import { resolveOptions } from '../lib/options'
import { StateServer } from '../lib/outgoing/state'
import { FakeSeam, memoryLogger, settle } from './fixtures/finalizer-fake-seam'

test('findUncloneable names the path of the first part structured clone refuses', (t) => {
  t.deepEqual(findUncloneable({ a: 1, sessions: new Map([['s1', { close () {} }]]) }), { path: 'value.sessions.get("s1").close', what: 'a function (close)' })
  t.deepEqual(findUncloneable([1, [2, Symbol('x')]]), { path: 'value[1][1]', what: 'a symbol (x)' })
  t.deepEqual(findUncloneable({ pending: Promise.resolve() }), { path: 'value.pending', what: 'a Promise' })
  t.deepEqual(findUncloneable(new Set([1, new WeakMap()])), { path: 'value (item 1 of the Set)', what: 'a WeakMap' })
  t.is(findUncloneable({ date: new Date(), buf: Buffer.from('x'), nested: { ok: [1, 2] } }), undefined)
  const loop: Record<string, unknown> = {}
  loop.self = loop
  t.is(findUncloneable(loop), undefined, 'a cycle is walked once')
})

test('serializeState: a coded error naming the name, the bad part and the limit', (t) => {
  const clone = t.throws(() => serializeState('cache', { fn: () => 1 }, 1000), { instanceOf: HandoverError })
  t.is(clone?.code, 'ERR_GRACEFUL_HANDOVER_CLONE')
  t.is(clone?.handover, 'cache')
  t.regex(clone?.message ?? '', /^handover "cache": the snapshot cannot be cloned: value\.fn is a function \(fn\)/)
  const big = t.throws(() => serializeState('blob', Buffer.alloc(2000), 1000), { instanceOf: HandoverError })
  t.is(big?.code, 'ERR_GRACEFUL_HANDOVER_TOO_LARGE')
  t.regex(big?.message ?? '', /is \d+ bytes serialized, over the limit of 1000 \(option "handoverMaxBytes"\)/)
  const later = t.throws(() => serializeState('blob', Buffer.alloc(500), 1000, 800), { instanceOf: HandoverError })
  t.regex(later?.message ?? '', /is at least \d+ bytes serialized/)
})

/** Serializes every slice of `value`; returns what they add up to and the size of each. */
function travel (value: unknown, between?: (slice: number) => void): { so: unknown, sizes: number[], kind: string } {
  const cut = slicesOf(value)
  let so: unknown
  const sizes: number[] = []
  let bytes = 0
  while (!cut.done) {
    const slice = cut.next('x', Infinity, bytes)
    bytes += slice.length
    sizes.push(slice.length)
    so = addSlice(cut.kind, so, deserializeState('x', [slice]))
    between?.(sizes.length)
  }
  return { so, sizes, kind: cut.kind }
}

test('a Map, Set or array is cut in slices of about SLICE_BYTES that add up to an equal value, in order; other values travel whole', (t) => {
  const record = (i: number): object => ({ id: i, name: `name-${i}-${'x'.repeat(300)}`, tags: ['a', 'b'] })
  const map = new Map(Array.from({ length: 12_000 }, (_, i) => [`k${i}`, record(i)]))
  const set = new Set(Array.from({ length: 12_000 }, (_, i) => `item-${i}-${'y'.repeat(400)}`))
  const array = Array.from({ length: 12_000 }, (_, i) => `item-${i}-${'z'.repeat(400)}`)
  for (const [value, kind] of [[map, 'map'], [set, 'set'], [array, 'array']] as const) {
    const { so, sizes, kind: k } = travel(value)
    t.is(k, kind)
    t.true(isDeepStrictEqual(so, value), kind)
    const total = sizes.reduce((a, b) => a + b, 0)
    t.true(total > 3 * SLICE_BYTES, `${kind}: ${total} bytes`)
    t.true(sizes.length >= 4, `${kind}: ${sizes.length} slices`)
    t.true(Math.max(...sizes) <= 1.5 * SLICE_BYTES, `${kind}: the largest slice is ${Math.max(...sizes)} bytes`)
    t.is(sizes[0], serializeState('x', [...(value as Iterable<unknown>)].slice(0, FIRST_SLICE_ITEMS), Infinity).length, `${kind}: the first slice has FIRST_SLICE_ITEMS items`)
  }
  t.deepEqual(travel(new Map([[1, 2]])), { so: new Map([[1, 2]]), sizes: [travel(new Map([[1, 2]])).sizes[0] as number], kind: 'map' })
  t.deepEqual(travel(new Map()).so, new Map(), 'an empty Map: one slice')
  t.deepEqual(travel([]).so, [])
  const wrapped = travel({ map })
  t.is(wrapped.kind, 'whole', 'wrapped: one piece')
  t.is(wrapped.sizes.length, 1)
  t.true(isDeepStrictEqual(wrapped.so, { map }))
  t.is(travel(5).so, 5)
})

test('slices follow the size of the items: a few small items first, then large ones, never make one huge slice; a value of many items is never listed all at once', (t) => {
  const big = Buffer.alloc(256 * 1024, 1)
  const map = new Map<string, unknown>(Array.from({ length: 100 }, (_, i) => [`small${i}`, i]))
  for (let i = 0; i < 40; i++) map.set(`big${i}`, big)
  const { so, sizes } = travel(map)
  t.true(isDeepStrictEqual(so, map))
  t.true(Math.max(...sizes) <= 4 * big.length + 1024, `largest slice ${Math.max(...sizes)} bytes`)
  // Items are read as each slice is made: a key added behind the slices sent arrives, one deleted first does not.
  const live = new Map(Array.from({ length: 50_000 }, (_, i) => [i, i]))
  const { so: arrived } = travel(live, (slice) => {
    if (slice !== 1) return
    live.delete(49_999)
    live.set(-1, -1)
  })
  t.is((arrived as Map<number, number>).get(-1), -1)
  t.false((arrived as Map<number, number>).has(49_999))
  t.is((arrived as Map<number, number>).size, 50_000)
  t.is(sliceItems(100), Math.floor(SLICE_BYTES / 100))
  t.is(sliceItems(10 * SLICE_BYTES), 1)
  t.is(sliceItems(0), SLICE_ITEMS)
})

/** A fake IPC channel between a StateServer (old) and a StateClient (new). */
function channel (): { seam: FakeSeam, client: StateClient, server: StateServer, sent: OldToNew[], snapshots: Map<string, () => unknown>, log: ReturnType<typeof memoryLogger> } {
  const seam = new FakeSeam()
  const child = new EventEmitter() as EventEmitter & { connected: boolean, send: (m: unknown, h: unknown, o: unknown, cb: (err: Error | null) => void) => boolean }
  const toNew = new Set<(m: unknown) => void>()
  const sent: OldToNew[] = []
  child.connected = true
  child.send = (m, _h, _o, cb) => {
    sent.push(m as OldToNew)
    setImmediate(() => { for (const fn of toNew) fn(m); cb(null) })
    return true
  }
  const snapshots = new Map<string, () => unknown>()
  const log = memoryLogger()
  const server = new StateServer(child as never, () => ({ snapshot: (n) => snapshots.get(n), timeout: 1000, maxBytes: 1 << 20 }), seam, log)
  snapshots.set('ok', () => new Map([['a', new Date(5)]]))
  snapshots.set('slow', () => new Promise(() => {}))
  snapshots.set('throws', () => { throw new Error('nope') })
  const client = new StateClient({
    host: {
      send: (m) => { setImmediate(() => child.emit('message', m)); return true },
      onParentMessage: (fn) => { toNew.add(fn); return () => { toNew.delete(fn) } },
      onParentGone: () => {}
    },
    enabled: true,
    timer: (ms, fn) => seam.timer(ms, fn),
    hold: () => () => {},
    timeout: () => 1000
  })
  return { seam, client, server, sent, snapshots, log }
}

test('inherited(): the value, undefined for a name not registered, a coded error for a snapshot that throws or hangs (the old process\'s deadline)', async (t) => {
  const c = channel()
  t.deepEqual(await c.client.inherited('ok'), new Map([['a', new Date(5)]]))
  t.is(await c.client.inherited('missing'), undefined)
  await t.throwsAsync(c.client.inherited('throws'), { code: 'ERR_GRACEFUL_HANDOVER_FAILED', message: 'handover "throws": the snapshot threw: nope' })
  const slow = c.client.inherited('slow')
  await settle()
  await c.seam.advance(1000)
  await t.throwsAsync(slow, { code: 'ERR_GRACEFUL_HANDOVER_TIMEOUT', message: /did not return within 1000 ms/ })
  t.true(c.log.lines.some((l) => l.level === 'error' && l.msg.includes('"throws"')), 'the old process logs it')
})

test('inherited(): an old process that never answers is a timeout error, not a hang; a parent gone resolves undefined; a fresh start resolves undefined at once', async (t) => {
  const seam = new FakeSeam()
  const gone: Array<() => void> = []
  const silent = new StateClient({ host: { send: () => true, onParentMessage: () => () => {}, onParentGone: (fn) => { gone.push(fn) } }, enabled: true, timer: (ms, fn) => seam.timer(ms, fn), hold: () => () => {}, timeout: () => 1000 })
  const waiting = silent.inherited('x')
  await seam.advance(1000 + ANSWER_MARGIN_MS)
  await t.throwsAsync(waiting, { instanceOf: HandoverError, code: 'ERR_GRACEFUL_HANDOVER_TIMEOUT', message: `inherited("x"): the old process sent no answer within ${1000 + ANSWER_MARGIN_MS} ms` })
  const before = silent.inherited('y')
  for (const fn of gone) fn()
  t.is(await before, undefined)
  t.is(await silent.inherited('z'), undefined, 'after the parent is gone, at once')
  const fresh = new StateClient({ host: { send: () => { throw new Error('never called') }, onParentMessage: () => () => {} }, enabled: false, timer: (ms, fn) => seam.timer(ms, fn), hold: () => () => {}, timeout: () => 1000 })
  t.is(await fresh.inherited('x'), undefined)
  await t.throwsAsync(fresh.inherited(''), { instanceOf: InvalidOptionError })
})

test('inherited(): a malformed answer (no data, a null error) fails the request with a coded error; the IPC listener does not throw', async (t) => {
  const seam = new FakeSeam()
  const listeners: Array<(m: unknown) => void> = []
  const requests: Array<{ id: number, name: string }> = []
  const client = new StateClient({
    host: { send: (m) => { requests.push(m as { id: number, name: string }); return true }, onParentMessage: (fn) => { listeners.push(fn); return () => {} }, onParentGone: () => {} },
    enabled: true,
    timer: (ms, fn) => seam.timer(ms, fn),
    hold: () => () => {},
    timeout: () => 1000
  })
  const deliver = (m: unknown): void => { for (const fn of listeners) fn(m) }
  const noData = client.inherited('cache')
  const nullError = client.inherited('jobs')
  const [a, b] = requests as unknown as [{ id: number }, { id: number }]
  t.notThrows(() => { deliver({ type: STATE_MESSAGE, id: a.id, kind: 'whole', end: true, last: true }) }, 'a part without data')
  t.notThrows(() => { deliver({ type: STATE_MESSAGE, id: b.id, error: null }) }, 'an error that is null')
  await t.throwsAsync(noData, { instanceOf: HandoverError, code: 'ERR_GRACEFUL_HANDOVER_FAILED', message: /^inherited\("cache"\): the old process sent a malformed answer \(a part without data \(undefined\)\)$/ })
  await t.throwsAsync(nullError, { instanceOf: HandoverError, code: 'ERR_GRACEFUL_HANDOVER_FAILED', message: /^inherited\("jobs"\): the old process sent a malformed answer/ })
})

test('final(): held by the old process until its drain is over, then answered with the snapshot taken then', async (t) => {
  const c = channel()
  let n = 1
  c.snapshots.set('n', () => n)
  const final = c.client.final('n')
  await settle()
  n = 42
  t.is(c.sent.filter((m) => m.type === STATE_MESSAGE).length, 0, 'not answered before the drain is over')
  await c.server.final()
  t.is(await final, 42)
  t.false(c.sent.some((m) => (m as { type: string }).type === STATE_REQUEST_MESSAGE))
})

test('hooks: validation names the bad value; a veto, a throw and a timeout refuse with the hook\'s name; other hooks that fail are logged, never thrown', async (t) => {
  const hooks = new RebootHooks()
  t.throws(() => { hooks.add('before' as never, () => {}) }, { instanceOf: InvalidOptionError, message: /step must be one of 'beforeSpawn', .* got "before"/ })
  t.throws(() => { hooks.add('ready', 5 as never) }, { message: "onReboot('ready') needs a function, got 5" })
  t.throws(() => { hooks.add('ready', () => {}, { timeout: -1 }) }, { message: /"timeout" must be a positive number of ms/ })
  const seam = new FakeSeam()
  const log = memoryLogger()
  const ctx = { step: 'beforeSpawn' as const, role: 'old' as const, pid: 1 }
  t.is(await hooks.veto(ctx, (ms, fn) => seam.timer(ms, fn), log), undefined, 'no hook, no veto')
  hooks.add('beforeSpawn', function fine () { return undefined })
  hooks.add('beforeSpawn', () => 'busy', { name: 'jobs' })
  t.is(await hooks.veto(ctx, (ms, fn) => seam.timer(ms, fn), log), 'the beforeSpawn hook "jobs" vetoed it: busy')
  const throwing = new RebootHooks()
  throwing.add('beforeSpawn', () => { throw new Error('db down') }, { name: 'check' })
  t.is(await throwing.veto(ctx, (ms, fn) => seam.timer(ms, fn), log), 'the beforeSpawn hook "check" threw: db down')
  const hanging = new RebootHooks()
  hanging.add('beforeSpawn', () => new Promise(() => {}), { name: 'slow', timeout: 50 })
  const vetoed = hanging.veto(ctx, (ms, fn) => seam.timer(ms, fn), log)
  await seam.advance(50)
  t.is(await vetoed, 'the beforeSpawn hook "slow" did not return within 50 ms')
  // A hook's own value that looks like the timeout's marker is just a value: no veto, no timeout.
  const objects = new RebootHooks()
  objects.add('beforeSpawn', () => ({ late: true }) as never, { name: 'odd' })
  t.is(await objects.veto(ctx, (ms, fn) => seam.timer(ms, fn), log), undefined, '{ late: true } returned by a hook is not a timeout')
  const others = new RebootHooks()
  const calls: string[] = []
  others.add('ready', () => { throw new Error('sync') }, { name: 'a' })
  others.add('ready', async () => { throw new Error('async') }, { name: 'b' })
  others.add('ready', (c) => { calls.push(`${c.role}:${String(c.successor)}`) })
  others.add('serving', () => { calls.push('serving') })
  t.notThrows(() => { others.run({ step: 'ready', role: 'old', pid: 1, successor: 2 }, log) })
  await settle()
  t.deepEqual(calls, ['old:2'])
  t.true(log.lines.some((l) => l.level === 'error' && l.msg.includes('the ready hook "a" failed: sync')))
  t.true(log.lines.some((l) => l.level === 'error' && l.msg.includes('the ready hook "b" failed: async')))
})

test('options: handoverTimeout and handoverMaxBytes default as documented and name a bad value', (t) => {
  const o = resolveOptions({})
  t.is(o.handoverTimeout, 10_000)
  t.is(o.handoverMaxBytes, 64 * 1024 * 1024)
  t.throws(() => resolveOptions({ handoverTimeout: 0 }), { message: '"handoverTimeout" must be more than 0 ms, got 0' })
  t.throws(() => resolveOptions({ handoverTimeout: 'x' }), { message: /"handoverTimeout" must be a finite number of milliseconds >= 0, got "x"/ })
  t.throws(() => resolveOptions({ handoverMaxBytes: 1.5 }), { message: '"handoverMaxBytes" must be a whole number of bytes from 1 to 4294967296, got 1.5' })
})

test('hooks: one vocabulary: the steps are the handoff event\'s names; the names of earlier versions (rolledBack, handedOver) still work, with a deprecation warning', async (t) => {
  const hooks = new RebootHooks()
  const seen: string[] = []
  const warned: Array<{ name: string, code: string | undefined, message: string }> = []
  const onWarning = (w: Error & { code?: string }): void => { warned.push({ name: w.name, code: w.code, message: w.message }) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  hooks.add('failed', (c) => { seen.push(`failed:${c.step}`) })
  hooks.add('rolledBack', (c) => { seen.push(`rolledBack:${c.step}`) })
  hooks.add('handedOver', (c) => { seen.push(`handedOver:${c.step}`) })
  const log = memoryLogger()
  hooks.run({ step: 'failed', role: 'old', pid: 1 }, log)
  hooks.run({ step: 'drained', role: 'old', pid: 1, transferred: 2, kept: 0 }, log)
  t.deepEqual(seen, ['failed:failed', 'rolledBack:failed', 'handedOver:drained'])
  await new Promise((resolve) => setImmediate(resolve))
  t.deepEqual(warned.map((w) => [w.name, w.code]), [['DeprecationWarning', 'GRACEFUL_REBOOT_HOOK_STEP'], ['DeprecationWarning', 'GRACEFUL_REBOOT_HOOK_STEP']])
  t.regex(warned[0]?.message ?? '', /onReboot\('rolledBack'\) is now onReboot\('failed'\)/)
  t.throws(() => { hooks.add('handoff' as 'failed', () => {}) }, { message: "onReboot() step must be one of 'beforeSpawn', 'ready', 'serving', 'draining', 'failed', 'drained', got \"handoff\"" })
})
