// Runs in the old process of a reboot: the standby. After ready the successor sends back a copy of each
// listening socket (LISTENER_MESSAGE), which this process keeps without accepting. From the start of
// its drain until the drain is over, it watches the successor: it is lost when it exits, when its IPC
// channel closes, or when its event loop stays silent for `successorLostAfter` ms (frozen: this process,
// its parent, kills it with SIGKILL first, so that one process serves). On loss it says so once; the
// lifecycle then takes the kept copies (its servers listen on them again: a late rollback) or, when it
// cannot serve for good, has this object accept on them until the drain is over. `end()` closes what is left.
import type { ChildProcess } from 'node:child_process'
import * as net from 'node:net'
import { LISTENER_MESSAGE, messageType, type NewToOld } from '../handoff/protocol'
import type { Heartbeat } from './heartbeat'

/** Ms a closed IPC channel waits for the exit of the successor, to report why it was lost. */
const EXIT_WAIT_MS = 100

export class Standby {
  private readonly kept = new Map<string, unknown>()
  private readonly servers: net.Server[] = []
  private watching = false
  private lostWhy: string | undefined
  private onLost: ((why: string) => void) | undefined
  private closed = false
  /** Why this process killed the successor (it froze), if it did. */
  private killedWhy: string | undefined

  constructor (child: ChildProcess, heartbeat: Heartbeat, timer: (ms: number, fn: () => void) => () => void) {
    child.on('message', (m: unknown, handle: unknown) => {
      if (messageType(m) !== LISTENER_MESSAGE || handle == null) return
      const key = (m as Extract<NewToOld, { type: typeof LISTENER_MESSAGE }>).key
      // A copy that arrives once the drain is over is not needed.
      if (this.closed) closeHandle(handle)
      else this.kept.set(key, handle)
    })
    child.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      this.lose(this.killedWhy ?? `successor ${String(child.pid)} ${signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`}`)
    })
    // A process that dies closes its channel first: its exit, which names why, follows at once.
    child.once('disconnect', () => { timer(EXIT_WAIT_MS, () => { this.lose(`successor ${String(child.pid)} closed its IPC channel`) }) })
    heartbeat.onFrozen((ms) => {
      if (!this.watching || this.lostWhy !== undefined) return
      this.killedWhy = `successor ${String(child.pid)} answered no ping for ${ms} ms (successorLostAfter: its event loop is frozen) and was killed (SIGKILL)`
      // Killed before this process serves again: a frozen process still holds the listening socket and
      // would accept (and leave unanswered) connections the moment it ran again.
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      this.lose(this.killedWhy)
    })
  }

  /** Why the successor was lost while watched; undefined if it was not. */
  get lost (): string | undefined { return this.lostWhy }

  /** Watches the successor from now until `end()`: on loss, calls `onLost` once with why. */
  watch (onLost: (why: string) => void): void {
    this.onLost = onLost
    this.watching = true
  }

  /** The keys of the listening sockets whose copy this process keeps. */
  get keys (): string[] { return [...this.kept.keys()] }

  /** Hands the kept copies over, by key (a late rollback: the app's own servers listen on them); none is kept from then on. */
  take (): Map<string, unknown> {
    const out = new Map(this.kept)
    this.kept.clear()
    return out
  }

  /**
   * Accepts on the kept copies until `end()`, each connection going to `serverFor(key)` (this process
   * serves until its drain is over, without leaving it); returns the keys it accepts on.
   */
  accept (serverFor: (key: string) => net.Server | undefined): string[] {
    const keys: string[] = []
    for (const [key, handle] of this.kept) {
      const app = serverFor(key)
      if (app === undefined) continue
      const s = net.createServer((socket) => { app.emit('connection', socket) })
      s.on('error', () => {})
      try {
        s.listen(handle as net.ListenOptions)
        this.servers.push(s)
        keys.push(key)
      } catch {}
    }
    // The kept handles now belong to the servers accepting on them.
    for (const key of keys) this.kept.delete(key)
    return keys
  }

  /** The watch is over (the drain ended, or this process serves again): closes the copies left and what accepts on them. */
  end (): void {
    this.watching = false
    this.closed = true
    for (const s of this.servers) s.close()
    for (const h of this.kept.values()) closeHandle(h)
    this.kept.clear()
  }

  private lose (why: string): void {
    if (!this.watching || this.lostWhy !== undefined) return
    this.lostWhy = why
    this.onLost?.(why)
  }
}

function closeHandle (handle: unknown): void {
  try { (handle as { close?: () => void }).close?.() } catch {}
}
