//! MDSA plugin SDK for Rust: the whole SDK in one file, for ABI v1
//! (sdk/ABI.md).
//!
//! A plugin is a `cdylib` built for `wasm32-unknown-unknown` that includes
//! this file as a module named `mdsa` at its crate root, declares itself with
//! [`Plugin`] and exports it with [`export_plugin!`]:
//!
//! ```ignore
//! #[path = "../../../sdk/rust/mdsa.rs"]
//! mod mdsa;
//! use mdsa::*;
//!
//! fn plugin() -> Plugin {
//!     Plugin::new("cooking", "1.0.0")
//!         .description("Recipes and kitchen help.")
//!         .keywords(&["recipe", "bake", "oven"])
//!         .examples(&["How long do I bake banana bread?"])
//!         .capabilities(&[CAP_GENERATE])
//!         .system("You are a friendly cook. Diet: {{context.diet|none}}.")
//!         .validator(min_length(1))
//!         .validator(require_disclaimer("Check allergens before serving.", &[]))
//! }
//!
//! export_plugin!(plugin);
//! ```
//!
//! Build (Debian's rustc 1.63 or newer; no crates are needed):
//!
//! ```text
//! /usr/bin/rustc --edition 2021 --target wasm32-unknown-unknown --crate-type cdylib \
//!     -C opt-level=s -C lto -C codegen-units=1 -C strip=symbols \
//!     -C target-feature=+bulk-memory -C link-arg=-zstack-size=262144 -o cooking.wasm main.rs
//! ```
//!
//! Performance note: the host stops runaway plugins by checking for
//! termination at every loop iteration of the plugin's code, and every
//! Extism kernel call is a host round trip; both cost far more than the
//! work inside. So the hot paths here move and scan 8 bytes per iteration,
//! bulk memory turns copies into single instructions, and prompt templates
//! are JSON-escaped once at compile time.
//!
//! What is inside, in order: constants of the ABI; the Extism kernel and
//! MDSA host imports (`sys`); input, output, error, log and config helpers
//! that move bytes 8 at a time; a JSON value parser and writer; the ABI's
//! JSON shapes; the host-function wrappers ([`generate`], [`embed`],
//! [`count_tokens`]); prompt templates; validators; the declarative
//! [`Plugin`] (with its tools, ABI 1.1) and its export glue. Nothing here panics on any input: bad
//! input is an error the export reports with `error_set`. (A panic in
//! plugin code traps the instance, which the host then discards.)

#![allow(dead_code)]

use std::cell::RefCell;
use std::fmt;

// ---------------------------------------------------------------------------
// ABI constants

/// The plugin ABI version this SDK speaks.
pub const ABI_VERSION: i64 = 1;

/// The minor version of ABI 1 a manifest states when the plugin declares
/// tools (minor 1 added them and the tool export).
pub const ABI_MINOR_TOOLS: i64 = 1;

/// Export names.
pub const EXPORT_DESCRIBE: &str = "describe";
pub const EXPORT_PROMPT: &str = "prompt";
pub const EXPORT_VALIDATE: &str = "validate";
pub const EXPORT_HANDLE: &str = "handle";
pub const EXPORT_TOOL: &str = "tool";

/// Capabilities a manifest may declare.
pub const CAP_GENERATE: &str = "generate";
pub const CAP_EMBED: &str = "embed";
pub const CAP_COUNT_TOKENS: &str = "count_tokens";

/// Model tiers.
pub const TIER_DOMAIN: &str = "domain";
pub const TIER_REASONER: &str = "reasoner";

/// Chat roles.
pub const ROLE_SYSTEM: &str = "system";
pub const ROLE_USER: &str = "user";
pub const ROLE_ASSISTANT: &str = "assistant";

/// Issue severities.
pub const SEVERITY_INFO: &str = "info";
pub const SEVERITY_WARNING: &str = "warning";
pub const SEVERITY_ERROR: &str = "error";

/// Refusal codes of the host functions (ABI section 5.4), plus
/// ERR_BAD_REPLY, which this SDK reports when a host reply cannot be decoded.
pub const ERR_CAPABILITY: &str = "capability_denied";
pub const ERR_MODEL_DENIED: &str = "model_denied";
pub const ERR_BUDGET: &str = "budget_exceeded";
pub const ERR_BAD_REQUEST: &str = "bad_request";
pub const ERR_ENGINE: &str = "engine_error";
pub const ERR_UNAVAILABLE: &str = "unavailable";
pub const ERR_BAD_REPLY: &str = "bad_reply";

/// Issue codes of the built-in validators (the same as the Go SDK's).
pub const CODE_TOO_SHORT: &str = "too_short";
pub const CODE_TOO_LONG: &str = "too_long";
pub const CODE_BANNED_TERM: &str = "banned_term";
pub const CODE_DISCLAIMER_ADDED: &str = "disclaimer_added";
pub const CODE_PII_REDACTED: &str = "pii_redacted";

/// Replacement text of redact_emails.
pub const REDACTED_EMAIL: &str = "[email redacted]";

/// Bounds the host checks on plugin output (sdk/go/abi/check.go).
pub const MAX_NAME_LEN: usize = 64;
pub const MAX_VERSION_LEN: usize = 64;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
pub const MAX_KEYWORDS: usize = 1024;
pub const MAX_KEYWORD_LEN: usize = 128;
pub const MAX_EXAMPLES: usize = 1024;
pub const MAX_EXAMPLE_LEN: usize = 2048;
pub const MAX_PREFER: usize = 16;
pub const MAX_MODEL_NAME_LEN: usize = 256;
pub const MAX_STOPS: usize = 16;
pub const MAX_STOP_LEN: usize = 256;
pub const MAX_MESSAGES: usize = 512;
pub const MAX_ISSUES: usize = 256;
pub const MAX_ISSUE_CODE_LEN: usize = 64;
pub const MAX_ISSUE_MESSAGE_LEN: usize = 4096;
pub const MAX_TOOLS: usize = 32;
pub const MAX_TOOL_NAME_LEN: usize = 64;
pub const MAX_TOOL_SCHEMA_LEN: usize = 64 << 10;
pub const MAX_TOOL_CONTENT_LEN: usize = 64 << 10;

/// Deepest JSON nesting the parser accepts (the host's documents nest 3
/// levels deep).
pub const MAX_JSON_DEPTH: usize = 128;

// ---------------------------------------------------------------------------
// Raw imports: the Extism kernel (extism:host/env) and the MDSA host
// functions (extism:host/user). All offsets are i64 addresses in the
// kernel's memory, not in this module's.

/// Raw Extism and MDSA imports. Prefer the safe helpers ([`input`],
/// [`set_output`], [`generate`], ...); every call is a host round trip.
#[cfg(target_arch = "wasm32")]
pub mod sys {
    #[link(wasm_import_module = "extism:host/env")]
    extern "C" {
        #[link_name = "alloc"]
        pub fn alloc(n: u64) -> u64;
        #[link_name = "free"]
        pub fn free(off: u64);
        #[link_name = "length"]
        pub fn length(off: u64) -> u64;
        #[link_name = "load_u8"]
        pub fn load_u8(off: u64) -> u8;
        #[link_name = "load_u64"]
        pub fn load_u64(off: u64) -> u64;
        #[link_name = "store_u8"]
        pub fn store_u8(off: u64, v: u8);
        #[link_name = "store_u64"]
        pub fn store_u64(off: u64, v: u64);
        #[link_name = "input_length"]
        pub fn input_length() -> u64;
        #[link_name = "input_load_u8"]
        pub fn input_load_u8(off: u64) -> u8;
        #[link_name = "input_load_u64"]
        pub fn input_load_u64(off: u64) -> u64;
        #[link_name = "output_set"]
        pub fn output_set(off: u64, n: u64);
        #[link_name = "error_set"]
        pub fn error_set(off: u64);
        #[link_name = "config_get"]
        pub fn config_get(off: u64) -> u64;
        #[link_name = "var_get"]
        pub fn var_get(off: u64) -> u64;
        #[link_name = "var_set"]
        pub fn var_set(key: u64, val: u64);
        #[link_name = "log_debug"]
        pub fn log_debug(off: u64);
        #[link_name = "log_info"]
        pub fn log_info(off: u64);
        #[link_name = "log_warn"]
        pub fn log_warn(off: u64);
        #[link_name = "log_error"]
        pub fn log_error(off: u64);
    }

    #[link(wasm_import_module = "extism:host/user")]
    extern "C" {
        #[link_name = "mdsa_generate"]
        pub fn mdsa_generate(off: u64) -> u64;
        #[link_name = "mdsa_embed"]
        pub fn mdsa_embed(off: u64) -> u64;
        #[link_name = "mdsa_count_tokens"]
        pub fn mdsa_count_tokens(off: u64) -> u64;
    }
}

// ---------------------------------------------------------------------------
// Memory helpers (wasm only). Words of 8 bytes, eight words per loop
// iteration (in the sandbox every loop iteration costs a termination check,
// a trip out of the compiled code); a final partial word is moved by
// overlapping the last full word, or byte by byte when the whole block is
// shorter than 8 bytes.

/// Repeats a block 8 times with $k = 0..7 (straight-line code: no loop).
macro_rules! unroll8 {
    ($k:ident, $body:block) => {{
        { let $k = 0usize; $body }
        { let $k = 1usize; $body }
        { let $k = 2usize; $body }
        { let $k = 3usize; $body }
        { let $k = 4usize; $body }
        { let $k = 5usize; $body }
        { let $k = 6usize; $body }
        { let $k = 7usize; $body }
    }};
}

/// Reads n bytes through load64 (offset -> 8 bytes) and load8 (offset ->
/// byte), offsets relative to the start.
#[cfg(target_arch = "wasm32")]
fn read_words(n: usize, load64: impl Fn(u64) -> u64, load8: impl Fn(u64) -> u8) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut i = 0;
    while i + 64 <= n {
        unroll8!(k, {
            let w = load64((i + 8 * k) as u64);
            buf[i + 8 * k..i + 8 * k + 8].copy_from_slice(&w.to_le_bytes());
        });
        i += 64;
    }
    while i + 8 <= n {
        let w = load64(i as u64);
        buf[i..i + 8].copy_from_slice(&w.to_le_bytes());
        i += 8;
    }
    if i < n {
        if n >= 8 {
            let w = load64((n - 8) as u64);
            buf[n - 8..].copy_from_slice(&w.to_le_bytes());
        } else {
            for (j, b) in buf.iter_mut().enumerate() {
                *b = load8(j as u64);
            }
        }
    }
    buf
}

/// Returns the input of the current export call.
#[cfg(target_arch = "wasm32")]
pub fn input() -> Vec<u8> {
    let n = unsafe { sys::input_length() } as usize;
    read_words(n, |o| unsafe { sys::input_load_u64(o) }, |o| unsafe { sys::input_load_u8(o) })
}

/// Copies bytes into a new kernel memory block and returns its offset
/// (0 for an empty slice).
#[cfg(target_arch = "wasm32")]
pub fn write_block(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    if n == 0 {
        return 0;
    }
    let off = unsafe { sys::alloc(n as u64) };
    if off == 0 {
        return 0;
    }
    let mut i = 0usize;
    while i + 64 <= n {
        unroll8!(k, {
            unsafe { sys::store_u64(off + (i + 8 * k) as u64, load8(bytes, i + 8 * k)) };
        });
        i += 64;
    }
    while i + 8 <= n {
        unsafe { sys::store_u64(off + i as u64, load8(bytes, i)) };
        i += 8;
    }
    if i < n {
        if n >= 8 {
            unsafe { sys::store_u64(off + (n - 8) as u64, load8(bytes, n - 8)) };
        } else {
            for (j, b) in bytes.iter().enumerate() {
                unsafe { sys::store_u8(off + j as u64, *b) };
            }
        }
    }
    off
}

/// Reads a whole kernel memory block (0 reads as empty).
#[cfg(target_arch = "wasm32")]
pub fn read_block(off: u64) -> Vec<u8> {
    if off == 0 {
        return Vec::new();
    }
    let n = unsafe { sys::length(off) } as usize;
    read_words(n, |o| unsafe { sys::load_u64(off + o) }, |o| unsafe { sys::load_u8(off + o) })
}

/// Sets the output of the current export call.
#[cfg(target_arch = "wasm32")]
pub fn set_output(bytes: &[u8]) {
    let off = write_block(bytes);
    unsafe { sys::output_set(off, bytes.len() as u64) };
}

/// Fails the current export call with msg (the export must then return
/// non-zero).
#[cfg(target_arch = "wasm32")]
pub fn set_error(msg: &str) {
    let msg = if msg.is_empty() { "plugin error" } else { msg };
    unsafe { sys::error_set(write_block(msg.as_bytes())) };
}

/// Log levels for [`log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Sends a message to the host's log (the host decides whether to keep it).
#[cfg(target_arch = "wasm32")]
pub fn log(level: Level, msg: &str) {
    if msg.is_empty() {
        return;
    }
    // The kernel frees the block.
    let off = write_block(msg.as_bytes());
    unsafe {
        match level {
            Level::Debug => sys::log_debug(off),
            Level::Info => sys::log_info(off),
            Level::Warn => sys::log_warn(off),
            Level::Error => sys::log_error(off),
        }
    }
}

/// Native builds (unit tests) have no host log.
#[cfg(not(target_arch = "wasm32"))]
pub fn log(_level: Level, _msg: &str) {}

