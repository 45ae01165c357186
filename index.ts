// Runs in both processes: the package entry point (re-exports only).
import { fastifyGraceful } from './lib/fastify'

export default fastifyGraceful
export { fastifyGraceful, GOING_AWAY } from './lib/fastify'
export { expressGraceful, type GracefulExpressApp, type ExpressLike } from './lib/express'
export { createGraceful, type GracefulHandle } from './lib/core'
export { lifecycle, exitCodes, type Lifecycle, type LifecycleState, type ShutdownResult, type ShutdownOptions, type RebootOptions, type HandoffEvent } from './lib/lifecycle'
export { rebootedFrom } from './lib/handoff/inherited'
export { declareReady } from './lib/core'
export type { GracefulOptions, AdminOptions, HealthOptions, SignalMap, SignalAction } from './lib/options'
export type { Finalizer, FinalizerContext, FinalizerOptions, FinalizerOutcome, ShutdownReason } from './lib/finalizers'
export type { UnitResult } from './lib/unit'
export type { Logger } from './lib/log'
export {
  GracefulError,
  InvalidOptionError,
  FinalizerGraphError,
  FinalizerTimeoutError,
  RebootError,
  AdoptionError
} from './lib/errors'
