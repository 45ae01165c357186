// Runs in the benchmark process (bench/run.js) and in its tests: never in the server.
//
// The shape of bench/results/results.json and the pure conversions around it: per-restart deltas
// of a load run, the Markdown tables of results.md (and of bench/README.md, and README.md's headline), the
// throughput series of the chart, and the targets of issues 5, 8 and 9 checked against a run.

import type { LoadResult } from './load'
import { escapeXml as escapeXmlText, throughputChart, type ChartSeries } from './svg'
import { rowSections, rowTargets, type CrashRun, type MovesRun, type StormRun, type WorkersRun } from './bench-report-rows'
import { latencyMarkdown, latencyTargets, type LatencyRun } from './bench-report-latency'

export type Causes = Record<string, number>

export interface Latency { p50: number, p99: number, max: number }

/** One restart inside a scenario-1 run. Times are ms since the load run started. */
export interface RestartSample {
  /** When the restart was triggered (signal sent, or `pm2 reload` started). */
  at: number
  /** Trigger -> the new process serves (hand-off: the old process got "ready"; naive: the new one listens). */
  readyMs: number
  /** Trigger -> the new process serves and the old one is gone. */
  doneMs: number
  /** Requests that failed between this restart's trigger and the next one (or the end of the run). */
  failed: number
  causes: Causes
  /**
   * TCP connections the clients opened in the same span. With pooled keep-alive clients these are
   * reconnects (their pool was full before); with a new connection per request, one per request.
   */
  newConnections?: number
  /** graceful-reboot rows: connections the old process handed to the successor (its drain result). */
  transferred?: number
}

export interface RestartRun {
  contender: string
  label: string
  /**
   * `keep-alive`: pooled connections, back-to-back requests; `think-time`: clients with one pooled
   * connection each that pause `thinkMs` between requests; `new-connection`: a connection per request.
   */
  mode: 'keep-alive' | 'think-time' | 'new-connection'
  /** Keep-alive connections (pooled modes), or loops opening a connection per request. */
  connections: number
  /** think-time mode: the pause between a client's requests, uniform in [min, max] ms. */
  thinkMs?: [number, number]
  /** Set when the contender could not run; everything else is then zero. */
  skipped?: string
  /** Set when the run broke off (a restart failed); counts cover what ran. */
  error?: string
  restarts: RestartSample[]
  sent: number
  answered: number
  failed: number
  causes: Causes
  /** Sum of the merged windows in which connections were refused (ECONNREFUSED), ms. */
  refusedMs: number
  /** TCP connections the clients established over the whole run (the pool's first ones included). */
  connectionsOpened?: number
  latency: Latency
  /** Distinct pids that answered (x-pid). */
  pids: number
  durationMs: number
  bucketMs: number
  series: Array<{ t: number, ok: number, failed: number }>
}

/** Scenario 1b: one contender restarted under HTTP/2 (h2c) load. */
export interface H2RestartRun {
  contender: string
  label: string
  /** Sessions open at a time, and requests in flight on each. */
  sessions: number
  streams: number
  skipped?: string
  /** Set when the run broke off (a restart failed); counts cover what ran. */
  error?: string
  restarts: Array<{
    /** When the restart was triggered, ms since the load started. */
    at: number
    readyMs: number
    doneMs: number
    /** Requests that failed between this restart's trigger and the next one (or the end of the run). */
    failed: number
    causes: Causes
    /** Attempts the clients sent again because the server had not processed them (refused streams). */
    retried: number
    /** Sessions the clients opened in the same span (after a GOAWAY or a closed connection). */
    newSessions: number
  }>
  /** Requests (a retried request counts once): sent = answered + failed. */
  sent: number
  answered: number
  failed: number
  causes: Causes
  /** Attempts sent again, by cause (not failures). */
  retried: Causes
  sessionsOpened: number
  /** Distinct pids that answered (x-pid). */
  pids: number
}

export interface ShutdownRun {
  contender: string
  label: string
  skipped?: string
  /** Set when a repetition failed: the first line of the (last) error. `samples` holds the repetitions that completed. */
  error?: string
  /** One entry per repetition. */
  samples: Array<{
    /** Signal -> process exit, ms (as seen by the benchmark). */
    closeMs: number
    /** In-flight requests answered with 200 / sent. */
    inFlightOk: number
    inFlight: number
    lost: number
    lostCauses: Causes
    /** Idle connections still open when the process exited (reset by the exit) / opened. */
    idle: number
    idleOpenAtExit: number
    /** The process had to be killed by the benchmark (it did not exit within the cap). */
    killed: boolean
  }>
}

