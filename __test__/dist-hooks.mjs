// Resolve hook for the tests (registered by register.mjs): an import of one of the package's own
// TypeScript modules (index.ts, src/, cli/, bench/) loads what tsc compiled it to in dist/, so the
// ava tests run the CommonJS that is published, as the fixtures and the CLI and bench tests' child
// processes do, while `tsc -p __test__/tsconfig.json` checks them against the sources.
const ROOT = new URL('../', import.meta.url).href
const SOURCE = /^(index|(?:src|cli|bench)(?:\/[^/]+)+)\.ts$/

/** @type {import('node:module').ResolveHook} */
export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context)
  const source = resolved.url.startsWith(ROOT) ? SOURCE.exec(resolved.url.slice(ROOT.length)) : null
  return source ? { ...resolved, url: `${ROOT}dist/${source[1]}.js`, format: 'commonjs' } : resolved
}
