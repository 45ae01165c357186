// Runs in both processes: the PID file, its folder checked when the options are resolved, written
// atomically (an exclusive temp file with an unpredictable name, then a rename) and removed only by
// the process whose pid it holds.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { PidFileError } from './errors'
import { createBeside } from './exclusive'
import type { Logger } from './log'

/**
 * Throws PidFileError (ERR_GRACEFUL_PID_FILE) unless the PID file can be written: its folder exists,
 * is a folder and this process may create files in it, and the path itself is not a folder.
 */
export function checkPidFile (file: string): void {
  const dir = path.dirname(path.resolve(file))
  const fail = (problem: string, err?: unknown): never => {
    throw new PidFileError(file, `"pidFile" ${JSON.stringify(file)} cannot be written: ${problem}`, { cause: err })
  }
  let stat: fs.Stats | undefined
  try {
    stat = fs.statSync(dir)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    fail(code === 'ENOENT' ? `its folder ${dir} does not exist` : `its folder ${dir} cannot be reached (${String(code)})`, err)
  }
  if (stat?.isDirectory() !== true) fail(`${dir} is not a folder`)
  try {
    fs.accessSync(dir, fs.constants.W_OK | fs.constants.X_OK)
  } catch (err) {
    fail(`its folder ${dir} is not writable by this process (${String((err as NodeJS.ErrnoException).code)})`, err)
  }
  let isDir = false
  try {
    isDir = fs.statSync(file).isDirectory()
  } catch {}
  if (isDir) fail('it is a folder')
}

/**
 * Writes `text` to `file` atomically: into a new temp file beside it (created exclusively, under a
 * random name, so nothing planted there is written through), then renamed over `file`. The temp file
 * is removed on failure; the error is thrown as it came.
 */
export function writeAtomically (file: string, text: string): void {
  let tmp: string | undefined
  let fd: number | undefined
  try {
    const created = createBeside(file, '.tmp', (name) => fs.openSync(name, 'wx'))
    tmp = created.name
    fd = created.value
    fs.writeFileSync(fd, text)
    fs.closeSync(fd)
    fd = undefined
    fs.renameSync(tmp, file)
  } catch (err) {
    if (fd !== undefined) try { fs.closeSync(fd) } catch {}
    if (tmp !== undefined) try { fs.unlinkSync(tmp) } catch {}
    throw err
  }
}

/** Writes `pid` to `file` atomically (`writeAtomically`). Throws PidFileError naming the file and the cause. */
export function writePidFile (file: string, pid: number): void {
  try {
    writeAtomically(file, `${pid}\n`)
  } catch (err) {
    throw new PidFileError(file, `could not write the PID file ${JSON.stringify(file)}: ${(err as Error).message}`, { cause: err })
  }
}

/** After a failed reboot: `file` (which the successor may have rewritten) names `pid` again; logs, never throws, when it cannot. */
export function restorePidFile (file: string | undefined, pid: number, log: Logger): void {
  if (file === undefined) return
  try {
    writePidFile(file, pid)
  } catch (err) {
    log.error({ err, pidFile: file }, 'graceful-reboot: could not restore the PID file')
  }
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