export interface WebSocketRun {
  contender: string
  label: string
  skipped?: string
  /** Set when a repetition failed: the first line of the (last) error. `samples` holds the repetitions that completed. */
  error?: string
  samples: Array<{
    clients: number
    /** Close code -> clients that saw it. */
    codes: Record<string, number>
    /** Signal -> process exit, ms. */
    closeMs: number
    /** Signal -> the last client saw its close, ms. */
    lastCloseMs: number
    killed: boolean
  }>
}

export interface OverheadResult {
  /** Requests per second (and server CPU µs per request) of one alternating pair of runs. */
  pairs: Array<{ without: number, with: number, ratio: number, cpuUsWithout?: number, cpuUsWith?: number }>
  /** Median of the pair ratios (with / without). */
  ratio: number
  /** First and third quartiles of the pair ratios. */
  ratioIqr?: [number, number]
  withRps: number
  withoutRps: number
  /** Max / min of the per-process median requests/s among processes of the same kind: the noise floor. */
  sameKindSpread?: { without: number, with: number }
  /** Medians of the server's CPU time (user + system) per request, µs. */
  cpuUsWith?: number
  cpuUsWithout?: number
  memory?: {
    connections: number
    /** Rounds measured (each: both kinds, alternating which goes first); the figures are medians over them. */
    samples?: number
    without: { heapPerConn: number, rssPerConn: number, opened: number }
    with: { heapPerConn: number, rssPerConn: number, opened: number }
    /** (with - without) per connection, bytes: the plugin's heap per tracked connection (median of the rounds' differences). */
    heapOverheadPerConn: number
    /** Smallest and largest of the rounds' differences. */
    heapOverheadRange?: [number, number]
    rssOverheadPerConn: number
    note?: string
  }
  /** Set instead of `memory` when its measurement failed: the first line of the error. */
  memoryError?: string
}

export interface BenchResults {
  meta: {
    date: string
    /** Wall-clock time of the whole benchmark, ms. */
    durationMs: number
    quick: boolean
    command: string
    machine: { nproc: number, cpu: string, node: string, os: string, memGiB: number, loadavgStart: number[], loadavgEnd: number[], nofile: string }
    versions: Record<string, string>
  }
  settings: Record<string, unknown>
  restart?: RestartRun[]
  restartH2?: H2RestartRun[]
  shutdown?: ShutdownRun[]
  websocket?: WebSocketRun[]
  overhead?: OverheadResult
  /** Scenarios 5-8 (tools/bench-report-rows.ts). */
  workers?: WorkersRun[]
  moves?: MovesRun[]
  storm?: StormRun
  crash?: CrashRun[]
  latency?: LatencyRun[]
  notes: string[]
}

/** after - before for every cause, zero differences left out. */
export function causeDelta (before: Causes, after: Causes): Causes {
  const out: Causes = {}
  for (const [cause, n] of Object.entries(after)) {
    const d = n - (before[cause] ?? 0)
    if (d !== 0) out[cause] = d
  }
  return out
}

/** Total length of merged refusal windows (ms). */
export function refusedMs (r: Pick<LoadResult, 'refusedWindows'>): number {
  return round(r.refusedWindows.reduce((n, w) => n + (w.end - w.start), 0), 1)
}

/**
 * Splits a run's failures by restart: `snapshots[i]` was taken right before restart i was
 * triggered, `final` once the run ended. Failures before the first restart are not assigned to
 * any restart; every later failure is, so the samples' failures add up to `final.failed - snapshots[0].failed`.
 */
export function failuresPerRestart (snapshots: ReadonlyArray<Pick<LoadResult, 'failed' | 'causes'>>, final: Pick<LoadResult, 'failed' | 'causes'>): Array<{ failed: number, causes: Causes }> {
  return snapshots.map((s, i) => {
    const next = snapshots[i + 1] ?? final
    return { failed: next.failed - s.failed, causes: causeDelta(s.causes, next.causes) }
  })
}

/**
 * TCP connections opened per restart, with the same spans as failuresPerRestart (from restart i's
 * trigger to the next one's, the last to the end of the run).
 */
