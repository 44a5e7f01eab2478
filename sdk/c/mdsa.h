/*
 * mdsa.h: MDSA plugin SDK for C, ABI v1 (see sdk/ABI.md and README.md).
 *
 * Header-only and libc-free: include it in the one C file of a plugin,
 * declare an mdsa_plugin, and expand MDSA_PLUGIN(name) to define the
 * describe, prompt, validate and tool exports (MDSA_PLUGIN_HANDLE(name)
 * adds the optional handle export). Build:
 *
 *   clang --target=wasm32 -O2 -mbulk-memory -nostdlib -ffreestanding \
 *         -Wl,--no-entry -Wl,--strip-all -o plugin.wasm plugin.c
 *
 * The module imports the Extism kernel (module "extism:host/env") and, when
 * a plugin calls them, the MDSA host functions (module "extism:host/user").
 *
 * Conventions:
 *  - Text is UTF-8 and carried as mdsa_str (pointer + length; not
 *    NUL-terminated). Declarations use C string literals and NULL-terminated
 *    arrays of them.
 *  - Memory comes from a bump arena that is reset at the start of every
 *    export call: nothing allocated during a call survives it (the host may
 *    route successive calls to different instances anyway).
 *  - Functions report failure by returning non-zero (or a negative count);
 *    an allocation failure (the host's memory cap) makes the export fail
 *    with "out of memory", never trap.
 *  - Everything but the mdsa_ / MDSA_ names documented below is internal
 *    (names with a double underscore, mdsa__*).
 */
#ifndef MDSA_H
#define MDSA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__wasm32__)
#error "mdsa.h targets WebAssembly: compile with clang --target=wasm32"
#endif

/* A plugin uses only part of this header: no warnings for the rest. */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wunused-function"

/* ------------------------------------------------------------------------ */
/* Public types                                                              */
/* ------------------------------------------------------------------------ */

/** The plugin ABI version this SDK speaks. */
#define MDSA_ABI_VERSION 1
/**
 * The minor version of ABI 1 the manifest states when the plugin declares
 * tools (minor 1 added them and the tool export).
 */
#define MDSA_ABI_MINOR_TOOLS 1

/** Bounds of tool declarations the host enforces (sdk/ABI.md section 4.5). */
#define MDSA_MAX_TOOLS 32
#define MDSA_MAX_TOOL_NAME_LEN 64
#define MDSA_MAX_TOOL_DESCRIPTION_LEN 4096
#define MDSA_MAX_TOOL_SCHEMA_LEN 65536

/** A byte string (UTF-8 text); not NUL-terminated. */
typedef struct mdsa_str {
	const char *ptr;
	size_t len;
} mdsa_str;

/** One chat turn. */
typedef struct mdsa_message {
	mdsa_str role;
	mdsa_str content;
} mdsa_message;

/**
 * Sampling settings. Zero (or NULL) means "not set", as in the ABI: the
 * host's or the manifest's defaults then apply.
 */
typedef struct mdsa_generation {
	int max_tokens;
	float temperature;
	float top_p;
	int top_k;
	float repeat_penalty;
	const char *const *stop; /* NULL-terminated; NULL or empty = not set */
	uint32_t seed;
} mdsa_generation;

/** One finding of a validator. */
typedef struct mdsa_issue {
	const char *code;
	const char *severity;
	mdsa_str message;
} mdsa_issue;

/** Issue severities. */
#define MDSA_INFO "info"
#define MDSA_WARNING "warning"
#define MDSA_ERROR "error"

/** Issue codes of the built-in validators (the same as the Go SDK's). */
#define MDSA_CODE_TOO_SHORT "too_short"
#define MDSA_CODE_TOO_LONG "too_long"
#define MDSA_CODE_BANNED_TERM "banned_term"
#define MDSA_CODE_DISCLAIMER_ADDED "disclaimer_added"

/** Model tiers and capabilities. */
#define MDSA_TIER_DOMAIN "domain"
#define MDSA_TIER_REASONER "reasoner"
#define MDSA_CAP_GENERATE "generate"
#define MDSA_CAP_EMBED "embed"
#define MDSA_CAP_COUNT_TOKENS "count_tokens"

/**
 * The words of a text, as 64-bit hashes of their lower-cased characters
 * (see mdsa_words_of). Words are maximal runs of letters and digits; every
 * other character separates words.
 */
typedef struct mdsa_words {
	uint64_t *h;
	int n, cap;
} mdsa_words;

/**
 * What validators look at: the request and the response as revised so far.
 * A validator that revises the answer assigns response (text from the
 * arena or static storage); later validators see the new text.
 */
typedef struct mdsa_check {
	mdsa_str query;
	mdsa_str domain;
	mdsa_str response;
	mdsa_issue *issues;
	int n_issues;
	int cap_issues;
	/* Caches of mdsa_check_words and mdsa_check_query_words. */
	mdsa_words words_, query_words_;
	const char *words_ptr_;
	size_t words_len_;
	bool words_ok_, query_ok_;
} mdsa_check;

/** A custom validator function. It must not fail on any input. */
typedef void (*mdsa_check_fn)(mdsa_check *c);

/** Kinds of validators. */
typedef enum mdsa_validator_kind {
	MDSA_V_END = 0,
	MDSA_V_MIN_LENGTH,
	MDSA_V_MAX_LENGTH,
	MDSA_V_BANNED_TERMS,
	MDSA_V_REQUIRE_DISCLAIMER,
	MDSA_V_CUSTOM,
} mdsa_validator_kind;

/** A validator declaration; build them with the MDSA_* macros below. */
typedef struct mdsa_validator {
	mdsa_validator_kind kind;
	int n;                     /* MIN_LENGTH, MAX_LENGTH */
	const char *text;          /* REQUIRE_DISCLAIMER: the disclaimer; CUSTOM: the name */
	const char *const *terms;  /* BANNED_TERMS: the terms; REQUIRE_DISCLAIMER: alternatives (may be NULL) */
	mdsa_check_fn check;       /* CUSTOM */
} mdsa_validator;

/**
 * MDSA_MIN_LENGTH(n): an error (too_short) when the response, without
 * surrounding white space, has fewer than n characters (n >= 1).
 */
#define MDSA_MIN_LENGTH(N) {.kind = MDSA_V_MIN_LENGTH, .n = (N)}
/**
 * MDSA_MAX_LENGTH(n): cuts a response longer than n characters (n >= 16) at
 * the last sentence or line end (or space, adding "…") and warns
 * (too_long). Put it before MDSA_REQUIRE_DISCLAIMER.
 */
#define MDSA_MAX_LENGTH(N) {.kind = MDSA_V_MAX_LENGTH, .n = (N)}
/**
 * MDSA_BANNED_TERMS(terms): an error (banned_term) naming up to 5 of the
 * NULL-terminated terms that occur in the response as whole words, case
 * and punctuation ignored.
 */
#define MDSA_BANNED_TERMS(TERMS) {.kind = MDSA_V_BANNED_TERMS, .terms = (TERMS)}
/**
 * MDSA_REQUIRE_DISCLAIMER(text, alternatives): when neither text nor any of
 * the NULL-terminated alternatives (may be NULL) occurs in the response
 * (whole words, case and punctuation ignored), text is appended after a
 * blank line, with an info issue (disclaimer_added).
 */
#define MDSA_REQUIRE_DISCLAIMER(TEXT, ALTS) {.kind = MDSA_V_REQUIRE_DISCLAIMER, .text = (TEXT), .terms = (ALTS)}
/** MDSA_CUSTOM_VALIDATOR(name, fn): runs fn(mdsa_check *). */
#define MDSA_CUSTOM_VALIDATOR(NAME, FN) {.kind = MDSA_V_CUSTOM, .text = (NAME), .check = (FN)}
/** Ends a validator list. */
#define MDSA_VALIDATORS_END {.kind = MDSA_V_END}

/** The input of the prompt (and handle) export. */
typedef struct mdsa_prompt_request {
	mdsa_str query;
	mdsa_message *history;
	int n_history;
	mdsa_str *context_keys;
	mdsa_str *context_values;
	int n_context;
} mdsa_prompt_request;

/** The output of the prompt export. */
typedef struct mdsa_prompt_response {
	mdsa_message *messages;
	int n_messages;
	int cap_messages;
	mdsa_generation generation; /* per-request overrides */
} mdsa_prompt_response;

/** The input of the validate export. */
typedef struct mdsa_validate_request {
	mdsa_str query;
	mdsa_str response;
	mdsa_str domain;
} mdsa_validate_request;

/** The output of the validate export. */
typedef struct mdsa_validation {
	bool ok;
	double score;
	mdsa_issue *issues;
	int n_issues;
	bool revised;      /* response holds a revised answer */
	mdsa_str response;
} mdsa_validation;

/** The reply of mdsa_generate: the text, or the host's refusal. */
typedef struct mdsa_generate_result {
	mdsa_str text;
	mdsa_str model;
	mdsa_str finish_reason;
	int64_t tokens_in;
	int64_t tokens_out;
	mdsa_str error_code;    /* empty on success */
	mdsa_str error_message;
} mdsa_generate_result;

/** One embedding vector: dim floats. */
typedef struct mdsa_vector {
	float *values;
	int dim;
} mdsa_vector;

/** The reply of mdsa_embed: one vector per input, in order, or the host's refusal. */
typedef struct mdsa_embed_result {
	mdsa_str model;
	mdsa_vector *vectors;   /* n_vectors of them, in the arena */
	int n_vectors;
	mdsa_str error_code;    /* empty on success */
	mdsa_str error_message;
} mdsa_embed_result;

struct mdsa_env;

/** A custom prompt function: fill out (see mdsa_prompt_add); return 0, or call mdsa_fail and return non-zero. */
typedef int (*mdsa_prompt_fn)(struct mdsa_env *env, const mdsa_prompt_request *req, mdsa_prompt_response *out);
/** A custom validate function: fill out; return 0, or call mdsa_fail and return non-zero. */
typedef int (*mdsa_validate_fn)(struct mdsa_env *env, const mdsa_validate_request *req, mdsa_validation *out);

struct mdsa_json;

/** The input of the tool export: which tool, its arguments and the query being answered. */
typedef struct mdsa_tool_request {
	mdsa_str name;
	/*
	 * The arguments (see mdsa_json_get, mdsa_json_number, ...): a JSON
	 * object the host checked against the tool's parameters; an empty object
	 * when the call has none. Never NULL.
	 */
	const struct mdsa_json *arguments;
	mdsa_str query;
} mdsa_tool_request;

/**
 * What a tool returns: content, the text the model reads as the call's
 * result (at most 64 KB), and is_error for a failed call (bad arguments,
 * say), which the model reads and may correct. Set it with mdsa_tool_ok or
 * mdsa_tool_error.
 */
typedef struct mdsa_tool_result {
	mdsa_str content;
	bool is_error;
} mdsa_tool_result;

/**
 * A tool's run function: fill out (mdsa_tool_ok / mdsa_tool_error) and
 * return 0; or call mdsa_fail and return non-zero to fail the export
 * instead (for what the model cannot fix).
 */
typedef int (*mdsa_tool_fn)(struct mdsa_env *env, const mdsa_tool_request *req, mdsa_tool_result *out);

/**
 * A tool the model may call while answering a query of the domain (ABI
 * 1.1, sdk/ABI.md section 4.5). Declaring tools puts "abi_minor": 1 and the
 * tools in the manifest.
 */
typedef struct mdsa_tool {
	const char *name;        /* 1-64 of [A-Za-z0-9_-], unique within the plugin */
	const char *description; /* what the tool does and when to use it, for the model; may be NULL */
	const char *parameters;  /* the JSON Schema of the arguments (an object schema, at most 64 KB), or NULL for none */
	mdsa_tool_fn run;
} mdsa_tool;

/** MDSA_TOOL(name, description, parameters, fn): one tool declaration. */
#define MDSA_TOOL(NAME, DESCRIPTION, PARAMETERS, FN) {.name = (NAME), .description = (DESCRIPTION), .parameters = (PARAMETERS), .run = (FN)}
/** Ends a tool list. */
#define MDSA_TOOLS_END {.name = NULL}

/**
 * A plugin declaration. name, version and keywords or examples are
 * required; everything else has a default:
 *  - prompt renders system (if set) as the system message, the request's
 *    history (the last max_history user/assistant turns; other roles are
 *    dropped so that a caller cannot inject a system turn) and template
 *    (default "{{query}}") as the final user message;
 *  - validate runs validators in order.
 * Templates understand {{query}}, {{context.KEY}}, {{context.KEY|default}}
 * and \{{ for a literal "{{". prompt_fn / validate_fn replace the defaults.
 * tools declares functions the model may call (run by the tool export).
 */
typedef struct mdsa_plugin {
	const char *name;
	const char *version;
	const char *description;
	const char *const *keywords;     /* NULL-terminated */
	const char *const *examples;     /* NULL-terminated */
	const char *tier;                /* MDSA_TIER_DOMAIN, MDSA_TIER_REASONER or NULL */
	const char *const *prefer;       /* NULL-terminated model names, or NULL */
	int min_context;
	mdsa_generation generation;
	const char *const *capabilities; /* NULL-terminated, or NULL for none */
	const char *system;
	const char *template_;
	int max_history;                 /* 0 = all */
	const mdsa_validator *validators; /* ended by MDSA_VALIDATORS_END, or NULL */
	mdsa_prompt_fn prompt_fn;
	mdsa_validate_fn validate_fn;
	const mdsa_tool *tools;          /* ended by MDSA_TOOLS_END, or NULL for none */
} mdsa_plugin;

/** What custom functions receive. */
typedef struct mdsa_env {
	const mdsa_plugin *plugin;
	const char *export_name;
	mdsa_str error; /* set by mdsa_fail */
} mdsa_env;

/* Helpers called from many places are kept out of line: inlining them
 * everywhere triples the code size for no measurable gain. */
#define MDSA__NOINLINE __attribute__((noinline))

/* ------------------------------------------------------------------------ */
/* Imports                                                                   */
/* ------------------------------------------------------------------------ */

#define MDSA__ENV(NAME) __attribute__((import_module("extism:host/env"), import_name(NAME)))
#define MDSA__USER(NAME) __attribute__((import_module("extism:host/user"), import_name(NAME)))

MDSA__ENV("alloc") uint64_t mdsa__x_alloc(uint64_t n);
MDSA__ENV("free") void mdsa__x_free(uint64_t off);
MDSA__ENV("length") uint64_t mdsa__x_length(uint64_t off);
MDSA__ENV("load_u8") uint32_t mdsa__x_load_u8(uint64_t off);
MDSA__ENV("load_u64") uint64_t mdsa__x_load_u64(uint64_t off);
MDSA__ENV("store_u8") void mdsa__x_store_u8(uint64_t off, uint32_t v);
MDSA__ENV("store_u64") void mdsa__x_store_u64(uint64_t off, uint64_t v);
MDSA__ENV("input_length") uint64_t mdsa__x_input_length(void);
MDSA__ENV("input_load_u8") uint32_t mdsa__x_input_load_u8(uint64_t off);
MDSA__ENV("input_load_u64") uint64_t mdsa__x_input_load_u64(uint64_t off);
MDSA__ENV("output_set") void mdsa__x_output_set(uint64_t off, uint64_t n);
MDSA__ENV("error_set") void mdsa__x_error_set(uint64_t off);
MDSA__USER("mdsa_generate") uint64_t mdsa__x_generate(uint64_t off);
MDSA__USER("mdsa_embed") uint64_t mdsa__x_embed(uint64_t off);
MDSA__USER("mdsa_count_tokens") uint64_t mdsa__x_count_tokens(uint64_t off);

/* ------------------------------------------------------------------------ */
/* Memory primitives (no libc)                                               */
/* ------------------------------------------------------------------------ */

