// Receiving a peer's bundle (tar.gz) straight into a folder of the agent's work root, as a stream: the compressed
// bytes are metered against the declared length and the cap and hashed (sha256 checked at the end), gunzipped
// with a cap on the unpacked bytes, and parsed by the `tar` package's Parser, whose per-entry filter admits
// regular files and folders only, at plain relative paths, within an entry cap and a byte cap. Admitted entries
// are written by us, never through a link (O_NOFOLLOW | O_EXCL, in folders we made). The first refusal stops the
// stream; the caller deletes the folder. memberProblem is pure and unit-tested in extract.test.ts.

import { createHash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { checkRootfsDiffStream, readThrough } from '../engine/index.ts';
import { HttpError } from './errors.ts';

/** Most members (files and folders) a received bundle may hold (a dump's image set: ~10-30 files per process). */
export const BUNDLE_MAX_ENTRIES = 20_000;
/** Most bytes a received bundle may unpack to (tar stream, headers included). */
export const BUNDLE_MAX_UNPACKED_BYTES = 1024 * 1024 * 1024;
/** Deepest member path (folders) in a bundle. */
export const BUNDLE_MAX_DEPTH = 16;

export interface ExtractLimits {
  /** Most members; more are refused. */
  maxEntries: number;
  /** Most unpacked bytes (file contents, and the whole tar stream); more are refused. */
  maxUnpackedBytes: number;
}

/** A bundle refused for what it holds: the HTTP answer is 400 BundleRefused with the reason and a hint. */
export class BundleRefused extends HttpError {
  override name = 'BundleRefused';
  readonly hint: string;
  constructor(problem: string, hint: string) {
    super(400, 'BundleRefused', `bundle refused: ${problem} (${hint})`);
    this.hint = hint;
  }
}

const NOT_FROM_MIGPROBE = 'a migprobe source agent ships only regular files and folders; this bundle was not made by one';

/** What a tar member looks like to memberProblem. */
export interface MemberHeader {
  path: string;
  type: string;
  size: number;
}

const TYPE_NAMES: Record<string, string> = {
  SymbolicLink: 'a symbolic link',
  Link: 'a hard link',
  CharacterDevice: 'a character device node',
  BlockDevice: 'a block device node',
  FIFO: 'a FIFO',
};

/**
 * The member's path relative to the extraction folder ('' for the folder itself), or why it is refused.
 * `seen` is what was admitted before it. Pure.
 */
export function memberProblem(m: MemberHeader, seen: { entries: number; bytes: number }, limits: ExtractLimits): { path: string } | { problem: string; hint: string } {
  const raw = m.path;
  if (m.type !== 'File' && m.type !== 'OldFile' && m.type !== 'Directory') {
    return { problem: `member ${JSON.stringify(raw.slice(0, 200))} is ${TYPE_NAMES[m.type] ?? `of type ${m.type}`}`, hint: NOT_FROM_MIGPROBE };
  }
  if (raw.startsWith('/')) return { problem: `member ${JSON.stringify(raw.slice(0, 200))} has an absolute path`, hint: NOT_FROM_MIGPROBE };
  if (/[\0\n\\]/.test(raw)) return { problem: `member ${JSON.stringify(raw.slice(0, 200))} has a NUL, newline or backslash in its path`, hint: NOT_FROM_MIGPROBE };
  const parts = raw.split('/').filter((p, i, all) => !(p === '.' && i === 0) && !(p === '' && i === all.length - 1));
  if (parts.includes('..')) return { problem: `member ${JSON.stringify(raw.slice(0, 200))} has a '..' in its path`, hint: NOT_FROM_MIGPROBE };
  if (parts.some((p) => p === '' || p === '.')) return { problem: `member ${JSON.stringify(raw.slice(0, 200))} has an empty or '.' part in its path`, hint: NOT_FROM_MIGPROBE };
  if (parts.length > BUNDLE_MAX_DEPTH) return { problem: `member ${JSON.stringify(raw.slice(0, 200))} is ${parts.length} folders deep, more than ${BUNDLE_MAX_DEPTH}`, hint: NOT_FROM_MIGPROBE };
  if (m.type !== 'Directory' && parts.length === 0) return { problem: 'a file member has no name', hint: NOT_FROM_MIGPROBE };
  if (seen.entries + 1 > limits.maxEntries) {
    return { problem: `the bundle holds more than ${limits.maxEntries} members`, hint: 'raise migprobe-agent --max-bundle-entries on the target node if such image sets are expected' };
  }
  if (!Number.isSafeInteger(m.size) || m.size < 0 || seen.bytes + m.size > limits.maxUnpackedBytes) {
    return {
      problem: `member ${JSON.stringify(raw.slice(0, 200))} of ${m.size} bytes takes the bundle past ${limits.maxUnpackedBytes} unpacked bytes`,
      hint: 'raise migprobe-agent --max-unpacked-bytes on the target node if such image sets are expected',
    };
  }
  return { path: posix.join(...(parts.length === 0 ? ['.'] : parts)) };
}

/** Writes admitted tar members below `dest` (a folder we created and nobody else writes to). */
class BundleSink extends Writable {
  private readonly parser: Parser;
  private readonly dest: string;
  private readonly limits: ExtractLimits;
  private refusal: Error | undefined;
  private readonly pending = new Set<Promise<void>>();
  /** Aborted when the sink is destroyed: a file being written stops at once (its entry will get no more data). */
  private readonly stop = new AbortController();
  /** Entries the filter admitted -> their checked relative path. */
  private readonly admitted = new Map<ReadEntry, string>();
  readonly seen = { entries: 0, bytes: 0 };
  private written = 0;

  constructor(dest: string, limits: ExtractLimits) {
    super();
    this.dest = dest;
    this.limits = limits;
    // maxDecompressionRatio 1: the stream is already gunzipped here; a member that is itself compressed data the
    // Parser would inflate (a nested bomb) is stopped at once.
    this.parser = new Parser({ strict: true, maxDecompressionRatio: 1, filter: (_p, e) => this.admit(e as ReadEntry), onReadEntry: (e) => this.onEntry(e) });
    this.parser.on('error', (e: Error) => this.fail(e));
  }

  private fail(e: Error): void {
    this.refusal ??= e instanceof HttpError ? e : new BundleRefused(`the archive is not a valid tar: ${e.message.slice(0, 300)}`, NOT_FROM_MIGPROBE);
  }

  private admit(e: ReadEntry): boolean {
    if (this.refusal !== undefined) return false;
    const r = memberProblem({ path: e.path, type: e.type, size: e.size }, this.seen, this.limits);
    if ('problem' in r) {
      this.refusal = new BundleRefused(r.problem, r.hint);
      return false;
    }
    this.seen.entries++;
    this.seen.bytes += e.size;
    this.admitted.set(e, r.path);
    return true;
  }

  private onEntry(e: ReadEntry): void {
    const rel = this.admitted.get(e);
    this.admitted.delete(e);
    if (rel === undefined || this.refusal !== undefined) {
      e.resume();
      return;
    }
    const target = join(this.dest, rel);
    const job = (async (): Promise<void> => {
      if (e.type === 'Directory') {
        e.resume();
        await mkdir(target, { recursive: true, mode: 0o700 });
        return;
      }
      await mkdir(join(target, '..'), { recursive: true, mode: 0o700 });
      const fh = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      const out = fh.createWriteStream();
      const cap = this.limits.maxUnpackedBytes;
      const meter = new Transform({
        transform: (chunk: Buffer, _enc, cb) => {
          this.written += chunk.length;
          if (this.written > cap) cb(new BundleRefused(`the bundle unpacks to more than ${cap} bytes`, 'raise migprobe-agent --max-unpacked-bytes on the target node if such image sets are expected'));
          else cb(null, chunk);
        },
      });
      await pipeline(e as unknown as Readable, meter, out, { signal: this.stop.signal });
    })().catch((err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') this.fail(new BundleRefused(`member ${JSON.stringify(rel)} appears twice or collides with a folder`, NOT_FROM_MIGPROBE));
      else this.fail(err as Error);
      e.resume();
    });
    this.pending.add(job);
    void job.finally(() => this.pending.delete(job));
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.refusal !== undefined) {
      cb(this.refusal);
      return;
    }
    const more = this.parser.write(chunk);
    if (this.refusal !== undefined) cb(this.refusal);
    else if (more) cb();
    else this.parser.once('drain', () => cb(this.refusal ?? null));
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (this.refusal !== undefined) {
      cb(this.refusal);
      return;
    }
    this.parser.once('end', () => {
      void this.settle().then(() => cb(this.refusal ?? null));
    });
    this.parser.end();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.refusal ??= err ?? undefined;
    this.stop.abort();
    this.parser.abort(this.refusal ?? new Error('stopped'));
    void this.settle().then(() => cb(err));
  }

  /** Waits until no file of ours is still being written (so that deleting the folder deletes everything). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}

export interface ReceiveOptions {
  /** The Content-Length the peer declared; more or fewer bytes are refused. */
  declaredBytes: number;
  /** Compressed bytes accepted at most. */
  maxBundleBytes: number;
  /** sha256 (hex) the peer declared for the compressed stream. */
  sha256: string;
  limits: ExtractLimits;
  timeoutMs: number;
}