export function connectionsPerRestart (snapshots: ReadonlyArray<Pick<LoadResult, 'connectionsOpened'>>, final: Pick<LoadResult, 'connectionsOpened'>): number[] {
  return snapshots.map((s, i) => (snapshots[i + 1] ?? final).connectionsOpened - s.connectionsOpened)
}

export function median (values: readonly number[]): number {
  if (values.length === 0) return 0
  const s = [...values].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] ?? 0 : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2
}

function round (n: number, digits = 0): number {
  const f = 10 ** digits
  return Math.round(n * f) / f
}

function fmt (n: number, digits = 0): string {
  if (!Number.isFinite(n)) return 'n/a'
  return round(n, digits).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

/** "ECONNRESET 12, status 503 3", most frequent first; "—" when none. */
export function formatCauses (causes: Causes): string {
  const list = Object.entries(causes).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  if (list.length === 0) return '—'
  return list.map(([c, n]) => `${escapeCell(c)} ${fmt(n)}`).join(', ')
}

/** Escapes what would break a Markdown table cell. */
export function escapeCell (text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ')
}

function table (head: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map(() => '---')), ...rows.map(line)].join('\n')
}

function range (values: number[], digits = 0): string {
  if (values.length === 0) return 'n/a'
  const lo = Math.min(...values)
  const hi = Math.max(...values)
  return lo === hi ? fmt(lo, digits) : `${fmt(lo, digits)}–${fmt(hi, digits)}`
}

/** "100 (98–101)": the median and, when they differ, the range; "n/a" when empty. */
function medianRange (values: number[]): string {
  if (values.length === 0) return 'n/a'
  const lo = Math.min(...values)
  const hi = Math.max(...values)
  return lo === hi ? fmt(lo) : `${fmt(median(values))} (${range(values)})`
}

/**
 * Scenario 1 table for one mode. The pooled modes (keep-alive, think-time) show the connections the
 * clients opened per restart (reconnects); with a new connection per request that is every request.
 */
export function restartTable (runs: readonly RestartRun[], mode: RestartRun['mode']): string {
  const pooled = mode !== 'new-connection'
  const rows = runs.filter((r) => r.mode === mode).map((r) => {
    if (r.skipped !== undefined) return [escapeCell(r.label), '—', '—', '—', `not run: ${escapeCell(r.skipped)}`, '—', ...(pooled ? ['—'] : []), '—', '—', '—', '—']
    const perRestart = r.restarts.map((s) => s.failed)
    const label = escapeCell(r.label) + (r.error !== undefined ? ` (broke off: ${escapeCell(r.error)})` : '')
    const reconnects = r.restarts.flatMap((s) => (s.newConnections === undefined ? [] : [s.newConnections]))
    return [
      label,
      String(r.restarts.length),
      fmt(r.sent),
      `**${fmt(r.failed)}**`,
      formatCauses(r.causes),
      range(perRestart),
      ...(pooled ? [`**${medianRange(reconnects)}**`] : []),
      fmt(r.refusedMs),
      fmt(r.latency.p99, 1),
      fmt(r.latency.max),
      fmt(median(r.restarts.map((s) => s.readyMs)))
    ]
  })
  return table(['Contender', 'Restarts', 'Requests', 'Failed', 'Failed by cause', 'Failed per restart', ...(pooled ? ['Reconnects per restart (median (range))'] : []), 'Refused (ms)', 'p99 (ms)', 'Max (ms)', 'New process serves after (ms, median)'], rows)
}

/** Scenario 1b table (HTTP/2). */
export function h2RestartTable (runs: readonly H2RestartRun[]): string {
  const rows = runs.map((r) => {
    if (r.skipped !== undefined) return [escapeCell(r.label), '—', '—', '—', `not run: ${escapeCell(r.skipped)}`, '—', '—', '—', '—']
    const label = escapeCell(r.label) + (r.error !== undefined ? ` (broke off: ${escapeCell(r.error)})` : '')
    return [
      label,
      String(r.restarts.length),
      fmt(r.sent),
      `**${fmt(r.failed)}**`,
      formatCauses(r.causes),
      range(r.restarts.map((s) => s.failed)),
      medianRange(r.restarts.map((s) => s.retried)),
      medianRange(r.restarts.map((s) => s.newSessions)),
      fmt(median(r.restarts.map((s) => s.readyMs)))
    ]
  })
  return table(['Contender', 'Restarts', 'Requests', 'Failed', 'Failed by cause', 'Failed per restart', 'Refused streams retried per restart (median (range))', 'New sessions per restart (median (range))', 'New process serves after (ms, median)'], rows)
}

