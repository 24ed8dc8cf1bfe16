/**
 * Loads a private instance of a CommonJS module whose imports the caller chooses: how the
 * framework adapters reuse a package (`@fastify/static`, `koa-send`) with one of its imports
 * replaced, without touching the instance in `require.cache` that the application uses.
 *
 * It relies on one behaviour of Node's CommonJS loader, stable since Node 0.x and relied on by
 * proxyquire and require-in-the-middle: a module's `require` calls its `Module`'s `require`
 * method, so replacing that method on a fresh `Module` before compiling the source replaces
 * the module's imports. The packages loaded this way are pinned in package.json and their
 * seams tested (fastify.spec.ts, koa.spec.ts).
 * @module
 */
import { readFileSync } from 'node:fs'
import Module, { createRequire } from 'node:module'
import { dirname } from 'node:path'

/** The `Module` API this file uses, beyond the typed one. */
interface ModuleInternals {
  new (id: string, parent?: NodeModule): NodeModule & { _compile(source: string, filename: string): void }
  _nodeModulePaths(dir: string): string[]
}

/**
 * Compiles the module at `entry` as a new instance, its `require(id)` answered by
 * `imports(id, load)` where `load` is what it would have returned (its own resolution, or
 * `requireFn`'s when given).
 * @returns The instance's `module.exports`.
 */
export function loadPrivateModule(
  entry: string,
  imports: (id: string, load: (id: string) => unknown) => unknown,
  requireFn?: (id: string) => unknown,
): unknown {
  const ModuleClass = Module as unknown as ModuleInternals
  const mod = new ModuleClass(entry, module)
  mod.filename = entry
  mod.paths = ModuleClass._nodeModulePaths(dirname(entry))
  const load = requireFn ?? createRequire(entry)
  mod.require = ((id: string) => imports(id, load)) as NodeJS.Require
  mod._compile(readFileSync(entry, 'utf8'), entry)
  mod.loaded = true
  return mod.exports
}

/** Resolves `id` from this package, or throws `MODULE_NOT_FOUND` naming the package to install. */
export function resolvePeer(id: string, adapter: string, install: string): string {
  try {
    return createRequire(__filename).resolve(id)
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    err.message = `${adapter} is built on ${id} and needs it installed: npm install ${install}\n${err.message}`
    throw err
  }
}
