// Runs in the test process: the admin routes. Unit level: `second` validation, the loopback check with
// injected peer addresses, the plain-local-call check (proxy headers, browser marks), auth, and the
// decision against a fake lifecycle. End to end, against Fastify and Express fixture processes: bad
// input changes nothing, without a token a proxied or cross-site request changes nothing while a
// plain local call is served, with a token a proxied request is served, 202 drains an in-flight
// request and exits 0, 409 for a reboot while one is in flight, 501 in a cluster worker.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import express from 'express'
import { expressGraceful, RebootError, type LifecycleState } from '../index'
import { AdminGate, MAX_SECOND, parseSecond, type AdminAnswer, type AdminRequest, type AdminTarget } from '../lib/routes/admin'
import { PROXY_HEADERS, isLoopback, notPlainLocalCall, peerAddress, type AdminHeaders } from '../lib/routes/local-call'
import { resolveOptions } from '../lib/options'
import { bearer, request } from './fixtures/admin-client'
import { startFixture, type Fixture } from './helpers/fixture'

const silent = { info: () => {}, warn: () => {}, error: () => {} }

interface Fake extends AdminTarget {
  state: LifecycleState
  refusal: RebootError | undefined
  calls: Array<{ action: string, timeout: number | undefined, trigger: string | undefined }>
}

function fake (): Fake {
  const f: Fake = {
    state: 'running',
    log: silent,
    seam: { pid: 4242 },
    refusal: undefined,
    calls: [],
    canReboot: () => f.refusal,
    shutdown: async (timeout, o) => { f.calls.push({ action: 'shutdown', timeout, trigger: o?.trigger }) },
    reboot: async (timeout, o) => { f.calls.push({ action: 'reboot', timeout, trigger: o?.trigger }); return 1 }
  }
  return f
}

/** A request from 127.0.0.1 as curl on the host sends it (Host only), unless `over` says otherwise. */
function req (url: string, over: Partial<AdminRequest> & { authorization?: string | string[] | undefined } = {}): AdminRequest {
  const { authorization, headers, ...rest } = over
  return {
    method: 'POST',
    url,
    remoteAddress: '127.0.0.1',
    ...rest,
    headers: { host: '127.0.0.1:3000', 'user-agent': 'curl/8.5.0', accept: '*/*', ...headers, ...(authorization === undefined ? {} : { authorization }) }
  }
}

// ---------------------------------------------------------------- unit: validation

const BAD_SECONDS: Array<[query: string, problem: RegExp]> = [
  ['?second=abc', /not a number/],
  ['?second=-1', /must not be negative/],
  ['?second=1.5', /whole number/],
  ['?second=99999999', /too large: at most 3600/],
  ['', /missing query parameter "second"/],
  ['?other=1', /missing query parameter "second"/],
  ['?second=1&second=2', /given 2 times/],
  ['?second=5&second=5', /given 2 times/],
  ['?second=', /is empty/],
  ['?second=1e3', /not a number/],
  ['?second=0x10', /not a number/],
  ['?second=%205', /not a number/],
  ['?second=+5', /not a number/],
  ['?second=5s', /not a number/],
  ['?second=.5', /whole number/],
  ['?second=-0.5', /must not be negative/],
  ['?second=3601', /too large/],
  ['?second=' + '9'.repeat(400), /too large/]
]

test('parseSecond: integers 0..3600 in digits only', (t) => {
  t.is(MAX_SECOND, 3600)
  for (const [q, second] of [['?second=0', 0], ['?second=2', 2], ['?second=007', 7], ['?second=3600', 3600], ['?x=1&second=30', 30], ['?second=%32', 2]] as const) {
    t.deepEqual(parseSecond(`/shutdown${q}`), { second }, q)
  }
  for (const [q, problem] of BAD_SECONDS) {
    const r = parseSecond(`/shutdown${q}`)
    t.true('problem' in r, q)
    if ('problem' in r) t.regex(r.problem, problem, q)
  }
})

test('parseSecond: a long bad value is shortened in the message', (t) => {
  const r = parseSecond(`/reboot?second=${'x'.repeat(5000)}`)
  t.true('problem' in r && r.problem.length < 200)
})

// ---------------------------------------------------------------- unit: peers