export function shutdownTable (runs: readonly ShutdownRun[]): string {
  const rows = runs.map((r) => {
    if (r.skipped !== undefined) return [escapeCell(r.label), '—', `not run: ${escapeCell(r.skipped)}`, '—', '—', '—']
    const s = r.samples
    const killed = s.filter((x) => x.killed).length
    const close = `${fmt(median(s.map((x) => x.closeMs)))} (${range(s.map((x) => x.closeMs))})` + (killed > 0 ? `, ${killed} killed at the cap` : '')
    return [
      escapeCell(r.label),
      String(s.length),
      close,
      `${fmt(sum(s.map((x) => x.inFlightOk)))} / ${fmt(sum(s.map((x) => x.inFlight)))}`,
      `**${fmt(sum(s.map((x) => x.lost)))}**` + (sum(s.map((x) => x.lost)) > 0 ? ` (${formatCauses(mergeCauses(s.map((x) => x.lostCauses)))})` : ''),
      `${fmt(sum(s.map((x) => x.idleOpenAtExit)))} / ${fmt(sum(s.map((x) => x.idle)))}`
    ]
  })
  return table(['Contender', 'Runs', 'Time to close (ms, median (range))', 'In-flight answered', 'Requests lost', 'Idle connections still open at exit'], rows)
}

export function websocketTable (runs: readonly WebSocketRun[]): string {
  const codes = ['1001', '1005', '1006']
  const rows = runs.map((r) => {
    if (r.skipped !== undefined) return [escapeCell(r.label), '—', '—', '—', '—', `not run: ${escapeCell(r.skipped)}`, '—', '—']
    const s = r.samples
    const all = mergeCauses(s.map((x) => x.codes))
    const other = Object.entries(all).filter(([c]) => !codes.includes(c))
    const killed = s.filter((x) => x.killed).length
    return [
      escapeCell(r.label),
      String(s.length),
      ...codes.map((c) => fmt(all[c] ?? 0)),
      other.length === 0 ? '—' : formatCauses(Object.fromEntries(other)),
      fmt(median(s.map((x) => x.lastCloseMs))),
      `${fmt(median(s.map((x) => x.closeMs)))}` + (killed > 0 ? ` (${killed} killed at the cap)` : '')
    ]
  })
  return table(['Contender', 'Runs', '1001', '1005', '1006', 'Other', 'Last client closed (ms, median)', 'Process exit (ms, median)'], rows)
}

export function overheadTable (o: OverheadResult): string {
  const rows: string[][] = [
    ['Requests/s (median of alternating runs)', fmt(o.withoutRps), fmt(o.withRps), fmt(o.ratio, 3) + (o.ratioIqr !== undefined ? ` (IQR ${fmt(o.ratioIqr[0], 3)}–${fmt(o.ratioIqr[1], 3)})` : '')]
  ]
  if (o.sameKindSpread !== undefined) {
    rows.push(['Spread between processes of the same kind (max / min of their median requests/s)', fmt(o.sameKindSpread.without, 3), fmt(o.sameKindSpread.with, 3), '(noise floor)'])
  }
  if (o.cpuUsWith !== undefined && o.cpuUsWithout !== undefined) {
    rows.push(['Server CPU per request, µs (median)', fmt(o.cpuUsWithout, 1), fmt(o.cpuUsWith, 1), fmt(o.cpuUsWithout / o.cpuUsWith, 3)])
  }
  if (o.memory !== undefined) {
    const m = o.memory
    const spread = m.heapOverheadRange !== undefined && m.heapOverheadRange[0] !== m.heapOverheadRange[1] ? ` (${range(m.heapOverheadRange)})` : ''
    const rounds = m.samples !== undefined && m.samples > 1 ? `, median of ${fmt(m.samples)} rounds` : ''
    rows.push([`Heap per open connection (${fmt(m.connections)} idle keep-alive connections${rounds}), bytes`, fmt(m.without.heapPerConn), fmt(m.with.heapPerConn), `**+${fmt(m.heapOverheadPerConn)} B per tracked connection**${spread} (target ≤ ${fmt(HEAP_PER_CONNECTION_TARGET)})`])
    rows.push(['RSS per open connection, bytes', fmt(m.without.rssPerConn), fmt(m.with.rssPerConn), `+${fmt(m.rssOverheadPerConn)} B/connection`])
  }
  return table(['Measure', 'Without the plugin', 'With the plugin', 'Ratio / overhead'], rows)
}

