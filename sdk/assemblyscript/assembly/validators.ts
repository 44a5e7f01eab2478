// Validators of the MDSA AssemblyScript SDK: the checks the default validate
// export runs over a model's answer, with the same codes, severities and
// scoring as the Go SDK (sdk/go).

import { PhraseSet, Words, cut, quote, runeCount, trimRight, trimSpace, wordsOf } from "./text";

/** Issue severities. */
export const SEVERITY_INFO = "info";
export const SEVERITY_WARNING = "warning";
export const SEVERITY_ERROR = "error";

/** Issue codes of the built-in validators (the same as the Go SDK's). */
export const CODE_TOO_SHORT = "too_short";
export const CODE_TOO_LONG = "too_long";
export const CODE_BANNED_TERM = "banned_term";
export const CODE_DISCLAIMER_ADDED = "disclaimer_added";

/** Score penalties per issue, by severity. */
export const PENALTY_ERROR: f64 = 0.5;
export const PENALTY_WARNING: f64 = 0.15;

/** One finding of a validator. */
export class Issue {
  code: string;
  severity: string;
  message: string;

  constructor(code: string, severity: string, message: string) {
    this.code = code;
    this.severity = severity;
    this.message = message;
  }
}

/**
 * What validators look at: the request and the response as revised so
 * far. A validator that revises the answer assigns response; later
 * validators see the new text.
 */
export class Check {
  query: string;
  domain: string;
  response: string;
  issues: Issue[] = [];
  private respWords: Words | null = null;
  private respFor: string | null = null;
  private queryWords_: Words | null = null;

  constructor(query: string, response: string, domain: string) {
    this.query = query;
    this.response = response;
    this.domain = domain;
  }

  /** Records a finding. */
  report(code: string, severity: string, message: string): void {
    this.issues.push(new Issue(code, severity, message));
  }

  /** The response's words (cached while the response is unchanged). */
  words(): Words {
    const f = this.respFor;
    let w = this.respWords;
    if (w === null || f === null || changetype<usize>(f) != changetype<usize>(this.response)) {
      w = wordsOf(this.response);
      this.respWords = w;
      this.respFor = this.response;
    }
    return w;
  }

  /** The query's words (cached). */
  queryWords(): Words {
    let w = this.queryWords_;
    if (w === null) {
      w = wordsOf(this.query);
      this.queryWords_ = w;
    }
    return w;
  }

  /** Whether phrase occurs in the response as whole words, case and punctuation ignored. */
  hasPhrase(phrase: string): bool {
    return this.words().contains(wordsOf(phrase));
  }

  /** Whether phrase occurs in the query as whole words, case and punctuation ignored. */
  queryHasPhrase(phrase: string): bool {
    return this.queryWords().contains(wordsOf(phrase));
  }
}

/**
 * A Validator checks one property of a response. Subclass it, or wrap a
 * function with customValidator. check must not abort on any input.
 */
export abstract class Validator {
  /** A short name, used in configuration errors. */
  name: string;
  /** Why the validator's arguments are invalid, or "" (reported at describe). */
  configError: string = "";

  constructor(name: string) {
    this.name = name;
  }

  abstract check(c: Check): void;
}

/** The signature of a custom validator function. */
export type CheckFn = (c: Check) => void;

class FuncValidator extends Validator {
  fn: CheckFn;
  constructor(name: string, fn: CheckFn) {
    super(name);
    this.fn = fn;
  }
  check(c: Check): void {
    this.fn(c);
  }
}

/** A Validator that runs fn (a top-level function: AssemblyScript has no closures). */
export function customValidator(name: string, fn: CheckFn): Validator {
  return new FuncValidator(name, fn);
}

class MinLength extends Validator {
  n: i32;
  constructor(n: i32) {
    super("min_length");
    this.n = n;
    if (n < 1) this.configError = "validator min_length: n = " + n.toString() + ", want >= 1";
  }
  check(c: Check): void {
    const t = trimSpace(c.response);
    if (t.length >= 2 * this.n) return; // a character is at most 2 UTF-16 units
    const got = runeCount(t);
    if (got >= this.n) return;
    c.report(
      CODE_TOO_SHORT,
      SEVERITY_ERROR,
      "response has " + got.toString() + " characters, at least " + this.n.toString() + " expected",
    );
  }
}

/**
 * minLength reports an error (too_short) when the response, without
 * surrounding white space, has fewer than n characters. minLength(1)
 * rejects empty answers.
 */
export function minLength(n: i32): Validator {
  return new MinLength(n);
}

class MaxLength extends Validator {
  n: i32;
  constructor(n: i32) {
    super("max_length");
    this.n = n;
    if (n < 16) this.configError = "validator max_length: n = " + n.toString() + ", want >= 16";
  }
  check(c: Check): void {
    if (c.response.length <= this.n) return; // at least one UTF-16 unit per character
    const total = runeCount(c.response);
    if (total <= this.n) return;
    c.response = cut(c.response, this.n);
    c.report(
      CODE_TOO_LONG,
      SEVERITY_WARNING,
      "response had " +
        total.toString() +
        " characters; cut to " +
        runeCount(c.response).toString() +
        " (limit " +
        this.n.toString() +
        ")",
    );
  }
}

