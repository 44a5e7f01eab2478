/*
 * bad: a plugin whose declaration is invalid in several ways; every export
 * must fail with all the reasons, so that the host refuses it at load.
 * Built by sdk_test.go.
 */
#include "../mdsa.h"

static const char *const capabilities[] = {MDSA_CAP_GENERATE, "teleport", MDSA_CAP_GENERATE, NULL};
static const mdsa_validator validators[] = {
	MDSA_MAX_LENGTH(5),
	MDSA_VALIDATORS_END,
};

static int noop(mdsa_env *env, const mdsa_tool_request *req, mdsa_tool_result *out) {
	(void)env;
	(void)req;
	return mdsa_tool_ok(out, mdsa_s(""));
}

static const mdsa_tool tools[] = {
	MDSA_TOOL("bad name", NULL, NULL, noop),
	MDSA_TOOL("t", NULL, "{nope", noop),
	MDSA_TOOL("t", NULL, "[1]", NULL),
	MDSA_TOOLS_END,
};

static const mdsa_plugin bad = {
	.name = "Bad Name",
	.version = "1",
	.capabilities = capabilities,
	.template_ = "{{nope}}",
	.validators = validators,
	.tools = tools,
};

MDSA_PLUGIN(bad)
