// Runs in the old process of a reboot: the standby. After ready the successor sends back a copy of each
// listening socket (LISTENER_MESSAGE), which this process keeps without accepting. From the start of
// its drain until the drain is over, it watches the successor (exit, IPC channel closed, event loop not
// answering pings for UNRESPONSIVE_MS). On loss it accepts on the kept sockets again, handing each new
// connection to the app's server for that listener, and says so once; when the drain is over it closes
// the copies (the process then exits with exitCodes.successorLost: the supervisor restarts it).
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
  private onLost: ((why: string, keys: string[]) => void) | undefined
  private serverFor: ((key: string) => net.Server | undefined) | undefined

  constructor (child: ChildProcess, heartbeat: Heartbeat, timer: (ms: number, fn: () => void) => () => void) {
    child.on('message', (m: unknown, handle: unknown) => {
      if (messageType(m) !== LISTENER_MESSAGE || handle == null) return
      const key = (m as Extract<NewToOld, { type: typeof LISTENER_MESSAGE }>).key
      // A copy that arrives once the drain is over is not needed.
      if (this.closed) closeHandle(handle)
      else this.kept.set(key, handle)
    })
    child.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      this.lose(`successor ${String(child.pid)} ${signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`}`)
    })
    // A process that dies closes its channel first: its exit, which names why, follows at once.
    child.once('disconnect', () => { timer(EXIT_WAIT_MS, () => { this.lose(`successor ${String(child.pid)} closed its IPC channel`) }) })
    heartbeat.onUnresponsive((ms) => { this.lose(`successor ${String(child.pid)} did not answer a ping for ${ms} ms (its event loop is blocked)`) })
  }

  private closed = false

  /** Why the successor was lost while watched; undefined if it was not. */
  get lost (): string | undefined { return this.lostWhy }

  /**
   * Watches the successor from now until `end()`: on loss, accepts on the kept sockets (each connection
   * goes to `serverFor(key)`) and calls `onLost` once with why and the keys it listens on again.
   */
  watch (serverFor: (key: string) => net.Server | undefined, onLost: (why: string, keys: string[]) => void): void {
    this.serverFor = serverFor
    this.onLost = onLost
    this.watching = true
  }

  /** The drain is over: stops watching and closes the copies (and what accepts on them). */
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
    const keys: string[] = []
    for (const [key, handle] of this.kept) {
      const app = this.serverFor?.(key)
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
    this.onLost?.(why, keys)
  }
}

function closeHandle (handle: unknown): void {
  try { (handle as { close?: () => void }).close?.() } catch {}
}
