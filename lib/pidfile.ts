// Runs in both processes: the PID file, written atomically (temp file + rename) and removed only by
// the process whose pid it holds.
import * as fs from 'node:fs'

export function writePidFile (file: string, pid: number): void {
  const tmp = `${file}.${pid}.tmp`
  fs.writeFileSync(tmp, `${pid}\n`)
  fs.renameSync(tmp, file)
}

/** Removes the file if it still holds `pid`; returns whether it did. */
export function removePidFile (file: string, pid: number): boolean {
  try {
    if (fs.readFileSync(file, 'utf8').trim() !== String(pid)) return false
    fs.unlinkSync(file)
    return true
  } catch {
    return false
  }
}
