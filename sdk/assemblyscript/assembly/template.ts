// Prompt templates of the MDSA AssemblyScript SDK. Placeholders:
//
//   {{query}}              the user's query
//   {{context.KEY}}        the value of context key KEY, or "" when absent
//   {{context.KEY|text}}   the same, with "text" used when KEY is absent or empty
//   \{{                    a literal "{{"
//
// Spaces inside the braces are ignored. Rendering is a single pass: text a
// placeholder inserts is never scanned again, so a query that contains
// "{{context.secret}}" stays literal.

const SEG_TEXT: u8 = 0;
const SEG_QUERY: u8 = 1;
const SEG_CONTEXT: u8 = 2;

class Segment {
  kind: u8;
  text: string; // literal text, or the default of a context placeholder
  key: string; // context key

  constructor(kind: u8, text: string, key: string) {
    this.kind = kind;
    this.text = text;
    this.key = key;
  }
}

function validKey(key: string): bool {
  if (key.length == 0) return false;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    const ok =
      c == 0x5f || c == 0x2d || c == 0x2e || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
    if (!ok) return false;
  }
  return true;
}

/** A parsed template. Check error after construction: "" means valid. */
export class Template {
  segments: Segment[] = [];
  /** Why the template is invalid, or "". */
  error: string = "";

  constructor(src: string) {
    this.error = this.parse(src);
  }

  private parse(src: string): string {
    let lit = "";
    let i = 0;
    const n = src.length;
    while (i < n) {
      const j = src.indexOf("{{", i);
      if (j < 0) {
        lit += src.substring(i);
        break;
      }
      if (j > i && src.charCodeAt(j - 1) == 0x5c) {
        lit += src.substring(i, j - 1) + "{{";
        i = j + 2;
        continue;
      }
      lit += src.substring(i, j);
      const end = src.indexOf("}}", j + 2);
      if (end < 0) {
        return 'template: unclosed "{{" at character ' + j.toString() + " (write \\{{ for a literal)";
      }
      const inner = src.substring(j + 2, end).trim();
      if (lit.length > 0) {
        this.segments.push(new Segment(SEG_TEXT, lit, ""));
        lit = "";
      }
      if (inner == "query") {
        this.segments.push(new Segment(SEG_QUERY, "", ""));
      } else if (inner.startsWith("context.")) {
        let key = inner.substring(8);
        let def = "";
        const bar = key.indexOf("|");
        if (bar >= 0) {
          def = key.substring(bar + 1);
          key = key.substring(0, bar);
        }
        key = key.trim();
        if (!validKey(key)) {
          return (
            "template: placeholder at character " +
            j.toString() +
            ": context key " +
            '"' +
            key +
            '"' +
            " must be non-empty and use only letters, digits, '_', '-' and '.'"
          );
        }
        this.segments.push(new Segment(SEG_CONTEXT, def, key));
      } else {
        return "template: placeholder at character " + j.toString() + ": unknown placeholder {{" + inner + "}} (want {{query}} or {{context.KEY}})";
      }
      i = end + 2;
    }
    if (lit.length > 0) this.segments.push(new Segment(SEG_TEXT, lit, ""));
    return "";
  }

  /** Expands the template for one request. */
  render(query: string, contextKeys: string[], contextValues: string[]): string {
    const segs = this.segments;
    if (segs.length == 1) {
      const s = unchecked(segs[0]);
      if (s.kind == SEG_TEXT) return s.text;
      if (s.kind == SEG_QUERY) return query;
    }
    const parts = new Array<string>(segs.length);
    for (let i = 0; i < segs.length; i++) {
      const s = unchecked(segs[i]);
      if (s.kind == SEG_TEXT) {
        unchecked((parts[i] = s.text));
      } else if (s.kind == SEG_QUERY) {
        unchecked((parts[i] = query));
      } else {
        let v = "";
        // The last value of a key wins, as with a JSON object.
        for (let k = contextKeys.length - 1; k >= 0; k--) {
          if (unchecked(contextKeys[k]) == s.key) {
            v = unchecked(contextValues[k]);
            break;
          }
        }
        unchecked((parts[i] = v.length > 0 ? v : s.text));
      }
    }
    return parts.join("");
  }
}