test('isLoopback: 127.0.0.0/8, ::1 and IPv4-mapped loopback only', (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '127.255.255.255', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::FFFF:127.9.9.9', '::ffff:7f00:1']) {
    t.true(isLoopback(a), a)
  }
  for (const a of [undefined, '', 'localhost', 'unix', '10.0.0.1', '192.168.1.10', '128.0.0.1', '126.255.255.255', '0.0.0.0', '::', '::2', 'fe80::1', '::ffff:10.0.0.1', '::ffff:192.168.1.1', '2001:db8::1', '127.0.0.1.evil', ' 127.0.0.1']) {
    t.false(isLoopback(a), String(a))
  }
})

test('peerAddress: the socket\'s own address; "unix" only for a live Unix-socket peer', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-peer-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const seen = async (listen: (s: net.Server) => void, connect: (s: net.Server) => net.Socket): Promise<string | undefined> => {
    const server = net.createServer()
    const accepted = new Promise<net.Socket>((resolve) => { server.once('connection', resolve) })
    await new Promise<void>((resolve) => { server.once('listening', resolve); listen(server) })
    const client = connect(server)
    const socket = await accepted
    const peer = peerAddress(socket)
    client.destroy()
    socket.destroy()
    server.close()
    return peer
  }
  t.is(await seen((s) => s.listen(0, '127.0.0.1'), (s) => net.connect((s.address() as net.AddressInfo).port, '127.0.0.1')), '127.0.0.1')
  const sock = path.join(dir, 's.sock')
  t.is(await seen((s) => s.listen(sock), () => net.connect(sock)), 'unix')
  const dead = new net.Socket()
  t.is(peerAddress(dead), undefined, 'a socket without a handle (a peer already gone) is no one')
  t.is(peerAddress(undefined), undefined)
})

// ---------------------------------------------------------------- unit: the decision

test('no token: loopback and Unix peers are served, every other peer gets 403 and nothing happens', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  for (const peer of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1', 'unix']) {
    const a = gate.handle('shutdown', req('/shutdown', { remoteAddress: peer }))
    t.is(a.status, 400, `${peer} passes the peer check (and fails on the missing second)`)
  }
  for (const peer of ['10.0.0.1', '192.168.1.10', '::ffff:10.0.0.1', '2001:db8::1', 'fe80::1', '0.0.0.0', undefined]) {
    for (const action of ['shutdown', 'reboot'] as const) {
      const a = gate.handle(action, req(`/${action}?second=1`, { remoteAddress: peer }))
      t.is(a.status, 403, String(peer))
      t.is((a.body as { code: string }).code, 'ERR_GRACEFUL_ADMIN_FORBIDDEN')
      t.is(a.start, undefined)
    }
  }
  // X-Forwarded-For never names the peer (the adapters pass the socket's address only): a forged one
  // from a remote peer changes nothing, and from a local peer it marks a proxy (below).
  t.is(gate.handle('shutdown', req('/shutdown?second=1', { remoteAddress: '10.0.0.1', headers: { 'x-forwarded-for': '127.0.0.1' } })).status, 403)
  t.deepEqual(f.calls, [])
})

/** Headers a proxy on the host adds: each alone turns a loopback request into one that is refused without a token. */
const PROXIED: AdminHeaders[] = [
  { forwarded: 'for=203.0.113.7;proto=https' },
  { 'x-forwarded-for': '203.0.113.7' },
  { 'x-forwarded-for': '' },
  { 'x-real-ip': '203.0.113.7' },
  { via: '1.1 nginx' },
  { 'x-forwarded-proto': 'https' },
  { 'x-forwarded-host': 'example.com' },
  { 'x-forwarded-port': '443' },
  { 'x-client-ip': '203.0.113.7' },
  { 'true-client-ip': '203.0.113.7' },
  { 'cf-connecting-ip': '203.0.113.7' },
  { 'X-Forwarded-For': '203.0.113.7' }
]

