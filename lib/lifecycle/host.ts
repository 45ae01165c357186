// Runs in both processes: what the lifecycle needs from the process beyond the seam (lib/os.ts):
// the reboot host, and the sockets this process inherited, read by the new side (incoming/).
import { readInherited, type Inherited } from '../incoming/inherited'
import { realHost, type RebootHost } from '../os'

export type LifecycleHost = RebootHost & {
  /** Reads the sockets this process inherited (called once per process). */
  inherited: () => Inherited
}

export const realLifecycleHost: LifecycleHost = { ...realHost, inherited: readInherited }
