// Runs in every process that shuts down (the old process of a reboot too): the one interface each
// kind of connection a server holds (HTTP/1.1 sockets, upgraded sockets, ...) is drained through.

/** The open connections of one kind on one server, and how to drain them. */
export interface ConnectionSet {
  /** Connections of this kind open now. */
  readonly size: number
  /**
   * The drain started: tell every connection that no further request is welcome, and close those
   * that carry none. Stays in effect for connections that arrive afterwards. Idempotent.
   */
  drain (): void
  /** Resolves once no connection of this kind is open. */
  whenEmpty (): Promise<void>
  /** The deadline passed: destroys every connection still open; returns how many. */
  destroyAll (): number
}

/** The callers of `whenEmpty()` of one set: resolved together when its last connection goes. */
export class EmptyWaiters {
  private waiters: Array<() => void> = []

  /** Resolves at once when `empty`, else at the next `wake()`. */
  wait (empty: boolean): Promise<void> {
    if (empty) return Promise.resolve()
    return new Promise((resolve) => { this.waiters.push(resolve) })
  }

  /** The set is empty: resolves every waiting caller. */
  wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const fn of w) fn()
  }
}
