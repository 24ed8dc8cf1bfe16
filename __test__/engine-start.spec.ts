// The send engine's start meets a real descriptor shortage (a child under `ulimit -n 256` that
// uses up the rest): the sockets adopted meanwhile fall back and say why, and once descriptors
// are free again a later socket gets the engine (issue 23, item 8: one EMFILE used to turn
// zero-copy off for the thread's whole life).
import { fixture, runCommand, zcTest } from './helpers'

interface Report {
  probeBefore: boolean | null
  fillError: string | null
  filled: number
  during: { capable: boolean; reason: string | null; startFailures: number; probeSupported: boolean; probeErrno: string | null; same: boolean }
  after: { capable: boolean; reason: string | null; startFailures: number; same: boolean } | null
  adopted: number
  probeAfter: boolean
  unhandled: string[]
}

/** Runs the fixture under a soft and hard limit of 256 descriptors. */
function underLowFdLimit(variant: string): Promise<{ code: number | null; json: unknown; stderr: string }> {
  return runCommand('sh', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, fixture('engine-emfile.cjs'), variant], {}, 60_000)
}

for (const variant of ['cold', 'probe-first']) {
  zcTest(`engine start (${variant}): EMFILE at first use falls back for the moment, and a later socket gets the engine`, async (t) => {
    const { code, json, stderr } = await underLowFdLimit(variant)
    const report = json as Report | null
    t.log(JSON.stringify(report))
    t.is(code, 0, stderr)
    if (report === null) return
    t.is(report.fillError, 'EMFILE')
    t.is(report.probeBefore, variant === 'probe-first' ? true : null)
    // While out of descriptors: plain sends, and the reason says what and that it is retried.
    t.false(report.during.capable)
    t.regex(report.during.reason ?? '', /EMFILE/)
    t.regex(report.during.reason ?? '', /tries again/)
    t.is(report.during.startFailures, 1)
    t.true(report.during.same, 'the fallback delivered every byte')
    // The probe reports the shortage only while it lasts (it said yes before, if asked).
    if (variant === 'cold') t.deepEqual([report.during.probeSupported, report.during.probeErrno], [false, 'EMFILE'])
    else t.true(report.during.probeSupported)
    // Afterwards: the engine, every byte, and the count of failed starts kept.
    t.not(report.after, null, `no socket got the engine within 10 s (${report.adopted} adopted)`)
    t.true(report.after?.capable)
    t.true(report.after?.same)
    t.is(report.after?.startFailures, 1)
    t.true(report.probeAfter)
    t.deepEqual(report.unhandled, [])
  })
}
