// Runs in both processes: the stable key that names a listening socket in LISTEN_FDNAMES, computed
// from what the app asked listen() for, so the old and the new process compute the same key.

/** What a listen() call asked for, whatever form its arguments took. */
export interface ListenRequest {
  port: number | undefined
  host: string | undefined
  path: string | undefined
  fd: number | undefined
  /** The listen() arguments other than the address, kept to pass on (backlog, callback...). */
  backlog: number | undefined
  callback: ((...args: unknown[]) => void) | undefined
  /** The options object when listen() got one (ipv6Only, exclusive, signal...). */
  options: Record<string, unknown> | undefined
}

/**
 * Normalises net.Server#listen arguments: (port[, host][, backlog][, cb]), (path[, backlog][, cb]),
 * (options[, cb]) and (handle[, backlog][, cb]). Returns undefined for forms it does not know
 * (a handle object), which are passed through untouched.
 */
export function parseListenArgs (args: readonly unknown[]): ListenRequest | undefined {
  const rest = [...args]
  let callback: ListenRequest['callback']
  if (typeof rest[rest.length - 1] === 'function') callback = rest.pop() as ListenRequest['callback']
  const first = rest[0]
  const base = { callback, backlog: undefined, options: undefined, port: undefined, host: undefined, path: undefined, fd: undefined }
  if (first === undefined || first === null || typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    const host = typeof rest[1] === 'string' ? rest[1] : undefined
    const backlogAt = host === undefined ? 1 : 2
    return { ...base, port: first == null ? 0 : Number(first), host, backlog: typeof rest[backlogAt] === 'number' ? rest[backlogAt] as number : undefined }
  }
  if (typeof first === 'string') {
    return { ...base, path: first, backlog: typeof rest[1] === 'number' ? rest[1] : undefined }
  }
  if (typeof first === 'object') {
    const o = first as Record<string, unknown>
    if ('_handle' in o || 'fd' in o && typeof o.fd === 'number' && o.port === undefined && o.path === undefined) {
      if (typeof o.fd === 'number') return { ...base, fd: o.fd, options: o }
      return undefined
    }
    return {
      ...base,
      options: o,
      port: o.port === undefined || o.port === null ? (typeof o.path === 'string' ? undefined : 0) : Number(o.port),
      host: typeof o.host === 'string' ? o.host : undefined,
      path: typeof o.path === 'string' ? o.path : undefined,
      backlog: typeof o.backlog === 'number' ? o.backlog : undefined
    }
  }
  return undefined
}

/** `tcp:HOST:PORT` (HOST empty for "all interfaces") or `unix:PATH`, as asked, not as bound. */
export function listenKey (req: ListenRequest): string | undefined {
  if (req.path !== undefined) return `unix:${req.path}`
  if (req.port !== undefined) return `tcp:${req.host ?? ''}:${req.port}`
  return undefined
}

/** True for names this package writes into LISTEN_FDNAMES (as opposed to systemd's own names). */
export function isListenKey (name: string): boolean {
  return name.startsWith('tcp:') || name.startsWith('unix:')
}
