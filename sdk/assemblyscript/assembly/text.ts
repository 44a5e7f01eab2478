// Text helpers of the MDSA AssemblyScript SDK: counting characters (code
// points, not UTF-16 units), trimming, cutting, and the word normalisation
// used to match phrases as whole words regardless of case and punctuation.

/** Whether c is a space, tab, newline or carriage return. */
@inline
export function isSpace(c: i32): bool {
  return c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d || c == 0x0b || c == 0x0c;
}

/** s without leading and trailing white space (space, tab, CR, LF, VT, FF). */
export function trimSpace(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isSpace(s.charCodeAt(a))) a++;
  while (b > a && isSpace(s.charCodeAt(b - 1))) b--;
  return a == 0 && b == s.length ? s : s.substring(a, b);
}

/** s without trailing spaces, tabs and newlines. */
export function trimRight(s: string): string {
  let b = s.length;
  while (b > 0) {
    const c = s.charCodeAt(b - 1);
    if (c != 0x20 && c != 0x09 && c != 0x0a) break;
    b--;
  }
  return b == s.length ? s : s.substring(0, b);
}

/** The number of characters (code points) of s; an unpaired surrogate counts as one. */
export function runeCount(s: string): i32 {
  const n = s.length;
  let count = n;
  const p = changetype<usize>(s);
  for (let i = 0; i + 1 < n; i++) {
    // Four units at a time while none is a high surrogate.
    if (i + 4 <= n) {
      const x = load<u64>(p + (<usize>i << 1));
      const t = (x & 0xfc00fc00fc00fc00) ^ 0xd800d800d800d800;
      if (((t - 0x0001000100010001) & ~t & 0x8000800080008000) == 0) {
        i += 3;
        continue;
      }
    }
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) {
        count--;
        i++;
      }
    }
  }
  return count;
}

// unitsForRunes returns the number of UTF-16 units of the first n code
// points of s (all of s when it has fewer).
function unitsForRunes(s: string, n: i32): i32 {
  let i = 0;
  let k = 0;
  const len = s.length;
  while (i < len && k < n) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < len) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d < 0xe000) i++;
    }
    i++;
    k++;
  }
  return i;
}

/**
 * cut shortens s to at most n characters, preferring to end at a line
 * break or a sentence end ('.', '!' or '?' followed by white space) in the
 * second half of the allowed text; failing that it cuts at the last space
 * and appends "…" (which counts towards n).
 */
export function cut(s: string, n: i32): string {
  const head = s.substring(0, unitsForRunes(s, n));
  const hl = head.length;
  let best = -1;
  for (let i = hl - 1; i >= hl / 2 && i > 0; i--) {
    const c = head.charCodeAt(i);
    if (c == 0x0a) {
      best = i;
      break;
    }
    if ((c == 0x2e || c == 0x21 || c == 0x3f) && (i + 1 == hl || head.charCodeAt(i + 1) == 0x20 || head.charCodeAt(i + 1) == 0x0a)) {
      best = i + 1;
      break;
    }
  }
  if (best > 0) return trimRight(head.substring(0, best));
  let sp = head.lastIndexOf(" ");
  if (sp < hl / 2) {
    // No usable space: drop the last character to make room for the marker.
    sp = hl - 1;
    if (sp > 0) {
      const c = head.charCodeAt(sp);
      if (c >= 0xdc00 && c < 0xe000) {
        const h = head.charCodeAt(sp - 1);
        if (h >= 0xd800 && h < 0xdc00) sp--;
      }
    }
  }
  return trimRight(head.substring(0, max(sp, 0))) + "…";
}

/**
 * Whether code point cp belongs to a word: ASCII letters and digits, and
 * letters of other scripts. ASCII punctuation, Latin-1 symbols, general
 * punctuation, symbols and emoji separate words.
 */
export function isWordRune(cp: u32): bool {
  if (cp < 0x80) {
    return (cp >= 0x30 && cp <= 0x39) || ((cp | 0x20) >= 0x61 && (cp | 0x20) <= 0x7a);
  }
  if (cp < 0xc0 || cp == 0xd7 || cp == 0xf7) return false;
  if (cp >= 0x2000 && cp <= 0x2bff) return false; // punctuation, symbols, arrows, math, dingbats
  if (cp >= 0x3000 && cp <= 0x303f) return false; // CJK punctuation
  if (cp >= 0xfe30 && cp <= 0xfe4f) return false;
  if (cp >= 0xff00 && cp <= 0xff0f) return false; // full-width punctuation
  if (cp >= 0xff1a && cp <= 0xff20) return false;
  if (cp >= 0xff3b && cp <= 0xff40) return false;
  if (cp >= 0xff5b && cp <= 0xff65) return false;
  if (cp >= 0xfff0 && cp <= 0xffff) return false; // specials, U+FFFD
  if (cp >= 0x1f000 && cp <= 0x1faff) return false; // emoji and pictographs
  return true;
}

