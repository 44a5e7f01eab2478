// JSON for the MDSA AssemblyScript SDK: a strict parser of UTF-8 JSON bytes
// into a small document tree (JValue), and a writer that produces valid,
// correctly escaped UTF-8 JSON from AssemblyScript (UTF-16) strings.
//
// @extism/as-pdk ships no JSON library, so this file is self-contained.

/** Kinds of JSON values. */
export enum JKind {
  Null,
  Bool,
  Number,
  String,
  Array,
  Object,
}

/** One parsed JSON value. Only the fields of its kind are meaningful. */
export class JValue {
  kind: JKind = JKind.Null;
  bool: bool = false;
  num: f64 = 0;
  str: string = "";
  items: JValue[] = [];
  keys: string[] = [];

  constructor(kind: JKind) {
    this.kind = kind;
  }

  /** The member named key of an object (the last one when repeated), or null. */
  get(key: string): JValue | null {
    if (this.kind != JKind.Object) return null;
    for (let i = this.keys.length - 1; i >= 0; i--) {
      if (unchecked(this.keys[i]) == key) return unchecked(this.items[i]);
    }
    return null;
  }

  /** The string member key, or def when absent or not a string. */
  getString(key: string, def: string = ""): string {
    const v = this.get(key);
    if (v === null || v.kind != JKind.String) return def;
    return v.str;
  }

  /** The number member key, or def when absent or not a number. */
  getNumber(key: string, def: f64 = NaN): f64 {
    const v = this.get(key);
    if (v === null || v.kind != JKind.Number) return def;
    return v.num;
  }

  /** The number member key as an integer, or def when absent or not a number. */
  getInt(key: string, def: i64 = 0): i64 {
    const v = this.get(key);
    if (v === null || v.kind != JKind.Number) return def;
    const n = v.num;
    if (!isFinite(n) || n > 9.0e15 || n < -9.0e15) return def;
    return <i64>n;
  }
}

/** The outcome of parseJSON: a value, or an error message. */
export class ParseResult {
  value: JValue | null = null;
  error: string = "";
}

// Nesting deeper than this is refused (it also bounds the recursion).
const MAX_DEPTH = 128;

// Word-at-a-time (SWAR) tests. Loops that step one byte at a time pay the
// sandbox's termination check per byte, so scans take 8 bytes (or 4 UTF-16
// units) per iteration where they can.
const ONES: u64 = 0x0101010101010101;
const HIGHS: u64 = 0x8080808080808080;

// Whether a byte of x needs attention in a JSON string: '"', '\\', a
// control character or a non-ASCII byte.
@inline
function jsonSpecial8(x: u64): bool {
  const q = x ^ (ONES * 0x22);
  const b = x ^ (ONES * 0x5c);
  return ((x & HIGHS) | ((q - ONES) & ~q & HIGHS) | ((b - ONES) & ~b & HIGHS) | ((x - ONES * 0x20) & ~x & HIGHS)) != 0;
}

const ONES16: u64 = 0x0001000100010001;
const HIGHS16: u64 = 0x8000800080008000;

// Whether one of the 4 UTF-16 units in x is not printable ASCII, or is '"'
// or '\\'.
@inline
function jsonSpecial16(x: u64): bool {
  if ((x & 0xff80ff80ff80ff80) != 0) return true;
  const q = x ^ (ONES16 * 0x22);
  const b = x ^ (ONES16 * 0x5c);
  return (((q - ONES16) & ~q & HIGHS16) | ((b - ONES16) & ~b & HIGHS16) | ((x - ONES16 * 0x20) & ~x & HIGHS16)) != 0;
}

// Writes the n ASCII bytes at src as UTF-16 units at dst, 4 per iteration.
function widenASCII(dst: usize, src: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const x = <u64>load<u32>(src + <usize>i);
    store<u64>(
      dst + (<usize>i << 1),
      (x & 0xff) | ((x & 0xff00) << 8) | ((x & 0xff0000) << 16) | ((x & 0xff000000) << 24),
    );
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), load<u8>(src + <usize>i));
}

// A string of the n ASCII bytes at src.
function asciiString(src: usize, n: i32): string {
  const out = changetype<string>(__new(<usize>n << 1, idof<string>()));
  widenASCII(changetype<usize>(out), src, n);
  return out;
}

/**
 * Parses exactly one JSON value (surrounding white space allowed) from
 * data. Strings must be valid JSON strings; invalid UTF-8 and unpaired
 * surrogate escapes become U+FFFD, as with Go's encoding/json. Errors name
 * the byte offset.
 */
