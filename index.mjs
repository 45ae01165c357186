// Runs in both processes: the package's ES module entry (copied to dist/ by the build, next to the
// CommonJS index.js). Node gives an ES module that imports CommonJS its module.exports object as the
// default import; this entry makes the default import the Fastify plugin itself, as the README shows.
import cjs from './index.js'

export * from './index.js'
export default cjs.default
