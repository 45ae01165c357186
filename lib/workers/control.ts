// Runs in the supervisor: its control socket, and who may speak on it. Every connection must open with
// a `hello` that carries the supervisor's secret and names a pid the supervisor admits (a worker it
// started, or a process a worker's reboot started: the environment that process was started with holds
// the secret and names that worker as its old process). Anything else is dropped and logged: a missing
// or wrong secret, a bad pid or slot, a pid already connected, a line longer than MAX_LINE_BYTES, no
// hello within HELLO_TIMEOUT_MS. After the hello, the connection's lines are its worker's.
import { timingSafeEqual } from 'node:crypto'
import * as net from 'node:net'
import { PARENT_ENV } from '../handoff/protocol'
import { SECRET_ENV, jsonLines, type WorkerToSupervisor } from './protocol'

/** Ms a connection to the control socket has to say a valid `hello` before it is closed. */
export const HELLO_TIMEOUT_MS = 5_000

export type Hello = Extract<WorkerToSupervisor, { type: 'hello' }>

export interface ControlContext<W> {
  readonly secret: string
  /** Slots are 1..slots. */
  readonly slots: number
  timer (ms: number, fn: () => void): () => void
  warn (msg: string, fields: Record<string, unknown>): void
  alive (pid: number): boolean
  environ (pid: number): string | undefined
  /** The worker a hello names (its secret, pid and slot checked), or why the supervisor does not know it. */
  admit (hello: Hello, startedByReboot: (parent: number) => string | undefined): W | string
  /** A worker's connection passed its hello. */
  joined (worker: W, conn: net.Socket): void
  /** A line from a worker after its hello. */
  message (worker: W, m: WorkerToSupervisor): void
  /** A worker's connection closed. */
  closed (worker: W): void
}

export class ControlSocket<W> {
  private readonly ctx: ControlContext<W>
  private readonly server: net.Server
  /** Connections that have not said a valid `hello` yet. */
  private readonly strangers = new Set<net.Socket>()
  private refusing: string | undefined

  constructor (ctx: ControlContext<W>) {
    this.ctx = ctx
    this.server = net.createServer((conn) => { this.accept(conn) })
  }

  listen (path: string): Promise<void> {
    return new Promise((resolve, reject) => { this.server.once('error', reject).listen(path, resolve) })
  }

  /** No new connection is taken from now on (`why` is logged), and those that have not said hello are closed. */
  refuse (why: string): void {
    this.refusing = why
    for (const c of this.strangers) c.destroy()
    this.strangers.clear()
  }

  close (): void {
    this.server.close()
  }

  private accept (conn: net.Socket): void {
    let worker: W | undefined
    this.strangers.add(conn)
    const drop = (why: string, fields: Record<string, unknown> = {}): void => {
      this.ctx.warn(`graceful-reboot: supervisor: dropped a connection to the control socket: ${why}`, fields)
      this.strangers.delete(conn)
      conn.destroy()
    }
    if (this.refusing !== undefined) { drop(this.refusing); return }
    const cancel = this.ctx.timer(HELLO_TIMEOUT_MS, () => { if (worker === undefined && !conn.destroyed) drop(`no valid hello within ${HELLO_TIMEOUT_MS} ms`) })
    conn.setEncoding('utf8').on('data', jsonLines((raw) => {
      const m = raw as WorkerToSupervisor
      if (worker !== undefined) {
        this.ctx.message(worker, m)
        return
      }
      if (m.type !== 'hello') { drop(`"${String(m.type)}" before a hello`); return }
      const verdict = this.check(m)
      if (typeof verdict === 'string') { drop(verdict, { pid: m.pid }); return }
      cancel()
      this.strangers.delete(conn)
      worker = verdict
      this.ctx.joined(worker, conn)
    }, undefined, () => { drop('a line longer than the control protocol allows') }))
    conn.on('error', () => {})
    conn.on('close', () => {
      cancel()
      this.strangers.delete(conn)
      if (worker !== undefined) this.ctx.closed(worker)
    })
  }

  /** The worker a `hello` names, or why it is not one of this supervisor's. */
  private check (m: Hello): W | string {
    const { pid, slot } = m
    if (typeof m.secret !== 'string' || !sameSecret(m.secret, this.ctx.secret)) return 'a hello without the supervisor\'s secret'
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 2) return `a hello with a bad pid ${JSON.stringify(pid)}`
    if (typeof slot !== 'number' || !Number.isInteger(slot) || slot < 1 || slot > this.ctx.slots) return `a hello with a bad slot ${JSON.stringify(slot)}`
    return this.ctx.admit(m, (parent) => {
      if (!this.ctx.alive(pid)) return `pid ${pid} is not running`
      const environ = this.ctx.environ(pid)
      // Where the start environment cannot be read (not Linux), the old worker's word is all there is.
      if (environ === undefined) return undefined
      const vars = environ.split('\0')
      return vars.includes(`${SECRET_ENV}=${this.ctx.secret}`) && vars.includes(`${PARENT_ENV}=${parent}`) ? undefined : `pid ${pid} was not started by the reboot of worker ${parent}`
    })
  }
}

function sameSecret (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}
