// Runs in the test process: scrapes a Prometheus text endpoint on a fresh connection (so that, during
// a reboot's overlap or under a supervisor, any process may answer) and checks that no counter ever
// goes back across scrapes.
import http from 'node:http'

/** The samples of the counters (`*_total`) of one scrape: series (name and labels) -> value. */
export function scrape (port: number, path = '/metrics'): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8').on('data', (c: string) => { text += c }).once('end', () => {
        if (res.statusCode !== 200) { reject(new Error(`GET ${path}: ${String(res.statusCode)} ${text}`)); return }
        const samples = new Map<string, number>()
        for (const line of text.split('\n')) {
          const m = /^([a-z_]+_total(?:\{[^}]*\})?) ([0-9.e+-]+)$/.exec(line)
          if (m !== null) samples.set(m[1] as string, Number(m[2]))
        }
        resolve(samples)
      }).once('error', reject)
    }).once('error', reject)
  })
}

/** Remembers the highest value of every counter series seen; `see()` returns the ones that went back. */
export class CounterWatch {
  readonly highest = new Map<string, number>()
  scrapes = 0
  /** Scrapes that had no counter sample (a process that does not report its line). */
  empty = 0

  see (samples: Map<string, number>): string[] {
    this.scrapes++
    if (samples.size === 0) this.empty++
    const back: string[] = []
    for (const [series, value] of samples) {
      const before = this.highest.get(series)
      if (before !== undefined && value < before) back.push(`${series}: ${before} then ${value}`)
      if (before === undefined || value > before) this.highest.set(series, value)
    }
    return back
  }
}

/**
 * Scrapes `port` back to back until `stop()`; resolves with every decrease seen. A scrape that fails
 * (no process accepting for a moment is not expected, but counted) is listed too.
 */
export function scrapeLoop (port: number): { stop: () => void, done: Promise<{ back: string[], failed: string[], watch: CounterWatch }> } {
  let running = true
  const watch = new CounterWatch()
  const back: string[] = []
  const failed: string[] = []
  const done = (async () => {
    // Bounded: a stop that never comes still ends the loop.
    const until = Date.now() + 120_000
    while (running && Date.now() < until) {
      try {
        back.push(...watch.see(await scrape(port)))
      } catch (err) {
        failed.push((err as Error).message)
      }
    }
    return { back, failed, watch }
  })()
  return { stop: () => { running = false }, done }
}