/**
 * Streams a gzipped tar from `body` into `dest` (which must exist, be empty and be ours). Resolves the compressed
 * byte count and what was unpacked; throws HttpError (BundleRefused for what the bundle holds, 413 for its size,
 * TransferFailed for a broken or altered transfer). On a throw, `dest` may hold part of the bundle: delete it.
 */
export async function receiveBundle(body: Readable, dest: string, o: ReceiveOptions): Promise<{ received: number; entries: number; unpackedBytes: number }> {
  const hash = createHash('sha256');
  let received = 0;
  const compressedCap = Math.min(o.maxBundleBytes, o.declaredBytes);
  const inMeter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      if (received > compressedCap) {
        cb(new HttpError(413, 'ImageTooLarge', `image set exceeds ${compressedCap} bytes`));
        return;
      }
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  let unpacked = 0;
  const cap = o.limits.maxUnpackedBytes;
  const outMeter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      unpacked += chunk.length;
      // The tar stream holds headers and padding beside the contents: allow one 512-byte header per member, plus the end blocks.
      if (unpacked > cap + (o.limits.maxEntries + 4) * 1024) {
        cb(new BundleRefused(`the bundle unpacks to more than ${cap} bytes`, 'raise migprobe-agent --max-unpacked-bytes on the target node if such image sets are expected'));
        return;
      }
      cb(null, chunk);
    },
  });
  const sink = new BundleSink(dest, o.limits);
  try {
    await pipeline(body, inMeter, createGunzip(), outMeter, sink, { signal: AbortSignal.timeout(o.timeoutMs) });
  } catch (e) {
    await sink.settle();
    if (e instanceof HttpError) throw e;
    if ((e as Error).name === 'AbortError' || (e as Error).name === 'TimeoutError') {
      throw new HttpError(400, 'TransferFailed', `receiving the image set did not finish within ${o.timeoutMs} ms`);
    }
    if ((e as NodeJS.ErrnoException).code?.startsWith('Z_') === true) {
      throw new BundleRefused(`the body is not valid gzip: ${(e as Error).message}`, NOT_FROM_MIGPROBE);
    }
    throw new HttpError(400, 'TransferFailed', `receiving the image set failed: ${(e as Error).message}`.slice(0, 1024));
  }
  const got = hash.digest('hex');
  if (received !== o.declaredBytes || got !== o.sha256) {
    throw new HttpError(400, 'TransferFailed', `image set corrupted in transit (${received} of ${o.declaredBytes} bytes, sha256 ${got}, expected ${o.sha256})`);
  }
  return { received, entries: sink.seen.entries, unpackedBytes: unpacked };
}

