/*
 * features: a test plugin for the C SDK's less common paths: templates with
 * context placeholders and a literal "{{", a custom prompt function with
 * generation overrides, a custom validate function calling the defaults and
 * mdsa_count_tokens, mdsa_embed (the query "embed please", see
 * sdkcheck.Embed), the handle export, and tools: "add" (sums two numbers, a
 * failed call for bad arguments, an export failure for a = 13) and "query"
 * (no parameters; returns the query). Built by sdk_test.go.
 */
#include "../mdsa.h"

static const char *const keywords[] = {"feature", NULL};
static const char *const capabilities[] = {MDSA_CAP_GENERATE, MDSA_CAP_EMBED, MDSA_CAP_COUNT_TOKENS, NULL};
static const char *const stop[] = {"\n\nUser:", NULL};
static const char *const banned[] = {"forbidden phrase", NULL};

/*
 * Embeds the content of every history turn and answers one assistant
 * message: "ok MODEL" then a line "DIM BITS..." per vector (each float as
 * the decimal value of its bits), or "error CODE: MESSAGE".
 */
static int embed_report(mdsa_env *env, const mdsa_prompt_request *req, mdsa_prompt_response *out) {
	mdsa_str *in = (mdsa_str *)mdsa_alloc(sizeof(mdsa_str) * (size_t)(req->n_history + 1));
	if (in == NULL) return mdsa_fails(env, "out of memory");
	for (int i = 0; i < req->n_history; i++) in[i] = req->history[i].content;
	mdsa_embed_result r;
	mdsa_sb m = {0};
	if (mdsa_embed(env, in, req->n_history, &r) != 0) {
		mdsa_sb_puts(&m, "error ");
		mdsa_sb_str(&m, r.error_code);
		mdsa_sb_puts(&m, ": ");
		mdsa_sb_str(&m, r.error_message);
	} else {
		mdsa_sb_puts(&m, "ok ");
		mdsa_sb_str(&m, r.model);
		for (int i = 0; i < r.n_vectors; i++) {
			mdsa_sb_byte(&m, '\n');
			mdsa_sb_int(&m, r.vectors[i].dim);
			for (int j = 0; j < r.vectors[i].dim; j++) {
				uint32_t bits;
				__builtin_memcpy(&bits, &r.vectors[i].values[j], sizeof bits);
				mdsa_sb_byte(&m, ' ');
				mdsa_sb_int(&m, bits);
			}
		}
	}
	if (m.failed) return mdsa_fails(env, "out of memory");
	return mdsa_prompt_add(out, "assistant", mdsa_sb_view(&m));
}

static int custom_prompt(mdsa_env *env, const mdsa_prompt_request *req, mdsa_prompt_response *out) {
	if (mdsa_str_eqs(req->query, "fail please")) return mdsa_fails(env, "custom failure");
	if (mdsa_str_eqs(req->query, "embed please")) return embed_report(env, req, out);
	if (mdsa_default_prompt(env, req, out) != 0) return -1;
	out->generation.max_tokens = 7;
	out->generation.temperature = 0.25f;
	out->generation.stop = stop;
	out->generation.seed = 42;
	return mdsa_prompt_add(out, "assistant", mdsa_context(req, "prefill", "(none)"));
}

static int custom_validate(mdsa_env *env, const mdsa_validate_request *req, mdsa_validation *out) {
	mdsa_default_validate(env, req, out);
	int64_t n = mdsa_count_tokens(env, req->response);
	mdsa_sb m = {0};
	mdsa_sb_puts(&m, "tokens: ");
	mdsa_sb_int(&m, n);
	return mdsa_validation_add(out, "token_count", MDSA_INFO, mdsa_sb_view(&m));
}

/* Appends x with at most 6 decimals (mdsa_sb_decimal takes no sign). */
static void put_number(mdsa_sb *b, double x) {
	if (x < 0) {
		mdsa_sb_byte(b, '-');
		x = -x;
	}
	mdsa_sb_decimal(b, x);
}

/* add: {"sum": a + b}; a failed call when a or b is not a number; a = 13
 * fails the export. */
static int add_tool(mdsa_env *env, const mdsa_tool_request *req, mdsa_tool_result *out) {
	const mdsa_json *a = mdsa_json_get(req->arguments, "a");
	const mdsa_json *b = mdsa_json_get(req->arguments, "b");
	if (a == NULL || a->kind != MDSA_J_NUMBER || b == NULL || b->kind != MDSA_J_NUMBER)
		return mdsa_tool_errors(out, "a and b must be numbers");
	double x = mdsa_json_number(a, 0), y = mdsa_json_number(b, 0);
	if (x == 13) return mdsa_fails(env, "unlucky number");
	mdsa_sb s = {0};
	mdsa_sb_puts(&s, "{\"sum\":");
	put_number(&s, x + y);
	mdsa_sb_byte(&s, '}');
	if (s.failed) return mdsa_fails(env, "out of memory");
	return mdsa_tool_ok(out, mdsa_sb_view(&s));
}

/* query: the query being answered, and how many arguments came. */
static int query_tool(mdsa_env *env, const mdsa_tool_request *req, mdsa_tool_result *out) {
	(void)env;
	mdsa_sb s = {0};
	mdsa_sb_str(&s, req->query);
	mdsa_sb_puts(&s, " (");
	mdsa_sb_int(&s, req->arguments->count);
	mdsa_sb_puts(&s, " arguments)");
	return mdsa_tool_ok(out, mdsa_sb_view(&s));
}

static const mdsa_tool tools[] = {
	MDSA_TOOL("add", "Adds two numbers exactly. Use it for any sum.",
	          "{\"type\": \"object\",\n"
	          " \"properties\": {\"a\": {\"type\": \"number\"}, \"b\": {\"type\": \"number\", \"description\": \"the second \\u00e9 addend\", \"maximum\": 1e300}},\n"
	          " \"required\": [\"a\", \"b\"]}",
	          add_tool),
	MDSA_TOOL("query", "Returns the query.", NULL, query_tool),
	MDSA_TOOLS_END,
};

static const mdsa_validator validators[] = {
	MDSA_BANNED_TERMS(banned),
	MDSA_REQUIRE_DISCLAIMER("Test disclaimer.", NULL),
	MDSA_VALIDATORS_END,
};

static const mdsa_plugin features = {
	.name = "features",
	.version = "0.1.0",
	.keywords = keywords,
	.capabilities = capabilities,
	.system = "Literal \\{{not a placeholder}} tone={{ context.tone|plain }} q={{query}}",
	.template_ = "Q: {{query}} ({{context.lang}})",
	.validators = validators,
	.prompt_fn = custom_prompt,
	.validate_fn = custom_validate,
	.tools = tools,
};

MDSA_PLUGIN(features)
MDSA_PLUGIN_HANDLE(features)
