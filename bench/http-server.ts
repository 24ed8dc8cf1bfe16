/**
 * One Node.js file server of the HTTP benchmark (bench/http.ts), in its own process:
 * `node bench/http-server.js <server> <root>` serves `GET /<name>` from the files in `root` on
 * 127.0.0.1 (a free port) and prints `{"port":N}` on stdout once it listens. nginx is started
 * by bench/http.ts itself, and Bun and Deno run their own scripts (bench/anchors/).
 *
 * The list of servers imports nothing heavy, so the harness can check `--only` against it; each
 * server loads its framework only when it is the one started.
 */
import { createReadStream, readdirSync, readFileSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { basename, join } from 'node:path'

/** One server of the benchmark, in table order. */
export interface HttpServer {
  name: string
  describe: string
  /** Run by this runtime instead of Node (its script in bench/anchors/). */
  runtime?: 'bun' | 'deno'
}

/** Every server, in table order; `nginx` is the reference. */
export const HTTP_SERVERS: HttpServer[] = [
  { name: 'nginx', describe: "Debian's nginx, one worker, `sendfile on; tcp_nopush on; access_log off;`, keep-alive" },
  { name: 'bun', describe: 'Bun, `Bun.serve` + `new Response(Bun.file(path))`', runtime: 'bun' },
  { name: 'deno', describe: 'Deno, `Deno.serve` + `Deno.open(path)` streamed, `Content-Length` from its stat', runtime: 'deno' },
  {
    name: 'node-memory',
    describe: 'node:http + `res.end(buffer)` of the file read into memory at start: the ceiling of any node:http response',
  },
  { name: 'respondWithFile', describe: 'node:http + `respondWithFile(res, path)` (this package)' },
  { name: 'pipe', describe: 'node:http + `fs.createReadStream(path).pipe(res)`, `Content-Length` from `fs.stat`' },
  { name: 'send', describe: '`send(req, path).pipe(res)` (the engine of `express.static` / `serve-static`)' },
  { name: 'fastify-static', describe: 'fastify + `@fastify/static`, `reply.sendFile(name)`' },
  { name: 'zc-fastify', describe: 'fastify + `zerocopy-socket/fastify` (this package, the drop-in for @fastify/static), `reply.sendFile(name)`' },
  { name: 'koa-static', describe: 'koa + `koa-static(root)`' },
  { name: 'zc-koa', describe: 'koa + `serve(root)` from `zerocopy-socket/koa` (this package, the drop-in for koa-static)' },
  { name: 'hono-static', describe: 'hono on @hono/node-server + its `serveStatic({ root })`' },
  { name: 'zc-hono', describe: 'hono on @hono/node-server + `serveStatic({ root })` from `zerocopy-socket/hono` (this package)' },
  { name: 'serve-static', describe: 'node:http + `serve-static(root)` middleware (what `express.static` is)' },
  { name: 'serveStatic', describe: 'node:http + `serveStatic(root)` middleware (this package, the drop-in for serve-static)' },
]

/** The file a request names: only its last path segment, so nothing outside `root` is served. */
function fileOf(root: string, url: string | undefined): string {
  return join(root, basename(decodeURIComponent((url ?? '/').split('?')[0])))
}

function notFound(res: http.ServerResponse): void {
  if (res.headersSent) {
    res.destroy()
    return
  }
  res.statusCode = 404
  res.end()
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

async function start(name: string, root: string): Promise<number> {
  switch (name) {
    case 'respondWithFile': {
      const { respondWithFile } = await import('../index')
      return listen(
        http.createServer((req, res) => {
          respondWithFile(res, fileOf(root, req.url)).catch(() => notFound(res))
        }),
      )
    }
    case 'node-memory': {
      const bodies = new Map<string, Buffer>()
      for (const name of readdirSync(root)) bodies.set(join(root, name), readFileSync(join(root, name)))
      return listen(
        http.createServer((req, res) => {
          const body = bodies.get(fileOf(root, req.url))
          if (body === undefined) return notFound(res)
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length })
          res.end(body)
        }),
      )
    }
    case 'pipe':
      return listen(
        http.createServer((req, res) => {
          const path = fileOf(root, req.url)
          stat(path).then(
            (st) => {
              res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': st.size })
              createReadStream(path)
                .on('error', () => res.destroy())
                .pipe(res)
            },
            () => notFound(res),
          )
        }),
      )
    case 'send': {
      const send = (await import('send')).default
      return listen(
        http.createServer((req, res) => {
          send(req, basename(fileOf(root, req.url)), { root })
            .on('error', () => notFound(res))
            .pipe(res)
        }),
      )
    }
    case 'fastify-static':
    case 'zc-fastify': {
      const fastify = (await import('fastify')).default({ logger: false })
      // zerocopy-socket/fastify is CommonJS `export =` (what `require()` returns).
      const plugin =
        name === 'zc-fastify' ? (require('../src/frameworks/fastify') as typeof import('@fastify/static')) : (await import('@fastify/static')).default
      await fastify.register(plugin, { root, serve: false })
      fastify.get<{ Params: { name: string } }>('/:name', (req, reply) => reply.sendFile(req.params.name))
      await fastify.listen({ port: 0, host: '127.0.0.1' })
      return (fastify.server.address() as AddressInfo).port
    }
    case 'serve-static':
    case 'serveStatic': {
      const middleware = name === 'serveStatic' ? (await import('../src/static')).serveStatic(root) : (await import('serve-static')).default(root)
      return listen(http.createServer((req, res) => middleware(req, res, () => notFound(res))))
    }
    case 'koa-static':
    case 'zc-koa': {
      const Koa = (await import('koa')).default
      const app = new Koa()
      app.use(name === 'zc-koa' ? (await import('../src/frameworks/koa')).serve(root) : (await import('koa-static')).default(root))
      return listen(http.createServer(app.callback()))
    }
    case 'hono-static':
    case 'zc-hono': {
      const { Hono } = await import('hono')
      const { serve } = await import('@hono/node-server')
      const app = new Hono()
      const serveStatic =
        name === 'zc-hono' ? (await import('../src/frameworks/hono')).serveStatic : (await import('@hono/node-server/serve-static')).serveStatic
      app.use('/*', serveStatic({ root }))
      return new Promise((resolve) => {
        const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port))
        void server
      })
    }
    default:
      throw new Error(
        `unknown server '${name}' (known: ${HTTP_SERVERS.filter((s) => s.name !== 'nginx' && !s.runtime)
          .map((s) => s.name)
          .join(', ')})`,
      )
  }
}

if (require.main === module) {
  const [name, root] = process.argv.slice(2)
  // The harness stops servers with SIGTERM; exiting normally lets `node --cpu-prof` write its profile.
  process.on('SIGTERM', () => process.exit(0))
  start(name, root).then(
    (port) => process.stdout.write(`${JSON.stringify({ port })}\n`),
    (e) => {
      console.error(`http-server ${name}: ${(e as Error).message}`)
      process.exit(1)
    },
  )
}
