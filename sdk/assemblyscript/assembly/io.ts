// Host I/O of the MDSA AssemblyScript SDK on the raw Extism kernel ABI
// (imported through @extism/as-pdk's declarations). Bytes move 8 at a time
// with the *_u64 calls; a final partial word is handled by overlapping the
// last full word, so a copy of n >= 8 bytes costs ceil(n/8) host calls.

import {
  alloc,
  error_set,
  free,
  input_length,
  input_load_u64,
  input_load_u8,
  length,
  load_u64,
  load_u8,
  output_set,
  store_u64,
  store_u8,
} from "../node_modules/@extism/as-pdk/lib/env";

// MDSA host functions (sdk/ABI.md section 5). Imported only when used.
@external("extism:host/user", "mdsa_generate")
declare function mdsa_generate(offset: u64): u64;

@external("extism:host/user", "mdsa_count_tokens")
declare function mdsa_count_tokens(offset: u64): u64;

@external("extism:host/user", "mdsa_embed")
declare function mdsa_embed(offset: u64): u64;

/** Indexes of the MDSA host functions for hostCall. */
export const HOST_GENERATE: i32 = 0;
export const HOST_COUNT_TOKENS: i32 = 1;
export const HOST_EMBED: i32 = 2;

// WASI stderr, used only by abort so that the host can show why a plugin
// trapped.
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: u32, written: usize): u16;

/** The export's input (the JSON the host passed). */
export function readInput(): Uint8Array {
  const n = <i32>input_length();
  const buf = new Uint8Array(n);
  const p = buf.dataStart;
  if (n < 8) {
    for (let i = 0; i < n; i++) store<u8>(p + <usize>i, input_load_u8(<u64>i));
    return buf;
  }
  let i = 0;
  for (; i + 8 <= n; i += 8) store<u64>(p + <usize>i, input_load_u64(<u64>i));
  if (i < n) store<u64>(p + <usize>(n - 8), input_load_u64(<u64>(n - 8)));
  return buf;
}

/**
 * Copies n bytes at p into a new Extism block and returns its offset, or 0
 * when the kernel cannot allocate it (its memory is capped too).
 */
export function storeBlock(p: usize, n: i32): u64 {
  const off = alloc(<u64>n);
  if (off == 0) return 0;
  if (n < 8) {
    for (let i = 0; i < n; i++) store_u8(off + <u64>i, load<u8>(p + <usize>i));
    return off;
  }
  let i = 0;
  for (; i + 8 <= n; i += 8) store_u64(off + <u64>i, load<u64>(p + <usize>i));
  if (i < n) store_u64(off + <u64>(n - 8), load<u64>(p + <usize>(n - 8)));
  return off;
}

/** Reads the Extism block at off. */
export function loadBlock(off: u64): Uint8Array {
  const n = <i32>length(off);
  const buf = new Uint8Array(n);
  const p = buf.dataStart;
  if (n < 8) {
    for (let i = 0; i < n; i++) store<u8>(p + <usize>i, load_u8(off + <u64>i));
    return buf;
  }
  let i = 0;
  for (; i + 8 <= n; i += 8) store<u64>(p + <usize>i, load_u64(off + <u64>i));
  if (i < n) store<u64>(p + <usize>(n - 8), load_u64(off + <u64>(n - 8)));
  return buf;
}

/**
 * Sets the export's output to bytes. When the host's memory cannot hold
 * them it sets the export's error instead and returns false.
 */
export function setOutput(exportName: string, bytes: Uint8Array): bool {
  const off = storeBlock(bytes.dataStart, bytes.length);
  if (off == 0 && bytes.length > 0) {
    setError(exportName + ": the output does not fit in the host's memory");
    return false;
  }
  output_set(off, <u64>bytes.length);
  return true;
}

/** Sets the export's error message. */
export function setError(msg: string): void {
  const b = String.UTF8.encode(msg, false, String.UTF8.ErrorMode.REPLACE);
  const off = storeBlock(changetype<usize>(b), b.byteLength);
  if (off != 0) error_set(off);
}

/**
 * Calls a host function (by its index: HOST_GENERATE, HOST_COUNT_TOKENS or
 * HOST_EMBED) with a JSON request and returns the JSON reply (empty when
 * the host returned no block).
 */
export function hostCall(fn: i32, request: Uint8Array): Uint8Array {
  const req = storeBlock(request.dataStart, request.length);
  if (req == 0) {
    return Uint8Array.wrap(
      String.UTF8.encode('{"error":{"code":"out_of_memory","message":"the request does not fit in the host\'s memory"}}'),
    );
  }
  let rep: u64;
  if (fn == HOST_GENERATE) rep = mdsa_generate(req);
  else if (fn == HOST_EMBED) rep = mdsa_embed(req);
  else rep = mdsa_count_tokens(req);
  free(req);
  const out = rep == 0 ? new Uint8Array(0) : loadBlock(rep);
  if (rep != 0) free(rep);
  return out;
}

// Scratch space for abort: it may run when the heap is exhausted.
const ABORT_BUF: usize = memory.data(520);
const ABORT_MAX: i32 = 500;

function abortPut(at: i32, s: string | null): i32 {
  if (s === null) return at;
  for (let i = 0; i < s.length && at < ABORT_MAX; i++) {
    const c = s.charCodeAt(i);
    store<u8>(ABORT_BUF + 16 + <usize>at, c >= 0x20 && c < 0x7f ? <u8>c : 0x3f);
    at++;
  }
  return at;
}

function abortNum(at: i32, n: u32): i32 {
  let div: u32 = 1000000000;
  let started = false;
  while (div > 0 && at < ABORT_MAX) {
    const d = (n / div) % 10;
    if (d != 0 || started || div == 1) {
      store<u8>(ABORT_BUF + 16 + <usize>at, <u8>(0x30 + d));
      at++;
      started = true;
    }
    div /= 10;
  }
  return at;
}

/**
 * The AssemblyScript abort handler of MDSA plugins (build with
 * --use abort=<path to this file>/mdsaAbort). It writes "plugin aborted:
 * MESSAGE at FILE:LINE:COLUMN" to stderr and as the export's error, then
 * traps; the host reports the trap and discards the instance.
 */
export function mdsaAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let n = abortPut(0, "plugin aborted: ");
  n = abortPut(n, message === null ? "abort" : message);
  if (fileName !== null) {
    n = abortPut(n, " at ");
    n = abortPut(n, fileName);
    n = abortPut(n, ":");
    n = abortNum(n, line);
    n = abortPut(n, ":");
    n = abortNum(n, column);
  }
  const text = ABORT_BUF + 16;
  store<u8>(text + <usize>n, 0x0a);
  // iovec {buf, len} at ABORT_BUF, bytes written at ABORT_BUF + 8.
  store<u32>(ABORT_BUF, <u32>text);
  store<u32>(ABORT_BUF + 4, <u32>(n + 1));
  fd_write(2, ABORT_BUF, 1, ABORT_BUF + 8);
  const off = storeBlock(text, n);
  if (off != 0) error_set(off);
  unreachable();
}
