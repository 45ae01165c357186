// Runs in the old process of a reboot: closes a Unix-socket listener without unlinking its path,
// which the successor still accepts on.
import * as fs from 'node:fs'

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
