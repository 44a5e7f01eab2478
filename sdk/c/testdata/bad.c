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

static const mdsa_plugin bad = {
	.name = "Bad Name",
	.version = "1",
	.capabilities = capabilities,
	.template_ = "{{nope}}",
	.validators = validators,
};

MDSA_PLUGIN(bad)
