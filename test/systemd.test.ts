// The units of example/systemd/ under a real systemd (PID 1 of a PID namespace of its own, private
// /tmp and /run, a target that starts nothing else: test/helpers/systemd.ts). The notify unit: start
// returns once the app serves; reloads under keep-alive load return 0 with MainPID naming the successor
// and lose nothing; a successor that crashes in probation makes reload fail and leaves MainPID serving;
// stop lets a request in flight finish and ends with Result=success and no process left. The PID-file
// unit: the same reloads lose nothing and MainPID follows the PID file. The socket-activated pair: SIGKILL
// under new-connection load refuses nothing, restart loses nothing, reload still reboots; the same crash
// measured for a plain Restart=always unit and for `graceful-reboot run --workers 1`. Without systemd: a notify socket
// with no systemd-notify binary is one warning, and the PID-file path still works.
import fs from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { startFixture, type FixtureEvent } from './helpers/fixture'
import { crashes, crashTable, freePort, watchedLoad, type CrashOutcome } from './helpers/crash-load'
import { getJson } from './helpers/servers'
import { firstWorkers, supervise } from './helpers/supervisor'
import { bootSystemd, followLines, systemdProblem, type LineFile, type Systemd } from './helpers/systemd'

const ROOT = path.join(__dirname, '..', '..')
const FIXTURE = path.join(__dirname, 'fixtures', 'systemd-app.js')
const CLI = path.join(__dirname, '..', 'bin', 'graceful-reboot.js')
const problem = systemdProblem()
// Skipped on a developer's machine that cannot boot systemd (named in the output); CI (CI=true) has it and runs them.
// CI boots systemd on its first Node line only (GRACEFUL_REBOOT_SKIP_LONG_SUITES on the others, about
// 100 s a line): the units drive the package's behaviour, the same on each line.
const systemdTest = (problem === undefined || process.env.CI === 'true') && process.env.GRACEFUL_REBOOT_SKIP_LONG_SUITES !== '1' ? test.serial : test.skip
if (problem !== undefined && process.env.CI !== 'true') console.log(`test/systemd.test.ts: the tests under a real systemd are skipped: ${problem}`)

/**
 * A unit of example/systemd/ made to run here: the fixture app as root in this checkout, port 0, the
 * package's CLI from this build (at the paths systemd's namespace sees them), stdout and stderr appended to `log`; each line the test rewrites must be
 * in the example (so the example cannot drift from what is tested).
 */
function unitFrom (example: string, log: string, modeFile: string, visible: (hostPath: string) => string, port = 0): string {
  const [node, fixture, cli, root] = [process.execPath, FIXTURE, CLI, ROOT].map(visible)
  let text = fs.readFileSync(path.join(ROOT, 'example', 'systemd', example), 'utf8')
  const swap = (from: RegExp, to: string): void => {
    if (!from.test(text)) throw new Error(`example/systemd/${example} has no line matching ${String(from)}`)
    text = text.replace(from, to)
  }
  swap(/^\[Unit\]$/m, '[Unit]\nDefaultDependencies=no')
  swap(/^(After|Wants)=network-online.target\n/mg, '')
  swap(/^(User|Group)=app\n/mg, '')
  swap(/^WorkingDirectory=.*$/m, `WorkingDirectory=${String(root)}`)
  swap(/^Environment=PORT=3000$/m, `Environment=PORT=${port}\nEnvironment=MODE_FILE=${modeFile}`)
  const output = `StandardOutput=append:${log}\nStandardError=append:${log}`
  // The workers unit starts the supervisor of the package's CLI, with the app as its script.
  const supervised = /^ExecStart=\/usr\/bin\/node \/opt\/app\/node_modules\/.bin\/graceful-reboot run (.*) \/opt\/app\/dist\/server.js$/m
  if (supervised.test(text)) swap(supervised, `ExecStart=${String(node)} ${String(cli)} run $1 ${String(fixture)}\n${output}`)
  else swap(/^ExecStart=\/usr\/bin\/node \/opt\/app\/dist\/server.js$/m, `ExecStart=${String(node)} ${String(fixture)}\n${output}`)
  if (/^ExecReload=\/opt\/app\/node_modules\/.bin\/graceful-reboot /m.test(text)) swap(/^ExecReload=\/opt\/app\/node_modules\/.bin\/graceful-reboot /m, `ExecReload=${String(node)} ${String(cli)} `)
  swap(/^\[Install\][^]*$/m, '')
  return text
}

