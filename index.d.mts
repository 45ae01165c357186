// Runs in both processes: the types of the ES module entry (index.mjs, copied to dist/ by the build):
// the CommonJS build's exports, and the Fastify plugin as the default export.
import { fastifyGraceful } from './index.js'

export * from './index.js'
export default fastifyGraceful
