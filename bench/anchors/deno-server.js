// One server of the HTTP benchmark (bench/http.ts), run by Deno, not Node:
// `deno run --allow-net=127.0.0.1 --allow-read=<root> deno-server.js <root>` serves `GET /<name>`
// from `root` as Deno's manual recommends without std: `Deno.open` and the file's `readable`,
// `Content-Length` from its stat, and prints {"port":N} once it listens.
const root = Deno.args[0]

Deno.addSignalListener('SIGTERM', () => Deno.exit(0))
Deno.serve(
  { hostname: '127.0.0.1', port: 0, onListen: ({ port }) => console.log(JSON.stringify({ port })) },
  async (req) => {
    const name = decodeURIComponent(new URL(req.url).pathname).split('/').pop()
    try {
      const file = await Deno.open(`${root}/${name}`, { read: true })
      const { size } = await file.stat()
      return new Response(file.readable, { headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) } })
    } catch {
      return new Response(null, { status: 404 })
    }
  },
)
