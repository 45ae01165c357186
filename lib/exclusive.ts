// Runs in both processes: creates a file beside another under a name nobody can predict, and fails
// rather than follow what is already at that name (a planted file or symlink); used for the PID
// file's temp file and the hard link that keeps a Unix socket's path.
import * as crypto from 'node:crypto'

/** How many fresh names to try when one is taken (EEXIST) before giving up. */
const ATTEMPTS = 8

/**
 * Calls `create` with `${target}.<16 random hex digits>${suffix}` until it does not fail with EEXIST;
 * `create` must fail with EEXIST when the name exists (open with 'wx', link). Returns the name used
 * and what `create` returned. Any other error, or EEXIST on every attempt, is thrown.
 */
export function createBeside<T> (target: string, suffix: string, create: (name: string) => T): { name: string, value: T } {
  let last: unknown
  for (let i = 0; i < ATTEMPTS; i++) {
    const name = `${target}.${crypto.randomBytes(8).toString('hex')}${suffix}`
    try {
      return { name, value: create(name) }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      last = err
    }
  }
  throw last
}
