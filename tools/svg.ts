// Runs in the benchmark and the demo: never in the server.
//
// A dependency-free line chart rendered as a standalone SVG document: one
// <polyline> per series (distinct colours), axes with tick labels, a legend and
// vertical dashed <line class="mark"> elements at each series' `marks` times
// (e.g. restart moments). All text is XML-escaped.

export interface ChartSeries {
  name: string
  points: Array<{ t: number; value: number }>
  /** x positions (same unit as `t`) at which to draw a vertical dashed line in the series' colour. */
  marks?: number[]
}

export interface ChartOptions {
  title: string
  series: ChartSeries[]
  /** Default 800. */
  width?: number
  /** Default 400. */
  height?: number
  /** Default `time (ms)`. */
  xLabel?: string
  /** Not drawn when absent. */
  yLabel?: string
}

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#ff9da7', '#9c755f', '#7f7f7f']
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'
const CHAR_WIDTH = 7 // rough width of a 12px glyph, for legend layout only
const TICK_TARGET = 6

/** Colour of the i-th series: a fixed palette, then golden-angle hues. */
function colour (i: number): string {
  const fixed = PALETTE[i]
  if (fixed !== undefined) return fixed
  return `hsl(${Math.round((i * 137.508) % 360)}, 65%, 42%)`
}

/** Characters XML 1.0 cannot carry at all (most C0 controls, U+FFFE/U+FFFF, lone surrogates) are dropped. */
function xmlChar (ch: string): boolean {
  const cp = ch.codePointAt(0) ?? 0
  if (cp < 0x20) return cp === 0x09 || cp === 0x0a || cp === 0x0d
  if (cp >= 0xd800 && cp <= 0xdfff) return false
  return cp !== 0xfffe && cp !== 0xffff
}

/** Escape text for use in element content and in quoted attribute values. */
export function escapeXml (text: string): string {
  let out = ''
  for (const ch of text) {
    if (!xmlChar(ch)) continue
    switch (ch) {
      case '&': out += '&amp;'; break
      case '<': out += '&lt;'; break
      case '>': out += '&gt;'; break
      case '"': out += '&quot;'; break
      case "'": out += '&#39;'; break
      default: out += ch
    }
  }
  return out
}

function num (n: number): string {
  const r = Math.round(n * 100) / 100
  return Object.is(r, -0) ? '0' : String(r)
}

interface Axis {
  min: number
  max: number
  ticks: number[]
  decimals: number
}

/** A 1/2/5 x 10^k step giving about TICK_TARGET ticks; the domain is widened to whole steps. */
function niceAxis (lo: number, hi: number): Axis {
  if (!(hi > lo)) hi = lo + 1
  const raw = (hi - lo) / TICK_TARGET
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const fraction = raw / magnitude
  const step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9))
  const first = Math.floor(lo / step + 1e-9)
  const last = Math.ceil(hi / step - 1e-9)
  const ticks: number[] = []
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toFixed(decimals)))
  return { min: first * step, max: last * step, ticks, decimals }
}

function dimension (name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isFinite(v) || v < 100) throw new RangeError(`throughputChart: ${name} must be a number >= 100, got ${String(value)}`)
  return v
}