export function parseJSON(data: Uint8Array): ParseResult {
  const p = new Parser(data);
  const res = new ParseResult();
  p.skipSpace();
  const v = p.value(0);
  if (v !== null) {
    p.skipSpace();
    if (p.pos < p.len) {
      p.fail("unexpected data after the JSON value");
    } else {
      res.value = v;
      return res;
    }
  }
  res.error = p.err;
  return res;
}

class Parser {
  data: Uint8Array;
  base: usize;
  pos: i32 = 0;
  len: i32;
  err: string = "";
  // Scratch UTF-16 buffer for strings with escapes or non-ASCII text.
  buf: Uint16Array = new Uint16Array(64);

  constructor(data: Uint8Array) {
    this.data = data;
    this.base = data.dataStart;
    this.len = data.length;
  }

  fail(msg: string): void {
    if (this.err.length == 0) {
      this.err = msg + " at byte " + this.pos.toString();
    }
  }

  failV(msg: string): JValue | null {
    this.fail(msg);
    return null;
  }

  failS(msg: string): string | null {
    this.fail(msg);
    return null;
  }

  @inline
  byteAt(i: i32): u32 {
    return <u32>load<u8>(this.base + <usize>i);
  }

  skipSpace(): void {
    let i = this.pos;
    while (i < this.len) {
      const c = this.byteAt(i);
      if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
      i++;
    }
    this.pos = i;
  }

  unexpected(): JValue | null {
    if (this.pos >= this.len) return this.failV("unexpected end of JSON input");
    const c = this.byteAt(this.pos);
    if (c >= 0x20 && c < 0x7f) {
      return this.failV("unexpected character '" + String.fromCharCode(c) + "'");
    }
    return this.failV("unexpected byte 0x" + c.toString(16));
  }

  value(depth: i32): JValue | null {
    if (depth > MAX_DEPTH) return this.failV("JSON nested too deeply");
    if (this.pos >= this.len) return this.failV("unexpected end of JSON input");
    const c = this.byteAt(this.pos);
    if (c == 0x7b) return this.object(depth);
    if (c == 0x5b) return this.array(depth);
    if (c == 0x22) {
      const s = this.string();
      if (s === null) return null;
      const v = new JValue(JKind.String);
      v.str = s;
      return v;
    }
    if (c == 0x74) return this.literal("true", JKind.Bool, true);
    if (c == 0x66) return this.literal("false", JKind.Bool, false);
    if (c == 0x6e) return this.literal("null", JKind.Null, false);
    if (c == 0x2d || (c >= 0x30 && c <= 0x39)) return this.number();
    return this.unexpected();
  }

  literal(word: string, kind: JKind, b: bool): JValue | null {
    const n = word.length;
    if (this.pos + n > this.len) {
      this.pos = this.len;
      return this.failV("unexpected end of JSON input");
    }
    for (let i = 0; i < n; i++) {
      if (this.byteAt(this.pos + i) != <u32>word.charCodeAt(i)) {
        this.pos += i;
        return this.failV("invalid literal");
      }
    }
    this.pos += n;
    const v = new JValue(kind);
    v.bool = b;
    return v;
  }

  digits(): i32 {
    let n = 0;
    while (this.pos < this.len) {
      const c = this.byteAt(this.pos);
      if (c < 0x30 || c > 0x39) break;
      this.pos++;
      n++;
    }
    return n;
  }

  number(): JValue | null {
    const start = this.pos;
    if (this.byteAt(this.pos) == 0x2d) this.pos++;
    if (this.pos >= this.len) return this.failV("unexpected end of JSON input");
    const first = this.byteAt(this.pos);
    if (first == 0x30) {
      this.pos++;
    } else if (first >= 0x31 && first <= 0x39) {
      this.digits();
    } else {
      return this.failV("invalid number");
    }
    if (this.pos < this.len && this.byteAt(this.pos) == 0x2e) {
      this.pos++;
      if (this.digits() == 0) return this.failV("invalid number: digits expected after '.'");
    }
    if (this.pos < this.len && (this.byteAt(this.pos) | 0x20) == 0x65) {
      this.pos++;
      if (this.pos < this.len) {
        const s = this.byteAt(this.pos);
        if (s == 0x2b || s == 0x2d) this.pos++;
      }
      if (this.digits() == 0) return this.failV("invalid number: digits expected in the exponent");
    }
    const v = new JValue(JKind.Number);
    v.num = parseFloat(String.UTF8.decodeUnsafe(this.base + <usize>start, <usize>(this.pos - start)));
    return v;
  }