static inline void mdsa__copy(void *dst, const void *src, size_t n) {
#if defined(__wasm_bulk_memory__)
	__builtin_memcpy(dst, src, n);
#else
	unsigned char *d = (unsigned char *)dst;
	const unsigned char *s = (const unsigned char *)src;
	while (n--) *d++ = *s++;
#endif
}

/*
 * The compiler may emit calls to these for struct copies and loops; they
 * are weak so that a program that brings its own wins.
 */
__attribute__((weak, no_builtin)) void *memcpy(void *dst, const void *src, size_t n) {
	unsigned char *d = (unsigned char *)dst;
	const unsigned char *s = (const unsigned char *)src;
	while (n--) *d++ = *s++;
	return dst;
}

__attribute__((weak, no_builtin)) void *memmove(void *dst, const void *src, size_t n) {
	unsigned char *d = (unsigned char *)dst;
	const unsigned char *s = (const unsigned char *)src;
	if (d < s) {
		while (n--) *d++ = *s++;
	} else {
		while (n--) d[n] = s[n];
	}
	return dst;
}

__attribute__((weak, no_builtin)) void *memset(void *dst, int c, size_t n) {
	unsigned char *d = (unsigned char *)dst;
	while (n--) *d++ = (unsigned char)c;
	return dst;
}

__attribute__((weak, no_builtin)) int memcmp(const void *a, const void *b, size_t n) {
	const unsigned char *x = (const unsigned char *)a;
	const unsigned char *y = (const unsigned char *)b;
	for (size_t i = 0; i < n; i++) {
		if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Arena allocator                                                           */
/* ------------------------------------------------------------------------ */

extern unsigned char __heap_base;

/* The arena: [base, top) in use, [top, end) free, end = memory size. mark is
 * where each export call's allocations start (after data cached for the
 * instance's lifetime). */
static struct {
	uintptr_t mark, top, end;
	uintptr_t last; /* start of the latest allocation, for in-place growth */
	bool oom;       /* an allocation failed during this call */
} mdsa__arena;

/* The end of linear memory (clamped below 4 GiB, which wasm32 addresses cannot reach). */
static uintptr_t mdsa__memory_end(void) {
	uint64_t end = (uint64_t)__builtin_wasm_memory_size(0) * 65536u;
	return end > 0xFFFFFFF8u ? (uintptr_t)0xFFFFFFF8u : (uintptr_t)end;
}

static void mdsa__arena_init(void) {
	if (mdsa__arena.end == 0) {
		mdsa__arena.mark = ((uintptr_t)&__heap_base + 7) & ~(uintptr_t)7;
		mdsa__arena.top = mdsa__arena.mark;
		mdsa__arena.end = mdsa__memory_end();
	}
}

static bool mdsa__arena_fit(size_t need) {
	uintptr_t top = mdsa__arena.top;
	if (need > (uintptr_t)0xFFFFFFFFu - top) return false;
	if (top + need <= mdsa__arena.end) return true;
	size_t missing = top + need - mdsa__arena.end;
	size_t pages = (missing + 65535u) / 65536u;
	/* Grow by at least a quarter of the memory, to keep grows rare. */
	size_t have = mdsa__arena.end / 65536u;
	if (pages < have / 4) pages = have / 4;
	if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) {
		pages = (missing + 65535u) / 65536u;
		if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return false;
	}
	mdsa__arena.end = mdsa__memory_end();
	return top + need <= mdsa__arena.end;
}

/** Allocates n bytes (8-byte aligned) from the call's arena; NULL when memory is exhausted. */
MDSA__NOINLINE static void *mdsa_alloc(size_t n) {
	mdsa__arena_init();
	size_t need = (n + 7) & ~(size_t)7;
	if (need < n || !mdsa__arena_fit(need)) {
		mdsa__arena.oom = true;
		return NULL;
	}
	uintptr_t p = mdsa__arena.top;
	mdsa__arena.top += need;
	mdsa__arena.last = p;
	return (void *)p;
}

/** Resizes an allocation of old bytes to n bytes (in place when it is the latest); NULL on failure. */
MDSA__NOINLINE static void *mdsa_realloc(void *p, size_t old, size_t n) {
	if (p != NULL && (uintptr_t)p == mdsa__arena.last) {
		size_t need = (n + 7) & ~(size_t)7;
		size_t had = mdsa__arena.top - (uintptr_t)p;
		if (need >= n && need <= had) return p;
		if (need < n || !mdsa__arena_fit(need - had)) {
			mdsa__arena.oom = true;
			return NULL;
		}
		mdsa__arena.top = (uintptr_t)p + need;
		return p;
	}
	void *q = mdsa_alloc(n);
	if (q != NULL && p != NULL) mdsa__copy(q, p, old < n ? old : n);
	return q;
}

/* ------------------------------------------------------------------------ */
/* Strings and the string builder                                            */
/* ------------------------------------------------------------------------ */

/** The length of a NUL-terminated string (0 for NULL). */
MDSA__NOINLINE static size_t mdsa_strlen(const char *s) {
	size_t n = 0;
	if (s == NULL) return 0;
	while (s[n] != 0) n++;
	return n;
}

/** An mdsa_str of a NUL-terminated string (empty for NULL). */
static inline mdsa_str mdsa_s(const char *s) {
	mdsa_str r = {s != NULL ? s : "", mdsa_strlen(s)};
	return r;
}

/** Whether a and b hold the same bytes. */
static bool mdsa_str_eq(mdsa_str a, mdsa_str b) {
	if (a.len != b.len) return false;
	return a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0;
}

/** Whether a equals the NUL-terminated b. */
static inline bool mdsa_str_eqs(mdsa_str a, const char *b) { return mdsa_str_eq(a, mdsa_s(b)); }

/** The index of the first occurrence of needle in hay, or -1. */
MDSA__NOINLINE static long mdsa_str_find(mdsa_str hay, mdsa_str needle) {
	if (needle.len == 0) return 0;
	if (needle.len > hay.len) return -1;
	const char first = needle.ptr[0];
	size_t last = hay.len - needle.len;
	for (size_t i = 0; i <= last; i++) {
		if (hay.ptr[i] == first && memcmp(hay.ptr + i, needle.ptr, needle.len) == 0) return (long)i;
	}
	return -1;
}

/** A growable byte buffer in the arena. After a failed allocation it stays failed (and empty). */
typedef struct mdsa_sb {
	char *ptr;
	size_t len, cap;
	bool failed;
} mdsa_sb;

/** Makes room for n more bytes; false (and failed) when memory is exhausted. */
MDSA__NOINLINE static bool mdsa_sb_grow(mdsa_sb *b, size_t n) {
	if (b->failed) return false;
	if (b->cap - b->len >= n) return true;
	size_t c = b->cap < 64 ? 64 : b->cap * 2;
	while (c - b->len < n) {
		if (c > ((size_t)1 << 30)) {
			b->failed = true;
			return false;
		}
		c *= 2;
	}
	char *p = (char *)mdsa_realloc(b->ptr, b->len, c);
	if (p == NULL) {
		b->failed = true;
		return false;
	}
	b->ptr = p;
	b->cap = c;
	return true;
}

/** Appends n bytes. */
MDSA__NOINLINE static void mdsa_sb_write(mdsa_sb *b, const void *p, size_t n) {
	if (n == 0 || !mdsa_sb_grow(b, n)) return;
	mdsa__copy(b->ptr + b->len, p, n);
	b->len += n;
}

/** Appends a string. */
static inline void mdsa_sb_str(mdsa_sb *b, mdsa_str s) { mdsa_sb_write(b, s.ptr, s.len); }
/** Appends a NUL-terminated string. */
static MDSA__NOINLINE void mdsa_sb_puts(mdsa_sb *b, const char *s) { mdsa_sb_write(b, s, mdsa_strlen(s)); }
/** Appends one byte. */
static MDSA__NOINLINE void mdsa_sb_byte(mdsa_sb *b, char c) {
	if (mdsa_sb_grow(b, 1)) b->ptr[b->len++] = c;
}

/** Appends a decimal integer. */
MDSA__NOINLINE static void mdsa_sb_int(mdsa_sb *b, int64_t v) {
	char tmp[24];
	int n = 0;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u > 0);
	if (v < 0) tmp[n++] = '-';
	if (!mdsa_sb_grow(b, (size_t)n)) return;
	while (n > 0) b->ptr[b->len++] = tmp[--n];
}

/**
 * Appends a non-negative number with at most 6 decimals (trailing zeros
 * dropped): the format of scores and sampling settings. Negative values and
 * NaN are written as 0.
 */
MDSA__NOINLINE static void mdsa_sb_decimal(mdsa_sb *b, double x) {
	if (!(x > 0)) {
		mdsa_sb_byte(b, '0');
		return;
	}
	if (x > 1e15) x = 1e15;
	int64_t micro = (int64_t)(x * 1000000.0 + 0.5);
	mdsa_sb_int(b, micro / 1000000);
	int64_t frac = micro % 1000000;
	if (frac == 0) return;
	char d[7];
	for (int i = 5; i >= 0; i--) {
		d[i] = (char)('0' + frac % 10);
		frac /= 10;
	}
	int n = 6;
	while (n > 0 && d[n - 1] == '0') n--;
	mdsa_sb_byte(b, '.');
	mdsa_sb_write(b, d, (size_t)n);
}

/** The builder's contents as an mdsa_str. */
static inline mdsa_str mdsa_sb_view(const mdsa_sb *b) {
	mdsa_str s = {b->ptr != NULL ? b->ptr : "", b->failed ? 0 : b->len};
	return s;
}

/** Concatenates up to three strings into a new arena string. */
MDSA__NOINLINE static mdsa_str mdsa_concat3(mdsa_str a, mdsa_str b, mdsa_str c) {
	mdsa_sb sb = {0};
	mdsa_sb_grow(&sb, a.len + b.len + c.len);
	mdsa_sb_str(&sb, a);
	mdsa_sb_str(&sb, b);
	mdsa_sb_str(&sb, c);
	return mdsa_sb_view(&sb);
}

/* ------------------------------------------------------------------------ */
/* UTF-8                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * Decodes the code point at s[i] (i < n) into *cp and returns its length.
 * An invalid or truncated sequence yields U+FFFD with length 1.
 */
