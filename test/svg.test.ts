import test from 'ava'
import { throughputChart, escapeXml } from '../tools/svg'

interface XmlElement {
  name: string
  attrs: Map<string, string>
  children: XmlElement[]
  text: string
}

const NAME = /^[A-Za-z_:][-A-Za-z0-9_:.]*/
const ENTITY = /^&(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);/

function decode (raw: string, where: string): string {
  let out = ''
  for (let i = 0; i < raw.length;) {
    const ch = raw[i] ?? ''
    if (ch === '<') throw new Error(`raw '<' in ${where}`)
    if (ch === '&') {
      const m = ENTITY.exec(raw.slice(i))
      if (m === null) throw new Error(`bad entity in ${where}: ${raw.slice(i, i + 10)}`)
      const e = m[0]
      out += e === '&amp;' ? '&' : e === '&lt;' ? '<' : e === '&gt;' ? '>' : e === '&quot;' ? '"' : e === '&apos;' ? "'" : String.fromCodePoint(Number(e.startsWith('&#x') ? `0x${e.slice(3, -1)}` : e.slice(2, -1)))
      i += e.length
      continue
    }
    out += ch
    i++
  }
  return out
}

/**
 * A small strict XML checker: optional XML declaration, then exactly one root element;
 * every attribute quoted and unique, tags balanced, text and attribute values without
 * raw '<' or stray '&'. No comments, CDATA, doctype or processing instructions (the
 * chart needs none). Throws on anything else; returns the root element.
 */
function parseXml (doc: string): XmlElement {
  let i = 0
  const rest = (): string => doc.slice(i)
  const skipSpace = (): void => { while (i < doc.length && /\s/.test(doc[i] ?? '')) i++ }

  const decl = /^<\?xml\s+version="1\.0"(?:\s+encoding="[A-Za-z0-9._-]+")?\s*\?>/.exec(doc)
  if (decl !== null) i = decl[0].length
  skipSpace()

  const stack: XmlElement[] = []
  let root: XmlElement | undefined
  while (i < doc.length) {
    if (doc.startsWith('</', i)) {
      i += 2
      const m = NAME.exec(rest())
      if (m === null) throw new Error(`bad closing tag at ${i}`)
      i += m[0].length
      skipSpace()
      if (doc[i] !== '>') throw new Error(`unterminated closing tag at ${i}`)
      i++
      const open = stack.pop()
      if (open === undefined || open.name !== m[0]) throw new Error(`</${m[0]}> does not close <${open?.name ?? 'nothing'}>`)
      if (stack.length === 0) {
        skipSpace()
        if (i !== doc.length) throw new Error(`content after the root element at ${i}`)
      }
      continue
    }
    if (doc[i] === '<') {
      i++
      const m = NAME.exec(rest())
      if (m === null) throw new Error(`bad tag name at ${i}: ${doc.slice(i, i + 10)}`)
      i += m[0].length
      const el: XmlElement = { name: m[0], attrs: new Map(), children: [], text: '' }
      for (;;) {
        const before = i
        skipSpace()
        if (doc.startsWith('/>', i) || doc[i] === '>') break
        if (i === before) throw new Error(`missing space before attribute at ${i}`)
        const a = NAME.exec(rest())
        if (a === null) throw new Error(`bad attribute name at ${i}: ${doc.slice(i, i + 10)}`)
        i += a[0].length
        if (doc[i] !== '=') throw new Error(`attribute ${a[0]} without '=' at ${i}`)
        i++
        const quote = doc[i]
        if (quote !== '"' && quote !== "'") throw new Error(`unquoted attribute ${a[0]} at ${i}`)
        const end = doc.indexOf(quote, i + 1)
        if (end < 0) throw new Error(`unterminated attribute ${a[0]}`)
        if (el.attrs.has(a[0])) throw new Error(`duplicate attribute ${a[0]}`)
        el.attrs.set(a[0], decode(doc.slice(i + 1, end), `attribute ${a[0]}`))
        i = end + 1
      }
      const parent = stack.at(-1)
      if (parent !== undefined) parent.children.push(el)
      else if (root === undefined) root = el
      else throw new Error('more than one root element')
      if (doc.startsWith('/>', i)) {
        i += 2
        if (stack.length === 0) {
          skipSpace()
          if (i !== doc.length) throw new Error(`content after the root element at ${i}`)
        }
      } else {
        i++
        stack.push(el)
      }
      continue
    }
    const next = doc.indexOf('<', i)
    const end = next < 0 ? doc.length : next
    const parent = stack.at(-1)
    if (parent === undefined) throw new Error(`text outside the root element at ${i}`)
    parent.text += decode(doc.slice(i, end), `<${parent.name}> text`)
    i = end
  }
  if (stack.length !== 0) throw new Error(`unclosed <${stack.map(e => e.name).join('> <')}>`)
  if (root === undefined) throw new Error('no root element')
  return root
}

function all (el: XmlElement, name: string): XmlElement[] {
  const found: XmlElement[] = []
  const walk = (e: XmlElement): void => {
    if (e.name === name) found.push(e)
    e.children.forEach(walk)
  }
  walk(el)
  return found
}

const series = [
  { name: 'fastify keep-alive', points: [{ t: 0, value: 10 }, { t: 100, value: 12 }, { t: 200, value: 0 }, { t: 300, value: 11 }], marks: [150, 250] },
  { name: 'express new-connection', points: [{ t: 0, value: 5 }, { t: 100, value: 6 }, { t: 200, value: 7 }], marks: [180] },
  { name: 'plain', points: [{ t: 50, value: 3 }] }
]

