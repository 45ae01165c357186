// Runs in the test process: the supervisor's pure parts without forking: a worker's part in the exit
// code, the record of rolling reboots its status file carries, and the control protocol's line reader
// (lines split across chunks, a line too long, each chunk scanned once).
import test from 'ava'
import { jsonLines } from '../lib/workers/protocol'
import { RolloutLog } from '../lib/workers/rollouts'
import { outcome } from '../lib/workers/supervisor'

test('a worker\'s part in the exit code: 128 + the signal that killed it, else the code its drain reported, else its exit code, else 1', (t) => {
  t.is(outcome({ childExit: { code: null, signal: 'SIGKILL' }, exitCode: 0 }), 137, 'killed after it said it drained: killed')
  t.is(outcome({ childExit: { code: null, signal: 'SIGTERM' }, exitCode: undefined }), 143)
  t.is(outcome({ childExit: { code: 75, signal: null }, exitCode: 75 }), 75)
  t.is(outcome({ childExit: undefined, exitCode: 76 }), 76, 'a replacement that reported its drain')
  t.is(outcome({ childExit: { code: 3, signal: null }, exitCode: undefined }), 3, 'died at start')
  t.is(outcome({ childExit: undefined, exitCode: undefined }), 1, 'a replacement that died without a word')
  t.is(outcome({ childExit: { code: 0, signal: null }, exitCode: 0 }), 0)
})

test('the rollout record: a refusal, a success and a failure are counted and kept (the last 8), each with its slots', (t) => {
  const log = new RolloutLog()
  const a = log.begin('SIGUSR2', 1)
  log.refused('SIGUSR2', { message: 'a rolling reboot is already in progress; one at a time', code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' }, 2)
  log.slot(a, { slot: 1, ok: true, old: 10, successor: 11, message: 'slot 1: worker 10 replaced by 11', ms: 5 })
  log.end(a, { ok: true, message: 'every worker replaced' }, 3)
  const b = log.begin('code in worker 11', 4)
  log.slot(b, { slot: 1, ok: false, old: 11, successor: null, code: 'ERR_GRACEFUL_SUCCESSOR_PROBATION', message: 'slot 1: failed', ms: 7 })
  log.end(b, { ok: false, message: 'slot 1: failed; the rollout stopped', code: 'ERR_GRACEFUL_SUCCESSOR_PROBATION' }, 5)
  t.deepEqual(log.counts, { requested: 3, refused: 1, failed: 1, succeeded: 1 })
  t.deepEqual(log.records.map((r) => [r.seq, r.step]), [[1, 'serving'], [2, 'refused'], [3, 'failed']])
  t.like(log.records[2], { error: { code: 'ERR_GRACEFUL_SUCCESSOR_PROBATION' }, at: 5 })
  for (let i = 0; i < 10; i++) log.refused('SIGUSR2', { message: 'busy', code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' }, 6)
  t.is(log.records.length, 8)
  t.is(log.records[0]?.seq, 6)
})

test('control lines: split across chunks, several in one chunk, malformed ones skipped; a line over the limit stops the reader once', (t) => {
  const got: unknown[] = []
  let long = 0
  const feed = jsonLines((m) => got.push(m), 32, () => { long++ })
  feed('{"a":1}\n{"b"')
  feed(':2}\nnot json\n\n{"c":')
  feed('3}\n')
  t.deepEqual(got, [{ a: 1 }, { b: 2 }, { c: 3 }])
  feed('x'.repeat(20))
  feed('x'.repeat(20))
  t.is(long, 1, 'a line with no end past the limit')
  feed('{"d":4}\n')
  t.is(got.length, 3, 'nothing is read after it')
  t.is(long, 1)
  const again: unknown[] = []
  let tooLong = 0
  const other = jsonLines((m) => again.push(m), 32, () => { tooLong++ })
  other(`{"e":"${'y'.repeat(40)}"}\n{"f":1}\n`)
  t.is(tooLong, 1, 'a complete line over the limit')
  t.deepEqual(again, [])
})
