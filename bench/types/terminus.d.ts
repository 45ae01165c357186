// The part of @godaddy/terminus 4.12.1's typings (typings/index.d.ts) that bench/apps/terminus.js
// uses. bench/tsconfig.json maps '@godaddy/terminus' here, so the type check of the bench reads the
// same declarations whether bench/node_modules is installed or not (CI installs the root only).
export interface TerminusOptions {
  timeout?: number
  signal?: string
  signals?: string[]
  useExit0?: boolean
  onSignal?: () => Promise<unknown>
  onShutdown?: () => Promise<unknown>
  beforeShutdown?: () => Promise<unknown>
}

export type Terminus = <T>(server: T, options?: TerminusOptions) => T

export declare const createTerminus: Terminus