MDSA__NOINLINE static size_t mdsa__utf8_decode(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
	uint32_t c = s[i];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	*cp = 0xFFFD;
	if (c >= 0xC2 && c <= 0xDF) {
		if (i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {
			*cp = ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
			return 2;
		}
	} else if (c >= 0xE0 && c <= 0xEF) {
		if (i + 2 < n) {
			uint32_t c1 = s[i + 1], c2 = s[i + 2];
			uint32_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
			if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80) {
				*cp = ((c & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F);
				return 3;
			}
		}
	} else if (c >= 0xF0 && c <= 0xF4) {
		if (i + 3 < n) {
			uint32_t c1 = s[i + 1], c2 = s[i + 2], c3 = s[i + 3];
			uint32_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
			if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80 && (c3 & 0xC0) == 0x80) {
				*cp = ((c & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F);
				return 4;
			}
		}
	}
	return 1;
}

/* Encodes cp (a valid scalar value) as UTF-8 into out; returns the length. */
static size_t mdsa__utf8_encode(uint32_t cp, char *out) {
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

/*
 * Word-at-a-time tests on 8 bytes (SWAR): loops that step a byte at a time
 * pay the sandbox's termination check per byte, so scans take 8 bytes per
 * iteration where they can.
 */
#define MDSA__ONES 0x0101010101010101ull
#define MDSA__HIGHS 0x8080808080808080ull

/* Non-zero when a byte of x is zero. */
static inline uint64_t mdsa__has_zero(uint64_t x) { return (x - MDSA__ONES) & ~x & MDSA__HIGHS; }

/* Whether a byte of x needs attention in a JSON string: '"', '\\', a
 * control character or a non-ASCII byte. */
static inline bool mdsa__json_special(uint64_t x) {
	return ((x & MDSA__HIGHS) | mdsa__has_zero(x ^ (MDSA__ONES * '"')) | mdsa__has_zero(x ^ (MDSA__ONES * '\\')) |
	        ((x - MDSA__ONES * 0x20) & ~x & MDSA__HIGHS)) != 0;
}

/* The 8 bytes at p. */
static inline uint64_t mdsa__load8(const unsigned char *p) {
	uint64_t x;
	__builtin_memcpy(&x, p, 8);
	return x;
}

/* The index of the first byte at or after i in s[0:n] that needs attention
 * in a JSON string (see mdsa__json_special), or n. */
static size_t mdsa__json_plain_run(const unsigned char *s, size_t i, size_t n) {
	while (i + 8 <= n && !mdsa__json_special(mdsa__load8(s + i))) i += 8;
	while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\') i++;
	return i;
}

/** The number of characters (code points) of s; each invalid byte counts as one. */
static size_t mdsa_rune_count(mdsa_str s) {
	const unsigned char *p = (const unsigned char *)s.ptr;
	size_t count = 0, i = 0;
	while (i < s.len) {
		if (i + 8 <= s.len && (mdsa__load8(p + i) & MDSA__HIGHS) == 0) {
			count += 8;
			i += 8;
			continue;
		}
		uint32_t cp;
		i += p[i] < 0x80 ? 1 : mdsa__utf8_decode(p, s.len, i, &cp);
		count++;
	}
	return count;
}

static inline bool mdsa__is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/** s without leading and trailing white space. */
static mdsa_str mdsa_trim(mdsa_str s) {
	while (s.len > 0 && mdsa__is_space(s.ptr[0])) {
		s.ptr++;
		s.len--;
	}
	while (s.len > 0 && mdsa__is_space(s.ptr[s.len - 1])) s.len--;
	return s;
}

/* s without trailing spaces, tabs and newlines. */
static mdsa_str mdsa__trim_right(mdsa_str s) {
	while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t' || s.ptr[s.len - 1] == '\n')) s.len--;
	return s;
}

/*
 * Shortens s to at most n characters, preferring a line break or a sentence
 * end ('.', '!', '?' followed by white space) in the second half of the
 * allowed text; failing that it cuts at the last space and appends "…"
 * (which counts towards n).
 */
static mdsa_str mdsa__cut(mdsa_str s, size_t n) {
	const unsigned char *p = (const unsigned char *)s.ptr;
	size_t end = 0, count = 0, last_start = 0;
	while (end < s.len && count < n) {
		uint32_t cp;
		last_start = end;
		end += mdsa__utf8_decode(p, s.len, end, &cp);
		count++;
	}
	mdsa_str head = {s.ptr, end};
	long best = -1;
	for (long i = (long)head.len - 1; i >= (long)(head.len / 2) && i > 0; i--) {
		char c = head.ptr[i];
		if (c == '\n') {
			best = i;
			break;
		}
		if ((c == '.' || c == '!' || c == '?') &&
		    ((size_t)i + 1 == head.len || head.ptr[i + 1] == ' ' || head.ptr[i + 1] == '\n')) {
			best = i + 1;
			break;
		}
	}
	if (best > 0) {
		head.len = (size_t)best;
		return mdsa__trim_right(head);
	}
	long sp = -1;
	for (long i = (long)head.len - 1; i >= 0; i--) {
		if (head.ptr[i] == ' ') {
			sp = i;
			break;
		}
	}
	if (sp < (long)(head.len / 2)) sp = (long)last_start; /* drop the last character for the marker */
	head.len = (size_t)sp;
	return mdsa_concat3(mdsa__trim_right(head), mdsa_s("\xE2\x80\xA6"), mdsa_s(""));
}

/**
 * Whether code point cp belongs to a word: ASCII letters and digits, and
 * letters of other scripts. ASCII punctuation, Latin-1 symbols, general
 * punctuation, symbols and emoji separate words.
 */
static bool mdsa_is_word_rune(uint32_t cp) {
	if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
	if (cp < 0xC0 || cp == 0xD7 || cp == 0xF7) return false;
	if (cp >= 0x2000 && cp <= 0x2BFF) return false;
	if (cp >= 0x3000 && cp <= 0x303F) return false;
	if (cp >= 0xFE30 && cp <= 0xFE4F) return false;
	if (cp >= 0xFF00 && cp <= 0xFF0F) return false;
	if (cp >= 0xFF1A && cp <= 0xFF20) return false;
	if (cp >= 0xFF3B && cp <= 0xFF40) return false;
	if (cp >= 0xFF5B && cp <= 0xFF65) return false;
	if (cp >= 0xFFF0 && cp <= 0xFFFF) return false;
	if (cp >= 0x1F000 && cp <= 0x1FAFF) return false;
	return true;
}

/** The lower-case form of cp for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals. */
static uint32_t mdsa_fold_rune(uint32_t cp) {
	if (cp < 0x80) return cp >= 'A' && cp <= 'Z' ? cp + 0x20 : cp;
	if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return cp + 0x20;
	if (cp >= 0x100 && cp <= 0x17F) {
		if ((cp <= 0x137 || (cp >= 0x14A && cp <= 0x177)) && (cp & 1) == 0) return cp + 1;
		if (((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) && (cp & 1) == 1) return cp + 1;
		if (cp == 0x178) return 0xFF;
		return cp;
	}
	if (cp >= 0x391 && cp <= 0x3A9 && cp != 0x3A2) return cp + 0x20;
	if (cp >= 0x410 && cp <= 0x42F) return cp + 0x20;
	if (cp >= 0x400 && cp <= 0x40F) return cp + 0x50;
	return cp;
}

#define MDSA__FNV_OFFSET 0xcbf29ce484222325ull
#define MDSA__FNV_PRIME 0x100000001b3ull

/* The folded form of an ASCII byte if it is a letter or digit, else 0. */
static inline uint32_t mdsa__ascii_word(uint32_t b) {
	uint32_t l = b | 0x20;
	if (l - 'a' < 26u) return l;
	if (b - '0' < 10u) return b;
	return 0;
}

MDSA__NOINLINE static bool mdsa__words_grow(mdsa_words *w) {
	int cap = w->cap < 16 ? 16 : w->cap * 2;
	uint64_t *h = (uint64_t *)mdsa_realloc(w->h, sizeof(uint64_t) * (size_t)w->cap, sizeof(uint64_t) * (size_t)cap);
	if (h == NULL) return false;
	w->h = h;
	w->cap = cap;
	return true;
}

/*
 * One character of mdsa_words_of: C is its folded code point when it
 * belongs to a word, else 0. Loop headers are expensive in the sandbox
 * (the host checks for termination at each), so the ASCII path runs this
 * eight times per iteration.
 */
#define MDSA__WORD_STEP(C)                                                     \
	do {                                                                       \
		uint32_t c_ = (C);                                                     \
		if (c_ != 0) {                                                         \
			h = (h ^ c_) * MDSA__FNV_PRIME;                                    \
			in = true;                                                         \
		} else if (in) {                                                       \
			if (w.n == w.cap && !mdsa__words_grow(&w)) return w;               \
			w.h[w.n++] = h;                                                    \
			h = MDSA__FNV_OFFSET;                                              \
			in = false;                                                        \
		}                                                                      \
	} while (0)

/**
 * The words of s (see mdsa_words): case is folded for ASCII, Latin-1,
 * Latin Extended-A, Greek and Cyrillic; "Don't" is the two words "don" and
 * "t". Memory comes from the arena; on exhaustion the list is cut short
 * (and the export fails with out of memory).
 */
MDSA__NOINLINE static mdsa_words mdsa_words_of(mdsa_str s) {
	const unsigned char *p = (const unsigned char *)s.ptr;
	mdsa_words w = {0};
	uint64_t h = MDSA__FNV_OFFSET;
	bool in = false;
	size_t i = 0, n = s.len;
	while (i < n) {
		if (i + 8 <= n) {
			uint64_t x;
			__builtin_memcpy(&x, p + i, 8);
			if ((x & MDSA__HIGHS) == 0) {
				MDSA__WORD_STEP(mdsa__ascii_word(p[i]));
				MDSA__WORD_STEP(mdsa__ascii_word(p[i + 1]));
				MDSA__WORD_STEP(mdsa__ascii_word(p[i + 2]));
				MDSA__WORD_STEP(mdsa__ascii_word(p[i + 3]));
				MDSA__WORD_STEP(mdsa__ascii_word(p[i + 4]));
				MDSA__WORD_STEP(mdsa__ascii_word(p[i + 5]));
				MDSA__WORD_STEP(mdsa__ascii_word(p[i + 6]));
				MDSA__WORD_STEP(mdsa__ascii_word(p[i + 7]));
				i += 8;
				continue;
			}
		}
		uint32_t cp = p[i];
		size_t k = 1;
		if (cp < 0x80) {
			cp = mdsa__ascii_word(cp);
		} else {
			k = mdsa__utf8_decode(p, n, i, &cp);
			cp = mdsa_is_word_rune(cp) ? mdsa_fold_rune(cp) : 0;
		}
		MDSA__WORD_STEP(cp);
		i += k;
	}
	MDSA__WORD_STEP(0);
	return w;
}

/** Whether the word sequence phrase occurs in text (false for an empty phrase). */
static bool mdsa_words_contain(const mdsa_words *text, const mdsa_words *phrase) {
	int m = phrase->n;
	if (m == 0 || m > text->n) return false;
	uint64_t first = phrase->h[0];
	for (int i = 0; i + m <= text->n; i++) {
		if (text->h[i] != first) continue;
		int k = 1;
		while (k < m && text->h[i + k] == phrase->h[k]) k++;
		if (k == m) return true;
	}
	return false;
}

/** Whether phrase occurs in text as whole words, case and punctuation ignored ("sue you" matches "Sue, you!"). */
static bool mdsa_has_phrase(mdsa_str text, const char *phrase) {
	mdsa_words t = mdsa_words_of(text), p = mdsa_words_of(mdsa_s(phrase));
	return mdsa_words_contain(&t, &p);
}

/*
 * A set of phrases matched in one pass over a text's words: an
 * open-addressing table from a first-word hash to the phrases starting
 * with it (chained through next).
 */
typedef struct mdsa__phrase_set {
	const char *const *text; /* the phrases as given */
	mdsa_words *words;       /* their words */
	int n;
	uint64_t *keys; /* first-word hashes; 0 = empty slot */
	int *head;      /* first phrase of each slot */
	int *next;      /* next phrase with the same first word, or -1 */
	uint32_t mask;
} mdsa__phrase_set;

/* Builds the set of the NULL-terminated phrases, plus extra (may be NULL)
 * as phrase 0. Phrases without words are left out of the table. */
static bool mdsa__phrase_set_build(mdsa__phrase_set *ps, const char *extra, const char *const *phrases) {
	*ps = (mdsa__phrase_set){0};
	int n = (extra != NULL ? 1 : 0);
	for (int i = 0; phrases != NULL && phrases[i] != NULL; i++) n++;
	const char **text = (const char **)mdsa_alloc(sizeof(char *) * (size_t)(n + 1));
	ps->words = (mdsa_words *)mdsa_alloc(sizeof(mdsa_words) * (size_t)(n + 1));
	ps->next = (int *)mdsa_alloc(sizeof(int) * (size_t)(n + 1));
	uint32_t size = 8;
	while (size < 2u * (uint32_t)n) size *= 2;
	ps->keys = (uint64_t *)mdsa_alloc(sizeof(uint64_t) * size);
	ps->head = (int *)mdsa_alloc(sizeof(int) * size);
	if (text == NULL || ps->words == NULL || ps->next == NULL || ps->keys == NULL || ps->head == NULL) return false;
	__builtin_memset(ps->keys, 0, sizeof(uint64_t) * size);
	ps->mask = size - 1;
	ps->text = text;
	for (int i = 0; i < n; i++) {
		text[i] = extra != NULL ? (i == 0 ? extra : phrases[i - 1]) : phrases[i];
		ps->words[i] = mdsa_words_of(mdsa_s(text[i]));
		ps->next[i] = -1;
	}
	ps->n = n;
	/* Insert in reverse so that each chain lists phrases in declaration order. */
	for (int i = n - 1; i >= 0; i--) {
		if (ps->words[i].n == 0) continue;
		uint64_t k = ps->words[i].h[0] | 1; /* never 0 */
		uint32_t j = (uint32_t)(k >> 32 ^ k) & ps->mask;
		while (ps->keys[j] != 0 && ps->keys[j] != k) j = (j + 1) & ps->mask;
		if (ps->keys[j] == k) {
			ps->next[i] = ps->head[j];
		}
		ps->keys[j] = k;
		ps->head[j] = i;
	}
	return true;
}

/*
 * Marks in found[] (n_phrases entries, cleared by the caller) the phrases of
 * ps that occur in text; stops once stop_after have been found (0 = find
 * all). Returns how many were found.
 */
static int mdsa__phrase_set_find(const mdsa__phrase_set *ps, const mdsa_words *text, bool *found, int stop_after) {
	int hits = 0;
	for (int i = 0; i < text->n; i++) {
		uint64_t k = text->h[i] | 1;
		uint32_t j = (uint32_t)(k >> 32 ^ k) & ps->mask;
		while (ps->keys[j] != 0 && ps->keys[j] != k) j = (j + 1) & ps->mask;
		if (ps->keys[j] == 0) continue;
		for (int p = ps->head[j]; p >= 0; p = ps->next[p]) {
			const mdsa_words *w = &ps->words[p];
			if (found[p] || w->n > text->n - i || w->h[0] != text->h[i]) continue;
			int k2 = 1;
			while (k2 < w->n && text->h[i + k2] == w->h[k2]) k2++;
			if (k2 == w->n) {
				found[p] = true;
				if (++hits == stop_after) return hits;
			}
		}
	}
	return hits;
}

/* ------------------------------------------------------------------------ */
/* JSON writer                                                               */
/* ------------------------------------------------------------------------ */

/**
 * Appends s as a quoted JSON string: quote, backslash and control
 * characters escaped, invalid UTF-8 replaced by U+FFFD, so the output is
 * always valid UTF-8 JSON.
 */
MDSA__NOINLINE static void mdsa_sb_json_str(mdsa_sb *b, mdsa_str s) {
	static const char hex[] = "0123456789abcdef";
	if (!mdsa_sb_grow(b, s.len + 2)) return;
	b->ptr[b->len++] = '"';
	const unsigned char *p = (const unsigned char *)s.ptr;
	size_t i = 0;
	while (i < s.len) {
		/* Copy the run of bytes that need no escaping in one go. */
		size_t j = mdsa__json_plain_run(p, i, s.len);
		if (j > i) {
			mdsa_sb_write(b, p + i, j - i);
			i = j;
			continue;
		}
		unsigned char c = p[i];
		if (c < 0x80) {
			char esc[6] = {'\\', 0, 0, 0, 0, 0};
			size_t n = 2;
			switch (c) {
			case '"': esc[1] = '"'; break;
			case '\\': esc[1] = '\\'; break;
			case '\n': esc[1] = 'n'; break;
			case '\r': esc[1] = 'r'; break;
			case '\t': esc[1] = 't'; break;
			case '\b': esc[1] = 'b'; break;
			case '\f': esc[1] = 'f'; break;
			default:
				esc[1] = 'u';
				esc[2] = '0';
				esc[3] = '0';
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				n = 6;
			}
			mdsa_sb_write(b, esc, n);
			i++;
			continue;
		}
		uint32_t cp;
		size_t k = mdsa__utf8_decode(p, s.len, i, &cp);
		if (cp == 0xFFFD && k == 1) {
			mdsa_sb_write(b, "\xEF\xBF\xBD", 3);
		} else {
			mdsa_sb_write(b, p + i, k);
		}
		i += k;
	}
	mdsa_sb_byte(b, '"');
}

/** Appends a NUL-terminated string as a JSON string. */
static inline void mdsa_sb_json_cstr(mdsa_sb *b, const char *s) { mdsa_sb_json_str(b, mdsa_s(s)); }

/* Appends a JSON array of the NULL-terminated strings (NULL = []). */
static void mdsa__json_str_list(mdsa_sb *b, const char *const *list) {
	mdsa_sb_byte(b, '[');
	for (int i = 0; list != NULL && list[i] != NULL; i++) {
		if (i > 0) mdsa_sb_byte(b, ',');
		mdsa_sb_json_cstr(b, list[i]);
	}
	mdsa_sb_byte(b, ']');
}

/* ------------------------------------------------------------------------ */
/* JSON reader                                                               */
/* ------------------------------------------------------------------------ */

/** Kinds of JSON values. */
typedef enum mdsa_jkind {
	MDSA_J_NULL,
	MDSA_J_BOOL,
	MDSA_J_NUMBER,
	MDSA_J_STRING,
	MDSA_J_ARRAY,
	MDSA_J_OBJECT,
} mdsa_jkind;

/**
 * One parsed JSON value. Arrays and objects hold their members as a list
 * (first, next); an object member has its key in key.
 */
typedef struct mdsa_json {
	mdsa_jkind kind;
	bool boolean;
	mdsa_str str;     /* STRING: the decoded text; NUMBER: the literal */
	mdsa_str key;     /* member of an object: its key */
	struct mdsa_json *first;
	struct mdsa_json *next;
	int count;
} mdsa_json;

typedef struct mdsa__parser {
	const unsigned char *s;
	size_t n, pos;
	mdsa_sb err;
} mdsa__parser;

#define MDSA__MAX_DEPTH 64

static void mdsa__pfail(mdsa__parser *p, const char *msg) {
	if (p->err.len > 0 || p->err.failed) return;
	mdsa_sb_puts(&p->err, msg);
	mdsa_sb_puts(&p->err, " at byte ");
	mdsa_sb_int(&p->err, (int64_t)p->pos);
	if (p->err.len == 0) p->err.failed = true; /* out of memory: still an error */
}

static void mdsa__skip_space(mdsa__parser *p) {
	while (p->pos < p->n) {
		unsigned char c = p->s[p->pos];
		if (c != ' ' && c != '\n' && c != '\r' && c != '\t') break;
		p->pos++;
	}
}

static int mdsa__hex4(const mdsa__parser *p, size_t at) {
	if (at + 4 > p->n) return -1;
	int v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = p->s[at + i];
		int d;
		if (c >= '0' && c <= '9') d = c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') d = (c | 0x20) - 'a' + 10;
		else return -1;
		v = v << 4 | d;
	}
	return v;
}

/* Parses the string at pos (a '"') into *out; false on error. */
static bool mdsa__pstring(mdsa__parser *p, mdsa_str *out) {
	size_t start = ++p->pos;
	/* Fast path: no escapes, no control characters, ASCII only. */
	size_t i = mdsa__json_plain_run(p->s, start, p->n);
	if (i < p->n && p->s[i] == '"') {
		out->ptr = (const char *)p->s + start;
		out->len = i - start;
		p->pos = i + 1;
		return true;
	}
	mdsa_sb b = {0};
	mdsa_sb_write(&b, p->s + start, i - start);
	for (;;) {
		if (i >= p->n) {
			p->pos = p->n;
			mdsa__pfail(p, "unexpected end of JSON input in string");
			return false;
		}
		unsigned char c = p->s[i];
		if (c == '"') {
			p->pos = i + 1;
			if (b.failed) {
				mdsa__pfail(p, "out of memory");
				return false;
			}
			*out = mdsa_sb_view(&b);
			return true;
		}
		if (c < 0x20) {
			p->pos = i;
			mdsa__pfail(p, "invalid control character in string");
			return false;
		}
		if (c == '\\') {
			if (i + 1 >= p->n) {
				p->pos = p->n;
				mdsa__pfail(p, "unexpected end of JSON input in string");
				return false;
			}
			unsigned char e = p->s[i + 1];
			char ch = 0;
			switch (e) {
			case '"': ch = '"'; break;
			case '\\': ch = '\\'; break;
			case '/': ch = '/'; break;
			case 'b': ch = '\b'; break;
			case 'f': ch = '\f'; break;
			case 'n': ch = '\n'; break;
			case 'r': ch = '\r'; break;
			case 't': ch = '\t'; break;
			case 'u': {
				int h = mdsa__hex4(p, i + 2);
				if (h < 0) {
					p->pos = i;
					mdsa__pfail(p, "invalid \\u escape in string");
					return false;
				}
				i += 6;
				uint32_t cp = (uint32_t)h;
				if (h >= 0xD800 && h < 0xDC00) {
					int lo = -1;
					if (i + 1 < p->n && p->s[i] == '\\' && p->s[i + 1] == 'u') lo = mdsa__hex4(p, i + 2);
					if (lo >= 0xDC00 && lo < 0xE000) {
						cp = 0x10000 + (((uint32_t)h - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
						i += 6;
					} else {
						cp = 0xFFFD;
					}
				} else if (h >= 0xDC00 && h < 0xE000) {
					cp = 0xFFFD;
				}
				char enc[4];
				mdsa_sb_write(&b, enc, mdsa__utf8_encode(cp, enc));
				continue;
			}
			default:
				p->pos = i;
				mdsa__pfail(p, "invalid escape in string");
				return false;
			}
			mdsa_sb_byte(&b, ch);
			i += 2;
			continue;
		}
		if (c < 0x80) {
			size_t j = mdsa__json_plain_run(p->s, i, p->n);
			mdsa_sb_write(&b, p->s + i, j - i);
			i = j;
			continue;
		}
		uint32_t cp;
		size_t k = mdsa__utf8_decode(p->s, p->n, i, &cp);
		if (cp == 0xFFFD && k == 1) mdsa_sb_write(&b, "\xEF\xBF\xBD", 3);
		else mdsa_sb_write(&b, p->s + i, k);
		i += k;
	}
}

static size_t mdsa__digits(mdsa__parser *p) {
	size_t n = 0;
	while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
		p->pos++;
		n++;
	}
	return n;
}

static mdsa_json *mdsa__pvalue(mdsa__parser *p, int depth);

static mdsa_json *mdsa__pnew(mdsa__parser *p, mdsa_jkind kind) {
	mdsa_json *v = (mdsa_json *)mdsa_alloc(sizeof(mdsa_json));
	if (v == NULL) {
		mdsa__pfail(p, "out of memory");
		return NULL;
	}
	*v = (mdsa_json){.kind = kind};
	return v;
}

static mdsa_json *mdsa__pcontainer(mdsa__parser *p, int depth, bool object) {
	mdsa_json *v = mdsa__pnew(p, object ? MDSA_J_OBJECT : MDSA_J_ARRAY);
	if (v == NULL) return NULL;
	const char close = object ? '}' : ']';
	p->pos++;
	mdsa__skip_space(p);
	if (p->pos < p->n && p->s[p->pos] == close) {
		p->pos++;
		return v;
	}
	mdsa_json **tail = &v->first;
	for (;;) {
		mdsa__skip_space(p);
		mdsa_str key = {"", 0};
		if (object) {
			if (p->pos >= p->n) {
				mdsa__pfail(p, "unexpected end of JSON input");
				return NULL;
			}
			if (p->s[p->pos] != '"') {
				mdsa__pfail(p, "expected a string as object key");
				return NULL;
			}
			if (!mdsa__pstring(p, &key)) return NULL;
			mdsa__skip_space(p);
			if (p->pos >= p->n) {
				mdsa__pfail(p, "unexpected end of JSON input");
				return NULL;
			}
			if (p->s[p->pos] != ':') {
				mdsa__pfail(p, "expected ':' after object key");
				return NULL;
			}
			p->pos++;
			mdsa__skip_space(p);
		}
		mdsa_json *item = mdsa__pvalue(p, depth + 1);
		if (item == NULL) return NULL;
		item->key = key;
		*tail = item;
		tail = &item->next;
		v->count++;
		mdsa__skip_space(p);
		if (p->pos >= p->n) {
			mdsa__pfail(p, "unexpected end of JSON input");
			return NULL;
		}
		unsigned char c = p->s[p->pos];
		if (c == (unsigned char)close) {
			p->pos++;
			return v;
		}
		if (c != ',') {
			mdsa__pfail(p, object ? "expected ',' or '}' in object" : "expected ',' or ']' in array");
			return NULL;
		}
		p->pos++;
	}
}

static mdsa_json *mdsa__pvalue(mdsa__parser *p, int depth) {
	if (depth > MDSA__MAX_DEPTH) {
		mdsa__pfail(p, "JSON nested too deeply");
		return NULL;
	}
	if (p->pos >= p->n) {
		mdsa__pfail(p, "unexpected end of JSON input");
		return NULL;
	}
	unsigned char c = p->s[p->pos];
	if (c == '{' || c == '[') return mdsa__pcontainer(p, depth, c == '{');
	if (c == '"') {
		mdsa_json *v = mdsa__pnew(p, MDSA_J_STRING);
		if (v == NULL || !mdsa__pstring(p, &v->str)) return NULL;
		return v;
	}
	if (c == 't' || c == 'f' || c == 'n') {
		const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
		size_t len = mdsa_strlen(word);
		for (size_t i = 0; i < len; i++) {
			if (p->pos + i >= p->n) {
				p->pos = p->n;
				mdsa__pfail(p, "unexpected end of JSON input");
				return NULL;
			}
			if (p->s[p->pos + i] != (unsigned char)word[i]) {
				p->pos += i;
				mdsa__pfail(p, "invalid literal");
				return NULL;
			}
		}
		p->pos += len;
		mdsa_json *v = mdsa__pnew(p, c == 'n' ? MDSA_J_NULL : MDSA_J_BOOL);
		if (v != NULL) v->boolean = c == 't';
		return v;
	}
	if (c == '-' || (c >= '0' && c <= '9')) {
		size_t start = p->pos;
		if (c == '-') p->pos++;
		if (p->pos >= p->n) {
			mdsa__pfail(p, "unexpected end of JSON input");
			return NULL;
		}
		if (p->s[p->pos] == '0') {
			p->pos++;
		} else if (p->s[p->pos] >= '1' && p->s[p->pos] <= '9') {
			mdsa__digits(p);
		} else {
			mdsa__pfail(p, "invalid number");
			return NULL;
		}
		if (p->pos < p->n && p->s[p->pos] == '.') {
			p->pos++;
			if (mdsa__digits(p) == 0) {
				mdsa__pfail(p, "invalid number: digits expected after '.'");
				return NULL;
			}
		}
		if (p->pos < p->n && (p->s[p->pos] | 0x20) == 'e') {
			p->pos++;
			if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
			if (mdsa__digits(p) == 0) {
				mdsa__pfail(p, "invalid number: digits expected in the exponent");
				return NULL;
			}
		}
		mdsa_json *v = mdsa__pnew(p, MDSA_J_NUMBER);
		if (v != NULL) {
			v->str.ptr = (const char *)p->s + start;
			v->str.len = p->pos - start;
		}
		return v;
	}
	if (c >= 0x20 && c < 0x7F) {
		char msg[] = "unexpected character 'x'";
		msg[sizeof msg - 3] = (char)c;
		mdsa__pfail(p, msg);
	} else {
		mdsa__pfail(p, "unexpected byte");
	}
	return NULL;
}

/**
 * Parses exactly one JSON value (white space around it allowed) from
 * data. Returns NULL and sets *err (a message naming the byte offset) on
 * invalid input. Strings are decoded to UTF-8; invalid UTF-8 and unpaired
 * surrogate escapes become U+FFFD.
 */
static mdsa_json *mdsa_json_parse(mdsa_str data, mdsa_str *err) {
	mdsa__parser p = {(const unsigned char *)data.ptr, data.len, 0, {0}};
	mdsa__skip_space(&p);
	mdsa_json *v = mdsa__pvalue(&p, 0);
	if (v != NULL) {
		mdsa__skip_space(&p);
		if (p.pos < p.n) {
			mdsa__pfail(&p, "unexpected data after the JSON value");
			v = NULL;
		}
	}
	if (v == NULL && err != NULL) {
		*err = p.err.failed ? mdsa_s("out of memory") : mdsa_sb_view(&p.err);
	}
	return v;
}

/** The member key of object v (the last one when repeated), or NULL. */
static mdsa_json *mdsa_json_get(const mdsa_json *v, const char *key) {
	if (v == NULL || v->kind != MDSA_J_OBJECT) return NULL;
	mdsa_str k = mdsa_s(key);
	mdsa_json *found = NULL;
	for (mdsa_json *m = v->first; m != NULL; m = m->next) {
		if (mdsa_str_eq(m->key, k)) found = m;
	}
	return found;
}

/** The string member key of v, or def when absent or not a string. */
static mdsa_str mdsa_json_get_str(const mdsa_json *v, const char *key, const char *def) {
	mdsa_json *m = mdsa_json_get(v, key);
	if (m == NULL || m->kind != MDSA_J_STRING) return mdsa_s(def);
	return m->str;
}

/** The integer value of a JSON number (its fraction dropped, saturating), or def. */
static int64_t mdsa_json_int(const mdsa_json *v, int64_t def) {
	if (v == NULL || v->kind != MDSA_J_NUMBER) return def;
	const char *s = v->str.ptr;
	size_t n = v->str.len, i = 0;
	bool neg = false;
	if (i < n && s[i] == '-') {
		neg = true;
		i++;
	}
	uint64_t mant = 0;
	int exp = 0;
	bool big = false;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (mant < 100000000000000000ull) mant = mant * 10 + (uint64_t)(s[i] - '0');
		else exp++;
	}
	if (i < n && s[i] == '.') {
		i++;
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			if (mant < 100000000000000000ull) {
				mant = mant * 10 + (uint64_t)(s[i] - '0');
				exp--;
			}
		}
	}
	if (i < n && (s[i] | 0x20) == 'e') {
		i++;
		bool eneg = false;
		if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
		int e = 0;
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			if (e < 100000) e = e * 10 + (s[i] - '0');
		}
		exp += eneg ? -e : e;
	}
	while (exp < 0 && mant > 0) {
		mant /= 10;
		exp++;
	}
	while (exp > 0 && mant > 0 && !big) {
		if (mant > 922337203685477580ull) big = true;
		else mant *= 10;
		exp--;
	}
	if (big || mant > (uint64_t)INT64_MAX) return neg ? INT64_MIN : INT64_MAX;
	return neg ? -(int64_t)mant : (int64_t)mant;
}