function sum (values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0)
}

function mergeCauses (list: readonly Causes[]): Causes {
  const out: Causes = {}
  for (const c of list) for (const [k, n] of Object.entries(c)) out[k] = (out[k] ?? 0) + n
  return out
}

export interface Target { target: string, result: string, met: boolean }

/** Issue 9: the plugin's bookkeeping per tracked connection, bytes of heap. */
export const HEAP_PER_CONNECTION_TARGET = 300

/** The targets of issues 5, 8 and 9, and those of scenarios 5-8 (tools/bench-report-rows.ts), checked against a run (absent scenarios are left out). */
export function targets (r: BenchResults, ours = 'graceful-reboot'): Target[] {
  const out: Target[] = []
  const restart = (r.restart ?? []).filter((x) => x.skipped === undefined)
  if (restart.length > 0) {
    const mine = restart.filter((x) => x.contender === ours)
    const others = restart.filter((x) => x.contender !== ours && !x.contender.endsWith('-graceful'))
    const lost = sum(mine.map((x) => x.failed))
    const losing = others.filter((x) => x.failed > 0).length
    out.push({
      target: 'Scenario 1: 0 failed requests for graceful-reboot while the other contenders lose some',
      result: `graceful-reboot: ${fmt(lost)} failed over ${mine.map((x) => `${x.restarts.length} ${x.mode} restarts`).join(' and ')}; ${losing} of ${others.length} other runs lost requests`,
      met: lost === 0 && mine.every((x) => x.error === undefined) && losing > 0
    })
  }
  // Issue 9: pooled keep-alive clients keep their connections across a reboot (they move to the successor).
  const pooled = restart.filter((x) => x.mode !== 'new-connection' && x.restarts.some((s) => s.newConnections !== undefined))
  const minePooled = pooled.filter((x) => x.contender === ours)
  if (minePooled.length > 0) {
    const per = (x: RestartRun): number[] => x.restarts.flatMap((s) => (s.newConnections === undefined ? [] : [s.newConnections]))
    const othersPooled = pooled.filter((x) => x.contender !== ours)
    const othersText = minePooled.flatMap((m) => {
      const same = othersPooled.filter((x) => x.mode === m.mode)
      return same.length === 0 ? [] : [`${fmt(median(same.flatMap(per)))} (${m.mode})`]
    })
    out.push({
      target: 'Scenario 1: pooled keep-alive clients do not reconnect at a graceful-reboot restart (at most 1 % of their connections per restart)',
      result: `graceful-reboot: ${minePooled.map((x) => `${range(per(x))} of ${fmt(x.connections)} (${x.mode})`).join(', ')} per restart` +
        (othersText.length > 0 ? `; the other contenders: median ${othersText.join(', ')}` : ''),
      met: minePooled.every((x) => x.error === undefined && per(x).every((n) => n <= x.connections / 100))
    })
  }
  const h2 = (r.restartH2 ?? []).filter((x) => x.skipped === undefined)
  const mineH2 = h2.find((x) => x.contender === ours)
  if (mineH2 !== undefined) {
    out.push({
      target: 'Scenario 1b: 0 failed HTTP/2 requests for graceful-reboot (clients that follow GOAWAY and retry refused streams)',
      result: `graceful-reboot: ${fmt(mineH2.failed)} failed over ${mineH2.restarts.length} restarts; ` +
        h2.filter((x) => x !== mineH2).map((x) => `${x.label}: ${fmt(x.failed)}`).join(', '),
      met: mineH2.failed === 0 && mineH2.error === undefined && mineH2.restarts.length > 0
    })
  }
  const shutdown = (r.shutdown ?? []).find((x) => x.contender === ours && x.skipped === undefined)
  if (shutdown !== undefined) {
    const longest = Number(r.settings.slowMs ?? 1000)
    const close = median(shutdown.samples.map((s) => s.closeMs))
    const lost = sum(shutdown.samples.map((s) => s.lost))
    out.push({
      target: `Scenario 2: shutdown latency near the longest in-flight request (${fmt(longest)} ms), nothing lost`,
      result: `${fmt(close)} ms median from the signal (in-flight requests were started before it), ${fmt(lost)} lost`,
      met: close <= longest + 1000 && lost === 0
    })
  }
  const ws = (r.websocket ?? []).find((x) => x.contender === ours && x.skipped === undefined)
  if (ws !== undefined) {
    const clients = sum(ws.samples.map((s) => s.clients))
    const going = sum(ws.samples.map((s) => s.codes['1001'] ?? 0))
    out.push({ target: 'Scenario 3: 1001 for every WebSocket', result: `${fmt(going)} of ${fmt(clients)} clients saw 1001`, met: going === clients && clients > 0 })
  }
  if (r.overhead !== undefined) {
    out.push({ target: 'Scenario 4: overhead ratio ≥ 0.98', result: `${fmt(r.overhead.ratio, 3)} (median of ${r.overhead.pairs.length} alternating pairs)`, met: r.overhead.ratio >= 0.98 })
    const m = r.overhead.memory
    if (m !== undefined) {
      out.push({
        target: `Scenario 4: at most ${fmt(HEAP_PER_CONNECTION_TARGET)} B of heap per tracked keep-alive connection (issue 9)`,
        result: `${fmt(m.heapOverheadPerConn)} B per connection (with − without the plugin, ${fmt(m.connections)} idle connections${m.samples !== undefined && m.samples > 1 ? `, median of ${m.samples} measurements` : ''})`,
        met: m.heapOverheadPerConn <= HEAP_PER_CONNECTION_TARGET
      })
    }
  }
  out.push(...rowTargets(r))
  out.push(...latencyTargets(r.latency))
  return out
}

