// The part of http-terminator 3.2.0's typings (dist/src/index.d.ts) that bench/apps/http-terminator.js
// uses. bench/tsconfig.json maps 'http-terminator' here, so the type check of the bench reads the
// same declarations whether bench/node_modules is installed or not (CI installs the root only).
import type { Server as HttpServer } from 'node:http'
import type { Http2SecureServer } from 'node:http2'
import type { Server as HttpsServer } from 'node:https'

export type HttpTerminatorConfigurationInput = {
  readonly gracefulTerminationTimeout?: number
  readonly server: Http2SecureServer | HttpServer | HttpsServer
}

export type HttpTerminator = {
  readonly terminate: () => Promise<void>
}

export declare const createHttpTerminator: (configurationInput: HttpTerminatorConfigurationInput) => HttpTerminator