/**
 * The value of a JSON number as a double, or def when v is not a number.
 * Correctly rounded for up to 15 significant digits and exponents within
 * +-22 (such as the float32 values hosts send); otherwise within a few
 * units in the last place. Out-of-range magnitudes give +-infinity or +-0.
 */
static double mdsa_json_number(const mdsa_json *v, double def) {
	static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
	                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
	if (v == NULL || v->kind != MDSA_J_NUMBER) return def;
	const char *s = v->str.ptr;
	size_t n = v->str.len, i = 0;
	bool neg = false;
	if (i < n && s[i] == '-') {
		neg = true;
		i++;
	}
	/* Up to 19 significant digits in mant; the rest only shift exp. */
	uint64_t mant = 0;
	int digits = 0;
	long exp = 0;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		if (digits < 19) {
			mant = mant * 10 + (uint64_t)(s[i] - '0');
			if (mant != 0) digits++;
		} else {
			exp++;
		}
	}
	if (i < n && s[i] == '.') {
		for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			if (digits < 19) {
				mant = mant * 10 + (uint64_t)(s[i] - '0');
				if (mant != 0) digits++;
				exp--;
			}
		}
	}
	if (i < n && (s[i] | 0x20) == 'e') {
		i++;
		bool eneg = false;
		if (i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
		long e = 0;
		for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
			if (e < 100000) e = e * 10 + (s[i] - '0');
		}
		exp += eneg ? -e : e;
	}
	double d = (double)mant;
	if (mant == 0 || exp < -400) {
		d = 0;
	} else if (exp > 400) {
		d = __builtin_inf();
	} else if (exp >= 0) {
		for (; exp > 22; exp -= 22) d *= 1e22; /* saturates at infinity */
		d *= pow10[exp];
	} else {
		for (; exp < -22; exp += 22) d /= 1e22; /* goes to 0 */
		d /= pow10[-exp];
	}
	return neg ? -d : d;
}

/**
 * Appends v as compact JSON: strings re-escaped (valid UTF-8 out), numbers
 * as they were written.
 */
static void mdsa_sb_json_value(mdsa_sb *b, const mdsa_json *v) {
	if (v == NULL) {
		mdsa_sb_puts(b, "null");
		return;
	}
	switch (v->kind) {
	case MDSA_J_NULL: mdsa_sb_puts(b, "null"); break;
	case MDSA_J_BOOL: mdsa_sb_puts(b, v->boolean ? "true" : "false"); break;
	case MDSA_J_NUMBER: mdsa_sb_str(b, v->str); break;
	case MDSA_J_STRING: mdsa_sb_json_str(b, v->str); break;
	case MDSA_J_ARRAY:
	case MDSA_J_OBJECT: {
		bool object = v->kind == MDSA_J_OBJECT;
		mdsa_sb_byte(b, object ? '{' : '[');
		for (const mdsa_json *m = v->first; m != NULL; m = m->next) {
			if (m != v->first) mdsa_sb_byte(b, ',');
			if (object) {
				mdsa_sb_json_str(b, m->key);
				mdsa_sb_byte(b, ':');
			}
			mdsa_sb_json_value(b, m);
		}
		mdsa_sb_byte(b, object ? '}' : ']');
		break;
	}
	}
}

/* ------------------------------------------------------------------------ */
/* Host I/O                                                                  */
/* ------------------------------------------------------------------------ */

/* Copies n bytes at p into a new Extism block; returns its offset, or 0
 * when the kernel could not allocate it (its memory is capped too). Moves
 * 8 bytes per call, overlapping the last word for a partial tail. */
static uint64_t mdsa__store_block(const void *src, size_t n) {
	const unsigned char *p = (const unsigned char *)src;
	uint64_t off = mdsa__x_alloc((uint64_t)n);
	if (off == 0) return 0;
	if (n < 8) {
		for (size_t i = 0; i < n; i++) mdsa__x_store_u8(off + i, p[i]);
		return off;
	}
	size_t i = 0;
	uint64_t w;
	for (; i + 8 <= n; i += 8) {
		__builtin_memcpy(&w, p + i, 8);
		mdsa__x_store_u64(off + i, w);
	}
	if (i < n) {
		__builtin_memcpy(&w, p + n - 8, 8);
		mdsa__x_store_u64(off + n - 8, w);
	}
	return off;
}

/* Reads n bytes through load (offsets from base) into a new arena buffer. */
static mdsa_str mdsa__load_block(uint64_t base, size_t n, bool input) {
	char *buf = (char *)mdsa_alloc(n > 0 ? n : 1);
	if (buf == NULL) return mdsa_s("");
	if (n < 8) {
		for (size_t i = 0; i < n; i++) {
			buf[i] = (char)(input ? mdsa__x_input_load_u8(i) : mdsa__x_load_u8(base + i));
		}
	} else {
		size_t i = 0;
		uint64_t w;
		for (; i + 8 <= n; i += 8) {
			w = input ? mdsa__x_input_load_u64(i) : mdsa__x_load_u64(base + i);
			__builtin_memcpy(buf + i, &w, 8);
		}
		if (i < n) {
			w = input ? mdsa__x_input_load_u64(n - 8) : mdsa__x_load_u64(base + n - 8);
			__builtin_memcpy(buf + n - 8, &w, 8);
		}
	}
	mdsa_str s = {buf, n};
	return s;
}

