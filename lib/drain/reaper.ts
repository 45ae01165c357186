// Runs in every process that shuts down (the old process of a reboot too): the idle reaper of the
// HTTP/1.1 drain: a connection that stays idle for its grace is closed; bytes that arrive meanwhile
// postpone the close, and a connection holding part of a request is left to complete it.
import type { Conn } from './http1-conn'
import type { ProcessSeam } from '../os'

export class IdleReaper {
  private readonly seam: ProcessSeam
  private readonly isTls: boolean
  /** Whether a connection is still one to reap: tracked by the drain, idle, nothing on its way. */
  private readonly idle: (c: Conn) => boolean
  /** Ms an idle keep-alive connection stays open. */
  readonly idleGrace: number
  /** Ms a connection that never sent a byte stays open (set when the drain starts: `neverSpokeGrace`). */
  silentGrace = 0
  /** Connections closed after their grace. */
  closed = 0

  constructor (seam: ProcessSeam, idleGrace: number, isTls: boolean, idle: (c: Conn) => boolean) {
    this.seam = seam
    this.idleGrace = idleGrace
    this.isTls = isTls
    this.idle = idle
  }

  /**
   * Closes an idle connection once it has stayed idle for the grace (`silentGrace` if it never sent a
   * byte). A request that arrives in the meantime gets `Connection: close`; bytes of a request still
   * arriving postpone the close, and a connection holding part of a request is left to complete it.
   */
  schedule (c: Conn): void {
    c.cancelReap?.()
    const bytes = c.http.bytesRead
    // Before its TLS handshake is done, a connection has sent no byte of HTTP.
    const silent = bytes === 0 || (this.isTls && c.http === c.raw)
    c.cancelReap = this.seam.timer(silent ? this.silentGrace : this.idleGrace, () => {
      c.cancelReap = undefined
      if (!this.reapable(c, bytes)) return
      // On a late event loop this timer can run before the poll phase reads a request already waiting
      // in the kernel: let that phase run once (an immediate comes after it), then decide.
      let cancelled = false
      c.cancelReap = () => { cancelled = true }
      setImmediate(() => {
        if (cancelled) return
        c.cancelReap = undefined
        if (!this.reapable(c, bytes)) return
        this.closed++
        c.http.destroy()
      })
    })
  }

  /**
   * Still idle since `bytes` were read: true to close it; reschedules the reap if bytes came meanwhile.
   * Part of a request read: a request in flight, not idle; its completion takes it on.
   */
  private reapable (c: Conn, bytes: number): boolean {
    if (!this.idle(c)) return false
    if (c.http.bytesRead !== bytes) {
      this.schedule(c)
      return false
    }
    return true
  }
}
