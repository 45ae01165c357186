// Runs in the processes of the NestJS fixture when test/nestjs.test.ts preloads it (NODE_OPTIONS
// --require, which successors and workers inherit): every `@nestjs/*` package resolves to NestJS 11,
// installed in test/nest11/ (the root's devDependencies carry NestJS 12), so the same app and the same
// checks run on both.
import Module from 'node:module'
import path from 'node:path'

/** The folder whose node_modules holds NestJS 11 (`npm ci --prefix test/nest11`). */
export const NEST11 = path.join(__dirname, '..', '..', '..', 'test', 'nest11')

type Resolve = (request: string, parent: unknown, isMain: boolean, options?: { paths?: string[] }) => string
const patched = Module as unknown as { _resolveFilename: Resolve }
const resolve = patched._resolveFilename
patched._resolveFilename = function (this: unknown, request, parent, isMain, options) {
  return resolve.call(this, request, parent, isMain, request.startsWith('@nestjs/') ? { paths: [NEST11] } : options)
}
