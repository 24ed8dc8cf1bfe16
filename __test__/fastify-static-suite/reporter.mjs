// A node:test reporter for the @fastify/static suite run: one JSON line per finished test,
// named by its file and the names of its ancestors, so two runs can be compared test by test.
import { basename } from 'node:path'

export default async function* jsonLines(source) {
  const open = []
  for await (const event of source) {
    if (event.type === 'test:start') {
      open[event.data.nesting] = event.data.name
      open.length = event.data.nesting + 1
    } else if (event.type === 'test:pass' || event.type === 'test:fail') {
      const { data } = event
      const path = [...open.slice(0, data.nesting), data.name]
      const skipped = data.skip !== undefined || data.todo !== undefined
      const status = skipped ? 'skip' : event.type === 'test:pass' ? 'pass' : 'fail'
      const error = status === 'fail' ? String(data.details?.error?.cause?.message ?? data.details?.error?.message ?? '').slice(0, 300) : undefined
      yield JSON.stringify({ id: `${basename(data.file ?? '')} > ${path.join(' > ')}`, status, error }) + '\n'
    }
  }
}
