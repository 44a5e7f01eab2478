// features: a test plugin for the AssemblyScript SDK's less common paths:
// templates with context placeholders and a literal "{{", a custom prompt
// function with generation overrides and a failure, a custom validate
// function that builds on the defaults and calls Env.countTokens, Env.embed
// (the query "embed please", see sdkcheck.Embed), the handle export, and
// tools: "add" (sums two numbers, a failed call for bad arguments, an export
// failure for a = 13) and "query" (no parameters; returns env.query).
// Built by sdk_test.go from this directory.
import * as mdsa from "../assembly/index";

// embedReport embeds the content of every history turn and answers one
// assistant message: "ok MODEL" then a line "DIM BITS..." per vector (each
// f32 as the decimal value of its bits), or "error CODE: MESSAGE".
function embedReport(env: mdsa.Env, req: mdsa.PromptRequest): mdsa.PromptResponse {
  const input: string[] = [];
  for (let i = 0; i < req.history.length; i++) input.push(req.history[i].content);
  const r = env.embed(input);
  // Parts joined once: appending to a string would be quadratic.
  const parts: string[] = [];
  if (!r.ok) {
    parts.push("error " + r.errorCode + ": " + r.errorMessage);
  } else {
    parts.push("ok " + r.model);
    for (let i = 0; i < r.vectors.length; i++) {
      const v = r.vectors[i];
      parts.push("\n" + v.length.toString());
      for (let j = 0; j < v.length; j++) parts.push(" " + reinterpret<u32>(v[j]).toString());
    }
  }
  const out = new mdsa.PromptResponse();
  out.messages.push(new mdsa.Message(mdsa.ROLE_ASSISTANT, parts.join("")));
  return out;
}

function customPrompt(env: mdsa.Env, req: mdsa.PromptRequest): mdsa.PromptResponse {
  if (req.query == "fail please") {
    env.fail("custom failure");
    return new mdsa.PromptResponse();
  }
  if (req.query == "embed please") return embedReport(env, req);
  if (req.query == "abort please") {
    // An out-of-range index makes the runtime call abort (mdsaAbort).
    const empty: string[] = [];
    env.fail(empty[req.history.length + 3]);
  }
  const out = env.defaultPrompt(req);
  out.generation.maxTokens = 7;
  out.generation.temperature = 0.25;
  out.generation.stop = ["\n\nUser:"];
  out.generation.seed = 42;
  out.messages.push(new mdsa.Message(mdsa.ROLE_ASSISTANT, req.context("prefill", "(none)")));
  return out;
}

function customValidate(env: mdsa.Env, req: mdsa.ValidateRequest): mdsa.Validation {
  const v = env.defaultValidate(req);
  v.add("token_count", mdsa.SEVERITY_INFO, "tokens: " + env.countTokens(req.response).toString());
  return v;
}

// add: {"sum": a + b}; a failed call when a or b is not a number; a = 13
// fails the export (env.fail).
function addTool(env: mdsa.Env, args: mdsa.JValue): mdsa.ToolResult {
  const a = args.getNumber("a");
  const b = args.getNumber("b");
  if (isNaN(a) || isNaN(b)) return mdsa.ToolResult.error("a and b must be numbers");
  if (a == 13) {
    env.fail("unlucky number");
    return mdsa.ToolResult.ok("");
  }
  const w = new mdsa.JSONWriter();
  w.raw('{"sum":').num(a + b).byte(0x7d);
  return mdsa.ToolResult.ok(w.toString());
}

// query: the query being answered, and how many arguments came.
function queryTool(env: mdsa.Env, args: mdsa.JValue): mdsa.ToolResult {
  return mdsa.ToolResult.ok(env.query + " (" + args.keys.length.toString() + " arguments)");
}

const p = new mdsa.Plugin("features", "0.1.0");
p.keywords = ["feature"];
p.capabilities = [mdsa.CAP_GENERATE, mdsa.CAP_EMBED, mdsa.CAP_COUNT_TOKENS];
p.system = "Literal \\{{not a placeholder}} tone={{ context.tone|plain }} q={{query}}";
p.template = "Q: {{query}} ({{context.lang}})";
p.validators = [mdsa.bannedTerms(["forbidden phrase"]), mdsa.requireDisclaimer("Test disclaimer.")];
p.promptFn = customPrompt;
p.validateFn = customValidate;
p.tools = [
  new mdsa.Tool(
    "add",
    "Adds two numbers exactly. Use it for any sum.",
    '{"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number", "description": "the second \u00e9 addend"}}, "required": ["a", "b"]}',
    addTool,
  ),
  new mdsa.Tool("query", "Returns the query.", "", queryTool),
];
mdsa.register(p);

export { describe, prompt, validate, handle, tool } from "../assembly/index";