  array(depth: i32): JValue | null {
    this.pos++; // [
    const v = new JValue(JKind.Array);
    this.skipSpace();
    if (this.pos < this.len && this.byteAt(this.pos) == 0x5d) {
      this.pos++;
      return v;
    }
    for (;;) {
      this.skipSpace();
      const item = this.value(depth + 1);
      if (item === null) return null;
      v.items.push(item);
      this.skipSpace();
      if (this.pos >= this.len) return this.failV("unexpected end of JSON input");
      const c = this.byteAt(this.pos);
      this.pos++;
      if (c == 0x5d) return v;
      if (c != 0x2c) {
        this.pos--;
        return this.failV("expected ',' or ']' in array");
      }
    }
    return null; // not reached
  }

  object(depth: i32): JValue | null {
    this.pos++; // {
    const v = new JValue(JKind.Object);
    this.skipSpace();
    if (this.pos < this.len && this.byteAt(this.pos) == 0x7d) {
      this.pos++;
      return v;
    }
    for (;;) {
      this.skipSpace();
      if (this.pos >= this.len) return this.failV("unexpected end of JSON input");
      if (this.byteAt(this.pos) != 0x22) return this.failV("expected a string as object key");
      const key = this.string();
      if (key === null) return null;
      this.skipSpace();
      if (this.pos >= this.len) return this.failV("unexpected end of JSON input");
      if (this.byteAt(this.pos) != 0x3a) return this.failV("expected ':' after object key");
      this.pos++;
      this.skipSpace();
      const item = this.value(depth + 1);
      if (item === null) return null;
      v.keys.push(key);
      v.items.push(item);
      this.skipSpace();
      if (this.pos >= this.len) return this.failV("unexpected end of JSON input");
      const c = this.byteAt(this.pos);
      this.pos++;
      if (c == 0x7d) return v;
      if (c != 0x2c) {
        this.pos--;
        return this.failV("expected ',' or '}' in object");
      }
    }
    return null; // not reached
  }

