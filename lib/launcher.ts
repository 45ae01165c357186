// Runs in both processes: which launcher runs this process (a terminal, systemd, nodemon, node --watch,
// tsx, an npm/yarn/pnpm script, npx, PM2), read from cheap facts about its parent process, and what
// that launcher expects: the signal it restarts the app with, and whether a reboot would detach the
// service from it. Pure: the facts come from lib/os.ts (`RebootHost.launcherFacts`).
//
// The direct parent decides, not inherited environment variables: `npm test` sets npm_lifecycle_event
// for everything it starts, a test runner and the apps the test runner starts included, but only a
// process whose parent is npm (through `sh -c`) runs as an npm script.

import type { AncestorInfo, ProcessFacts } from './os'

export type { AncestorInfo }

/**
 * What the detection looks at: the parent process, then its parent for as long as the one before is
 * a shell running a command string (`sh -c '...'`, as npm, yarn, pnpm and nodemon start a command) or
 * a package manager (`readsPast`): nearest first; and the environment.
 */
export type LauncherFacts = ProcessFacts

export type LauncherKind =
  | 'terminal' | 'systemd' | 'unknown'
  | 'nodemon' | 'node --watch' | 'tsx' | 'tsx watch'
  | 'npm' | 'npx' | 'yarn' | 'pnpm'
  | 'pm2 fork' | 'pm2 cluster'
  | 'supervisor'
  | 'wrapper'

export interface Launcher {
  readonly kind: LauncherKind
  /** How messages name it: 'nodemon', 'npm run start', 'PM2 (fork mode)'. */
  readonly name: string
  /** What it was recognized by: the parent's pid and command line. */
  readonly evidence: string
  /**
   * The signal this launcher restarts the app with, expecting it to clean up and exit (nodemon's
   * SIGUSR2, or its `--signal`). Undefined when it restarts with SIGTERM/SIGINT, or never.
   */
  readonly restartSignal?: NodeJS.Signals
  /**
   * Why a reboot under this launcher would detach the service from it, and what to do instead;
   * undefined where a reboot works (a terminal, systemd with a PID file).
   */
  readonly rebootProblem?: string
}

/** Launchers that pass a terminal's Ctrl-C on to the app, which gets it from the terminal too. */
const RELAYING = new Set<LauncherKind>(['npm', 'npx', 'yarn', 'pnpm', 'nodemon', 'tsx', 'tsx watch'])

/** Whether a launcher of this kind passes the terminal's signals on to the app (a Ctrl-C then arrives twice). */
export function relaysSignals (kind: LauncherKind): boolean {
  return RELAYING.has(kind)
}

const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ash', 'ksh', 'mksh', 'busybox'])

/** Last path segment (`/usr/lib/node_modules/npm/bin/npm-cli.js` -> `npm-cli.js`). */
function basename (p: string): string {
  return p.split(/[\\/]/).pop() ?? p
}

/** A shell running a command string: `sh -c 'node app.js'`, `/bin/bash -lc ...`. */
function isShellWrapper (p: AncestorInfo): boolean {
  const name = basename(p.argv[0] ?? p.comm).replace(/^-/, '')
  if (!SHELLS.has(name) && !SHELLS.has(p.comm)) return false
  return p.argv.slice(1).some((a) => /^-[a-z]*c[a-z]*$/.test(a))
}

function isNode (arg0: string | undefined): boolean {
  return arg0 !== undefined && /^node(js)?(\d+)?(\.exe)?$/.test(basename(arg0))
}

/** Node options that take their value as the next argument. */
const NODE_VALUE_OPTIONS = new Set(['-r', '--require', '--import', '--loader', '--experimental-loader', '-C', '--conditions', '--title', '--inspect-port', '--env-file', '--watch-path', '--input-type', '--stack-size'])

/** A command line split into node's own options, the script (or the executable) and the script's arguments. */
function commandOf (p: AncestorInfo): { options: string[], script: string, args: string[] } {
  const argv = p.argv.length > 0 ? p.argv : [p.comm]
  if (!isNode(argv[0])) return { options: [], script: argv[0] ?? '', args: argv.slice(1) }
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--') return { options: argv.slice(1, i), script: argv[i + 1] ?? '', args: argv.slice(i + 2) }
    if (!a.startsWith('-')) return { options: argv.slice(1, i), script: a, args: argv.slice(i + 1) }
    if (NODE_VALUE_OPTIONS.has(a)) i++
  }
  return { options: argv.slice(1), script: '', args: [] }
}