/// Returns the configuration value key, if the operator set one.
#[cfg(target_arch = "wasm32")]
pub fn config(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    let k = write_block(key.as_bytes());
    let v = unsafe { sys::config_get(k) };
    unsafe { sys::free(k) };
    if v == 0 {
        return None;
    }
    let b = read_block(v);
    unsafe { sys::free(v) };
    String::from_utf8(b).ok()
}

/// Native builds (unit tests) have no configuration.
#[cfg(not(target_arch = "wasm32"))]
pub fn config(_key: &str) -> Option<String> {
    None
}

/// Calls an MDSA host function with a JSON request and returns the reply.
#[cfg(target_arch = "wasm32")]
fn host_call(func: &str, req: &[u8]) -> Result<Vec<u8>, HostError> {
    let off = write_block(req);
    let r = unsafe {
        match func {
            "mdsa_generate" => sys::mdsa_generate(off),
            "mdsa_embed" => sys::mdsa_embed(off),
            "mdsa_count_tokens" => sys::mdsa_count_tokens(off),
            _ => 0,
        }
    };
    if off != 0 {
        unsafe { sys::free(off) };
    }
    if r == 0 {
        return Err(HostError::new(ERR_BAD_REPLY, &format!("{func}: the host returned no reply")));
    }
    let out = read_block(r);
    unsafe { sys::free(r) };
    Ok(out)
}

thread_local! {
    // Native builds only: what serves host calls in unit tests.
    static NATIVE_HOST: RefCell<Option<Box<dyn Fn(&str, &[u8]) -> Vec<u8>>>> = RefCell::new(None);
}

/// Native builds (unit tests): sets the function that answers host calls
/// (function name, request JSON) -> reply JSON. Without one every call is
/// refused with `unavailable`.
pub fn set_native_host(f: Option<Box<dyn Fn(&str, &[u8]) -> Vec<u8>>>) {
    NATIVE_HOST.with(|h| *h.borrow_mut() = f);
}

#[cfg(not(target_arch = "wasm32"))]
fn host_call(func: &str, req: &[u8]) -> Result<Vec<u8>, HostError> {
    NATIVE_HOST.with(|h| match &*h.borrow() {
        Some(f) => Ok(f(func, req)),
        None => Err(HostError::new(ERR_UNAVAILABLE, &format!("{func}: no host in a native build"))),
    })
}

// ---------------------------------------------------------------------------
// Byte scanning, 8 bytes per step (SWAR). Each mask has bit 7 of a byte set
// where the byte matches; the lowest set bit is always exact (higher ones
// may be false after a true match), so callers use only the first match.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The 8 bytes at b[i..i+8] as a little-endian word (i + 8 <= b.len()).
#[inline(always)]
fn load8(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

/// Bytes equal to 0.
#[inline(always)]
fn zero_mask(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Bytes equal to c.
#[inline(always)]
fn byte_mask(v: u64, c: u8) -> u64 {
    zero_mask(v ^ (LO * c as u64))
}

/// Bytes below n (n <= 128).
#[inline(always)]
fn less_mask(v: u64, n: u8) -> u64 {
    v.wrapping_sub(LO * n as u64) & !v & HI
}

/// Index of the first flagged byte of a non-zero mask.
#[inline(always)]
fn first(m: u64) -> usize {
    (m.trailing_zeros() / 8) as usize
}

/// Returns the index of the first c in b at or after from.
pub fn find_byte(b: &[u8], from: usize, c: u8) -> Option<usize> {
    let mut i = from;
    while i + 8 <= b.len() {
        let m = byte_mask(load8(b, i), c);
        if m != 0 {
            return Some(i + first(m));
        }
        i += 8;
    }
    while i < b.len() {
        if b[i] == c {
            return Some(i);
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------
// JSON

/// A JSON value. Objects keep their members in document order; [`Json::get`]
/// returns the last member of a name, as Go's encoding/json would.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why a JSON document was refused, and where (byte offset).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub kind: JsonErrorKind,
    pub msg: String,
}

/// Kinds of JSON error. Only Syntax means the text is not JSON; the others
/// are limits of this parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// Not valid UTF-8.
    Encoding,
    /// Not JSON.
    Syntax,
    /// A number too large for a float64.
    Range,
    /// Nesting deeper than MAX_JSON_DEPTH.
    Depth,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            JsonErrorKind::Encoding => write!(f, "invalid UTF-8 at byte {}", self.offset),
            JsonErrorKind::Syntax => write!(f, "invalid JSON at byte {}: {}", self.offset, self.msg),
            JsonErrorKind::Range | JsonErrorKind::Depth => write!(f, "JSON at byte {}: {}", self.offset, self.msg),
        }
    }
}

impl Json {
    /// Parses exactly one JSON value (surrounded by optional white space)
    /// from UTF-8 text. Lone UTF-16 surrogates in \u escapes become U+FFFD.
    pub fn parse(input: &[u8]) -> Result<Json, JsonError> {
        let text = match std::str::from_utf8(input) {
            Ok(t) => t,
            Err(e) => {
                return Err(JsonError { offset: e.valid_up_to(), kind: JsonErrorKind::Encoding, msg: String::new() })
            }
        };
        let mut p = Parser { s: text, b: text.as_bytes(), i: 0, depth: 0 };
        p.ws();
        if p.i == p.b.len() {
            return Err(p.err("unexpected end of input"));
        }
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(p.err("trailing data after the JSON value"));
        }
        Ok(v)
    }

    /// Returns the member key of an object (the last one of that name).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The number as an integer, if it is one and fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) if n.fract() == 0.0 && n.abs() <= 9.007_199_254_740_992e15 => Some(*n as i64),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match self {
            Json::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Names the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// Appends the value's JSON encoding to out. Non-finite numbers are
    /// written as null.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => write_f64(out, *n),
            Json::String(s) => write_str(out, s),
            Json::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Object(m) => {
                out.push('{');
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Returns the value's JSON encoding.
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, msg: &str) -> JsonError {
        JsonError { offset: self.i, kind: JsonErrorKind::Syntax, msg: msg.to_string() }
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Json, JsonError> {
        if self.i >= self.b.len() {
            return Err(self.err("unexpected end of input"));
        }
        match self.b[self.i] {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => Ok(Json::String(self.string()?)),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.err("unexpected character")),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, JsonError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_JSON_DEPTH {
            return Err(JsonError {
                offset: self.i,
                kind: JsonErrorKind::Depth,
                msg: format!("nesting deeper than {MAX_JSON_DEPTH} levels"),
            });
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Json, JsonError> {
        self.enter()?;
        self.i += 1; // {
        let mut members = Vec::new();
        self.ws();
        if self.i < self.b.len() && self.b[self.i] == b'}' {
            self.i += 1;
            self.depth -= 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.ws();
            if self.i >= self.b.len() || self.b[self.i] != b'"' {
                return Err(self.err("expected a string (member name)"));
            }
            let k = self.string()?;
            self.ws();
            if self.i >= self.b.len() || self.b[self.i] != b':' {
                return Err(self.err("expected ':' after a member name"));
            }
            self.i += 1;
            self.ws();
            let v = self.value()?;
            members.push((k, v));
            self.ws();
            if self.i >= self.b.len() {
                return Err(self.err("unexpected end of input in an object"));
            }
            match self.b[self.i] {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self) -> Result<Json, JsonError> {
        self.enter()?;
        self.i += 1; // [
        let mut items = Vec::new();
        self.ws();
        if self.i < self.b.len() && self.b[self.i] == b']' {
            self.i += 1;
            self.depth -= 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            if self.i >= self.b.len() {
                return Err(self.err("unexpected end of input in an array"));
            }
            match self.b[self.i] {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        if self.i + 4 > self.b.len() {
            return Err(self.err("short \\u escape"));
        }
        let mut v = 0u32;
        for k in 0..4 {
            let d = match self.b[self.i + k] {
                c @ b'0'..=b'9' => c - b'0',
                c @ b'a'..=b'f' => c - b'a' + 10,
                c @ b'A'..=b'F' => c - b'A' + 10,
                _ => {
                    self.i += k;
                    return Err(self.err("invalid hex digit in a \\u escape"));
                }
            };
            v = v * 16 + d as u32;
        }
        self.i += 4;
        Ok(v)
    }

    /// Parses a string starting at the opening quote. Runs of plain text are
    /// copied as slices: their ends are ASCII bytes, so char boundaries.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1; // "
        let mut out = String::new();
        let mut start = self.i;
        loop {
            // Skip plain text 8 bytes at a time.
            while self.i + 8 <= self.b.len() {
                let v = load8(self.b, self.i);
                let m = byte_mask(v, b'"') | byte_mask(v, b'\\') | less_mask(v, 0x20);
                if m != 0 {
                    self.i += first(m);
                    break;
                }
                self.i += 8;
            }
            if self.i >= self.b.len() {
                return Err(self.err("unterminated string"));
            }
            match self.b[self.i] {
                b'"' => {
                    out.push_str(&self.s[start..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.s[start..self.i]);
                    self.i += 1;
                    if self.i >= self.b.len() {
                        return Err(self.err("unterminated escape"));
                    }
                    let c = self.b[self.i];
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate: combine with a following
                                // low one, else U+FFFD.
                                if self.b[self.i..].starts_with(b"\\u") {
                                    let save = self.i;
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if (0xDC00..0xE000).contains(&lo) {
                                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                    } else {
                                        self.i = save;
                                        0xFFFD
                                    }
                                } else {
                                    0xFFFD
                                }
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.err("invalid escape"));
                        }
                    }
                    start = self.i;
                }
                c if c < 0x20 => return Err(self.err("control character in a string")),
                _ => self.i += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let s = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - s
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        if self.i < self.b.len() && self.b[self.i] == b'0' {
            self.i += 1;
        } else if self.digits() == 0 {
            return Err(self.err("invalid number"));
        }
        if self.i < self.b.len() && self.b[self.i] == b'.' {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number: digits expected after '.'"));
            }
        }
        if self.i < self.b.len() && (self.b[self.i] == b'e' || self.b[self.i] == b'E') {
            self.i += 1;
            if self.i < self.b.len() && (self.b[self.i] == b'+' || self.b[self.i] == b'-') {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number: digits expected in the exponent"));
            }
        }
        match self.s[start..self.i].parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Json::Number(n)),
            _ => Err(JsonError { offset: start, kind: JsonErrorKind::Range, msg: "number out of range".to_string() }),
        }
    }
}

/// Appends s as a JSON string (quoted and escaped) to out. Non-ASCII text is
/// written as UTF-8, except U+2028 and U+2029, which are escaped.
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    write_str_body(out, s);
    out.push('"');
}

/// write_str without the quotes.
fn write_str_body(out: &mut String, s: &str) {
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        // Plain text 8 bytes at a time.
        if i + 8 <= b.len() {
            let v = load8(b, i);
            let m = byte_mask(v, b'"') | byte_mask(v, b'\\') | less_mask(v, 0x20) | byte_mask(v, 0xE2);
            if m == 0 {
                i += 8;
                continue;
            }
            i += first(m);
        }
        let c = b[i];
        let esc: &str = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            // U+2028 / U+2029 are E2 80 A8 / E2 80 A9.
            0xE2 if b.len() >= i + 3 && b[i + 1] == 0x80 && (b[i + 2] == 0xA8 || b[i + 2] == 0xA9) => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[start..i]);
        if !esc.is_empty() {
            out.push_str(esc);
            i += 1;
        } else if c < 0x20 {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(c >> 4) as usize] as char);
            out.push(HEX[(c & 15) as usize] as char);
            i += 1;
        } else {
            out.push_str(if b[i + 2] == 0xA8 { "\\u2028" } else { "\\u2029" });
            i += 3;
        }
        start = i;
    }
    out.push_str(&s[start..]);
}

/// Appends a number: integers without a fraction, other finite values in
/// the shortest form that reads back the same, non-finite ones as null.
pub fn write_f64(out: &mut String, n: f64) {
    if !n.is_finite() {
        out.push_str("null");
    } else if n.fract() == 0.0 && n.abs() < 1e15 {
        out.push_str(&(n as i64).to_string());
    } else {
        out.push_str(&n.to_string());
    }
}

fn write_f32(out: &mut String, n: f32) {
    if !n.is_finite() {
        out.push_str("null");
    } else if n.fract() == 0.0 && n.abs() < 1e7 {
        out.push_str(&(n as i64).to_string());
    } else {
        out.push_str(&n.to_string());
    }
}

/// Writes a JSON object member by member.
pub struct ObjWriter<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> ObjWriter<'a> {
    /// Starts an object in out.
    pub fn new(out: &'a mut String) -> Self {
        out.push('{');
        ObjWriter { out, first: true }
    }

    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, k);
        self.out.push(':');
        self.out
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        write_str(self.key(k), v);
        self
    }

    pub fn int(&mut self, k: &str, v: i64) -> &mut Self {
        let o = self.key(k);
        o.push_str(&v.to_string());
        self
    }

    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        write_f64(self.key(k), v);
        self
    }

    pub fn boolean(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k).push_str(if v { "true" } else { "false" });
        self
    }

    pub fn strs(&mut self, k: &str, v: &[String]) -> &mut Self {
        let o = self.key(k);
        o.push('[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            write_str(o, s);
        }
        o.push(']');
        self
    }

    /// Writes a member whose value the closure appends as raw JSON.
    pub fn raw(&mut self, k: &str, f: impl FnOnce(&mut String)) -> &mut Self {
        f(self.key(k));
        self
    }

    /// Closes the object.
    pub fn end(&mut self) {
        self.out.push('}');
    }
}

