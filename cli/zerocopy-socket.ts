#!/usr/bin/env node
/** The `zerocopy-socket` command: send, recv, bench, doctor. */
import { Command, InvalidArgumentError, Option } from 'commander'

import { readFileSync } from 'node:fs'
import { join } from 'node:path'

import { benchOptions, type BenchFlags } from '../bench/options'
import { ROOT } from '../bench/root'
import { doctorReport, formatDoctor } from './doctor'
import { RECV_EXIT_HELP, recv } from './recv'
import { SEND_EXIT_HELP, formatReport, parseTarget, send, type SendMode } from './send'

function port(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('must be an integer from 0 to 65535')
  return n
}

/** One line, no stack trace, for anything a user can cause. */
function fail(e: unknown): never {
  const err = e as { code?: string; message?: string; address?: string; port?: number; path?: string }
  let message = err.message ?? String(e)
  if (err.code === 'ECONNREFUSED') message = `cannot connect to ${err.address}:${err.port}: connection refused`
  else if (err.code === 'ENOENT' && err.path) message = `no such file: ${err.path}`
  else if (err.code === 'EISDIR') message = `is a directory: ${err.path ?? ''}`.trim()
  else if (err.code === 'EADDRINUSE') message = `address in use: ${err.address}:${err.port}`
  process.stderr.write(`zerocopy-socket: ${message}${err.code && !message.includes(err.code) ? ` (${err.code})` : ''}\n`)
  process.exit(1)
}

const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }

const program = new Command('zerocopy-socket')
  .description('io_uring zero-copy TCP file transfer for Node.js')
  .version(version, '-V, --version', 'print the package version')
  // Usage errors too are one line: the hint goes on the error's own line. Subcommands inherit this.
  .configureOutput({ outputError: (text, write) => write(`${text.trimEnd()} (run with --help for usage)\n`) })

program
  .command('recv')
  .description('accept one connection, write it to a file (or discard it), print its SHA-256')
  .requiredOption('-p, --port <port>', 'TCP port to listen on (0 picks a free one)', port)
  .option('-H, --host <host>', 'address to listen on', '127.0.0.1')
  .option('-o, --out <file>', 'where to write the received bytes (default: discard)')
  .option('-q, --quiet', 'no progress bar')
  .addHelpText('after', RECV_EXIT_HELP)
  .action(async (opts: { port: number; host: string; out?: string; quiet?: boolean }) => {
    await recv({ ...opts, quiet: opts.quiet ?? false }).catch(fail)
  })

program
  .command('send')
  .description('send FILE to a receiver, with a progress bar, then report how it went out')
  .argument('<file>', 'the file to send')
  .requiredOption('-t, --to <host:port>', 'the receiver')
  .addOption(
    new Option('-m, --mode <mode>', 'file: sendFile(); auto|always|never: BufferPool writes with that zero-copy policy')
      .choices(['file', 'auto', 'always', 'never'])
      .default('file'),
  )
  .option('-q, --quiet', 'no progress bar')
  .addHelpText('after', SEND_EXIT_HELP)
  .action(async (file: string, opts: { to: string; mode: SendMode; quiet?: boolean }) => {
    try {
      const target = parseTarget(opts.to)
      const report = await send(file, { ...target, mode: opts.mode, quiet: opts.quiet ?? false })
      console.log(formatReport(report, opts.mode))
    } catch (e) {
      fail(e)
    }
  })

program
  .command('doctor')
  .description('explain what this machine allows and what the package will do; exit 0: zero-copy, 2: fallback, 3: no native binding')
  .option('--json', 'print the report as JSON (stable keys, see the README)')
  .action(async (opts: { json?: boolean }) => {
    const report = await doctorReport().catch(fail)
    console.log(opts.json ? JSON.stringify(report, null, 2) : formatDoctor(report))
    process.exitCode = report.exitCode
  })

benchOptions(program.command('bench'))
  .description('loopback throughput of net.Socket, ZeroCopySocket and C senders, side by side (writes docs/ on full runs)')
  .action(async (flags: BenchFlags) => {
    const { runFromFlags } = await import('../bench/harness')
    await runFromFlags(flags).catch(fail)
  })

program.parseAsync().catch(fail)
