// Runs in both processes (and the graceful-reboot CLI): whether the process a PID file names is the
// app that wrote it: a live Node process of the PID file's owner whose status file (owned by the same
// user) names it, written by that very process and not by an earlier one with the same pid. The CLI
// signals nothing else; a process that starts with a PID file naming another instance refuses.
import fs from 'node:fs'
import path from 'node:path'
import { PidFileError } from './errors'
import { alive, processFacts, type ProcessFacts } from './proc'
import { readOwned, statusFilePath, type StatusRecord } from './status-file'

/** Why a pid is not the app, or the app's status record and the uid its files belong to. */
export type AppCheck =
  | { app: true, record: StatusRecord, owner: number | undefined }
  | { app: false, why: string, /** The only fault is a missing status file (the app may be about to write it). */ noStatus?: boolean }

/** The names of Node's executable: node, nodejs, node20, node-22. */
const NODE = /^node(js)?(-?[0-9][0-9.]*)?$/

/** Whether the process runs Node: its executable (or, unreadable, its argv[0]) is named node, or is this process's own. */
function runsNode (f: ProcessFacts): boolean {
  if (f.exe !== undefined) {
    const exe = f.exe.replace(/ \(deleted\)$/, '')
    return NODE.test(path.basename(exe)) || exe === process.execPath
  }
  return f.argv0 !== undefined && (NODE.test(path.basename(f.argv0)) || f.argv0 === process.execPath)
}

/**
 * Whether process `pid`, named by `pidFile`, is the app. Rules, in order: the PID file is a regular
 * file (not a symbolic link); where /proc exists (Linux), the process runs as the user that owns the
 * PID file and its executable is Node; its status file `<pidFile>.<pid>.status` exists, is a regular
 * file of the PID file's owner and names `pid`; and when both the record and /proc give a start time,
 * they are equal (the record is not a leftover of an earlier process that had this pid).
 */
export function appProcess (pidFile: string, pid: number): AppCheck {
  let owner: number | undefined
  try {
    const st = fs.lstatSync(pidFile)
    if (st.isSymbolicLink()) return { app: false, why: `the PID file ${pidFile} is a symbolic link (the app writes a regular file)` }
    if (process.platform !== 'win32') owner = st.uid
  } catch (err) {
    return { app: false, why: `the PID file ${pidFile} cannot be read (${String((err as NodeJS.ErrnoException).code)})` }
  }
  const facts = processFacts(pid)
  if (facts !== undefined) {
    if (owner !== undefined && facts.uid !== undefined && facts.uid !== owner) {
      return { app: false, why: `process ${pid} runs as uid ${facts.uid}, but the PID file belongs to uid ${owner}` }
    }
    if (!runsNode(facts)) return { app: false, why: `process ${pid} is not a Node process (it runs ${facts.exe ?? facts.argv0 ?? 'an unknown program'})` }
  }
  const file = statusFilePath(pidFile, pid)
  let record: StatusRecord | undefined
  try {
    const parsed = JSON.parse(readOwned(file, owner)) as unknown
    if (typeof parsed === 'object' && parsed !== null && (parsed as StatusRecord).pid === pid) record = parsed as StatusRecord
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return { app: false, why: `process ${pid} has no status file ${file} (not the app, or it could not write it: see its log)`, noStatus: true }
    if (code === 'ELOOP') return { app: false, why: `its status file ${file} is a symbolic link` }
    if (code !== undefined) return { app: false, why: `its status file ${file} cannot be read (${code})` }
    if (!(err instanceof SyntaxError)) return { app: false, why: `its status file ${(err as Error).message} (the PID file's owner): not written by the app` }
  }
  if (record === undefined) return { app: false, why: `its status file ${file} does not hold a record of process ${pid}` }
  const ticks = facts?.startTicks
  if (record.startTicks !== undefined && ticks !== undefined && record.startTicks !== ticks) {
    return { app: false, why: `its status file ${file} was written by an earlier process with pid ${pid} (it started at tick ${record.startTicks}, this one at ${ticks}): a stale file` }
  }
  return { app: true, record, owner }
}

/**
 * The pid of another live instance of the app that `pidFile` names (not one of `mine`: this
 * process, the old process of its reboot), or undefined: no PID file, a stale pid, or a process that
 * is not the app (`appProcess`).
 */
export function otherInstance (pidFile: string, mine: ReadonlyArray<number | undefined>): number | undefined {
  let text: string
  try {
    text = fs.readFileSync(pidFile, 'utf8').trim()
  } catch {
    return undefined
  }
  const pid = Number(text)
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(pid) || pid < 1 || mine.includes(pid) || !alive(pid)) return undefined
  return appProcess(pidFile, pid).app ? pid : undefined
}

/**
 * Throws PidFileError (ERR_GRACEFUL_PID_FILE) when `pidFile` names another live instance of the app
 * (`otherInstance`): a second instance would take the PID file over and leave the first out of reach.
 */
export function refuseOtherInstance (pidFile: string, mine: ReadonlyArray<number | undefined>): void {
  const other = otherInstance(pidFile, mine)
  if (other === undefined) return
  throw new PidFileError(pidFile, `"pidFile" ${JSON.stringify(pidFile)} names process ${other}, another live instance of this app (a Node process of the same user whose status file names it): ` +
    `a second instance would take the PID file over and leave ${other} out of reach of the CLI; give each instance its own pidFile, or stop ${other} first`)
}
