// Runs in the test process: the package under real PM2 (7.0.4, its daemon in a PM2_HOME of the test's
// own) in cluster mode with the ecosystem file of docs/operations.md (listen_timeout 120 s: PM2 goes on
// only on the workers' 'ready', well within the test's time): `pm2 reload` with a 5 s request
// in flight and back-to-back keep-alive clients loses nothing; PM2 waits for the new workers' 'ready'.
import test from 'ava'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { request } from './fixtures/admin-client'

const PM2 = path.join(__dirname, '..', '..', 'node_modules', 'pm2', 'bin', 'pm2')
const APP = path.join(__dirname, 'fixtures', 'pm2-app.js')

interface Run { code: number, stdout: string, stderr: string }

function pm2 (home: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PM2, ...args], { env: { ...process.env, PM2_HOME: home }, timeout: 45_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr })
    })
  })
}

/** The pids of the app's workers PM2 reports online. */
async function workers (home: string): Promise<number[]> {
  const r = await pm2(home, ['jlist'])
  const list = JSON.parse(r.stdout.slice(r.stdout.indexOf('['))) as Array<{ pid: number, pm2_env: { status: string } }>
  return list.filter((p) => p.pm2_env.status === 'online').map((p) => p.pid)
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function freePort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => { s.listen(0, '127.0.0.1', resolve) })
  const { port } = s.address() as net.AddressInfo
  await new Promise((resolve) => { s.close(resolve) })
  return port
}

test('pm2 reload in cluster mode: a 5 s request in flight gets its 200 whole, back-to-back keep-alive clients lose nothing, the new workers serve', async (t) => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-pm2-'))
  const pids = new Set<number>()
  t.teardown(async () => {
    await pm2(home, ['kill'])
    const daemon = Number(fs.readFileSync(path.join(home, 'pm2.pid'), { encoding: 'utf8', flag: 'a+' }))
    for (const pid of [...pids, ...(daemon > 0 ? [daemon] : [])]) if (alive(pid)) process.kill(pid, 'SIGKILL')
    fs.rmSync(home, { recursive: true, force: true })
  })
  const port = await freePort()
  const ecosystem = path.join(home, 'ecosystem.config.js')
  fs.writeFileSync(ecosystem, `module.exports = { apps: [${JSON.stringify({
    name: 'app',
    script: APP,
    exec_mode: 'cluster',
    instances: 2,
    kill_timeout: 10_000,
    wait_ready: true,
    listen_timeout: 120_000,
    env: { PORT: String(port) }
  })}] }\n`)
  const started = await pm2(home, ['start', ecosystem])
  t.is(started.code, 0, started.stderr)
  const before = await workers(home)
  for (const pid of before) pids.add(pid)
  t.is(before.length, 2)
  const env = await request(port, '/env')
  t.is(env.body.killTimeout, '10000', 'PM2 passes kill_timeout in the environment (what the package warns from)')

  // The slow request: in flight at a worker once its first line arrived.
  const slow = new Promise<{ status: number, text: string }>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/slow', agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        text += c
        if (text.startsWith('start')) firstLine()
      })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text }) })
      res.on('error', reject)
    })
    req.on('error', reject)
  })
  let firstLine: () => void = () => {}
  await new Promise<void>((resolve) => { firstLine = resolve })

  let reloading = true
  let ok = 0
  const failures: string[] = []
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  t.teardown(() => { agent.destroy() })
  const client = async (): Promise<void> => {
    for (let i = 0; reloading && i < 20_000; i++) {
      try {
        const r = await request(port, '/', { agent })
        if (r.status === 200) ok++
        else failures.push(`status ${r.status}`)
      } catch (err) {
        failures.push((err as Error).message)
      }
    }
  }
  const load = Promise.all([client(), client(), client(), client()])
  const reload = await pm2(home, ['reload', 'app'])
  reloading = false
  await load
  t.is(reload.code, 0, reload.stderr)
  const answered = await slow
  t.is(answered.status, 200)
  t.regex(answered.text, /^start \d+\ndone\n$/, 'the slow response is whole')
  t.deepEqual(failures, [], `${ok} requests answered`)
  t.log(`${ok} back-to-back requests during the reload, ${failures.length} failed`)
  const after = await workers(home)
  for (const pid of after) pids.add(pid)
  t.is(after.length, 2)
  t.deepEqual(after.filter((p) => before.includes(p)), [], 'both workers were replaced')
  const served = await request(port, '/')
  t.true(after.includes(served.body.pid as number), 'a new worker serves')
})
