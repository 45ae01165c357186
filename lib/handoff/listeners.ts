// Runs in both processes: wraps a server's listen() so that the old process knows which key names
// each listening socket (to pass it to a successor), and the new process adopts the inherited socket
// instead of binding. The registry lives on the process-wide lifecycle, shared by every copy of the package.
import * as fs from 'node:fs'
import * as net from 'node:net'
import { listenKey, parseListenArgs, type ListenRequest } from './keys'

/** A socket this process listens on, as the reboot passes it to a successor. */
export interface Listener {
  server: net.Server
  key: string
  /** Whether the socket came from the old process (or systemd) rather than from a bind. */
  adopted: boolean
  /** A Unix socket's path, when the socket was adopted (no bind of ours: closing it unlinks nothing). */
  path?: string
}

/**
 * Unlinks the paths of adopted Unix sockets once this process, the last of its line, has closed them
 * (libuv unlinks only a path it bound): a fresh start would fail with EADDRINUSE. Only sockets: a file
 * put there since is left alone.
 */
export function removeSocketPaths (paths: readonly string[]): void {
  for (const p of paths) {
    try {
      if (fs.lstatSync(p).isSocket()) fs.unlinkSync(p)
    } catch {}
  }
}

/** Marks a server whose listen() is wrapped, whichever copy of the package wrapped it. */
const WRAPPED = Symbol.for('graceful-reboot.listen')

/** The listening sockets of every tracked server in the process. */
/** What a listen() adopts from: the sockets this process inherited (filled in by incoming/inherited.ts). */
export interface InheritedSockets {
  /** The inherited fd for a listen() on `key`, marked adopted; undefined when none matches. */
  take (key: string): number | undefined
  /** false, or the longest wait (ms) for the old process to exit before accepting. */
  readonly stateful: number | false
  /** Resolves once the old process has exited (stateful reboot), or after the stateful wait. */
  whenParentGone (): Promise<void>
}

export class ListenerRegistry {
  private readonly listeners = new Map<net.Server, Listener>()
  /** The last server that listened under each key and closed since (a late rollback listens on it again). */
  private readonly closed = new Map<string, Listener>()
  /** How many listen() calls asked for each key, so a second server on the same address gets `key#2`. */
  private readonly seen = new Map<string, number>()

