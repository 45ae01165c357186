// Runs in the test process: the refusal rules of a reboot in a container (lib/outgoing/refusal.ts),
// without processes: as PID 1 and as the direct child of an init that exits with it, the error names
// what works there: the supervisor under the init.
import test from 'ava'
import { rebootRefusal, type RefusalFacts } from '../lib/outgoing/refusal'

function facts (pid: number, init: string | undefined): RefusalFacts {
  return {
    state: 'running',
    rebooting: false,
    seam: { platform: 'linux', pid },
    host: { isClusterWorker: false, exitingInit: () => init, terminalSession: () => undefined, env: {} },
    launcher: () => undefined,
    parentWaits: () => undefined,
    pidFile: () => undefined,
    listening: () => 1,
    blockers: () => []
  }
}

test('in a container: as PID 1, and as the child of tini or dumb-init, the refusal names graceful-reboot run under the init', (t) => {
  const asPid1 = rebootRefusal(facts(1, undefined))
  t.is(asPid1?.code, 'ERR_GRACEFUL_REBOOT_UNSUPPORTED')
  t.regex(asPid1?.message ?? '', /^cannot reboot as PID 1: .*tini -- graceful-reboot run --workers N app\.js/)
  for (const init of ['tini', 'dumb-init']) {
    const child = rebootRefusal(facts(7, init))
    t.regex(child?.message ?? '', new RegExp(`^cannot reboot as the direct child of ${init}: .*tini -- graceful-reboot run --workers N app\\.js`))
  }
  t.is(rebootRefusal(facts(7, undefined)), undefined, 'control: elsewhere it reboots')
})
