// Runs in both processes: the launcher's expectations as the lifecycle applies them: which launcher
// runs this process (read once), whether its rules apply (not when an app set `launcher: 'ignore'`),
// the signal it restarts the app with, and the one log line that says so.
import type { GracefulUnit } from '../drain/app'
import type { Launcher } from '../launcher'
import type { RestartSignal } from '../signals'

export class LauncherRules {
  private readonly read: () => Launcher
  private detected: Launcher | undefined
  private logged = false

  constructor (read: () => Launcher) {
    this.read = read
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
    if (this.logged) return
    const l = this.applying(ignored)
    if (l === undefined || (l.restartSignal === undefined && l.rebootProblem === undefined)) return
    this.logged = true
    const restart = l.restartSignal === undefined ? '' : `${l.restartSignal} drains and exits so that ${l.name} restarts the app; `
    unit.log.info({ launcher: l.kind, evidence: l.evidence },
      `graceful-reboot: running under ${l.name}: ${restart}reboot is refused (the option launcher: 'ignore' allows it)`)
  }
}
