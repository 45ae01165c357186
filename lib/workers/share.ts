// Runs in a worker of the supervisor (`graceful-reboot run --workers N`): keeps this worker's share of
// the keep-alive connections within the limit the supervisor sets. It counts the connections its
// HTTP servers hold and reports the count (coalesced); while the count is above the limit, the next
// request of each connection in excess is answered with `Connection: close`. Its client reconnects,
// and the kernel gives the new connection to another worker as often as not (the one with room, once
// this one stops taking more than its share). No request is refused or cut: only the keep-alive of a
// response whose head is not sent yet, on a connection with no other request behind it, is turned off.
import type * as http from 'node:http'
import type * as net from 'node:net'

/** Ms a change of the count waits before it is reported, so that a burst makes one report. */
export const REPORT_MS = 25

export class ConnectionShare {
  private open = 0
  /** Connections told to close (their `Connection: close` response is under way) and not closed yet. */
  private closing = 0
  private limit: number | undefined
  private paused = false
  private reported = -1
  private pending = false
  private readonly servers = new WeakSet<net.Server>()
  private readonly marked = new WeakSet<net.Socket>()
  private readonly report: (open: number) => void
  private readonly timer: (ms: number, fn: () => void) => void

  constructor (report: (open: number) => void, timer: (ms: number, fn: () => void) => void) {
    this.report = report
    this.timer = timer
  }

  /** Connections its servers hold now. */
  get connections (): number { return this.open }

  /** Counts `server`'s connections from now on, and answers its requests by the rule above. */
  watch (server: net.Server): void {
    if (this.servers.has(server)) return
    this.servers.add(server)
    server.on('connection', (socket: net.Socket) => {
      this.open++
      // A new connection: the limit was set from counts that are no longer the counts (a burst may be
      // arriving at every worker); the supervisor sets the next once they settle (reported even if
      // the count is back where it was).
      if (this.limit !== undefined) this.reported = -1
      this.limit = undefined
      socket.once('close', () => {
        this.open--
        this.changed()
      })
      this.changed()
    })
    server.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => { this.request(req, res) })
  }

  /**
   * The most connections this worker should hold (undefined: no limit), set from `basis`, the count
   * the supervisor had from this worker: ignored unless that is still the count.
   */
  setLimit (limit: number | undefined, basis?: number): void {
    this.limit = basis === undefined || basis === this.open ? limit : undefined
  }

  /** No connection is told to close while this worker reboots or drains (its drain and its moves decide). */
  pause (paused: boolean): void {
    this.paused = paused
  }

  private request (req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.paused || this.limit === undefined || this.open - this.closing <= this.limit) return
    const socket = req.socket
    if (this.marked.has(socket) || res.headersSent || !res.shouldKeepAlive) return
    // A request pipelined behind this one would be lost with the connection: leave it open.
    if ((socket as net.Socket & { parser?: { incoming?: unknown } | null }).parser?.incoming !== req) return
    res.shouldKeepAlive = false
    this.marked.add(socket)
    this.closing++
    // The request's socket (a TLS socket over the accepted one, for HTTPS) closes with the connection.
    socket.once('close', () => { this.closing-- })
  }

  private changed (): void {
    if (this.pending) return
    this.pending = true
    this.timer(REPORT_MS, () => {
      this.pending = false
      if (this.open === this.reported) return
      this.reported = this.open
      this.report(this.open)
    })
  }
}