test('the checker itself rejects malformed documents', t => {
  t.notThrows(() => parseXml('<?xml version="1.0"?><a x="1"><b/>t &amp; u</a>'))
  t.throws(() => parseXml('<a><b></a>'))
  t.throws(() => parseXml('<a x=1/>'))
  t.throws(() => parseXml('<a x="1" x="2"/>'))
  t.throws(() => parseXml('<a>1 < 2</a>'))
  t.throws(() => parseXml('<a>R&D</a>'))
  t.throws(() => parseXml('<a/><b/>'))
  t.throws(() => parseXml('<a>'))
  t.throws(() => parseXml('<a x="<"/>'))
})

test('chart is a well-formed standalone SVG with one polyline per series', t => {
  const svg = throughputChart({ title: 'Throughput', series, xLabel: 'time (ms)', yLabel: 'requests / 100 ms' })
  const root = parseXml(svg)
  t.is(root.name, 'svg')
  t.is(root.attrs.get('xmlns'), 'http://www.w3.org/2000/svg')
  t.is(root.attrs.get('width'), '800')
  t.is(root.attrs.get('height'), '400')

  const polylines = all(root, 'polyline')
  t.is(polylines.length, 3)
  t.deepEqual(polylines.map(p => p.attrs.get('data-series')), series.map(s => s.name))
  t.deepEqual(polylines.map(p => (p.attrs.get('points') ?? '').trim().split(/\s+/).length), [4, 3, 1])
  const colours = polylines.map(p => p.attrs.get('stroke'))
  t.is(new Set(colours).size, 3, 'distinct colours')
  for (const p of polylines) t.is(p.attrs.get('points')?.split(/\s+/).every(xy => /^-?[\d.]+,-?[\d.]+$/.test(xy)), true)

  // Polyline coordinates stay inside the drawing.
  for (const p of polylines) {
    for (const xy of (p.attrs.get('points') ?? '').split(' ')) {
      const [x, y] = xy.split(',').map(Number)
      t.true(x !== undefined && x >= 0 && x <= 800 && y !== undefined && y >= 0 && y <= 400, xy)
    }
  }

  const texts = all(root, 'text').map(e => e.text)
  for (const s of series) t.true(texts.includes(s.name), `legend has ${s.name}`)
  t.true(texts.includes('time (ms)'))
  t.true(texts.includes('requests / 100 ms'))
  t.true(texts.filter(x => /^-?\d+(\.\d+)?$/.test(x)).length >= 6, 'tick labels')
})

test('marks are vertical dashed lines in the series colour', t => {
  const root = parseXml(throughputChart({ title: 'Restarts', series }))
  const marks = all(root, 'line').filter(l => l.attrs.get('class') === 'mark')
  t.is(marks.length, 3)
  t.deepEqual(marks.map(m => m.attrs.get('data-series')), ['fastify keep-alive', 'fastify keep-alive', 'express new-connection'])
  for (const m of marks) t.is(m.attrs.get('x1'), m.attrs.get('x2'))
  const xs = marks.map(m => Number(m.attrs.get('x1')))
  t.true((xs[0] ?? 0) < (xs[1] ?? 0), 'mark at 150 is left of mark at 250')
  t.true((xs[2] ?? 0) > (xs[0] ?? 0) && (xs[2] ?? 0) < (xs[1] ?? 0), 'mark at 180 lies between')
  const group = all(root, 'g').find(g => g.attrs.get('class') === 'marks')
  t.is(group?.attrs.get('stroke-dasharray'), '6 4')
  const polylineColour = new Map(all(root, 'polyline').map(p => [p.attrs.get('data-series'), p.attrs.get('stroke')]))
  for (const m of marks) t.is(m.attrs.get('stroke'), polylineColour.get(m.attrs.get('data-series')))
})

test('title and names are escaped', t => {
  const title = 'a <&> "b" \'c\''
  const svg = throughputChart({ title, series: [{ name: 'x<y & "z"', points: [{ t: 0, value: 1 }], marks: [0] }], xLabel: '<ms>' })
  t.false(svg.includes('<&>'))
  t.true(svg.includes('a &lt;&amp;&gt; &quot;b&quot; &#39;c&#39;'))
  const root = parseXml(svg)
  t.is(all(root, 'title')[0]?.text, title)
  const texts = all(root, 'text').map(e => e.text)
  t.true(texts.includes(title))
  t.true(texts.includes('x<y & "z"'))
  t.true(texts.includes('<ms>'))
  t.is(all(root, 'polyline')[0]?.attrs.get('data-series'), 'x<y & "z"')
})

test('edge cases still give well-formed output', t => {
  const empty = parseXml(throughputChart({ title: 'empty', series: [] }))
  t.is(all(empty, 'polyline').length, 0)
  const flat = parseXml(throughputChart({ title: 'flat', series: [{ name: 's', points: [] }, { name: 'z', points: [{ t: 5, value: 0 }, { t: 5, value: Number.NaN }] }] }))
  t.is(all(flat, 'polyline').length, 2)
  t.is(all(flat, 'polyline')[1]?.attrs.get('points'), all(flat, 'polyline')[1]?.attrs.get('points')?.split(' ')[0])
  const many = Array.from({ length: 14 }, (_, i) => ({ name: `series ${i}`, points: [{ t: i, value: i }] }))
  const root = parseXml(throughputChart({ title: 'many', series: many, width: 400 }))
  t.is(new Set(all(root, 'polyline').map(p => p.attrs.get('stroke'))).size, 14)
  t.is(escapeXml('ok\u0000\u0007'), 'ok', 'characters XML cannot carry are dropped')
  t.throws(() => throughputChart({ title: 'bad', series: [], width: 0 }), { instanceOf: RangeError })
})
