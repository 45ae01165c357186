// Runs in both processes: what makes a valid admin token (one word of visible ASCII that fits
// `Authorization: Bearer <token>`), with messages that say what is wrong and never show the token.
import { InvalidOptionError, describe } from './errors'

const WHITESPACE: Record<string, string> = { ' ': 'a space', '\t': 'a tab', '\n': 'a newline', '\r': 'a carriage return' }

/**
 * Why `token` cannot be an admin token, or undefined: it must fit `Authorization: Bearer <token>` as
 * one word of visible ASCII (0x21-0x7E). A token with whitespace never matches what a client sends
 * (the header's token ends at the first space), and control or non-ASCII characters do not survive
 * an HTTP header the same way in every client. The message never shows the token itself.
 */
function tokenProblem (token: string): string | undefined {
  const at = token.search(/[^\x21-\x7e]/)
  if (at === -1) return undefined
  const ch = token[at] as string
  const code = token.codePointAt(at) as number
  const where = at + (code > 0xffff ? 2 : 1) === token.length ? 'at its end' : at === 0 ? 'at its start' : `at index ${at}`
  if (/\s/.test(ch)) {
    return `"admin.token" must not contain whitespace: it has ${WHITESPACE[ch] ?? 'whitespace'} ${where} (a token read from a file or an environment variable often keeps its trailing newline: trim it); a Bearer token is one word ("Authorization: Bearer <token>"), so this one could never match`
  }
  const what = code < 0x20 || code === 0x7f ? 'a control character' : 'a character beyond ASCII'
  return `"admin.token" must be visible ASCII characters only (0x21-0x7E): it has ${what} (U+${code.toString(16).toUpperCase().padStart(4, '0')}) ${where}, which an HTTP header does not carry the same way in every client`
}

/** A valid `admin.token`, returned as it is; an InvalidOptionError naming what is wrong with any other value. */
export function checkToken (value: unknown): string {
  if (typeof value !== 'string' || value === '') {
    throw new InvalidOptionError(`"admin.token" must be a non-empty string, got ${describe(value)}; leave it out to serve plain local calls only`)
  }
  const problem = tokenProblem(value)
  if (problem !== undefined) throw new InvalidOptionError(problem)
  return value
}