/** The export's input (the JSON the host passed), in the arena. */
static mdsa_str mdsa_input(void) {
	size_t n = (size_t)mdsa__x_input_length();
	return mdsa__load_block(0, n, true);
}

/** Sets the export's output; false when the host's memory cannot hold it. */
static bool mdsa_output(mdsa_str s) {
	uint64_t off = mdsa__store_block(s.ptr, s.len);
	if (off == 0 && s.len > 0) return false;
	mdsa__x_output_set(off, s.len);
	return true;
}

/** Sets the export's error message (the export must then return non-zero). */
MDSA__NOINLINE static void mdsa_set_error(mdsa_str msg) {
	if (msg.len == 0) msg = mdsa_s("failed");
	uint64_t off = mdsa__store_block(msg.ptr, msg.len);
	if (off != 0) mdsa__x_error_set(off);
}

/* Calls a host function with a JSON request and returns the reply. */
static mdsa_str mdsa__host_call(uint64_t (*fn)(uint64_t), mdsa_str req) {
	uint64_t in = mdsa__store_block(req.ptr, req.len);
	if (in == 0) return mdsa_s("{\"error\":{\"code\":\"out_of_memory\",\"message\":\"the request does not fit in the host's memory\"}}");
	uint64_t out = fn(in);
	mdsa__x_free(in);
	if (out == 0) return mdsa_s("");
	mdsa_str r = mdsa__load_block(out, (size_t)mdsa__x_length(out), false);
	mdsa__x_free(out);
	return r;
}

/* ------------------------------------------------------------------------ */
/* Env, generation and host functions                                        */
/* ------------------------------------------------------------------------ */

/** Makes the current export fail with msg (the first message wins). Returns -1. */
static int mdsa_fail(mdsa_env *env, mdsa_str msg) {
	if (env->error.len == 0) env->error = msg.len > 0 ? msg : mdsa_s("failed");
	return -1;
}

/** mdsa_fail with a NUL-terminated message. */
static inline int mdsa_fails(mdsa_env *env, const char *msg) { return mdsa_fail(env, mdsa_s(msg)); }

static bool mdsa__gen_is_zero(const mdsa_generation *g) {
	return g->max_tokens == 0 && g->temperature == 0 && g->top_p == 0 && g->top_k == 0 && g->repeat_penalty == 0 &&
	       (g->stop == NULL || g->stop[0] == NULL) && g->seed == 0;
}

/** base with every field that over sets replacing base's. */
static mdsa_generation mdsa_merge_generation(mdsa_generation base, const mdsa_generation *over) {
	if (over->max_tokens != 0) base.max_tokens = over->max_tokens;
	if (over->temperature != 0) base.temperature = over->temperature;
	if (over->top_p != 0) base.top_p = over->top_p;
	if (over->top_k != 0) base.top_k = over->top_k;
	if (over->repeat_penalty != 0) base.repeat_penalty = over->repeat_penalty;
	if (over->stop != NULL && over->stop[0] != NULL) base.stop = over->stop;
	if (over->seed != 0) base.seed = over->seed;
	return base;
}

/* Writes the set fields of g as members of an open object (each with a
 * leading comma unless first). */
static void mdsa__gen_fields(mdsa_sb *b, const mdsa_generation *g, bool first) {
#define MDSA__SEP()                                  \
	do {                                             \
		if (!first) mdsa_sb_byte(b, ',');            \
		first = false;                               \
	} while (0)
	if (g->max_tokens != 0) {
		MDSA__SEP();
		mdsa_sb_puts(b, "\"max_tokens\":");
		mdsa_sb_int(b, g->max_tokens);
	}
	if (g->temperature != 0) {
		MDSA__SEP();
		mdsa_sb_puts(b, "\"temperature\":");
		mdsa_sb_decimal(b, g->temperature);
	}
	if (g->top_p != 0) {
		MDSA__SEP();
		mdsa_sb_puts(b, "\"top_p\":");
		mdsa_sb_decimal(b, g->top_p);
	}
	if (g->top_k != 0) {
		MDSA__SEP();
		mdsa_sb_puts(b, "\"top_k\":");
		mdsa_sb_int(b, g->top_k);
	}
	if (g->repeat_penalty != 0) {
		MDSA__SEP();
		mdsa_sb_puts(b, "\"repeat_penalty\":");
		mdsa_sb_decimal(b, g->repeat_penalty);
	}
	if (g->stop != NULL && g->stop[0] != NULL) {
		MDSA__SEP();
		mdsa_sb_puts(b, "\"stop\":");
		mdsa__json_str_list(b, g->stop);
	}
	if (g->seed != 0) {
		MDSA__SEP();
		mdsa_sb_puts(b, "\"seed\":");
		mdsa_sb_int(b, g->seed);
	}
#undef MDSA__SEP
}

static void mdsa__gen_object(mdsa_sb *b, const mdsa_generation *g) {
	mdsa_sb_byte(b, '{');
	mdsa__gen_fields(b, g, true);
	mdsa_sb_byte(b, '}');
}

static void mdsa__messages(mdsa_sb *b, const mdsa_message *m, int n) {
	mdsa_sb_byte(b, '[');
	for (int i = 0; i < n; i++) {
		if (i > 0) mdsa_sb_byte(b, ',');
		mdsa_sb_puts(b, "{\"role\":");
		mdsa_sb_json_str(b, m[i].role);
		mdsa_sb_puts(b, ",\"content\":");
		mdsa_sb_json_str(b, m[i].content);
		mdsa_sb_byte(b, '}');
	}
	mdsa_sb_byte(b, ']');
}

/*
 * Decodes an mdsa_generate reply; a refusal or an undecodable reply sets
 * error_code. Returns 0 on success, -1 otherwise.
 */
static int mdsa__decode_generate(mdsa_str reply, mdsa_generate_result *out) {
	*out = (mdsa_generate_result){0};
	mdsa_str err = {0};
	mdsa_json *v = mdsa_json_parse(reply, &err);
	if (v == NULL || v->kind != MDSA_J_OBJECT) {
		out->error_code = mdsa_s("bad_reply");
		out->error_message = mdsa_concat3(mdsa_s("mdsa_generate: undecodable reply: "),
		                                  v == NULL ? err : mdsa_s("not a JSON object"), mdsa_s(""));
		return -1;
	}
	mdsa_json *e = mdsa_json_get(v, "error");
	if (e != NULL && e->kind != MDSA_J_NULL) {
		out->error_code = mdsa_json_get_str(e, "code", "engine_error");
		if (out->error_code.len == 0) out->error_code = mdsa_s("engine_error");
		out->error_message = mdsa_json_get_str(e, "message", "");
		return -1;
	}
	out->text = mdsa_json_get_str(v, "text", "");
	out->model = mdsa_json_get_str(v, "model", "");
	out->finish_reason = mdsa_json_get_str(v, "finish_reason", "");
	out->tokens_in = mdsa_json_int(mdsa_json_get(v, "tokens_in"), 0);
	out->tokens_out = mdsa_json_int(mdsa_json_get(v, "tokens_out"), 0);
	return 0;
}

/**
 * Calls mdsa_generate with n chat messages and generation settings (gen may
 * be NULL; the manifest's defaults apply to unset fields on the host side).
 * Returns 0 with the answer in out, or -1 with out->error_code set (a host
 * refusal such as capability_denied, budget_exceeded, model_denied,
 * bad_request, engine_error, unavailable; "out_of_memory" or "bad_reply"
 * for local failures). A refusal fails the export only if the plugin says so.
 */
static int mdsa_generate(mdsa_env *env, const mdsa_message *msgs, int n, const mdsa_generation *gen,
                         mdsa_generate_result *out) {
	(void)env;
	mdsa_sb b = {0};
	mdsa_sb_puts(&b, "{\"messages\":");
	mdsa__messages(&b, msgs, n);
	if (gen != NULL) mdsa__gen_fields(&b, gen, false);
	mdsa_sb_byte(&b, '}');
	if (b.failed) {
		*out = (mdsa_generate_result){.error_code = mdsa_s("out_of_memory"), .error_message = mdsa_s("request too large")};
		return -1;
	}
	return mdsa__decode_generate(mdsa__host_call(mdsa__x_generate, mdsa_sb_view(&b)), out);
}

/** Like mdsa_generate with a raw prompt (no chat template applied). */
static int mdsa_generate_raw(mdsa_env *env, mdsa_str prompt, const mdsa_generation *gen, mdsa_generate_result *out) {
	(void)env;
	mdsa_sb b = {0};
	mdsa_sb_puts(&b, "{\"prompt\":");
	mdsa_sb_json_str(&b, prompt);
	if (gen != NULL) mdsa__gen_fields(&b, gen, false);
	mdsa_sb_byte(&b, '}');
	if (b.failed) {
		*out = (mdsa_generate_result){.error_code = mdsa_s("out_of_memory"), .error_message = mdsa_s("request too large")};
		return -1;
	}
	return mdsa__decode_generate(mdsa__host_call(mdsa__x_generate, mdsa_sb_view(&b)), out);
}

/* Sets out to a bad_reply error "mdsa_embed: undecodable reply: A[i][j]: B" (j < 0: no [j]). Returns -1. */
static int mdsa__embed_bad(mdsa_embed_result *out, const char *a, int i, int j, const char *b) {
	mdsa_sb m = {0};
	mdsa_sb_puts(&m, "mdsa_embed: undecodable reply: ");
	mdsa_sb_puts(&m, a);
	if (i >= 0) {
		mdsa_sb_byte(&m, '[');
		mdsa_sb_int(&m, i);
		mdsa_sb_byte(&m, ']');
	}
	if (j >= 0) {
		mdsa_sb_byte(&m, '[');
		mdsa_sb_int(&m, j);
		mdsa_sb_byte(&m, ']');
	}
	mdsa_sb_puts(&m, b);
	*out = (mdsa_embed_result){.error_code = mdsa_s("bad_reply"), .error_message = mdsa_sb_view(&m)};
	if (m.failed) out->error_message = mdsa_s("mdsa_embed: undecodable reply");
	return -1;
}

/*
 * Decodes an mdsa_embed reply for n inputs; a refusal or an undecodable
 * reply sets error_code. Returns 0 on success, -1 otherwise.
 */
static int mdsa__decode_embed(mdsa_str reply, int n, mdsa_embed_result *out) {
	*out = (mdsa_embed_result){0};
	mdsa_str err = {0};
	mdsa_json *v = mdsa_json_parse(reply, &err);
	if (v == NULL || v->kind != MDSA_J_OBJECT) {
		out->error_code = mdsa_s("bad_reply");
		out->error_message = mdsa_concat3(mdsa_s("mdsa_embed: undecodable reply: "),
		                                  v == NULL ? err : mdsa_s("not a JSON object"), mdsa_s(""));
		return -1;
	}
	mdsa_json *e = mdsa_json_get(v, "error");
	if (e != NULL && e->kind != MDSA_J_NULL) {
		out->error_code = mdsa_json_get_str(e, "code", "engine_error");
		if (out->error_code.len == 0) out->error_code = mdsa_s("engine_error");
		out->error_message = mdsa_json_get_str(e, "message", "");
		return -1;
	}
	mdsa_json *vs = mdsa_json_get(v, "vectors");
	int count = 0;
	if (vs != NULL && vs->kind != MDSA_J_NULL) {
		if (vs->kind != MDSA_J_ARRAY) return mdsa__embed_bad(out, "vectors", -1, -1, ": want an array");
		count = vs->count;
	}
	if (count != n) {
		mdsa_sb m = {0};
		mdsa_sb_puts(&m, "mdsa_embed: the host returned ");
		mdsa_sb_int(&m, count);
		mdsa_sb_puts(&m, " vectors for ");
		mdsa_sb_int(&m, n);
		mdsa_sb_puts(&m, " inputs");
		*out = (mdsa_embed_result){.error_code = mdsa_s("bad_reply"), .error_message = mdsa_sb_view(&m)};
		return -1;
	}
	mdsa_vector *vecs = (mdsa_vector *)mdsa_alloc(sizeof(mdsa_vector) * (size_t)(count > 0 ? count : 1));
	if (vecs == NULL) {
		*out = (mdsa_embed_result){.error_code = mdsa_s("out_of_memory"), .error_message = mdsa_s("reply too large")};
		return -1;
	}
	int i = 0;
	for (mdsa_json *row = count > 0 ? vs->first : NULL; row != NULL; row = row->next, i++) {
		if (row->kind != MDSA_J_ARRAY) return mdsa__embed_bad(out, "vectors", i, -1, ": want an array of numbers");
		float *vals = (float *)mdsa_alloc(sizeof(float) * (size_t)(row->count > 0 ? row->count : 1));
		if (vals == NULL) {
			*out = (mdsa_embed_result){.error_code = mdsa_s("out_of_memory"), .error_message = mdsa_s("reply too large")};
			return -1;
		}
		int j = 0;
		for (mdsa_json *x = row->first; x != NULL; x = x->next, j++) {
			if (x->kind != MDSA_J_NUMBER) return mdsa__embed_bad(out, "vectors", i, j, ": want a number");
			float f = (float)mdsa_json_number(x, 0);
			if (f > __FLT_MAX__ || f < -__FLT_MAX__) return mdsa__embed_bad(out, "vectors", i, j, ": number out of float range");
			vals[j] = f;
		}
		vecs[i] = (mdsa_vector){.values = vals, .dim = row->count};
	}
	out->model = mdsa_json_get_str(v, "model", "");
	out->vectors = vecs;
	out->n_vectors = count;
	return 0;
}

/**
 * Calls mdsa_embed (capability MDSA_CAP_EMBED) for n texts. Returns 0 with
 * one vector per input, in order, in out (out->vectors[i].values holds
 * out->vectors[i].dim floats, in the arena), or -1 with out->error_code set:
 * a host refusal (capability_denied, budget_exceeded, model_denied,
 * bad_request, e.g. for no inputs or an empty one, engine_error,
 * unavailable), or "out_of_memory" / "bad_reply" (an undecodable reply, a
 * value that is not a number or is out of float range, or a vector count
 * that differs from n) for local failures. A refusal fails the export only
 * if the plugin says so.
 */
static int mdsa_embed(mdsa_env *env, const mdsa_str *inputs, int n, mdsa_embed_result *out) {
	(void)env;
	mdsa_sb b = {0};
	mdsa_sb_puts(&b, "{\"input\":[");
	for (int i = 0; i < n; i++) {
		if (i > 0) mdsa_sb_byte(&b, ',');
		mdsa_sb_json_str(&b, inputs[i]);
	}
	mdsa_sb_puts(&b, "]}");
	if (b.failed) {
		*out = (mdsa_embed_result){.error_code = mdsa_s("out_of_memory"), .error_message = mdsa_s("request too large")};
		return -1;
	}
	return mdsa__decode_embed(mdsa__host_call(mdsa__x_embed, mdsa_sb_view(&b)), n < 0 ? 0 : n, out);
}

/** Counts the tokens of text with the host's tokenizer (mdsa_count_tokens); -1 when refused. */
static int64_t mdsa_count_tokens(mdsa_env *env, mdsa_str text) {
	(void)env;
	mdsa_sb b = {0};
	mdsa_sb_puts(&b, "{\"text\":");
	mdsa_sb_json_str(&b, text);
	mdsa_sb_byte(&b, '}');
	if (b.failed) return -1;
	mdsa_json *v = mdsa_json_parse(mdsa__host_call(mdsa__x_count_tokens, mdsa_sb_view(&b)), NULL);
	if (v == NULL || v->kind != MDSA_J_OBJECT || mdsa_json_get(v, "error") != NULL) return -1;
	return mdsa_json_int(mdsa_json_get(v, "count"), -1);
}

/* ------------------------------------------------------------------------ */
/* Templates                                                                 */
/* ------------------------------------------------------------------------ */

