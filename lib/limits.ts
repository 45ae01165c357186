// Runs in both processes: limits every layer shares.

/** The longest a Node timer waits, in ms (2^31 - 1, about 24.8 days): the bound of every duration option. */
export const MAX_MS = 2_147_483_647
