// Runs in the test process: WebSocket (upgraded) connections during a drain, with real servers and
// real `ws` clients. The lifecycle is process-wide, so every test is serial and tears down its server.
import test from 'ava'
import type { ExecutionContext } from 'ava'
import { once } from 'node:events'
import type http from 'node:http'
import type net from 'node:net'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import websocket from '@fastify/websocket'
import WebSocket, { WebSocketServer } from 'ws'
import graceful, { exitCodes, expressGraceful, GOING_AWAY } from '../index'
import { closedAt, rawConnect, silent, within } from './helpers/servers'

/** Fastify + @fastify/websocket with an echo route at /ws. */
async function fastifyWs (t: ExecutionContext, timeout?: number): Promise<{ app: FastifyInstance, port: number }> {
  const app = Fastify()
  await app.register(graceful, { exit: false, signals: false, ...(timeout === undefined ? {} : { timeout }) })
  await app.register(websocket)
  app.get('/ws', { websocket: true }, (socket) => {
    socket.on('message', (data) => { socket.send(data) })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => {
    for (const c of app.websocketServer.clients) c.terminate()
    await app.close()
  })
  return { app, port: (app.server.address() as net.AddressInfo).port }
}

/** Express + a `ws` server in noServer mode on the server's 'upgrade' event, echo on every path. */
async function expressWs (t: ExecutionContext, timeout?: number): Promise<{ app: ReturnType<typeof expressGraceful<ReturnType<typeof express>>>, wss: WebSocketServer, port: number }> {
  const app = expressGraceful(express(), { exit: false, signals: false, logger: silent, ...(timeout === undefined ? {} : { timeout }) })
  app.get('/', (_req, res) => { res.send('ok') })
  const server = app.listen(0, '127.0.0.1') as http.Server
  await once(server, 'listening')
  const wss = new WebSocketServer({ noServer: true })
  wss.on('connection', (ws) => { ws.on('message', (data) => { ws.send(data) }) })
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => { wss.emit('connection', ws, req) })
  })
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate()
    wss.close()
    await app.graceful.close(0)
  })
  return { app, wss, port: (server.address() as net.AddressInfo).port }
}

/** `n` connected clients that each got an echo back; closed in teardown. */
async function clients (t: ExecutionContext, url: string, n: number): Promise<WebSocket[]> {
  const list = Array.from({ length: n }, () => new WebSocket(url))
  for (const ws of list) {
    ws.on('error', () => {})
    t.teardown(() => { ws.terminate() })
  }
  await within(10_000, `${n} WebSocket clients echoed`, Promise.all(list.map(async (ws, i) => {
    await once(ws, 'open')
    ws.send(`hello ${i}`)
    const [data] = await once(ws, 'message') as [Buffer]
    if (data.toString() !== `hello ${i}`) throw new Error(`bad echo ${data.toString()}`)
  })))
  return list
}

/** Resolves with [code, reason] of the client's 'close' event. */
function closeOf (ws: WebSocket): Promise<[number, string]> {
  return new Promise((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => { resolve([code, reason.toString()]) })
  })
}

test.serial('fastify: @fastify/websocket clients see 1001 when the app shuts down', async (t) => {
  const { app, port } = await fastifyWs(t)
  const list = await clients(t, `ws://127.0.0.1:${port}/ws`, 3)
  const closes = list.map(closeOf)

  const result = await within(10_000, 'the shutdown', app.shutdown(5000))
  t.deepEqual(await within(5000, 'client close events', Promise.all(closes)), Array(3).fill([GOING_AWAY, 'server shutting down']))
  t.is(result.forced, 0)
  t.is(result.apps[0]?.forcedUpgraded, 0)
  t.deepEqual(result.failedFinalizers, [])
  t.is(result.code, exitCodes.clean)
})

