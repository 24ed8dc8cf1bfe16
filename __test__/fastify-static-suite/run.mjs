// Runs @fastify/static's own test suite (its test/ folder, shipped in its npm tarball, MIT)
// against @fastify/static itself ('upstream') or against zerocopy-socket/fastify ('zerocopy'):
// the installed package is copied into a temporary directory, and for 'zerocopy' its index.js
// (what the suite's `require('..')` loads) is replaced by a stand-in that loads our plugin
// through the stand-in's own `require`, so the suite's proxyquire stubs of '../' reach it as
// they reach @fastify/static. Nothing of the suite is committed. Prints one JSON line per test
// (see reporter.mjs).
//   node __test__/fastify-static-suite/run.mjs upstream|zerocopy [test file name ...]
import { spawnSync } from 'node:child_process'
import { cpSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..', '..')
const require = createRequire(join(root, 'package.json'))

/**
 * Runs the suite and returns its records: `{ id, status: 'pass' | 'fail' | 'skip', error }`.
 * @param {'upstream' | 'zerocopy'} plugin
 * @param {string[]} [only] test file names to run (default: all)
 */
export function runSuite(plugin, only = []) {
  const upstream = dirname(require.resolve('@fastify/static/package.json'))
  const dir = mkdtempSync(join(tmpdir(), 'fastify-static-suite-'))
  try {
    cpSync(upstream, dir, { recursive: true, verbatimSymlinks: true })
    if (plugin === 'zerocopy') {
      const loader = join(root, 'dist', 'src', 'frameworks', 'fastify-send.js')
      writeFileSync(join(dir, 'index.js'), `module.exports = require(${JSON.stringify(loader)}).loadFastifyStatic(require)\n`)
    } else if (plugin !== 'upstream') {
      throw new TypeError(`plugin must be 'upstream' or 'zerocopy', not ${plugin}`)
    }
    const files = readdirSync(join(dir, 'test'))
      .filter((name) => name.endsWith('.test.js') && (only.length === 0 || only.includes(name)))
      .map((name) => join(dir, 'test', name))
    const run = spawnSync(process.execPath, ['--test', `--test-reporter=${join(here, 'reporter.mjs')}`, '--test-reporter-destination=stdout', ...files], {
      cwd: dir,
      env: { ...process.env, NODE_PATH: join(root, 'node_modules'), NODE_OPTIONS: '' },
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 5 * 60 * 1000,
    })
    if (run.error) throw run.error
    const records = run.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line))
    if (records.length === 0) throw new Error(`the suite produced no results (exit ${run.status}):\n${run.stderr}`)
    return records
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [plugin, ...only] = process.argv.slice(2)
  for (const record of runSuite(plugin ?? 'zerocopy', only)) process.stdout.write(JSON.stringify(record) + '\n')
}
