/**
 * `zerocopy-socket/fastify`: `@fastify/static` with file bodies sent page-cache-to-socket.
 *
 * `fastify.register(require('zerocopy-socket/fastify'), { root, prefix, ... })` takes
 * @fastify/static's options and decorates `reply.sendFile` / `reply.download` as it does,
 * because it *is* @fastify/static (a peer dependency): its routing, path checks, options,
 * directory listings, pre-compressed files and errors, loaded as a private instance of its
 * module in which `require('@fastify/send')` returns a wrapper. That is the one seam:
 * @fastify/static calls `send(request.raw, path, options)` (@fastify/send's public API, which
 * returns `{ statusCode, headers, stream, type, metadata }` instead of writing) and hands the
 * result to Fastify (`reply.code()`, `reply.headers()`, `reply.send(stream)`). The wrapper
 * asks @fastify/send for a GET's answer as for a HEAD (same status and headers, no file opened)
 * and returns a {@link FileBody} of the same window of the same file as the stream.
 *
 * So everything goes through Fastify's lifecycle: hooks and plugins set headers, `onSend`
 * hooks (and `@fastify/compress`) get the body as a stream, the error handler gets errors, and
 * `onResponse` sees the real status. Only when Fastify itself pipes the body into the raw
 * response on a kernel TCP socket does it go through `respondWithFile`; under
 * `fastify.inject()`, TLS, trailers or a body transform it is streamed, and the body's
 * `result.fallbackReason` says why.
 *
 * A result the wrapper does not recognise (another @fastify/send) is re-asked as the real GET,
 * and the plugin behaves exactly as @fastify/static.
 * @module
 */
import { loadFastifyStatic, type FastifyStatic } from './fastify-send'

/** The plugin: `fastify.register(require('zerocopy-socket/fastify'), { root, ... })`, with @fastify/static's options. */
const fastifyStatic: FastifyStatic = loadFastifyStatic()

export = fastifyStatic