/** example/systemd/app.socket made to run here: on 127.0.0.1:`port` (each line the test rewrites must be in the example). */
function socketFrom (port: number): string {
  let text = fs.readFileSync(path.join(ROOT, 'example', 'systemd', 'app.socket'), 'utf8')
  const swap = (from: RegExp, to: string): void => {
    if (!from.test(text)) throw new Error(`example/systemd/app.socket has no line matching ${String(from)}`)
    text = text.replace(from, to)
  }
  swap(/^\[Unit\]$/m, '[Unit]\nDefaultDependencies=no')
  swap(/^ListenStream=3000$/m, `ListenStream=127.0.0.1:${port}`)
  swap(/^\[Install\][^]*$/m, '')
  return text
}

interface Service { sd: Systemd, lines: LineFile, modeFile: string }

/**
 * Boots systemd with `example` as app.service; with `socketPort`, app.socket listens there; `port`:
 * the app's PORT (0: any); `edit` changes the unit's text further (a variant the docs measure).
 */
async function boot (t: ExecutionContext, example: string, options: { socketPort?: number, port?: number, edit?: (text: string) => string } = {}): Promise<Service> {
  // The unit's files live beside systemd's folder, which the helper makes: write them once it exists.
  let log = ''
  let modeFile = ''
  const sd = await bootSystemd(t, (dir, visible) => {
    log = path.join(dir, 'app.log')
    modeFile = path.join(dir, 'mode')
    fs.writeFileSync(log, '')
    const service = unitFrom(example, log, modeFile, visible, options.port)
    return {
      'app.service': options.edit?.(service) ?? service,
      ...(options.socketPort !== undefined ? { 'app.socket': socketFrom(options.socketPort) } : {})
    }
  })
  return { sd, lines: followLines(t, log), modeFile }
}

interface Props { MainPID: string, ActiveState: string, SubState: string, Result: string, StatusText: string }

async function props (sd: Systemd): Promise<Props> {
  const p = await sd.show('app.service', 'MainPID', 'ActiveState', 'SubState', 'Result', 'StatusText')
  return { MainPID: p.MainPID ?? '', ActiveState: p.ActiveState ?? '', SubState: p.SubState ?? '', Result: p.Result ?? '', StatusText: p.StatusText ?? '' }
}


/** Keep-alive loops that run until `stop()` (at most 20,000 requests each): every answer checked against its id. */
function load (t: ExecutionContext, port: number, loops: number): { stop: () => Promise<{ sent: number, failed: string[] }> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: loops })
  t.teardown(() => { agent.destroy() })
  let running = true
  let sent = 0
  const failed: string[] = []
  const loop = async (): Promise<void> => {
    for (let i = 0; running && i < 20_000; i++) {
      const id = sent++
      try {
        const r = await getJson(port, `/?id=${id}`, agent)
        if (r.status !== 200 || r.body.id !== id) failed.push(`${id}: ${r.status} ${JSON.stringify(r.body)}`)
      } catch (err) {
        failed.push(`${id}: ${(err as Error).message}`)
      }
    }
  }
  const all = Promise.all(Array.from({ length: loops }, loop))
  return {
    stop: async () => {
      running = false
      await all
      return { sent, failed }
    }
  }
}

function listening (lines: LineFile, parent: number | null): Promise<FixtureEvent> {
  return lines.waitFor((e) => e.event === 'listening' && e.parent === parent)
}