  hex4(at: i32): i32 {
    if (at + 4 > this.len) return -1;
    let n = 0;
    for (let i = 0; i < 4; i++) {
      const c = this.byteAt(at + i);
      let d: i32;
      if (c >= 0x30 && c <= 0x39) d = <i32>c - 0x30;
      else if ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66) d = <i32>(c | 0x20) - 0x61 + 10;
      else return -1;
      n = (n << 4) | d;
    }
    return n;
  }

  // plainRun returns the index of the first byte at or after i that needs
  // attention in a string (see jsonSpecial8), or len.
  plainRun(i: i32): i32 {
    while (i + 8 <= this.len && !jsonSpecial8(load<u64>(this.base + <usize>i))) i += 8;
    while (i < this.len) {
      const c = this.byteAt(i);
      if (c == 0x22 || c == 0x5c || c < 0x20 || c >= 0x80) break;
      i++;
    }
    return i;
  }

  // string parses a JSON string at pos (which holds '"').
  string(): string | null {
    const start = this.pos + 1;
    // Fast path: printable ASCII without escapes.
    let i = this.plainRun(start);
    if (i < this.len && this.byteAt(i) == 0x22) {
      this.pos = i + 1;
      return asciiString(this.base + <usize>start, i - start);
    }
    // General path: decode into the UTF-16 scratch buffer, which holds at
    // least one unit per remaining input byte (so it never grows mid-way).
    let out = this.buf;
    if (out.length < this.len - start + 2) {
      out = new Uint16Array(this.len - start + 2);
      this.buf = out;
    }
    let n = 0;
    i = start;
    for (;;) {
      if (i >= this.len) {
        this.pos = this.len;
        return this.failS("unexpected end of JSON input in string");
      }
      const c = this.byteAt(i);
      if (c == 0x22) {
        this.pos = i + 1;
        return String.UTF16.decodeUnsafe(out.dataStart, <usize>n << 1);
      }
      if (c < 0x20) {
        this.pos = i;
        return this.failS("invalid control character in string");
      }
      if (c == 0x5c) {
        if (i + 1 >= this.len) {
          this.pos = this.len;
          return this.failS("unexpected end of JSON input in string");
        }
        const e = this.byteAt(i + 1);
        let u: u32 = 0;
        if (e == 0x22) u = 0x22;
        else if (e == 0x5c) u = 0x5c;
        else if (e == 0x2f) u = 0x2f;
        else if (e == 0x62) u = 0x08;
        else if (e == 0x66) u = 0x0c;
        else if (e == 0x6e) u = 0x0a;
        else if (e == 0x72) u = 0x0d;
        else if (e == 0x74) u = 0x09;
        else if (e == 0x75) {
          let h = this.hex4(i + 2);
          if (h < 0) {
            this.pos = i;
            return this.failS("invalid \\u escape in string");
          }
          i += 6;
          if (h >= 0xd800 && h < 0xdc00) {
            // A high surrogate must be followed by an escaped low one.
            let lo = -1;
            if (i + 1 < this.len && this.byteAt(i) == 0x5c && this.byteAt(i + 1) == 0x75) {
              lo = this.hex4(i + 2);
            }
            if (lo >= 0xdc00 && lo < 0xe000) {
              unchecked((out[n++] = <u16>h));
              unchecked((out[n++] = <u16>lo));
              i += 6;
            } else {
              unchecked((out[n++] = 0xfffd));
            }
          } else if (h >= 0xdc00 && h < 0xe000) {
            unchecked((out[n++] = 0xfffd));
          } else {
            unchecked((out[n++] = <u16>h));
          }
          continue;
        } else {
          this.pos = i;
          return this.failS("invalid escape in string");
        }
        unchecked((out[n++] = <u16>u));
        i += 2;
        continue;
      }
      if (c < 0x80) {
        const j = this.plainRun(i);
        widenASCII(out.dataStart + (<usize>n << 1), this.base + <usize>i, j - i);
        n += j - i;
        i = j;
        continue;
      }
      // A UTF-8 sequence; invalid ones become U+FFFD, one byte at a time.
      let cp: u32 = 0xfffd;
      let size = 1;
      if (c >= 0xc2 && c <= 0xdf) {
        if (i + 1 < this.len) {
          const c1 = this.byteAt(i + 1);
          if ((c1 & 0xc0) == 0x80) {
            cp = ((c & 0x1f) << 6) | (c1 & 0x3f);
            size = 2;
          }
        }
      } else if (c >= 0xe0 && c <= 0xef) {
        if (i + 2 < this.len) {
          const c1 = this.byteAt(i + 1);
          const c2 = this.byteAt(i + 2);
          const lo1: u32 = c == 0xe0 ? 0xa0 : 0x80;
          const hi1: u32 = c == 0xed ? 0x9f : 0xbf;
          if (c1 >= lo1 && c1 <= hi1 && (c2 & 0xc0) == 0x80) {
            cp = ((c & 0x0f) << 12) | ((c1 & 0x3f) << 6) | (c2 & 0x3f);
            size = 3;
          }
        }
      } else if (c >= 0xf0 && c <= 0xf4) {
        if (i + 3 < this.len) {
          const c1 = this.byteAt(i + 1);
          const c2 = this.byteAt(i + 2);
          const c3 = this.byteAt(i + 3);
          const lo1: u32 = c == 0xf0 ? 0x90 : 0x80;
          const hi1: u32 = c == 0xf4 ? 0x8f : 0xbf;
          if (c1 >= lo1 && c1 <= hi1 && (c2 & 0xc0) == 0x80 && (c3 & 0xc0) == 0x80) {
            cp = ((c & 0x07) << 18) | ((c1 & 0x3f) << 12) | ((c2 & 0x3f) << 6) | (c3 & 0x3f);
            size = 4;
          }
        }
      }
      if (cp >= 0x10000) {
        cp -= 0x10000;
        unchecked((out[n++] = <u16>(0xd800 | (cp >> 10))));
        unchecked((out[n++] = <u16>(0xdc00 | (cp & 0x3ff))));
      } else {
        unchecked((out[n++] = <u16>cp));
      }
      i += size;
    }
    return null; // not reached
  }
}

const HEX = "0123456789abcdef";

/**
 * JSONWriter builds UTF-8 JSON text in a growable byte buffer. Strings are
 * escaped as JSON requires (quote, backslash, control characters) and
 * unpaired surrogates become U+FFFD, so the output is always valid UTF-8.
 */
export class JSONWriter {
  buf: Uint8Array;
  len: i32 = 0;

  constructor(capacity: i32 = 256) {
    this.buf = new Uint8Array(max(capacity, 16));
  }

  /** Makes room for n more bytes. */
  reserve(n: i32): void {
    const need = this.len + n;
    if (need <= this.buf.length) return;
    let c = this.buf.length * 2;
    while (c < need) c *= 2;
    const bigger = new Uint8Array(c);
    memory.copy(bigger.dataStart, this.buf.dataStart, <usize>this.len);
    this.buf = bigger;
  }

  @inline
  private put(b: u32): void {
    store<u8>(this.buf.dataStart + <usize>this.len, <u8>b);
    this.len++;
  }

  /** Appends raw ASCII text (JSON punctuation, numbers, literals). */
  raw(s: string): JSONWriter {
    const n = s.length;
    this.reserve(n);
    for (let i = 0; i < n; i++) this.put(<u32>s.charCodeAt(i));
    return this;
  }