// Decoding helpers: Go encoding/json semantics for the documented fields
// (null or missing means the zero value; unknown fields are ignored; a
// value of the wrong type is an error).

fn want_object<'j>(v: &'j Json, what: &str) -> Result<&'j Json, String> {
    match v {
        Json::Object(_) => Ok(v),
        other => Err(format!("{what}: want a JSON object, got {}", other.kind())),
    }
}

fn field_str(obj: &Json, key: &str) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("field {key:?}: want a string, got {}", other.kind())),
    }
}

fn field_int(obj: &Json, key: &str) -> Result<i64, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(0),
        Some(v @ Json::Number(_)) => v.as_i64().ok_or_else(|| format!("field {key:?}: want an integer")),
        Some(other) => Err(format!("field {key:?}: want a number, got {}", other.kind())),
    }
}

fn field_f32(obj: &Json, key: &str) -> Result<Option<f32>, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => Ok(Some(*n as f32)),
        Some(other) => Err(format!("field {key:?}: want a number, got {}", other.kind())),
    }
}

fn field_strs(obj: &Json, key: &str) -> Result<Vec<String>, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Json::String(s) => Ok(s.clone()),
                Json::Null => Ok(String::new()),
                other => Err(format!("field {key:?}[{i}]: want a string, got {}", other.kind())),
            })
            .collect(),
        Some(other) => Err(format!("field {key:?}: want an array, got {}", other.kind())),
    }
}

fn field_messages(obj: &Json, key: &str) -> Result<Vec<Message>, String> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Json::Object(_) => Ok(Message {
                    role: field_str(v, "role").map_err(|e| format!("field {key:?}[{i}]: {e}"))?,
                    content: field_str(v, "content").map_err(|e| format!("field {key:?}[{i}]: {e}"))?,
                }),
                Json::Null => Ok(Message::default()),
                other => Err(format!("field {key:?}[{i}]: want an object, got {}", other.kind())),
            })
            .collect(),
        Some(other) => Err(format!("field {key:?}: want an array, got {}", other.kind())),
    }
}

fn parse_object(input: &[u8]) -> Result<Json, String> {
    if input.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return Err("empty input: want a JSON object".to_string());
    }
    let v = Json::parse(input).map_err(|e| format!("decode input: {e}"))?;
    want_object(&v, "decode input")?;
    Ok(v)
}

// ---------------------------------------------------------------------------
// The ABI's JSON shapes

/// One chat turn.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message { role: role.to_string(), content: content.to_string() }
    }
    pub fn system(content: &str) -> Message {
        Message::new(ROLE_SYSTEM, content)
    }
    pub fn user(content: &str) -> Message {
        Message::new(ROLE_USER, content)
    }
    pub fn assistant(content: &str) -> Message {
        Message::new(ROLE_ASSISTANT, content)
    }
}

fn write_messages(out: &mut String, msgs: &[Message]) {
    out.push('[');
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        ObjWriter::new(out).str("role", &m.role).str("content", &m.content).end();
    }
    out.push(']');
}

/// Sampling settings. Zero and None mean "not set".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generation {
    pub max_tokens: u32,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: u32,
    pub repeat_penalty: Option<f32>,
    pub stop: Vec<String>,
    pub seed: Option<u32>,
}

impl Generation {
    /// Returns self with every field that over sets replacing self's.
    pub fn merge(&self, over: &Generation) -> Generation {
        let mut g = self.clone();
        if over.max_tokens != 0 {
            g.max_tokens = over.max_tokens;
        }
        if over.temperature.is_some() {
            g.temperature = over.temperature;
        }
        if over.top_p.is_some() {
            g.top_p = over.top_p;
        }
        if over.top_k != 0 {
            g.top_k = over.top_k;
        }
        if over.repeat_penalty.is_some() {
            g.repeat_penalty = over.repeat_penalty;
        }
        if !over.stop.is_empty() {
            g.stop = over.stop.clone();
        }
        if over.seed.is_some() {
            g.seed = over.seed;
        }
        g
    }

    /// Writes the set fields as members of w.
    fn write_fields(&self, w: &mut ObjWriter) {
        if self.max_tokens != 0 {
            w.int("max_tokens", self.max_tokens as i64);
        }
        if let Some(t) = self.temperature {
            w.raw("temperature", |o| write_f32(o, t));
        }
        if let Some(t) = self.top_p {
            w.raw("top_p", |o| write_f32(o, t));
        }
        if self.top_k != 0 {
            w.int("top_k", self.top_k as i64);
        }
        if let Some(t) = self.repeat_penalty {
            w.raw("repeat_penalty", |o| write_f32(o, t));
        }
        if !self.stop.is_empty() {
            w.strs("stop", &self.stop);
        }
        if let Some(s) = self.seed {
            w.int("seed", s as i64);
        }
    }

    fn write(&self, out: &mut String) {
        let mut w = ObjWriter::new(out);
        self.write_fields(&mut w);
        w.end();
    }

    fn check(&self, field: &str) -> Result<(), String> {
        let range = |name: &str, v: Option<f32>, hi: f32| match v {
            Some(x) if !(0.0..=hi).contains(&x) => Err(format!("{field}.{name}: {x} out of range [0, {hi}]")),
            _ => Ok(()),
        };
        range("temperature", self.temperature, 10.0)?;
        range("top_p", self.top_p, 1.0)?;
        range("repeat_penalty", self.repeat_penalty, 10.0)?;
        if self.max_tokens > 1 << 20 {
            return Err(format!("{field}.max_tokens: {} out of range", self.max_tokens));
        }
        if self.top_k > 1 << 20 {
            return Err(format!("{field}.top_k: {} out of range", self.top_k));
        }
        if self.stop.len() > MAX_STOPS {
            return Err(format!("{field}.stop: {} entries, at most {MAX_STOPS}", self.stop.len()));
        }
        for s in &self.stop {
            if s.is_empty() || s.len() > MAX_STOP_LEN {
                return Err(format!("{field}.stop: {s:?} must be 1-{MAX_STOP_LEN} bytes"));
            }
        }
        Ok(())
    }

    fn decode(obj: &Json) -> Result<Generation, String> {
        let int = |k: &str| -> Result<u32, String> {
            let v = field_int(obj, k)?;
            u32::try_from(v).map_err(|_| format!("field {k:?}: {v} out of range"))
        };
        Ok(Generation {
            max_tokens: int("max_tokens")?,
            temperature: field_f32(obj, "temperature")?,
            top_p: field_f32(obj, "top_p")?,
            top_k: int("top_k")?,
            repeat_penalty: field_f32(obj, "repeat_penalty")?,
            stop: field_strs(obj, "stop")?,
            seed: match obj.get("seed") {
                None | Some(Json::Null) => None,
                Some(_) => Some(int("seed")?),
            },
        })
    }
}

/// Which model the plugin wants the host to run for it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelPref {
    /// TIER_DOMAIN, TIER_REASONER or "" (host's choice).
    pub tier: String,
    /// Model names in order of preference (hints).
    pub prefer: Vec<String>,
    /// Smallest context window, in tokens, the prompts need.
    pub min_context: u32,
}

/// One tool in the manifest (ABI 1.1, sdk/ABI.md section 4.5).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolSpec {
    /// 1-64 of [A-Za-z0-9_-], unique within the plugin.
    pub name: String,
    /// What the tool does and when to use it, for the model.
    pub description: String,
    /// The JSON Schema of the arguments, as JSON text (an object schema of
    /// at most 64 KB); "" means no arguments.
    pub parameters: String,
}

/// What describe returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifest {
    /// The minor version of ABI 1 the plugin is written for (0: none
    /// stated); declaring tools needs ABI_MINOR_TOOLS, which
    /// Plugin::compile sets.
    pub abi_minor: i64,
    pub name: String,
    pub version: String,
    pub description: String,
    pub keywords: Vec<String>,
    pub examples: Vec<String>,
    pub model: ModelPref,
    pub generation: Generation,
    pub capabilities: Vec<String>,
    /// Tools the plugin implements (the tool export runs them).
    pub tools: Vec<ToolSpec>,
}

/// Whether s is a valid tool name: 1-64 of [A-Za-z0-9_-].
pub fn valid_tool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TOOL_NAME_LEN
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

impl Manifest {
    /// Checks the manifest as the host will (ABI section 4.1), plus the
    /// SDK's rule that names start with a letter.
    pub fn check(&self) -> Result<(), String> {
        let n = self.name.as_bytes();
        if n.is_empty()
            || n.len() > MAX_NAME_LEN
            || !n[0].is_ascii_lowercase()
            || !n.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        {
            return Err(format!(
                "manifest name {:?}: want 1-{MAX_NAME_LEN} of [a-z0-9_-], starting with a letter",
                self.name
            ));
        }
        if self.version.trim().is_empty() || self.version.len() > MAX_VERSION_LEN {
            return Err(format!("manifest version {:?}: want 1-{MAX_VERSION_LEN} bytes", self.version));
        }
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(format!("manifest description: {} bytes, at most {MAX_DESCRIPTION_LEN}", self.description.len()));
        }
        let list = |field: &str, items: &[String], max_n: usize, max_len: usize| -> Result<(), String> {
            if items.len() > max_n {
                return Err(format!("manifest {field}: {} entries, at most {max_n}", items.len()));
            }
            for (i, s) in items.iter().enumerate() {
                if s.trim().is_empty() || s.len() > max_len {
                    return Err(format!("manifest {field}[{i}] {s:?}: want 1-{max_len} bytes, not blank"));
                }
            }
            Ok(())
        };
        list("keywords", &self.keywords, MAX_KEYWORDS, MAX_KEYWORD_LEN)?;
        list("examples", &self.examples, MAX_EXAMPLES, MAX_EXAMPLE_LEN)?;
        if self.keywords.is_empty() && self.examples.is_empty() {
            return Err("manifest keywords and examples are both empty: the router has nothing to match".to_string());
        }
        match self.model.tier.as_str() {
            "" | TIER_DOMAIN | TIER_REASONER => {}
            t => return Err(format!("manifest model tier {t:?} is unknown")),
        }
        list("model.prefer", &self.model.prefer, MAX_PREFER, MAX_MODEL_NAME_LEN)?;
        if self.model.min_context > 1 << 24 {
            return Err(format!("manifest model.min_context {} out of range", self.model.min_context));
        }
        self.generation.check("manifest generation")?;
        for (i, c) in self.capabilities.iter().enumerate() {
            if !matches!(c.as_str(), CAP_GENERATE | CAP_EMBED | CAP_COUNT_TOKENS) {
                return Err(format!("manifest capability {c:?} is unknown"));
            }
            if self.capabilities[..i].contains(c) {
                return Err(format!("manifest capability {c:?} is listed twice"));
            }
        }
        self.check_tools()
    }

    fn check_tools(&self) -> Result<(), String> {
        if self.abi_minor < 0 {
            return Err(format!("manifest abi_minor {} is negative", self.abi_minor));
        }
        if self.tools.is_empty() {
            return Ok(());
        }
        if self.abi_minor < ABI_MINOR_TOOLS {
            return Err(format!("manifest tools need abi_minor {ABI_MINOR_TOOLS} or later (abi_minor is {})", self.abi_minor));
        }
        if self.tools.len() > MAX_TOOLS {
            return Err(format!("manifest declares {} tools, at most {MAX_TOOLS}", self.tools.len()));
        }
        for (i, t) in self.tools.iter().enumerate() {
            let at = format!("manifest tools[{i}] {:?}", t.name);
            if !valid_tool_name(&t.name) {
                return Err(format!("{at}: want a name of 1-{MAX_TOOL_NAME_LEN} of [A-Za-z0-9_-]"));
            }
            if self.tools[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("{at}: the name is declared twice"));
            }
            if t.description.len() > MAX_DESCRIPTION_LEN {
                return Err(format!("{at}: description: {} bytes, at most {MAX_DESCRIPTION_LEN}", t.description.len()));
            }
            let schema = t.parameters.trim();
            if schema.is_empty() {
                continue;
            }
            if schema.len() > MAX_TOOL_SCHEMA_LEN {
                return Err(format!("{at}: parameters: {} bytes, at most {MAX_TOOL_SCHEMA_LEN}", schema.len()));
            }
            match Json::parse(schema.as_bytes()) {
                Ok(Json::Object(_)) => {}
                Ok(_) => return Err(format!("{at}: parameters: want a JSON Schema object")),
                Err(e) => return Err(format!("{at}: parameters: {e}")),
            }
        }
        Ok(())
    }

    /// The manifest's JSON (describe's output).
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let mut w = ObjWriter::new(&mut out);
        w.int("abi", ABI_VERSION);
        if self.abi_minor != 0 {
            w.int("abi_minor", self.abi_minor);
        }
        w.str("name", &self.name).str("version", &self.version);
        if !self.description.is_empty() {
            w.str("description", &self.description);
        }
        w.strs("keywords", &self.keywords).strs("examples", &self.examples);
        w.raw("model", |o| {
            let mut m = ObjWriter::new(o);
            if !self.model.tier.is_empty() {
                m.str("tier", &self.model.tier);
            }
            if !self.model.prefer.is_empty() {
                m.strs("prefer", &self.model.prefer);
            }
            if self.model.min_context != 0 {
                m.int("min_context", self.model.min_context as i64);
            }
            m.end();
        });
        w.raw("generation", |o| self.generation.write(o));
        w.strs("capabilities", &self.capabilities);
        if !self.tools.is_empty() {
            w.raw("tools", |o| {
                o.push('[');
                for (i, t) in self.tools.iter().enumerate() {
                    if i > 0 {
                        o.push(',');
                    }
                    let mut tw = ObjWriter::new(o);
                    tw.str("name", &t.name);
                    if !t.description.is_empty() {
                        tw.str("description", &t.description);
                    }
                    let schema = t.parameters.trim();
                    if !schema.is_empty() {
                        // check() parsed it as one JSON object: it goes in as written.
                        tw.raw("parameters", |o| o.push_str(schema));
                    }
                    tw.end();
                }
                o.push(']');
            });
        }
        w.end();
        out
    }
}

