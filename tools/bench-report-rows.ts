// Runs in the benchmark process (bench/run.js) and in its tests: never in the server.
//
// Scenarios 5-8 of bench/run.js: workers against node:cluster and
// PM2, moves of idle keep-alive connections at 3,000 and 10,000, a reload storm and crash refusals:
// their shape in results.json, their Markdown tables and their targets, met or missed.
// tools/bench-report.ts calls rowTargets() and rowSections() for them.

import type { BenchResults, Causes, Target } from './bench-report'

/** How one load of a rolling-restart run went (tools/load.ts counts). */
export interface RowLoad {
  /** Pooled keep-alive connections (or loops opening a connection per request). */
  connections: number
  sent: number
  answered: number
  failed: number
  causes: Causes
  /** Connections opened beyond the first `connections`: reconnects of pooled clients. */
  reconnects: number
}

/** Scenario 5: one contender with N workers (or one process). */
export interface WorkersRun {
  contender: string
  label: string
  /** Workers serving (1 for the one-process row). */
  workers: number
  skipped?: string
  /** Set when the run broke off: the first line of the error; counts cover what ran. */
  error?: string
  /** Closed-loop throughput with pooled keep-alive connections, and the busiest worker's share of the answers (0-1). */
  keepAlive: { connections: number, rps: number, busiest: number, failed: number }
  /** The same with a new connection per request. */
  fresh: { connections: number, rps: number, busiest: number, failed: number }
  /** Rolling restarts under the two loads below. */
  restarts: number
  backToBack: RowLoad
  think: RowLoad
  /** RSS of the supervisor / primary / PM2 daemon, MB. */
  managerRssMb?: number
}

/** Scenario 6: N idle keep-alive connections moved at each of several reboots in a row. */
export interface MovesRun {
  connections: number
  error?: string
  /** Time to open them, ms. */
  openMs: number
  reboots: Array<{ drainMs: number, transferred: number, kept: Record<string, number>, forced: number, closed: number }>
  sampled: number
  answeredBySuccessor: number
}

/** Scenario 7: a reload storm. */
export interface StormRun {
  error?: string
  /** How long signals were sent, and the gap between two, ms. */
  durationMs: number
  intervalMs: number
  signals: number
  /** Successors that served (reboots done). */
  reboots: number
  /** Reboots refused (one under way). */
  refused: number
  loads: Array<RowLoad & { mode: 'keep-alive' | 'new-connection' }>
}

/** Scenario 8: SIGKILLs of the serving process of one contender under new-connection load. */
export interface CrashRun {
  contender: string
  label: string
  /** The listening socket outlives the killed process (held by a parent). */
  keepsSocket: boolean
  skipped?: string
  error?: string
  /** Loops of the new-connection load. */
  loops: number
  crashes: Array<{
    /** Requests refused (ECONNREFUSED) from this kill to the next one (or the end). */
    refused: number
    /** Every failed request in the same span (refused included). */
    failed: number
    causes: Causes
    /** From the kill until a new process answered, ms. */
    servingAfterMs: number
  }>
}

/** A move must take at most this long, ms. */
export const MOVE_WITHIN_MS = 10_000
/** A reboot's move rate may fall to this fraction of the one before and still count as not dropping (noise on a shared machine). */
export const MOVE_RATE_FLOOR = 0.5
/** The busiest of N workers may take at most 1/N plus this share of the requests. */
export const SPREAD_SLACK = 0.1

function round (n: number, digits = 0): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

