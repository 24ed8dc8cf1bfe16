// A consumer's file, compiled by types.spec.ts under every moduleResolution with
// exactOptionalPropertyTypes (tsconfig.*.json). It must compile as written; each
// `@ts-expect-error` line must be an error.
import type { IncomingMessage, ServerResponse } from 'node:http'

import { isZeroCopyError, probe, respondWithFile, ZeroCopySocket, type ZeroCopyError, type ZeroCopyErrorCode } from 'zerocopy-socket'
import { serveStatic } from 'zerocopy-socket/static'

/** A handler passing a header that may be absent, as users write it. */
export async function handler(req: IncomingMessage, res: ServerResponse, signal?: AbortSignal): Promise<void> {
  try {
    await respondWithFile(res, 'file.bin', {}, { range: req.headers.range, signal, onProgress: undefined })
  } catch (e) {
    if (isZeroCopyError(e, 'ENOENT')) {
      const code: 'ENOENT' = e.code
      void code
    }
    // @ts-expect-error a misspelt code does not compile
    if (isZeroCopyError(e, 'ENOENTT')) return
    if (isZeroCopyError(e)) {
      // Any code Node reports still compiles; our own stay distinct literals (they complete).
      const anyCode: string = e.code
      const ours: Extract<ZeroCopyError['code'], 'ERR_ZC_FILE_SHRANK'> = 'ERR_ZC_FILE_SHRANK'
      void [anyCode, ours]
    }
  }
}

/** Options that may be undefined, under exactOptionalPropertyTypes. */
export async function client(port: number, host: string | undefined, path: string): Promise<void> {
  const zs = await ZeroCopySocket.connect({ port, host, zeroCopy: undefined, threshold: undefined })
  await zs.write(new Uint8Array(8), { signal: undefined })
  await zs.sendFile(path, { offset: undefined, length: undefined })
  await zs.end()
}

export const middleware = serveStatic('public', { maxAge: process.env.MAX_AGE, index: undefined, setHeaders: undefined })

export const codes: ZeroCopyErrorCode[] = ['ERR_ZC_UNSUPPORTED', 'ENOENT']
// @ts-expect-error not a code of ours
export const typo: ZeroCopyErrorCode = 'ERR_ZC_UNSUPORTED'
export const supported: boolean = probe().supported
