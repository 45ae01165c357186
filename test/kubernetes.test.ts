// Kubernetes without a cluster (test/helpers/k8s.ts): pods of the example app behind a proxy that plays
// the Service, with endpoint propagation lag, a readiness prober, preStop, the grace period and its
// SIGKILL. The rolling update of 3 pods with a 5 s endpoint lag, with the settings of
// example/kubernetes/deployment.yaml (read from the manifest, which must match docs/kubernetes.md),
// fails nothing under pooled and new-connection load; with readinessDelay 0 the loss is printed; the
// readiness policy for KEP-1669 (a terminating pod stays "serving" while it accepts) is measured on the
// last pod of a Service.
import fs from 'node:fs'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import { runLoad, type LoadResult, type LoadRun } from '../tools/load'
import { Cluster, ServiceProxy, type PodSpec, type ProxyCounts } from './helpers/k8s'

// CI runs the Kubernetes simulator on one Node line (Node 20): it drives the package, not the Node internals the
// connection transfer relies on, which the transfer tests check on every line (.ci/run).
const serial = process.env.GRACEFUL_REBOOT_SKIP_LONG_SUITES === '1' ? test.skip : test.serial

const ROOT = path.join(__dirname, '..', '..')

/** The values the manifest sets, read line by line (no YAML parser). */
function manifestSettings (text: string): Record<string, number | boolean> {
  const num = (re: RegExp, what: string): number => {
    const m = re.exec(text)
    if (m === null) throw new Error(`example/kubernetes/deployment.yaml: no ${what}`)
    return Number(m[1])
  }
  const env = (name: string): number => num(new RegExp(`- name: ${name}\\n\\s+value: "(\\d+)"`), `env ${name}`)
  const probe = (kind: string, field: string): number => {
    const at = text.indexOf(`${kind}:`)
    if (at < 0) throw new Error(`example/kubernetes/deployment.yaml: no ${kind}`)
    // The probe's block: its lines up to the next key at the probe's own indentation.
    const block = text.slice(at).split(/\n {10}\w/)[0] ?? ''
    const m = new RegExp(`\\n\\s+${field}: (\\d+)`).exec(block)
    if (m === null) throw new Error(`example/kubernetes/deployment.yaml: no ${kind}.${field}`)
    return Number(m[1])
  }
  return {
    terminationGracePeriodSeconds: num(/\n\s+terminationGracePeriodSeconds: (\d+)/, 'terminationGracePeriodSeconds'),
    DRAIN_TIMEOUT_MS: env('DRAIN_TIMEOUT_MS'),
    READINESS_DELAY_MS: env('READINESS_DELAY_MS'),
    'readinessProbe.periodSeconds': probe('readinessProbe', 'periodSeconds'),
    'readinessProbe.failureThreshold': probe('readinessProbe', 'failureThreshold'),
    preStop: /^\s+preStop:/m.test(text)
  }
}

