/**
 * The package's root directory (the checkout, or the installed package): the nearest directory
 * above this file with a package.json. The same from bench/ (the sources) and from dist/bench/
 * (where `npm run build:ts` compiles them), so data files beside the sources (the C programs,
 * the analysis notes) and docs/ are found from either.
 */
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'

function packageRoot(dir: string): string {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return d
    if (dirname(d) === d) throw new Error(`no package.json above ${dir}`)
  }
}

export const ROOT = packageRoot(__dirname)
