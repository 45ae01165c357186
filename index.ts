// Runs in both processes: the package entry point (re-exports only).
import { fastifyGraceful } from './lib/adapters/fastify'

export default fastifyGraceful
export { fastifyGraceful, GOING_AWAY } from './lib/adapters/fastify'
export { expressGraceful, type GracefulExpressApp, type ExpressLike } from './lib/adapters/express'
export { createGraceful, type GracefulHandle } from './lib/adapters/http'
export { lifecycle, exitCodes, type Lifecycle, type LifecycleState, type ShutdownResult, type ShutdownOptions, type RebootOptions, type HandoffEvent } from './lib/lifecycle'
export { rebootedFrom } from './lib/incoming/inherited'
export { declareReady } from './lib/adapters/http'
export type { GracefulOptions, AdminOptions, HealthOptions, SignalMap, SignalAction } from './lib/options'
export type { Finalizer, FinalizerContext, FinalizerOptions, FinalizerOutcome, ShutdownReason } from './lib/drain/finalizers'
export type { UnitResult } from './lib/drain/app'
export type { Logger } from './lib/log'
export {
  GracefulError,
  InvalidOptionError,
  FinalizerGraphError,
  FinalizerTimeoutError,
  RebootError,
  AdoptionError
} from './lib/errors'
