// Runs in the test process: boots a real systemd as PID 1 of a PID namespace of its own, with private
// /tmp and /run (a naive boot's systemd-tmpfiles would empty the machine's /tmp) and a target of its
// own that starts nothing but what the test asks for; drives it with `nsenter ... systemctl`; powers it
// off (and SIGKILLs it, which ends every process of the namespace) in teardown. Also reads the JSON
// lines a service appends to a file (`StandardOutput=append:`), waiting on them as on a fixture's.
import { execFileSync, spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import type { ExecutionContext } from 'ava'
import type { FixtureEvent } from './fixture'

const SYSTEMD = '/lib/systemd/systemd'
const TARGET = 'graceful-reboot-test.target'

/** Why systemd cannot be booted here (not root, a binary missing), or undefined when it can. */
export function systemdProblem (): string | undefined {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'not root (a PID namespace and mounts need it)'
  if (!fs.existsSync(SYSTEMD)) return `no ${SYSTEMD}`
  for (const bin of ['unshare', 'nsenter', 'systemctl', 'systemd-notify']) {
    try {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' })
    } catch {
      return `no ${bin}`
    }
  }
  return undefined
}

export interface CtlResult { code: number | null, stdout: string, stderr: string }

export interface Systemd {
  /** The host's pid of the namespace's PID 1 (systemd). */
  readonly pid: number
  /** A folder outside /tmp (which systemd sees as its own tmpfs) shared by the test and the services. */
  readonly dir: string
  /** `systemctl ARGS...` inside the namespace. */
  ctl: (...args: string[]) => Promise<CtlResult>
  /** `systemctl show UNIT -p ...` as a record. */
  show: (unit: string, ...props: string[]) => Promise<Record<string, string>>
  /** Runs a command inside the namespace (its pids, its /proc). */
  run: (command: string, ...args: string[]) => Promise<CtlResult>
}

function collect (command: string, args: string[], timeoutMs: number): Promise<CtlResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/**
 * Boots systemd with the units `unitsIn(dir, visible)` gives (file name -> text) in /run/systemd/system and a
 * target that wants nothing else; resolves once it has started that target.
 */
export async function bootSystemd (t: ExecutionContext, unitsIn: (dir: string, visible: (hostPath: string) => string) => Record<string, string>): Promise<Systemd> {
  const dir = fs.mkdtempSync('/var/tmp/graceful-reboot-systemd-')
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  fs.mkdirSync(path.join(dir, 'units'))
  // The machine's /tmp (where CI's Node binaries or a clone may live), bound read-only under dir
  // before the private tmpfs hides it: `visible` gives the path a service sees for a host path.
  const hostTmp = path.join(dir, 'host-tmp')
  fs.mkdirSync(hostTmp)
  const visible = (hostPath: string): string => {
    const real = fs.realpathSync(hostPath)
    return real === '/tmp' || real.startsWith('/tmp/') ? path.join(hostTmp, real.slice('/tmp'.length)) : real
  }
  const units = unitsIn(dir, visible)
  const booted = path.join(dir, 'booted')
  execFileSync('mkfifo', [booted])
  const all: Record<string, string> = {
    ...units,
    [TARGET]: `[Unit]\nDescription=graceful-reboot test target\nDefaultDependencies=no\nWants=graceful-reboot-booted.service\n`,
    'graceful-reboot-booted.service': `[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo booted > ${booted}'\n`
  }
  for (const [name, text] of Object.entries(all)) fs.writeFileSync(path.join(dir, 'units', name), text)
  const script = [
    'set -e',
    `mount --bind /tmp ${hostTmp}`,
    `mount -o remount,bind,ro ${hostTmp}`,
    'mount -t tmpfs tmpfs /tmp',
    'mount -t tmpfs tmpfs /run',
    'mkdir -p /run/systemd/system',
    `cp ${dir}/units/* /run/systemd/system/`,
    'echo booting',
    `exec ${SYSTEMD} --system --unit=${TARGET} --log-target=console --show-status=no`
  ].join('\n')
  fs.writeFileSync(path.join(dir, 'boot.sh'), script)
  const unshare = spawn('unshare', ['--pid', '--fork', '--mount-proc', '--mount', '--propagation', 'private', '/bin/sh', path.join(dir, 'boot.sh')], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  unshare.stderr.setEncoding('utf8').on('data', (s: string) => { log += s })
  const unsharePid = unshare.pid
  if (unsharePid === undefined) throw new Error('could not run unshare')
  let pid = 0
  t.teardown(async () => {
    if (pid !== 0) await collect('nsenter', ['-t', String(pid), '-p', '-m', 'systemctl', 'poweroff', '--force', '--force'], 5000)
    for (const p of [pid, unsharePid]) {
      try { if (p !== 0) process.kill(p, 'SIGKILL') } catch {}
    }
  })
  const exited = new Promise<never>((_resolve, reject) => {
    unshare.once('exit', (code, signal) => { reject(new Error(`systemd's namespace ended (code ${String(code)}, signal ${String(signal)}) before it booted:\n${log}`)) })
  })
  exited.catch(() => {})
  await Promise.race([new Promise<void>((resolve) => {
    unshare.stdout.setEncoding('utf8').on('data', (s: string) => { log += s; if (log.includes('booting')) resolve() })
  }), exited])
  // The shell printed 'booting' and exec'd systemd: it is unshare's only child.
  const children = fs.readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').trim().split(/\s+/).map(Number)
  pid = children[0] ?? 0
  if (pid === 0) throw new Error(`no systemd under unshare ${unsharePid}`)
  // Opening the FIFO returns once the target's oneshot writes to it.
  const reading = new Promise<string>((resolve, reject) => {
    fs.readFile(booted, 'utf8', (err, text) => { if (err === null) resolve(text); else reject(err) })
  })
  // Not booted in 30 s: the test writes to the FIFO itself, which ends the wait.
  const limit = setTimeout(() => { try { fs.writeFileSync(booted, 'timeout\n') } catch {} }, 30_000)
  const said = await Promise.race([reading, exited])
  clearTimeout(limit)
  if (said.trim() !== 'booted') throw new Error(`systemd did not start ${TARGET} within 30 s:\n${log}`)
  const ns = ['-t', String(pid), '-p', '-m']
  const ctl = (...args: string[]): Promise<CtlResult> => collect('nsenter', [...ns, 'systemctl', '--no-pager', ...args], 120_000)
  return {
    pid,
    dir,
    ctl,
    run: (command, ...args) => collect('nsenter', [...ns, command, ...args], 30_000),
    show: async (unit, ...props) => {
      const r = await ctl('show', unit, ...props.flatMap((p) => ['-p', p]))
      const out: Record<string, string> = {}
      for (const line of r.stdout.split('\n')) {
        const at = line.indexOf('=')
        if (at > 0) out[line.slice(0, at)] = line.slice(at + 1)
      }
      return out
    }
  }
}

export interface LineFile {
  readonly lines: FixtureEvent[]
  /** Resolves with the first line (past or future) matching `match`; rejects after `timeoutMs`. */
  waitFor: (match: (e: FixtureEvent) => boolean, timeoutMs?: number) => Promise<FixtureEvent>
  /** Everything in the file, JSON or not (a service's stderr goes there too). */
  text: () => string
}

/** Follows the JSON lines appended to `file` (created empty) by processes the test did not start. */
export function followLines (t: ExecutionContext, file: string): LineFile {
  fs.writeFileSync(file, '')
  const lines: FixtureEvent[] = []
  const waiters = new Set<{ match: (e: FixtureEvent) => boolean, resolve: (e: FixtureEvent) => void }>()
  let all = ''
  let offset = 0
  let partial = ''
  const read = (): void => {
    const fd = fs.openSync(file, 'r')
    try {
      const buf = Buffer.alloc(1 << 16)
      for (;;) {
        const n = fs.readSync(fd, buf, 0, buf.length, offset)
        if (n === 0) break
        offset += n
        partial += buf.subarray(0, n).toString('utf8')
      }
    } finally {
      fs.closeSync(fd)
    }
    const parts = partial.split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) {
      all += line + '\n'
      let e: FixtureEvent
      try {
        const parsed: unknown = JSON.parse(line)
        if (parsed === null || typeof parsed !== 'object') continue
        e = parsed as FixtureEvent
      } catch {
        continue
      }
      lines.push(e)
      for (const w of [...waiters]) {
        if (w.match(e)) {
          waiters.delete(w)
          w.resolve(e)
        }
      }
    }
  }
  // Each append by a service is an inotify event on the file.
  const watcher = fs.watch(file, () => { read() })
  t.teardown(() => { watcher.close() })
  return {
    lines,
    text: () => all,
    waitFor: (match, timeoutMs = 20_000) => {
      read()
      const seen = lines.find(match)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(w)
          reject(new Error(`no matching line in ${file} within ${timeoutMs} ms:\n${all}`))
        }, timeoutMs)
        const w = { match, resolve: (e: FixtureEvent) => { clearTimeout(timer); resolve(e) } }
        waiters.add(w)
      })
    }
  }
}
