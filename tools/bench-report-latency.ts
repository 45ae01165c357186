// Runs in the benchmark process (bench/run.js) and in its tests: never in the server.
//
// Scenario 9 of the benchmark (bench/scenarios/latency.js): open-loop latency around a reboot and a
// rollout. Its results' shape, its targets (p99 at most 2 x steady p99 + 20 ms, max at most steady
// max + 250 ms, nothing failed), its tables and its latency-over-time chart.
import type { LatencySummary, OpenLoopWindow } from './open-loop'
import { escapeXml, throughputChart } from './svg'

/** A window of a rollout of the back-to-back series: from its trigger to the next one's (the last: to the run's end). */
export type LatencyRolloutWindow = OpenLoopWindow & { readyMs: number, doneMs: number }

export interface LatencyRun {
  contender: string
  label: string
  /** The package's own contenders: the targets apply to them. */
  ours: boolean
  connections: number
  /** Each connection's request is due this often (ms). */
  periodMs: number
  /** Set when the run broke off; the windows cover what ran. */
  error?: string
  /** No restart. */
  steady: OpenLoopWindow
  /** From shortly before the trigger until the old process is gone (and a little after). */
  around: OpenLoopWindow & { readyMs: number, doneMs: number, transferred?: number }
  /** The back-to-back rollouts after the first one (the workers contender). */
  rollouts?: LatencyRolloutWindow[]
  due: number
  answered: number
  failed: number
  causes: Record<string, number>
  /** Over the whole run (every request due, from the intended send time). */
  latency?: LatencySummary
  reconnects: number
  /**
   * Cores busy in the steady window, around the restart, and over the back-to-back rollouts: the
   * contender's processes (`servers`), the load generator (`client`), the whole machine (`machine`,
   * other users' processes included) of `cores`.
   */
  cpu?: { steady: Cores, around: Cores, rollouts?: Cores }
  /** Latency over time by intended send time: ms since the sending started; `trigger`: the restart's. */
  chart: { trigger: number, bucketMs: number, points: Array<{ t: number, count: number, failed: number, p50: number, p99: number, max: number }> }
}

/** CPU time per second of wall time (cores), by whom. */
export interface Cores { servers: number, client: number, machine: number, cores: number }

/** A target row of the benchmark's targets table. */
export interface LatencyTarget { target: string, result: string, met: boolean }

/** p99 around a restart at most P99_FACTOR x steady p99 + P99_SLACK_MS. */
export const P99_FACTOR = 2
export const P99_SLACK_MS = 20
/** max around a restart at most steady max + MAX_SLACK_MS. */
export const MAX_SLACK_MS = 250

