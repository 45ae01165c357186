// Runs in both processes: what the old and the new process of a reboot say to each other: the
// environment variables beside systemd's LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID, and the IPC messages.

/** systemd passes sockets from fd 3 on; so does a reboot. */
export const FIRST_FD = 3
/** Environment variable naming the pid of the process that started this one by a reboot. */
export const PARENT_ENV = 'GRACEFUL_REBOOT_PARENT_PID'
/** Set, to the longest wait in ms, when the reboot is stateful (accept only once the old process exited). */
export const STATEFUL_ENV = 'GRACEFUL_REBOOT_STATEFUL'
/** The message a successor sends over IPC once it serves. */
export const READY_MESSAGE = 'graceful-reboot:ready'
