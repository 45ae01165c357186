// Runs in the test process and in test/fixtures/state-app.ts: one value of every type a state hand-over carries.

/** One value of every type structured clone carries (the fixture hands it over; the test compares). */
export function everyType (): unknown {
  return {
    map: new Map<unknown, unknown>([['a', 1], [2, { b: [3] }]]),
    set: new Set(['x', 7]),
    date: new Date(1_700_000_000_000),
    buffer: Buffer.from('héllo'),
    bytes: new Uint8Array([1, 2, 255]),
    floats: new Float64Array([1.5, -0]),
    big: 12345678901234567890n,
    regexp: /a+b/gi,
    nested: { list: [1, 'two', null, { deep: true }], nothing: undefined, nan: NaN }
  }
}
