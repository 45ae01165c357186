// Runs in both processes: the logger shape the package writes to (pino's, so fastify.log fits).

export interface Logger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

/** For apps without a logger (Express, plain http): one line per event on stderr. */
export const stderrLogger: Logger = {
  info: (obj, msg) => { write('info', obj, msg) },
  warn: (obj, msg) => { write('warn', obj, msg) },
  error: (obj, msg) => { write('error', obj, msg) }
}

function write (level: string, obj: object, msg: string): void {
  const fields = Object.keys(obj).length > 0 ? ' ' + JSON.stringify(obj, errorFields) : ''
  process.stderr.write(`[${level}] ${msg}${fields}\n`)
}

function errorFields (_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, code: (value as { code?: unknown }).code, stack: value.stack }
  return value
}

export function isLogger (value: unknown): value is Logger {
  if (value === null || typeof value !== 'object') return false
  const l = value as Record<string, unknown>
  return typeof l.info === 'function' && typeof l.warn === 'function' && typeof l.error === 'function'
}
