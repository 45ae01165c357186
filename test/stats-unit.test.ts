// Runs in the test process: the counts of a reboot line without processes: the old side's
// StatsRecorder (what it hands over, when it stops reporting), the successor's (what it inherits from
// the cutover and drained messages, out-of-order counts ignored, an old process gone) and the
// supervisor's WorkerTotals (per slot, a replacement continuing its line, a fresh worker after a death).
import { EventEmitter } from 'node:events'
import test from 'ava'
import { StatsRecorder } from '../lib/lifecycle/stats'
import { WorkerTotals } from '../lib/workers/totals'
import { CUTOVER_MESSAGE, DRAINED_MESSAGE, type LineCounts } from '../lib/handoff/protocol'
import { zeroCounts } from '../lib/handoff/counts'
import type { LifecycleEvents, ShutdownResult } from '../lib/events'
import type { RebootError } from '../lib/errors'

function counts (succeeded: number, drains: number, transferred = 0): LineCounts {
  const c = zeroCounts()
  Object.assign(c.reboots, { requested: succeeded, started: succeeded, succeeded })
  c.drains = drains
  c.connections.transferred = transferred
  return c
}

function drainResult (transferred: number, forced = 0): ShutdownResult {
  return { code: 0, reason: 'reboot', trigger: 'SIGUSR2', ms: 1, forced, failedFinalizers: [], apps: [{ transferred, kept: { 'mid-request': 1 }, forced } as unknown as ShutdownResult['apps'][number]] }
}

test('old process: it reports until its successor passes probation; the counts it hands over include that success, and its drain when given the result; a lost successor makes it report again', (t) => {
  const events = new EventEmitter<LifecycleEvents>()
  const s = new StatsRecorder(events, () => 0)
  let changes = 0
  s.watch(() => { changes++ })
  t.like(s.snapshot(), { generation: 0, reporting: true })
  events.emit('handoff', { step: 'spawned', pid: 2, trigger: 'SIGUSR2' })
  events.emit('handoff', { step: 'ready', pid: 2, ms: 5 })
  t.true(s.snapshot().reporting)
  events.emit('handoff', { step: 'serving', pid: 2, ms: 9 })
  t.false(s.snapshot().reporting, 'the successor reports from its cutover on')
  t.deepEqual(s.carried(), counts(1, 0))
  const withDrain = s.carried(drainResult(3))
  t.is(withDrain.drains, 1)
  t.deepEqual(withDrain.connections, { transferred: 3, kept: 1, forced: 0 })
  t.is(s.snapshot().drains, 0, 'carried(result) does not count the drain twice')
  events.emit('handoff', { step: 'lost', pid: 2, reason: 'the successor exited', listening: [], back: true })
  t.true(s.snapshot().reporting)
  events.emit('shutdown', drainResult(3))
  t.like(s.snapshot(), { drains: 1, connections: { transferred: 3, kept: 1 }, reboots: { succeeded: 1, lost: 1 } })
  t.is(changes, 5, 'every step and the drain tell the watchers')
})

test('successor: it reports once the cutover brings the line\'s counts, adds its own, takes the final counts, ignores counts that would go back; an old process gone makes it report', (t) => {
  const events = new EventEmitter<LifecycleEvents>()
  const s = new StatsRecorder(events, () => 0)
  let onMessage: (m: unknown) => void = () => {}
  let onGone: () => void = () => {}
  s.followParent(4, { onParentMessage: (fn) => { onMessage = fn; return () => {} }, onParentGone: (fn) => { onGone = fn } })
  t.like(s.snapshot(), { generation: 4, reporting: false })
  onMessage({ type: CUTOVER_MESSAGE, counts: counts(4, 3, 10) })
  t.like(s.snapshot(), { generation: 4, reporting: true, drains: 3, reboots: { succeeded: 4 }, connections: { transferred: 10 } })
  // Its own refused reboot adds to the line's.
  events.emit('handoff', { step: 'refused', pid: 9, trigger: 'SIGUSR2', error: { code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS', message: 'busy' } as RebootError })
  t.like(s.snapshot(), { reboots: { requested: 5, refused: 1, succeeded: 4 } })
  onMessage({ type: DRAINED_MESSAGE, transferred: 2, kept: 0, counts: counts(4, 4, 12) })
  t.like(s.snapshot(), { drains: 4, connections: { transferred: 12 }, reboots: { requested: 5 } })
  onMessage({ type: DRAINED_MESSAGE, transferred: 0, kept: 0, counts: counts(1, 0) })
  t.is(s.snapshot().drains, 4, 'fewer counts than it has are ignored')
  onMessage({ type: CUTOVER_MESSAGE, counts: { reboots: 'x' } })
  t.is(s.snapshot().drains, 4, 'a malformed message changes nothing')

  const orphan = new StatsRecorder(new EventEmitter<LifecycleEvents>(), () => 0)
  orphan.followParent(1, { onParentMessage: () => () => {}, onParentGone: (fn) => { onGone = fn } })
  t.false(orphan.snapshot().reporting)
  onGone()
  t.true(orphan.snapshot().reporting)
})

test('supervisor totals: per slot the reporting worker\'s counts; a replacement continues its line; a worker started afresh after a death keeps the ended line in the sum', (t) => {
  const w = new WorkerTotals()
  w.update(1, 100, { generation: 0, reporting: true, counts: counts(0, 0), parent: null })
  w.update(2, 200, { generation: 0, reporting: true, counts: counts(0, 0), parent: null })
  // Slot 1 rolls: the replacement (parent 100) does not report until its cutover, then carries the line.
  w.update(1, 101, { generation: 1, reporting: false, counts: counts(0, 0), parent: 100 })
  t.is(w.sum().reboots.succeeded, 0)
  w.update(1, 100, { generation: 0, reporting: false, counts: counts(1, 1, 5), parent: null })
  w.update(1, 101, { generation: 1, reporting: true, counts: counts(1, 1, 5), parent: 100 })
  t.like(w.slot(1), { generation: 1, drains: 1, connections: { transferred: 5 } })
  // Slot 2's worker dies after counting a reboot; the fresh worker starts a new line from zero.
  w.update(2, 200, { generation: 0, reporting: true, counts: counts(2, 2), parent: null })
  w.update(2, 250, { generation: 0, reporting: true, counts: counts(0, 0), parent: null })
  t.like(w.slot(2), { drains: 2, reboots: { succeeded: 2 } })
  w.update(2, 250, { generation: 0, reporting: true, counts: counts(1, 0), parent: null })
  t.like(w.slot(2), { drains: 2, reboots: { succeeded: 3 } })
  t.like(w.sum(), { drains: 3, reboots: { succeeded: 4 }, connections: { transferred: 5 } })
  t.is(w.slot(3), undefined)
})