/** The settings table of docs/kubernetes.md: rows "| `name` | value |". */
function documentedSettings (): Record<string, number | boolean> {
  const text = fs.readFileSync(path.join(ROOT, 'docs', 'kubernetes.md'), 'utf8')
  const out: Record<string, number | boolean> = {}
  for (const m of text.matchAll(/^\| `([\w.]+)` \| `([^`]+)` \|/mg)) {
    const [, name, value] = m
    if (name === undefined || value === undefined) continue
    out[name] = value === 'none' ? false : Number(value)
  }
  return out
}

function manifest (): Record<string, number | boolean> {
  return manifestSettings(fs.readFileSync(path.join(ROOT, 'example', 'kubernetes', 'deployment.yaml'), 'utf8'))
}

/** The Deployment of the manifest, in ms. */
function manifestSpec (): PodSpec {
  const m = manifest()
  return {
    drainTimeoutMs: m.DRAIN_TIMEOUT_MS as number,
    readinessDelayMs: m.READINESS_DELAY_MS as number,
    periodMs: (m['readinessProbe.periodSeconds'] as number) * 1000,
    failureThreshold: m['readinessProbe.failureThreshold'] as number,
    gracePeriodMs: (m.terminationGracePeriodSeconds as number) * 1000,
    preStopMs: 0
  }
}

test('example/kubernetes/deployment.yaml sets what docs/kubernetes.md documents (grace period, drain timeout, readinessDelay, readiness probe, no preStop)', (t) => {
  const doc = documentedSettings()
  const m = manifest()
  t.deepEqual(m, doc)
  // The rules the documentation gives, checked on the manifest's own numbers.
  t.true((m.READINESS_DELAY_MS as number) < (m.DRAIN_TIMEOUT_MS as number), 'readinessDelay inside the drain timeout')
  t.true((m.terminationGracePeriodSeconds as number) * 1000 > (m.DRAIN_TIMEOUT_MS as number), 'the grace period above the drain timeout')
  t.true((m['readinessProbe.periodSeconds'] as number) * (m['readinessProbe.failureThreshold'] as number) * 1000 >= (m.READINESS_DELAY_MS as number),
    'the kubelet keeps a terminating pod serving (KEP-1669) for as long as it accepts')
})

interface Loads { pooled: LoadRun, fresh: LoadRun }

function loadsOn (t: ExecutionContext, port: number): Loads {
  const common = { url: `http://127.0.0.1:${port}/`, connections: 4, durationMs: 120_000, maxRequests: 400_000 }
  const pooled = runLoad({ ...common, mode: 'keep-alive' })
  const fresh = runLoad({ ...common, mode: 'new-connection' })
  t.teardown(() => { pooled.stop(); fresh.stop() })
  return { pooled, fresh }
}

async function stopAll (loads: Loads): Promise<{ pooled: LoadResult, fresh: LoadResult }> {
  loads.pooled.stop()
  loads.fresh.stop()
  return { pooled: await loads.pooled.result, fresh: await loads.fresh.result }
}

function report (what: string, r: { pooled: LoadResult, fresh: LoadResult }, proxy: ProxyCounts): string {
  const line = (name: string, l: LoadResult): string => `  ${name}: ${l.sent} sent, ${l.answered} answered, ${l.failed} failed ${JSON.stringify(l.causes)}`
  return [`${what}:`, line('pooled (4 keep-alive)', r.pooled), line('new connection (4)', r.fresh), `  proxy: ${JSON.stringify(proxy)}`].join('\n')
}

serial('rolling update of 3 pods, 5 s endpoint lag, the manifest\'s settings: 0 failed under pooled and new-connection load, no pod SIGKILLed', async (t) => {
  const spec = manifestSpec()
  const proxy = new ServiceProxy(5000)
  const port = await proxy.listen(t)
  const cluster = new Cluster(t, spec, proxy)
  const old = await Promise.all([cluster.start(), cluster.start(), cluster.start()])
  const loads = loadsOn(t, port)
  const started = Date.now()
  await cluster.rollingUpdate(old)
  const r = await stopAll(loads)
  t.log(report(`readinessDelay ${spec.readinessDelayMs} ms, probe ${spec.periodMs} ms x ${spec.failureThreshold}, lag 5000 ms, rollout ${Date.now() - started} ms`, r, proxy.counts))
  t.is(r.pooled.failed, 0)
  t.is(r.fresh.failed, 0)
  t.true(r.pooled.answered > 0 && r.fresh.answered > 0)
  t.like(proxy.counts, { noEndpoint: 0, podRefused: 0, podReset: 0 })
  t.false(old.some((p) => p.killed), 'no pod reached its grace period')
  for (const p of old) t.is((await p.exited).code, 0)
})

