// Runs in both processes: the package entry point (re-exports only).
import { fastifyGraceful } from './lib/adapters/fastify'

export default fastifyGraceful
export { fastifyGraceful, GOING_AWAY, type FastifyGracefulPlugin } from './lib/adapters/fastify'
export { expressGraceful, type GracefulExpressApp, type ExpressLike, type GracefulRequest } from './lib/adapters/express'
export { createGraceful, type GracefulHandle } from './lib/adapters/http'
export { nestGraceful, type NestGracefulHandle, type NestAppLike } from './lib/adapters/nest'
export { lifecycle, rebootedFrom, type Lifecycle } from './lib/lifecycle'
export { exitCodes } from './lib/exit-codes'
export type { LifecycleState, LifecycleEvents, ShutdownResult, ShutdownOptions, RebootOptions, HandoffEvent } from './lib/events'
export type { LifecycleStats, LastReboot } from './lib/lifecycle/stats'
export type { Launcher, LauncherKind } from './lib/launcher'
export { declareReady } from './lib/adapters/http'
export type { GracefulOptions, AdminOptions, HealthOptions, SignalMap, SignalAction } from './lib/options'
export type { HealthCheck, HealthProbe } from './lib/health-options'
export type { CheckOutcome } from './lib/routes/checks'
export type { Finalizer, FinalizerContext, FinalizerOptions, FinalizerOutcome, ShutdownReason } from './lib/drain/finalizers'
export type { UnitResult } from './lib/drain/app'
export type { Snapshot } from './lib/outgoing/state'
export type { RebootHook, RebootHookContext, RebootHookOptions, DeprecatedHookStep } from './lib/lifecycle/hooks'
export type { RebootStep, RebootHookStep, RecordedStep } from './lib/steps'
export type { StartupService, StartupOptions, StartupContext, StartupOutcome, StartupState } from './lib/startup/graph'
export { FINAL_GOAWAY_MAX_DELAY, type Http2DrainCounts } from './lib/drain/http2'
export type { Logger, LogRole } from './lib/log'
export type { KeptReason } from './lib/handoff/socket'
export {
  GracefulError,
  InvalidOptionError,
  FinalizerGraphError,
  FinalizerTimeoutError,
  RebootError,
  AdoptionError,
  AlreadyRegisteredError,
  PidFileError,
  DrainStartedError,
  HandoverError,
  StartupError,
  StartupGraphError,
  StartupTimeoutError,
  type RebootErrorCode,
  type HandoverErrorCode
} from './lib/errors'
