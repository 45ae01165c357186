// The part of close-with-grace 2.5.0's typings (index.d.ts) that bench/apps/close-with-grace.js uses.
// bench/tsconfig.json maps 'close-with-grace' here, so the type check of the bench reads the same
// declarations whether bench/node_modules is installed or not (CI installs the root only).
type Signals = 'SIGHUP' | 'SIGINT' | 'SIGQUIT' | 'SIGILL' | 'SIGTRAP' | 'SIGABRT' | 'SIGBUS' | 'SIGFPE' | 'SIGSEGV' | 'SIGUSR2' | 'SIGTERM'

interface Options {
  /** ms before the process is ended (code 1) when `fn` has not finished; default 10000; falsy: never. */
  delay?: number | undefined | null | false
  logger?: { error (message?: unknown, ...optionalParams: unknown[]): void } | undefined | null | false
}

type CloseWithGraceAsyncCallback = (options: { err?: Error, signal?: Signals, manual?: boolean }) => Promise<void>

interface CloseWithGraceReturn {
  close: () => void
  uninstall: () => void
}

declare function closeWithGrace (opts: Options, fn: CloseWithGraceAsyncCallback): CloseWithGraceReturn
declare function closeWithGrace (fn: CloseWithGraceAsyncCallback): CloseWithGraceReturn

export = closeWithGrace