/**
 * The lower-case form of cp for ASCII, Latin-1, Latin Extended-A, Greek and
 * Cyrillic capitals; other code points are returned unchanged.
 */
export function foldRune(cp: u32): u32 {
  if (cp < 0x80) return cp >= 0x41 && cp <= 0x5a ? cp + 0x20 : cp;
  if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) return cp + 0x20;
  if (cp >= 0x100 && cp <= 0x17f) {
    if ((cp <= 0x137 || (cp >= 0x14a && cp <= 0x177)) && (cp & 1) == 0) return cp + 1;
    if (((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e)) && (cp & 1) == 1) return cp + 1;
    if (cp == 0x178) return 0xff;
    return cp;
  }
  if (cp >= 0x391 && cp <= 0x3a9 && cp != 0x3a2) return cp + 0x20;
  if (cp >= 0x410 && cp <= 0x42f) return cp + 0x20;
  if (cp >= 0x400 && cp <= 0x40f) return cp + 0x50;
  return cp;
}

const FNV_OFFSET: u64 = 0xcbf29ce484222325;
const FNV_PRIME: u64 = 0x100000001b3;

/** The folded form of an ASCII character if it is a letter or digit, else 0. */
@inline
function asciiWord(c: u32): u32 {
  const l = c | 0x20;
  if (l - 0x61 < 26) return l;
  if (c - 0x30 < 10) return c;
  return 0;
}

/**
 * The words of a text: maximal runs of letters and digits, as 64-bit hashes
 * of their lower-cased characters, with their positions (UTF-16 indexes)
 * in the text. "Don't" is the two words "don" and "t".
 */
export class Words {
  hashes: u64[] = [];
  starts: i32[] = [];
  ends: i32[] = [];

  /** The number of words. */
  get length(): i32 {
    return this.hashes.length;
  }

  /** Whether the word sequence phrase occurs here (false for an empty phrase). */
  contains(phrase: Words): bool {
    const m = phrase.hashes.length;
    const n = this.hashes.length;
    if (m == 0 || m > n) return false;
    const first = unchecked(phrase.hashes[0]);
    for (let i = 0; i + m <= n; i++) {
      if (unchecked(this.hashes[i]) != first) continue;
      let k = 1;
      while (k < m && unchecked(this.hashes[i + k]) == unchecked(phrase.hashes[k])) k++;
      if (k == m) return true;
    }
    return false;
  }
}

// The scanner state of wordsOf; step is called once per character.
class WordScan {
  h: u64 = FNV_OFFSET;
  start: i32 = -1;
  out: Words = new Words();

  // c: the folded code point of the character at index i, or 0 when it
  // separates words.
  @inline
  step(c: u32, i: i32): void {
    if (c != 0) {
      if (this.start < 0) this.start = i;
      this.h = (this.h ^ <u64>c) * FNV_PRIME;
    } else if (this.start >= 0) {
      this.out.hashes.push(this.h);
      this.out.starts.push(this.start);
      this.out.ends.push(i);
      this.h = FNV_OFFSET;
      this.start = -1;
    }
  }
}

/**
 * The words of s (see Words). Case is folded for ASCII, Latin-1, Latin
 * Extended-A, Greek and Cyrillic. Loop iterations are expensive in the
 * sandbox (the host checks for termination at each loop header), so ASCII
 * text is taken four characters per iteration.
 */
