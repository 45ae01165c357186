'use strict'
// Runs at `npm pack` and `npm publish` (prepack: `strip`, postpack: `restore`): the packed package.json
// carries no `prepare` script. npm runs `prepare` only for an install from git or from a folder (where
// it builds dist/); in a tarball it would never run, yet npm lists it among the install scripts a user
// has to review. package.json is rewritten in place for the pack and put back after it, byte for byte
// (a copy is kept in package.json.prepack until then; a pack that died before its postpack is undone
// by the next strip).
const fs = require('node:fs')
const path = require('node:path')

const ROOT = path.join(__dirname, '..')
const FILE = path.join(ROOT, 'package.json')
const KEPT = path.join(ROOT, 'package.json.prepack')

function restore () {
  if (fs.existsSync(KEPT)) fs.renameSync(KEPT, FILE)
}

const step = process.argv[2]
if (step === 'restore') {
  restore()
} else if (step === 'strip') {
  restore()
  const text = fs.readFileSync(FILE, 'utf8')
  const manifest = JSON.parse(text)
  fs.writeFileSync(KEPT, text)
  delete manifest.scripts.prepare
  fs.writeFileSync(FILE, JSON.stringify(manifest, null, 2) + '\n')
} else {
  process.stderr.write(`usage: node scripts/pack-manifest.js strip|restore (got ${JSON.stringify(step)})\n`)
  process.exit(2)
}