export function targetsTable (r: BenchResults): string {
  return table(['Target', 'This run', 'Met'], targets(r).map((t) => [escapeCell(t.target), escapeCell(t.result), t.met ? 'yes' : '**no**']))
}

/** One line saying which machine ran the benchmark. */
export function machineLine (r: BenchResults): string {
  const m = r.meta.machine
  return `${m.cpu}, ${m.nproc} cores (nproc), ${fmt(m.memGiB)} GiB, ${m.os}, Node ${m.node}; load average ${m.loadavgStart.map((x) => fmt(x, 1)).join('/')} at the start (a shared machine)`
}

/** "Keep-alive clients with think time: 1,000 clients, one connection each, 200–400 ms between requests". */
function thinkTimeTitle (runs: readonly RestartRun[]): string {
  const first = runs.find((x) => x.mode === 'think-time' && x.skipped === undefined)
  if (first === undefined) return 'Keep-alive clients with think time'
  const think = first.thinkMs === undefined ? '' : `, ${first.thinkMs[0] === first.thinkMs[1] ? fmt(first.thinkMs[0]) : `${fmt(first.thinkMs[0])}–${fmt(first.thinkMs[1])}`} ms between requests`
  return `Keep-alive clients with think time: ${fmt(first.connections)} clients, one connection each${think}`
}

/** results.md: every table of the run. */
export function resultsMarkdown (r: BenchResults): string {
  const out: string[] = []
  out.push('# graceful-reboot benchmark results', '')
  out.push(`Run ${r.meta.date} with \`${r.meta.command}\`${r.meta.quick ? ' (**quick run**: fewer restarts and repetitions)' : ''}; it took ${fmt(r.meta.durationMs / 60_000, 1)} min.`, '')
  out.push(`Machine: ${machineLine(r)}.`, '')
  out.push(`Versions: ${Object.entries(r.meta.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '')
  out.push('## Targets', '', targetsTable(r), '')
  if (r.restart !== undefined) {
    out.push('## 1. Restart under load', '')
    out.push(String(r.settings.restartText ?? ''), '')
    out.push('### Keep-alive clients, back-to-back', '', restartTable(r.restart, 'keep-alive'), '')
    if (r.restart.some((x) => x.mode === 'think-time')) out.push(`### ${thinkTimeTitle(r.restart)}`, '', restartTable(r.restart, 'think-time'), '')
    out.push('### A new connection per request', '', restartTable(r.restart, 'new-connection'), '')
    out.push('![Requests per second across restarts, keep-alive clients](throughput.svg)', '', 'A new connection per request: [throughput-new-connection.svg](throughput-new-connection.svg).', '')
  }
  if (r.restartH2 !== undefined) {
    out.push('## 1b. Restart under load, HTTP/2 (h2c)', '', String(r.settings.restartH2Text ?? ''), '', h2RestartTable(r.restartH2), '')
  }
  if (r.shutdown !== undefined) {
    out.push('## 2. Shutdown latency', '', String(r.settings.shutdownText ?? ''), '', shutdownTable(r.shutdown), '')
  }
  if (r.websocket !== undefined) {
    out.push('## 3. WebSockets', '', String(r.settings.websocketText ?? ''), '', websocketTable(r.websocket), '')
  }
  if (r.overhead !== undefined) {
    out.push('## 4. Overhead', '', String(r.settings.overheadText ?? ''), '', overheadTable(r.overhead), '')
  }
  out.push(...rowSections(r))
  out.push(...latencyMarkdown(r.latency, String(r.settings.latencyText ?? '')))
  if (r.notes.length > 0) out.push('## Notes', '', ...r.notes.map((n) => `- ${n}`), '')
  return out.join('\n')
}

