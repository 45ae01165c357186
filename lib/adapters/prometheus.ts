// Runs in both processes: the Prometheus export of `lifecycle().stats()` with prom-client (an optional
// peer dependency: only `graceful-reboot/prometheus` loads it). Counters of the process's reboot line,
// read at each scrape, and only from the process that reports its line: the other process of a reboot
// answers a scrape with no samples of them (a gap, never a counter that goes back).
import { Counter, Gauge, type Registry } from 'prom-client'
import { lifecycle, type Lifecycle } from '../lifecycle'

export interface GracefulMetricsOptions {
  /** Put before every metric name (default 'graceful_reboot_'). */
  prefix?: string
  /** The lifecycle to read (default `lifecycle()`, the process's). */
  lifecycle?: Pick<Lifecycle, 'stats' | 'on'>
  /**
   * A `worker` label on every series, naming the worker's slot (default: `process.env.GRACEFUL_WORKER`,
   * set in a worker of `graceful-reboot run`): each slot is a reboot line of its own, and a scrape
   * reaches one worker of several, so the slots' series must not mix.
   */
  worker?: string | undefined
}

/**
 * Registers the package's metrics on `register` (the registry the app serves on /metrics):
 * `<prefix>reboots_total{outcome}` (requested, refused, started, succeeded, failed, lost),
 * `<prefix>drains_total`, `<prefix>connections_total{fate}` (transferred, kept, forced): counters of the
 * reboot line, which continue across reboots; `<prefix>generation` (reboots of the line so far);
 * `<prefix>last_reboot_serving_ms` (this process's last reboot, request to end of probation). A process
 * that does not report its line (a successor in probation, an old process after it) gives no sample.
 */
export function gracefulMetrics (register: Registry, options: GracefulMetricsOptions = {}): void {
  const life = options.lifecycle ?? lifecycle()
  const prefix = options.prefix ?? 'graceful_reboot_'
  const worker = 'worker' in options ? options.worker : process.env.GRACEFUL_WORKER
  const registers = [register]
  // Every series gets the worker label (when there is one); an empty label set is then no sample at all.
  const base: Record<string, string> = worker === undefined ? {} : { worker }
  const names = (...more: string[]): string[] => [...more, ...Object.keys(base)]
  new Counter({
    name: `${prefix}reboots_total`,
    help: 'Reboot requests of this reboot line by outcome: requested, refused, started, succeeded, failed, lost',
    labelNames: names('outcome'),
    registers,
    collect () {
      this.reset()
      const s = life.stats()
      if (s.reporting) for (const [outcome, n] of Object.entries(s.reboots)) this.inc({ ...base, outcome }, n)
    }
  })
  new Counter({
    name: `${prefix}drains_total`,
    help: 'Finished drains of this reboot line (each old process of a reboot drains once)',
    labelNames: names(),
    registers,
    collect () {
      this.reset()
      const s = life.stats()
      if (s.reporting) this.inc(base, s.drains)
      else this.remove(base)
    }
  })
  new Counter({
    name: `${prefix}connections_total`,
    help: 'Connections at the drains of this reboot line: transferred to a successor, kept (drained where they were), forced at the deadline',
    labelNames: names('fate'),
    registers,
    collect () {
      this.reset()
      const s = life.stats()
      if (s.reporting) for (const [fate, n] of Object.entries(s.connections)) this.inc({ ...base, fate }, n)
    }
  })
  new Gauge({
    name: `${prefix}generation`,
    help: 'Reboots of this reboot line so far: 0 for a first start, one more for each successor',
    labelNames: names(),
    registers,
    collect () {
      this.reset()
      const s = life.stats()
      if (s.reporting) this.set(base, s.generation)
      else this.remove(base)
    }
  })
  new Gauge({
    name: `${prefix}last_reboot_serving_ms`,
    help: 'Ms from this process\'s last reboot request until its successor passed probation',
    labelNames: names(),
    registers,
    collect () {
      this.reset()
      const ms = life.stats().lastReboot?.servingMs
      if (ms !== undefined) this.set(base, ms)
      else this.remove(base)
    }
  })
}
