// Tests of @fastify/static's suite that pass against @fastify/static 10.1.11 and not against
// zerocopy-socket/fastify, with why. fastify.spec.ts checks this list is exact; the README's
// "Fastify" section repeats it.
/** @type {Record<string, string>} test id (file > test > subtest) → why it differs */
export const DIFFERENCES = {}
