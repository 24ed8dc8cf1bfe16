// The `fs` the framework adapters give their private send-like modules (src/frameworks/cached-fs.ts):
// `stat`/`statSync` of a path the descriptor cache holds come from its descriptor; everything
// else is node's own, errors included.
import * as fs from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import test from 'ava'

import { clearFileCache, fileCacheStats } from '../index'
import { openFile, releaseFile } from '../src/file-cache'
import { cachedStatFs } from '../src/frameworks/cached-fs'

const statOf = (f: typeof fs, path: string): Promise<{ err: NodeJS.ErrnoException | null; st?: fs.Stats; sync: boolean }> =>
  new Promise((resolve) => {
    let returned = false
    f.stat(path, (err, st) => resolve({ err, st, sync: !returned }))
    returned = true
  })

test.serial('a cached path is answered from its descriptor, asynchronously; others and errors are node’s', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'zc-cached-fs-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  clearFileCache()
  const path = join(dir, 'a.txt')
  fs.writeFileSync(path, 'hello')
  const f = cachedStatFs()
  // Not cached: node's stat (no cache hit, and no miss: nothing was opened for it).
  const before = fileCacheStats().hits
  const misses = fileCacheStats().misses
  const first = await statOf(f, path)
  t.is(first.st?.size, 5)
  t.is(fileCacheStats().hits, before)
  t.is(fileCacheStats().misses, misses)
  // Cached: the descriptor's fstat, even once the path names another file (within freshMs).
  releaseFile(await openFile(path))
  const cachedIno = fs.statSync(path).ino
  fs.writeFileSync(join(dir, 'b.txt'), 'a longer file')
  fs.renameSync(join(dir, 'b.txt'), path)
  const cached = await statOf(f, path)
  t.false(cached.sync, 'the callback never runs inside the call')
  t.is(cached.st?.ino, cachedIno)
  t.is(cached.st?.size, 5)
  t.is(f.statSync(path).ino, cachedIno)
  t.is(fileCacheStats().hits, before + 2, 'each stat the cache answered is a hit')
  // Paths node resolves on the disk are node's: `.` after a file, `..` after a symlink.
  t.is((await statOf(f, `${path}/.`)).err?.code, 'ENOTDIR')
  fs.mkdirSync(join(dir, 'sub'))
  fs.symlinkSync(join(dir, 'sub'), join(dir, 'link'))
  t.is((await statOf(f, `${dir}/sub/../a.txt`)).st?.size, 13, 'a path with .. is stat-ed by node')
  t.is((await statOf(f, `${dir}/link/../a.txt`)).st?.size, 13)
  // After the cache let go of it: the path's file again.
  clearFileCache()
  t.is((await statOf(f, path)).st?.size, 13)
  // Errors and directories are node's own.
  t.is((await statOf(f, join(dir, 'missing'))).err?.code, 'ENOENT')
  t.throws(() => f.statSync(join(dir, 'missing')), { code: 'ENOENT' })
  releaseFile(await openFile(path))
  t.is((await statOf(f, `${path}/`)).err?.code, 'ENOTDIR', 'a trailing slash is not the cached file')
  t.true((await statOf(f, dir)).st?.isDirectory())
  // Other calls go to node's fs.
  t.is(f.readFileSync(path, 'utf8'), 'a longer file')
  clearFileCache()
})

test('overrides replace their call only', (t) => {
  const f = cachedStatFs({ existsSync: () => false })
  t.false(f.existsSync(tmpdir()))
  t.true(fs.existsSync(tmpdir()))
  t.is(f.lstatSync, fs.lstatSync)
})
