// Runs in both processes: wraps a server's listen() so that the old process knows which key names
// each listening socket, and the new process adopts the inherited socket instead of binding.
import fs from 'node:fs'
import type net from 'node:net'
import { listenKey, parseListenArgs } from './keys'
import type { Inherited } from '../incoming/inherited'

/** A socket this process listens on, as the reboot passes it to a successor. */
export interface Listener {
  server: net.Server
  key: string
  /** Whether the socket came from the old process (or systemd) rather than from a bind. */
  adopted: boolean
}

const listeners = new Map<net.Server, Listener>()
const seen = new Map<string, number>()
const WRAPPED = Symbol('graceful-reboot.listen')

/** Listening sockets of every tracked server, in the order they were asked for. */
export function listeningSockets (): Array<Listener & { fd: number }> {
  const out: Array<Listener & { fd: number }> = []
  for (const l of listeners.values()) {
    const fd = (l.server as unknown as { _handle?: { fd?: number } | null })._handle?.fd
    if (l.server.listening && typeof fd === 'number' && fd >= 0) out.push({ ...l, fd })
  }
  return out
}

export function forgetServer (server: net.Server): void {
  listeners.delete(server)
}

/**
 * Replaces `server.listen` with one that records the requested address and, when an inherited
 * socket matches it, listens on that fd instead. `onListening` runs after each successful listen.
 */
export function wrapListen (server: net.Server, from: Inherited, onListening: (l: Listener) => void): void {
  const s = server as net.Server & { [WRAPPED]?: true }
  if (s[WRAPPED] === true) return
  s[WRAPPED] = true
  const original = server.listen
  server.listen = function listen (this: net.Server, ...args: unknown[]): net.Server {
    const req = parseListenArgs(args)
    const base = req === undefined ? undefined : listenKey(req)
    if (req === undefined || base === undefined) return original.apply(this, args as Parameters<net.Server['listen']>)
    const n = (seen.get(base) ?? 0) + 1
    seen.set(base, n)
    const key = n === 1 ? base : `${base}#${n}`
    const fd = from.take(key)
    const record: Listener = { server: this, key, adopted: fd !== undefined }
    this.once('listening', () => {
      listeners.set(this, record)
      onListening(record)
    })
    this.once('close', () => { listeners.delete(this) })
    if (fd === undefined) return original.apply(this, args as Parameters<net.Server['listen']>)
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
    void from.whenParentGone().then(go)
    return this
  } as net.Server['listen']
}

/**
 * Runs `close` (which closes the listening handle of a Unix-socket server) without losing the
 * socket's path: libuv unlinks the path of a pipe it bound when its handle closes, but the
 * successor still accepts on that socket. A hard link keeps the path across the close.
 */
export function keepingPath (path: string, close: () => void): void {
  const keep = `${path}.${process.pid}.keep`
  let linked = false
  try {
    fs.linkSync(path, keep)
    linked = true
  } catch {}
  close()
  if (linked) {
    try { fs.renameSync(keep, path) } catch {}
  }
}