/** Re-buckets a run's series to `stepMs` as per-second rates (answered or failed); the last, partial bucket is left out. */
function rates (r: RestartRun, stepMs: number, key: 'ok' | 'failed'): Array<{ t: number, value: number }> {
  const per = Math.max(1, Math.round(stepMs / r.bucketMs))
  const points: Array<{ t: number, value: number }> = []
  const full = r.series.length - 1
  for (let i = 0; i + per <= full; i += per) {
    let n = 0
    for (let j = i; j < i + per; j++) n += r.series[j]?.[key] ?? 0
    points.push({ t: round((i * r.bucketMs) / 1000, 3), value: round(n * 1000 / (per * r.bucketMs)) })
  }
  return points
}

/**
 * Chart series: requests answered per second, re-bucketed to `stepMs`, one series per run of
 * `mode`, with the restart moments as marks. Times in seconds since the run's load started.
 */
export function throughputSeries (runs: readonly RestartRun[], mode: RestartRun['mode'], stepMs = 250): ChartSeries[] {
  return runs.filter((r) => r.mode === mode && r.skipped === undefined && r.series.length > 0).map((r) => ({
    name: `${r.label}: ${fmt(r.failed)} failed`,
    points: rates(r, stepMs, 'ok'),
    marks: r.restarts.map((s) => round(s.at / 1000, 3))
  }))
}

const PANEL_WIDTH = 1000
const PANEL_HEIGHT = 250

/**
 * throughput.svg for one mode of scenario 1: one panel per contender, stacked, each drawn by
 * tools/svg.ts with the contender's answered requests per second (its line), its failed requests
 * per second, and its restart moments as dashed marks. (All contenders on one set of axes is
 * unreadable: six lines crossing sixty marks.) Contenders that did not run get a one-line note.
 */
export function throughputSvg (r: BenchResults, mode: RestartRun['mode'] = 'keep-alive', stepMs = 250): string {
  const runs = (r.restart ?? []).filter((x) => x.mode === mode)
  const first = runs.find((x) => x.skipped === undefined)
  const what = mode === 'keep-alive' ? `${first?.connections ?? ''} keep-alive connections` : `${first?.connections ?? ''} loops, a new connection per request`
  const title = `Scenario 1, ${what}: requests per second across restarts (dashed lines: restarts)`
  const panels: string[] = []
  let y = 40
  for (const run of runs) {
    if (run.skipped !== undefined || run.series.length === 0) {
      panels.push(`<text x="16" y="${y + 20}" font-size="13" font-family="system-ui, sans-serif">${escapeXmlText(`${run.label}: not run (${run.skipped ?? 'no data'})`)}</text>`)
      y += 32
      continue
    }
    const chart = throughputChart({
      title: `${run.label}: ${fmt(run.failed)} of ${fmt(run.sent)} requests failed`,
      series: [
        { name: 'answered / s', points: rates(run, stepMs, 'ok'), marks: run.restarts.map((s) => round(s.at / 1000, 3)) },
        { name: 'failed / s', points: rates(run, stepMs, 'failed') }
      ],
      width: PANEL_WIDTH,
      height: PANEL_HEIGHT,
      xLabel: 'seconds since the load started',
      yLabel: 'requests / s'
    })
    const inner = chart.replace(/^<\?xml[^>]*>\n/, '').replace(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /, `<svg x="0" y="${y}" `)
    panels.push(inner.trimEnd())
    y += PANEL_HEIGHT
  }
  const height = Math.max(y + 10, 100)
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL_WIDTH}" height="${height}" viewBox="0 0 ${PANEL_WIDTH} ${height}" role="img">`,
    `<title>${escapeXmlText(title)}</title>`,
    `<rect x="0" y="0" width="${PANEL_WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${PANEL_WIDTH / 2}" y="26" text-anchor="middle" font-size="17" font-weight="bold" font-family="system-ui, sans-serif">${escapeXmlText(title)}</text>`,
    ...panels,
    '</svg>'
  ].join('\n') + '\n'
}