systemdTest('Type=notify unit (example/systemd/app-notify.service): start returns once the app serves; three reloads under keep-alive load each exit 0 with MainPID naming the successor, 0 failed', async (t) => {
  const { sd, lines } = await boot(t, 'app-notify.service')
  const start = await sd.ctl('start', 'app.service')
  t.is(start.code, 0, start.stderr)
  // start returned: READY=1 came, so the app listens and answers right away.
  let p = await props(sd)
  t.is(p.ActiveState, 'active')
  const first = await listening(lines, null)
  t.is(Number(p.MainPID), first.pid as number)
  t.regex(p.StatusText, /^serving \(pid \d+\)/)
  const port = first.port as number
  t.is((await getJson(port, '/?id=-1')).status, 200)
  const traffic = load(t, port, 6)
  let main = first.pid as number
  for (let i = 0; i < 3; i++) {
    const reload = await sd.ctl('reload', 'app.service')
    t.is(reload.code, 0, `reload ${i + 1}: ${reload.stderr}`)
    const next = await listening(lines, main)
    p = await props(sd)
    t.is(Number(p.MainPID), next.pid as number, `reload ${i + 1}: MainPID names the successor as soon as reload returns`)
    t.is(p.ActiveState, 'active')
    t.regex(p.StatusText, new RegExp(`^serving \\(pid ${String(next.pid)}\\)`))
    main = next.pid as number
  }
  const { sent, failed } = await traffic.stop()
  t.log(`${sent} requests over 3 reloads, ${failed.length} failed`)
  t.deepEqual(failed, [])
  t.true(sent > 0)
})

systemdTest('Type=notify unit: a successor that crashes 300 ms after it serves (in probation) makes reload fail; MainPID is unchanged and serves, the unit stays active', async (t) => {
  const { sd, lines, modeFile } = await boot(t, 'app-notify.service')
  t.is((await sd.ctl('start', 'app.service')).code, 0)
  const first = await listening(lines, null)
  fs.writeFileSync(modeFile, 'crash')
  const reload = await sd.ctl('reload', 'app.service')
  t.not(reload.code, 0, 'systemctl reload fails')
  await lines.waitFor((e) => e.event === 'handoff' && e.step === 'failed' && e.pid === first.pid)
  const p = await props(sd)
  t.is(Number(p.MainPID), first.pid as number)
  t.is(p.ActiveState, 'active')
  t.regex(p.StatusText, /the reboot failed/)
  const r = await getJson(first.port as number, '/?id=1')
  t.is(r.status, 200)
  t.is(r.body.pid, first.pid)
})

systemdTest('Type=notify unit: stop with a 1.5 s request in flight lets it finish; Result=success and no process left', async (t) => {
  const { sd, lines } = await boot(t, 'app-notify.service')
  t.is((await sd.ctl('start', 'app.service')).code, 0)
  const first = await listening(lines, null)
  const slow = getJson(first.port as number, '/slow?ms=1500')
  await lines.waitFor((e) => e.event === 'slow-started')
  const stop = await sd.ctl('stop', 'app.service')
  t.is(stop.code, 0, stop.stderr)
  const answer = await slow
  t.is(answer.status, 200)
  t.true(answer.body.slow)
  const p = await props(sd)
  t.is(p.ActiveState, 'inactive')
  t.is(p.Result, 'success')
  t.like(await lines.waitFor((e) => e.event === 'exit'), { pid: first.pid, code: 0 })
  // The name of every process in systemd's PID namespace (its own /proc).
  const ps = await sd.run('sh', '-c', 'cat /proc/[0-9]*/comm')
  t.regex(ps.stdout, /systemd/, 'the listing works')
  t.false(/^node$/m.test(ps.stdout), `no node process left in the namespace:\n${ps.stdout}`)
})