/** Marks a browser puts on a request another site's page makes (an image tag, a form, fetch). */
const CROSS_SITE: AdminHeaders[] = [
  { 'sec-fetch-site': 'cross-site' },
  { 'sec-fetch-site': 'same-site' },
  { 'sec-fetch-site': 'Cross-Site' },
  { 'sec-fetch-site': 'something-new' },
  { 'sec-fetch-site': ['none', 'cross-site'] },
  { origin: 'https://evil.example' },
  { origin: 'null' },
  { origin: 'http://localhost:3000' },
  { origin: 'http://127.0.0.1:3001' },
  { origin: 'http://127.0.0.1' },
  { origin: 'http://127.0.0.1:3000, https://evil.example' },
  { origin: 'http://user@127.0.0.1:3000' },
  { origin: 'file://' },
  { origin: 'not a url' },
  { origin: 'http://127.0.0.1:3000', host: 'evil.example@127.0.0.1:3000' },
  { origin: 'http://127.0.0.1:3000', host: undefined },
  { origin: 'http://127.0.0.1:3000', 'sec-fetch-site': 'cross-site' }
]

/** Browser requests that are the user's own (typed URL, bookmark) or a page of the admin routes' own origin. */
const SAME_ORIGIN: AdminHeaders[] = [
  { 'sec-fetch-site': 'none' },
  { 'sec-fetch-site': 'same-origin' },
  { 'sec-fetch-site': 'Same-Origin' },
  { origin: 'http://127.0.0.1:3000' },
  { origin: 'http://127.0.0.1:3000', 'sec-fetch-site': 'same-origin' },
  { origin: 'http://127.0.0.1:3000/' },
  { origin: 'HTTP://127.0.0.1:3000' },
  { origin: 'http://localhost:3000', host: 'LOCALHOST:3000' },
  { origin: 'http://[::1]:3000', host: '[::1]:3000' },
  { origin: 'http://127.0.0.1', host: '127.0.0.1:80' },
  { origin: 'https://127.0.0.1', host: '127.0.0.1' },
  { origin: 'https://127.0.0.1:3000', host: undefined, ':authority': '127.0.0.1:3000' },
  { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document', 'sec-fetch-user': '?1', 'sec-fetch-site': 'none' }
]

test('no token: a loopback or Unix request with a proxy header gets 403 naming the header and admin.token; nothing happens', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  for (const headers of PROXIED) {
    const name = (Object.keys(headers)[0] as string).toLowerCase()
    for (const remoteAddress of ['127.0.0.1', '::1', 'unix']) {
      for (const action of ['shutdown', 'reboot'] as const) {
        const a = gate.handle(action, req(`/${action}?second=0`, { remoteAddress, headers, method: 'GET' }))
        t.is(a.status, 403, `${JSON.stringify(headers)} from ${remoteAddress}`)
        t.like(a.body, { statusCode: 403, error: 'Forbidden', code: 'ERR_GRACEFUL_ADMIN_FORBIDDEN' })
        const message = (a.body as { message: string }).message
        t.true(message.includes(name), message)
        t.regex(message, /proxy/)
        t.regex(message, /configure admin\.token/)
        t.is(a.start, undefined)
      }
    }
  }
  // The check comes before the query is read: a proxied caller learns nothing about it.
  t.is(gate.handle('shutdown', req('/shutdown?second=abc', { headers: { via: '1.1 nginx' } })).status, 403)
  t.deepEqual(f.calls, [])
})

test('no token: a request with another site\'s browser marks gets 403; nothing happens', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  for (const headers of CROSS_SITE) {
    for (const action of ['shutdown', 'reboot'] as const) {
      const a = gate.handle(action, req(`/${action}?second=0`, { headers, method: 'GET' }))
      t.is(a.status, 403, JSON.stringify(headers))
      t.like(a.body, { code: 'ERR_GRACEFUL_ADMIN_FORBIDDEN' })
      t.regex((a.body as { message: string }).message, /a browser sent it on behalf of .*another .*configure admin\.token/)
      t.is(a.start, undefined)
    }
  }
  t.deepEqual(f.calls, [])
})

