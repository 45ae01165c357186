// Runs in both processes: exports the package's stats and events as Prometheus metrics with
// prom-client (docs/events-and-stats.md shows it; test/stats.test.ts scrapes it). Call it once with
// the registry the app serves on /metrics.
import { Counter, Gauge, type Registry } from 'prom-client'
import { lifecycle } from '../index'

export function gracefulMetrics (register: Registry): void {
  const life = lifecycle()
  // Read at each scrape: the counts of this process's life (a successor starts from zero).
  new Gauge({
    name: 'graceful_reboot_reboots',
    help: 'Reboots of this process by outcome: requested, refused, started, succeeded, failed, lost',
    labelNames: ['outcome'],
    registers: [register],
    collect () {
      for (const [outcome, n] of Object.entries(life.stats().reboots)) this.set({ outcome }, n)
    }
  })
  new Gauge({
    name: 'graceful_reboot_connections',
    help: 'Connections at this process\'s drains: transferred to a successor, kept, forced at the deadline',
    labelNames: ['fate'],
    registers: [register],
    collect () {
      for (const [fate, n] of Object.entries(life.stats().connections)) this.set({ fate }, n)
    }
  })
  new Gauge({
    name: 'graceful_reboot_last_reboot_serving_ms',
    help: 'Ms from the last reboot request until its successor passed probation',
    registers: [register],
    collect () {
      const ms = life.stats().lastReboot?.servingMs
      if (ms !== undefined) this.set(ms)
    }
  })
  // Counted as they happen: one per reboot step.
  const steps = new Counter({ name: 'graceful_reboot_handoff_steps_total', help: 'Reboot steps seen by this process', labelNames: ['step'], registers: [register] })
  life.on('handoff', (e) => { steps.inc({ step: e.step }) })
}