/** Render the chart as a standalone SVG document (with XML declaration). */
export function throughputChart (opts: ChartOptions): string {
  const width = dimension('width', opts.width, 800)
  const height = dimension('height', opts.height, 400)
  const xLabel = opts.xLabel ?? 'time (ms)'

  const series = opts.series.map((s, i) => ({
    name: s.name,
    colour: colour(i),
    points: s.points.filter(p => Number.isFinite(p.t) && Number.isFinite(p.value)).sort((a, b) => a.t - b.t),
    marks: (s.marks ?? []).filter(m => Number.isFinite(m))
  }))

  // Legend: items laid out left to right under the title, wrapping as needed.
  const legendLeft = 16
  const legendItems: Array<{ x: number; row: number; name: string; colour: string }> = []
  let lx = legendLeft
  let row = 0
  for (const s of series) {
    const itemWidth = 28 + s.name.length * CHAR_WIDTH + 16
    if (lx > legendLeft && lx + itemWidth > width - 16) {
      lx = legendLeft
      row++
    }
    legendItems.push({ x: lx, row, name: s.name, colour: s.colour })
    lx += itemWidth
  }
  const legendRows = series.length === 0 ? 0 : row + 1
  const legendTop = 44

  const margin = {
    top: legendTop + legendRows * 20 + 8,
    right: 24,
    bottom: 52,
    left: opts.yLabel === undefined ? 60 : 76
  }
  const plotW = Math.max(1, width - margin.left - margin.right)
  const plotH = Math.max(1, height - margin.top - margin.bottom)

  // Domains: x spans all points and marks; y always includes 0. (No Math.min(...xs): long series would overflow the stack.)
  let tMin = Infinity
  let tMax = -Infinity
  let vMin = 0
  let vMax = 0
  for (const s of series) {
    for (const p of s.points) {
      tMin = Math.min(tMin, p.t)
      tMax = Math.max(tMax, p.t)
      vMin = Math.min(vMin, p.value)
      vMax = Math.max(vMax, p.value)
    }
    for (const m of s.marks) {
      tMin = Math.min(tMin, m)
      tMax = Math.max(tMax, m)
    }
  }
  const xAxis = tMin === Infinity ? niceAxis(0, 1) : niceAxis(tMin, tMax)
  const yAxis = niceAxis(vMin, vMax)
  const sx = (t: number): number => margin.left + ((t - xAxis.min) / (xAxis.max - xAxis.min)) * plotW
  const sy = (v: number): number => margin.top + plotH - ((v - yAxis.min) / (yAxis.max - yAxis.min)) * plotH
  const bottom = margin.top + plotH
  const right = margin.left + plotW

  const out: string[] = []
  out.push('<?xml version="1.0" encoding="UTF-8"?>')
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${num(width)}" height="${num(height)}" viewBox="0 0 ${num(width)} ${num(height)}" role="img">`)
  out.push(`<title>${escapeXml(opts.title)}</title>`)
  out.push(`<rect x="0" y="0" width="${num(width)}" height="${num(height)}" fill="#ffffff"/>`)
  out.push(`<text x="${num(width / 2)}" y="26" text-anchor="middle" font-size="16" font-weight="bold" ${FONT}>${escapeXml(opts.title)}</text>`)

  // Grid and tick labels.
  out.push('<g class="grid" stroke="#e6e6e6" stroke-width="1">')
  for (const v of yAxis.ticks) out.push(`<line x1="${num(margin.left)}" y1="${num(sy(v))}" x2="${num(right)}" y2="${num(sy(v))}"/>`)
  for (const t of xAxis.ticks) out.push(`<line x1="${num(sx(t))}" y1="${num(margin.top)}" x2="${num(sx(t))}" y2="${num(bottom)}"/>`)
  out.push('</g>')
  out.push(`<g class="ticks" font-size="12" fill="#333333" ${FONT}>`)
  for (const v of yAxis.ticks) {
    out.push(`<text x="${num(margin.left - 6)}" y="${num(sy(v) + 4)}" text-anchor="end">${escapeXml(v.toFixed(yAxis.decimals))}</text>`)
  }
  for (const t of xAxis.ticks) {
    out.push(`<text x="${num(sx(t))}" y="${num(bottom + 18)}" text-anchor="middle">${escapeXml(t.toFixed(xAxis.decimals))}</text>`)
  }
  out.push('</g>')

  // Axes and their labels.
  out.push(`<g class="axes" stroke="#333333" stroke-width="1">`)
  out.push(`<line x1="${num(margin.left)}" y1="${num(bottom)}" x2="${num(right)}" y2="${num(bottom)}"/>`)
  out.push(`<line x1="${num(margin.left)}" y1="${num(margin.top)}" x2="${num(margin.left)}" y2="${num(bottom)}"/>`)
  out.push('</g>')
  out.push(`<text x="${num(margin.left + plotW / 2)}" y="${num(height - 12)}" text-anchor="middle" font-size="12" ${FONT}>${escapeXml(xLabel)}</text>`)
  if (opts.yLabel !== undefined) {
    const cy = margin.top + plotH / 2
    out.push(`<text x="18" y="${num(cy)}" transform="rotate(-90 18 ${num(cy)})" text-anchor="middle" font-size="12" ${FONT}>${escapeXml(opts.yLabel)}</text>`)
  }

  // Marks under the data lines, then one polyline per series.
  out.push('<g class="marks" stroke-width="1.5" stroke-dasharray="6 4">')
  for (const s of series) {
    for (const m of s.marks) {
      out.push(`<line class="mark" data-series="${escapeXml(s.name)}" x1="${num(sx(m))}" y1="${num(margin.top)}" x2="${num(sx(m))}" y2="${num(bottom)}" stroke="${s.colour}"/>`)
    }
  }
  out.push('</g>')
  out.push('<g class="series" fill="none" stroke-width="2" stroke-linejoin="round" stroke-linecap="round">')
  for (const s of series) {
    const points = s.points.map(p => `${num(sx(p.t))},${num(sy(p.value))}`).join(' ')
    out.push(`<polyline data-series="${escapeXml(s.name)}" stroke="${s.colour}" points="${points}"/>`)
  }
  out.push('</g>')

  // Legend.
  out.push(`<g class="legend" font-size="12" ${FONT}>`)
  for (const item of legendItems) {
    const y = legendTop + item.row * 20
    out.push(`<line x1="${num(item.x)}" y1="${num(y)}" x2="${num(item.x + 20)}" y2="${num(y)}" stroke="${item.colour}" stroke-width="3"/>`)
    out.push(`<text x="${num(item.x + 26)}" y="${num(y + 4)}">${escapeXml(item.name)}</text>`)
  }
  out.push('</g>')
  out.push('</svg>')
  return out.join('\n') + '\n'
}
