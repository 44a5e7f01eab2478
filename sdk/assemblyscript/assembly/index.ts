// MDSA plugin SDK for AssemblyScript, ABI v1 (see sdk/ABI.md and README.md).
//
// A plugin's entry file declares a Plugin, registers it at the top level,
// and re-exports the ABI exports:
//
//   import * as mdsa from "<path>/sdk/assemblyscript/assembly/index";
//   const p = new mdsa.Plugin("cooking", "1.0.0");
//   ...
//   mdsa.register(p);
//   export { describe, prompt, validate } from "<path>/sdk/assemblyscript/assembly/index";
//
// (add tool to the re-exports when the plugin declares tools, handle when it
// runs whole requests itself).
//
// Build with --use abort=<path>/sdk/assemblyscript/assembly/io/mdsaAbort.

export {
  ABI_MINOR_TOOLS,
  ABI_VERSION,
  CAP_COUNT_TOKENS,
  CAP_EMBED,
  CAP_GENERATE,
  Compiled,
  EmbedResponse,
  Env,
  GenerateResponse,
  Generation,
  HandleResponse,
  MAX_TOOLS,
  MAX_TOOL_DESCRIPTION_LEN,
  MAX_TOOL_NAME_LEN,
  MAX_TOOL_SCHEMA_LEN,
  Message,
  ModelPref,
  Plugin,
  PromptFn,
  PromptRequest,
  PromptResponse,
  ROLE_ASSISTANT,
  ROLE_SYSTEM,
  ROLE_USER,
  TIER_DOMAIN,
  TIER_REASONER,
  Tool,
  ToolFn,
  ToolResult,
  ValidateFn,
  ValidateRequest,
  describe,
  handle,
  prompt,
  register,
  tool,
  validate,
} from "./plugin";
export {
  CODE_BANNED_TERM,
  CODE_DISCLAIMER_ADDED,
  CODE_TOO_LONG,
  CODE_TOO_SHORT,
  Check,
  CheckFn,
  Issue,
  PENALTY_ERROR,
  PENALTY_WARNING,
  SEVERITY_ERROR,
  SEVERITY_INFO,
  SEVERITY_WARNING,
  Validation,
  Validator,
  bannedTerms,
  customValidator,
  evaluate,
  maxLength,
  minLength,
  requireDisclaimer,
  score,
} from "./validators";
export { JKind, JSONWriter, JValue, ParseResult, parseJSON } from "./json";
export { Template } from "./template";
export { PhraseSet, Words, cut, hasPhrase, runeCount, trimSpace, wordsOf } from "./text";
export { mdsaAbort } from "./io";
