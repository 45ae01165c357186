// Runs in the test process: the layout rules of lib/ (docs/architecture.md): no import cycle
// (type-only imports included), imports that only run down the layers, a first line that says which
// process runs the file, framework imports only in the adapters. (Files are split by idea, not by a
// line count: a file that holds one idea may be long.)
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import test from 'ava'

const ROOT = path.join(__dirname, '..', '..')
const LIB = path.join(ROOT, 'lib')

function sources (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name)
    if (statSync(full).isDirectory()) return sources(full)
    return name.endsWith('.ts') ? [full] : []
  })
}

const files = sources(LIB)
const rel = (f: string): string => path.relative(ROOT, f)

/** Every module specifier a file imports or re-exports, type-only ones included. */
function specifiers (file: string): string[] {
  const src = readFileSync(file, 'utf8')
  return [...src.matchAll(/^(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|^import\s+['"]([^'"]+)['"]/gm)].map((m) => (m[1] ?? m[2]) as string)
}

/** A relative import's file: `x.ts`, or `x/index.ts` for a folder. */
function resolve (target: string): string {
  return existsSync(target) && statSync(target).isDirectory() ? path.join(target, 'index.ts') : target + '.ts'
}

function graph (): Map<string, string[]> {
  const g = new Map<string, string[]>()
  for (const f of files) {
    const deps = specifiers(f).filter((s) => s.startsWith('.')).map((s) => resolve(path.resolve(path.dirname(f), s)))
    g.set(f, deps)
  }
  return g
}

test('the module graph of lib/ is read: every relative import names a file of lib/', (t) => {
  const g = graph()
  t.true(files.length > 20)
  for (const [f, deps] of g) {
    for (const d of deps) t.true(g.has(d), `${rel(f)} imports ${rel(d)}, which is not a lib file`)
  }
})

test('lib/ has no import cycle, type-only imports included', (t) => {
  const g = graph()
  const state = new Map<string, 'open' | 'done'>()
  const cycles: string[] = []
  const visit = (f: string, trail: string[]): void => {
    if (state.get(f) === 'done') return
    if (state.get(f) === 'open') {
      cycles.push([...trail.slice(trail.indexOf(f)), f].map(rel).join(' -> '))
      return
    }
    state.set(f, 'open')
    for (const d of g.get(f) ?? []) visit(d, [...trail, f])
    state.set(f, 'done')
  }
  for (const f of files) visit(f, [])
  t.deepEqual(cycles, [])
})

test('every lib file starts with the process that runs it', (t) => {
  for (const f of files) {
    const first = readFileSync(f, 'utf8').split('\n')[0] ?? ''
    t.regex(first, /^\/\/ Runs in (both processes|the old process|the new process|every process that shuts down|the supervisor|a worker)/, rel(f))
  }
})

test('files under incoming/ say the new process, under outgoing/ the old one', (t) => {
  for (const f of files) {
    const first = readFileSync(f, 'utf8').split('\n')[0] ?? ''
    if (f.includes(`${path.sep}incoming${path.sep}`)) t.regex(first, /the new process/, rel(f))
    if (f.includes(`${path.sep}outgoing${path.sep}`)) t.regex(first, /the old process/, rel(f))
  }
})

test('only the adapters import a framework; only the Prometheus helper prom-client; nothing imports NestJS', (t) => {
  for (const f of files) {
    const frameworks = specifiers(f).filter((s) => /^(fastify|fastify-plugin|express)(\/|$)/.test(s))
    if (frameworks.length > 0) t.regex(rel(f), /^lib\/adapters\/fastify(-routes)?\.ts$/, `${rel(f)} imports ${frameworks.join(', ')}`)
    const prom = specifiers(f).filter((s) => /^prom-client(\/|$)/.test(s))
    if (prom.length > 0) t.is(rel(f), 'lib/adapters/prometheus.ts', `${rel(f)} imports prom-client`)
    t.deepEqual(specifiers(f).filter((s) => s.startsWith('@nestjs/')), [], `${rel(f)} imports NestJS (the adapter duck-types the app)`)
  }
})

/**
 * The layers, top to bottom: adapters -> lifecycle (and the routes' decisions) -> the two sides of a
 * reboot and the signal and launcher policy -> drain and the start graph (and the shapes they report) -> handoff -> the
 * base (os seam, errors, log, options, health-options and admin-token, limits, PID file, status file and the trust in them,
 * other processes' facts, the systemd notify channel). An import may stay in its layer or go down.
 */
const LAYERS: Array<[rank: number, pattern: RegExp]> = [
  [6, /^lib\/adapters\//],
  [5, /^lib\/(lifecycle|routes)\//],
  [4, /^lib\/(outgoing|incoming|workers)\/|^lib\/(signals|launcher)\.ts$/],
  [3, /^lib\/(drain|startup)\/|^lib\/events\.ts$/],
  [2, /^lib\/handoff\//],
  [1, /^lib\/(os|errors|log|options|health-options|durations|limits|admin-token|cycle|pidfile|status-file|trust|exclusive|exit-codes|proc|systemd-notify|steps)\.ts$/]
]

function rank (file: string): number | undefined {
  return LAYERS.find(([, re]) => re.test(rel(file)))?.[0]
}

test('every lib file belongs to a layer', (t) => {
  for (const f of files) t.not(rank(f), undefined, `${rel(f)} is in no layer`)
})

test('imports run down the layers, never up', (t) => {
  const up: string[] = []
  for (const [f, deps] of graph()) {
    for (const d of deps) {
      if ((rank(d) ?? 0) > (rank(f) ?? 0)) up.push(`${rel(f)} imports ${rel(d)}`)
    }
  }
  t.deepEqual(up, [])
})

test('neither side of a reboot imports the other; drain/, handoff/ and the OS seam import neither', (t) => {
  const side = (f: string): string | undefined => /^lib\/(outgoing|incoming)\//.exec(rel(f))?.[1]
  const wrong: string[] = []
  for (const [f, deps] of graph()) {
    const own = side(f)
    const neutral = /^lib\/(drain|handoff)\/|^lib\/os\.ts$/.test(rel(f))
    for (const d of deps) {
      const other = side(d)
      if (other !== undefined && (neutral || (own !== undefined && own !== other))) wrong.push(`${rel(f)} imports ${rel(d)}`)
    }
  }
  t.deepEqual(wrong, [])
})
