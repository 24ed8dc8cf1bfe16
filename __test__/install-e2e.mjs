// End-to-end install test (`npm run test:install`, part of `npm test`): the release flow run
// locally, then installs as a user without Rust would do them.
//
// 1. `napi artifacts` puts the freshly built addon into a copy of npm/<triple>/ (the release's
//    step, with napi.targets narrowed to this host's target: the other binaries come from CI).
// 2. A verdaccio registry on 127.0.0.1 (temporary config and storage; other packages are proxied
//    from the configured registry, ours never are) gets the platform package and the main
//    package, the latter as the tarball `npm pack` makes (so `prepack` adds optionalDependencies).
// 3. In an empty project, with `cargo` and `rustc` taken off PATH: `npm install zerocopy-socket`,
//    then require(), ESM import, `tsc --strict --noEmit` of a TypeScript consumer, a 64 MiB
//    loopback transfer with writes and sendFile() (SHA-256 on both ends), `npx zerocopy-socket
//    doctor`. Then the same in a project installed with `--omit=optional`: no binding, the
//    fallback, the same bytes, reason `no-binding`.
// The registry is stopped and every temporary file removed however the run ends.
import { spawn, spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'

import { parseTriple } from '@napi-rs/cli'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = fileURLToPath(new URL('./fixtures/consumer/', import.meta.url))
const started = Date.now()
const log = (line) => console.log(`[install-e2e +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}`)

const rootPkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
const HOST_TARGET = 'x86_64-unknown-linux-gnu'
const { platformArchABI: TRIPLE } = parseTriple(HOST_TARGET)
const PLATFORM_PKG = `${rootPkg.napi.packageName}-${TRIPLE}`
const ADDON = `${rootPkg.napi.binaryName}.${TRIPLE}.node`

if (process.platform !== 'linux' || process.arch !== 'x64' || !process.report.getReport().header.glibcVersionRuntime) {
  console.error(`\n!!! install-e2e SKIPPED: it publishes the ${TRIPLE} package, and this is ${process.platform}-${process.arch}\n`)
  process.exit(0)
}

const work = mkdtempSync(join(tmpdir(), 'zc-install-'))
let registry = null
/** Commands running now (killed with the registry if the run is interrupted). */
const children = new Set()

/** Stops the registry and any running command, and removes every temporary file; idempotent. */
function cleanup() {
  for (const child of [registry, ...children]) {
    if (child !== null && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  registry = null
  children.clear()
  rmSync(work, { recursive: true, force: true })
}
process.on('exit', cleanup)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    log(`${signal}: stopping the registry, removing ${work}`)
    cleanup()
    process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1))
  })
}

function fail(message) {
  throw new Error(message)
}

function check(ok, message) {
  if (!ok) fail(message)
  log(`ok: ${message}`)
}

/** PATH without any directory that holds cargo or rustc: the user has no Rust. */
const noRustPath = process.env.PATH.split(delimiter)
  .filter((dir) => dir && !existsSync(join(dir, 'cargo')) && !existsSync(join(dir, 'rustc')))
  .join(delimiter)

/** The environment of every npm/node child: no npm_config_* inherited from `npm run`, own cache and npmrc. */
function childEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)))
  return {
    ...env,
    PATH: noRustPath,
    npm_config_cache: join(work, 'npm-cache'),
    npm_config_userconfig: join(work, 'npmrc'),
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
  }
}

/**
 * Runs a command to completion and resolves with its stdout; rejects with its output when it
 * fails. Asynchronous, so that a signal is handled (and the registry stopped) at once.
 */
