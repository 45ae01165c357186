// Runs in every process that shuts down (the old process of a reboot too): sockets that left HTTP
// through an `upgrade` (WebSocket) are tracked apart from HTTP connections, so finalizers can close
// them properly and the drain can destroy what is left at the deadline.
import type { Server, Socket } from 'node:net'
import { EmptyWaiters, type ConnectionSet } from './connections'

export class UpgradedSockets implements ConnectionSet {
  private readonly sockets = new Set<Socket>()
  private readonly empty = new EmptyWaiters()

  get size (): number { return this.sockets.size }

  add (socket: Socket): void {
    if (socket.destroyed || this.sockets.has(socket)) return
    this.sockets.add(socket)
    socket.once('close', () => {
      this.sockets.delete(socket)
      if (this.sockets.size === 0) this.empty.wake()
    })
  }

  /** Nothing to say at drain start: the protocol on an upgraded socket is the app's (finalizers close WebSockets). */
  drain (): void {}

  /** Resolves once no upgraded socket is open. */
  whenEmpty (): Promise<void> {
    return this.empty.wait(this.sockets.size === 0)
  }

  /** Destroys every upgraded socket still open; returns how many. */
  destroyAll (): number {
    const n = this.sockets.size
    for (const s of this.sockets) s.destroy()
    return n
  }
}

/**
 * Calls `onUpgrade` for every socket the server hands to an `upgrade` listener.
 *
 * Node treats a request as an upgrade only while the server has an `upgrade` listener, so ours
 * must not be the only one: it is prepended when the application adds its own, and removed again
 * when the application's last one goes. Returns the function that removes everything.
 */
export function trackUpgrades (server: Server, onUpgrade: (socket: Socket) => void): () => void {
  const listener = (_req: unknown, socket: Socket): void => { onUpgrade(socket) }
  let attached = false
  let adding = false
  const onNewListener = (event: string | symbol, fn: unknown): void => {
    if (event !== 'upgrade' || fn === listener || attached || adding) return
    adding = true
    server.prependListener('upgrade', listener)
    adding = false
    attached = true
  }
  const onRemoveListener = (event: string | symbol, fn: unknown): void => {
    if (event !== 'upgrade' || fn === listener || !attached) return
    if (server.listenerCount('upgrade') === 1) {
      server.removeListener('upgrade', listener)
      attached = false
    }
  }
  server.on('newListener', onNewListener)
  server.on('removeListener', onRemoveListener)
  if (server.listenerCount('upgrade') > 0) onNewListener('upgrade', null)
  return () => {
    server.removeListener('newListener', onNewListener)
    server.removeListener('removeListener', onRemoveListener)
    if (attached) server.removeListener('upgrade', listener)
    attached = false
  }
}
