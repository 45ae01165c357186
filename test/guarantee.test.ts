// docs/guarantee.md against the test suite and the README: every test it names exists (the quoted part
// of its title is in that test file), every promise and limit names at least one, and the README's
// guarantee section states the same promises word for word (its bold sentences are guarantee.md's).
import fs from 'node:fs'
import path from 'node:path'
import test from 'ava'

const ROOT = path.join(__dirname, '..', '..')
const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), 'utf8')
const squash = (s: string): string => s.replace(/\s+/g, ' ')

/** The items of a Markdown text: its paragraphs and list items (a list item's wrapped lines joined). */
function items (text: string): string[] {
  return text.split(/\n(?=- |\n)/).map((s) => squash(s).trim()).filter((s) => s !== '')
}

/** Each `test/x.test.ts` an item names, with the quoted parts of titles that follow it. */
function references (item: string): Array<{ file: string, quotes: string[] }> {
  const out: Array<{ file: string, quotes: string[] }> = []
  const parts = item.split(/`(test\/[\w-]+\.test\.ts)`/)
  for (let i = 1; i < parts.length; i += 2) {
    const after = parts[i + 1] ?? ''
    out.push({ file: parts[i] as string, quotes: [...after.matchAll(/"([^"]+)"/g)].map((m) => m[1] as string) })
  }
  return out
}

/** What is wrong with the references of `doc` (a file missing, a title not found, an item naming none). */
function problems (doc: string, sections: readonly string[]): string[] {
  const found: string[] = []
  for (const section of sections) {
    const at = doc.indexOf(`\n## ${section}\n`)
    if (at < 0) { found.push(`no section "${section}"`); continue }
    const end = doc.indexOf('\n## ', at + 1)
    for (const item of items(doc.slice(at + section.length + 5, end < 0 ? undefined : end))) {
      const refs = references(item)
      if (refs.length === 0) {
        // A paragraph that introduces the list under it, or the note on the README's features, names none.
        if (!item.endsWith(':') && !item.startsWith('The README lists')) found.push(`names no test: ${item.slice(0, 80)}`)
        continue
      }
      for (const { file, quotes } of refs) {
        if (!fs.existsSync(path.join(ROOT, file))) { found.push(`no file ${file}`); continue }
        const source = squash(read(file))
        if (quotes.length === 0) found.push(`${file} named without a title: ${item.slice(0, 80)}`)
        for (const q of quotes) if (!source.includes(q)) found.push(`${file} has no test titled with "${q}"`)
      }
    }
  }
  return found
}

/** The bold sentences (ending with a period) of a text. */
function boldSentences (text: string): string[] {
  return [...squash(text).matchAll(/\*\*([^*]+\.)\*\*/g)].map((m) => m[1] as string)
}

test('docs/guarantee.md: every promise and every limit names a test, and every test it names exists in that file', (t) => {
  t.deepEqual(problems(read('docs/guarantee.md'), ['The promises', 'Known limits']), [])
})

test('the check fails on a test that does not exist, a file that does not exist, and a statement naming no test', (t) => {
  const doc = [
    '# x', '', '## The promises', '',
    '**A promise.** Checked by `test/reboot.test.ts` "no such title anywhere".',
    '- A limit checked by `test/nope.test.ts` "x".',
    '- A statement with no test.', ''
  ].join('\n')
  t.deepEqual(problems(doc, ['The promises']), [
    'test/reboot.test.ts has no test titled with "no such title anywhere"',
    'no file test/nope.test.ts',
    'names no test: - A statement with no test.'
  ])
})

test('the README\'s guarantee section states the promises of docs/guarantee.md word for word', (t) => {
  const readme = read('README.md')
  const from = readme.indexOf('**What it guarantees**')
  const to = readme.indexOf('\n## ', from)
  t.true(from >= 0 && to > from, 'README.md has its guarantee section')
  const doc = read('docs/guarantee.md')
  const promises = doc.slice(doc.indexOf('\n## The promises\n'), doc.indexOf('\n## Known limits\n'))
  const inReadme = boldSentences(readme.slice(from, to))
  const inDoc = boldSentences(promises)
  t.true(inDoc.length >= 5)
  t.deepEqual([...inReadme].sort(), [...inDoc].sort())
})