enum { MDSA__SEG_TEXT, MDSA__SEG_QUERY, MDSA__SEG_CONTEXT };

typedef struct mdsa__segment {
	int kind;
	mdsa_str text; /* literal text, or a context placeholder's default */
	mdsa_str key;
} mdsa__segment;

typedef struct mdsa__template {
	mdsa__segment *segs;
	int n;
} mdsa__template;

static bool mdsa__valid_key(mdsa_str k) {
	if (k.len == 0) return false;
	for (size_t i = 0; i < k.len; i++) {
		char c = k.ptr[i];
		if (!(c == '_' || c == '-' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
	}
	return true;
}

/* Parses src into t; on error appends the reason to err and returns false. */
static bool mdsa__template_parse(const char *csrc, mdsa__template *t, mdsa_sb *err) {
	mdsa_str src = mdsa_s(csrc);
	*t = (mdsa__template){0};
	/* At most one segment per "{{" plus one per literal run. */
	int max = 2;
	for (size_t i = 0; i + 1 < src.len; i++) {
		if (src.ptr[i] == '{' && src.ptr[i + 1] == '{') max += 2;
	}
	t->segs = (mdsa__segment *)mdsa_alloc(sizeof(mdsa__segment) * (size_t)max);
	if (t->segs == NULL) {
		mdsa_sb_puts(err, "out of memory");
		return false;
	}
	mdsa_sb lit = {0};
	size_t i = 0;
	while (i < src.len) {
		mdsa_str rest = {src.ptr + i, src.len - i};
		long j = mdsa_str_find(rest, mdsa_s("{{"));
		if (j < 0) {
			mdsa_sb_str(&lit, rest);
			break;
		}
		size_t at = i + (size_t)j;
		if (at > i && src.ptr[at - 1] == '\\') {
			mdsa_sb_write(&lit, src.ptr + i, at - 1 - i);
			mdsa_sb_puts(&lit, "{{");
			i = at + 2;
			continue;
		}
		mdsa_sb_write(&lit, src.ptr + i, at - i);
		mdsa_str after = {src.ptr + at + 2, src.len - at - 2};
		long end = mdsa_str_find(after, mdsa_s("}}"));
		if (end < 0) {
			mdsa_sb_puts(err, "unclosed \"{{\" at byte ");
			mdsa_sb_int(err, (int64_t)at);
			mdsa_sb_puts(err, " (write \\{{ for a literal)");
			return false;
		}
		mdsa_str inner = mdsa_trim((mdsa_str){after.ptr, (size_t)end});
		if (lit.len > 0) {
			t->segs[t->n++] = (mdsa__segment){MDSA__SEG_TEXT, mdsa_sb_view(&lit), {"", 0}};
			lit = (mdsa_sb){0};
		}
		if (mdsa_str_eqs(inner, "query")) {
			t->segs[t->n++] = (mdsa__segment){MDSA__SEG_QUERY, {"", 0}, {"", 0}};
		} else if (inner.len >= 8 && memcmp(inner.ptr, "context.", 8) == 0) {
			mdsa_str key = {inner.ptr + 8, inner.len - 8}, def = {"", 0};
			long bar = mdsa_str_find(key, mdsa_s("|"));
			if (bar >= 0) {
				def = (mdsa_str){key.ptr + bar + 1, key.len - (size_t)bar - 1};
				key.len = (size_t)bar;
			}
			key = mdsa_trim(key);
			if (!mdsa__valid_key(key)) {
				mdsa_sb_puts(err, "placeholder at byte ");
				mdsa_sb_int(err, (int64_t)at);
				mdsa_sb_puts(err, ": context key \"");
				mdsa_sb_str(err, key);
				mdsa_sb_puts(err, "\" must be non-empty and use only letters, digits, '_', '-' and '.'");
				return false;
			}
			t->segs[t->n++] = (mdsa__segment){MDSA__SEG_CONTEXT, def, key};
		} else {
			mdsa_sb_puts(err, "placeholder at byte ");
			mdsa_sb_int(err, (int64_t)at);
			mdsa_sb_puts(err, ": unknown placeholder {{");
			mdsa_sb_str(err, inner);
			mdsa_sb_puts(err, "}} (want {{query}} or {{context.KEY}})");
			return false;
		}
		i = at + 2 + (size_t)end + 2;
	}
	if (lit.len > 0) t->segs[t->n++] = (mdsa__segment){MDSA__SEG_TEXT, mdsa_sb_view(&lit), {"", 0}};
	if (lit.failed) {
		mdsa_sb_puts(err, "out of memory");
		return false;
	}
	return true;
}

/** The value of context key key in req (the last one when repeated), or def when absent or empty. */
static mdsa_str mdsa_context(const mdsa_prompt_request *req, const char *key, const char *def) {
	mdsa_str k = mdsa_s(key);
	for (int i = req->n_context - 1; i >= 0; i--) {
		if (mdsa_str_eq(req->context_keys[i], k)) {
			return req->context_values[i].len > 0 ? req->context_values[i] : mdsa_s(def);
		}
	}
	return mdsa_s(def);
}

static mdsa_str mdsa__template_render(const mdsa__template *t, const mdsa_prompt_request *req) {
	if (t->n == 1 && t->segs[0].kind == MDSA__SEG_TEXT) return t->segs[0].text;
	if (t->n == 1 && t->segs[0].kind == MDSA__SEG_QUERY) return req->query;
	mdsa_sb b = {0};
	for (int i = 0; i < t->n; i++) {
		const mdsa__segment *s = &t->segs[i];
		if (s->kind == MDSA__SEG_TEXT) {
			mdsa_sb_str(&b, s->text);
		} else if (s->kind == MDSA__SEG_QUERY) {
			mdsa_sb_str(&b, req->query);
		} else {
			mdsa_str v = s->text;
			for (int k = req->n_context - 1; k >= 0; k--) {
				if (mdsa_str_eq(req->context_keys[k], s->key)) {
					if (req->context_values[k].len > 0) v = req->context_values[k];
					break;
				}
			}
			mdsa_sb_str(&b, v);
		}
	}
	return mdsa_sb_view(&b);
}

/* ------------------------------------------------------------------------ */
/* Validators                                                                */
/* ------------------------------------------------------------------------ */

/** Records a finding (message copied by reference: use arena or static text). */
MDSA__NOINLINE static void mdsa_report(mdsa_check *c, const char *code, const char *severity, mdsa_str message) {
	if (c->n_issues == c->cap_issues) {
		int cap = c->cap_issues < 4 ? 4 : c->cap_issues * 2;
		mdsa_issue *p = (mdsa_issue *)mdsa_realloc(c->issues, sizeof(mdsa_issue) * (size_t)c->cap_issues,
		                                           sizeof(mdsa_issue) * (size_t)cap);
		if (p == NULL) return; /* the export fails with out of memory */
		c->issues = p;
		c->cap_issues = cap;
	}
	c->issues[c->n_issues++] = (mdsa_issue){code, severity, message};
}

/** The response's words (cached while the response is unchanged). */
static const mdsa_words *mdsa_check_words(mdsa_check *c) {
	if (!c->words_ok_ || c->words_ptr_ != c->response.ptr || c->words_len_ != c->response.len) {
		c->words_ = mdsa_words_of(c->response);
		c->words_ptr_ = c->response.ptr;
		c->words_len_ = c->response.len;
		c->words_ok_ = true;
	}
	return &c->words_;
}

/** The query's words (cached). */
static const mdsa_words *mdsa_check_query_words(mdsa_check *c) {
	if (!c->query_ok_) {
		c->query_words_ = mdsa_words_of(c->query);
		c->query_ok_ = true;
	}
	return &c->query_words_;
}

/** Whether phrase occurs in the response as whole words, case and punctuation ignored. */
static bool mdsa_check_has_phrase(mdsa_check *c, const char *phrase) {
	mdsa_words p = mdsa_words_of(mdsa_s(phrase));
	return mdsa_words_contain(mdsa_check_words(c), &p);
}

/** Whether phrase occurs in the query as whole words, case and punctuation ignored. */
static bool mdsa_check_query_has_phrase(mdsa_check *c, const char *phrase) {
	mdsa_words p = mdsa_words_of(mdsa_s(phrase));
	return mdsa_words_contain(mdsa_check_query_words(c), &p);
}

static void mdsa__v_min_length(mdsa_check *c, int n) {
	mdsa_str t = mdsa_trim(c->response);
	if (t.len / 4 >= (size_t)n) return; /* a character is at most 4 bytes */
	size_t got = mdsa_rune_count(t);
	if (got >= (size_t)n) return;
	mdsa_sb m = {0};
	mdsa_sb_puts(&m, "response has ");
	mdsa_sb_int(&m, (int64_t)got);
	mdsa_sb_puts(&m, " characters, at least ");
	mdsa_sb_int(&m, n);
	mdsa_sb_puts(&m, " expected");
	mdsa_report(c, MDSA_CODE_TOO_SHORT, MDSA_ERROR, mdsa_sb_view(&m));
}

static void mdsa__v_max_length(mdsa_check *c, int n) {
	if (c->response.len <= (size_t)n) return;
	size_t total = mdsa_rune_count(c->response);
	if (total <= (size_t)n) return;
	c->response = mdsa__cut(c->response, (size_t)n);
	mdsa_sb m = {0};
	mdsa_sb_puts(&m, "response had ");
	mdsa_sb_int(&m, (int64_t)total);
	mdsa_sb_puts(&m, " characters; cut to ");
	mdsa_sb_int(&m, (int64_t)mdsa_rune_count(c->response));
	mdsa_sb_puts(&m, " (limit ");
	mdsa_sb_int(&m, n);
	mdsa_sb_byte(&m, ')');
	mdsa_report(c, MDSA_CODE_TOO_LONG, MDSA_WARNING, mdsa_sb_view(&m));
}

static void mdsa__v_banned(mdsa_check *c, const mdsa__phrase_set *ps) {
	const mdsa_words *words = mdsa_check_words(c);
	if (words->n == 0 || ps->n == 0) return;
	bool *found = (bool *)mdsa_alloc((size_t)ps->n);
	if (found == NULL) return;
	__builtin_memset(found, 0, (size_t)ps->n);
	if (mdsa__phrase_set_find(ps, words, found, 0) == 0) return;
	mdsa_sb m = {0};
	int listed = 0;
	for (int i = 0; i < ps->n && listed < 5; i++) {
		if (!found[i]) continue;
		mdsa_sb_puts(&m, listed == 0 ? "banned term in response: \"" : ", \"");
		mdsa_sb_puts(&m, ps->text[i]);
		mdsa_sb_byte(&m, '"');
		listed++;
	}
	mdsa_report(c, MDSA_CODE_BANNED_TERM, MDSA_ERROR, mdsa_sb_view(&m));
}

static void mdsa__v_disclaimer(mdsa_check *c, const char *text, const mdsa__phrase_set *ps) {
	bool *found = (bool *)mdsa_alloc((size_t)ps->n + 1);
	if (found == NULL) return;
	__builtin_memset(found, 0, (size_t)ps->n + 1);
	if (mdsa__phrase_set_find(ps, mdsa_check_words(c), found, 1) > 0) return;
	c->response = mdsa_concat3(mdsa__trim_right(c->response), mdsa_s("\n\n"), mdsa_trim(mdsa_s(text)));
	mdsa_report(c, MDSA_CODE_DISCLAIMER_ADDED, MDSA_INFO, mdsa_s("required disclaimer appended"));
}

/**
 * Score of a list of issues: 1 for none, times 0.5 per error and 0.85 per
 * warning (info issues cost nothing; unknown severities count as errors).
 */
static double mdsa_score(const mdsa_issue *issues, int n) {
	double s = 1;
	for (int i = 0; i < n; i++) {
		mdsa_str sev = mdsa_s(issues[i].severity);
		if (mdsa_str_eqs(sev, MDSA_INFO)) continue;
		s *= mdsa_str_eqs(sev, MDSA_WARNING) ? 0.85 : 0.5;
	}
	return s;
}

/* The phrase sets of a validator list's BANNED_TERMS and REQUIRE_DISCLAIMER
 * entries (one slot per validator; NULL when out of memory). */
static mdsa__phrase_set *mdsa__build_sets(const mdsa_validator *validators) {
	int n = 0;
	while (validators != NULL && validators[n].kind != MDSA_V_END) n++;
	mdsa__phrase_set *sets = (mdsa__phrase_set *)mdsa_alloc(sizeof(mdsa__phrase_set) * (size_t)(n + 1));
	if (sets == NULL) return NULL;
	for (int i = 0; i < n; i++) {
		const mdsa_validator *v = &validators[i];
		sets[i] = (mdsa__phrase_set){0};
		bool ok = true;
		if (v->kind == MDSA_V_BANNED_TERMS) ok = mdsa__phrase_set_build(&sets[i], NULL, v->terms);
		if (v->kind == MDSA_V_REQUIRE_DISCLAIMER) ok = mdsa__phrase_set_build(&sets[i], v->text != NULL ? v->text : "", v->terms);
		if (!ok) return NULL;
	}
	return sets;
}

static struct {
	const mdsa_validator *validators;
	mdsa__phrase_set *sets;
} mdsa__sets_cache;

/**
 * Appends an issue to a validation, updating ok and score as mdsa_evaluate
 * would. Returns 0, or -1 when out of memory. For custom validate functions.
 */
static int mdsa_validation_add(mdsa_validation *v, const char *code, const char *severity, mdsa_str message) {
	mdsa_issue *issues = (mdsa_issue *)mdsa_alloc(sizeof(mdsa_issue) * (size_t)(v->n_issues + 1));
	if (issues == NULL) return -1;
	for (int i = 0; i < v->n_issues; i++) issues[i] = v->issues[i];
	issues[v->n_issues++] = (mdsa_issue){code, severity, message};
	v->issues = issues;
	mdsa_str sev = mdsa_s(severity);
	if (mdsa_str_eqs(sev, MDSA_WARNING)) {
		v->score *= 0.85;
	} else if (!mdsa_str_eqs(sev, MDSA_INFO)) {
		v->score *= 0.5;
		v->ok = false;
	}
	return 0;
}

/** Runs validators (ended by MDSA_VALIDATORS_END; NULL = none) over req into out. */
static void mdsa_evaluate(const mdsa_validate_request *req, const mdsa_validator *validators, mdsa_validation *out) {
	mdsa_check c = {.query = req->query, .domain = req->domain, .response = req->response};
	/* The plugin's own list has its sets built once per instance (see
	 * mdsa__begin); any other list gets them for this call. */
	mdsa__phrase_set *sets = mdsa__sets_cache.validators == validators ? mdsa__sets_cache.sets : mdsa__build_sets(validators);
	for (int i = 0; validators != NULL && validators[i].kind != MDSA_V_END; i++) {
		const mdsa_validator *v = &validators[i];
		switch (v->kind) {
		case MDSA_V_MIN_LENGTH: mdsa__v_min_length(&c, v->n); break;
		case MDSA_V_MAX_LENGTH: mdsa__v_max_length(&c, v->n); break;
		case MDSA_V_BANNED_TERMS:
			if (sets != NULL) mdsa__v_banned(&c, &sets[i]);
			break;
		case MDSA_V_REQUIRE_DISCLAIMER:
			if (sets != NULL) mdsa__v_disclaimer(&c, v->text, &sets[i]);
			break;
		case MDSA_V_CUSTOM:
			if (v->check != NULL) v->check(&c);
			break;
		default: break;
		}
	}
	*out = (mdsa_validation){.ok = true, .issues = c.issues, .n_issues = c.n_issues};
	out->score = mdsa_score(c.issues, c.n_issues);
	for (int i = 0; i < c.n_issues; i++) {
		mdsa_str sev = mdsa_s(c.issues[i].severity);
		if (!mdsa_str_eqs(sev, MDSA_INFO) && !mdsa_str_eqs(sev, MDSA_WARNING)) out->ok = false;
	}
	if (!mdsa_str_eq(c.response, req->response)) {
		out->revised = true;
		out->response = c.response;
	}
}

/* ------------------------------------------------------------------------ */
/* The plugin: checks, manifest, prompt                                      */
/* ------------------------------------------------------------------------ */

/* Per-instance state built at the first export call and kept for the
 * instance's life (it sits below the arena's per-call mark). */
static struct {
	const mdsa_plugin *plugin;
	bool ready;
	mdsa_str error; /* why the plugin cannot serve */
	mdsa__template system, user;
	int n_tools;
	mdsa_json **tool_params; /* n_tools parsed parameters (NULL: none) */
} mdsa__state;

static bool mdsa__valid_name(const char *s) {
	size_t n = mdsa_strlen(s);
	if (n == 0 || n > 64 || !(s[0] >= 'a' && s[0] <= 'z')) return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
	}
	return true;
}

static int mdsa__count(const char *const *list) {
	int n = 0;
	while (list != NULL && list[n] != NULL) n++;
	return n;
}

static bool mdsa__valid_tool_name(const char *s) {
	size_t n = mdsa_strlen(s);
	if (n == 0 || n > MDSA_MAX_TOOL_NAME_LEN) return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
	}
	return true;
}

