'use strict'
// Runs in the scripts npm runs for this checkout (prepare, pretest): npm commands of their own, without
// the settings of the npm command that runs them.
const { spawnSync } = require('node:child_process')

/** npm's settings for the command that runs a script (`--omit=dev`, `--global`, ...) must not reach the npm run from it; where its cache and configuration are, and whether it is offline, do. */
function env () {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_registry', 'npm_config_offline', 'npm_config_prefer_offline'])
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) || keep.has(k.toLowerCase())))
}

/** Runs `npm ...args` in `cwd` (the npm that runs this script when there is one); exits with its code when it fails. */
function npm (cwd, args) {
  const cli = process.env.npm_execpath
  const [command, argv] = cli !== undefined && cli.endsWith('.js') ? [process.execPath, [cli, ...args]] : ['npm', args]
  const r = spawnSync(command, argv, { cwd, env: env(), stdio: 'inherit' })
  if (r.status !== 0) {
    process.stderr.write(`graceful-reboot: \`npm ${args.join(' ')}\` in ${cwd} failed (${r.error?.message ?? `exit ${r.status}`})\n`)
    process.exit(r.status ?? 1)
  }
}

module.exports = { npm }
