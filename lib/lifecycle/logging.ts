// Runs in both processes: the lifecycle's loggers: every line names this process's pid and its role
// in a reboot; process-level messages go through the first registered app's logger (stderr lines
// without one).
import { taggedLogger, type LogTags, type Logger } from '../log'

export class ProcessLoggers {
  private readonly tags: () => LogTags
  private readonly first: () => Logger | undefined
  private fallback: Logger | undefined

  constructor (tags: () => LogTags, first: () => Logger | undefined) {
    this.tags = tags
    this.first = first
  }

  /** The logger of the first registered app, for process-level messages. */
  get log (): Logger {
    return this.first() ?? (this.fallback ??= this.logger())
  }

  /** The logger for an app whose own logger is `base`: error lines also go to stderr where `base` drops them. */
  logger (base?: Logger): Logger {
    return taggedLogger(base, this.tags)
  }
}
