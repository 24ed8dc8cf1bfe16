/**
 * Bad input, across the whole public API, in one table: every call throws synchronously a
 * `TypeError` or `RangeError` with its Node-style `code`, and nothing reaches the peer.
 */
import dgram from 'node:dgram'
import http from 'node:http'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

import test from 'ava'

import { BufferPool, ZeroCopySocket, respondWithFile, sendZcSync, serveStatic } from '../index'
import { collect, fdOf, loopbackPair } from './helpers'

type Case = [what: string, call: () => unknown, code: string, type: ErrorConstructor]

test('wrong types, NaN, negative, huge or missing arguments throw coded errors synchronously and send nothing', async (t) => {
  const { client, server, close } = await loopbackPair()
  t.teardown(close)
  const received = collect(server)
  const zs = ZeroCopySocket.from(client)
  const fd = fdOf(client)
  const self = fileURLToPath(import.meta.url)
  const udp = dgram.createSocket('udp4')
  t.teardown(() => udp.close())
  const res = new http.ServerResponse(new http.IncomingMessage(new net.Socket()))
  const x = Buffer.from('x')
  const cases: Case[] = [
    ...[undefined, null, 1, 'x', {}, [1], new ArrayBuffer(1), new DataView(new ArrayBuffer(1))].map((v): Case => [
      `write(${String(v)})`,
      () => zs.write(v as Uint8Array),
      'ERR_INVALID_ARG_TYPE',
      TypeError,
    ]),
    ['write(x, 1)', () => zs.write(x, 1 as unknown as object), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['write(x, { signal: "no" })', () => zs.write(x, { signal: 'no' as unknown as AbortSignal }), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['createWriteStream({ highWaterMark: -1 })', () => zs.createWriteStream({ highWaterMark: -1 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['createWriteStream({ highWaterMark: NaN })', () => zs.createWriteStream({ highWaterMark: Number.NaN }), 'ERR_OUT_OF_RANGE', RangeError],
    ['createWriteStream({ highWaterMark: "1" })', () => zs.createWriteStream({ highWaterMark: '1' as unknown as number }), 'ERR_INVALID_ARG_TYPE', TypeError],
    ...[-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 60].map((v): Case => [
      `sendFile(path, { offset: ${v} })`,
      () => zs.sendFile(self, { offset: v }),
      'ERR_OUT_OF_RANGE',
      RangeError,
    ]),
    ['sendFile(path, { length: 1.5 })', () => zs.sendFile(self, { length: 1.5 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['sendFile(path, { length: "10" })', () => zs.sendFile(self, { length: '10' as unknown as number }), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['sendFile(undefined)', () => zs.sendFile(undefined as unknown as string), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['sendFile({})', () => zs.sendFile({} as unknown as string), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['sendFile("")', () => zs.sendFile(''), 'ERR_INVALID_ARG_VALUE', TypeError],
    ['sendFile("a\\0b")', () => zs.sendFile('a\0b'), 'ERR_INVALID_ARG_VALUE', TypeError],
    ['sendFile(-1)', () => zs.sendFile(-1), 'ERR_OUT_OF_RANGE', RangeError],
    ['sendFile(path, { onProgress: 1 })', () => zs.sendFile(self, { onProgress: 1 as unknown as () => void }), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['from(client, { threshold: -5 })', () => ZeroCopySocket.from(client, { threshold: -5 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['from(client, { threshold: 2 ** 40 })', () => ZeroCopySocket.from(client, { threshold: 2 ** 40 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['from(client, { zeroCopyChunk: 10 })', () => ZeroCopySocket.from(client, { zeroCopyChunk: 10 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['from(client, { zeroCopy: 1 })', () => ZeroCopySocket.from(client, { zeroCopy: 1 as unknown as 'auto' }), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['from(undefined)', () => ZeroCopySocket.from(undefined as unknown as net.Socket), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['from(udp)', () => ZeroCopySocket.from(udp as unknown as net.Socket), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['connect(undefined)', () => ZeroCopySocket.connect(undefined as unknown as { port: number }), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['connect({ port: 70000 })', () => ZeroCopySocket.connect({ port: 70000 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['connect({ port: NaN })', () => ZeroCopySocket.connect({ port: Number.NaN }), 'ERR_OUT_OF_RANGE', RangeError],
    ['connect({ port: 80, host: 5 })', () => ZeroCopySocket.connect({ port: 80, host: 5 as unknown as string }), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['sendZcSync("3", x)', () => sendZcSync('3' as unknown as number, x), 'ERR_INVALID_ARG_TYPE', TypeError],
    ...[1.5, -1, Number.NaN].map((f): Case => [`sendZcSync(${f}, x)`, () => sendZcSync(f, x), 'ERR_OUT_OF_RANGE', RangeError]),
    ...['a string', [1, 2, 3], undefined, new ArrayBuffer(4)].map((d): Case => [
      `sendZcSync(fd, ${String(d)})`,
      () => sendZcSync(fd, d as unknown as Uint8Array),
      'ERR_INVALID_ARG_TYPE',
      TypeError,
    ]),
    ['sendZcSync(fd, empty)', () => sendZcSync(fd, Buffer.alloc(0)), 'ERR_INVALID_ARG_VALUE', TypeError],
    ['new BufferPool({ size: 0 })', () => new BufferPool({ size: 0 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['new BufferPool({ count: 1.5 })', () => new BufferPool({ count: 1.5 }), 'ERR_OUT_OF_RANGE', RangeError],
    ['respondWithFile({}, path)', () => respondWithFile({} as http.ServerResponse, self), 'ERR_INVALID_ARG_TYPE', TypeError],
    ['respondWithFile(res, 1.5)', () => respondWithFile(res, 1.5), 'ERR_OUT_OF_RANGE', RangeError],
    ['respondWithFile(res, path, 1)', () => respondWithFile(res, self, 1 as unknown as http.OutgoingHttpHeaders), 'ERR_INVALID_ARG_TYPE', TypeError],
    [
      'respondWithFile(res, path, {}, { range: 1 })',
      () => respondWithFile(res, self, {}, { range: 1 as unknown as string }),
      'ERR_INVALID_ARG_TYPE',
      TypeError,
    ],
    [
      'respondWithFile(res, path, {}, { statCheck: 1 })',
      () => respondWithFile(res, self, {}, { statCheck: 1 as unknown as () => void }),
      'ERR_INVALID_ARG_TYPE',
      TypeError,
    ],
    ['respondWithFile(res, path, {}, { offset: -1 })', () => respondWithFile(res, self, {}, { offset: -1 }), 'ERR_OUT_OF_RANGE', RangeError],
  ]
  for (const [what, call, code, type] of cases) t.throws(call, { code, instanceOf: type }, what)
  t.throws(() => serveStatic(''), { instanceOf: TypeError, message: /root path required/ }, 'serveStatic("")')
  t.throws(() => serveStatic(5 as unknown as string), { instanceOf: TypeError, message: /root path must be a string/ }, 'serveStatic(5)')
  t.false(res.headersSent, 'respondWithFile left the response untouched')
  await zs.end()
  t.is((await received).length, 0, 'nothing reached the peer')
})