systemdTest('workers unit (example/systemd/app-workers.service): the supervisor is MainPID; two reloads under keep-alive load replace both workers with 0 failed and MainPID unchanged; a reload whose new code crashes fails; stop drains them, Result=success', async (t) => {
  const { sd, lines, modeFile } = await boot(t, 'app-workers.service')
  const start = await sd.ctl('start', 'app.service')
  t.is(start.code, 0, start.stderr)
  const main = Number((await props(sd)).MainPID)
  const one = await lines.waitFor((e) => e.event === 'listening' && e.parent === null)
  let workers = [one, await lines.waitFor((e) => e.event === 'listening' && e.parent === null && e.pid !== one.pid)]
  t.false(workers.some((w) => w.pid === main), 'MainPID is the supervisor, not a worker')
  const traffic = load(t, workers[0]?.port as number, 6)
  for (let i = 0; i < 2; i++) {
    t.is((await sd.ctl('reload', 'app.service')).code, 0)
    const next = await Promise.all(workers.map(async (w) => await listening(lines, w.pid as number)))
    await Promise.all(workers.map(async (w) => await lines.waitFor((e) => e.event === 'exit' && e.pid === w.pid)))
    const p = await props(sd)
    t.is(Number(p.MainPID), main, `reload ${i + 1}: MainPID is still the supervisor`)
    t.is(p.ActiveState, 'active')
    workers = next
  }
  // New code that crashes in probation: the rollout stops at slot 1, reload fails, the workers serve on.
  fs.writeFileSync(modeFile, 'crash')
  const bad = await sd.ctl('reload', 'app.service')
  t.not(bad.code, 0, 'a failed rolling reboot fails the reload')
  const after = await props(sd)
  t.is(Number(after.MainPID), main, 'MainPID is still the supervisor')
  t.is(after.ActiveState, 'active')
  const { sent, failed } = await traffic.stop()
  t.log(`${sent} requests over 2 rolling reboots of 2 workers and a failed one, ${failed.length} failed`)
  t.deepEqual(failed, [])
  t.is((await sd.ctl('stop', 'app.service')).code, 0)
  const p = await props(sd)
  t.is(p.Result, 'success')
  for (const w of workers) t.like(await lines.waitFor((e) => e.event === 'exit' && e.pid === w.pid), { code: 0 })
})

systemdTest('PIDFile= unit (example/systemd/app.service): three reloads under keep-alive load lose nothing and MainPID follows the successor', async (t) => {
  const { sd, lines } = await boot(t, 'app.service')
  t.is((await sd.ctl('start', 'app.service')).code, 0)
  const first = await listening(lines, null)
  const traffic = load(t, first.port as number, 6)
  let main = first.pid as number
  for (let i = 0; i < 3; i++) {
    t.is((await sd.ctl('reload', 'app.service')).code, 0)
    const next = await listening(lines, main)
    // systemd reads the PID file again when it reaps the old process (its child): once that pid is gone.
    await lines.waitFor((e) => e.event === 'exit' && e.pid === main)
    await sd.run('tail', `--pid=${main}`, '-f', '/dev/null')
    const p = await props(sd)
    t.is(Number(p.MainPID), next.pid as number, `reload ${i + 1}: MainPID follows the PID file`)
    t.is(p.ActiveState, 'active')
    main = next.pid as number
  }
  const { sent, failed } = await traffic.stop()
  t.log(`${sent} requests over 3 reloads, ${failed.length} failed`)
  t.deepEqual(failed, [])
})

// Crash-safe listening: the socket-activated pair, then the same crash measured for a plain unit and
// for `graceful-reboot run --workers 1` (docs/operations.md, "Crashes" table).
const CLIENTS = 4
const CRASHES = 3

/** The first listening line (no parent: started, not rebooted) of a pid not in `seen`; adds it. */
async function startedAgain (lines: { waitFor: LineFile['waitFor'] }, seen: Set<number>): Promise<FixtureEvent> {
  const e = await lines.waitFor((l) => l.event === 'listening' && l.parent === null && !seen.has(l.pid as number))
  seen.add(e.pid as number)
  return e
}

function sum (outcomes: readonly CrashOutcome[], key: 'refused' | 'reset'): number {
  return outcomes.reduce((n, o) => n + o[key], 0)
}

systemdTest('socket-activated unit (example/systemd/app.socket + app-socket-activated.service): SIGKILL of the service 3 times under 4 new-connection clients refuses no connection; the only failures are requests in flight on the killed process (at most 4 a crash, reset)', async (t) => {
  const port = await freePort()
  const { sd, lines } = await boot(t, 'app-socket-activated.service', { socketPort: port })
  const start = await sd.ctl('start', 'app.socket', 'app.service')
  t.is(start.code, 0, start.stderr)
  const seen = new Set<number>()
  const first = await startedAgain(lines, seen)
  t.is(first.port, port, "the app adopted systemd's socket")
  const load = watchedLoad(t, { url: `http://127.0.0.1:${port}/?id=0`, connections: CLIENTS, mode: 'new-connection' })
  const outcomes = await crashes(load, CRASHES, async () => {
    const r = await sd.ctl('kill', '--signal=SIGKILL', 'app.service')
    t.is(r.code, 0, r.stderr)
  }, async () => { await startedAgain(lines, seen) })
  load.run.stop()
  const total = await load.run.result
  t.log(crashTable(`socket-activated unit, ${total.sent} requests, ${CLIENTS} new-connection clients`, outcomes))
  for (const [i, o] of outcomes.entries()) {
    t.is(o.refused, 0, `crash ${i + 1}: no connection refused`)
    t.true(o.reset <= CLIENTS, `crash ${i + 1}: at most one request in flight per client lost (${o.reset})`)
    t.deepEqual(o.other, {}, `crash ${i + 1}: no other failure`)
  }
  t.is(total.causes.ECONNREFUSED, undefined)
  const p = await sd.show('app.service', 'NRestarts', 'ActiveState', 'MainPID')
  t.is(p.NRestarts, String(CRASHES))
  t.is(p.ActiveState, 'active')
  t.is(Number(p.MainPID), Math.max(...seen))
})

