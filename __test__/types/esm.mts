// The same package from an ES module (node16/nodenext resolve it through the "import" side of
// "exports").
import { isZeroCopyError, respondWithFile } from 'zerocopy-socket'
import { serveStatic } from 'zerocopy-socket/static'

export const used = [isZeroCopyError, respondWithFile, serveStatic]
