'use strict'
// The demo: a real file transfer with the CLI, as a user would run it. Starts
// `zerocopy-socket recv` on a free loopback port, generates a 512 MiB file, sends it with
// `zerocopy-socket send`, and checks that the SHA-256 the receiver computed matches the file's.
const { spawn } = require('node:child_process')
const { createHash, randomBytes } = require('node:crypto')
const { createReadStream, mkdtempSync, openSync, writeSync, closeSync, rmSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')
const { createInterface } = require('node:readline')

const CLI = join(__dirname, '..', 'dist', 'cli', 'zerocopy-socket.js')
const SIZE = 512 * 1024 * 1024

function generate(path) {
  // 1 MiB of random bytes, stamped with its block number so no two blocks are equal.
  const block = randomBytes(1 << 20)
  const fd = openSync(path, 'w')
  for (let i = 0; i < SIZE >> 20; i++) {
    block.writeUInt32LE(i, 0)
    writeSync(fd, block)
  }
  closeSync(fd)
}

function sha256(path) {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256')
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject)
  })
}

function run(args, onLine) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines = []
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line)
      onLine?.(line)
    })
    child.on('close', (code) => resolve({ code, lines }))
  })
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'zerocopy-demo-'))
  try {
    const file = join(dir, 'payload.bin')
    process.stdout.write(`generating a ${SIZE >> 20} MiB file ... `)
    generate(file)
    const expected = await sha256(file)
    console.log(`sha256 ${expected}`)

    let listening
    const port = new Promise((resolve) => (listening = resolve))
    const receiver = run(['recv', '--port', '0', '--quiet'], (line) => {
      const m = /listening on .*:(\d+)$/.exec(line)
      if (m) listening(Number(m[1]))
    })
    const to = `127.0.0.1:${await port}`
    console.log(`\n$ zerocopy-socket recv --port 0        (listening on ${to})`)
    console.log(`$ zerocopy-socket send ${file} --to ${to}\n`)
    const sender = await run(['send', file, '--to', to, '--quiet'])
    const rx = await receiver
    for (const line of sender.lines) console.log(line)
    console.log('\nreceiver:')
    for (const line of rx.lines.filter((l) => !l.startsWith('listening'))) console.log(`  ${line}`)

    const received = rx.lines.map((l) => /^sha256 ([0-9a-f]{64})$/.exec(l)?.[1]).find(Boolean)
    const ok = sender.code === 0 && rx.code === 0 && received === expected
    console.log(`\nSHA-256 of the file:     ${expected}`)
    console.log(`SHA-256 at the receiver: ${received ?? '(none)'}`)
    console.log(ok ? 'MATCH: every byte arrived intact.' : 'MISMATCH or failure: see above.')
    if (!ok) process.exitCode = 1
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e) => {
  console.error(`demo failed: ${e.message}`)
  process.exitCode = 1
})