systemdTest('socket-activated unit: systemctl restart with a 1.5 s request in flight under new-connection load: the request is answered, no connection refused or lost', async (t) => {
  const port = await freePort()
  const { sd, lines } = await boot(t, 'app-socket-activated.service', { socketPort: port })
  t.is((await sd.ctl('start', 'app.socket', 'app.service')).code, 0)
  const seen = new Set<number>()
  const first = await startedAgain(lines, seen)
  const load = watchedLoad(t, { url: `http://127.0.0.1:${port}/?id=0`, connections: CLIENTS, mode: 'new-connection' })
  await load.answeredMore(200)
  const slow = getJson(port, '/slow?ms=1500')
  await lines.waitFor((e) => e.event === 'slow-started')
  const restart = await sd.ctl('restart', 'app.service')
  t.is(restart.code, 0, restart.stderr)
  t.like(await slow, { status: 200, body: { slow: true, pid: first.pid } })
  t.like(await lines.waitFor((e) => e.event === 'exit' && e.pid === first.pid), { code: 0 })
  const next = await startedAgain(lines, seen)
  await load.answeredMore(200)
  load.run.stop()
  const total = await load.run.result
  t.log(`systemctl restart: ${total.sent} requests, ${total.failed} failed ${JSON.stringify(total.causes)}, longest wait ${Math.round(total.latency.max)} ms (the drain of the 1.5 s request, then the start)`)
  t.is(total.failed, 0)
  t.is(Number((await props(sd)).MainPID), next.pid as number)
})

systemdTest('socket-activated unit: systemctl reload under new-connection load is a reboot: exit 0, MainPID names the successor, 0 failed', async (t) => {
  const port = await freePort()
  const { sd, lines } = await boot(t, 'app-socket-activated.service', { socketPort: port })
  t.is((await sd.ctl('start', 'app.socket', 'app.service')).code, 0)
  const first = await listening(lines, null)
  const load = watchedLoad(t, { url: `http://127.0.0.1:${port}/?id=0`, connections: CLIENTS, mode: 'new-connection' })
  await load.answeredMore(200)
  let main = first.pid as number
  for (let i = 0; i < 2; i++) {
    const reload = await sd.ctl('reload', 'app.service')
    t.is(reload.code, 0, `reload ${i + 1}: ${reload.stderr}`)
    const next = await listening(lines, main)
    t.is(next.port, port)
    t.is(Number((await props(sd)).MainPID), next.pid as number, `reload ${i + 1}: MainPID names the successor`)
    await lines.waitFor((e) => e.event === 'exit' && e.pid === main)
    main = next.pid as number
  }
  // A crash of the successor: systemd starts the service again with its socket.
  t.is((await sd.ctl('kill', '--signal=SIGKILL', 'app.service')).code, 0)
  await lines.waitFor((e) => e.event === 'listening' && e.parent === null && e.pid !== first.pid)
  await load.answeredMore(200)
  load.run.stop()
  const total = await load.run.result
  t.log(`2 reloads and a SIGKILL of the successor: ${total.sent} requests, failed ${JSON.stringify(total.causes)}`)
  t.is(total.causes.ECONNREFUSED, undefined)
  t.true(total.failed <= CLIENTS, 'only the requests in flight on the killed successor')
})