/** `nodemon --signal SIGHUP` (also `-s SIGHUP`, `--signal=SIGHUP`): the signal it restarts with; SIGUSR2 by default. */
function nodemonSignal (args: readonly string[]): NodeJS.Signals {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    const value = a === '--signal' || a === '-s' ? args[i + 1] : a.startsWith('--signal=') ? a.slice('--signal='.length) : undefined
    if (value === undefined) continue
    const sig = value.toUpperCase()
    const name = sig.startsWith('SIG') ? sig : `SIG${sig}`
    if (/^SIG[A-Z0-9]+$/.test(name)) return name as NodeJS.Signals
  }
  return 'SIGUSR2'
}

function show (p: AncestorInfo): string {
  const line = (p.argv.length > 0 ? p.argv.join(' ') : p.comm).trim()
  return line.length > 160 ? `${line.slice(0, 157)}...` : line
}

const DIRECTLY = 'to reboot in place, run node directly (under systemd: ExecStart=/usr/bin/node app.js and a PID file, see the systemd recipe)'

function scriptProblem (tool: string): string {
  return `${tool} exits when this process exits, so a reboot's successor would run on as an orphan that nothing watches, and whatever supervises ${tool} (a terminal, systemd, Docker's CMD ["npm", "start"]) would think the app ended; ${DIRECTLY}, or use shutdown and let the supervisor start the app again`
}

/** The whole command line: npm's process title (`npm run dev`) is one argument in /proc, three in ps. */
function titleOf (p: AncestorInfo): string {
  return (p.argv.length > 0 ? p.argv.join(' ') : p.comm).trim()
}

/** The package manager `p` is, when it runs a script or a package's binary (npx, npm exec). */
function packageManager (p: AncestorInfo): 'npm' | 'npx' | 'yarn' | 'pnpm' | undefined {
  const name = basename(commandOf(p).script)
  const title = titleOf(p)
  if (/^npm exec\b/.test(title) || /^npm exec\b/.test(p.comm) || name === 'npx' || name === 'npx-cli.js') return 'npx'
  if (/^npm(\s|$)/.test(title) || /^npm(\s|$)/.test(p.comm) || name === 'npm' || name === 'npm-cli.js') return 'npm'
  if (/^yarn(-[\w.-]+)?(\.c?js)?$/.test(name)) return 'yarn'
  if (/^(pnpm|pnpx)(\.c?js|\.mjs)?$/.test(name) || p.comm === 'pnpm') return 'pnpm'
  return undefined
}

/**
 * Programs that start the app as their child, wait for it and exit when it exits: `timeout 600 node
 * app.js`, `flock /run/app.lock node app.js`, `sudo -u app node app.js`, `su`/`runuser -c`,
 * `/usr/bin/time`, and the Node CLIs cross-env, dotenv (dotenv-cli) and env-cmd. (nice, nohup, env,
 * stdbuf, taskset, setpriv and chpst exec the app instead: they are not its parent.)
 */
const WRAPPERS = new Set(['timeout', 'flock', 'sudo', 'su', 'runuser', 'time', 'cross-env', 'dotenv', 'env-cmd'])

/** The wrapper `p` is (its program's name), if it is one of WRAPPERS. */
function wrapper (p: AncestorInfo): string | undefined {
  const name = basename(commandOf(p).script).replace(/\.[cm]?js$/, '')
  if (WRAPPERS.has(name)) return name
  return WRAPPERS.has(p.comm) && !isNode(p.argv[0]) ? p.comm : undefined
}

function isNodemon (p: AncestorInfo): boolean {
  const { script } = commandOf(p)
  return basename(script) === 'nodemon' || /nodemon[\\/]bin[\\/]nodemon\.js$/.test(script)
}

/**
 * Whether the detection looks past `p` to its parent: a shell running a command string, or a package
 * manager (`nodemon --exec 'npm start'`: nodemon, above npm, restarts the app by its signal).
 */
export function readsPast (p: AncestorInfo): boolean {
  return isShellWrapper(p) || packageManager(p) !== undefined
}

function nodemon (p: AncestorInfo, evidence: string): Launcher {
  const sig = nodemonSignal(commandOf(p).args)
  return {
    kind: 'nodemon',
    name: 'nodemon',
    evidence,
    restartSignal: sig,
    rebootProblem: `nodemon restarts this process itself (on a file change, or rs): it sends ${sig}, which drains this process and exits it; a reboot's successor would outlive what nodemon watches, keep the port and make nodemon's next start fail with EADDRINUSE; ${DIRECTLY}`
  }
}

