// Runs in the test process: the documentation against the repository. Every relative link in
// README.md, docs/**/*.md and bench/README.md names a file that exists, every #anchor into a Markdown
// file names one of its headings (GitHub's slugs), README.md stays a front door (at most 25,000
// bytes), and docs/api/ is what `npm run docs:api` (TypeDoc) generates from the TSDoc comments now.
import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const ROOT = path.join(__dirname, '..', '..')
const README_MAX_BYTES = 25_000

/** Markdown files under `dir` (relative to `root`), recursively. */
function markdownUnder (root: string, dir: string): string[] {
  const abs = path.join(root, dir)
  if (!fs.existsSync(abs)) return []
  return fs.readdirSync(abs, { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name)
    if (e.isDirectory()) return markdownUnder(root, rel)
    return e.name.endsWith('.md') ? [rel] : []
  })
}

/** The documentation files the links of which must resolve, relative to `root`. */
function docFiles (root: string): string[] {
  return ['README.md', 'bench/README.md', ...markdownUnder(root, 'docs')].filter((f) => fs.existsSync(path.join(root, f)))
}

/** The text outside fenced code blocks and inline code spans (links there are not links). */
function prose (md: string): string {
  return md.replace(/^ {0,3}(```|~~~)[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '')
}

/** Link targets: inline links and images `[text](target "title")`, and reference definitions `[ref]: target`. */
function linkTargets (md: string): string[] {
  const text = prose(md)
  const inline = [...text.matchAll(/!?\[(?:[^\]\\\n]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1] ?? '')
  const refs = [...text.matchAll(/^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s.*)?$/gm)].map((m) => m[1] ?? '')
  return [...inline, ...refs]
}

/** GitHub's anchor for a heading's text: lower case, punctuation dropped, spaces to hyphens. */
function slug (heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // a link's text
    .replace(/<[^>]+>/g, '') // HTML tags
    .replace(/\\(.)/g, '$1') // backslash escapes
    .trim()
    .toLowerCase()
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-')
}

/** The anchors of a Markdown file's headings, numbered as GitHub numbers repeats (`x`, `x-1`, ...). */
function anchors (md: string): Set<string> {
  const seen = new Map<string, number>()
  const out = new Set<string>()
  const lines = md.replace(/^ {0,3}(```|~~~)[^\n]*\n[\s\S]*?^ {0,3}\1[^\n]*$/gm, '').split('\n')
  for (const line of lines) {
    const m = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (m === null) continue
    const base = slug(m[1] ?? '')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** Every relative link of `files` (relative to `root`) that does not resolve, as "file: target (why)". */
function brokenLinks (root: string, files: string[]): string[] {
  const broken: string[] = []
  const cache = new Map<string, Set<string>>()
  const anchorsOf = (abs: string): Set<string> => {
    let a = cache.get(abs)
    if (a === undefined) {
      a = anchors(fs.readFileSync(abs, 'utf8'))
      cache.set(abs, a)
    }
    return a
  }
  for (const file of files) {
    const abs = path.join(root, file)
    for (const target of linkTargets(fs.readFileSync(abs, 'utf8'))) {
      if (target === '' || /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue // absolute URLs
      const hash = target.indexOf('#')
      const rawPath = hash < 0 ? target : target.slice(0, hash)
      const anchor = hash < 0 ? undefined : decodeURIComponent(target.slice(hash + 1))
      if (rawPath.startsWith('/')) {
        broken.push(`${file}: ${target} (an absolute path; use a relative one)`)
        continue
      }
      const dest = rawPath === '' ? abs : path.resolve(path.dirname(abs), decodeURIComponent(rawPath))
      if (!fs.existsSync(dest)) {
        broken.push(`${file}: ${target} (no such file: ${path.relative(root, dest)})`)
        continue
      }
      if (anchor !== undefined && anchor !== '' && dest.endsWith('.md') && !anchorsOf(dest).has(anchor)) {
        broken.push(`${file}: ${target} (no heading with the anchor #${anchor} in ${path.relative(root, dest)})`)
      }
    }
  }
  return broken
}

test('slugs: GitHub\'s anchors for the headings the docs link to', (t) => {
  t.is(slug('Connections move to the successor (`transferConnections`)'), 'connections-move-to-the-successor-transferconnections')
  t.is(slug('Exit codes (`exitCodes`)'), 'exit-codes-exitcodes')
  t.is(slug('Plain `http` / `https` servers'), 'plain-http--https-servers')
  t.is(slug("Health routes (`health: true` or `health: { prefix: '/_probe' }`)"), 'health-routes-health-true-or-health--prefix-_probe-')
  t.is(slug('Command line: `graceful-reboot`'), 'command-line-graceful-reboot')
  t.is(slug('HTTP/2'), 'http2')
  t.deepEqual([...anchors('# A\n\n## Parameters\n\n```md\n# not a heading\n```\n\n## Parameters\n')], ['a', 'parameters', 'parameters-1'])
})

test('control: a missing file, a missing anchor and an absolute path are reported; code spans, code blocks and URLs are not links', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docs-links-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  fs.mkdirSync(path.join(dir, 'docs'))
  fs.writeFileSync(path.join(dir, 'docs', 'a.md'), '# A\n\n## Exit codes (`exitCodes`)\n')
  fs.writeFileSync(path.join(dir, 'README.md'), [
    '# R', '',
    '[ok](docs/a.md) [ok](docs/a.md#exit-codes-exitcodes) [ok](#r) [web](https://example.invalid/x.md)',
    '[gone](docs/gone.md) [bad anchor](docs/a.md#exit-codes) [self](#nowhere) ![img](docs/missing.svg)',
    '[abs](/docs/a.md)', '',
    '[ref]: docs/also-gone.md', '',
    '`[code](docs/none.md)`', '',
    '```md', '[fenced](docs/none.md)', '```', ''
  ].join('\n'))
  t.deepEqual(brokenLinks(dir, docFiles(dir)), [
    'README.md: docs/gone.md (no such file: docs/gone.md)',
    'README.md: docs/a.md#exit-codes (no heading with the anchor #exit-codes in docs/a.md)',
    'README.md: #nowhere (no heading with the anchor #nowhere in README.md)',
    'README.md: docs/missing.svg (no such file: docs/missing.svg)',
    'README.md: /docs/a.md (an absolute path; use a relative one)',
    'README.md: docs/also-gone.md (no such file: docs/also-gone.md)'
  ])
})

test('every relative link in README.md, docs/**/*.md and bench/README.md resolves, #anchors included', (t) => {
  const files = docFiles(ROOT)
  t.true(files.includes('README.md') && files.includes('bench/README.md') && files.some((f) => f.startsWith('docs/')), files.join(', '))
  t.deepEqual(brokenLinks(ROOT, files), [])
})

test(`README.md is a front door: at most ${README_MAX_BYTES} bytes (reference goes to docs/)`, (t) => {
  const bytes = fs.statSync(path.join(ROOT, 'README.md')).size
  t.true(bytes <= README_MAX_BYTES, `README.md is ${bytes} bytes`)
})

/** Relative paths of every file under `dir`, sorted. */
function filesUnder (dir: string, rel = ''): string[] {
  return fs.readdirSync(path.join(dir, rel), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesUnder(dir, path.join(rel, e.name)) : [path.join(rel, e.name)]))
    .sort()
}

test('docs/api/ is up to date: TypeDoc regenerates it from the TSDoc comments with no difference (npm run docs:api)', async (t) => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'docs-api-'))
  t.teardown(() => { fs.rmSync(out, { recursive: true, force: true }) })
  const typedoc = path.join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc')
  await promisify(execFile)(process.execPath, [typedoc, '--out', out, '--logLevel', 'Error'], { cwd: ROOT })
  const committed = path.join(ROOT, 'docs', 'api')
  const hint = 'run `npm run docs:api` and commit docs/api/'
  t.deepEqual(filesUnder(out), filesUnder(committed), hint)
  const differ = filesUnder(out).filter((f) => fs.readFileSync(path.join(out, f), 'utf8') !== fs.readFileSync(path.join(committed, f), 'utf8'))
  t.deepEqual(differ, [], hint)
})