test('no token: a plain local call, and a browser request of the same origin, are served', (t) => {
  t.is(notPlainLocalCall({ host: '127.0.0.1:3000', 'user-agent': 'curl/8.5.0', accept: '*/*' }), undefined)
  t.is(notPlainLocalCall({}), undefined, 'no header at all (HTTP/1.0, no Host)')
  t.is(notPlainLocalCall({ host: 'localhost', authorization: 'Bearer x', 'content-type': 'application/json', 'content-length': '0' }), undefined)
  for (const headers of SAME_ORIGIN) t.is(notPlainLocalCall({ host: '127.0.0.1:3000', ...headers }), undefined, JSON.stringify(headers))
  for (const headers of [...PROXIED, ...CROSS_SITE]) t.not(notPlainLocalCall({ host: '127.0.0.1:3000', ...headers }), undefined, JSON.stringify(headers))
  t.true(PROXY_HEADERS.includes('forwarded') && PROXY_HEADERS.includes('x-forwarded-for') && PROXY_HEADERS.includes('x-real-ip') && PROXY_HEADERS.includes('via'))
  const f = fake()
  const gate = new AdminGate({}, f)
  for (const headers of SAME_ORIGIN) {
    const a = gate.handle('shutdown', req('/shutdown?second=1', { headers }))
    t.is(a.status, 202, JSON.stringify(headers))
    a.abandon?.()
  }
  for (const remoteAddress of ['127.0.0.1', '::1', '::ffff:127.0.0.1', 'unix']) {
    const a = gate.handle('reboot', req('/reboot?second=1', { remoteAddress }))
    t.is(a.status, 202, remoteAddress)
    a.abandon?.()
  }
  t.deepEqual(f.calls, [])
})

test('token: the token decides; proxy headers and browser marks do not matter', (t) => {
  const f = fake()
  const gate = new AdminGate({ token: 's3cret-token' }, f)
  for (const headers of [...PROXIED, ...CROSS_SITE]) {
    for (const remoteAddress of ['127.0.0.1', '203.0.113.7']) {
      t.is(gate.handle('shutdown', req('/shutdown?second=1', { remoteAddress, headers })).status, 401, JSON.stringify(headers))
      t.is(gate.handle('shutdown', req('/shutdown?second=1', { remoteAddress, headers, authorization: 'Bearer wrong' })).status, 403)
      const a = gate.handle('shutdown', req('/shutdown?second=1', { remoteAddress, headers, authorization: 'Bearer s3cret-token' }))
      t.is(a.status, 202, `${JSON.stringify(headers)} from ${remoteAddress}`)
      a.abandon?.()
    }
  }
  t.deepEqual(f.calls, [])
})

test('token: missing -> 401 with WWW-Authenticate, wrong -> 403, right -> 202, from any peer', (t) => {
  const f = fake()
  const gate = new AdminGate({ token: 's3cret-token' }, f)
  const peer = '203.0.113.7'
  const missing: Array<string | string[] | undefined> = [undefined, '', 'Bearer', 'Bearer ', 'Basic czNjcmV0LXRva2Vu', 's3cret-token', 'Bearer s3cret-token x', ['Bearer s3cret-token', 'Bearer s3cret-token']]
  for (const authorization of missing) {
    const a = gate.handle('shutdown', req('/shutdown?second=1', { authorization, remoteAddress: peer }))
    t.is(a.status, 401, JSON.stringify(authorization))
    t.is(a.headers['www-authenticate'], 'Bearer realm="graceful-reboot"')
    t.is((a.body as { code: string }).code, 'ERR_GRACEFUL_ADMIN_UNAUTHORIZED')
  }
  for (const authorization of ['Bearer s3cret-tokeN', 'Bearer s3cret-token2', 'Bearer s', 'Bearer ' + 'x'.repeat(10_000)]) {
    const a = gate.handle('shutdown', req('/shutdown?second=1', { authorization, remoteAddress: peer }))
    t.is(a.status, 403, authorization.slice(0, 30))
    t.is(a.headers['www-authenticate'], undefined)
  }
  t.deepEqual(f.calls, [])
  // Also from loopback: the token is required once configured.
  t.is(gate.handle('shutdown', req('/shutdown?second=1')).status, 401)
  // Auth comes before validation: an unauthenticated caller learns nothing about the query.
  t.is(gate.handle('shutdown', req('/shutdown?second=abc', { remoteAddress: peer })).status, 401)
  const ok = gate.handle('shutdown', req('/shutdown?second=2', { authorization: 'bearer  s3cret-token', remoteAddress: peer }))
  t.is(ok.status, 202)
  t.deepEqual(ok.body, { action: 'shutdown', timeout: 2000, pid: 4242 })
})

