// One server of the HTTP benchmark (bench/http.ts), run by Bun, not Node: `bun bun-server.js <root>`
// serves `GET /<name>` from `root` with `Bun.file` (Bun's own file response: it reads files under
// its sendfile threshold and sends the rest with sendfile(2)) and prints {"port":N} once it listens.
const { basename, join } = require('node:path')

const root = process.argv[2]
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(req) {
    return new Response(Bun.file(join(root, basename(decodeURIComponent(new URL(req.url).pathname)))))
  },
})
process.on('SIGTERM', () => process.exit(0))
console.log(JSON.stringify({ port: server.port }))