function run(cmd, args, { cwd = work, env = childEnv(), quiet = false, status = 0 } = {}) {
  const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c) => (stdout += c))
  child.stderr.on('data', (c) => (stderr += c))
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, signal) => {
      children.delete(child)
      if (code !== status) return reject(new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${code ?? signal}, not ${status}:\n${stdout}\n${stderr}`))
      if (!quiet && stderr.trim()) console.log(stderr.trim().replace(/^/gm, '    '))
      resolve(stdout)
    })
  })
}

/** The last stdout line of a node script, parsed as JSON. */
async function runJson(args, cwd) {
  const out = (await run(process.execPath, args, { cwd })).trim().split('\n')
  return JSON.parse(out[out.length - 1])
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

async function startRegistry() {
  const dir = join(work, 'verdaccio')
  mkdirSync(dir)
  const uplink = spawnSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' }).stdout.trim() || 'https://registry.npmjs.org/'
  // Our own names are never proxied: an install can only get what this test published.
  writeFileSync(
    join(dir, 'config.yaml'),
    `storage: ./storage
auth:
  htpasswd:
    file: ./htpasswd
    max_users: 10
uplinks:
  upstream:
    url: ${uplink}
packages:
  '${rootPkg.name}':
    access: $all
    publish: $authenticated
  '${rootPkg.napi.packageName.split('/')[0]}/*':
    access: $all
    publish: $authenticated
  '**':
    access: $all
    proxy: upstream
web:
  enable: false
log: { type: stdout, format: pretty, level: warn }
`,
  )
  const port = await freePort()
  const url = `http://127.0.0.1:${port}/`
  registry = spawn(
    process.execPath,
    [join(ROOT, 'node_modules/verdaccio/bin/verdaccio'), '--config', join(dir, 'config.yaml'), '--listen', `127.0.0.1:${port}`],
    {
      cwd: dir,
      env: childEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  let output = ''
  registry.stdout.on('data', (c) => (output += c))
  registry.stderr.on('data', (c) => (output += c))
  const deadline = Date.now() + 30_000
  for (;;) {
    if (registry.exitCode !== null) fail(`verdaccio exited ${registry.exitCode}:\n${output}`)
    try {
      if ((await fetch(`${url}-/ping`)).ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) fail(`verdaccio did not answer on ${url} within 30 s:\n${output}`)
    await new Promise((r) => setTimeout(r, 200))
  }
  // A user for publishing (npm refuses to publish without a token).
  const res = await fetch(`${url}-/user/org.couchdb.user:e2e`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'e2e', password: 'e2e-password' }),
  })
  const { token } = await res.json()
  if (!res.ok || !token) fail(`verdaccio refused the test user: ${res.status}`)
  writeFileSync(join(work, 'npmrc'), `registry=${url}\n//127.0.0.1:${port}/:_authToken=${token}\n`)
  return url
}

/** Step 1: the platform package, as the release's `napi artifacts` step makes it. */
async function platformPackage() {
  const built = join(ROOT, ADDON)
  if (!existsSync(built)) fail(`${ADDON} is not built: run \`npm run build:native\` first`)
  const stage = join(work, 'stage')
  mkdirSync(join(stage, 'npm'), { recursive: true })
  cpSync(join(ROOT, 'npm', TRIPLE), join(stage, 'npm', TRIPLE), { recursive: true })
  writeFileSync(join(stage, 'package.json'), JSON.stringify({ ...rootPkg, napi: { ...rootPkg.napi, targets: [HOST_TARGET] } }, null, 2))
  // Laid out as actions/download-artifact leaves the build matrix's uploads.
  mkdirSync(join(stage, 'artifacts', `bindings-${HOST_TARGET}`), { recursive: true })
  copyFileSync(built, join(stage, 'artifacts', `bindings-${HOST_TARGET}`, ADDON))
  await run(
    process.execPath,
    [join(ROOT, 'node_modules/@napi-rs/cli/dist/cli.js'), 'artifacts', '--cwd', stage, '--output-dir', 'artifacts', '--npm-dir', 'npm'],
    { quiet: true },
  )
  const dir = join(stage, 'npm', TRIPLE)
  check(readFileSync(join(dir, ADDON)).equals(readFileSync(built)), `napi artifacts put the built ${ADDON} into npm/${TRIPLE}/`)
  return dir
}

/** Step 2b: the main package, packed from the checkout (prepack/postpack run). */
async function mainTarball() {
  const before = readFileSync(join(ROOT, 'package.json'), 'utf8')
  const name = (await run('npm', ['pack', '--pack-destination', work], { cwd: ROOT, quiet: true })).trim().split('\n').pop()
  check(readFileSync(join(ROOT, 'package.json'), 'utf8') === before, "npm pack left the checkout's package.json as it was (postpack)")
  const tgz = join(work, name)
  const files = (await run('tar', ['tzf', tgz])).trim().split('\n').sort()
  const inside = JSON.parse(await run('tar', ['xzOf', tgz, 'package/package.json']))
  const wanted = Object.fromEntries(readdirSync(join(ROOT, 'npm')).map((d) => [`${rootPkg.napi.packageName}-${d}`, rootPkg.version]))
  check(
    JSON.stringify(Object.entries(inside.optionalDependencies ?? {}).sort()) === JSON.stringify(Object.entries(wanted).sort()),
    `the tarball's optionalDependencies name all ${Object.keys(wanted).length} platform packages at ${rootPkg.version}`,
  )
  const stray = files.filter((f) => /\.node$|__test__|\.ts$(?<!\.d\.ts)|soak|stress|\/crates\/|\/npm\//.test(f))
  check(
    stray.length === 0,
    `the tarball ships no addon, tests, TypeScript sources or crates (${files.length} files)${stray.length ? `: ${stray.join(', ')}` : ''}`,
  )
  // The compiled code is all under dist/; binding.js (napi's loader) stays beside package.json.
  const outside = files.filter((f) => f.endsWith('.js') && !f.startsWith('package/dist/') && f !== 'package/binding.js')
  check(outside.length === 0, `the tarball's JavaScript is under dist/, but for binding.js${outside.length ? `: ${outside.join(', ')}` : ''}`)
  const needed = [
    'dist/index.js',
    'dist/index.d.ts',
    'dist/binding.js',
    'dist/binding.d.ts',
    'binding.js',
    'binding.d.ts',
    'dist/src/native.js',
    'dist/src/socket.d.ts',
    'dist/src/static.js',
    'dist/src/static.d.ts',
    'dist/cli/zerocopy-socket.js',
    'dist/bench/harness.js',
    'dist/bench/root.js',
    'bench/receiver.c',
    'bench/csend.c',
    'LICENSE',
  ]
  for (const f of needed) {
    if (!files.includes(`package/${f}`)) fail(`the tarball lacks ${f}`)
  }
  return tgz
}

/** Step 3: a new project that installs the package, and what it can do. */
async function consumer(name, url, installFlags, withBinding) {
  const app = join(work, name)
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }, null, 2))
  for (const f of readdirSync(FIXTURES)) copyFileSync(join(FIXTURES, f), join(app, f))
  copyFileSync(join(FIXTURES, '..', 'hash-server.cjs'), join(app, 'hash-server.cjs'))
  log(`${name}: npm install zerocopy-socket ${installFlags.join(' ')} (no cargo/rustc on PATH)`)
  await run('npm', ['install', rootPkg.name, '--registry', url, ...installFlags], { cwd: app })
  const platformDir = join(app, 'node_modules', ...PLATFORM_PKG.split('/'))
  check(existsSync(join(platformDir, ADDON)) === withBinding, `${name}: ${PLATFORM_PKG} is ${withBinding ? '' : 'not '}installed`)
  const addons = readdirSync(join(app, 'node_modules', rootPkg.name)).filter((f) => f.endsWith('.node'))
  check(addons.length === 0, `${name}: the main package carries no .node file of its own`)

  const t = await runJson(['transfer.cjs'], app)
  const code = t.probe.reason?.code ?? null
  check(
    t.received.bytes === t.sent.bytes && t.received.sha256 === t.sent.sha256,
    `${name}: require() + 64 MiB of writes and sendFile(): SHA-256 ${t.received.sha256.slice(0, 16)}… equal on both ends`,
  )
  if (withBinding) {
    const here = await runJson(['-e', `console.log(JSON.stringify(require(${JSON.stringify(ROOT)}).probe()))`], ROOT)
    check(
      code !== 'no-binding' && t.probe.supported === here.supported,
      `${name}: the installed binary loaded (supported: ${t.probe.supported}${code ? `, reason ${code}` : ''}, as in the checkout)`,
    )
    check(!t.probe.supported || t.stats.zeroCopySends > 0, `${name}: ${t.stats.zeroCopySends} zero-copy sends, fallback: ${t.stats.fallbackReason ?? 'none'}`)
  } else {
    check(code === 'no-binding' && !t.probe.supported, `${name}: probe() says no-binding: ${t.probe.reason?.message.slice(0, 90)}…`)
    check(t.probe.reason.message.includes(`binding-${TRIPLE}`), `${name}: the no-binding message names ${TRIPLE}`)
    check(
      t.stats.zeroCopySends === 0 && /native binding \S+ did not load/.test(t.stats.fallbackReason ?? ''),
      `${name}: the transfer took the net.Socket fallback`,
    )
  }
  const esm = await runJson(['esm.mjs'], app)
  check(
    esm.connect === 'function' && esm.pool === 'function' && esm.sendZcSync === 'function' && esm.serveStatic === 'function' && esm.reason === code,
    `${name}: ESM import { ZeroCopySocket, BufferPool, probe, sendZcSync } and { serveStatic } from 'zerocopy-socket/static' work`,
  )
  // nodenext reads "exports"; node (node10) reads "types" and, for zerocopy-socket/static,
  // "typesVersions": both must find the tarball's declarations.
  for (const [module, resolution] of [
    ['nodenext', 'nodenext'],
    ['commonjs', 'node'],
  ]) {
    await run(
      process.execPath,
      [
        join(ROOT, 'node_modules/typescript/bin/tsc'),
        '--strict',
        '--exactOptionalPropertyTypes',
        '--noEmit',
        '--module',
        module,
        '--moduleResolution',
        resolution,
        '--target',
        'es2022',
        '--types',
        'node',
        '--typeRoots',
        join(ROOT, 'node_modules/@types'),
        'consumer.ts',
      ],
      { cwd: app },
    )
    check(true, `${name}: tsc --strict --exactOptionalPropertyTypes --moduleResolution ${resolution} consumer.ts against the installed declarations`)
  }
  // doctor's exit status: 0 zero-copy, 2 fallback, 3 no native binding.
  const status = withBinding ? (t.probe.supported ? 0 : 2) : 3
  const doctor = await run('npx', ['--no', 'zerocopy-socket', 'doctor'], { cwd: app, status })
  const line = doctor.split('\n').find((l) => l.startsWith('native binding:')) ?? ''
  check(
    withBinding ? line.replace(/: +/, ': ') === `native binding: loaded (package ${rootPkg.version})` : line.includes('none (no-binding)'),
    `${name}: npx zerocopy-socket doctor: ${line.replace(/ +/, ' ').slice(0, 80)}`,
  )
}

let failed = false
try {
  log(`working in ${work}`)
  const pkgDir = await platformPackage()
  const url = await startRegistry()
  log(`verdaccio ${JSON.parse(readFileSync(join(ROOT, 'node_modules/verdaccio/package.json'), 'utf8')).version} listening on ${url}`)
  await run('npm', ['publish', '--access', 'public', '--registry', url], { cwd: pkgDir, quiet: true })
  log(`published ${PLATFORM_PKG}@${rootPkg.version}`)
  const tgz = await mainTarball()
  await run('npm', ['publish', tgz, '--registry', url], { quiet: true })
  log(`published ${rootPkg.name}@${rootPkg.version} from the npm pack tarball`)
  await consumer('app', url, [], true)
  await consumer('app-omit-optional', url, ['--omit=optional'], false)
  log('PASS')
} catch (e) {
  failed = true
  console.error(`[install-e2e] FAIL: ${e.message}`)
} finally {
  cleanup()
  log(`registry stopped, ${work} removed`)
}
process.exitCode = failed ? 1 : 0