test('an empty admin.token, or one a Bearer header cannot carry, is refused at start-up', (t) => {
  t.throws(() => new AdminGate({ token: '' }, fake()), { code: 'ERR_GRACEFUL_INVALID_OPTION' })
  t.throws(() => new AdminGate({ token: 's3cret token' }, fake()), { code: 'ERR_GRACEFUL_INVALID_OPTION', message: /whitespace/ })
  t.throws(() => new AdminGate({ token: 's3cret\n' }, fake()), { code: 'ERR_GRACEFUL_INVALID_OPTION', message: /newline at its end/ })
  t.throws(() => expressGraceful(express(), { admin: { token: 's3cret\n' }, signals: false, exit: false }), { code: 'ERR_GRACEFUL_INVALID_OPTION', message: /admin\.token.*whitespace/ })
  t.throws(() => expressGraceful(express(), { admin: { token: '' }, signals: false, exit: false }), { code: 'ERR_GRACEFUL_INVALID_OPTION', message: /admin\.token/ })
  // Fastify: the same resolveOptions() runs in the plugin (a throw there is not yet turned into a
  // rejected register(); see the report), so it is checked through the options alone here.
  t.throws(() => resolveOptions({ admin: { token: '' } }), { code: 'ERR_GRACEFUL_INVALID_OPTION', message: /admin\.token/ })
})

test('only GET and POST: other methods get 405 and nothing happens', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  for (const method of ['HEAD', 'PUT', 'DELETE', 'OPTIONS']) {
    const a = gate.handle('shutdown', req('/shutdown?second=1', { method }))
    t.is(a.status, 405)
    t.is(a.headers.allow, 'GET, POST')
  }
  t.is(gate.handle('reboot', req('/reboot?second=1', { method: 'GET' })).status, 202)
  t.deepEqual(f.calls, [])
})

test('bad second: 400 naming the problem, nothing happens', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  for (const [q, problem] of BAD_SECONDS) {
    for (const action of ['shutdown', 'reboot'] as const) {
      const a = gate.handle(action, req(`/${action}${q}`))
      t.is(a.status, 400)
      t.like(a.body, { statusCode: 400, error: 'Bad Request', code: 'ERR_GRACEFUL_ADMIN_SECOND' })
      t.regex((a.body as { message: string }).message, problem)
      t.is(a.start, undefined)
    }
  }
  t.deepEqual(f.calls, [])
})

test('202: the action starts only when start() is called (the response written), once', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  const a = gate.handle('shutdown', req('/shutdown?second=3'))
  t.is(a.status, 202)
  t.is(a.headers.connection, 'close')
  t.deepEqual(f.calls, [], 'nothing before the response is written')
  a.start?.()
  a.start?.()
  a.abandon?.()
  t.deepEqual(f.calls, [{ action: 'shutdown', timeout: 3000, trigger: 'admin' }])
  const r = gate.handle('reboot', req('/reboot?second=0'))
  t.is(r.status, 202)
  t.deepEqual(r.body, { action: 'reboot', timeout: 0, pid: 4242 })
  r.start?.()
  t.deepEqual(f.calls[1], { action: 'reboot', timeout: 0, trigger: 'admin' })
})