test.serial('fastify: app.close() closes @fastify/websocket clients with 1001 too', async (t) => {
  const { app, port } = await fastifyWs(t)
  const list = await clients(t, `ws://127.0.0.1:${port}/ws`, 2)
  const closes = list.map(closeOf)

  await within(10_000, 'the close', app.close())
  t.deepEqual(await within(5000, 'client close events', Promise.all(closes)), Array(2).fill([GOING_AWAY, 'server shutting down']))
})

// The finalizer of docs/websockets.md, as written there: it only sends the close
// frames; the drain waits for the upgraded sockets to close.
test.serial('express: the documented finalizer closes every ws client with 1001 -> clients see 1001, nothing forced, exit code 0', async (t) => {
  const { app, wss, port } = await expressWs(t)
  app.onShutdown(() => {
    for (const ws of wss.clients) ws.close(1001, 'going away')
  }, { name: 'websockets' })
  const list = await clients(t, `ws://127.0.0.1:${port}/chat`, 3)
  const closes = list.map(closeOf)

  const result = await within(10_000, 'the shutdown', app.shutdown(5000))
  t.deepEqual(await within(5000, 'client close events', Promise.all(closes)), Array(3).fill([1001, 'going away']))
  t.is(result.forced, 0)
  t.is(result.apps[0]?.forcedUpgraded, 0)
  t.deepEqual(result.apps[0]?.finalizers.map((f) => [f.name, f.ok]), [['websockets', true]])
  t.is(result.code, exitCodes.clean)
})

test.serial('fastify without @fastify/websocket: a ws server on app.server, closed by the documented finalizer -> 1001, exit code 0', async (t) => {
  const app = Fastify()
  await app.register(graceful, { exit: false, signals: false })
  const wss = new WebSocketServer({ server: app.server })
  wss.on('connection', (ws) => { ws.on('message', (data) => { ws.send(data) }) })
  app.onShutdown(() => {
    for (const ws of wss.clients) ws.close(1001, 'going away')
  }, { name: 'websockets' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate()
    wss.close()
    await app.close()
  })
  const list = await clients(t, `ws://127.0.0.1:${(app.server.address() as net.AddressInfo).port}/`, 2)
  const closes = list.map(closeOf)

  const result = await within(10_000, 'the shutdown', app.shutdown(5000))
  t.deepEqual(await within(5000, 'client close events', Promise.all(closes)), Array(2).fill([1001, 'going away']))
  t.is(result.forced, 0)
  t.is(result.code, exitCodes.clean)
})

test.serial('express: ws clients nobody closes are destroyed at the deadline and counted as forcedUpgraded', async (t) => {
  const { app, port } = await expressWs(t)
  const list = await clients(t, `ws://127.0.0.1:${port}/chat`, 2)
  const closes = list.map(closeOf)

  const t0 = performance.now()
  const result = await within(5000, 'a shutdown(300) despite open WebSockets', app.shutdown(300))
  const elapsed = performance.now() - t0
  t.deepEqual((await within(5000, 'client close events', Promise.all(closes))).map(([code]) => code), [1006, 1006])
  t.true(elapsed >= 250, `shutdown(300) did not wait for its deadline (${Math.round(elapsed)} ms)`)
  t.is(result.apps[0]?.forcedUpgraded, 2)
  t.is(result.forced, 2)
  t.is(result.code, exitCodes.forced)
})

/**
 * A raw TCP client that completes the WebSocket handshake on /ws and then ignores everything (it
 * never answers the server's close frame). `received()` is every byte the server sent.
 */
async function deafClient (t: ExecutionContext, port: number): Promise<{ socket: net.Socket, received: () => Buffer }> {
  const socket = await rawConnect(t, port)
  let received = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => { received = Buffer.concat([received, chunk]) })
  const upgraded = new Promise<void>((resolve) => {
    const check = (): void => {
      if (!received.includes('\r\n\r\n')) return
      socket.removeListener('data', check)
      resolve()
    }
    socket.on('data', check)
  })
  socket.write([
    'GET /ws HTTP/1.1',
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version: 13',
    '', ''
  ].join('\r\n'))
  await within(5000, 'the 101 response', upgraded)
  if (!received.toString('latin1').startsWith('HTTP/1.1 101 Switching Protocols\r\n')) {
    throw new Error(`no upgrade: ${received.toString('latin1')}`)
  }
  return { socket, received: () => received }
}