function fmt (n: number, digits = 0): string {
  if (!Number.isFinite(n)) return 'n/a'
  return round(n, digits).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

function pct (share: number): string { return `${fmt(share * 100, 1)} %` }

/** Short names of the contenders in the targets table (their tables give the full labels). */
const SHORT: Record<string, string> = {
  supervisor: 'run --workers',
  cluster: 'node:cluster',
  pm2: 'PM2',
  'pm2-plugin': 'PM2 + the drain',
  one: 'one process',
  'plain-restart': 'plain restart',
  'socket-activation': 'socket activation',
  'run-workers-1': 'run --workers 1'
}

function short (x: { contender: string, label: string }): string { return SHORT[x.contender] ?? x.label }

function escapeCell (text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ')
}

function table (head: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n')
}

function sum (values: readonly number[]): number { return values.reduce((a, b) => a + b, 0) }

function causesText (causes: Causes): string {
  const list = Object.entries(causes).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  return list.length === 0 ? '—' : list.map(([c, n]) => `${escapeCell(c)} ${fmt(n)}`).join(', ')
}

function mergeCauses (list: readonly Causes[]): Causes {
  const out: Causes = {}
  for (const c of list) for (const [k, n] of Object.entries(c)) out[k] = (out[k] ?? 0) + n
  return out
}

function label (x: { label: string, error?: string | undefined }): string {
  return escapeCell(x.label) + (x.error !== undefined ? ` (broke off: ${escapeCell(x.error)})` : '')
}

/** Connections moved per second at one reboot. */
export function moveRate (m: MovesRun['reboots'][number]): number {
  return m.transferred / (Math.max(1, m.drainMs) / 1000)
}

export function workersTable (runs: readonly WorkersRun[]): string {
  const rows = runs.map((r) => {
    if (r.skipped !== undefined) return [escapeCell(r.label), `not run: ${escapeCell(r.skipped)}`, '—', '—', '—', '—', '—', '—', '—', '—', '—']
    const load = (l: RowLoad): string[] => [`**${fmt(l.failed)}** / ${fmt(l.sent)}` + (l.failed > 0 ? ` (${causesText(l.causes)})` : ''), fmt(l.reconnects)]
    return [
      label(r),
      fmt(r.keepAlive.rps),
      r.workers > 1 ? pct(r.keepAlive.busiest) : '—',
      fmt(r.fresh.rps),
      r.workers > 1 ? pct(r.fresh.busiest) : '—',
      fmt(r.restarts),
      ...load(r.backToBack),
      ...load(r.think),
      r.managerRssMb === undefined ? '—' : fmt(r.managerRssMb)
    ]
  })
  return table(['Contender', 'Keep-alive req/s', 'Busiest worker (keep-alive)', 'New-connection req/s', 'Busiest worker (new connections)', 'Rolling restarts', 'Back-to-back: failed / sent', 'Back-to-back: reconnects', 'Think time: failed / sent', 'Think time: reconnects', 'Manager RSS (MB)'], rows)
}

export function movesTable (runs: readonly MovesRun[]): string {
  const rows = runs.flatMap((r) => {
    if (r.reboots.length === 0) return [[fmt(r.connections), '—', '—', '—', '—', '—', `not measured: ${escapeCell(r.error ?? 'no reboot')}`, '—']]
    return r.reboots.map((m, i) => [
      fmt(r.connections),
      String(i + 1),
      fmt(m.transferred),
      causesText(m.kept),
      `**${fmt(m.forced)}**`,
      fmt(m.closed),
      fmt(m.drainMs),
      fmt(moveRate(m))
    ])
  })
  return table(['Connections', 'Reboot', 'Moved', 'Kept (drained by the old process)', 'Destroyed at the deadline', 'Closed (as the clients saw)', 'Time to move all (ms)', 'Moved per second'], rows)
}

export function stormTable (s: StormRun): string {
  const rows = s.loads.map((l) => [
    l.mode === 'keep-alive' ? `${fmt(l.connections)} pooled keep-alive connections` : `${fmt(l.connections)} loops, a new connection per request`,
    fmt(s.signals),
    fmt(s.reboots),
    fmt(s.refused),
    fmt(l.sent),
    `**${fmt(l.failed)}**`,
    causesText(l.causes),
    l.mode === 'keep-alive' ? fmt(l.reconnects) : '—'
  ])
  return table(['Load', 'Signals', 'Reboots done', 'Refused (one under way)', 'Requests', 'Failed', 'Failed by cause', 'Reconnects'], rows)
}

export function crashTable (runs: readonly CrashRun[]): string {
  const rows = runs.map((r) => {
    if (r.skipped !== undefined) return [escapeCell(r.label), r.keepsSocket ? 'yes' : 'no', '—', `not run: ${escapeCell(r.skipped)}`, '—', '—', '—']
    const c = r.crashes
    return [
      label(r),
      r.keepsSocket ? 'yes' : 'no',
      String(c.length),
      `**${c.map((x) => fmt(x.refused)).join(', ') || '—'}**`,
      c.map((x) => fmt(x.failed)).join(', ') || '—',
      causesText(mergeCauses(c.map((x) => x.causes))),
      c.map((x) => fmt(x.servingAfterMs)).join(', ') || '—'
    ]
  })
  return table(['Contender', 'Keeps the listening socket', 'Crashes', 'Refused per crash', 'Failed per crash', 'Failed by cause (all crashes)', 'Serving again after (ms, per crash)'], rows)
}

/** The targets of scenarios 5-8, checked against a run (absent scenarios are left out). */
export function rowTargets (r: BenchResults): Target[] {
  const out: Target[] = []
  const workers = (r.workers ?? []).filter((x) => x.skipped === undefined)
  const ours = workers.filter((x) => x.contender === 'one' || x.contender === 'supervisor')
  if (ours.length > 0) {
    const failed = (x: WorkersRun): number => x.backToBack.failed + x.think.failed
    out.push({
      target: 'Scenario 5: 0 failed requests for graceful-reboot over rolling restarts (one process, `run --workers`)',
      result: workers.map((x) => `${short(x)}: ${fmt(failed(x))} of ${fmt(x.backToBack.sent + x.think.sent)} over ${fmt(x.restarts)} restarts`).join('; '),
      met: ours.every((x) => failed(x) === 0 && x.error === undefined && x.restarts > 0)
    })
  }
  const supervisor = workers.find((x) => x.contender === 'supervisor')
  if (supervisor !== undefined) {
    const limit = 1 / supervisor.workers + SPREAD_SLACK
    const others = workers.filter((x) => x !== supervisor && x.workers > 1).map((x) => `${short(x)}: ${pct(x.keepAlive.busiest)}, ${pct(x.fresh.busiest)}`)
    out.push({
      target: `Scenario 5: the busiest of ${supervisor.workers} workers of \`run --workers ${supervisor.workers}\` takes at most 1/${supervisor.workers} + ${fmt(SPREAD_SLACK * 100)} points (${pct(limit)}) of the requests`,
      result: `keep-alive ${pct(supervisor.keepAlive.busiest)}, new connections ${pct(supervisor.fresh.busiest)}` + (others.length > 0 ? `; ${others.join('; ')}` : ''),
      met: supervisor.keepAlive.busiest <= limit + 1e-9 && supervisor.fresh.busiest <= limit + 1e-9 && supervisor.error === undefined
    })
  }
  for (const m of r.moves ?? []) {
    const rates = m.reboots.map(moveRate)
    const dropped = rates.findIndex((rate, i) => i > 0 && rate < MOVE_RATE_FLOOR * (rates[i - 1] ?? 0))
    const all = m.reboots.every((x) => x.transferred === m.connections && x.forced === 0 && x.drainMs <= MOVE_WITHIN_MS)
    out.push({
      target: `Scenario 6: ${fmt(m.connections)} idle keep-alive connections all moved within ${fmt(MOVE_WITHIN_MS / 1000)} s at every reboot, the rate not dropping from one reboot to the next (each at least ${fmt(MOVE_RATE_FLOOR * 100)} % of the one before)`,
      result: m.reboots.length === 0
        ? `not measured: ${m.error ?? 'no reboot'}`
        : m.reboots.map((x, i) => `reboot ${i + 1}: ${fmt(x.transferred)} moved in ${fmt(x.drainMs)} ms (${fmt(rates[i] ?? 0)}/s), ${fmt(x.forced)} destroyed`).join('; ') + (dropped > 0 ? `; the rate dropped at reboot ${dropped + 1}` : ''),
      met: m.error === undefined && m.reboots.length >= 2 && all && dropped < 0
    })
  }
  const s = r.storm
  if (s !== undefined) {
    const failed = sum(s.loads.map((l) => l.failed))
    out.push({
      target: `Scenario 7: 0 failed requests in a reload storm (a SIGUSR2 every ${fmt(s.intervalMs)} ms for ${fmt(s.durationMs / 1000)} s)`,
      result: `${fmt(failed)} failed of ${fmt(sum(s.loads.map((l) => l.sent)))}; ${fmt(s.signals)} signals, ${fmt(s.reboots)} reboots done, ${fmt(s.refused)} refused (one under way)`,
      met: failed === 0 && s.reboots > 0 && s.error === undefined
    })
  }
  const crash = (r.crash ?? []).filter((x) => x.skipped === undefined)
  const keepers = crash.filter((x) => x.keepsSocket)
  if (keepers.length > 0) {
    out.push({
      target: 'Scenario 8: 0 connections refused when the serving process is SIGKILLed, for the contenders that keep the listening socket',
      result: crash.map((x) => `${short(x)}: ${x.crashes.map((c) => fmt(c.refused)).join(', ') || 'no crash'} refused`).join('; '),
      met: keepers.every((x) => x.error === undefined && x.crashes.length > 0 && x.crashes.every((c) => c.refused === 0))
    })
  }
  return out
}

/** results.md's sections of scenarios 5-8 (`heading`: "## " there, bold titles in bench/README.md). */
export function rowSections (r: BenchResults, style: 'results' | 'readme' = 'results'): string[] {
  const out: string[] = []
  const section = (title: string, text: unknown, body: string): void => {
    if (style === 'results') out.push(`## ${title}`, '', String(text ?? ''), '', body, '')
    else out.push(`**${title}**`, '', body, '')
  }
  if (r.workers !== undefined) section('5. Workers: graceful-reboot run vs node:cluster vs PM2', r.settings.workersText, workersTable(r.workers))
  if (r.moves !== undefined) section('6. Moves of idle keep-alive connections', r.settings.movesText, movesTable(r.moves))
  if (r.storm !== undefined) section('7. Reload storm', r.settings.stormText, stormTable(r.storm))
  if (r.crash !== undefined) section('8. Crash refusals', r.settings.crashText, crashTable(r.crash))
  return out
}
