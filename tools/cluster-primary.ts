// Runs in the node:cluster contender of tools/workers-bench.ts: a cluster primary (round-robin, Node's
// default on Linux) with WORKERS workers of tools/workers-app.ts (APP_MODE=plain). SIGUSR2 rolls them
// the usual node:cluster way: for each old worker, fork a new one, wait for its 'listening', then
// disconnect the old one (its server closes, it exits once its connections are done; killed after 10 s).
// SIGTERM disconnects every worker and exits.
import cluster, { type Worker } from 'node:cluster'
import * as path from 'node:path'

function emit (event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, pid: process.pid, ...fields }) + '\n')
}

const n = Number(process.env.WORKERS ?? 2)
cluster.setupPrimary({ exec: path.join(__dirname, 'workers-app.js') })

function fork (): Promise<Worker> {
  const w = cluster.fork({ APP_MODE: 'plain' })
  return new Promise((resolve) => { w.once('listening', () => { resolve(w) }) })
}

async function roll (): Promise<void> {
  for (const old of Object.values(cluster.workers ?? {})) {
    if (old === undefined) continue
    await fork()
    const gone = new Promise<void>((resolve) => { old.once('exit', () => { resolve() }) })
    const t = setTimeout(() => { old.kill('SIGKILL') }, 10_000)
    old.disconnect()
    await gone
    clearTimeout(t)
  }
  emit('rolled')
}

async function main (): Promise<void> {
  await Promise.all(Array.from({ length: n }, fork))
  emit('serving', { workers: n })
  process.on('SIGUSR2', () => { void roll() })
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.disconnect()
    cluster.on('exit', () => { if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0) })
  })
}

void main()
