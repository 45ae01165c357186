// Runs in the old process of a reboot: watches that the successor's event loop answers, not only that
// it has not crashed: a ping over IPC every HEARTBEAT_INTERVAL_MS, answered by the successor's message
// handler (a loop blocked by synchronous work does not answer). Two bounds: UNRESPONSIVE_MS without an
// answer is an unresponsive successor (a pause: the connection transfer stops); `lostAfter` ms (the
// `successorLostAfter` option) is a frozen one. An answer, however late, ends the suspicion.
import type { ChildProcess } from 'node:child_process'
import { PING_MESSAGE, PONG_MESSAGE, messageType, type NewToOld, type OldToNew } from '../handoff/protocol'

/** Ms between two pings. */
export const HEARTBEAT_INTERVAL_MS = 250
/** Ms without an answer after which the successor is unresponsive (paused: no more connections go to it). */
export const UNRESPONSIVE_MS = 1_000

export class Heartbeat {
  private readonly child: ChildProcess
  private readonly timer: (ms: number, fn: () => void) => () => void
  private sent = 0
  private answered = 0
  private silentTicks = 0
  private cancel: (() => void) | undefined
  private stopped = false
  private readonly answerWaiters: Array<() => void> = []
  private readonly unresponsiveWaiters: Array<(ms: number) => void> = []
  private readonly frozenWaiters: Array<(ms: number) => void> = []
  private unresponsive = false
  private frozen = false
  private readonly lostAfter: number

  /** `lostAfter`: ms without an answer after which the successor is frozen (`onFrozen`). */
  constructor (child: ChildProcess, timer: (ms: number, fn: () => void) => () => void, lostAfter = Number.POSITIVE_INFINITY) {
    this.child = child
    this.timer = timer
    this.lostAfter = lostAfter
    child.on('message', (m: unknown) => {
      if (messageType(m) !== PONG_MESSAGE) return
      const n = (m as Extract<NewToOld, { type: typeof PONG_MESSAGE }>).n
      if (n <= this.answered) return
      this.answered = n
      this.silentTicks = 0
      this.unresponsive = false
      this.frozen = false
      for (const fn of this.answerWaiters.splice(0)) fn()
    })
  }

  /** Starts pinging (at once, then every HEARTBEAT_INTERVAL_MS). Idempotent. */
  start (): void {
    if (this.cancel !== undefined || this.stopped) return
    this.tick()
  }

  /** Stops pinging for good. */
  stop (): void {
    this.stopped = true
    this.cancel?.()
    this.cancel = undefined
  }

  /**
   * Calls `fn` once the successor's loop answers: at once if every ping sent so far was answered (the
   * last within HEARTBEAT_INTERVAL_MS), else once the last ping sent by now is.
   */
  onAnswer (fn: () => void): void {
    const last = this.sent
    const wait = (): void => {
      if (last > 0 && this.answered >= last) fn()
      else this.answerWaiters.push(wait)
    }
    wait()
  }

  /** Calls `fn` each time the successor becomes unresponsive (no answer for UNRESPONSIVE_MS), with the ms it has been silent. */
  onUnresponsive (fn: (ms: number) => void): void {
    this.unresponsiveWaiters.push(fn)
  }

  /** Calls `fn` each time the successor stays silent for `lostAfter` ms (frozen), with the ms it has been silent. */
  onFrozen (fn: (ms: number) => void): void {
    this.frozenWaiters.push(fn)
  }

  private tick (): void {
    if (this.stopped) return
    if (this.sent > this.answered) this.silentTicks++
    const silentMs = this.silentTicks * HEARTBEAT_INTERVAL_MS
    if (!this.unresponsive && silentMs >= UNRESPONSIVE_MS) {
      this.unresponsive = true
      for (const fn of [...this.unresponsiveWaiters]) fn(silentMs)
    }
    if (!this.frozen && silentMs >= this.lostAfter) {
      this.frozen = true
      for (const fn of [...this.frozenWaiters]) fn(silentMs)
    }
    if (this.child.connected) {
      const ping: OldToNew = { type: PING_MESSAGE, n: ++this.sent }
      try {
        this.child.send(ping, undefined, {}, () => {})
      } catch {}
    }
    this.cancel = this.timer(HEARTBEAT_INTERVAL_MS, () => { this.tick() })
  }
}