  /** Appends raw bytes (UTF-8 JSON text the caller has checked). */
  rawBytes(b: Uint8Array): JSONWriter {
    this.reserve(b.length);
    memory.copy(this.buf.dataStart + <usize>this.len, b.dataStart, <usize>b.length);
    this.len += b.length;
    return this;
  }

  /** Appends one raw byte. */
  byte(b: u32): JSONWriter {
    this.reserve(1);
    this.put(b);
    return this;
  }

  /** Appends s as a quoted, escaped JSON string. */
  str(s: string): JSONWriter {
    const n = s.length;
    // Worst case: 6 bytes per UTF-16 unit (\u00XX), plus the quotes.
    this.reserve(n * 6 + 2);
    this.put(0x22);
    const p = changetype<usize>(s);
    for (let i = 0; i < n; i++) {
      // Four printable ASCII units at a time.
      while (i + 4 <= n) {
        const x = load<u64>(p + (<usize>i << 1));
        if (jsonSpecial16(x)) break;
        store<u32>(
          this.buf.dataStart + <usize>this.len,
          <u32>((x & 0xff) | ((x >> 8) & 0xff00) | ((x >> 16) & 0xff0000) | ((x >> 24) & 0xff000000)),
        );
        this.len += 4;
        i += 4;
      }
      if (i >= n) break;
      let c = <u32>load<u16>(p + (<usize>i << 1));
      if (c < 0x80) {
        if (c >= 0x20 && c != 0x22 && c != 0x5c) {
          this.put(c);
          continue;
        }
        this.put(0x5c);
        if (c == 0x22) this.put(0x22);
        else if (c == 0x5c) this.put(0x5c);
        else if (c == 0x0a) this.put(0x6e);
        else if (c == 0x0d) this.put(0x72);
        else if (c == 0x09) this.put(0x74);
        else if (c == 0x08) this.put(0x62);
        else if (c == 0x0c) this.put(0x66);
        else {
          this.put(0x75);
          this.put(0x30);
          this.put(0x30);
          this.put(<u32>HEX.charCodeAt(c >> 4));
          this.put(<u32>HEX.charCodeAt(c & 15));
        }
        continue;
      }
      if (c < 0x800) {
        this.put(0xc0 | (c >> 6));
        this.put(0x80 | (c & 0x3f));
        continue;
      }
      if (c >= 0xd800 && c < 0xe000) {
        // A surrogate: valid only as a high one followed by a low one.
        if (c < 0xdc00 && i + 1 < n) {
          const d = <u32>load<u16>(p + (<usize>(i + 1) << 1));
          if (d >= 0xdc00 && d < 0xe000) {
            const cp = 0x10000 + (((c - 0xd800) << 10) | (d - 0xdc00));
            this.put(0xf0 | (cp >> 18));
            this.put(0x80 | ((cp >> 12) & 0x3f));
            this.put(0x80 | ((cp >> 6) & 0x3f));
            this.put(0x80 | (cp & 0x3f));
            i++;
            continue;
          }
        }
        c = 0xfffd;
      }
      this.put(0xe0 | (c >> 12));
      this.put(0x80 | ((c >> 6) & 0x3f));
      this.put(0x80 | (c & 0x3f));
    }
    this.put(0x22);
    return this;
  }

  /** Appends "key": (key is escaped) with a leading comma unless first. */
  key(k: string, first: bool = false): JSONWriter {
    if (!first) this.byte(0x2c);
    this.str(k);
    return this.byte(0x3a);
  }

  /** Appends an integer. */
  int(n: i64): JSONWriter {
    return this.raw(n.toString());
  }

  /** Appends a finite number (NaN and infinities are written as 0). */
  num(x: f64): JSONWriter {
    if (!isFinite(x)) return this.raw("0");
    if (x == Math.floor(x) && Math.abs(x) < 1e15) return this.raw((<i64>x).toString());
    return this.raw(x.toString());
  }

  /** Appends true or false. */
  bool(b: bool): JSONWriter {
    return this.raw(b ? "true" : "false");
  }

  /** Appends a JSON array of strings. */
  strings(a: string[]): JSONWriter {
    this.byte(0x5b);
    for (let i = 0; i < a.length; i++) {
      if (i > 0) this.byte(0x2c);
      this.str(unchecked(a[i]));
    }
    return this.byte(0x5d);
  }

  /** The bytes written so far (a view, not a copy). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }

  /** The text written so far, decoded. */
  toString(): string {
    return String.UTF8.decodeUnsafe(this.buf.dataStart, <usize>this.len);
  }
}
