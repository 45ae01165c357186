// Runs in both processes: the PID file, its folder checked when the options are resolved (it must
// be the app's own), written atomically with mode 0644 (an exclusive temp file with an unpredictable
// name, then a rename) and removed only by the process whose pid it holds.
import * as fs from 'node:fs'
import * as path from 'node:path'
import { PidFileError } from './errors'
import { createBeside } from './exclusive'
import type { Logger } from './log'

/** The mode of the PID file and of the status files beside it: the app's user writes, everyone reads. */
export const FILE_MODE = 0o644

/** The user of this process (its effective uid), or undefined where there are no uids (Windows). */
function ownUid (): number | undefined {
  return process.geteuid?.()
}

/** A mode as `ls -ld` digits: 0755, 1777. */
export function octal (mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0')
}

/**
 * Throws PidFileError (ERR_GRACEFUL_PID_FILE) unless the PID file can be written and is the app's
 * own: its folder exists, is a folder and this process may create files in it, and the path itself
 * is not a folder; the folder belongs to this process's user or root; a folder that other users may
 * write to (group or others) must be sticky (/tmp), and then the PID file and this process's status
 * file, where they exist already, must belong to this process's user (not planted by another).
 */
export function checkPidFile (file: string, statusFile?: string): void {
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
  const problem = foreignFolder(dir, stat as fs.Stats, [file, ...(statusFile === undefined ? [] : [statusFile])])
  if (problem !== undefined) fail(problem)
}

/**
 * Why the folder `dir` (whose stat is `st`) is not the app's own, or undefined: it belongs to
 * another user than this process's and root; or others may write to it and it is not sticky; or it
 * is sticky and one of `files` exists and belongs to another user. Undefined where there are no uids.
 */
export function foreignFolder (dir: string, st: fs.Stats, files: string[]): string | undefined {
  const uid = ownUid()
  if (uid === undefined) return undefined
  const what = `its folder ${dir} (owner uid ${st.uid}, mode ${octal(st.mode)})`
  if (st.uid !== uid && st.uid !== 0) {
    return `${what} belongs to another user than this process's (uid ${uid}) and root, who could replace the PID file; use a folder of the app's own, owned by its user or root (e.g. /run/<app>, RuntimeDirectory= under systemd)`
  }
  if ((st.mode & 0o022) === 0) return undefined
  if ((st.mode & 0o1000) === 0) {
    return `${what} is writable by other users and not sticky: another user could replace the PID file or plant its status file; use a folder only the app's user may write to (chmod go-w ${dir}), e.g. /run/<app>`
  }
  for (const f of files) {
    let owner: number | undefined
    try { owner = fs.lstatSync(f).uid } catch {}
    if (owner !== undefined && owner !== uid) {
      return `${what} is writable by other users (sticky), and ${f} already exists and belongs to uid ${owner}, not to this process's user (uid ${uid}): another user's file that this process could not replace; remove it, or better use a folder of the app's own (e.g. /run/<app>)`
    }
  }
  return undefined
}

/**
 * Writes `text` to `file` atomically: into a new temp file beside it (created exclusively, under a
 * random name, so nothing planted there is written through, with `mode` whatever the umask), then
 * renamed over `file`. The temp file is removed on failure; the error is thrown as it came.
 */
export function writeAtomically (file: string, text: string, mode = FILE_MODE): void {
  let tmp: string | undefined
  let fd: number | undefined
  try {
    const created = createBeside(file, '.tmp', (name) => fs.openSync(name, 'wx', mode))
    tmp = created.name
    fd = created.value
    // The umask may have taken bits away: the mode is the one asked for.
    if (process.platform !== 'win32') fs.fchmodSync(fd, mode)
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