function fmt (n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '—'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** Whether `w` keeps to the targets against `steady`, and the numbers that say so. */
export function judge (steady: OpenLoopWindow, w: OpenLoopWindow): { p99Limit: number, maxLimit: number, p99Met: boolean, maxMet: boolean, met: boolean } {
  const p99Limit = P99_FACTOR * steady.latency.p99 + P99_SLACK_MS
  const maxLimit = steady.latency.max + MAX_SLACK_MS
  const p99Met = w.answered > 0 && w.latency.p99 <= p99Limit
  const maxMet = w.answered > 0 && w.latency.max <= maxLimit
  return { p99Limit, maxLimit, p99Met, maxMet, met: p99Met && maxMet && w.failed === 0 }
}

function what (r: LatencyRun): string {
  return r.contender === 'graceful-reboot-workers' ? 'a rollout of `run --workers 2`' : 'a reboot of one process'
}

/** The targets of scenario 5, for the package's own runs. */
export function latencyTargets (runs: readonly LatencyRun[] | undefined): LatencyTarget[] {
  const out: LatencyTarget[] = []
  for (const r of (runs ?? []).filter((x) => x.ours)) {
    const j = judge(r.steady, r.around)
    out.push({
      target: `Scenario 9: around ${what(r)}, ${fmt(r.connections)} connections at 1 request/s each: p99 ≤ 2 × steady p99 + 20 ms, max ≤ steady max + 250 ms, nothing failed`,
      result: `p99 ${fmt(r.around.latency.p99, 1)} ms (limit ${fmt(j.p99Limit, 1)}${j.p99Met ? '' : ', missed'}), max ${fmt(r.around.latency.max)} ms (limit ${fmt(j.maxLimit)}${j.maxMet ? '' : ', missed'}); ` +
        `steady ${fmt(r.steady.latency.p99, 1)} / ${fmt(r.steady.latency.max)}; ${fmt(r.around.failed)} failed` + (r.error !== undefined ? `; broke off: ${r.error}` : ''),
      met: j.met && r.error === undefined
    })
    if (r.rollouts !== undefined) {
      const judged = r.rollouts.map((w) => ({ w, j: judge(r.steady, w) }))
      const worstP99 = Math.max(0, ...r.rollouts.map((w) => w.latency.p99))
      const worstMax = Math.max(0, ...r.rollouts.map((w) => w.latency.max))
      const failed = r.rollouts.reduce((s, w) => s + w.failed, 0)
      const ok = judged.filter((x) => x.j.met).length
      const j0 = judge(r.steady, r.steady)
      out.push({
        target: `Scenario 9: the same over back-to-back rollouts of \`run --workers 2\`, ${fmt(r.connections)} connections`,
        result: `${fmt(ok)} of ${fmt(r.rollouts.length)} rollouts met it; worst p99 ${fmt(worstP99, 1)} ms (limit ${fmt(j0.p99Limit, 1)}), worst max ${fmt(worstMax)} ms (limit ${fmt(j0.maxLimit)}); ${fmt(failed)} failed`,
        met: r.rollouts.length > 0 && ok === r.rollouts.length && r.error === undefined
      })
    }
  }
  return out
}

function cell (text: string): string { return text.replace(/\|/g, '\\|').replace(/\n/g, ' ') }

function table (head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n')
}

function triple (w: OpenLoopWindow): string {
  return `${fmt(w.latency.p50, 1)} / ${fmt(w.latency.p99, 1)} / ${fmt(w.latency.max)}`
}

function cores (c: Cores): string {
  return `${fmt(c.servers, 2)} / ${fmt(c.client, 2)} / ${fmt(c.machine, 2)}`
}

function causes (c: Record<string, number>): string {
  const e = Object.entries(c)
  return e.length === 0 ? '—' : e.sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${fmt(n)}`).join(', ')
}

/** The table of steady vs around-the-restart windows, a row per run. */
export function latencyTable (runs: readonly LatencyRun[]): string {
  return table(
    ['Contender', 'Connections', 'Steady p50 / p99 / max (ms)', 'Around the restart p50 / p99 / max (ms)', 'Around: p99 from the actual send (closed-loop view, ms)', 'Failed around (by cause)', 'Old process gone after (ms)', 'Reconnects (whole run)', 'Load generator\'s loop delay, max around (ms)', 'Cores busy, steady → around: servers / load generator / machine (of N)'],
    runs.map((r) => [
      r.label + (r.error !== undefined ? ` (broke off: ${r.error})` : ''),
      fmt(r.connections),
      triple(r.steady),
      `**${triple(r.around)}**`,
      fmt(r.around.service.p99, 1),
      r.around.failed === 0 ? '0' : `**${fmt(r.around.failed)}** (${causes(r.around.causes)})`,
      fmt(r.around.doneMs),
      fmt(r.reconnects),
      fmt(r.around.clientLagMaxMs),
      r.cpu === undefined ? '—' : `${cores(r.cpu.steady)} → ${cores(r.cpu.around)} (of ${fmt(r.cpu.around.cores)})`
    ])
  )
}

/** The table of back-to-back rollouts, a row per run that had them. */
export function rolloutsTable (runs: readonly LatencyRun[]): string {
  return table(
    ['Contender', 'Connections', 'Rollouts', 'Met the targets', 'p99 per rollout, median (worst) (ms)', 'max per rollout, median (worst) (ms)', 'Failed', 'A rollout took (ms, median)'],
    runs.filter((r) => r.rollouts !== undefined).map((r) => {
      const ws = r.rollouts ?? []
      const p99 = ws.map((w) => w.latency.p99)
      const max = ws.map((w) => w.latency.max)
      return [
        r.label,
        fmt(r.connections),
        fmt(ws.length),
        `${fmt(ws.filter((w) => judge(r.steady, w).met).length)} of ${fmt(ws.length)}`,
        `${fmt(median(p99), 1)} (${fmt(Math.max(0, ...p99), 1)})`,
        `${fmt(median(max))} (${fmt(Math.max(0, ...max))})`,
        fmt(ws.reduce((s, w) => s + w.failed, 0)),
        fmt(median(ws.map((w) => w.doneMs)))
      ]
    })
  )
}

function median (xs: readonly number[]): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

const PANEL_WIDTH = 1000
const PANEL_HEIGHT = 260

/**
 * latency-<connections>.svg: one panel per contender at that size, p50, p99 and max per `bucketMs`
 * of intended send time, in seconds from the restart's trigger, with the p99 limit as a flat line and
 * the trigger, the new process ready and the old one gone as dashed marks.
 */
export function latencySvg (runs: readonly LatencyRun[], connections: number): string {
  const mine = runs.filter((r) => r.connections === connections)
  const title = `Scenario 9, ${fmt(connections)} connections at 1 request/s each: latency from the intended send time around a restart (dashed: trigger, new process ready, old one gone)`
  const panels: string[] = []
  let y = 40
  for (const r of mine) {
    const t0 = r.chart.trigger
    const at = (t: number): number => Math.round((t - t0) / 10) / 100
    const pts = r.chart.points.filter((p) => p.count > 0)
    const limit = judge(r.steady, r.steady).p99Limit
    const chart = throughputChart({
      title: `${r.label}: around ${triple(r.around)} ms (p50 / p99 / max), steady ${triple(r.steady)}, ${fmt(r.around.failed)} failed`,
      series: [
        { name: 'p50', points: pts.map((p) => ({ t: at(p.t), value: p.p50 })) },
        { name: 'p99', points: pts.map((p) => ({ t: at(p.t), value: p.p99 })), marks: [0, r.around.readyMs / 1000, r.around.doneMs / 1000].filter((m) => Number.isFinite(m)) },
        { name: 'max', points: pts.map((p) => ({ t: at(p.t), value: p.max })) },
        ...(r.ours && pts.length > 0 ? [{ name: 'p99 limit (2 × steady p99 + 20)', points: [{ t: at((pts[0] as { t: number }).t), value: limit }, { t: at((pts[pts.length - 1] as { t: number }).t), value: limit }] }] : [])
      ],
      width: PANEL_WIDTH,
      height: PANEL_HEIGHT,
      xLabel: `seconds from the trigger (points: ${fmt(r.chart.bucketMs)} ms of intended send time)`,
      yLabel: 'latency (ms)'
    })
    panels.push(chart.replace(/^<\?xml[^>]*>\n/, '').replace(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" /, `<svg x="0" y="${y}" `).trimEnd())
    y += PANEL_HEIGHT
  }
  const height = Math.max(y + 10, 100)
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${PANEL_WIDTH}" height="${height}" viewBox="0 0 ${PANEL_WIDTH} ${height}" role="img">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${PANEL_WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${PANEL_WIDTH / 2}" y="26" text-anchor="middle" font-size="14" font-weight="bold" font-family="system-ui, sans-serif">${escapeXml(title)}</text>`,
    ...panels,
    '</svg>'
  ].join('\n') + '\n'
}

/** The SVG files of scenario 5: name -> document, one per size. */
export function latencySvgs (runs: readonly LatencyRun[] | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const n of [...new Set((runs ?? []).map((r) => r.connections))]) out[`latency-${n}.svg`] = latencySvg(runs ?? [], n)
  return out
}

/** Scenario 9's section of results.md (and of bench/README.md's block: `linkPrefix` 'results/'). */
export function latencyMarkdown (runs: readonly LatencyRun[] | undefined, text = '', linkPrefix = '', heading = '## 9. Latency around a reboot and a rollout (open loop)'): string[] {
  if (runs === undefined) return []
  const out = [heading, '']
  if (text !== '') out.push(text, '')
  out.push(latencyTable(runs), '')
  if (runs.some((r) => r.rollouts !== undefined)) out.push('Back-to-back rollouts:', '', rolloutsTable(runs), '')
  for (const name of Object.keys(latencySvgs(runs))) out.push(`![Latency over time around a restart, one panel per contender](${linkPrefix}${name})`, '')
  return out
}