serial('rolling update of 3 pods with readinessDelay 0 and a 1 s endpoint lag: what is lost (reported)', async (t) => {
  const spec = { ...manifestSpec(), readinessDelayMs: 0 }
  const proxy = new ServiceProxy(1000)
  const port = await proxy.listen(t)
  const cluster = new Cluster(t, spec, proxy)
  const old = await Promise.all([cluster.start(), cluster.start(), cluster.start()])
  const loads = loadsOn(t, port)
  await cluster.rollingUpdate(old)
  const r = await stopAll(loads)
  t.log(report('readinessDelay 0, lag 1000 ms: the proxy goes on routing to pods that closed their listener', r, proxy.counts))
  t.true(r.pooled.sent > 0 && r.fresh.sent > 0, 'the loss is measured and reported above')
})

serial('a preStop sleep instead of readinessDelay (sleep 1.5 s, readinessDelay 0, 1 s lag): a rolling update of 2 pods fails 0', async (t) => {
  const spec = { ...manifestSpec(), readinessDelayMs: 0, preStopMs: 1500 }
  const proxy = new ServiceProxy(1000)
  const port = await proxy.listen(t)
  const cluster = new Cluster(t, spec, proxy)
  const old = await Promise.all([cluster.start(), cluster.start()])
  const loads = loadsOn(t, port)
  await cluster.rollingUpdate(old)
  const r = await stopAll(loads)
  t.log(report('preStop sleep 1500 ms, readinessDelay 0, lag 1000 ms', r, proxy.counts))
  t.is(r.pooled.failed + r.fresh.failed, 0)
  t.like(proxy.counts, { noEndpoint: 0, podRefused: 0, podReset: 0 })
})

/** What the clients and the proxy had seen when the pod's listener closed, and when it exited. */
interface LastPod { failedBeforeClose: number, atExit: { pooled: LoadResult, fresh: LoadResult }, proxy: ProxyCounts }

/**
 * The last endpoint of a Service deleted (a scale-down to 0, or a node drained with
 * externalTrafficPolicy: Local): no ready endpoint is left, so kube-proxy (KEP-1669) routes to the
 * terminating one while the kubelet says it is serving. The proxy's failures are counted until the pod's
 * listener closes (the time of its "drain started" line: each failure before it is avoidable, the pod
 * still accepted), and the clients' until it exits.
 */
async function lastPod (t: ExecutionContext, failureThreshold: number): Promise<LastPod> {
  const spec: PodSpec = { drainTimeoutMs: 10_000, readinessDelayMs: 2000, periodMs: 400, failureThreshold, gracePeriodMs: 20_000, preStopMs: 0 }
  const proxy = new ServiceProxy(800)
  const port = await proxy.listen(t)
  const cluster = new Cluster(t, spec, proxy)
  const pod = await cluster.start()
  const loads = loadsOn(t, port)
  cluster.delete(pod)
  const closed = (await pod.fixture.waitFor((e) => e.msg === 'graceful-reboot: drain started')).time as number
  await pod.exited
  const atExit = await stopAll(loads)
  return { failedBeforeClose: proxy.failedAt.filter((at) => at < closed).length, atExit, proxy: { ...proxy.counts } }
}

function lastPodReport (what: string, r: LastPod): string {
  return [`${what}: ${r.failedBeforeClose} connections failed while the pod still accepted`,
    report('  until the pod exited', r.atExit, r.proxy)].join('\n')
}

serial('KEP-1669, the last pod deleted (readinessDelay 2 s, probe every 400 ms, lag 800 ms): with failureThreshold x period >= readinessDelay, no connection fails while the pod accepts; with failureThreshold 1 they are rejected (reported)', async (t) => {
  const policy = await lastPod(t, 5)
  t.log(lastPodReport('failureThreshold 5 (5 x 400 ms >= 2000 ms)', policy))
  const eager = await lastPod(t, 1)
  t.log(lastPodReport('failureThreshold 1 (the kubelet marks the terminating pod not serving one period after SIGTERM)', eager))
  t.is(policy.failedBeforeClose, 0)
  t.true(policy.proxy.routedTerminating > 0, 'KEP-1669: routed to the terminating pod')
})