test('one at a time: a second reboot while one is accepted or in flight gets 409', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  const first = gate.handle('reboot', req('/reboot?second=1'))
  t.is(first.status, 202)
  // Accepted, response not yet written: the lifecycle does not know yet, the gate does.
  const second = gate.handle('reboot', req('/reboot?second=1'))
  t.is(second.status, 409)
  t.like(second.body, { code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' })
  // The client went away before the 202 was written: nothing happened, the slot is free again.
  first.abandon?.()
  first.start?.()
  t.deepEqual(f.calls, [])
  const third = gate.handle('reboot', req('/reboot?second=1'))
  t.is(third.status, 202)
  third.start?.()
  // Under way: the lifecycle refuses.
  f.refusal = new RebootError('ERR_GRACEFUL_REBOOT_IN_PROGRESS', 'a reboot is already in progress; one at a time')
  f.state = 'rebooting'
  const fourth = gate.handle('reboot', req('/reboot?second=1'))
  t.is(fourth.status, 409)
  t.like(fourth.body, { statusCode: 409, error: 'Conflict', code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS', message: 'a reboot is already in progress; one at a time' })
  // A shutdown during a reboot wins (the lifecycle kills a successor that is not ready).
  t.is(gate.handle('shutdown', req('/shutdown?second=1')).status, 202)
})

test('shutdown conflicts: 409 while a shutdown is accepted or draining; a reboot then gets 409 too', (t) => {
  const f = fake()
  const gate = new AdminGate({}, f)
  const first = gate.handle('shutdown', req('/shutdown?second=1'))
  t.is(first.status, 202)
  t.like(gate.handle('shutdown', req('/shutdown?second=1')).body, { statusCode: 409, code: 'ERR_GRACEFUL_SHUTTING_DOWN' })
  t.like(gate.handle('reboot', req('/reboot?second=1')).body, { statusCode: 409, code: 'ERR_GRACEFUL_SHUTTING_DOWN' })
  first.start?.()
  f.state = 'draining'
  f.refusal = new RebootError('ERR_GRACEFUL_SHUTTING_DOWN', 'cannot reboot: the process is draining')
  t.like(gate.handle('shutdown', req('/shutdown?second=1')).body, { statusCode: 409, code: 'ERR_GRACEFUL_SHUTTING_DOWN' })
  t.like(gate.handle('reboot', req('/reboot?second=1')).body, { statusCode: 409, code: 'ERR_GRACEFUL_SHUTTING_DOWN', message: 'cannot reboot: the process is draining' })
  t.is(f.calls.length, 1)
})

test('unsupported reboot (Windows, cluster worker, PID 1): 501 with the coded error\'s message', (t) => {
  const f = fake()
  f.refusal = new RebootError('ERR_GRACEFUL_REBOOT_UNSUPPORTED', 'cannot reboot as PID 1: its exit would end the container; run with an init (docker run --init, tini)')
  const a: AdminAnswer = new AdminGate({}, f).handle('reboot', req('/reboot?second=1'))
  t.is(a.status, 501)
  t.deepEqual(a.body, { statusCode: 501, error: 'Not Implemented', code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED', message: f.refusal.message })
  t.deepEqual(f.calls, [])
})

// ---------------------------------------------------------------- end to end

const FRAMEWORKS = ['fastify', 'express'] as const
const TOKEN = 'test-token-0123456789'

async function start (t: ExecutionContext, framework: string, env: Record<string, string> = {}): Promise<{ f: Fixture, port: number }> {
  const f = startFixture(t, 'admin-app', { env: { FRAMEWORK: framework, ...env } })
  const ready = await f.waitFor('listening')
  return { f, port: ready.port as number }
}

for (const framework of FRAMEWORKS) {
  test(`${framework}: bad input gets 400/401/403, and the process keeps serving`, async (t) => {
    const { f, port } = await start(t, framework, { TOKEN, ADMIN_PREFIX: '/_admin' })
    const auth = bearer(TOKEN)
    for (const [q, problem] of BAD_SECONDS.slice(0, 7)) {
      for (const action of ['shutdown', 'reboot']) {
        for (const method of ['GET', 'POST']) {
          const r = await request(port, `/_admin/${action}${q}`, { method, headers: auth })
          t.is(r.status, 400, `${method} ${action}${q}`)
          t.like(r.body, { statusCode: 400, code: 'ERR_GRACEFUL_ADMIN_SECOND' })
          t.regex(String(r.body.message), problem)
          t.regex(String(r.headers['content-type']), /^application\/json/)
        }
      }
    }
    // A POST whose (empty) body claims JSON still reaches the handler: the body is never parsed.
    const json = await request(port, '/_admin/reboot?second=1.5', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' } })
    t.like(json.body, { statusCode: 400, code: 'ERR_GRACEFUL_ADMIN_SECOND' })
    // A body: up to 4 KiB, ignored. Larger: Fastify reads bodies before the handler and answers its own
    // 413 (nothing happens); Express never reads it.
    for (const type of ['application/json', 'application/octet-stream']) {
      const small = await request(port, '/_admin/reboot?second=1.5', { method: 'POST', headers: { ...auth, 'content-type': type }, body: '{'.repeat(4096) })
      t.like(small.body, { statusCode: 400, code: 'ERR_GRACEFUL_ADMIN_SECOND' }, type)
      const large = await request(port, '/_admin/reboot?second=1.5', { method: 'POST', headers: { ...auth, 'content-type': type }, body: '{'.repeat(4097) })
      if (framework === 'fastify') {
        t.is(large.status, 413, type)
        t.like(large.body, { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' })
      } else {
        t.like(large.body, { statusCode: 400, code: 'ERR_GRACEFUL_ADMIN_SECOND' }, type)
      }
    }
    const none = await request(port, '/_admin/shutdown?second=1', { method: 'POST' })
    t.is(none.status, 401)
    t.is(none.headers['www-authenticate'], 'Bearer realm="graceful-reboot"')
    t.like(none.body, { code: 'ERR_GRACEFUL_ADMIN_UNAUTHORIZED' })
    const wrong = await request(port, '/_admin/reboot?second=1', { method: 'POST', headers: bearer('test-token-0123456788') })
    t.is(wrong.status, 403)
    t.like(wrong.body, { code: 'ERR_GRACEFUL_ADMIN_FORBIDDEN' })
    // HEAD never acts: Express routes it to the handler, which answers 405; Fastify has no HEAD route
    // for a GET + POST route declared with route(), so 404.
    const head = await request(port, '/_admin/shutdown?second=1', { method: 'HEAD', headers: auth })
    t.deepEqual([head.status, head.headers.allow], framework === 'express' ? [405, 'GET, POST'] : [404, undefined], 'HEAD never acts')
    t.is((await request(port, '/shutdown?second=1', { method: 'POST', headers: auth })).status, 404, 'only under the prefix')
    // Still serving, and nothing was started.
    const after = await request(port, '/')
    t.is(after.status, 200)
    t.is(after.body.pid, f.pid)
    t.is((await request(port, '/health/ready')).status, 200)
    t.deepEqual(f.lines.filter((e) => e.event === 'state' || (e.event === 'handoff' && e.step !== 'announced')), [], 'no state change')
  })

  test(`${framework}: no token: a proxied or cross-site request gets 403 and nothing happens; a plain local call gets 202 and the process exits 0`, async (t) => {
    const { f, port } = await start(t, framework)
    const marked: Array<Record<string, string>> = [
      { 'x-forwarded-for': '203.0.113.7' },
      { forwarded: 'for=203.0.113.7' },
      { 'x-real-ip': '203.0.113.7' },
      { via: '1.1 nginx' },
      { 'x-forwarded-proto': 'https' },
      { 'sec-fetch-site': 'cross-site' },
      { 'sec-fetch-site': 'same-site' },
      { origin: 'https://evil.example' },
      { origin: 'null' }
    ]
    for (const headers of marked) {
      for (const [method, target] of [['GET', '/shutdown?second=0'], ['POST', '/reboot?second=0']] as const) {
        const r = await request(port, target, { method, headers })
        t.is(r.status, 403, `${method} ${target} ${JSON.stringify(headers)}`)
        t.like(r.body, { statusCode: 403, error: 'Forbidden', code: 'ERR_GRACEFUL_ADMIN_FORBIDDEN' })
        t.regex(String(r.body.message), /configure admin\.token/)
        t.regex(String(r.headers['content-type']), /^application\/json/)
      }
    }
    // What an <img src="http://127.0.0.1:PORT/shutdown?second=0"> on another site's page sends.
    const img = await request(port, '/shutdown?second=0', { headers: { accept: 'image/avif,image/webp,*/*', 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image', referer: 'https://evil.example/' } })
    t.is(img.status, 403)
    // Still serving, and nothing was started.
    const after = await request(port, '/')
    t.is(after.status, 200)
    t.is(after.body.pid, f.pid)
    t.is((await request(port, '/health/ready')).status, 200)
    t.deepEqual(f.lines.filter((e) => e.event === 'state' || (e.event === 'handoff' && e.step !== 'announced')), [], 'no state change')
    // A same-origin page's request and a plain local call (curl on the host) are served.
    const sameOrigin = await request(port, '/shutdown?second=abc', { headers: { origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' } })
    t.is(sameOrigin.status, 400, 'past the gate, refused on the query')
    const r = await request(port, '/shutdown?second=1', { headers: { 'user-agent': 'curl/8.5.0', accept: '*/*' } })
    t.is(r.status, 202)
    t.deepEqual(r.body, { action: 'shutdown', timeout: 1000, pid: f.pid })
    t.deepEqual(await f.exited, { code: 0, signal: null })
    t.true(f.lines.some((e) => e.event === 'state' && e.state === 'draining'))
  })

  test(`${framework}: with a token, a proxied cross-site request with the right token is served`, async (t) => {
    const { f, port } = await start(t, framework, { TOKEN })
    const proxied = { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', forwarded: 'for=203.0.113.7', 'x-real-ip': '203.0.113.7', via: '1.1 nginx', origin: 'https://ops.example', 'sec-fetch-site': 'cross-site' }
    const none = await request(port, '/shutdown?second=1', { method: 'POST', headers: proxied })
    t.is(none.status, 401)
    const wrong = await request(port, '/shutdown?second=1', { method: 'POST', headers: { ...proxied, ...bearer('not-the-token') } })
    t.is(wrong.status, 403)
    t.is((await request(port, '/')).body.pid, f.pid)
    t.deepEqual(f.lines.filter((e) => e.event === 'state'), [], 'no state change')
    const r = await request(port, '/shutdown?second=1', { method: 'POST', headers: { ...proxied, ...bearer(TOKEN) } })
    t.is(r.status, 202)
    t.deepEqual(r.body, { action: 'shutdown', timeout: 1000, pid: f.pid })
    t.deepEqual(await f.exited, { code: 0, signal: null })
    t.true(f.lines.some((e) => e.event === 'state' && e.state === 'draining'))
  })

  test(`${framework}: 202 with a token, the in-flight request completes, the process exits 0`, async (t) => {
    const { f, port } = await start(t, framework, { TOKEN })
    const slow = request(port, '/slow?ms=1500')
    await f.waitFor('slow-started')
    // A body with a content type the app does not parse is ignored, not a 415.
    const r = await request(port, '/shutdown?second=2', { method: 'POST', headers: { ...bearer(TOKEN), 'content-type': 'application/x-www-form-urlencoded' }, body: 'x=1' })
    t.is(r.status, 202)
    t.deepEqual(r.body, { action: 'shutdown', timeout: 2000, pid: f.pid })
    t.is(r.headers.connection, 'close')
    const answer = await slow
    t.is(answer.status, 200)
    t.like(answer.body, { pid: f.pid, slept: 1500 })
    t.is(answer.headers.connection, 'close')
    t.deepEqual(await f.exited, { code: 0, signal: null })
    t.true(f.lines.some((e) => e.event === 'state' && e.state === 'draining'))
  })

  test(`${framework}: /reboot while a reboot is in flight gets 409; the first reboot completes`, async (t) => {
    // No token: the test is a loopback peer. GATE: the successor waits for SIGHUP before it listens.
    const { f, port } = await start(t, framework, { GATE: '1' })
    const r = await request(port, '/reboot?second=5')
    t.is(r.status, 202)
    t.like(r.body, { action: 'reboot', timeout: 5000, pid: f.pid })
    const spawned = await f.waitFor((e) => e.event === 'handoff' && e.step === 'spawned')
    const successor = spawned.other as number
    f.track(successor)
    await f.waitFor((e) => e.event === 'gate' && e.pid === successor)
    const again = await request(port, '/reboot?second=5', { method: 'POST' })
    t.is(again.status, 409)
    t.like(again.body, { statusCode: 409, code: 'ERR_GRACEFUL_REBOOT_IN_PROGRESS' })
    t.is((await request(port, '/')).body.pid, f.pid, 'the old process still serves')
    process.kill(successor, 'SIGHUP')
    const up = await f.waitFor((e) => e.event === 'listening' && e.pid === successor)
    t.is(up.port, port, 'the successor serves the same port')
    t.is(up.parent, f.pid)
    t.deepEqual(await f.exited, { code: 0, signal: null })
    t.is((await request(port, '/')).body.pid, successor)
  })
}

test('cluster worker: /reboot gets 501 with the coded error\'s message', async (t) => {
  const f = startFixture(t, 'admin-cluster')
  const ready = await f.waitFor('listening')
  f.track(ready.pid as number)
  const r = await request(ready.port as number, '/reboot?second=1')
  t.is(r.status, 501)
  t.like(r.body, { statusCode: 501, code: 'ERR_GRACEFUL_REBOOT_UNSUPPORTED' })
  t.regex(String(r.body.message), /cluster worker/)
  t.is((await request(ready.port as number, '/')).status, 200)
})

test('a Unix-socket peer counts as local without a token', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gr-admin-'))
  t.teardown(() => { fs.rmSync(dir, { recursive: true, force: true }) })
  const socketPath = path.join(dir, 'app.sock')
  const { port } = await start(t, 'express', { SOCKET_PATH: socketPath })
  // Passes the peer check, fails on the query: nothing happens.
  const r = await request(0, '/shutdown?second=x', { socketPath })
  t.is(r.status, 400)
  t.is((await request(port, '/health/ready')).status, 200)
})
