// `prepack` / `postpack`: the main package's optionalDependencies on every platform package.
//
//   node tools/optional-deps.mjs add      (prepack)  writes them into package.json
//   node tools/optional-deps.mjs remove   (postpack) takes them out again
//
// What `napi pre-publish` writes, but at pack time: `npm pack` then gives exactly the tarball the
// release publishes, and package.json in git stays without them, so `npm install` in a checkout
// does not fetch prebuilt binaries of a version that may not be published yet. Each npm/<dir>
// is checked against the napi target it stands for (name, version, os, cpu, libc, main, files),
// so a wrong platform package fails the pack instead of an install.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'

import { parseTriple } from '@napi-rs/cli'

const root = new URL('..', import.meta.url)
const pkgUrl = new URL('package.json', root)
const text = readFileSync(pkgUrl, 'utf8')
const pkg = JSON.parse(text)
const { binaryName, packageName, targets } = pkg.napi

/** What napi-rs expects of npm/<platformArchABI>/package.json for `triple`. */
function expected(triple) {
  const t = parseTriple(triple)
  const file = `${binaryName}.${t.platformArchABI}.node`
  const libc = t.abi === 'gnu' ? ['glibc'] : t.abi === 'musl' ? ['musl'] : undefined
  return {
    dir: t.platformArchABI,
    manifest: {
      name: `${packageName}-${t.platformArchABI}`,
      version: pkg.version,
      os: [t.platform],
      cpu: [t.arch],
      libc,
      main: file,
      files: [file],
      // npm publish --provenance checks it against the repository the workflow runs in.
      repository: { ...pkg.repository, directory: `npm/${t.platformArchABI}` },
    },
  }
}

function platformPackages() {
  const wanted = targets.map(expected)
  const dirs = readdirSync(new URL('npm/', root)).sort()
  const problems = []
  if (
    dirs.join() !==
    wanted
      .map((w) => w.dir)
      .sort()
      .join()
  )
    problems.push(`npm/ has ${dirs.join(', ')}; napi.targets want ${wanted.map((w) => w.dir).join(', ')}`)
  for (const { dir, manifest } of wanted) {
    let actual
    try {
      actual = JSON.parse(readFileSync(new URL(`npm/${dir}/package.json`, root), 'utf8'))
    } catch (e) {
      problems.push(`npm/${dir}/package.json: ${e.message}`)
      continue
    }
    for (const [key, value] of Object.entries(manifest)) {
      if (JSON.stringify(actual[key]) !== JSON.stringify(value)) {
        problems.push(
          `npm/${dir}/package.json: ${key} is ${JSON.stringify(actual[key])}, expected ${JSON.stringify(value)}${key === 'version' ? ' (run `npx napi version`)' : ''}`,
        )
      }
    }
  }
  if (problems.length > 0) {
    console.error(`optional-deps: the platform packages do not match package.json:\n  ${problems.join('\n  ')}`)
    process.exit(1)
  }
  return wanted.map((w) => w.manifest.name)
}

const mode = process.argv[2]
if (mode !== 'add' && mode !== 'remove') {
  console.error('usage: node tools/optional-deps.mjs add|remove')
  process.exit(2)
}
const names = platformPackages()
const others = Object.entries(pkg.optionalDependencies ?? {}).filter(([name]) => !name.startsWith(`${packageName}-`))
if (mode === 'add') pkg.optionalDependencies = Object.fromEntries([...others, ...names.map((name) => [name, pkg.version])])
else if (others.length > 0) pkg.optionalDependencies = Object.fromEntries(others)
else delete pkg.optionalDependencies
const out = `${JSON.stringify(pkg, null, 2)}\n`
if (out !== text) writeFileSync(pkgUrl, out)
