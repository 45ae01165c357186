// Runs in both processes: the launcher's expectations as the lifecycle applies them: which launcher
// runs this process (read once), whether its rules apply (not when an app set `launcher: 'ignore'`),
// the signal it restarts the app with, and the one log line that says so; under PM2, the 'ready'
// message its `wait_ready` waits for, and a warning when its `kill_timeout` would cut the drain.
import type { GracefulUnit } from '../drain/app'
import type { Launcher } from '../launcher'
import type { RebootHost } from '../os'
import type { RestartSignal } from '../signals'

/** PM2's default `kill_timeout`: ms from its stop signal (SIGINT) to SIGKILL. */
export const PM2_KILL_TIMEOUT_MS = 1600

/** PM2's `kill_timeout` for this process: PM2 passes the app's settings in the environment. */
export function pm2KillTimeout (env: Readonly<Record<string, string | undefined>>): { ms: number, set: boolean } {
  const v = env.kill_timeout
  const n = v === undefined || !/^[0-9]+$/.test(v) ? undefined : Number(v)
  return n === undefined ? { ms: PM2_KILL_TIMEOUT_MS, set: false } : { ms: n, set: true }
}

const isPm2 = (l: Launcher | undefined): boolean => l?.kind === 'pm2 fork' || l?.kind === 'pm2 cluster'

export class LauncherRules {
  private readonly read: () => Launcher
  private readonly host: () => Pick<RebootHost, 'env' | 'send'>
  private detected: Launcher | undefined
  private logged = false
  private warnedKill = false

  constructor (read: () => Launcher, host: () => Pick<RebootHost, 'env' | 'send'>) {
    this.read = read
    this.host = host
  }

  /** What runs this process (a terminal, systemd, nodemon, an npm script, PM2...), read once (lib/launcher.ts). */
  get launcher (): Launcher {
    this.detected ??= this.read()
    return this.detected
  }

  /** The launcher whose expectations apply: none when an app set `launcher: 'ignore'`. */
  applying (ignored: boolean): Launcher | undefined {
    return ignored ? undefined : this.launcher
  }

  /** The signal the launcher restarts the app by (nodemon's SIGUSR2), when its rules apply. */
  restart (ignored: boolean): RestartSignal | undefined {
    const l = this.applying(ignored)
    return l?.restartSignal === undefined ? undefined : { signal: l.restartSignal, by: l.name }
  }

  /** Once per process: under a launcher that changes what signals and reboot do, says so in `unit`'s log. */
  logOnce (unit: GracefulUnit, ignored: boolean): void {
    const l = this.applying(ignored)
    if (isPm2(l)) this.checkKillTimeout(unit)
    if (this.logged) return
    if (l === undefined || (l.restartSignal === undefined && l.rebootProblem === undefined)) return
    this.logged = true
    const restart = l.restartSignal === undefined ? '' : `${l.restartSignal} drains and exits so that ${l.name} restarts the app; `
    unit.log.info({ launcher: l.kind, evidence: l.evidence },
      `graceful-reboot: running under ${l.name}: ${restart}reboot is refused (the option launcher: 'ignore' allows it)`)
  }

  /** This process serves: under PM2, `process.send('ready')`, which `wait_ready: true` waits for before it stops the old instance. */
  announced (ignored: boolean): void {
    if (isPm2(this.applying(ignored))) this.host().send('ready')
  }

  /** Once per process: a drain `timeout` above PM2's `kill_timeout` is cut by PM2's SIGKILL: says so, with both numbers. */
  private checkKillTimeout (unit: GracefulUnit): void {
    const kill = pm2KillTimeout(this.host().env)
    const timeout = unit.options.timeout
    if (this.warnedKill || timeout <= kill.ms) return
    this.warnedKill = true
    unit.log.warn({ killTimeout: kill.ms, timeout },
      `graceful-reboot: PM2's kill_timeout (${kill.ms} ms${kill.set ? '' : ', its default'}) is shorter than the drain timeout (${timeout} ms): PM2 SIGKILLs the process ${kill.ms} ms after its SIGINT and cuts the requests still in flight; set kill_timeout above ${timeout} (ecosystem file, or pm2 start --kill-timeout ${timeout + 1000})`)
  }
}
