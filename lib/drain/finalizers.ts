// Runs in every process that shuts down (the old process of a reboot too): user finalizers as a dependency graph
// around the built-in node 'http', each with its own deadline.
import { FinalizerGraphError, FinalizerTimeoutError, InvalidOptionError, describe } from '../errors'
import type { ProcessSeam } from '../os'
import { MAX_MS } from '../limits'
import { findCycle } from '../cycle'

/** Why the process (or one app) is shutting down. */
export type ShutdownReason = 'shutdown' | 'reboot' | 'crash' | 'close'

/** What a finalizer receives. */
export interface FinalizerContext {
  reason: ShutdownReason
  /** What started it: an OS signal name ('SIGTERM'), 'admin', 'code' or 'close'. */
  trigger: string
  /** Aborted when this finalizer's own deadline passes. */
  signal: AbortSignal
  /** This finalizer's deadline, in epoch milliseconds. */
  deadline: number
}

export type Finalizer = (context: FinalizerContext) => unknown

export interface FinalizerOptions {
  /** A unique name, for `after`/`before` of other finalizers and for logs. */
  name?: string
  /** Names this one waits for. `'http'`: every HTTP connection is gone. */
  after?: readonly string[]
  /** Names that wait for this one. `'http'`: finish before the listeners close. */
  before?: readonly string[]
  /** Ms this finalizer may run. Default: the time left until the shutdown deadline, at least 1 s. */
  timeout?: number
}

export interface FinalizerOutcome {
  name: string
  ok: boolean
  ms: number
  timedOut: boolean
  error?: unknown
}

/** The built-in node: starts when the listeners close, completes when the last HTTP connection is gone. */
export const HTTP = 'http'
/** Floor of the default per-finalizer deadline, so a finalizer after a forced drain still gets to run. */
export const MIN_FINALIZER_MS = 1000

interface Entry {
  name: string
  fn: Finalizer
  after: readonly string[]
  before: readonly string[]
  timeout: number | undefined
}

/** The HTTP side of a run: `start` closes the listeners; its promise resolves when connections are gone. */
export type HttpNode = () => Promise<void>

export class Finalizers {
  private readonly entries: Entry[] = []
  private sealed = false
  private count = 0

  get size (): number { return this.entries.length }

