// Runs in the test process: a minimal EventSource (the WHATWG semantics a browser follows): it parses
// `id:`, `data:` and `retry:`, and when a stream ends it reconnects after the `retry` time with
// `Last-Event-ID`. Every failure (a cut stream, a refused connection, a status other than 200) is kept
// in `errors`, not retried silently.
import http from 'node:http'

export interface SseEvent {
  id: string | undefined
  data: string
  retry: number | undefined
  /** Which connection of this client (1, 2...) carried it. */
  connection: number
}

export class EventSourceClient {
  readonly events: SseEvent[] = []
  readonly errors: Error[] = []
  /** Streams that ended cleanly (the server ended the response). */
  ends = 0
  connections = 0
  lastEventId = ''
  retry = 3000
  private closed = false
  private readonly waiters = new Set<{ match: (e: SseEvent) => boolean, resolve: (e: SseEvent) => void }>()
  private current: http.ClientRequest | undefined
  private timer: NodeJS.Timeout | undefined

  /** `reconnect: false`: a stream that ends stays ended (no retry). */
  constructor (private readonly url: string, private readonly agent: http.Agent, private readonly reconnect = true) {
    this.connect()
  }

  /** Resolves with the first event (past or future) matching `match`; rejects after `timeoutMs`. */
  waitFor (match: (e: SseEvent) => boolean, what: string, timeoutMs = 20_000): Promise<SseEvent> {
    const seen = this.events.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const w = { match, resolve: (e: SseEvent) => { clearTimeout(timer); resolve(e) } }
      this.waiters.add(w)
      const timer = setTimeout(() => {
        this.waiters.delete(w)
        reject(new Error(`no SSE event ${what} within ${timeoutMs} ms; errors: ${this.errors.map(String).join('; ')}`))
      }, timeoutMs)
    })
  }

  close (): void {
    this.closed = true
    clearTimeout(this.timer)
    this.current?.destroy()
  }

  private connect (): void {
    if (this.closed) return
    const connection = ++this.connections
    const headers: Record<string, string> = { accept: 'text/event-stream' }
    if (this.lastEventId !== '') headers['last-event-id'] = this.lastEventId
    const req = http.get(this.url, { agent: this.agent, headers }, (res) => {
      if (res.statusCode !== 200) {
        this.fail(new Error(`status ${String(res.statusCode)}`))
        res.resume()
        return
      }
      let buffer = ''
      res.setEncoding('utf8').on('data', (chunk: string) => {
        buffer += chunk
        let at: number
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          this.dispatch(buffer.slice(0, at), connection)
          buffer = buffer.slice(at + 2)
        }
      })
      res.on('end', () => {
        this.ends++
        if (this.reconnect) this.timer = setTimeout(() => { this.connect() }, this.retry)
      })
      res.on('error', (err) => { this.fail(err) })
    })
    req.on('error', (err) => { this.fail(err) })
    this.current = req
  }

  private fail (err: Error): void {
    if (!this.closed) this.errors.push(err)
  }

  private dispatch (block: string, connection: number): void {
    const e: SseEvent = { id: undefined, data: '', retry: undefined, connection }
    const data: string[] = []
    for (const line of block.split('\n')) {
      const colon = line.indexOf(':')
      const field = colon < 0 ? line : line.slice(0, colon)
      const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '')
      if (field === 'data') data.push(value)
      else if (field === 'id') e.id = this.lastEventId = value
      else if (field === 'retry' && /^\d+$/.test(value)) e.retry = this.retry = Number(value)
    }
    e.data = data.join('\n')
    this.events.push(e)
    for (const w of [...this.waiters]) {
      if (w.match(e)) {
        this.waiters.delete(w)
        w.resolve(e)
      }
    }
  }
}