/**
 * A received checkpoint archive (RestoreOnly), read before the engine unpacks it with GNU tar: regular files and
 * folders only, at plain relative paths, within `limits` (memberProblem), and its rootfs-diff.tar as a writable
 * layer may be (checkRootfsDiffStream). gzip and zstd archives are read through; throws BundleRefused.
 */
export async function checkCheckpointArchive(archive: string, name: string, limits: ExtractLimits): Promise<void> {
  const seen = { entries: 0, bytes: 0 };
  let refusal: BundleRefused | undefined;
  const inner: Promise<void>[] = [];
  const parser = new Parser({
    strict: true,
    onReadEntry: (e: ReadEntry) => {
      if (refusal !== undefined) {
        e.resume();
        return;
      }
      const r = memberProblem({ path: e.path, type: e.type, size: e.size }, seen, limits);
      if ('problem' in r) {
        refusal = new BundleRefused(`checkpoint archive ${name}: ${r.problem}`, r.hint);
        e.resume();
        parser.abort(refusal);
        return;
      }
      seen.entries++;
      seen.bytes += e.size;
      if (r.path === 'rootfs-diff.tar') {
        inner.push(
          checkRootfsDiffStream(e as unknown as NodeJS.ReadableStream, `${name}: rootfs-diff.tar`).catch((err: unknown) => {
            refusal ??= new BundleRefused((err as Error).message, NOT_FROM_MIGPROBE);
            e.resume();
          }),
        );
      } else {
        e.resume();
      }
    },
  });
  const rs = createReadStream(archive);
  try {
    await readThrough(rs, parser);
  } catch (e) {
    if (refusal === undefined) throw new BundleRefused(`checkpoint archive ${name} is not a tar (gzip or zstd compressed, or plain): ${(e as Error).message.slice(0, 300)}`, 'give a checkpoint archive as the kubelet, CRI-O or Podman write it');
  } finally {
    rs.destroy();
  }
  await Promise.all(inner);
  if (refusal !== undefined) throw refusal;
}