/**
 * maxLength cuts a response longer than n characters at the last sentence
 * or line end before the limit (or the last space, adding "…") and reports
 * a warning (too_long). Put it before requireDisclaimer.
 */
export function maxLength(n: i32): Validator {
  return new MaxLength(n);
}

class BannedTerms extends Validator {
  terms: PhraseSet;
  constructor(terms: string[]) {
    super("banned_terms");
    this.terms = new PhraseSet(terms);
    if (this.terms.usable == 0) this.configError = "validator banned_terms: no terms given";
  }
  check(c: Check): void {
    const words = c.words();
    if (words.length == 0) return;
    const found = new StaticArray<bool>(this.terms.texts.length);
    if (this.terms.find(words, found) == 0) return;
    let msg = "";
    let n = 0;
    for (let i = 0; i < found.length && n < 5; i++) {
      if (!unchecked(found[i])) continue;
      msg += (n > 0 ? ", " : "") + quote(unchecked(this.terms.texts[i]));
      n++;
    }
    c.report(CODE_BANNED_TERM, SEVERITY_ERROR, "banned term in response: " + msg);
  }
}

/**
 * bannedTerms reports an error (banned_term) naming up to 5 of terms that
 * the response contains as whole words, ignoring case and punctuation
 * ("ass" does not match "class"; "sue you" matches "Sue, you").
 */
export function bannedTerms(terms: string[]): Validator {
  return new BannedTerms(terms);
}

class RequireDisclaimer extends Validator {
  text: string;
  phrases: PhraseSet;
  constructor(text: string, alternatives: string[]) {
    super("require_disclaimer");
    const t = trimSpace(text);
    const all = [t];
    for (let i = 0; i < alternatives.length; i++) all.push(unchecked(alternatives[i]));
    this.text = t;
    this.phrases = new PhraseSet(all);
    if (unchecked(this.phrases.words[0]).length == 0) this.configError = "validator require_disclaimer: empty disclaimer";
  }
  check(c: Check): void {
    const found = new StaticArray<bool>(this.phrases.texts.length);
    if (this.phrases.find(c.words(), found, 1) > 0) return;
    c.response = trimRight(c.response) + "\n\n" + this.text;
    c.report(CODE_DISCLAIMER_ADDED, SEVERITY_INFO, "required disclaimer appended");
  }
}

/**
 * requireDisclaimer makes sure the response carries text: when neither
 * text nor any of alternatives appears in it (whole words, case and
 * punctuation ignored), text is appended after a blank line and an info
 * issue (disclaimer_added) is reported.
 */
export function requireDisclaimer(text: string, alternatives: string[] = []): Validator {
  return new RequireDisclaimer(text, alternatives);
}

/** The outcome of validation (the validate export's output). */
export class Validation {
  ok: bool = true;
  score: f64 = 1;
  issues: Issue[] = [];
  /** The revised answer, or null when the validators left it unchanged. */
  response: string | null = null;

  /** Appends an issue, updating ok and score as evaluate would (for custom validate functions). */
  add(code: string, severity: string, message: string): void {
    this.issues.push(new Issue(code, severity, message));
    if (severity == SEVERITY_INFO) return;
    if (severity == SEVERITY_WARNING) {
      this.score *= 1 - PENALTY_WARNING;
    } else {
      this.score *= 1 - PENALTY_ERROR;
      this.ok = false;
    }
  }
}

/**
 * score turns issues into a quality score in [0, 1]: 1 for none,
 * multiplied by 0.5 for each error and 0.85 for each warning. Unknown
 * severities count as errors.
 */
export function score(issues: Issue[]): f64 {
  let s: f64 = 1;
  for (let i = 0; i < issues.length; i++) {
    const sev = unchecked(issues[i]).severity;
    if (sev == SEVERITY_INFO) continue;
    s *= sev == SEVERITY_WARNING ? 1 - PENALTY_WARNING : 1 - PENALTY_ERROR;
  }
  return s;
}

/**
 * evaluate runs validators in order over the request and combines their
 * findings: ok when no issue has error severity, score from score(), and
 * response set when a validator revised the text.
 */
export function evaluate(query: string, response: string, domain: string, validators: Validator[]): Validation {
  const c = new Check(query, response, domain);
  for (let i = 0; i < validators.length; i++) unchecked(validators[i]).check(c);
  const v = new Validation();
  v.issues = c.issues;
  v.score = score(c.issues);
  for (let i = 0; i < c.issues.length; i++) {
    const sev = unchecked(c.issues[i]).severity;
    if (sev != SEVERITY_INFO && sev != SEVERITY_WARNING) v.ok = false;
  }
  if (c.response != response) v.response = c.response;
  return v;
}