test.serial('fastify: a client that completes the handshake but never answers the close frame is destroyed at the deadline', async (t) => {
  const { app, port } = await fastifyWs(t)
  const deaf = await deafClient(t, port)
  const closed = closedAt(deaf.socket)

  const t0 = performance.now()
  const result = await within(8000, 'a shutdown(500) despite a client that ignores the close frame', app.shutdown(500))
  const elapsed = performance.now() - t0
  await within(5000, 'the raw socket closed', closed)

  // The server did say goodbye first: an unmasked close frame with code 1001.
  const received = deaf.received()
  const frames = received.subarray(received.indexOf('\r\n\r\n') + 4)
  t.is(frames[0], 0x88, 'a FIN + close frame')
  t.is(frames.readUInt16BE(2), GOING_AWAY)
  t.is(result.apps[0]?.forcedUpgraded, 1)
  t.is(result.forced, 1)
  t.is(result.apps[0]?.forced, 0, 'no HTTP connection was forced')
  t.true(elapsed >= 450, `the deadline was not waited for (${Math.round(elapsed)} ms)`)
  // That it is destroyed at the deadline and not later is checked by events, without a time window,
  // in 'with shutdown(500) the deaf WebSocket is destroyed by the deadline, not 1 s later' below.
})

// A deaf WebSocket destroyed at the deadline is a forced close (75), not a failed finalizer (76).
test.serial('fastify: a WebSocket destroyed at the deadline gives exit code 75, not a failed "websocket" finalizer (76)', async (t) => {
  const { app, port } = await fastifyWs(t)
  const deaf = await deafClient(t, port)
  const closed = closedAt(deaf.socket)
  const result = await within(8000, 'shutdown(1200)', app.shutdown(1200))
  await within(5000, 'the raw socket closed', closed)
  t.is(result.apps[0]?.forcedUpgraded, 1)
  t.deepEqual(result.failedFinalizers, [])
  t.is(result.code, exitCodes.forced)
})

// Upgraded sockets are destroyed at the shutdown deadline, not after the finalizers' 1 s floor.
test.serial('fastify: with shutdown(500) the deaf WebSocket is destroyed by the deadline, not 1 s later', async (t) => {
  const { app, port } = await fastifyWs(t)
  let serverSide: net.Socket | undefined
  app.server.once('upgrade', (_req: http.IncomingMessage, socket: net.Socket) => { serverSide = socket })
  const deaf = await deafClient(t, port)
  const closed = closedAt(deaf.socket)
  // A point in time between the 500 ms deadline and the finalizers' 1 s floor, taken from the same
  // clock: a finalizer whose own timeout is 800 ms. Its timer expires after the deadline's timer and
  // before any 1 s timer, and timers run in order of expiry however late a loaded machine runs them;
  // so when it is aborted, the deaf socket must already be destroyed.
  let destroyedAt800: boolean | undefined
  app.onShutdown((ctx) => new Promise<void>((resolve) => {
    ctx.signal.addEventListener('abort', () => {
      destroyedAt800 = serverSide?.destroyed
      resolve()
    })
  }), { name: 'at-800-ms', timeout: 800 })
  const shutdown = app.shutdown(500)
  await within(8000, 'the raw socket closed', closed)
  const result = await within(8000, 'shutdown(500)', shutdown)
  t.not(serverSide, undefined, 'the server-side socket of the deaf client was seen')
  t.true(destroyedAt800, 'the deaf WebSocket was destroyed before an 800 ms finalizer timeout ran out')
  t.is(result.apps[0]?.forcedUpgraded, 1)
})