/** Markers around the generated part of bench/README.md (every table of the last full run). */
export const README_BEGIN = '<!-- bench:begin (generated by bench/run.js from bench/results/results.json; do not edit) -->'
export const README_END = '<!-- bench:end -->'
/** Markers around the generated headline of the top-level README.md (the targets table). */
export const HEADLINE_BEGIN = '<!-- bench:headline:begin (generated by bench/run.js from bench/results/results.json; do not edit) -->'
export const HEADLINE_END = '<!-- bench:headline:end -->'

/** The generated part of bench/README.md: machine, targets, and every table of the run (links relative to bench/). */
export function readmeBlock (r: BenchResults): string {
  const out: string[] = [README_BEGIN, '']
  out.push(`Last full run: ${r.meta.date.slice(0, 10)}, ${fmt(r.meta.durationMs / 60_000, 1)} min, on ${machineLine(r)}. ` +
    `Peers: ${Object.entries(r.meta.versions).filter(([k]) => k !== 'graceful-reboot').map(([k, v]) => `${k} ${v}`).join(', ')}. ` +
    'Every table is in [results/results.md](results/results.md) with its method; raw numbers in [results.json](results/results.json).', '')
  out.push('**Targets**', '', targetsTable(r), '')
  if (r.restart !== undefined) {
    out.push('**1. Restart under load** (keep-alive clients, back-to-back)', '', restartTable(r.restart, 'keep-alive'), '')
    if (r.restart.some((x) => x.mode === 'think-time')) out.push(`**1. Restart under load** (${thinkTimeTitle(r.restart).toLowerCase()})`, '', restartTable(r.restart, 'think-time'), '')
    out.push('**1. Restart under load** (a new connection per request)', '', restartTable(r.restart, 'new-connection'), '')
    out.push('![Requests per second across restarts, one panel per contender](results/throughput.svg)', '')
  }
  if (r.restartH2 !== undefined) {
    const first = r.restartH2.find((x) => x.skipped === undefined)
    out.push(`**1b. Restart under load, HTTP/2** (h2c, ${first === undefined ? '' : `${fmt(first.sessions)} node:http2 sessions × ${fmt(first.streams)} streams, `}new session after GOAWAY, refused streams retried)`, '', h2RestartTable(r.restartH2), '')
  }
  if (r.shutdown !== undefined) out.push('**2. Shutdown latency** (1,000 idle keep-alive connections + 50 in-flight 1 s requests)', '', shutdownTable(r.shutdown), '')
  if (r.websocket !== undefined) out.push('**3. WebSockets** (100 clients, SIGTERM)', '', websocketTable(r.websocket), '')
  if (r.overhead !== undefined) out.push('**4. Overhead**', '', overheadTable(r.overhead), '')
  out.push(...rowSections(r, 'readme'))
  out.push(...latencyMarkdown(r.latency, '', 'results/', '**9. Latency around a reboot and a rollout** (open loop, 1 request/s per connection)'))
  out.push(README_END)
  return out.join('\n')
}

/** The generated headline of the top-level README.md: when and where the last full run ran, and its targets table. */
export function headlineBlock (r: BenchResults): string {
  return [
    HEADLINE_BEGIN,
    '',
    `Last full run: ${r.meta.date.slice(0, 10)}, on ${machineLine(r)}. Every table, the contenders and the method: [bench/README.md](bench/README.md).`,
    '',
    targetsTable(r),
    '',
    HEADLINE_END
  ].join('\n')
}

/**
 * `text` (a README) with its generated block replaced by `block`. The block must already be there,
 * between the markers (`begin`, `end`: those of bench/README.md unless given); the hand-written text
 * around it stays as it is.
 */
export function replaceReadmeBlock (text: string, block: string, begin = README_BEGIN, end = README_END): string {
  const from = text.indexOf(begin)
  const to = text.indexOf(end)
  if (from < 0 || to < from) throw new Error(`no generated benchmark block (its markers ${begin.slice(0, 22)}... are missing)`)
  return text.slice(0, from) + block + text.slice(to + end.length)
}