/// The input of prompt and handle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptRequest {
    /// The user's text.
    pub query: String,
    /// Earlier turns, oldest first.
    pub history: Vec<Message>,
    /// String values the host or tenant supplies; the last of a duplicated
    /// key wins.
    pub context: Vec<(String, String)>,
}

impl PromptRequest {
    /// Decodes the JSON the host sends.
    pub fn decode(input: &[u8]) -> Result<PromptRequest, String> {
        let v = parse_object(input)?;
        let context = match v.get("context") {
            None | Some(Json::Null) => Vec::new(),
            Some(Json::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Json::String(s) => Ok((k.clone(), s.clone())),
                    Json::Null => Ok((k.clone(), String::new())),
                    other => Err(format!("field \"context\"[{k:?}]: want a string, got {}", other.kind())),
                })
                .collect::<Result<Vec<_>, String>>()?,
            Some(other) => return Err(format!("field \"context\": want an object, got {}", other.kind())),
        };
        Ok(PromptRequest { query: field_str(&v, "query")?, history: field_messages(&v, "history")?, context })
    }

    /// The value of context key, or "" when absent.
    pub fn context_value(&self, key: &str) -> &str {
        self.context.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

/// The output of prompt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptResponse {
    pub messages: Vec<Message>,
    /// Per-request overrides of the manifest's generation defaults.
    pub generation: Generation,
}

impl PromptResponse {
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let mut w = ObjWriter::new(&mut out);
        w.raw("messages", |o| write_messages(o, &self.messages));
        w.raw("generation", |o| self.generation.write(o));
        w.end();
        out
    }
}

/// The input of validate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValidateRequest {
    pub query: String,
    /// The model's full answer.
    pub response: String,
    /// The domain the query was routed to.
    pub domain: String,
}

impl ValidateRequest {
    /// Decodes the JSON the host sends.
    pub fn decode(input: &[u8]) -> Result<ValidateRequest, String> {
        let v = parse_object(input)?;
        Ok(ValidateRequest {
            query: field_str(&v, "query")?,
            response: field_str(&v, "response")?,
            domain: field_str(&v, "domain")?,
        })
    }
}

/// One finding of a validator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Issue {
    /// Machine-readable code, 1-64 bytes.
    pub code: String,
    /// SEVERITY_INFO, SEVERITY_WARNING or SEVERITY_ERROR.
    pub severity: String,
    pub message: String,
}

impl Issue {
    pub fn new(code: &str, severity: &str, message: &str) -> Issue {
        Issue { code: code.to_string(), severity: severity.to_string(), message: message.to_string() }
    }
    pub fn error(code: &str, message: &str) -> Issue {
        Issue::new(code, SEVERITY_ERROR, message)
    }
    pub fn warning(code: &str, message: &str) -> Issue {
        Issue::new(code, SEVERITY_WARNING, message)
    }
    pub fn info(code: &str, message: &str) -> Issue {
        Issue::new(code, SEVERITY_INFO, message)
    }
}

/// The output of validate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Validation {
    /// True when no issue has error severity.
    pub ok: bool,
    /// Quality in [0, 1]; 1 = no findings.
    pub score: f64,
    pub issues: Vec<Issue>,
    /// The revised answer, when a validator changed it.
    pub response: Option<String>,
}

/// Cuts s to at most max bytes at a char boundary.
fn clip_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Validation {
    /// Writes the validation, bounded so that the host accepts it: at most
    /// MAX_ISSUES issues, codes and messages clipped, unknown severities
    /// reported as errors, the score clamped to [0, 1].
    fn write(&self, out: &mut String) {
        let mut w = ObjWriter::new(out);
        w.boolean("ok", self.ok);
        let s = if self.score.is_nan() { 0.0 } else { self.score.max(0.0).min(1.0) };
        w.num("score", s);
        w.raw("issues", |o| {
            o.push('[');
            for (i, is) in self.issues.iter().take(MAX_ISSUES).enumerate() {
                if i > 0 {
                    o.push(',');
                }
                let code = clip_bytes(is.code.trim(), MAX_ISSUE_CODE_LEN);
                let sev = match is.severity.as_str() {
                    SEVERITY_INFO | SEVERITY_WARNING | SEVERITY_ERROR => is.severity.as_str(),
                    _ => SEVERITY_ERROR,
                };
                ObjWriter::new(o)
                    .str("code", if code.is_empty() { "unnamed" } else { code })
                    .str("severity", sev)
                    .str("message", clip_bytes(&is.message, MAX_ISSUE_MESSAGE_LEN))
                    .end();
            }
            o.push(']');
        });
        if let Some(r) = &self.response {
            w.str("response", r);
        }
        w.end();
    }

    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// The output of handle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HandleResponse {
    pub response: String,
    pub validation: Validation,
}

impl HandleResponse {
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let mut w = ObjWriter::new(&mut out);
        w.str("response", &self.response);
        w.raw("validation", |o| self.validation.write(o));
        w.end();
        out
    }
}

/// The input of the tool export (ABI 1.1).
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRequest {
    /// Which tool to run.
    pub name: String,
    /// The arguments: a JSON object the host checked against the tool's
    /// parameters; an empty object when the call has none.
    pub arguments: Json,
    /// The query being answered.
    pub query: String,
}

impl ToolRequest {
    /// Decodes the JSON the host sends.
    pub fn decode(input: &[u8]) -> Result<ToolRequest, String> {
        let v = parse_object(input)?;
        let arguments = match v.get("arguments") {
            None | Some(Json::Null) => Json::Object(Vec::new()),
            Some(a) => a.clone(),
        };
        Ok(ToolRequest { name: field_str(&v, "name")?, arguments, query: field_str(&v, "query")? })
    }
}

/// The output of the tool export: what the model reads as the call's
/// result, and whether the call failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolResponse {
    pub content: String,
    pub is_error: bool,
}

impl ToolResponse {
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.content.len() + 32);
        let mut w = ObjWriter::new(&mut out);
        w.str("content", &self.content);
        if self.is_error {
            w.boolean("is_error", true);
        }
        w.end();
        out
    }
}

// ---------------------------------------------------------------------------
// Host functions

/// A refusal or failure of a host function: {"error":{"code","message"}},
/// or ERR_BAD_REPLY when the reply could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    pub code: String,
    pub message: String,
}

impl HostError {
    pub fn new(code: &str, message: &str) -> HostError {
        HostError { code: code.to_string(), message: message.to_string() }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<HostError> for String {
    fn from(e: HostError) -> String {
        e.to_string()
    }
}

/// A request for mdsa_generate: set messages (chat) or prompt (raw text).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerateRequest {
    pub messages: Vec<Message>,
    pub prompt: String,
    pub generation: Generation,
}

impl GenerateRequest {
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        let mut w = ObjWriter::new(&mut out);
        if !self.messages.is_empty() {
            w.raw("messages", |o| write_messages(o, &self.messages));
        }
        if !self.prompt.is_empty() {
            w.str("prompt", &self.prompt);
        }
        self.generation.write_fields(&mut w);
        w.end();
        out
    }
}

/// The reply of mdsa_generate.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerateResponse {
    pub text: String,
    pub model: String,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// "stop" or "length".
    pub finish_reason: String,
}

/// The reply of mdsa_embed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbedResponse {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
}

/// Decodes a host reply: the refusal if it has an "error" member, else the
/// object.
fn host_reply(func: &str, reply: &[u8]) -> Result<Json, HostError> {
    let v = Json::parse(reply).map_err(|e| HostError::new(ERR_BAD_REPLY, &format!("{func}: decode reply: {e}")))?;
    if !matches!(v, Json::Object(_)) {
        return Err(HostError::new(ERR_BAD_REPLY, &format!("{func}: reply is {}, want an object", v.kind())));
    }
    match v.get("error") {
        None | Some(Json::Null) => Ok(v),
        Some(e) => {
            let code = field_str(e, "code").unwrap_or_default();
            let message = field_str(e, "message").unwrap_or_default();
            Err(HostError { code: if code.is_empty() { ERR_ENGINE.to_string() } else { code }, message })
        }
    }
}

fn bad_reply(func: &str, e: String) -> HostError {
    HostError::new(ERR_BAD_REPLY, &format!("{func}: decode reply: {e}"))
}

/// Runs the model (mdsa_generate; capability CAP_GENERATE). Unset sampling
/// fields take the manifest's defaults on the host.
pub fn generate(req: &GenerateRequest) -> Result<GenerateResponse, HostError> {
    const F: &str = "mdsa_generate";
    let v = host_reply(F, &host_call(F, req.to_json().as_bytes())?)?;
    Ok(GenerateResponse {
        text: field_str(&v, "text").map_err(|e| bad_reply(F, e))?,
        model: field_str(&v, "model").map_err(|e| bad_reply(F, e))?,
        tokens_in: field_int(&v, "tokens_in").map_err(|e| bad_reply(F, e))?,
        tokens_out: field_int(&v, "tokens_out").map_err(|e| bad_reply(F, e))?,
        finish_reason: field_str(&v, "finish_reason").map_err(|e| bad_reply(F, e))?,
    })
}

/// Embeds texts (mdsa_embed; capability CAP_EMBED): one vector per input.
pub fn embed(input: &[String]) -> Result<EmbedResponse, HostError> {
    const F: &str = "mdsa_embed";
    let mut req = String::new();
    ObjWriter::new(&mut req).strs("input", input).end();
    let v = host_reply(F, &host_call(F, req.as_bytes())?)?;
    let mut vectors = Vec::new();
    match v.get("vectors") {
        None | Some(Json::Null) => {}
        Some(Json::Array(a)) => {
            for (i, row) in a.iter().enumerate() {
                let row = row.as_array().ok_or_else(|| bad_reply(F, format!("vectors[{i}]: want an array")))?;
                let mut out = Vec::with_capacity(row.len());
                for x in row {
                    out.push(x.as_f64().ok_or_else(|| bad_reply(F, format!("vectors[{i}]: want numbers")))? as f32);
                }
                vectors.push(out);
            }
        }
        Some(other) => return Err(bad_reply(F, format!("vectors: want an array, got {}", other.kind()))),
    }
    Ok(EmbedResponse { model: field_str(&v, "model").map_err(|e| bad_reply(F, e))?, vectors })
}

/// Counts the tokens of text with the tokenizer of the plugin's model
/// (mdsa_count_tokens; capability CAP_COUNT_TOKENS).
pub fn count_tokens(text: &str) -> Result<i64, HostError> {
    const F: &str = "mdsa_count_tokens";
    let mut req = String::new();
    ObjWriter::new(&mut req).str("text", text).end();
    let v = host_reply(F, &host_call(F, req.as_bytes())?)?;
    field_int(&v, "count").map_err(|e| bad_reply(F, e))
}

// ---------------------------------------------------------------------------
// Templates
//
//   {{query}}              the user's query
//   {{context.KEY}}        the value of context key KEY, or "" when absent
//   {{context.KEY|text}}   the same, with "text" when KEY is absent or empty
//   \{{                    a literal "{{"
//
// Spaces inside the braces are ignored. Rendering is one pass: text a
// placeholder inserts is never scanned again, so a query containing
// "{{context.secret}}" stays literal.

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    /// Literal text and its JSON escaping (without quotes).
    Text(String, String),
    Query,
    Context { key: String, default: String },
}

/// A parsed prompt template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template {
    segs: Vec<Seg>,
}

impl Template {
    /// Parses src.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut rest = src;
        let mut pos = 0; // byte offset of rest in src
        while let Some(j) = rest.find("{{") {
            if j > 0 && rest.as_bytes()[j - 1] == b'\\' {
                lit.push_str(&rest[..j - 1]);
                lit.push_str("{{");
                rest = &rest[j + 2..];
                pos += j + 2;
                continue;
            }
            lit.push_str(&rest[..j]);
            let after = &rest[j + 2..];
            let end = match after.find("}}") {
                Some(e) => e,
                None => return Err(format!("template: unclosed \"{{{{\" at byte {} (write \\{{{{ for a literal)", pos + j)),
            };
            let inner = after[..end].trim();
            let seg = if inner == "query" {
                Seg::Query
            } else if let Some(k) = inner.strip_prefix("context.") {
                let (key, default) = match k.split_once('|') {
                    Some((a, b)) => (a.trim(), b),
                    None => (k.trim(), ""),
                };
                if key.is_empty() {
                    return Err(format!("template: empty context key in {{{{{inner}}}}} at byte {}", pos + j));
                }
                if !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.') {
                    return Err(format!("template: context key {key:?}: only letters, digits, '_', '-' and '.'"));
                }
                Seg::Context { key: key.to_string(), default: default.to_string() }
            } else {
                return Err(format!(
                    "template: unknown placeholder {{{{{inner}}}}} at byte {} (want {{{{query}}}} or {{{{context.KEY}}}})",
                    pos + j
                ));
            };
            if !lit.is_empty() {
                segs.push(text_seg(std::mem::take(&mut lit)));
            }
            segs.push(seg);
            rest = &after[end + 2..];
            pos += j + 2 + end + 2;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            segs.push(text_seg(lit));
        }
        Ok(Template { segs })
    }

    /// Expands the template for req.
    pub fn render(&self, req: &PromptRequest) -> String {
        let mut out = String::new();
        for s in &self.segs {
            match s {
                Seg::Text(t, _) => out.push_str(t),
                Seg::Query => out.push_str(&req.query),
                Seg::Context { key, default } => {
                    let v = req.context_value(key);
                    out.push_str(if v.is_empty() { default } else { v });
                }
            }
        }
        out
    }
}

