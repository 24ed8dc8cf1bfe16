// Test-only TypeScript loader: oxc-node's ESM hooks for the *.spec.ts files, without its
// CommonJS hook, which would also re-transform the package's compiled CommonJS output; then
// dist-hooks.mjs (registered last, so it resolves first), which sends imports of the package's
// own sources to their compiled counterparts in dist/.
import { register } from 'node:module'

register('@oxc-node/core/esm', import.meta.url)
register('./dist-hooks.mjs', import.meta.url)
