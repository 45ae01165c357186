// Runs in both processes: the documented exit codes of a process-wide shutdown (docs/shutdown.md, "Exit codes").

/** Exit codes of a process-wide shutdown (documented in docs/shutdown.md). */
export const exitCodes = {
  /** Every connection drained and every finalizer succeeded. */
  clean: 0,
  /** An uncaught exception or unhandled rejection started the shutdown or happened during its drain. */
  crash: 1,
  /** The old process of a reboot lost its successor during a drain that a shutdown or a crash had joined (else it serves again instead), and served on until the drain was over: the supervisor should restart the service. */
  successorLost: 69,
  /** A successor started by a reboot was not ready within `rebootTimeout` of its own start, and gave up. */
  notReady: 70,
  /** The deadline passed: connections or WebSockets were destroyed. */
  forced: 75,
  /** A finalizer threw, rejected or ran past its deadline. */
  finalizerFailed: 76,
  /** A second shutdown signal arrived during a drain a shutdown signal started or joined: 128 + the signal number (130 for SIGINT, 143 for SIGTERM). */
  secondSignalBase: 128
} as const