impl Template {
    /// Appends the expansion for req, JSON-escaped (without quotes), to
    /// out, and reports whether it is not empty. Literal text was escaped
    /// at parse time.
    fn render_json(&self, req: &PromptRequest, out: &mut String) -> bool {
        let start = out.len();
        for s in &self.segs {
            match s {
                Seg::Text(_, j) => out.push_str(j),
                Seg::Query => write_str_body(out, &req.query),
                Seg::Context { key, default } => {
                    let v = req.context_value(key);
                    write_str_body(out, if v.is_empty() { default } else { v });
                }
            }
        }
        out.len() > start
    }
}

fn text_seg(t: String) -> Seg {
    let mut j = String::with_capacity(t.len());
    write_str_body(&mut j, &t);
    Seg::Text(t, j)
}

/// Parses src and renders it for req (for custom prompt functions).
pub fn render_template(src: &str, req: &PromptRequest) -> Result<String, String> {
    Ok(Template::parse(src)?.render(req))
}

// ---------------------------------------------------------------------------
// Text helpers

/// Splits s into lower-case words: runs of letters and digits (any script).
/// Punctuation, hyphens and apostrophes separate words ("Risk-free" is
/// "risk", "free").
pub fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in s.chars() {
        if ch.is_alphanumeric() {
            if ch.is_ascii() {
                cur.push(ch.to_ascii_lowercase());
            } else {
                cur.extend(ch.to_lowercase());
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Returns a 64-bit hash (FNV-1a of the lower-cased UTF-8) of each word of
/// s, with the same word rules as [`words`]. Runs of 8 ASCII bytes are
/// handled in straight-line code, one loop iteration per 8 bytes.
pub fn word_hashes(s: &str) -> Vec<u64> {
    let b = s.as_bytes();
    let n = b.len();
    let mut out = Vec::with_capacity(n / 4 + 1);
    let mut h = FNV_OFFSET;
    let mut in_word = false;
    let mut i = 0;
    while i < n {
        if i + 8 <= n {
            let v = load8(b, i);
            if v & HI == 0 {
                unroll8!(k, {
                    let c = (v >> (8 * k)) as u8;
                    if c.is_ascii_alphanumeric() {
                        h = (h ^ c.to_ascii_lowercase() as u64).wrapping_mul(FNV_PRIME);
                        in_word = true;
                    } else if in_word {
                        out.push(h);
                        h = FNV_OFFSET;
                        in_word = false;
                    }
                });
                i += 8;
                continue;
            }
        }
        let c = b[i];
        if c < 0x80 {
            if c.is_ascii_alphanumeric() {
                h = (h ^ c.to_ascii_lowercase() as u64).wrapping_mul(FNV_PRIME);
                in_word = true;
            } else if in_word {
                out.push(h);
                h = FNV_OFFSET;
                in_word = false;
            }
            i += 1;
            continue;
        }
        // A non-ASCII character; i is at a char boundary (only whole ASCII
        // runs and whole characters are stepped over).
        let ch = s[i..].chars().next().unwrap_or('\u{FFFD}');
        if ch.is_alphanumeric() {
            for lc in ch.to_lowercase() {
                let mut buf = [0u8; 4];
                for &x in lc.encode_utf8(&mut buf).as_bytes() {
                    h = (h ^ x as u64).wrapping_mul(FNV_PRIME);
                }
            }
            in_word = true;
        } else if in_word {
            out.push(h);
            h = FNV_OFFSET;
            in_word = false;
        }
        i += ch.len_utf8();
    }
    if in_word {
        out.push(h);
    }
    out
}

/// A phrase as word hashes, matched as a run of whole words.
#[derive(Clone, Debug)]
struct Phrase {
    words: Vec<u64>,
    text: String,
}

/// Phrases with a 64-bit filter of their first words, so that most words
/// of a text are passed over with one test.
#[derive(Clone, Debug, Default)]
struct PhraseSet {
    list: Vec<Phrase>,
    filter: u64,
}

#[inline(always)]
fn filter_bit(h: u64) -> u64 {
    1u64 << (h >> 58)
}

impl PhraseSet {
    fn new(list: &[&str]) -> PhraseSet {
        let mut ps = PhraseSet::default();
        for p in list {
            let ws = words(p);
            if ws.is_empty() {
                continue;
            }
            let hs = word_hashes(p);
            ps.filter |= filter_bit(hs[0]);
            ps.list.push(Phrase { words: hs, text: ws.join(" ") });
        }
        ps
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Whether phrase k occurs in ws starting at word j.
    fn at(&self, ws: &[u64], j: usize, k: usize) -> bool {
        let p = &self.list[k].words;
        if ws.len() - j < p.len() {
            return false;
        }
        let mut m = 0;
        while m < p.len() && ws[j + m] == p[m] {
            m += 1;
        }
        m == p.len()
    }

    /// Returns the indices of the phrases found in ws (each once, in the
    /// order of the list), stopping after limit.
    fn find(&self, ws: &[u64], limit: usize) -> Vec<usize> {
        let mut found: Vec<usize> = Vec::new();
        let mut j = 0;
        while j < ws.len() && found.len() < limit {
            // Four words per iteration when none can start a phrase.
            if j + 4 <= ws.len()
                && (filter_bit(ws[j]) | filter_bit(ws[j + 1]) | filter_bit(ws[j + 2]) | filter_bit(ws[j + 3])) & self.filter
                    == 0
            {
                j += 4;
                continue;
            }
            if filter_bit(ws[j]) & self.filter != 0 {
                for k in 0..self.list.len() {
                    if self.list[k].words[0] == ws[j] && !found.contains(&k) && self.at(ws, j, k) {
                        found.push(k);
                    }
                }
            }
            j += 1;
        }
        found.sort_unstable();
        found.truncate(limit);
        found
    }

    fn any(&self, ws: &[u64]) -> bool {
        !self.find(ws, 1).is_empty()
    }
}

fn quote(s: &str) -> String {
    let mut o = String::new();
    write_str(&mut o, s);
    o
}

// ---------------------------------------------------------------------------
// Validators

/// What a validator looks at: the query, the domain and the response as
/// revised so far. A validator that revises the answer calls
/// set_response; later validators see the revision, and the validate export
/// returns it.
#[derive(Clone, Debug, Default)]
pub struct Check {
    pub query: String,
    pub domain: String,
    response: String,
    changed: bool,
    hashes: Option<Vec<u64>>,
}

impl Check {
    /// A check of response (for tests of custom validators).
    pub fn new(query: &str, domain: &str, response: &str) -> Check {
        Check { query: query.to_string(), domain: domain.to_string(), response: response.to_string(), ..Check::default() }
    }

    /// The response as revised so far.
    pub fn response(&self) -> &str {
        &self.response
    }

    /// Revises the response.
    pub fn set_response(&mut self, r: String) {
        self.response = r;
        self.changed = true;
        self.hashes = None;
    }

    /// The word hashes of the response (see word_hashes), computed once
    /// per revision.
    fn hashes(&mut self) -> &[u64] {
        if self.hashes.is_none() {
            self.hashes = Some(word_hashes(&self.response));
        }
        self.hashes.as_deref().unwrap_or(&[])
    }

    /// Whether the response contains phrase as whole words, ignoring case
    /// and punctuation.
    pub fn mentions(&mut self, phrase: &str) -> bool {
        let ps = PhraseSet::new(&[phrase]);
        !ps.is_empty() && ps.any(self.hashes())
    }
}

type CheckFn = Box<dyn Fn(&mut Check) -> Vec<Issue>>;

/// One check of a response. Build one with the constructors of this module
/// (min_length, max_length, banned_terms, require_disclaimer,
/// redact_emails) or with Validator::new.
pub struct Validator {
    name: String,
    check: Option<CheckFn>,
    err: Option<String>,
}

impl Validator {
    /// A custom validator. check must not panic and returns no issues when
    /// it finds nothing.
    pub fn new(name: &str, check: impl Fn(&mut Check) -> Vec<Issue> + 'static) -> Validator {
        Validator { name: name.to_string(), check: Some(Box::new(check)), err: None }
    }

    /// A validator that makes the plugin fail to compile with err.
    fn invalid(name: &str, err: String) -> Validator {
        Validator { name: name.to_string(), check: None, err: Some(format!("validator {name}: {err}")) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Score penalties per issue, by severity.
pub const PENALTY_ERROR: f64 = 0.5;
pub const PENALTY_WARNING: f64 = 0.15;
pub const PENALTY_INFO: f64 = 0.0;

/// Turns issues into a score in [0, 1]: 1 for none, times (1 - penalty)
/// per issue. Unknown severities count as errors.
pub fn score(issues: &[Issue]) -> f64 {
    issues.iter().fold(1.0, |s, i| {
        s * (1.0
            - match i.severity.as_str() {
                SEVERITY_INFO => PENALTY_INFO,
                SEVERITY_WARNING => PENALTY_WARNING,
                _ => PENALTY_ERROR,
            })
    })
}

/// Runs validators in order over req and combines their findings: ok when
/// no issue is an error, the score from [`score`], and the revised response
/// when a validator changed it.
pub fn evaluate(req: &ValidateRequest, validators: &[Validator]) -> Validation {
    let mut c = Check {
        query: req.query.clone(),
        domain: req.domain.clone(),
        response: req.response.clone(),
        ..Check::default()
    };
    let mut issues = Vec::new();
    for v in validators {
        if let Some(f) = &v.check {
            issues.extend(f(&mut c));
        }
    }
    let ok = !issues.iter().any(|i| !matches!(i.severity.as_str(), SEVERITY_INFO | SEVERITY_WARNING));
    let score = score(&issues);
    let response = if c.changed && c.response != req.response { Some(c.response) } else { None };
    Validation { ok, score, issues, response }
}

/// An error when the response, trimmed, has fewer than n characters.
pub fn min_length(n: usize) -> Validator {
    if n < 1 {
        return Validator::invalid("min_length", format!("n = {n}, want >= 1"));
    }
    Validator::new("min_length", move |c| {
        let t = c.response().trim();
        if t.len() >= 4 * n {
            return Vec::new(); // a character is at most 4 bytes
        }
        let got = t.chars().count();
        if got >= n {
            return Vec::new();
        }
        vec![Issue::error(CODE_TOO_SHORT, &format!("response has {got} characters, at least {n} expected"))]
    })
}

/// Cuts a response longer than n characters at the last sentence or line
/// end in the second half of the allowed text (else at the last space,
/// adding "…") and reports a warning. Put it before validators that append
/// text (require_disclaimer).
pub fn max_length(n: usize) -> Validator {
    if n < 16 {
        return Validator::invalid("max_length", format!("n = {n}, want >= 16"));
    }
    Validator::new("max_length", move |c| {
        if c.response().len() <= n {
            return Vec::new(); // at most one character per byte
        }
        let total = c.response().chars().count();
        if total <= n {
            return Vec::new();
        }
        let cut = cut(c.response(), n);
        let got = cut.chars().count();
        c.set_response(cut);
        vec![Issue::warning(CODE_TOO_LONG, &format!("response had {total} characters; cut to {got} (limit {n})"))]
    })
}

/// Shortens s to at most n characters, preferring a sentence or line end.
fn cut(s: &str, n: usize) -> String {
    let end = s.char_indices().nth(n).map(|(i, _)| i).unwrap_or(s.len());
    let head = &s[..end];
    let hb = head.as_bytes();
    let mut best = 0;
    let mut i = hb.len();
    while i > 1 && i - 1 >= hb.len() / 2 {
        i -= 1;
        let ch = hb[i];
        if ch == b'\n' {
            best = i;
            break;
        }
        if matches!(ch, b'.' | b'!' | b'?') && (i + 1 == hb.len() || hb[i + 1] == b' ' || hb[i + 1] == b'\n') {
            best = i + 1;
            break;
        }
    }
    if best > 0 {
        return head[..best].trim_end_matches(|c| c == ' ' || c == '\n' || c == '\t').to_string();
    }
    // No sentence end: cut at the last space and mark the cut; the marker
    // takes one character of the budget.
    let sp = match head.rfind(' ') {
        Some(p) if p >= head.len() / 2 => p,
        _ => head.char_indices().last().map(|(p, _)| p).unwrap_or(0),
    };
    let mut out = head[..sp].trim_end_matches(|c| c == ' ' || c == '\n' || c == '\t').to_string();
    out.push('…');
    out
}

/// An error when the response contains any of terms as whole words,
/// ignoring case and punctuation ("risk free" matches "Risk-free"; "ass"
/// does not match "class").
pub fn banned_terms(terms: &[&str]) -> Validator {
    let ps = PhraseSet::new(terms);
    if ps.is_empty() {
        return Validator::invalid("banned_terms", "no terms given".to_string());
    }
    Validator::new("banned_terms", move |c| {
        let found = ps.find(c.hashes(), 5);
        if found.is_empty() {
            return Vec::new();
        }
        let list: Vec<String> = found.iter().map(|&k| quote(&ps.list[k].text)).collect();
        vec![Issue::error(CODE_BANNED_TERM, &format!("banned term in response: {}", list.join(", ")))]
    })
}

/// Makes sure the response carries text: when neither text nor any of the
/// alternatives appears in it (whole words, case and punctuation ignored),
/// text is appended after a blank line and an info issue is reported.
pub fn require_disclaimer(text: &str, alternatives: &[&str]) -> Validator {
    let text = text.trim().to_string();
    if words(&text).is_empty() {
        return Validator::invalid("require_disclaimer", "empty disclaimer".to_string());
    }
    let mut all = vec![text.as_str()];
    all.extend_from_slice(alternatives);
    let ps = PhraseSet::new(&all);
    let suffix = format!("\n\n{text}");
    Validator::new("require_disclaimer", move |c| {
        if ps.any(c.hashes()) {
            return Vec::new();
        }
        let mut r = String::with_capacity(c.response().len() + suffix.len());
        r.push_str(c.response().trim_end_matches(|ch| ch == ' ' || ch == '\t' || ch == '\n'));
        r.push_str(&suffix);
        c.set_response(r);
        vec![Issue::info(CODE_DISCLAIMER_ADDED, "required disclaimer appended")]
    })
}

fn is_local_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

/// Replaces email addresses (local@domain.tld, ASCII) in text with
/// REDACTED_EMAIL and returns the new text and how many it replaced.
pub fn redact_emails(text: &str) -> (String, usize) {
    let b = text.as_bytes();
    let mut at = match find_byte(b, 0, b'@') {
        Some(a) => a,
        None => return (text.to_string(), 0),
    };
    let mut out = String::with_capacity(text.len());
    let mut last = 0; // end of the text already copied
    let mut n = 0;
    while let Some(a) = find_byte(b, at, b'@') {
        at = a + 1;
        // Local part: the allowed bytes right before '@', not reaching into
        // an earlier replacement.
        let mut s = a;
        while s > last && is_local_byte(b[s - 1]) {
            s -= 1;
        }
        if s == a {
            continue;
        }
        // Domain: labels of [A-Za-z0-9-]+ joined by '.', the last one's
        // leading letters (2 or more) ending the match.
        let mut labels: Vec<(usize, usize)> = Vec::new();
        let mut p = a + 1;
        loop {
            let st = p;
            while p < b.len() && is_domain_byte(b[p]) {
                p += 1;
            }
            if p == st {
                break;
            }
            labels.push((st, p));
            if p < b.len() && b[p] == b'.' {
                p += 1;
            } else {
                break;
            }
        }
        let mut end = None;
        for k in (1..labels.len()).rev() {
            let (st, en) = labels[k];
            let letters = b[st..en].iter().take_while(|c| c.is_ascii_alphabetic()).count();
            if letters >= 2 {
                end = Some(st + letters);
                break;
            }
        }
        if let Some(e) = end {
            out.push_str(&text[last..s]);
            out.push_str(REDACTED_EMAIL);
            last = e;
            at = e;
            n += 1;
        }
    }
    out.push_str(&text[last..]);
    (out, n)
}

/// Replaces email addresses in the response with REDACTED_EMAIL and reports
/// a warning saying how many.
pub fn redact_emails_validator() -> Validator {
    Validator::new("redact_emails", |c| {
        let (red, n) = redact_emails(c.response());
        if n == 0 {
            return Vec::new();
        }
        c.set_response(red);
        let what = if n == 1 { "1 email address".to_string() } else { format!("{n} email addresses") };
        vec![Issue::warning(CODE_PII_REDACTED, &format!("redacted {what}"))]
    })
}

// ---------------------------------------------------------------------------
// Plugins

type PromptFn = Box<dyn Fn(&Env, &PromptRequest) -> Result<PromptResponse, String>>;
type ValidateFn = Box<dyn Fn(&Env, &ValidateRequest) -> Result<Validation, String>>;
type HandleFn = Box<dyn Fn(&Env, &PromptRequest) -> Result<HandleResponse, String>>;
type ToolFn = Box<dyn Fn(&Env, &Json) -> Result<String, String>>;

/// A domain plugin, declared. Only the manifest is required; the defaults:
///
/// - prompt renders `system` (if not empty) as the system message, the
///   request's history (the latest `max_history` user/assistant turns;
///   other roles and empty turns are dropped, so a caller cannot inject a
///   system turn) and `template` (default "{{query}}") as the final user
///   message;
/// - validate runs the validators in order (see [`evaluate`]);
/// - handle (exported only with `export_plugin!(f, handle)`) runs prompt,
///   mdsa_generate and validate in one call.
///
/// on_prompt, on_validate and on_handle replace those defaults; they get an
/// [`Env`] with the defaults to build on. [`Plugin::tool`] declares tools
/// the model may call (run by the tool export).
pub struct Plugin {
    pub manifest: Manifest,
    pub system: String,
    pub template: String,
    pub max_history: usize,
    pub validators: Vec<Validator>,
    prompt: Option<PromptFn>,
    validate: Option<ValidateFn>,
    handle: Option<HandleFn>,
    // The run functions of manifest.tools, in the same order.
    tool_fns: Vec<ToolFn>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Plugin {
    /// Starts a plugin declaration.
    pub fn new(name: &str, version: &str) -> Plugin {
        Plugin {
            manifest: Manifest { name: name.to_string(), version: version.to_string(), ..Manifest::default() },
            system: String::new(),
            template: String::new(),
            max_history: 0,
            validators: Vec::new(),
            prompt: None,
            validate: None,
            handle: None,
            tool_fns: Vec::new(),
        }
    }
    /// One line for humans.
    pub fn description(mut self, d: &str) -> Self {
        self.manifest.description = d.to_string();
        self
    }
    /// Words and short phrases typical of the domain (router).
    pub fn keywords(mut self, k: &[&str]) -> Self {
        self.manifest.keywords = strings(k);
        self
    }
    /// Realistic user utterances of the domain (router training).
    pub fn examples(mut self, e: &[&str]) -> Self {
        self.manifest.examples = strings(e);
        self
    }
    /// TIER_DOMAIN or TIER_REASONER.
    pub fn tier(mut self, t: &str) -> Self {
        self.manifest.model.tier = t.to_string();
        self
    }
    /// Preferred model names, best first.
    pub fn prefer(mut self, models: &[&str]) -> Self {
        self.manifest.model.prefer = strings(models);
        self
    }
    /// Smallest context window the prompts need.
    pub fn min_context(mut self, n: u32) -> Self {
        self.manifest.model.min_context = n;
        self
    }
    /// Default sampling settings.
    pub fn generation(mut self, g: Generation) -> Self {
        self.manifest.generation = g;
        self
    }
    /// Host functions the plugin uses: CAP_GENERATE, CAP_EMBED,
    /// CAP_COUNT_TOKENS.
    pub fn capabilities(mut self, caps: &[&str]) -> Self {
        self.manifest.capabilities = strings(caps);
        self
    }
    /// System prompt template.
    pub fn system(mut self, s: &str) -> Self {
        self.system = s.to_string();
        self
    }
    /// User message template ("" means "{{query}}").
    pub fn template(mut self, t: &str) -> Self {
        self.template = t.to_string();
        self
    }
    /// Caps the history turns passed on; 0 means all.
    pub fn max_history(mut self, n: usize) -> Self {
        self.max_history = n;
        self
    }
    /// Adds a validator (they run in the order added).
    pub fn validator(mut self, v: Validator) -> Self {
        self.validators.push(v);
        self
    }
    /// Replaces the default prompt export.
    pub fn on_prompt(mut self, f: impl Fn(&Env, &PromptRequest) -> Result<PromptResponse, String> + 'static) -> Self {
        self.prompt = Some(Box::new(f));
        self
    }
    /// Replaces the default validate export.
    pub fn on_validate(mut self, f: impl Fn(&Env, &ValidateRequest) -> Result<Validation, String> + 'static) -> Self {
        self.validate = Some(Box::new(f));
        self
    }
    /// Replaces the default handle export.
    pub fn on_handle(mut self, f: impl Fn(&Env, &PromptRequest) -> Result<HandleResponse, String> + 'static) -> Self {
        self.handle = Some(Box::new(f));
        self
    }
    /// Declares a tool the model may call while answering a query of the
    /// domain (ABI 1.1): name (1-64 of [A-Za-z0-9_-], unique), a description
    /// for the model, the JSON Schema of the arguments as JSON text (an
    /// object schema; "" for none) and the function that runs it. run gets
    /// the arguments (a JSON object, empty when the call has none;
    /// [`Env::query`] is the query) and returns the content the model reads,
    /// or an error message, which the model reads as a failed call
    /// (is_error) and may correct. The manifest then states abi_minor 1.
    pub fn tool(
        mut self,
        name: &str,
        description: &str,
        parameters: &str,
        run: impl Fn(&Env, &Json) -> Result<String, String> + 'static,
    ) -> Self {
        self.manifest.tools.push(ToolSpec {
            name: name.to_string(),
            description: description.to_string(),
            parameters: parameters.to_string(),
        });
        self.tool_fns.push(Box::new(run));
        self
    }

    /// Checks the declaration and prepares it for serving.
    pub fn compile(mut self) -> Result<Compiled, String> {
        let name = self.manifest.name.clone();
        let fail = |e: String| format!("plugin {name:?}: {e}");
        if !self.manifest.tools.is_empty() {
            self.manifest.abi_minor = self.manifest.abi_minor.max(ABI_MINOR_TOOLS);
        }
        if self.manifest.tools.len() != self.tool_fns.len() {
            return Err(fail(format!(
                "manifest declares {} tools but {} run functions: declare tools with Plugin::tool",
                self.manifest.tools.len(),
                self.tool_fns.len()
            )));
        }
        self.manifest.check().map_err(fail)?;
        for v in &self.validators {
            if let Some(e) = &v.err {
                return Err(fail(e.clone()));
            }
        }
        let system = Template::parse(&self.system).map_err(|e| fail(format!("system: {e}")))?;
        let user = Template::parse(if self.template.is_empty() { "{{query}}" } else { &self.template })
            .map_err(|e| fail(format!("template: {e}")))?;
        let describe = self.manifest.to_json().into_bytes();
        let prompt_size = self.system.len() + self.template.len();
        Ok(Compiled { p: self, system, user, describe, prompt_size })
    }
}

/// A checked plugin, ready to serve.
pub struct Compiled {
    p: Plugin,
    system: Template,
    user: Template,
    describe: Vec<u8>,
    prompt_size: usize, // bytes of the templates' literal text
}

/// What custom prompt, validate and handle functions and tools get: the
/// plugin's defaults and the host functions.
pub struct Env<'a> {
    c: &'a Compiled,
    query: &'a str,
}

impl<'a> Env<'a> {
    pub fn manifest(&self) -> &Manifest {
        &self.c.p.manifest
    }
    /// The query a tool call serves ("" outside the tool export: prompt,
    /// validate and handle functions have it in their request).
    pub fn query(&self) -> &str {
        self.query
    }
    /// The default prompt: system, history, template.
    pub fn default_prompt(&self, req: &PromptRequest) -> PromptResponse {
        self.c.default_prompt(req)
    }
    /// Runs the plugin's validators.
    pub fn default_validate(&self, req: &ValidateRequest) -> Validation {
        evaluate(req, &self.c.p.validators)
    }
    /// The whole request in the plugin: its prompt (custom or default),
    /// mdsa_generate with the manifest's settings overlaid by the prompt's,
    /// then its validate, whose revised response becomes the answer.
    pub fn default_handle(&self, req: &PromptRequest) -> Result<HandleResponse, String> {
        let pr = self.c.prompt(self, req)?;
        let gen = generate(&GenerateRequest {
            messages: pr.messages,
            prompt: String::new(),
            generation: self.c.p.manifest.generation.merge(&pr.generation),
        })
        .map_err(|e| format!("mdsa_generate: {e}"))?;
        let v = self.c.validate(
            self,
            &ValidateRequest { query: req.query.clone(), response: gen.text.clone(), domain: self.c.p.manifest.name.clone() },
        )?;
        let response = v.response.clone().unwrap_or(gen.text);
        Ok(HandleResponse { response, validation: v })
    }
    pub fn generate(&self, req: &GenerateRequest) -> Result<GenerateResponse, HostError> {
        generate(req)
    }
    pub fn embed(&self, input: &[String]) -> Result<EmbedResponse, HostError> {
        embed(input)
    }
    pub fn count_tokens(&self, text: &str) -> Result<i64, HostError> {
        count_tokens(text)
    }
}

impl Compiled {
    /// Compiles p (see Plugin::compile). export_plugin! keeps an error
    /// and fails every export with it, so that the host refuses the plugin
    /// at load with a clear message.
    pub fn new(p: Plugin) -> Result<Compiled, String> {
        p.compile()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.p.manifest
    }

    fn default_prompt(&self, req: &PromptRequest) -> PromptResponse {
        let mut hist: &[Message] = &req.history;
        if self.p.max_history > 0 && hist.len() > self.p.max_history {
            hist = &hist[hist.len() - self.p.max_history..];
        }
        let mut messages = Vec::with_capacity(hist.len() + 2);
        let sys = self.system.render(req);
        if !sys.is_empty() {
            messages.push(Message::system(&sys));
        }
        for m in hist {
            if (m.role == ROLE_USER || m.role == ROLE_ASSISTANT) && !m.content.is_empty() {
                messages.push(m.clone());
            }
        }
        messages.push(Message::user(&self.user.render(req)));
        PromptResponse { messages, generation: Generation::default() }
    }

    /// default_prompt(req).to_json(), written directly: the templates'
    /// literal text is escaped once, at compile time.
    fn default_prompt_json(&self, req: &PromptRequest) -> String {
        let mut out = String::with_capacity(256 + req.query.len() + self.prompt_size);
        out.push_str("{\"messages\":[");
        let mark = out.len();
        out.push_str("{\"role\":\"system\",\"content\":\"");
        if self.system.render_json(req, &mut out) {
            out.push_str("\"},");
        } else {
            out.truncate(mark);
        }
        let mut hist: &[Message] = &req.history;
        if self.p.max_history > 0 && hist.len() > self.p.max_history {
            hist = &hist[hist.len() - self.p.max_history..];
        }
        for m in hist {
            if (m.role == ROLE_USER || m.role == ROLE_ASSISTANT) && !m.content.is_empty() {
                ObjWriter::new(&mut out).str("role", &m.role).str("content", &m.content).end();
                out.push(',');
            }
        }
        out.push_str("{\"role\":\"user\",\"content\":\"");
        self.user.render_json(req, &mut out);
        out.push_str("\"}],\"generation\":{}}");
        out
    }

    fn prompt(&self, env: &Env, req: &PromptRequest) -> Result<PromptResponse, String> {
        if req.query.trim().is_empty() {
            return Err("the query is empty".to_string());
        }
        match &self.p.prompt {
            Some(f) => {
                let r = f(env, req)?;
                if r.messages.is_empty() {
                    return Err("custom prompt returned no messages".to_string());
                }
                if r.messages.len() > MAX_MESSAGES {
                    return Err(format!("custom prompt returned {} messages, at most {MAX_MESSAGES}", r.messages.len()));
                }
                r.generation.check("generation")?;
                Ok(r)
            }
            None => Ok(self.default_prompt(req)),
        }
    }

    fn validate(&self, env: &Env, req: &ValidateRequest) -> Result<Validation, String> {
        match &self.p.validate {
            Some(f) => f(env, req),
            None => Ok(evaluate(req, &self.p.validators)),
        }
    }

    /// Runs the tool req names: its error is a failed call (is_error) the
    /// model reads; an undeclared name is an error of the export.
    fn tool(&self, req: &ToolRequest) -> Result<ToolResponse, String> {
        let i = match self.p.manifest.tools.iter().position(|t| t.name == req.name) {
            Some(i) => i,
            None => return Err(format!("no tool named {:?}", req.name)),
        };
        let env = Env { c: self, query: &req.query };
        Ok(match (self.p.tool_fns[i])(&env, &req.arguments) {
            Ok(content) => ToolResponse { content, is_error: false },
            Err(message) => ToolResponse { content: message, is_error: true },
        })
    }

    /// Runs export on input (the JSON the host passes) and returns the
    /// JSON output; errors name the export and say what failed. The wasm
    /// exports are thin wrappers around it, so native tests run the same
    /// code.
    pub fn invoke(&self, export: &str, input: &[u8]) -> Result<Vec<u8>, String> {
        let env = Env { c: self, query: "" };
        let out = match export {
            EXPORT_DESCRIBE => return Ok(self.describe.clone()),
            EXPORT_PROMPT => PromptRequest::decode(input).and_then(|r| {
                if self.p.prompt.is_none() && !r.query.trim().is_empty() {
                    return Ok(self.default_prompt_json(&r));
                }
                self.prompt(&env, &r).map(|r| r.to_json())
            }),
            EXPORT_VALIDATE => {
                ValidateRequest::decode(input).and_then(|r| self.validate(&env, &r)).map(|v| v.to_json())
            }
            EXPORT_HANDLE => PromptRequest::decode(input)
                .and_then(|r| {
                    if r.query.trim().is_empty() {
                        return Err("the query is empty".to_string());
                    }
                    match &self.p.handle {
                        Some(f) => f(&env, &r),
                        None => env.default_handle(&r),
                    }
                })
                .map(|h| h.to_json()),
            EXPORT_TOOL => ToolRequest::decode(input).and_then(|r| self.tool(&r)).map(|t| t.to_json()),
            _ => return Err(format!("unknown export {export:?}")),
        };
        out.map(String::into_bytes).map_err(|e| format!("{export}: {e}"))
    }
}

/// Serves one export call: reads the input, runs c (or reports why the
/// plugin did not compile), sets the output or the error, and returns the
/// export's status. export_plugin! calls it.
#[cfg(target_arch = "wasm32")]
pub fn serve(c: &Result<Compiled, String>, export: &str) -> i32 {
    let res = match c {
        Ok(c) => {
            let inp = if export == EXPORT_DESCRIBE { Vec::new() } else { input() };
            c.invoke(export, &inp)
        }
        Err(e) => Err(format!("{export}: {e}")),
    };
    match res {
        Ok(out) => {
            set_output(&out);
            0
        }
        Err(msg) => {
            set_error(&msg);
            1
        }
    }
}

/// Exports a plugin: `export_plugin!(f)` exports describe, prompt, validate
/// and tool (which runs the plugin's tools; a plugin without tools declares
/// none, and its tool export knows no name); `export_plugin!(f, handle)`
/// adds handle. f is a function
/// returning the [`Plugin`]; it runs once per instance (the result is
/// cached, an optimisation the ABI allows). The SDK must be the crate-root
/// module `mdsa`. The exported functions are named `__mdsa_*` in Rust, so
/// the plugin may use the names prompt, validate and handle itself.
#[macro_export]
macro_rules! export_plugin {
    (@common $build:path) => {
        thread_local! {
            static __MDSA_PLUGIN: Result<$crate::mdsa::Compiled, String> = $crate::mdsa::Compiled::new($build());
        }
        #[export_name = "describe"]
        pub extern "C" fn __mdsa_describe() -> i32 {
            __MDSA_PLUGIN.with(|c| $crate::mdsa::serve(c, $crate::mdsa::EXPORT_DESCRIBE))
        }
        #[export_name = "prompt"]
        pub extern "C" fn __mdsa_prompt() -> i32 {
            __MDSA_PLUGIN.with(|c| $crate::mdsa::serve(c, $crate::mdsa::EXPORT_PROMPT))
        }
        #[export_name = "validate"]
        pub extern "C" fn __mdsa_validate() -> i32 {
            __MDSA_PLUGIN.with(|c| $crate::mdsa::serve(c, $crate::mdsa::EXPORT_VALIDATE))
        }
        #[export_name = "tool"]
        pub extern "C" fn __mdsa_tool() -> i32 {
            __MDSA_PLUGIN.with(|c| $crate::mdsa::serve(c, $crate::mdsa::EXPORT_TOOL))
        }
    };
    ($build:path) => {
        $crate::export_plugin!(@common $build);
    };
    ($build:path, handle) => {
        $crate::export_plugin!(@common $build);
        #[export_name = "handle"]
        pub extern "C" fn __mdsa_handle() -> i32 {
            __MDSA_PLUGIN.with(|c| $crate::mdsa::serve(c, $crate::mdsa::EXPORT_HANDLE))
        }
    };
}

// ---------------------------------------------------------------------------
// Native unit tests: /usr/bin/rustc --edition 2021 --test mdsa.rs -o t && ./t

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Compiled {
        Plugin::new("demo", "0.1.0")
            .keywords(&["demo"])
            .capabilities(&[CAP_GENERATE])
            .system("Be brief. Country: {{context.country|unknown}}.")
            .template("Q: {{query}}")
            .max_history(2)
            .validator(min_length(1))
            .validator(max_length(80))
            .validator(banned_terms(&["risk free", "guaranteed"]))
            .validator(redact_emails_validator())
            .validator(require_disclaimer("Not advice.", &["not financial advice"]))
            .compile()
            .unwrap()
    }

    #[test]
    fn json_roundtrip() {
        let src = r#" {"a": [1, -2.5, 3e2, true, false, null], "s": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\u2028", "o": {}} "#;
        let v = Json::parse(src.as_bytes()).unwrap();
        assert_eq!(v.get("s").unwrap().as_str().unwrap(), "q\"\\/\u{8}\u{c}\n\r\té😀\u{2028}");
        assert_eq!(v.get("a").unwrap().as_array().unwrap()[2].as_i64(), Some(300));
        let again = Json::parse(v.to_json().as_bytes()).unwrap();
        assert_eq!(v, again);
        assert!(v.to_json().contains("\\u2028"));
    }

    #[test]
    fn json_errors() {
        for bad in [
            "", " ", "{", "[1,]", "{\"a\":}", "{\"a\" 1}", "tru", "01", "1.", "-", "1e", "\"abc", "\"\\x\"", "\"\u{1}\"",
            "{} x", "[1 2]", "\"\\u12g4\"", "{\"a\":1,}", "nul", "[", "{\"a\"",
        ] {
            let e = Json::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.kind, JsonErrorKind::Syntax, "{bad:?}: {e}");
        }
        assert_eq!(Json::parse(b"1e999").unwrap_err().kind, JsonErrorKind::Range);
        assert_eq!(Json::parse(b"\"\xff\"").unwrap_err().kind, JsonErrorKind::Encoding);
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert_eq!(Json::parse(deep.as_bytes()).unwrap_err().kind, JsonErrorKind::Depth);
        let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(Json::parse(ok.as_bytes()).is_ok());
        // Lone surrogates become U+FFFD, like Go.
        let v = Json::parse(br#""\ud800x\udc00""#).unwrap();
        assert_eq!(v.as_str().unwrap(), "\u{FFFD}x\u{FFFD}");
    }

    #[test]
    fn json_never_panics() {
        // A deterministic pseudo-random mutation loop over valid documents.
        let seeds: [&[u8]; 4] = [
            br#"{"query":"hi \"there\"\n","history":[{"role":"user","content":"x"}],"context":{"a":"b"}}"#,
            br#"{"query":"x","response":"y \u00e9 \ud83d\ude00","domain":"d"}"#,
            br#"[1,2.5e-3,{"a":[null,true,false]}]"#,
            b"\"\\u0041\"",
        ];
        let mut x: u64 = 0x9E3779B97F4A7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let c = demo();
        for round in 0..20000 {
            let mut b = seeds[round % seeds.len()].to_vec();
            for _ in 0..(next() % 4 + 1) {
                let r = next();
                let pos = (r as usize >> 8) % (b.len() + 1);
                match r % 4 {
                    0 if pos < b.len() => b[pos] = (r >> 40) as u8,
                    1 if pos < b.len() => {
                        b.remove(pos);
                    }
                    2 => {
                        let set = b"{}[]\",:\\u0";
                        b.insert(pos, set[(r >> 32) as usize % set.len()])
                    }
                    _ => b.truncate(pos),
                }
            }
            let _ = Json::parse(&b);
            for e in [EXPORT_PROMPT, EXPORT_VALIDATE] {
                match c.invoke(e, &b) {
                    Ok(out) => assert!(matches!(Json::parse(&out), Ok(Json::Object(_)))),
                    Err(msg) => assert!(msg.starts_with(e), "{msg}"),
                }
            }
        }
    }

    #[test]
    fn escapes_at_every_offset() {
        // The 8-byte scans must find specials at every position.
        for special in ["\"", "\\", "\n", "\u{1}", "\u{2028}", "é", "😀", "€", "\u{2030}"] {
            for len in 0..24 {
                for pos in 0..=len {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz".chars().take(len).collect();
                    s.insert_str(pos, special);
                    let mut enc = String::new();
                    write_str(&mut enc, &s);
                    assert_eq!(Json::parse(enc.as_bytes()).unwrap(), Json::String(s.clone()), "{enc}");
                    let (red, n) = redact_emails(&format!("{s} a@b.cd"));
                    assert_eq!((red, n), (format!("{s} {REDACTED_EMAIL}"), 1));
                }
            }
        }
    }

    #[test]
    fn write_str_escapes() {
        let mut o = String::new();
        write_str(&mut o, "a\"b\\c\nd\u{1}\u{1f}é\u{2029}");
        assert_eq!(o, r#""a\"b\\c\nd\u0001\u001fé\u2029""#);
    }

    #[test]
    fn templates() {
        let req = PromptRequest {
            query: "{{context.secret}}".into(),
            history: vec![],
            context: vec![("secret".into(), "S".into()), ("c".into(), "".into())],
        };
        let t = Template::parse("\\{{x}} {{ query }} [{{context.c|def}}] {{context.secret}}").unwrap();
        assert_eq!(t.render(&req), "{{x}} {{context.secret}} [def] S");
        assert!(Template::parse("{{nope}}").is_err());
        assert!(Template::parse("{{query").is_err());
        assert!(Template::parse("{{context.}}").is_err());
        assert!(Template::parse("{{context.a b}}").is_err());
    }

    #[test]
    fn prompt_json_matches() {
        let c = demo();
        let empty_sys = Plugin::new("e", "1").keywords(&["k"]).system("{{context.x}}").compile().unwrap();
        for req in [
            PromptRequest { query: "q \"x\"\n\u{2028}é".into(), ..PromptRequest::default() },
            PromptRequest {
                query: "q".into(),
                history: vec![Message::user("a\u{1}"), Message::system("s"), Message::assistant(""), Message::assistant("b")],
                context: vec![("country".into(), "D\"E".into()), ("x".into(), "X\\".into())],
            },
        ] {
            for c in [&c, &empty_sys] {
                assert_eq!(c.default_prompt_json(&req), c.default_prompt(&req).to_json());
            }
        }
        let req = PromptRequest { query: "q".into(), ..PromptRequest::default() };
        assert!(!empty_sys.default_prompt_json(&req).contains("system"));
    }

    #[test]
    fn word_hashes_match_words() {
        for s in ["", "Risk-free, RISK free!", "Résumé ÉCOLE straße ǅ 中文 x1 don't  ", "abcdefghijklmnopq rstuvwxyz0123456789é€ab"] {
            let want: Vec<u64> = words(s)
                .iter()
                .map(|w| w.bytes().fold(FNV_OFFSET, |h, b| (h ^ b as u64).wrapping_mul(FNV_PRIME)))
                .collect();
            assert_eq!(word_hashes(s), want, "{s:?}");
        }
    }

    #[test]
    fn prompt_default() {
        let c = demo();
        let input = r#"{"query":"He said \"hi\"\nthen left 😀","history":[
            {"role":"user","content":"one"},{"role":"system","content":"INJECT"},
            {"role":"assistant","content":"two"},{"role":"user","content":"three"}],
            "context":{"country":"DE"},"extra":[1,{"x":2}]}"#;
        let out = c.invoke(EXPORT_PROMPT, input.as_bytes()).unwrap();
        let v = Json::parse(&out).unwrap();
        let msgs = v.get("messages").unwrap().as_array().unwrap();
        let contents: Vec<&str> = msgs.iter().map(|m| m.get("content").unwrap().as_str().unwrap()).collect();
        assert_eq!(contents, ["Be brief. Country: DE.", "two", "three", "Q: He said \"hi\"\nthen left 😀"]);
        assert!(c.invoke(EXPORT_PROMPT, br#"{"query":"  "}"#).unwrap_err().contains("query is empty"));
        assert!(c.invoke(EXPORT_PROMPT, br#"{"query":1}"#).unwrap_err().contains("want a string"));
        assert!(c.invoke(EXPORT_PROMPT, b"[]").unwrap_err().contains("want a JSON object"));
        assert!(c.invoke(EXPORT_PROMPT, b"").unwrap_err().contains("empty input"));
    }

    fn validate(c: &Compiled, resp: &str) -> Validation {
        let mut input = String::new();
        ObjWriter::new(&mut input).str("query", "q").str("response", resp).str("domain", "demo").end();
        let out = c.invoke(EXPORT_VALIDATE, input.as_bytes()).unwrap();
        let v = Json::parse(&out).unwrap();
        Validation {
            ok: v.get("ok").unwrap().as_bool().unwrap(),
            score: v.get("score").unwrap().as_f64().unwrap(),
            issues: v
                .get("issues")
                .unwrap()
                .as_array()
                .unwrap()
                .iter()
                .map(|i| Issue {
                    code: field_str(i, "code").unwrap(),
                    severity: field_str(i, "severity").unwrap(),
                    message: field_str(i, "message").unwrap(),
                })
                .collect(),
            response: v.get("response").and_then(|r| r.as_str()).map(String::from),
        }
    }

    #[test]
    fn validators() {
        let c = demo();
        let v = validate(&c, "Fine. Not advice.");
        assert!(v.ok && v.score == 1.0 && v.issues.is_empty() && v.response.is_none(), "{v:?}");

        let v = validate(&c, "Fine.");
        assert_eq!(v.response.as_deref(), Some("Fine.\n\nNot advice."));
        assert_eq!(v.issues[0].code, CODE_DISCLAIMER_ADDED);
        assert!(v.ok);

        let v = validate(&c, "It is Risk-free! NOT FINANCIAL ADVICE");
        assert!(!v.ok && v.score == 0.5, "{v:?}");
        assert!(v.issues[0].message.contains("\"risk free\""));
        assert!(validate(&c, "A classic guarantee. not financial advice").issues.is_empty());

        let v = validate(&c, "Mail bob.smith+x@mail.example.co.uk. not financial advice");
        assert_eq!(v.response.as_deref(), Some("Mail [email redacted]. not financial advice"));
        assert_eq!(v.issues[0].code, CODE_PII_REDACTED);

        let v = validate(&c, "   ");
        assert!(!v.ok && v.issues[0].code == CODE_TOO_SHORT);

        let v = validate(&c, "First sentence is here, and it keeps going for a while. Second one is much longer than the limit.");
        assert_eq!(v.issues[0].code, CODE_TOO_LONG);
        assert_eq!(v.response.unwrap(), "First sentence is here, and it keeps going for a while.\n\nNot advice.");
    }

    #[test]
    fn emails() {
        for (inp, want, n) in [
            ("a@b.co", "[email redacted]", 1),
            ("x a@b.c y", "x a@b.c y", 0),
            ("a@b@c.com", "a@[email redacted]", 1),
            ("to: jo@ex.com, al@ex.org.", "to: [email redacted], [email redacted].", 2),
            ("@foo.com and foo@", "@foo.com and foo@", 0),
            ("é@x.com é", "é@x.com é", 0),
            ("a@b.comx1", "[email redacted]1", 1),
        ] {
            let (got, k) = redact_emails(inp);
            assert_eq!((got.as_str(), k), (want, n), "{inp:?}");
        }
    }

    #[test]
    fn cut_text() {
        let s = "word ".repeat(20);
        let c = cut(&s, 30);
        assert!(c.ends_with('…') && c.chars().count() <= 30, "{c:?}");
        let c = cut("ééééééééééééééééééééééééééééééé", 20);
        assert_eq!(c.chars().count(), 20);
    }

    #[test]
    fn compile_errors() {
        let bad = |p: Plugin| p.compile().err().unwrap();
        assert!(bad(Plugin::new("Bad", "1")).contains("manifest name"));
        assert!(bad(Plugin::new("ok", "")).contains("version"));
        assert!(bad(Plugin::new("ok", "1")).contains("both empty"));
        assert!(bad(Plugin::new("ok", "1").keywords(&["k"]).capabilities(&["gpu"])).contains("unknown"));
        assert!(bad(Plugin::new("ok", "1").keywords(&["k"]).system("{{x}}")).contains("system"));
        assert!(bad(Plugin::new("ok", "1").keywords(&["k"]).validator(max_length(3))).contains("max_length"));
        assert!(bad(Plugin::new("ok", "1")
            .keywords(&["k"])
            .generation(Generation { temperature: Some(11.0), ..Generation::default() }))
        .contains("temperature"));
    }

    #[test]
    fn describe_json() {
        let c = Plugin::new("demo", "1.0.0")
            .description("D \"q\"")
            .keywords(&["k"])
            .examples(&["e"])
            .tier(TIER_DOMAIN)
            .prefer(&["m"])
            .min_context(2048)
            .generation(Generation { max_tokens: 10, temperature: Some(0.3), ..Generation::default() })
            .capabilities(&[CAP_GENERATE])
            .compile()
            .unwrap();
        let out = String::from_utf8(c.invoke(EXPORT_DESCRIBE, b"").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"abi":1,"name":"demo","version":"1.0.0","description":"D \"q\"","keywords":["k"],"examples":["e"],"model":{"tier":"domain","prefer":["m"],"min_context":2048},"generation":{"max_tokens":10,"temperature":0.3},"capabilities":["generate"]}"#
        );
    }

    fn calc() -> Compiled {
        Plugin::new("calc", "1.0.0")
            .keywords(&["sum"])
            .tool(
                "add",
                "Adds two numbers.",
                r#" {"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]} "#,
                |_env: &Env, args: &Json| match (args.get("a").and_then(Json::as_f64), args.get("b").and_then(Json::as_f64)) {
                    (Some(a), Some(b)) => {
                        let mut out = String::new();
                        ObjWriter::new(&mut out).num("sum", a + b).end();
                        Ok(out)
                    }
                    _ => Err("a and b must be numbers".to_string()),
                },
            )
            .tool("query", "", "", |env: &Env, args: &Json| Ok(format!("{} {}", env.query(), args.to_json())))
            .compile()
            .unwrap()
    }

    #[test]
    fn tools() {
        let c = calc();
        assert_eq!(c.manifest().abi_minor, ABI_MINOR_TOOLS);
        let out = String::from_utf8(c.invoke(EXPORT_DESCRIBE, b"").unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"abi":1,"abi_minor":1,"name":"calc","version":"1.0.0","keywords":["sum"],"examples":[],"model":{},"generation":{},"capabilities":[],"tools":[{"name":"add","description":"Adds two numbers.","parameters":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}},{"name":"query"}]}"#
        );
        let call = |input: &str| c.invoke(EXPORT_TOOL, input.as_bytes()).map(|o| String::from_utf8(o).unwrap());
        assert_eq!(call(r#"{"name":"add","arguments":{"a":2,"b":3.5}}"#).unwrap(), r#"{"content":"{\"sum\":5.5}"}"#);
        assert_eq!(
            call(r#"{"name":"add","arguments":{"a":"2","b":3}}"#).unwrap(),
            r#"{"content":"a and b must be numbers","is_error":true}"#
        );
        assert_eq!(call(r#"{"name":"query","query":"q\"1"}"#).unwrap(), r#"{"content":"q\"1 {}"}"#);
        assert_eq!(call(r#"{"name":"nope","arguments":{}}"#).unwrap_err(), r#"tool: no tool named "nope""#);
        assert!(call(r#"{"name":5}"#).unwrap_err().starts_with("tool: field \"name\": want a string"));
        assert!(call("[]").unwrap_err().starts_with("tool: decode input"));
        // No tools: no abi_minor, no tools, and every name is unknown.
        let d = demo();
        assert!(!String::from_utf8(d.invoke(EXPORT_DESCRIBE, b"").unwrap()).unwrap().contains("tools"));
        assert_eq!(d.invoke(EXPORT_TOOL, br#"{"name":"add"}"#).unwrap_err(), r#"tool: no tool named "add""#);
    }

    #[test]
    fn tool_errors() {
        let ok = |_: &Env, _: &Json| Ok(String::new());
        let bad = |p: Plugin| p.keywords(&["k"]).compile().err().unwrap();
        assert!(bad(Plugin::new("p", "1").tool("bad name", "", "", ok)).contains(r#"tools[0] "bad name": want a name"#));
        assert!(bad(Plugin::new("p", "1").tool("t", "", "", ok).tool("t", "", "", ok)).contains("declared twice"));
        assert!(bad(Plugin::new("p", "1").tool("t", "", "{nope", ok)).contains("parameters: invalid JSON at byte 1"));
        assert!(bad(Plugin::new("p", "1").tool("t", "", "[1]", ok)).contains("want a JSON Schema object"));
        assert!(bad(Plugin::new("p", "1").tool("t", &"d".repeat(MAX_DESCRIPTION_LEN + 1), "", ok)).contains("description"));
        let mut many = Plugin::new("p", "1");
        for i in 0..=MAX_TOOLS {
            many = many.tool(&format!("t{i}"), "", "", ok);
        }
        assert!(bad(many).contains("33 tools, at most 32"));
        let mut p = Plugin::new("p", "1");
        p.manifest.tools.push(ToolSpec { name: "x".into(), ..ToolSpec::default() });
        assert!(bad(p).contains("declare tools with Plugin::tool"));
    }

    #[test]
    fn handle_with_native_host() {
        set_native_host(Some(Box::new(|f: &str, req: &[u8]| {
            let v = Json::parse(req).unwrap();
            match f {
                "mdsa_generate" => {
                    let msgs = v.get("messages").unwrap().as_array().unwrap();
                    let last = msgs.last().unwrap().get("content").unwrap().as_str().unwrap();
                    if last.contains("REFUSE") {
                        return br#"{"error":{"code":"model_denied","message":"no"}}"#.to_vec();
                    }
                    let mut o = String::new();
                    ObjWriter::new(&mut o).str("text", &format!("echo {last}")).str("model", "m").int("tokens_in", 1).end();
                    o.into_bytes()
                }
                _ => br#"{"count":3}"#.to_vec(),
            }
        })));
        let c = demo();
        let out = c.invoke(EXPORT_HANDLE, br#"{"query":"hi"}"#).unwrap();
        let v = Json::parse(&out).unwrap();
        assert_eq!(v.get("response").unwrap().as_str().unwrap(), "echo Q: hi\n\nNot advice.");
        let err = c.invoke(EXPORT_HANDLE, br#"{"query":"REFUSE"}"#).unwrap_err();
        assert_eq!(err, "handle: mdsa_generate: model_denied: no");
        assert_eq!(count_tokens("a b c"), Ok(3));
        set_native_host(None);
        assert_eq!(count_tokens("x").unwrap_err().code, ERR_UNAVAILABLE);
    }
}
