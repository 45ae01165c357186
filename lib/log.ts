// Runs in both processes: the logger shape the package writes to (pino's, so fastify.log fits), the
// stderr logger, and the tags (pid, role in a reboot) every line the package writes carries.
import { inspect } from 'node:util'

export interface Logger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

/** Which side of a reboot a process is on: 'old' once it started a reboot, 'new' when a reboot started it. */
export type LogRole = 'old' | 'new'

/** What every line the package writes names. */
export interface LogTags {
  pid: number
  role: LogRole | undefined
  /**
   * The process's info lines are details (a worker of `graceful-reboot run`, whose supervisor writes
   * one line per worker and rollout): they go to the logger's `debug` (dropped without one, and on stderr).
   */
  detail?: boolean
}

type Level = keyof Logger

/**
 * The logger the package writes through for one app. With `base` (the app's logger), every line gets
 * `role` while it has one, and `pid` unless `base` is pino (whose lines carry `pid` already); where
 * `base` drops error lines (Fastify's default `logger: false`, pino at level 'silent'), error lines
 * go to stderr too. Without `base`: one line per event on stderr, `[level] pid=N role=R message
 * {fields}`, an error's stack (as Node prints it) on the lines after it. With `detail` (a worker of a
 * supervisor), info lines go to `base.debug`, and are dropped where there is none.
 */
export function taggedLogger (base: Logger | undefined, tags: () => LogTags): Logger {
  const log = (level: Level) => (obj: object, msg: string): void => {
    const t = tags()
    if (level === 'info' && t.detail === true) {
      const debug = (base as { debug?: unknown } | undefined)?.debug
      if (typeof debug === 'function') (debug as Logger['info']).call(base, { ...(isPino(base as Logger) ? {} : { pid: t.pid }), ...(t.role === undefined ? {} : { role: t.role }), ...obj }, msg)
      return
    }
    if (base === undefined) {
      writeStderr(level, t, obj, msg)
      return
    }
    const fields: Record<string, unknown> = isPino(base) ? {} : { pid: t.pid }
    if (t.role !== undefined) fields.role = t.role
    base[level]({ ...fields, ...obj }, msg)
    if (level === 'error' && dropsErrors(base)) writeStderr(level, t, obj, msg)
  }
  return { info: log('info'), warn: log('warn'), error: log('error') }
}

function writeStderr (level: Level, tags: LogTags, obj: object, msg: string): void {
  const rest: Record<string, unknown> = {}
  const errors: string[] = []
  for (const [key, value] of Object.entries(obj)) {
    if (value instanceof Error) errors.push(inspect(value))
    else rest[key] = value
  }
  const fields = Object.keys(rest).length > 0 ? ' ' + JSON.stringify(rest, errorFields) : ''
  const role = tags.role === undefined ? '' : ` role=${tags.role}`
  const stacks = errors.map((e) => e + '\n').join('')
  process.stderr.write(`[${level}] pid=${tags.pid}${role} ${msg}${fields}\n${stacks}`)
}

function errorFields (_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, code: (value as { code?: unknown }).code, stack: value.stack }
  return value
}

/** pino (Fastify's logger) adds `pid` to every line itself (its default `base`). */
function isPino (log: Logger): boolean {
  return Symbol.for('pino.serializers') in log
}

/**
 * Whether `log` drops error lines: pino with its level above 'error' ('silent', 'fatal'), or
 * Fastify's logger when it is off (abstract-logging: no level, one no-op for every method).
 */
export function dropsErrors (log: Logger): boolean {
  const l = log as Logger & { level?: unknown, isLevelEnabled?: unknown, [method: string]: unknown }
  if (typeof l.isLevelEnabled === 'function') {
    try {
      return (l.isLevelEnabled as (level: string) => boolean).call(log, 'error') === false
    } catch {
      return false
    }
  }
  if (l.level !== undefined) return l.level === 'silent'
  const methods = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'].map((m) => l[m])
  return methods.every((m) => typeof m === 'function' && m === methods[0])
}

export function isLogger (value: unknown): value is Logger {
  if (value === null || typeof value !== 'object') return false
  const l = value as Record<string, unknown>
  return typeof l.info === 'function' && typeof l.warn === 'function' && typeof l.error === 'function'
}
