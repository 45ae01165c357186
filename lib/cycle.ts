// Runs in both processes: the one cycle search of the package's dependency graphs (the finalizers,
// the startup services): the first cycle found, as the path that closes it.

/** The first cycle in `deps` (name -> names it waits for), as `[a, b, a]`; undefined when there is none. */
export function findCycle (deps: ReadonlyMap<string, Iterable<string>>): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (n: string, path: string[]): string[] | undefined => {
    const s = state.get(n)
    if (s === 'done') return undefined
    if (s === 'visiting') return [...path.slice(path.indexOf(n)), n]
    state.set(n, 'visiting')
    for (const d of deps.get(n) ?? []) {
      const cycle = visit(d, [...path, n])
      if (cycle !== undefined) return cycle
    }
    state.set(n, 'done')
    return undefined
  }
  for (const n of deps.keys()) {
    const cycle = visit(n, [])
    if (cycle !== undefined) return cycle
  }
  return undefined
}
