// Test-only TypeScript loader: oxc-node's ESM hooks for the *.spec.ts files, without its
// CommonJS hook, which would also re-transform the package's compiled CommonJS output.
import { register } from 'node:module'

register('@oxc-node/core/esm', import.meta.url)
