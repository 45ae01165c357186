// Runs in the test process: a Kubernetes termination simulator (no cluster). Pods are processes of the
// example app (dist/example/docker/server.js, the image's app) started with the manifest's environment;
// a TCP proxy plays the Service (kube-proxy: it learns that an endpoint is terminating, or no longer
// ready, `lagMs` after the fact, and with KEP-1669 routes to terminating endpoints that still pass
// readiness only when no ready endpoint is left); a prober plays the kubelet's readinessProbe
// (`periodMs`, `failureThreshold`, against /health/ready); a pod's deletion runs the optional preStop
// sleep, then SIGTERM, and SIGKILL at terminationGracePeriod; a rolling update starts a new pod, waits
// until the kubelet sees it ready, then deletes an old one (maxSurge 1, maxUnavailable 0).
import http from 'node:http'
import net from 'node:net'
import type { ExecutionContext } from 'ava'
import { startFixture, type Exit, type Fixture } from './fixture'

/** The settings of one simulated Deployment (ms where Kubernetes has seconds). */
export interface PodSpec {
  /** The app's drain deadline (DRAIN_TIMEOUT_MS). */
  drainTimeoutMs: number
  /** The app's readinessDelay (READINESS_DELAY_MS). */
  readinessDelayMs: number
  /** readinessProbe.periodSeconds. */
  periodMs: number
  /** readinessProbe.failureThreshold. */
  failureThreshold: number
  /** terminationGracePeriodSeconds. */
  gracePeriodMs: number
  /** lifecycle.preStop sleep, 0 for none. */
  preStopMs: number
}

/** What the Service's proxy saw, per connection. */
export interface ProxyCounts {
  /** Connections routed to a pod. */
  routed: number
  /** Routed to a terminating endpoint because no ready one was left (KEP-1669). */
  routedTerminating: number
  /** Connections with no endpoint to route to (kube-proxy rejects them). */
  noEndpoint: number
  /** The pod refused the connection (its listener closed): kube-proxy still routed to it. */
  podRefused: number
  /** The pod's side of a routed connection failed (reset: a SIGKILL, a destroyed connection). */
  podReset: number
}

interface Endpoint {
  readonly name: string
  readonly port: number
  /** The proxy's view (it lags the truth by `lagMs`). */
  ready: boolean
  terminating: boolean
  serving: boolean
}

/** The Service: a TCP proxy on 127.0.0.1 in front of the pods' endpoints. */
export class ServiceProxy {
  readonly counts: ProxyCounts = { routed: 0, routedTerminating: 0, noEndpoint: 0, podRefused: 0, podReset: 0 }
  /** When (Date.now()) each failure the proxy saw happened: no endpoint, refused or reset by the pod. */
  readonly failedAt: number[] = []
  private readonly endpoints = new Map<string, Endpoint>()
  private readonly server: net.Server
  private readonly sockets = new Set<net.Socket>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private next = 0

  constructor (readonly lagMs: number) {
    this.server = net.createServer((client) => { this.route(client) })
  }

  async listen (t: ExecutionContext): Promise<number> {
    t.teardown(() => { this.close() })
    await new Promise<void>((resolve) => { this.server.listen(0, '127.0.0.1', resolve) })
    return (this.server.address() as net.AddressInfo).port
  }

  /** A pod the kubelet found ready: routed to at once. */
  add (name: string, port: number): void {
    this.endpoints.set(name, { name, port, ready: true, terminating: false, serving: true })
  }

  /** A change the endpoint controller publishes: the proxy applies it `lagMs` later. */
  update (name: string, change: Partial<Pick<Endpoint, 'ready' | 'terminating' | 'serving'>>): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      const e = this.endpoints.get(name)
      if (e !== undefined) Object.assign(e, change)
    }, this.lagMs)
    this.timers.add(timer)
  }

  /** A pod gone (its process exited): the endpoint is removed, with the same lag. */
  remove (name: string): void {
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      this.endpoints.delete(name)
    }, this.lagMs)
    this.timers.add(timer)
  }

  private pick (): { e: Endpoint, terminating: boolean } | undefined {
    const all = [...this.endpoints.values()]
    let pool = all.filter((e) => e.ready && !e.terminating)
    let terminating = false
    if (pool.length === 0) {
      pool = all.filter((e) => e.terminating && e.serving)
      terminating = true
    }
    if (pool.length === 0) return undefined
    const e = pool[this.next++ % pool.length] as Endpoint
    return { e, terminating }
  }

  private route (client: net.Socket): void {
    this.sockets.add(client)
    client.once('close', () => { this.sockets.delete(client) })
    client.on('error', () => {})
    const picked = this.pick()
    if (picked === undefined) {
      this.counts.noEndpoint++
      this.failedAt.push(Date.now())
      client.destroy()
      return
    }
    this.counts.routed++
    if (picked.terminating) this.counts.routedTerminating++
    client.pause()
    const up = net.connect(picked.e.port, '127.0.0.1')
    this.sockets.add(up)
    up.once('close', () => { this.sockets.delete(up) })
    let connected = false
    up.once('connect', () => {
      connected = true
      client.pipe(up)
      up.pipe(client)
      client.resume()
    })
    up.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && err.code === 'ECONNREFUSED') this.counts.podRefused++
      else this.counts.podReset++
      this.failedAt.push(Date.now())
      client.destroy()
    })
    client.once('close', () => { up.destroy() })
  }

  close (): void {
    for (const timer of this.timers) clearTimeout(timer)
    for (const s of this.sockets) s.destroy()
    this.server.close()
  }
}