  /**
   * A start over (registering after a completed shutdown): listen() numbers keys again from the
   * servers that still listen, as a successor started now would.
   */
  restart (): void {
    this.seen.clear()
    for (const l of this.listeners.values()) {
      if (!l.server.listening) continue
      const base = l.key.replace(/#\d+$/, '')
      this.seen.set(base, (this.seen.get(base) ?? 0) + 1)
    }
  }

  /** Listening sockets of every tracked server, in the order they were asked for. */
  sockets (): Array<Listener & { fd: number }> {
    const out: Array<Listener & { fd: number }> = []
    for (const l of this.listeners.values()) {
      const fd = (l.server as unknown as { _handle?: { fd?: number } | null })._handle?.fd
      if (l.server.listening && typeof fd === 'number' && fd >= 0) out.push({ ...l, fd })
    }
    return out
  }

  /** How many listening sockets the tracked servers hold (`sockets().length`): a reboot with none is refused. */
  count (): number { return this.sockets().length }

  /** The paths of the adopted Unix sockets that tracked servers listen on. */
  adoptedPaths (): string[] {
    return [...this.listeners.values()].flatMap((l) => l.server.listening && l.path !== undefined ? [l.path] : [])
  }

  /** The key a tracked server listens under (what a successor calls it), if it listens. */
  keyOf (server: net.Server): string | undefined {
    return this.listeners.get(server)?.key
  }

  /** The tracked server listening under `key`, if any. */
  serverFor (key: string): net.Server | undefined {
    for (const l of this.listeners.values()) if (l.key === key) return l.server
    return undefined
  }

  /** The server that listens, or last listened, under `key`. */
  lastServerFor (key: string): net.Server | undefined {
    return this.serverFor(key) ?? this.closed.get(key)?.server
  }

  /**
   * A late rollback: the server that listened under `key` listens again, on `handle` (a copy of that
   * same socket, kept while a successor served), under the same key. False when no server listened
   * under it, or it listens already, or the listen throws.
   */
  relisten (key: string, handle: unknown): boolean {
    const record = [...this.listeners.values()].find((l) => l.key === key) ?? this.closed.get(key)
    if (record === undefined || record.server.listening) return false
    try {
      // Past the wrapper: the socket is this server's own, not one to adopt or to record a second time.
      net.Server.prototype.listen.call(record.server, handle as net.ListenOptions)
    } catch {
      return false
    }
    this.closed.delete(key)
    this.listeners.set(record.server, record)
    this.untilClosed(record)
    return true
  }

  /** Forgets `record` once its server closes (keeping it as the last one of its key). */
  private untilClosed (record: Listener): void {
    record.server.once('close', () => {
      if (this.listeners.get(record.server) !== record || record.server.listening) return
      this.listeners.delete(record.server)
      this.closed.set(record.key, record)
    })
  }

  /**
   * Replaces `server.listen` with one that records the requested address and, when an inherited
   * socket matches it, listens on that fd instead. `on.listening` runs after each successful listen;
   * `on.unmatched` when a listen() binds an address that no inherited socket matched; `on.bind`, if
   * it returns options, gives the options such a listen() binds with instead of its own.
   */
  wrap (server: net.Server, from: InheritedSockets, on: { listening: (l: Listener) => void, unmatched: (key: string) => void, bind?: (key: string, req: ListenRequest) => net.ListenOptions | undefined }): void {
    const onListening = on.listening
    const s = server as net.Server & { [WRAPPED]?: true }
    if (s[WRAPPED] === true) return
    s[WRAPPED] = true
    const original = server.listen
    const { listeners, seen } = this
    const untilClosed = (record: Listener): void => { this.untilClosed(record) }
    server.listen = function listen (this: net.Server, ...args: unknown[]): net.Server {
      const req = parseListenArgs(args)
      const base = req === undefined ? undefined : listenKey(req)
      if (req === undefined || base === undefined) return original.apply(this, args as Parameters<net.Server['listen']>)
      const n = (seen.get(base) ?? 0) + 1
      seen.set(base, n)
      const key = n === 1 ? base : `${base}#${n}`
      const fd = from.take(key)
      const record: Listener = { server: this, key, adopted: fd !== undefined }
      if (fd !== undefined && req.path !== undefined) record.path = req.path
      this.once('listening', () => {
        listeners.set(this, record)
        onListening(record)
      })
      untilClosed(record)
      if (fd === undefined) {
        on.unmatched(key)
        const instead = on.bind?.(key, req)
        if (instead !== undefined) return req.callback === undefined ? original.call(this, instead) : original.call(this, instead, req.callback)
        return original.apply(this, args as Parameters<net.Server['listen']>)
      }
      // Node answers address() of a pipe from the path it bound; an adopted one has none of its own.
      if (req.path !== undefined) (this as net.Server & { _pipeName?: string })._pipeName = req.path
      const options: net.ListenOptions & { fd: number } = { fd }
      if (req.backlog !== undefined) options.backlog = req.backlog
      if (req.options?.signal !== undefined) options.signal = req.options.signal as AbortSignal
      const go = (): net.Server => req.callback === undefined ? original.call(this, options) : original.call(this, options, req.callback)
      if (from.stateful === false) return go()
      // Stateful: the socket is ours and we are ready to take over, but we accept only once the old
      // process has exited (new connections wait in the kernel's accept queue meanwhile).
      onListening(record)
      // A listen() that throws then (its arguments, a server listening already) is the server's 'error', as any listen error.
      void from.whenParentGone().then(go).catch((err: unknown) => { this.emit('error', err) })
      return this
    } as net.Server['listen']
  }
}