/** What runs this process, from `facts`. */
export function detectLauncher (facts: LauncherFacts): Launcher {
  const { ancestors, env } = facts
  // A worker of `graceful-reboot run`: the supervisor, whatever runs it, is what the worker answers to.
  if (env.GRACEFUL_WORKER !== undefined && env.GRACEFUL_SUPERVISOR !== undefined) {
    return { kind: 'supervisor', name: 'the graceful-reboot supervisor', evidence: `GRACEFUL_WORKER=${env.GRACEFUL_WORKER}` }
  }
  const at = ancestors.findIndex((a) => !isShellWrapper(a))
  const p = ancestors[at]
  if (p === undefined) {
    const last = ancestors.at(-1)
    return { kind: 'unknown', name: 'an unknown launcher', evidence: last === undefined ? 'the parent process could not be read' : `parent ${last.pid}: ${show(last)}` }
  }
  const shells = ancestors.slice(0, at)
  const via = shells.length > 0 ? ` (through ${shells.map((s) => `${s.pid}: ${show(s)}`).join(', ')})` : ''
  const evidence = `parent ${p.pid}: ${show(p)}${via}`
  const { options, script, args } = commandOf(p)
  const name = basename(script)
  const title = titleOf(p)
  const event = env.npm_lifecycle_event
  const scriptName = (tool: string): string => event !== undefined && event !== '' && event !== 'npx' ? `${tool} run ${event}` : tool
  const first = args.find((a) => !a.startsWith('-'))

  if (env.pm_id !== undefined && (p.comm.startsWith('PM2') || title.startsWith('PM2') || /^pm2(-runtime|-docker|-dev)?$/.test(name))) {
    if (env.exec_mode === 'cluster_mode') return { kind: 'pm2 cluster', name: 'PM2 (cluster mode)', evidence }
    return {
      kind: 'pm2 fork',
      name: 'PM2 (fork mode)',
      evidence,
      rebootProblem: 'PM2 watches this pid and starts the app again when it exits, while a reboot\'s successor still holds the port (the new instance fails with EADDRINUSE); use pm2 reload in cluster mode (the default signal map drains on its SIGINT), or shutdown and let PM2 restart the app'
    }
  }
  if (isNodemon(p)) return nodemon(p, evidence)
  if (name === 'tsx' || /tsx[\\/]dist[\\/]cli\.[cm]?js$/.test(script)) {
    if (first === 'watch') {
      return {
        kind: 'tsx watch',
        name: 'tsx watch',
        evidence,
        rebootProblem: `tsx watch restarts this process itself on a file change (SIGTERM, which drains it; SIGKILL 5 s later); a reboot's successor would outlive what tsx watches and keep the port; to reboot in place, run node directly with tsx as a loader (node --import tsx app.ts; under systemd with a PID file)`
      }
    }
    return {
      kind: 'tsx',
      name: 'tsx',
      evidence,
      rebootProblem: `tsx exits when this process exits, so a reboot's successor would run on as an orphan that nothing watches; to reboot in place, run node directly with tsx as a loader (node --import tsx app.ts, which a reboot re-executes as it is; under systemd with a PID file), or use shutdown and let the supervisor start the app again`
    }
  }
  if (isNode(p.argv[0]) && options.some((o) => o === '--watch' || o.startsWith('--watch-path'))) {
    return {
      kind: 'node --watch',
      name: 'node --watch',
      evidence,
      rebootProblem: `node --watch restarts this process itself on a file change (SIGTERM, which drains it); a reboot's successor would outlive what it watches and keep the port; ${DIRECTLY.replace('run node directly', 'run node directly without --watch')}`
    }
  }
  const pm = packageManager(p)
  if (pm !== undefined) {
    // nodemon --exec 'npm start': nodemon sends its restart signal to its whole process tree.
    const above = ancestors.slice(at + 1).find((a) => !readsPast(a))
    if (above !== undefined && isNodemon(above)) return nodemon(above, `${evidence}, under nodemon ${above.pid}: ${show(above)}`)
    return { kind: pm, name: pm === 'npx' ? 'npx' : scriptName(pm), evidence, rebootProblem: scriptProblem(pm) }
  }
  if (p.comm === 'systemd' || name === 'systemd') return { kind: 'systemd', name: 'systemd', evidence }
  const wrapped = wrapper(p)
  if (wrapped !== undefined) {
    return {
      kind: 'wrapper',
      name: wrapped,
      evidence,
      rebootProblem: `${wrapped} waits for this process and exits when it exits, so a reboot's successor would run on as an orphan holding the port (and ${wrapped}'s own limit, lock or user would no longer apply to it), while whatever runs ${wrapped} thinks the app ended; ` +
        `run node directly, with what ${wrapped} does done another way (under systemd: RuntimeMaxSec= for timeout, User= for sudo or su, a PID file), or use shutdown and let the supervisor start the app again; launcher: 'ignore' reboots anyway (when what runs ${wrapped} follows the PID file)`
    }
  }
  return { kind: 'terminal', name: p.comm !== '' ? p.comm : basename(p.argv[0] ?? ''), evidence }
}