static void mdsa__check_plugin(const mdsa_plugin *p, mdsa_sb *e) {
#define MDSA__ERR(...)                                   \
	do {                                                 \
		if (e->len > 0) mdsa_sb_puts(e, "; ");           \
		const char *parts_[] = {__VA_ARGS__, NULL};      \
		for (int k_ = 0; parts_[k_] != NULL; k_++) mdsa_sb_puts(e, parts_[k_]); \
	} while (0)
	if (!mdsa__valid_name(p->name)) MDSA__ERR("manifest name \"", p->name ? p->name : "", "\": want 1-64 of [a-z0-9_-], starting with a letter");
	if (mdsa_trim(mdsa_s(p->version)).len == 0) MDSA__ERR("manifest version is empty");
	else if (mdsa_strlen(p->version) > 64) MDSA__ERR("manifest version is longer than 64 bytes");
	if (mdsa__count(p->keywords) + mdsa__count(p->examples) == 0) MDSA__ERR("manifest keywords and examples are both empty");
	if (p->tier != NULL && p->tier[0] != 0 && !mdsa_str_eqs(mdsa_s(p->tier), MDSA_TIER_DOMAIN) &&
	    !mdsa_str_eqs(mdsa_s(p->tier), MDSA_TIER_REASONER))
		MDSA__ERR("manifest model tier \"", p->tier, "\" is unknown");
	for (int i = 0; p->capabilities != NULL && p->capabilities[i] != NULL; i++) {
		mdsa_str c = mdsa_s(p->capabilities[i]);
		if (!mdsa_str_eqs(c, MDSA_CAP_GENERATE) && !mdsa_str_eqs(c, MDSA_CAP_EMBED) && !mdsa_str_eqs(c, MDSA_CAP_COUNT_TOKENS))
			MDSA__ERR("manifest capability \"", p->capabilities[i], "\" is unknown");
		for (int j = 0; j < i; j++) {
			if (mdsa_str_eq(c, mdsa_s(p->capabilities[j]))) MDSA__ERR("manifest capability \"", p->capabilities[i], "\" is listed twice");
		}
	}
	if (p->max_history < 0) MDSA__ERR("max_history is negative");
	if (p->min_context < 0) MDSA__ERR("min_context is negative");
	const mdsa_generation *g = &p->generation;
	if (g->max_tokens < 0) MDSA__ERR("generation.max_tokens is negative");
	if (g->top_k < 0) MDSA__ERR("generation.top_k is negative");
	if (!(g->temperature >= 0 && g->temperature <= 10)) MDSA__ERR("generation.temperature out of range [0, 10]");
	if (!(g->top_p >= 0 && g->top_p <= 1)) MDSA__ERR("generation.top_p out of range [0, 1]");
	if (!(g->repeat_penalty >= 0 && g->repeat_penalty <= 10)) MDSA__ERR("generation.repeat_penalty out of range [0, 10]");
	if (mdsa__count(g->stop) > 16) MDSA__ERR("generation.stop has more than 16 entries");
	for (int i = 0; p->validators != NULL && p->validators[i].kind != MDSA_V_END; i++) {
		const mdsa_validator *v = &p->validators[i];
		switch (v->kind) {
		case MDSA_V_MIN_LENGTH:
		case MDSA_V_MAX_LENGTH: {
			bool min = v->kind == MDSA_V_MIN_LENGTH;
			if (v->n >= (min ? 1 : 16)) break;
			MDSA__ERR(min ? "validator min_length: n = " : "validator max_length: n = ");
			mdsa_sb_int(e, v->n);
			mdsa_sb_puts(e, min ? ", want >= 1" : ", want >= 16");
			break;
		}
		case MDSA_V_BANNED_TERMS: {
			bool any = false;
			for (int k = 0; v->terms != NULL && v->terms[k] != NULL; k++) {
				if (mdsa_words_of(mdsa_s(v->terms[k])).n > 0) any = true;
			}
			if (!any) MDSA__ERR("validator banned_terms: no terms given");
			break;
		}
		case MDSA_V_REQUIRE_DISCLAIMER:
			if (mdsa_words_of(mdsa_s(v->text)).n == 0) MDSA__ERR("validator require_disclaimer: empty disclaimer");
			break;
		case MDSA_V_CUSTOM:
			if (v->check == NULL) MDSA__ERR("validator ", v->text ? v->text : "(unnamed)", ": check function is NULL");
			break;
		default: MDSA__ERR("unknown validator kind");
		}
	}
	mdsa_sb te = {0};
	if (!mdsa__template_parse(p->system != NULL ? p->system : "", &mdsa__state.system, &te)) {
		MDSA__ERR("system: template: ");
		mdsa_sb_str(e, mdsa_sb_view(&te));
	}
	te = (mdsa_sb){0};
	const char *ut = p->template_ != NULL && p->template_[0] != 0 ? p->template_ : "{{query}}";
	if (!mdsa__template_parse(ut, &mdsa__state.user, &te)) {
		MDSA__ERR("template: template: ");
		mdsa_sb_str(e, mdsa_sb_view(&te));
	}
	int nt = 0;
	while (p->tools != NULL && p->tools[nt].name != NULL) nt++;
	mdsa__state.n_tools = 0;
	mdsa__state.tool_params = (mdsa_json **)mdsa_alloc(sizeof(mdsa_json *) * (size_t)(nt > 0 ? nt : 1));
	if (mdsa__state.tool_params == NULL) {
		MDSA__ERR("out of memory");
		nt = 0;
	}
	mdsa__state.n_tools = nt;
	if (nt > MDSA_MAX_TOOLS) {
		MDSA__ERR("manifest declares ");
		mdsa_sb_int(e, nt);
		mdsa_sb_puts(e, " tools, at most 32");
	}
	for (int i = 0; i < nt; i++) {
		const mdsa_tool *t = &p->tools[i];
		mdsa__state.tool_params[i] = NULL;
		mdsa_sb at = {0};
		mdsa_sb_puts(&at, "tools[");
		mdsa_sb_int(&at, i);
		mdsa_sb_puts(&at, "] ");
		mdsa_sb_json_cstr(&at, t->name);
		mdsa_sb_byte(&at, 0);
		const char *w = at.failed ? "tools" : at.ptr;
		if (!mdsa__valid_tool_name(t->name)) MDSA__ERR(w, ": want a name of 1-64 of [A-Za-z0-9_-]");
		for (int j = 0; j < i; j++) {
			if (mdsa_str_eq(mdsa_s(t->name), mdsa_s(p->tools[j].name))) {
				MDSA__ERR(w, ": the name is declared twice");
				break;
			}
		}
		if (t->description != NULL && mdsa_strlen(t->description) > MDSA_MAX_TOOL_DESCRIPTION_LEN)
			MDSA__ERR(w, ": description is longer than 4096 bytes");
		if (t->run == NULL) MDSA__ERR(w, ": run function is NULL");
		mdsa_str schema = mdsa_trim(mdsa_s(t->parameters != NULL ? t->parameters : ""));
		if (schema.len == 0) continue;
		if (schema.len > MDSA_MAX_TOOL_SCHEMA_LEN) {
			MDSA__ERR(w, ": parameters: ");
			mdsa_sb_int(e, (int64_t)schema.len);
			mdsa_sb_puts(e, " bytes, at most 65536");
			continue;
		}
		mdsa_str perr = {0};
		mdsa_json *v = mdsa_json_parse(schema, &perr);
		if (v == NULL) {
			MDSA__ERR(w, ": parameters: not JSON: ");
			mdsa_sb_str(e, perr);
		} else if (v->kind != MDSA_J_OBJECT) {
			MDSA__ERR(w, ": parameters: want a JSON Schema object");
		} else {
			mdsa__state.tool_params[i] = v;
		}
	}
#undef MDSA__ERR
}

/* Starts an export call: resets the arena, prepares the plugin once.
 * Returns false (with the error set) when the plugin cannot serve. */
static bool mdsa__begin(const mdsa_plugin *p, const char *export_name) {
	mdsa__arena_init();
	mdsa__arena.top = mdsa__arena.mark;
	mdsa__arena.last = 0;
	mdsa__arena.oom = false;
	if (!mdsa__state.ready || mdsa__state.plugin != p) {
		mdsa__state.plugin = p;
		mdsa__state.ready = true;
		mdsa_sb e = {0};
		mdsa__check_plugin(p, &e);
		if (e.len == 0) {
			mdsa__sets_cache.validators = p->validators;
			mdsa__sets_cache.sets = mdsa__build_sets(p->validators);
			if (mdsa__sets_cache.sets == NULL) mdsa_sb_puts(&e, "out of memory");
		}
		if (e.len > 0 || e.failed) {
			mdsa_sb msg = {0};
			mdsa_sb_puts(&msg, "plugin \"");
			mdsa_sb_puts(&msg, p->name ? p->name : "");
			mdsa_sb_puts(&msg, "\": ");
			mdsa_sb_str(&msg, e.failed ? mdsa_s("out of memory") : mdsa_sb_view(&e));
			mdsa__state.error = mdsa_sb_view(&msg);
		}
		/* Keep what was built for the instance's lifetime. */
		mdsa__arena.mark = (mdsa__arena.top + 7) & ~(uintptr_t)7;
		mdsa__arena.top = mdsa__arena.mark;
		mdsa__arena.last = 0;
	}
	if (mdsa__state.error.len > 0) {
		mdsa_set_error(mdsa_concat3(mdsa_s(export_name), mdsa_s(": "), mdsa__state.error));
		return false;
	}
	return true;
}

/* Fails the export with "EXPORT: msg" and returns 1. */
MDSA__NOINLINE static int mdsa__fail_export(const char *export_name, mdsa_str msg) {
	if (mdsa__arena.oom) msg = mdsa_s("out of memory");
	mdsa_sb b = {0};
	mdsa_sb_puts(&b, export_name);
	mdsa_sb_puts(&b, ": ");
	mdsa_sb_str(&b, msg);
	if (b.failed) {
		/* Nothing left to build a message with: report a fixed one. */
		mdsa_set_error(mdsa_s("out of memory"));
		return 1;
	}
	mdsa_set_error(mdsa_sb_view(&b));
	return 1;
}

/* Outputs b, or fails the export when it could not be built. */
static int mdsa__finish(const char *export_name, const mdsa_sb *b) {
	if (b->failed || mdsa__arena.oom) return mdsa__fail_export(export_name, mdsa_s("out of memory"));
	if (!mdsa_output(mdsa_sb_view(b))) {
		return mdsa__fail_export(export_name, mdsa_s("the output does not fit in the host's memory"));
	}
	return 0;
}

/** Appends a message to out (role and content are kept by reference). Returns 0, or -1 when out of memory. */
static int mdsa_prompt_add(mdsa_prompt_response *out, const char *role, mdsa_str content) {
	if (out->n_messages == out->cap_messages) {
		int cap = out->cap_messages < 4 ? 4 : out->cap_messages * 2;
		mdsa_message *m = (mdsa_message *)mdsa_realloc(out->messages, sizeof(mdsa_message) * (size_t)out->cap_messages,
		                                               sizeof(mdsa_message) * (size_t)cap);
		if (m == NULL) return -1;
		out->messages = m;
		out->cap_messages = cap;
	}
	out->messages[out->n_messages++] = (mdsa_message){mdsa_s(role), content};
	return 0;
}

/** The default prompt: system, the last max_history user/assistant turns, then the template. */
static int mdsa_default_prompt(mdsa_env *env, const mdsa_prompt_request *req, mdsa_prompt_response *out) {
	const mdsa_plugin *p = env->plugin;
	*out = (mdsa_prompt_response){0};
	int from = 0;
	if (p->max_history > 0 && req->n_history > p->max_history) from = req->n_history - p->max_history;
	mdsa_str sys = mdsa__template_render(&mdsa__state.system, req);
	if (sys.len > 0 && mdsa_prompt_add(out, "system", sys) != 0) return mdsa_fails(env, "out of memory");
	for (int i = from; i < req->n_history; i++) {
		const mdsa_message *m = &req->history[i];
		bool user = mdsa_str_eqs(m->role, "user");
		if ((user || mdsa_str_eqs(m->role, "assistant")) && m->content.len > 0) {
			if (mdsa_prompt_add(out, user ? "user" : "assistant", m->content) != 0) return mdsa_fails(env, "out of memory");
		}
	}
	if (mdsa_prompt_add(out, "user", mdsa__template_render(&mdsa__state.user, req)) != 0) return mdsa_fails(env, "out of memory");
	return 0;
}

/** The default validation: the plugin's validators. */
static void mdsa_default_validate(mdsa_env *env, const mdsa_validate_request *req, mdsa_validation *out) {
	mdsa_evaluate(req, env->plugin->validators, out);
}

/* Decodes the export's input as a JSON object; NULL with the error set. */
static mdsa_json *mdsa__decode_input(const char *export_name) {
	mdsa_str in = mdsa_input();
	if (mdsa__arena.oom) {
		mdsa__fail_export(export_name, mdsa_s("out of memory"));
		return NULL;
	}
	mdsa_str err = {0};
	mdsa_json *v = mdsa_json_parse(in, &err);
	if (v == NULL) {
		mdsa__fail_export(export_name, mdsa_concat3(mdsa_s("decode input: "), err, mdsa_s("")));
		return NULL;
	}
	if (v->kind != MDSA_J_OBJECT) {
		mdsa__fail_export(export_name, mdsa_s("decode input: want a JSON object"));
		return NULL;
	}
	return v;
}

/* The string member key of obj: absent or null gives "", a string gives its
 * text, any other kind fails (false, with *err set to "decode input:
 * PATH: want a string", PATH being path and key). */
static bool mdsa__field_str(const mdsa_json *obj, mdsa_str path, const char *key, mdsa_str *out, mdsa_str *err) {
	mdsa_json *m = mdsa_json_get(obj, key);
	*out = mdsa_s("");
	if (m == NULL || m->kind == MDSA_J_NULL) return true;
	if (m->kind != MDSA_J_STRING) {
		mdsa_sb b = {0};
		mdsa_sb_puts(&b, "decode input: ");
		mdsa_sb_str(&b, path);
		mdsa_sb_puts(&b, key);
		mdsa_sb_puts(&b, ": want a string");
		*err = mdsa_sb_view(&b);
		return false;
	}
	*out = m->str;
	return true;
}