  /** Adds a finalizer; validates its options at once, and its graph too once the app is ready. */
  add (fn: Finalizer, options: FinalizerOptions = {}): void {
    if (typeof fn !== 'function') {
      throw new InvalidOptionError(`onShutdown() needs a function, got ${describe(fn)}`)
    }
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError(`onShutdown() options must be an object, got ${describe(options)}`)
    }
    this.count++
    const name = options.name ?? (fn.name !== '' ? `${fn.name}#${this.count}` : `finalizer#${this.count}`)
    if (typeof name !== 'string' || name === '') {
      throw new InvalidOptionError(`onShutdown() option "name" must be a non-empty string, got ${describe(name)}`)
    }
    if (name === HTTP) {
      throw new InvalidOptionError(`onShutdown() option "name" cannot be "${HTTP}": it is the built-in node`)
    }
    if (this.entries.some((e) => e.name === name)) {
      throw new FinalizerGraphError('ERR_GRACEFUL_FINALIZER_DUPLICATE', `a finalizer named "${name}" is already registered`)
    }
    const after = names(options.after, 'after')
    const before = names(options.before, 'before')
    const timeout = options.timeout
    if (timeout !== undefined && !(typeof timeout === 'number' && Number.isFinite(timeout) && timeout > 0 && timeout <= MAX_MS)) {
      throw new InvalidOptionError(`onShutdown() option "timeout" must be a positive number of ms, at most ${MAX_MS} (about 24.8 days), got ${describe(timeout)}`)
    }
    const entry: Entry = { name, fn, after, before, timeout }
    this.entries.push(entry)
    if (this.sealed) {
      try {
        this.validate()
      } catch (err) {
        this.entries.pop()
        throw err
      }
    }
  }

  /**
   * Checks the graph (names exist, no cycle) and, from then on, checks each later addition at once.
   * Called when the app becomes ready.
   */
  seal (): void {
    this.validate()
    this.sealed = true
  }

  /** Throws a FinalizerGraphError for a name that no finalizer has or for a cycle. */
  validate (): void {
    const known = new Set([HTTP, ...this.entries.map((e) => e.name)])
    for (const e of this.entries) {
      for (const [key, list] of [['after', e.after], ['before', e.before]] as const) {
        for (const n of list) {
          if (!known.has(n)) {
            throw new FinalizerGraphError('ERR_GRACEFUL_FINALIZER_UNKNOWN',
              `finalizer "${e.name}" has ${key}: ["${n}"], but no finalizer is named "${n}" (known: ${[...known].join(', ')})`)
          }
        }
      }
    }
    const cycle = findCycle(this.dependencies())
    if (cycle !== undefined) throw new FinalizerGraphError('ERR_GRACEFUL_FINALIZER_CYCLE', `finalizers form a cycle: ${cycle.join(' -> ')}`)
  }

  /**
   * Runs the graph: nodes that 'http' depends on start at once; every other finalizer starts once
   * the listeners are closed and its own dependencies are done. Never rejects: failures are in the
   * outcomes. An invalid graph (only possible when the app never became ready) runs every finalizer
   * in parallel once the listeners close, and reports the graph error. Once `off()` is true (the drain
   * was called off), no finalizer starts any more; those running run to their end.
   */
  async run (http: HttpNode, deadline: number, base: Omit<FinalizerContext, 'signal' | 'deadline'>, seam: ProcessSeam, off: () => boolean = () => false):
  Promise<{ outcomes: FinalizerOutcome[], graphError: unknown }> {
    let graphError: unknown
    let deps: Map<string, Set<string>>
    try {
      this.validate()
      deps = this.dependencies()
    } catch (err) {
      graphError = err
      deps = new Map([[HTTP, new Set<string>()], ...this.entries.map((e) => [e.name, new Set<string>()] as const)])
    }
    const pre = ancestors(HTTP, deps)
    const done = new Map<string, Promise<void>>()
    const outcomes: FinalizerOutcome[] = []
    let httpStarted!: () => void
    const started = new Promise<void>((resolve) => { httpStarted = resolve })
    const byName = new Map(this.entries.map((e) => [e.name, e]))
    const node = (name: string): Promise<void> => {
      let p = done.get(name)
      if (p !== undefined) return p
      p = (async () => {
        await Promise.all([...(deps.get(name) ?? [])].map(node))
        if (name === HTTP) {
          const drained = http()
          httpStarted()
          await drained
          return
        }
        if (!pre.has(name)) await started
        const entry = byName.get(name)
        if (entry !== undefined && !off()) outcomes.push(await runOne(entry, deadline, base, seam))
      })()
      done.set(name, p)
      return p
    }
    await Promise.all([...deps.keys()].map(node))
    return { outcomes, graphError }
  }

  /** name -> names it waits for, 'http' included. */
  private dependencies (): Map<string, Set<string>> {
    const deps = new Map<string, Set<string>>([[HTTP, new Set()]])
    for (const e of this.entries) deps.set(e.name, new Set(e.after))
    for (const e of this.entries) {
      for (const b of e.before) deps.get(b)?.add(e.name)
    }
    return deps
  }
}

async function runOne (e: Entry, deadline: number, base: Omit<FinalizerContext, 'signal' | 'deadline'>, seam: ProcessSeam):
Promise<FinalizerOutcome> {
  const start = seam.now()
  const ms = e.timeout ?? Math.max(deadline - start, MIN_FINALIZER_MS)
  const controller = new AbortController()
  let cancel = (): void => {}
  const timedOut = new Promise<'timeout'>((resolve) => {
    cancel = seam.timer(ms, () => { resolve('timeout') })
  })
  try {
    const work = Promise.resolve().then(() => e.fn({ ...base, signal: controller.signal, deadline: start + ms }))
    work.catch(() => {})
    const first = await Promise.race([work.then(() => 'ok' as const), timedOut])
    if (first === 'timeout') {
      const error = new FinalizerTimeoutError(e.name, ms)
      controller.abort(error)
      return { name: e.name, ok: false, ms: seam.now() - start, timedOut: true, error }
    }
    return { name: e.name, ok: true, ms: seam.now() - start, timedOut: false }
  } catch (error) {
    return { name: e.name, ok: false, ms: seam.now() - start, timedOut: false, error }
  } finally {
    cancel()
  }
}

function ancestors (name: string, deps: Map<string, Set<string>>): Set<string> {
  const out = new Set<string>()
  const stack = [...(deps.get(name) ?? [])]
  while (stack.length > 0) {
    const n = stack.pop() as string
    if (out.has(n)) continue
    out.add(n)
    stack.push(...(deps.get(n) ?? []))
  }
  return out
}

function names (value: unknown, key: string): readonly string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && v !== '')) {
    throw new InvalidOptionError(`onShutdown() option "${key}" must be an array of finalizer names, got ${describe(value)}`)
  }
  return [...value] as string[]
}