systemdTest('for comparison, a plain Restart=always unit (app-notify.service on a fixed port, no socket): SIGKILL 3 times under the same load refuses connections until the app listens again', async (t) => {
  const port = await freePort()
  const edit = (text: string): string => {
    for (const [from, to] of [[/^Restart=on-failure$/m, 'Restart=always'], [/^RestartSec=1$/m, 'RestartSec=100ms']] as const) {
      if (!from.test(text)) throw new Error(`app-notify.service has no line matching ${String(from)}`)
      text = text.replace(from, to)
    }
    return text
  }
  const { sd, lines } = await boot(t, 'app-notify.service', { port, edit })
  t.is((await sd.ctl('start', 'app.service')).code, 0)
  const seen = new Set<number>()
  await startedAgain(lines, seen)
  const load = watchedLoad(t, { url: `http://127.0.0.1:${port}/?id=0`, connections: CLIENTS, mode: 'new-connection' })
  const outcomes = await crashes(load, CRASHES, async () => {
    t.is((await sd.ctl('kill', '--signal=SIGKILL', 'app.service')).code, 0)
  }, async () => { await startedAgain(lines, seen) })
  load.run.stop()
  const total = await load.run.result
  t.log(crashTable(`plain Restart=always unit (RestartSec=100ms), ${total.sent} requests, ${CLIENTS} new-connection clients`, outcomes))
  t.log(`refused windows (ms): ${total.refusedWindows.map((w) => Math.round(w.end - w.start)).join(', ')}`)
  t.true(sum(outcomes, 'refused') > 0, 'without the socket held across the crash, connections are refused')
})

test.serial('for comparison, graceful-reboot run --workers 1: SIGKILL of its worker 3 times under the same load refuses no connection (the supervisor holds the socket)', async (t) => {
  const f = supervise(t, {}, ['--workers', '1'])
  const [worker] = await firstWorkers(f, 1)
  const port = worker?.port as number
  const seen = new Set<number>([worker?.pid as number])
  let current = worker?.pid as number
  const load = watchedLoad(t, { url: `http://127.0.0.1:${port}/`, connections: CLIENTS, mode: 'new-connection' })
  const outcomes = await crashes(load, CRASHES, async () => { process.kill(current, 'SIGKILL') }, async () => {
    const next = await f.waitFor((e) => e.event === 'listening' && e.slot === '1' && !seen.has(e.pid as number))
    current = next.pid as number
    seen.add(current)
    t.is(next.port, port)
  })
  load.run.stop()
  const total = await load.run.result
  t.log(crashTable(`graceful-reboot run --workers 1, ${total.sent} requests, ${CLIENTS} new-connection clients`, outcomes))
  for (const [i, o] of outcomes.entries()) {
    t.is(o.refused, 0, `crash ${i + 1}: no connection refused`)
    t.true(o.reset <= CLIENTS, `crash ${i + 1}: at most one request in flight per client lost`)
    t.deepEqual(o.other, {})
  }
})

test('NOTIFY_SOCKET set but no systemd-notify to run: one warning naming the fix; a reboot still works and the PID file follows', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'graceful-notify-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const pidFile = path.join(dir, 'app.pid')
  // No PATH entry holds systemd-notify (node itself is started by its full path).
  const f = startFixture(t, 'systemd-app', { env: { NOTIFY_SOCKET: path.join(dir, 'notify'), PATH: dir, PID_FILE: pidFile } })
  const first = await f.waitFor((e) => e.event === 'listening' && e.parent === null)
  const warned = (e: FixtureEvent): boolean => typeof e.msg === 'string' && e.msg.includes('NOTIFY_SOCKET is set but systemd-notify could not be run')
  const warning = await f.waitFor(warned)
  t.regex(String(warning.msg), /install systemd's systemd-notify.*NotifyAccess=all.*PID-file unit/)
  process.kill(f.pid, 'SIGUSR2')
  const next = await f.waitFor((e) => e.event === 'listening' && e.parent === first.pid)
  f.track(next.pid as number)
  await f.waitFor((e) => e.event === 'exit' && e.pid === first.pid)
  t.is(Number(fs.readFileSync(pidFile, 'utf8').trim()), next.pid as number)
  const r = await getJson(first.port as number, '/?id=7')
  t.like(r, { status: 200, body: { id: 7, pid: next.pid } })
  t.is(f.lines.filter((e) => e.pid === first.pid && warned(e)).length, 1, 'one warning in the old process, not one per message')
})