static bool mdsa__decode_prompt_request(const mdsa_json *v, mdsa_prompt_request *req, mdsa_str *err) {
	*req = (mdsa_prompt_request){0};
	if (!mdsa__field_str(v, mdsa_s(""), "query", &req->query, err)) return false;
	mdsa_json *h = mdsa_json_get(v, "history");
	if (h != NULL && h->kind != MDSA_J_NULL) {
		if (h->kind != MDSA_J_ARRAY) {
			*err = mdsa_s("decode input: history: want an array of messages");
			return false;
		}
		req->history = (mdsa_message *)mdsa_alloc(sizeof(mdsa_message) * (size_t)(h->count > 0 ? h->count : 1));
		if (req->history == NULL) {
			*err = mdsa_s("out of memory");
			return false;
		}
		for (mdsa_json *m = h->first; m != NULL; m = m->next) {
			int idx = req->n_history;
			mdsa_sb path = {0};
			mdsa_sb_puts(&path, "history[");
			mdsa_sb_int(&path, idx);
			mdsa_sb_puts(&path, "]");
			if (m->kind != MDSA_J_OBJECT) {
				*err = mdsa_concat3(mdsa_s("decode input: "), mdsa_sb_view(&path), mdsa_s(": want an object"));
				return false;
			}
			mdsa_sb_byte(&path, '.');
			mdsa_message *msg = &req->history[req->n_history++];
			if (!mdsa__field_str(m, mdsa_sb_view(&path), "role", &msg->role, err) ||
			    !mdsa__field_str(m, mdsa_sb_view(&path), "content", &msg->content, err))
				return false;
		}
	}
	mdsa_json *c = mdsa_json_get(v, "context");
	if (c != NULL && c->kind != MDSA_J_NULL) {
		if (c->kind != MDSA_J_OBJECT) {
			*err = mdsa_s("decode input: context: want an object of strings");
			return false;
		}
		size_t n = (size_t)(c->count > 0 ? c->count : 1);
		req->context_keys = (mdsa_str *)mdsa_alloc(sizeof(mdsa_str) * n);
		req->context_values = (mdsa_str *)mdsa_alloc(sizeof(mdsa_str) * n);
		if (req->context_keys == NULL || req->context_values == NULL) {
			*err = mdsa_s("out of memory");
			return false;
		}
		for (mdsa_json *m = c->first; m != NULL; m = m->next) {
			if (m->kind == MDSA_J_NULL) continue;
			if (m->kind != MDSA_J_STRING) {
				*err = mdsa_concat3(mdsa_s("decode input: context."), m->key, mdsa_s(": want a string"));
				return false;
			}
			req->context_keys[req->n_context] = m->key;
			req->context_values[req->n_context] = m->str;
			req->n_context++;
		}
	}
	return true;
}

static void mdsa__validation_json(mdsa_sb *b, const mdsa_validation *v) {
	mdsa_sb_puts(b, v->ok ? "{\"ok\":true,\"score\":" : "{\"ok\":false,\"score\":");
	double s = v->score;
	if (!(s >= 0)) s = 0;
	if (s > 1) s = 1;
	mdsa_sb_decimal(b, s);
	mdsa_sb_puts(b, ",\"issues\":[");
	for (int i = 0; i < v->n_issues; i++) {
		if (i > 0) mdsa_sb_byte(b, ',');
		mdsa_sb_puts(b, "{\"code\":");
		mdsa_sb_json_cstr(b, v->issues[i].code);
		mdsa_sb_puts(b, ",\"severity\":");
		mdsa_sb_json_cstr(b, v->issues[i].severity);
		mdsa_sb_puts(b, ",\"message\":");
		mdsa_sb_json_str(b, v->issues[i].message);
		mdsa_sb_byte(b, '}');
	}
	mdsa_sb_byte(b, ']');
	if (v->revised) {
		mdsa_sb_puts(b, ",\"response\":");
		mdsa_sb_json_str(b, v->response);
	}
	mdsa_sb_byte(b, '}');
}

static int mdsa__run_prompt(mdsa_env *env, const mdsa_prompt_request *req, mdsa_prompt_response *out) {
	if (mdsa_trim(req->query).len == 0) return mdsa_fails(env, "the query is empty");
	if (env->plugin->prompt_fn != NULL) {
		*out = (mdsa_prompt_response){0};
		if (env->plugin->prompt_fn(env, req, out) != 0) return mdsa_fail(env, env->error.len > 0 ? env->error : mdsa_s("custom prompt function failed"));
		if (out->n_messages == 0) return mdsa_fails(env, "custom prompt function returned no messages");
		return 0;
	}
	return mdsa_default_prompt(env, req, out);
}

static int mdsa__run_validate(mdsa_env *env, const mdsa_validate_request *req, mdsa_validation *out) {
	if (env->plugin->validate_fn != NULL) {
		*out = (mdsa_validation){.ok = true, .score = 1};
		if (env->plugin->validate_fn(env, req, out) != 0) return mdsa_fail(env, env->error.len > 0 ? env->error : mdsa_s("custom validate function failed"));
		return 0;
	}
	mdsa_evaluate(req, env->plugin->validators, out);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Exports                                                                   */
/* ------------------------------------------------------------------------ */

static int mdsa__describe(const mdsa_plugin *p) {
	if (!mdsa__begin(p, "describe")) return 1;
	mdsa_sb b = {0};
	mdsa_sb_grow(&b, 4096);
	mdsa_sb_puts(&b, "{\"abi\":");
	mdsa_sb_int(&b, MDSA_ABI_VERSION);
	if (mdsa__state.n_tools > 0) {
		mdsa_sb_puts(&b, ",\"abi_minor\":");
		mdsa_sb_int(&b, MDSA_ABI_MINOR_TOOLS);
	}
	mdsa_sb_puts(&b, ",\"name\":");
	mdsa_sb_json_cstr(&b, p->name);
	mdsa_sb_puts(&b, ",\"version\":");
	mdsa_sb_json_cstr(&b, p->version);
	if (p->description != NULL && p->description[0] != 0) {
		mdsa_sb_puts(&b, ",\"description\":");
		mdsa_sb_json_cstr(&b, p->description);
	}
	mdsa_sb_puts(&b, ",\"keywords\":");
	mdsa__json_str_list(&b, p->keywords);
	mdsa_sb_puts(&b, ",\"examples\":");
	mdsa__json_str_list(&b, p->examples);
	mdsa_sb_puts(&b, ",\"model\":{");
	bool first = true;
	if (p->tier != NULL && p->tier[0] != 0) {
		mdsa_sb_puts(&b, "\"tier\":");
		mdsa_sb_json_cstr(&b, p->tier);
		first = false;
	}
	if (p->prefer != NULL && p->prefer[0] != NULL) {
		mdsa_sb_puts(&b, first ? "\"prefer\":" : ",\"prefer\":");
		mdsa__json_str_list(&b, p->prefer);
		first = false;
	}
	if (p->min_context > 0) {
		mdsa_sb_puts(&b, first ? "\"min_context\":" : ",\"min_context\":");
		mdsa_sb_int(&b, p->min_context);
	}
	mdsa_sb_puts(&b, "},\"generation\":");
	mdsa__gen_object(&b, &p->generation);
	mdsa_sb_puts(&b, ",\"capabilities\":");
	mdsa__json_str_list(&b, p->capabilities);
	if (mdsa__state.n_tools > 0) {
		mdsa_sb_puts(&b, ",\"tools\":[");
		for (int i = 0; i < mdsa__state.n_tools; i++) {
			const mdsa_tool *t = &p->tools[i];
			if (i > 0) mdsa_sb_byte(&b, ',');
			mdsa_sb_puts(&b, "{\"name\":");
			mdsa_sb_json_cstr(&b, t->name);
			if (t->description != NULL && t->description[0] != 0) {
				mdsa_sb_puts(&b, ",\"description\":");
				mdsa_sb_json_cstr(&b, t->description);
			}
			if (mdsa__state.tool_params[i] != NULL) {
				mdsa_sb_puts(&b, ",\"parameters\":");
				mdsa_sb_json_value(&b, mdsa__state.tool_params[i]);
			}
			mdsa_sb_byte(&b, '}');
		}
		mdsa_sb_byte(&b, ']');
	}
	mdsa_sb_byte(&b, '}');
	return mdsa__finish("describe", &b);
}

static int mdsa__prompt(const mdsa_plugin *p) {
	if (!mdsa__begin(p, "prompt")) return 1;
	mdsa_json *v = mdsa__decode_input("prompt");
	if (v == NULL) return 1;
	mdsa_prompt_request req;
	mdsa_str err = {0};
	if (!mdsa__decode_prompt_request(v, &req, &err)) return mdsa__fail_export("prompt", err);
	mdsa_env env = {.plugin = p, .export_name = "prompt"};
	mdsa_prompt_response out = {0};
	if (mdsa__run_prompt(&env, &req, &out) != 0) return mdsa__fail_export("prompt", env.error);
	mdsa_sb b = {0};
	mdsa_sb_puts(&b, "{\"messages\":");
	mdsa__messages(&b, out.messages, out.n_messages);
	mdsa_sb_puts(&b, ",\"generation\":");
	mdsa__gen_object(&b, &out.generation);
	mdsa_sb_byte(&b, '}');
	return mdsa__finish("prompt", &b);
}

static int mdsa__validate(const mdsa_plugin *p) {
	if (!mdsa__begin(p, "validate")) return 1;
	mdsa_json *v = mdsa__decode_input("validate");
	if (v == NULL) return 1;
	mdsa_validate_request req;
	mdsa_str err = {0};
	if (!mdsa__field_str(v, mdsa_s(""), "query", &req.query, &err) ||
	    !mdsa__field_str(v, mdsa_s(""), "response", &req.response, &err) ||
	    !mdsa__field_str(v, mdsa_s(""), "domain", &req.domain, &err))
		return mdsa__fail_export("validate", err);
	mdsa_env env = {.plugin = p, .export_name = "validate"};
	mdsa_validation out;
	if (mdsa__run_validate(&env, &req, &out) != 0) return mdsa__fail_export("validate", env.error);
	mdsa_sb b = {0};
	mdsa_sb_grow(&b, req.response.len + 256);
	mdsa__validation_json(&b, &out);
	return mdsa__finish("validate", &b);
}

static int mdsa__handle(const mdsa_plugin *p) {
	if (!mdsa__begin(p, "handle")) return 1;
	mdsa_json *v = mdsa__decode_input("handle");
	if (v == NULL) return 1;
	mdsa_prompt_request req;
	mdsa_str err = {0};
	if (!mdsa__decode_prompt_request(v, &req, &err)) return mdsa__fail_export("handle", err);
	mdsa_env env = {.plugin = p, .export_name = "handle"};
	mdsa_prompt_response pr = {0};
	if (mdsa__run_prompt(&env, &req, &pr) != 0) return mdsa__fail_export("handle", env.error);
	mdsa_generation gen = mdsa_merge_generation(p->generation, &pr.generation);
	mdsa_generate_result g;
	if (mdsa_generate(&env, pr.messages, pr.n_messages, &gen, &g) != 0) {
		mdsa_sb m = {0};
		mdsa_sb_puts(&m, "mdsa_generate refused (");
		mdsa_sb_str(&m, g.error_code);
		mdsa_sb_puts(&m, "): ");
		mdsa_sb_str(&m, g.error_message);
		return mdsa__fail_export("handle", mdsa_sb_view(&m));
	}
	mdsa_validate_request vr = {.query = req.query, .response = g.text, .domain = mdsa_s(p->name)};
	mdsa_validation val;
	if (mdsa__run_validate(&env, &vr, &val) != 0) return mdsa__fail_export("handle", env.error);
	mdsa_sb b = {0};
	mdsa_sb_puts(&b, "{\"response\":");
	mdsa_sb_json_str(&b, val.revised ? val.response : g.text);
	mdsa_sb_puts(&b, ",\"validation\":");
	mdsa__validation_json(&b, &val);
	mdsa_sb_byte(&b, '}');
	return mdsa__finish("handle", &b);
}

/** Sets out to a successful call whose result is content; returns 0. */
static int mdsa_tool_ok(mdsa_tool_result *out, mdsa_str content) {
	out->content = content;
	out->is_error = false;
	return 0;
}

/** Sets out to a failed call (is_error) that message explains to the model; returns 0. */
static int mdsa_tool_error(mdsa_tool_result *out, mdsa_str message) {
	out->content = message;
	out->is_error = true;
	return 0;
}

/** mdsa_tool_error with a NUL-terminated message. */
static inline int mdsa_tool_errors(mdsa_tool_result *out, const char *message) { return mdsa_tool_error(out, mdsa_s(message)); }

static int mdsa__tool(const mdsa_plugin *p) {
	static const mdsa_json no_arguments = {.kind = MDSA_J_OBJECT};
	if (!mdsa__begin(p, "tool")) return 1;
	mdsa_json *v = mdsa__decode_input("tool");
	if (v == NULL) return 1;
	mdsa_tool_request req = {0};
	mdsa_str err = {0};
	if (!mdsa__field_str(v, mdsa_s(""), "name", &req.name, &err) || !mdsa__field_str(v, mdsa_s(""), "query", &req.query, &err))
		return mdsa__fail_export("tool", err);
	const mdsa_json *args = mdsa_json_get(v, "arguments");
	req.arguments = args != NULL && args->kind != MDSA_J_NULL ? args : &no_arguments;
	for (int i = 0; i < mdsa__state.n_tools; i++) {
		const mdsa_tool *t = &p->tools[i];
		if (!mdsa_str_eqs(req.name, t->name)) continue;
		mdsa_env env = {.plugin = p, .export_name = "tool"};
		mdsa_tool_result out = {0};
		if (t->run(&env, &req, &out) != 0) {
			mdsa_str why = env.error.len > 0 ? env.error : mdsa_s("tool function failed");
			return mdsa__fail_export("tool", mdsa_concat3(req.name, mdsa_s(": "), why));
		}
		mdsa_sb b = {0};
		mdsa_sb_grow(&b, out.content.len + 32);
		mdsa_sb_puts(&b, "{\"content\":");
		mdsa_sb_json_str(&b, out.content);
		if (out.is_error) mdsa_sb_puts(&b, ",\"is_error\":true");
		mdsa_sb_byte(&b, '}');
		return mdsa__finish("tool", &b);
	}
	mdsa_sb m = {0};
	mdsa_sb_puts(&m, "no tool named ");
	mdsa_sb_json_str(&m, req.name);
	return mdsa__fail_export("tool", mdsa_sb_view(&m));
}

/**
 * MDSA_PLUGIN(p) defines the describe, prompt, validate and tool exports
 * serving the mdsa_plugin variable p. Use it once, at file scope. The tool
 * export runs p.tools; for a plugin without tools it is never called
 * (every name is unknown to it).
 */
#define MDSA_PLUGIN(P)                                                             \
	__attribute__((export_name("describe"))) int mdsa_export_describe(void) {      \
		return mdsa__describe(&(P));                                               \
	}                                                                              \
	__attribute__((export_name("prompt"))) int mdsa_export_prompt(void) {          \
		return mdsa__prompt(&(P));                                                 \
	}                                                                              \
	__attribute__((export_name("validate"))) int mdsa_export_validate(void) {      \
		return mdsa__validate(&(P));                                               \
	}                                                                              \
	__attribute__((export_name("tool"))) int mdsa_export_tool(void) {              \
		return mdsa__tool(&(P));                                                   \
	}

/**
 * MDSA_PLUGIN_HANDLE(p) adds the optional handle export: prompt,
 * mdsa_generate (manifest generation settings overlaid by the prompt's) and
 * validate in one call. Export it only if the plugin should drive
 * generation itself: the host cannot stream a handle answer.
 */
#define MDSA_PLUGIN_HANDLE(P)                                                      \
	__attribute__((export_name("handle"))) int mdsa_export_handle(void) {          \
		return mdsa__handle(&(P));                                                 \
	}

#pragma clang diagnostic pop

#endif /* MDSA_H */
