// Runs in the old process of a reboot (called from the drain): closes a Unix-socket listener without unlinking its path,
// which the successor still accepts on.
import * as fs from 'node:fs'
import { createBeside } from '../exclusive'

/**
 * Runs `close` (which closes the listening handle of a Unix-socket server) without losing the
 * socket's path: libuv unlinks the path of a pipe it bound when its handle closes, but the
 * successor still accepts on that socket. A hard link keeps the path across the close; its name is
 * random (a fresh one is tried if taken), so a file planted at a predictable name cannot make the
 * link fail and the path be lost.
 */
export function keepingPath (path: string, close: () => void): void {
  let keep: string | undefined
  try {
    keep = createBeside(path, '.keep', (name) => { fs.linkSync(path, name) }).name
  } catch {}
  close()
  if (keep !== undefined) {
    try { fs.renameSync(keep, path) } catch {}
  }
}
