'use strict'
// Runs in the benchmark process: where the cores went during a window. Samples, every `everyMs`, the
// CPU time of the contender's processes (/proc/<pid>/stat), of this process (the load generator) and
// of the whole machine (/proc/stat: every process, other users' included). Linux only: elsewhere
// every figure is NaN.
const fs = require('node:fs')
const { performance } = require('node:perf_hooks')
const { setInterval, clearInterval } = require('node:timers')

/** Clock ticks per second of /proc (USER_HZ: 100 on Linux). */
const HZ = 100

/** @typedef {{ at: number, procs: Map<number, number>, machineBusy: number, machineTotal: number, selfUs: number }} Sample */

/** @param {number} pid @returns {number | undefined} utime + stime, ticks */
function procTicks (pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return undefined
  }
}

/** @returns {{ busy: number, total: number }} ticks of every CPU since boot */
function machineTicks () {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0)
    return { busy: total - (v[3] ?? 0) - (v[4] ?? 0), total }
  } catch {
    return { busy: NaN, total: NaN }
  }
}

class CpuSampler {
  /**
   * @param {() => Iterable<number>} pids the processes to follow (read at every sample)
   * @param {number} [everyMs]
   */
  constructor (pids, everyMs = 100) {
    this.pids = pids
    /** @type {Sample[]} */
    this.samples = []
    this.timer = setInterval(() => { this.sample() }, everyMs)
    this.sample()
  }

  sample () {
    /** @type {Map<number, number>} */
    const procs = new Map()
    for (const pid of this.pids()) {
      const t = procTicks(pid)
      if (t !== undefined) procs.set(pid, t)
    }
    const m = machineTicks()
    const self = process.cpuUsage()
    this.samples.push({ at: performance.now(), procs, machineBusy: m.busy, machineTotal: m.total, selfUs: self.user + self.system })
  }

  stop () {
    clearInterval(this.timer)
    this.sample()
  }

  /**
   * Cores used between the performance.now() times `from` and `to` (the nearest samples inside):
   * by the followed processes (a process that exited counts up to its last sample), by this process,
   * and by the whole machine (busy, of `cores`).
   * @param {number} from
   * @param {number} to
   * @returns {{ servers: number, client: number, machine: number, cores: number }}
   */
  between (from, to) {
    const ai = this.samples.findIndex((s) => s.at >= from)
    let bi = -1
    for (let i = this.samples.length - 1; i >= 0; i--) if ((/** @type {Sample} */ (this.samples[i])).at <= to) { bi = i; break }
    if (ai < 0 || bi <= ai) return { servers: NaN, client: NaN, machine: NaN, cores: NaN }
    const a = /** @type {Sample} */ (this.samples[ai])
    const b = /** @type {Sample} */ (this.samples[bi])
    const seconds = (b.at - a.at) / 1000
    /** @type {Set<number>} */
    const pids = new Set()
    for (let i = ai; i <= bi; i++) for (const pid of (/** @type {Sample} */ (this.samples[i])).procs.keys()) pids.add(pid)
    let ticks = 0
    for (const pid of pids) {
      let last = 0
      for (let i = bi; i >= ai; i--) {
        const t = (/** @type {Sample} */ (this.samples[i])).procs.get(pid)
        if (t !== undefined) { last = t; break }
      }
      ticks += last - (a.procs.get(pid) ?? 0)
    }
    const cores = (b.machineTotal - a.machineTotal) / HZ / seconds
    return {
      servers: round(ticks / HZ / seconds),
      client: round((b.selfUs - a.selfUs) / 1e6 / seconds),
      machine: round((b.machineBusy - a.machineBusy) / HZ / seconds),
      cores: Math.round(cores)
    }
  }
}

/** @param {number} n */
function round (n) { return Math.round(n * 100) / 100 }

module.exports = { CpuSampler }