export function wordsOf(s: string): Words {
  const w = new WordScan();
  const p = changetype<usize>(s);
  const n = s.length;
  let i = 0;
  while (i < n) {
    if (i + 4 <= n) {
      const x = load<u64>(p + (<usize>i << 1));
      if ((x & 0xff80ff80ff80ff80) == 0) {
        w.step(asciiWord(<u32>(x & 0xffff)), i);
        w.step(asciiWord(<u32>((x >> 16) & 0xffff)), i + 1);
        w.step(asciiWord(<u32>((x >> 32) & 0xffff)), i + 2);
        w.step(asciiWord(<u32>(x >> 48)), i + 3);
        i += 4;
        continue;
      }
    }
    let cp = <u32>load<u16>(p + (<usize>i << 1));
    let units = 1;
    if (cp < 0x80) {
      cp = asciiWord(cp);
    } else {
      if (cp >= 0xd800 && cp < 0xdc00 && i + 1 < n) {
        const d = <u32>load<u16>(p + (<usize>(i + 1) << 1));
        if (d >= 0xdc00 && d < 0xe000) {
          cp = 0x10000 + (((cp - 0xd800) << 10) | (d - 0xdc00));
          units = 2;
        }
      }
      cp = isWordRune(cp) ? foldRune(cp) : 0;
    }
    w.step(cp, i);
    i += units;
  }
  w.step(0, n);
  return w.out;
}

/** Whether phrase occurs in text as whole words, case and punctuation ignored ("sue you" matches "Sue, you!"). */
export function hasPhrase(text: string, phrase: string): bool {
  return wordsOf(text).contains(wordsOf(phrase));
}

/**
 * A set of phrases matched in one pass over a text's words: an
 * open-addressing table from a first-word hash to the phrases that start
 * with it.
 */
export class PhraseSet {
  texts: string[];
  words: Words[] = [];
  private keys: StaticArray<u64>;
  private head: StaticArray<i32>;
  private next: StaticArray<i32>;
  private mask: u32;

  constructor(texts: string[]) {
    this.texts = texts;
    const n = texts.length;
    let size: u32 = 8;
    while (size < 2 * <u32>n) size *= 2;
    this.mask = size - 1;
    this.keys = new StaticArray<u64>(size);
    this.head = new StaticArray<i32>(size);
    this.next = new StaticArray<i32>(n);
    for (let i = 0; i < n; i++) {
      this.words.push(wordsOf(unchecked(texts[i])));
      unchecked((this.next[i] = -1));
    }
    // In reverse, so that each chain lists phrases in the given order.
    for (let i = n - 1; i >= 0; i--) {
      const w = unchecked(this.words[i]);
      if (w.length == 0) continue;
      const k = unchecked(w.hashes[0]) | 1; // never 0 (the empty slot)
      let j = <u32>((k >> 32) ^ k) & this.mask;
      while (unchecked(this.keys[j]) != 0 && unchecked(this.keys[j]) != k) j = (j + 1) & this.mask;
      if (unchecked(this.keys[j]) == k) unchecked((this.next[i] = this.head[j]));
      unchecked((this.keys[j] = k));
      unchecked((this.head[j] = i));
    }
  }

  /** The number of phrases that have words. */
  get usable(): i32 {
    let n = 0;
    for (let i = 0; i < this.words.length; i++) if (unchecked(this.words[i]).length > 0) n++;
    return n;
  }

  /**
   * Marks in found (one entry per phrase, false on entry) the phrases that
   * occur in text, stopping once stopAfter are found (0: find all);
   * returns how many were found.
   */
  find(text: Words, found: StaticArray<bool>, stopAfter: i32 = 0): i32 {
    let hits = 0;
    const n = text.length;
    for (let i = 0; i < n; i++) {
      const h = unchecked(text.hashes[i]);
      const k = h | 1;
      let j = <u32>((k >> 32) ^ k) & this.mask;
      while (unchecked(this.keys[j]) != 0 && unchecked(this.keys[j]) != k) j = (j + 1) & this.mask;
      if (unchecked(this.keys[j]) == 0) continue;
      for (let p = unchecked(this.head[j]); p >= 0; p = unchecked(this.next[p])) {
        const w = unchecked(this.words[p]);
        const m = w.length;
        if (unchecked(found[p]) || m > n - i || unchecked(w.hashes[0]) != h) continue;
        let q = 1;
        while (q < m && unchecked(text.hashes[i + q]) == unchecked(w.hashes[q])) q++;
        if (q == m) {
          unchecked((found[p] = true));
          hits++;
          if (hits == stopAfter) return hits;
        }
      }
    }
    return hits;
  }
}

/** s in double quotes, with quotes and backslashes escaped (for messages). */
export function quote(s: string): string {
  if (!s.includes('"') && !s.includes("\\")) return '"' + s + '"';
  return '"' + s.replaceAll("\\", "\\\\").replaceAll('"', '\\"') + '"';
}
