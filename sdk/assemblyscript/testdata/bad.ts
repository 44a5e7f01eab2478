// bad: a plugin whose declaration is invalid in several ways; every export
// must fail with all the reasons, so that the host refuses it at load.
// Built by sdk_test.go from this directory.
import * as mdsa from "../assembly/index";

const p = new mdsa.Plugin("Bad Name", "1");
p.capabilities = [mdsa.CAP_GENERATE, "teleport", mdsa.CAP_GENERATE];
p.template = "{{nope}}";
p.validators = [mdsa.maxLength(5)];
function noop(env: mdsa.Env, args: mdsa.JValue): mdsa.ToolResult {
  return mdsa.ToolResult.ok("");
}
p.tools = [
  new mdsa.Tool("bad name", "", "", noop),
  new mdsa.Tool("t", "", "{nope", noop),
  new mdsa.Tool("t", "", "[1]", noop),
];
mdsa.register(p);

export { describe, prompt, validate } from "../assembly/index";
