// Runs in the old process of a reboot: the rules that refuse a reboot before anything is spawned,
// each with the coded error that names the reason and the fix.
import { RebootError } from '../errors'
import type { LifecycleState } from '../events'
import type { Launcher } from '../launcher'
import type { ProcessSeam, RebootHost, TerminalSession } from '../os'

/** What the rules look at. */
export interface RefusalFacts {
  state: LifecycleState
  /** A reboot promise is in flight. */
  rebooting: boolean
  seam: Pick<ProcessSeam, 'platform' | 'pid'>
  host: Pick<RebootHost, 'isClusterWorker' | 'exitingInit' | 'terminalSession' | 'env'>
  /** The launcher that runs this process (lib/launcher.ts); undefined when an app set `launcher: 'ignore'`. */
  launcher: () => Launcher | undefined
  /** In a process a reboot started: while its old process can still roll that reboot back. */
  parentWaits: () => { ready: boolean, left: number } | undefined
  /** The PID file of the first app that has one. */
  pidFile: () => string | undefined
  /** How many listening sockets the tracked servers hold: what a successor would take over. */
  listening: () => number
  /** Why an app cannot be handed over (e.g. Fastify bound to two addresses), if it says so. */
  blockers: () => Iterable<string | undefined>
}

/** What works in a container: the supervisor under the init, whose pid never changes; or a new container. */
const CONTAINER_FIX = 'in a container, run the app under the supervisor, which stays while its workers are replaced (tini -- graceful-reboot run --workers N app.js, then SIGUSR2 to it: docs/workers.md), or replace the container (rolling update)'

type RefusalCode = 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' | 'ERR_GRACEFUL_SHUTTING_DOWN' | 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' | 'ERR_GRACEFUL_REBOOT_NO_LISTENER'

/** Why a reboot cannot start now (the RebootError it would reject with), or undefined. */
export function rebootRefusal (f: RefusalFacts): RebootError | undefined {
  const no = (code: RefusalCode, why: string): RebootError => new RebootError(code, why)
  if (f.rebooting || f.state === 'rebooting') return no('ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'a reboot is already in progress; one at a time')
  if (f.state !== 'running') return no('ERR_GRACEFUL_SHUTTING_DOWN', `cannot reboot: the process is ${f.state}`)
  // Its drain would tell the old process "failing", which would roll back and serve beside the grand-successor.
  const waits = f.parentWaits()
  if (waits !== undefined) {
    const when = waits.ready ? `its probation has ${Math.ceil(waits.left)} ms left` : 'this process has not announced that it serves yet'
    return no('ERR_GRACEFUL_REBOOT_IN_PROGRESS', `cannot reboot yet: this process was started by a reboot that its old process can still roll back (${when}); reboot again once that reboot is over (rebootProbation after ready)`)
  }
  if (f.seam.platform === 'win32') return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'reboot needs socket inheritance, which Windows does not offer; use shutdown and a supervisor')
  if (f.host.isClusterWorker) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'cannot reboot a cluster worker: its listening sockets belong to the cluster primary; for every core with zero-downtime rolling reboots, run the app with `graceful-reboot run --workers N app.js` instead of node:cluster (docs/workers.md)')
  if (f.seam.pid === 1) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', `cannot reboot as PID 1: its exit would end the container; ${CONTAINER_FIX}`)
  const init = f.host.exitingInit()
  if (init !== undefined) {
    return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', `cannot reboot as the direct child of ${init}: ${init} exits when this process exits, which ends the container and the successor; ${CONTAINER_FIX}`)
  }
  const terminal = terminalProblem(f.host.terminalSession())
  if (terminal !== undefined) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', terminal)
  const launcher = f.launcher()
  if (launcher?.rebootProblem !== undefined) {
    return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', `cannot reboot under ${launcher.name} (${launcher.evidence}): ${launcher.rebootProblem}; the option launcher: 'ignore' reboots anyway`)
  }
  // With a notify socket systemd learns the successor from MAINPID= (lib/lifecycle/notify.ts).
  const notifies = (f.host.env.NOTIFY_SOCKET ?? '') !== ''
  if (launcher?.kind === 'systemd' && f.pidFile() === undefined && !notifies) {
    return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', `cannot reboot under systemd (${launcher.evidence}) without a PID file or a notify socket: systemd would take the old process's exit for the service's end and stop the successor; use the unit with Type=notify and NotifyAccess=all, or set the option pidFile and PIDFile= to the same path in the unit (see the systemd recipe in docs/operations.md), or launcher: 'ignore' to reboot anyway`)
  }
  // Nothing to hand over: a successor would only run the app's start-up again (migrations, consumers) and exit.
  if (f.listening() === 0) {
    return no('ERR_GRACEFUL_REBOOT_NO_LISTENER', 'cannot reboot: no server this package tracks is listening, so a successor would have no socket to take over and would only run the app\'s start-up again; ' +
      'reboot once the app listens (after listen() resolved), and make the package track the server: Fastify\'s and app.listen() of Express are tracked, a server of your own (http.createServer(app)) needs graceful.attach(server) before its listen(), a NestJS app await nestGraceful(app, options) before app.listen()')
  }
  for (const why of f.blockers()) {
    if (why !== undefined) return no('ERR_GRACEFUL_REBOOT_UNSUPPORTED', why)
  }
  return undefined
}

/**
 * A process that is the session leader of its controlling terminal (`script -c 'exec node app'`, a
 * tmux or screen pane whose command is node, `ssh -t host node app`), or in the session leader's own
 * process group (a shell without job control running it: `sh -c 'node app; ...'`), takes the
 * terminal with it: when the leader exits, the kernel sends SIGHUP to the terminal's foreground
 * process group, which a successor shares (it would be killed), and the terminal's owner (script,
 * tmux, sshd) closes it, so that a successor spared the SIGHUP fails its next log line (EIO). A job
 * of an interactive shell (bash in a pane, then `node app`) has a process group of its own: the
 * shell stays, and a reboot works there.
 */
function terminalProblem (t: TerminalSession | undefined): string | undefined {
  if (t === undefined || t.pgrp !== t.session) return undefined
  const leader = t.pid === t.session
  const where = leader
    ? `this process (${t.pid}) is the session leader of the terminal ${t.tty}`
    : `this process (${t.pid}) is in the process group of the session leader ${t.session} of the terminal ${t.tty} (a shell without job control)`
  return `cannot reboot: ${where}; when ${leader ? 'it' : 'the leader'} exits, the kernel hangs up the terminal's foreground process group, which kills the successor (SIGHUP), and the terminal goes away; ` +
    'run the app under systemd or PM2, as a job of an interactive shell (bash in the tmux or screen pane, then node app), or in a session of its own with its output in a file (setsid node app >>app.log 2>&1)'
}