/** One pod: a process of the example app. */
export interface Pod {
  readonly name: string
  readonly fixture: Fixture
  readonly port: number
  /** The kubelet's readiness verdict (its probe, its threshold). */
  ready: boolean
  terminating: boolean
  /** When the pod's process exited, and how. */
  readonly exited: Promise<Exit>
  /** Set once the grace period ran out and the kubelet SIGKILLed the process. */
  killed: boolean
}

/** GET /health/ready: its status, 0 when it could not connect or timed out. */
function probe (port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/health/ready', agent: false, timeout: timeoutMs }, (res) => {
      res.resume()
      res.once('end', () => { resolve(res.statusCode ?? 0) })
    })
    req.once('timeout', () => { req.destroy() })
    req.once('error', () => { resolve(0) })
  })
}

/** The pods of one Deployment, their kubelet and the Service in front of them. */
export class Cluster {
  readonly pods: Pod[] = []
  private count = 0
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor (private readonly t: ExecutionContext, readonly spec: PodSpec, readonly service: ServiceProxy) {
    t.teardown(() => { for (const timer of this.timers) clearTimeout(timer) })
  }

  private later (ms: number, fn: () => void): void {
    const timer = setTimeout(() => { this.timers.delete(timer); fn() }, ms)
    this.timers.add(timer)
  }

  /** Starts a pod; resolves once the kubelet's probe found it ready (the Service then routes to it). */
  async start (): Promise<Pod> {
    const name = `pod-${++this.count}`
    const fixture = startFixture(this.t, '../../example/docker/server', {
      env: {
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
        DRAIN_TIMEOUT_MS: String(this.spec.drainTimeoutMs),
        READINESS_DELAY_MS: String(this.spec.readinessDelayMs)
      }
    })
    const line = await fixture.waitFor((e) => typeof e.msg === 'string' && e.msg.startsWith('Server listening at '))
    const port = Number(/:(\d+)$/.exec(String(line.msg))?.[1])
    const pod: Pod = { name, fixture, port, ready: false, terminating: false, exited: fixture.exited, killed: false }
    this.pods.push(pod)
    let gone = false
    void pod.exited.then(() => { gone = true; this.service.remove(name) })
    let failures = 0
    let becameReady: () => void = () => {}
    const readyNow = new Promise<void>((resolve) => { becameReady = resolve })
    const tick = async (): Promise<void> => {
      if (gone) return
      const status = await probe(port, Math.min(1000, this.spec.periodMs))
      if (status === 200) {
        failures = 0
        if (!pod.ready) {
          pod.ready = true
          if (!pod.terminating) this.service.add(name, port)
          else this.service.update(name, { serving: true })
          becameReady()
        }
      } else if (++failures >= this.spec.failureThreshold && pod.ready) {
        pod.ready = false
        this.service.update(name, { ready: false, serving: false })
      }
      this.later(this.spec.periodMs, () => { void tick() })
    }
    // The first probe runs at once (initialDelaySeconds 0), then every period.
    void tick()
    await readyNow
    return pod
  }

  /**
   * Deletes a pod: the endpoint is marked terminating (the proxy learns it `lagMs` later), the preStop
   * sleep runs, then SIGTERM; SIGKILL once the grace period (counted from the deletion) is over.
   */
  delete (pod: Pod): void {
    pod.terminating = true
    this.service.update(pod.name, { ready: false, terminating: true })
    const term = (): void => { try { process.kill(pod.fixture.pid, 'SIGTERM') } catch {} }
    if (this.spec.preStopMs > 0) this.later(this.spec.preStopMs, term)
    else term()
    let gone = false
    void pod.exited.then(() => { gone = true })
    this.later(this.spec.gracePeriodMs, () => {
      if (gone) return
      pod.killed = true
      try { process.kill(pod.fixture.pid, 'SIGKILL') } catch {}
    })
  }

  /** maxSurge 1, maxUnavailable 0: for each old pod, a new one, ready, then the old one deleted. */
  async rollingUpdate (old: readonly Pod[]): Promise<Pod[]> {
    const next: Pod[] = []
    for (const pod of old) {
      next.push(await this.start())
      this.delete(pod)
    }
    await Promise.all(old.map(async (p) => await p.exited))
    return next
  }
}
