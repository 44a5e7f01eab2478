// The plugin declaration and the ABI v1 exports of the MDSA AssemblyScript
// SDK. A plugin builds a Plugin, passes it to register() at the top level of
// its entry file, and re-exports describe, prompt and validate (and, if it
// wants the host to let it drive generation itself, handle; if it declares
// tools, tool).

import { JKind, JSONWriter, JValue, parseJSON } from "./json";
import { HOST_COUNT_TOKENS, HOST_EMBED, HOST_GENERATE, hostCall, readInput, setError, setOutput } from "./io";
import { Template } from "./template";
import { trimSpace } from "./text";
import { Issue, Validation, Validator, evaluate } from "./validators";

/** The plugin ABI version this SDK speaks. */
export const ABI_VERSION: i32 = 1;

/**
 * The minor version of ABI 1 a manifest states when the plugin declares
 * tools (the tool export and the manifest's tools came with minor 1).
 */
export const ABI_MINOR_TOOLS: i32 = 1;

/** Bounds of tool declarations the host enforces (sdk/ABI.md section 4.5). */
export const MAX_TOOLS: i32 = 32;
export const MAX_TOOL_NAME_LEN: i32 = 64;
export const MAX_TOOL_DESCRIPTION_LEN: i32 = 4096;
export const MAX_TOOL_SCHEMA_LEN: i32 = 64 << 10;

/** Model tiers. */
export const TIER_DOMAIN = "domain";
export const TIER_REASONER = "reasoner";

/** Capabilities (host functions a plugin may call). */
export const CAP_GENERATE = "generate";
export const CAP_EMBED = "embed";
export const CAP_COUNT_TOKENS = "count_tokens";

/** Chat roles. */
export const ROLE_SYSTEM = "system";
export const ROLE_USER = "user";
export const ROLE_ASSISTANT = "assistant";

/** One chat turn. */
export class Message {
  role: string;
  content: string;

  constructor(role: string, content: string) {
    this.role = role;
    this.content = content;
  }
}

/**
 * Sampling settings. Unset fields (0, NaN, empty, -1 for seed) are left
 * out of the JSON, so the host's or the manifest's defaults apply.
 */
export class Generation {
  maxTokens: i32 = 0;
  temperature: f64 = NaN;
  topP: f64 = NaN;
  topK: i32 = 0;
  repeatPenalty: f64 = NaN;
  stop: string[] = [];
  /** A uint32 seed; -1 means not set. */
  seed: i64 = -1;

  /** Whether no field is set. */
  isZero(): bool {
    return (
      this.maxTokens == 0 &&
      isNaN(this.temperature) &&
      isNaN(this.topP) &&
      this.topK == 0 &&
      isNaN(this.repeatPenalty) &&
      this.stop.length == 0 &&
      this.seed < 0
    );
  }

  /** A copy with every field that over sets replacing this one's. */
  merge(over: Generation): Generation {
    const g = new Generation();
    g.maxTokens = over.maxTokens != 0 ? over.maxTokens : this.maxTokens;
    g.temperature = !isNaN(over.temperature) ? over.temperature : this.temperature;
    g.topP = !isNaN(over.topP) ? over.topP : this.topP;
    g.topK = over.topK != 0 ? over.topK : this.topK;
    g.repeatPenalty = !isNaN(over.repeatPenalty) ? over.repeatPenalty : this.repeatPenalty;
    g.stop = over.stop.length > 0 ? over.stop : this.stop;
    g.seed = over.seed >= 0 ? over.seed : this.seed;
    return g;
  }

  /** Writes the set fields as members of an open JSON object; returns whether one was written. */
  writeFields(w: JSONWriter, first: bool): bool {
    if (this.maxTokens != 0) {
      w.key("max_tokens", first).int(this.maxTokens);
      first = false;
    }
    if (!isNaN(this.temperature)) {
      w.key("temperature", first).num(this.temperature);
      first = false;
    }
    if (!isNaN(this.topP)) {
      w.key("top_p", first).num(this.topP);
      first = false;
    }
    if (this.topK != 0) {
      w.key("top_k", first).int(this.topK);
      first = false;
    }
    if (!isNaN(this.repeatPenalty)) {
      w.key("repeat_penalty", first).num(this.repeatPenalty);
      first = false;
    }
    if (this.stop.length > 0) {
      w.key("stop", first).strings(this.stop);
      first = false;
    }
    if (this.seed >= 0) {
      w.key("seed", first).int(this.seed);
      first = false;
    }
    return !first;
  }

  /** Writes the settings as a JSON object. */
  write(w: JSONWriter): void {
    w.byte(0x7b);
    this.writeFields(w, true);
    w.byte(0x7d);
  }

  check(): string {
    if (this.maxTokens < 0) return "generation.max_tokens is negative";
    if (this.topK < 0) return "generation.top_k is negative";
    if (!isNaN(this.temperature) && (this.temperature < 0 || this.temperature > 10)) return "generation.temperature out of range [0, 10]";
    if (!isNaN(this.topP) && (this.topP < 0 || this.topP > 1)) return "generation.top_p out of range [0, 1]";
    if (!isNaN(this.repeatPenalty) && (this.repeatPenalty < 0 || this.repeatPenalty > 10)) return "generation.repeat_penalty out of range [0, 10]";
    if (this.stop.length > 16) return "generation.stop has more than 16 entries";
    for (let i = 0; i < this.stop.length; i++) if (unchecked(this.stop[i]).length == 0) return "generation.stop has an empty entry";
    if (this.seed > 0xffffffff) return "generation.seed exceeds uint32";
    return "";
  }
}

/** Which model the plugin wants the host to run for it. */
export class ModelPref {
  /** TIER_DOMAIN, TIER_REASONER or "" (the host chooses). */
  tier: string = "";
  /** Model names in order of preference (hints). */
  prefer: string[] = [];
  /** Smallest context window, in tokens, the prompts need (0: no need). */
  minContext: i32 = 0;
}

/** The input of the prompt (and handle) export. */
export class PromptRequest {
  query: string = "";
  history: Message[] = [];
  /** Context keys and their values, in input order. */
  contextKeys: string[] = [];
  contextValues: string[] = [];

  /** The value of context key key, or def when absent or empty. */
  context(key: string, def: string = ""): string {
    for (let i = this.contextKeys.length - 1; i >= 0; i--) {
      if (unchecked(this.contextKeys[i]) == key) {
        const v = unchecked(this.contextValues[i]);
        return v.length > 0 ? v : def;
      }
    }
    return def;
  }
}

/** The output of the prompt export. */
export class PromptResponse {
  messages: Message[] = [];
  /** Per-request overrides of the manifest's generation defaults. */
  generation: Generation = new Generation();
}

/** The input of the validate export. */
export class ValidateRequest {
  query: string = "";
  response: string = "";
  domain: string = "";
}

/** The reply of mdsa_generate: the text, or the host's refusal. */
export class GenerateResponse {
  text: string = "";
  model: string = "";
  tokensIn: i64 = 0;
  tokensOut: i64 = 0;
  finishReason: string = "";
  /** The refusal code ("" on success): capability_denied, budget_exceeded, model_denied, bad_request, engine_error, unavailable, ... */
  errorCode: string = "";
  errorMessage: string = "";

  /** Whether the host generated text (no refusal). */
  get ok(): bool {
    return this.errorCode.length == 0;
  }
}

/** The reply of mdsa_embed: one vector per input, in order, or the host's refusal. */
export class EmbedResponse {
  model: string = "";
  /** One vector per input, in order. */
  vectors: Float32Array[] = [];
  /**
   * The refusal code ("" on success): capability_denied, budget_exceeded,
   * model_denied, bad_request, engine_error, unavailable, or bad_reply for
   * a reply the SDK cannot decode.
   */
  errorCode: string = "";
  errorMessage: string = "";

  /** Whether the host returned the vectors (no refusal). */
  get ok(): bool {
    return this.errorCode.length == 0;
  }
}

/** The output of the handle export. */
export class HandleResponse {
  response: string = "";
  validation: Validation = new Validation();
}

/**
 * What a tool returns: content, the text the model reads as the call's
 * result (at most 64 KB), and whether the call failed. A failed call
 * (ToolResult.error) is not an export failure: the model reads the message
 * and may call again with better arguments.
 */
export class ToolResult {
  content: string;
  isError: bool;

  constructor(content: string, isError: bool = false) {
    this.content = content;
    this.isError = isError;
  }

  /** A successful call whose result is content. */
  static ok(content: string): ToolResult {
    return new ToolResult(content, false);
  }

  /** A failed call (bad arguments, say): message tells the model why. */
  static error(message: string): ToolResult {
    return new ToolResult(message, true);
  }
}

/**
 * A tool's run function: args are the call's arguments (a JSON object,
 * already checked by the host against the tool's parameters; an empty
 * object when the call has none), env.query the query being answered.
 * Return ToolResult.ok(content) or ToolResult.error(message); env.fail
 * fails the whole export instead (for what the model cannot fix).
 */
export type ToolFn = (env: Env, args: JValue) => ToolResult;

/**
 * A tool the model may call while answering a query of the domain (ABI
 * 1.1, sdk/ABI.md section 4.5). Declaring one puts "abi_minor": 1 and the
 * tool in the manifest; the entry file must then re-export tool.
 */
export class Tool {
  /** 1-64 of [A-Za-z0-9_-], unique within the plugin. */
  name: string;
  /** What the tool does and when to use it, for the model (at most 4096 bytes). */
  description: string;
  /**
   * The JSON Schema of the arguments, as JSON text: an object schema
   * ({"type": "object", ...}) of at most 64 KB; "" means no arguments.
   */
  parameters: string;
  run: ToolFn;

  constructor(name: string, description: string, parameters: string, run: ToolFn) {
    this.name = name;
    this.description = description;
    this.parameters = parameters;
    this.run = run;
  }
}

/** A custom prompt function; call env.fail to fail the export. */
export type PromptFn = (env: Env, req: PromptRequest) => PromptResponse;
/** A custom validate function; call env.fail to fail the export. */
export type ValidateFn = (env: Env, req: ValidateRequest) => Validation;

/**
 * Plugin declares a domain plugin. Only name, version and keywords or
 * examples are required; everything else has a default:
 *
 *  - prompt renders system (if set) as the system message, the request's
 *    history (the last maxHistory user/assistant turns; other roles are
 *    dropped so that a caller cannot inject a system turn) and template
 *    ("{{query}}") as the final user message;
 *  - validate runs validators in order.
 *
 * promptFn and validateFn replace those defaults. tools declares functions
 * the model may call while answering (run by the tool export).
 */
export class Plugin {
  name: string;
  version: string;
  description: string = "";
  keywords: string[] = [];
  examples: string[] = [];
  model: ModelPref = new ModelPref();
  generation: Generation = new Generation();
  capabilities: string[] = [];
  /** The system prompt template (placeholders allowed). */
  system: string = "";
  /** The user message template. */
  template: string = "{{query}}";
  /** History turns passed on (the latest); 0 means all. */
  maxHistory: i32 = 0;
  validators: Validator[] = [];
  promptFn: PromptFn | null = null;
  validateFn: ValidateFn | null = null;
  /** Tools the model may call (at most MAX_TOOLS); see Tool. */
  tools: Tool[] = [];

  constructor(name: string, version: string) {
    this.name = name;
    this.version = version;
  }
}

/** What custom functions receive: the plugin, its defaults and the host functions. */
export class Env {
  plugin: Plugin;
  /** Set by fail: the export then fails with this message. */
  error: string = "";
  /** The query of the request being served ("" in describe). */
  query: string = "";
  private c: Compiled;

  constructor(c: Compiled) {
    this.c = c;
    this.plugin = c.plugin;
  }

  /** Makes the current export fail with msg (the first message wins). */
  fail(msg: string): void {
    if (this.error.length == 0) this.error = msg.length > 0 ? msg : "failed";
  }

  /** The default prompt: system, history and template. */
  defaultPrompt(req: PromptRequest): PromptResponse {
    return this.c.defaultPrompt(req);
  }

  /** The default validation: the plugin's validators. */
  defaultValidate(req: ValidateRequest): Validation {
    return evaluate(req.query, req.response, req.domain, this.c.plugin.validators);
  }

  /**
   * Calls mdsa_generate with messages and generation settings (the
   * manifest's defaults apply to unset fields on the host side). Check
   * ok / errorCode of the result: a refusal is not an export failure unless
   * the plugin makes it one.
   */
  generate(messages: Message[], generation: Generation = new Generation()): GenerateResponse {
    const w = new JSONWriter(256);
    w.raw('{"messages":');
    writeMessages(w, messages);
    generation.writeFields(w, false);
    w.byte(0x7d);
    return decodeGenerate(hostCall(HOST_GENERATE, w.bytes()));
  }

  /** Calls mdsa_generate with a raw prompt (no chat template). */
  generateRaw(prompt: string, generation: Generation = new Generation()): GenerateResponse {
    const w = new JSONWriter(256);
    w.raw('{"prompt":').str(prompt);
    generation.writeFields(w, false);
    w.byte(0x7d);
    return decodeGenerate(hostCall(HOST_GENERATE, w.bytes()));
  }

  /**
   * Calls mdsa_embed (capability CAP_EMBED) for the texts in input: one
   * vector per input, in order. Check ok / errorCode of the result: a
   * refusal (e.g. bad_request for no inputs or an empty one), or bad_reply
   * for an undecodable reply, a value that is not a number or is out of
   * f32 range, or a vector count that differs from the inputs'. A refusal
   * is not an export failure unless the plugin makes it one.
   */
  embed(input: string[]): EmbedResponse {
    const w = new JSONWriter(64);
    w.raw('{"input":').strings(input).byte(0x7d);
    return decodeEmbed(hostCall(HOST_EMBED, w.bytes()), input.length);
  }

  /** Counts the tokens of text with the host's tokenizer (mdsa_count_tokens); -1 when refused. */
  countTokens(text: string): i64 {
    const w = new JSONWriter(text.length + 16);
    w.raw('{"text":').str(text).byte(0x7d);
    const r = parseJSON(hostCall(HOST_COUNT_TOKENS, w.bytes()));
    const v = r.value;
    if (v === null || v.kind != JKind.Object || v.get("error") !== null) return -1;
    return v.getInt("count", -1);
  }
}

function decodeGenerate(reply: Uint8Array): GenerateResponse {
  const out = new GenerateResponse();
  const r = parseJSON(reply);
  const v = r.value;
  if (v === null || v.kind != JKind.Object) {
    out.errorCode = "bad_reply";
    out.errorMessage = "mdsa_generate: undecodable reply: " + (r.error.length > 0 ? r.error : "not a JSON object");
    return out;
  }
  const e = v.get("error");
  if (e !== null) {
    out.errorCode = e.getString("code", "engine_error");
    if (out.errorCode.length == 0) out.errorCode = "engine_error";
    out.errorMessage = e.getString("message");
    return out;
  }
  out.text = v.getString("text");
  out.model = v.getString("model");
  out.tokensIn = v.getInt("tokens_in");
  out.tokensOut = v.getInt("tokens_out");
  out.finishReason = v.getString("finish_reason");
  return out;
}

function embedBad(out: EmbedResponse, msg: string): EmbedResponse {
  out.errorCode = "bad_reply";
  out.errorMessage = "mdsa_embed: undecodable reply: " + msg;
  out.vectors = [];
  return out;
}

function decodeEmbed(reply: Uint8Array, n: i32): EmbedResponse {
  const out = new EmbedResponse();
  const r = parseJSON(reply);
  const v = r.value;
  if (v === null || v.kind != JKind.Object) return embedBad(out, r.error.length > 0 ? r.error : "not a JSON object");
  const e = v.get("error");
  if (e !== null && e.kind != JKind.Null) {
    out.errorCode = e.getString("code", "engine_error");
    if (out.errorCode.length == 0) out.errorCode = "engine_error";
    out.errorMessage = e.getString("message");
    return out;
  }
  const vs = v.get("vectors");
  let rows: JValue[] = [];
  if (vs !== null && vs.kind != JKind.Null) {
    if (vs.kind != JKind.Array) return embedBad(out, "vectors: want an array");
    rows = vs.items;
  }
  if (rows.length != n) {
    out.errorCode = "bad_reply";
    out.errorMessage = "mdsa_embed: the host returned " + rows.length.toString() + " vectors for " + n.toString() + " inputs";
    return out;
  }
  const vectors: Float32Array[] = [];
  for (let i = 0; i < rows.length; i++) {
    const row = unchecked(rows[i]);
    if (row.kind != JKind.Array) return embedBad(out, "vectors[" + i.toString() + "]: want an array of numbers");
    const items = row.items;
    const vec = new Float32Array(items.length);
    for (let j = 0; j < items.length; j++) {
      const x = unchecked(items[j]);
      if (x.kind != JKind.Number) return embedBad(out, "vectors[" + i.toString() + "][" + j.toString() + "]: want a number");
      const f = <f32>x.num;
      if (!isFinite(f)) return embedBad(out, "vectors[" + i.toString() + "][" + j.toString() + "]: number out of float range");
      unchecked((vec[j] = f));
    }
    vectors.push(vec);
  }
  out.model = v.getString("model");
  out.vectors = vectors;
  return out;
}

function writeMessages(w: JSONWriter, msgs: Message[]): void {
  w.byte(0x5b);
  for (let i = 0; i < msgs.length; i++) {
    const m = unchecked(msgs[i]);
    if (i > 0) w.byte(0x2c);
    w.raw('{"role":').str(m.role).raw(',"content":').str(m.content).byte(0x7d);
  }
  w.byte(0x5d);
}

function writeValidation(w: JSONWriter, v: Validation): void {
  w.raw('{"ok":').bool(v.ok).raw(',"score":');
  let s = v.score;
  if (isNaN(s) || s < 0) s = 0;
  if (s > 1) s = 1;
  w.num(s).raw(',"issues":[');
  for (let i = 0; i < v.issues.length; i++) {
    const is: Issue = unchecked(v.issues[i]);
    if (i > 0) w.byte(0x2c);
    w.raw('{"code":').str(is.code).raw(',"severity":').str(is.severity).raw(',"message":').str(is.message).byte(0x7d);
  }
  w.byte(0x5d);
  const r = v.response;
  if (r !== null) w.raw(',"response":').str(r);
  w.byte(0x7d);
}

function validName(s: string): bool {
  if (s.length == 0 || s.length > 64) return false;
  const c0 = s.charCodeAt(0);
  if (c0 < 0x61 || c0 > 0x7a) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c == 0x5f || c == 0x2d)) return false;
  }
  return true;
}

function validToolName(s: string): bool {
  if (s.length == 0 || s.length > MAX_TOOL_NAME_LEN) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c == 0x5f || c == 0x2d)) return false;
  }
  return true;
}

// A string as a JSON string literal, for messages.
function quoted(s: string): string {
  return new JSONWriter(s.length + 2).str(s).toString();
}

// The UTF-8 bytes of a tool's parameters (unpaired surrogates replaced).
function schemaBytes(t: Tool): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(t.parameters, false, String.UTF8.ErrorMode.REPLACE));
}

/** A checked plugin with its templates parsed and its manifest encoded. */
export class Compiled {
  plugin: Plugin;
  system: Template;
  user: Template;
  describe: Uint8Array = new Uint8Array(0);
  /** Why the plugin cannot serve, or "". */
  error: string = "";

  constructor(p: Plugin) {
    this.plugin = p;
    this.system = new Template(p.system);
    this.user = new Template(p.template.length > 0 ? p.template : "{{query}}");
    this.error = this.check();
    if (this.error.length == 0) this.describe = this.encodeManifest();
  }

  private check(): string {
    const p = this.plugin;
    const errs = new Array<string>(0);
    if (!validName(p.name)) errs.push('manifest name "' + p.name + '": want 1-64 of [a-z0-9_-], starting with a letter');
    if (trimSpace(p.version).length == 0) errs.push("manifest version is empty");
    else if (String.UTF8.byteLength(p.version) > 64) errs.push("manifest version is longer than 64 bytes");
    if (p.keywords.length + p.examples.length == 0) errs.push("manifest keywords and examples are both empty");
    const t = p.model.tier;
    if (t.length > 0 && t != TIER_DOMAIN && t != TIER_REASONER) errs.push('manifest model tier "' + t + '" is unknown');
    for (let i = 0; i < p.capabilities.length; i++) {
      const c = unchecked(p.capabilities[i]);
      if (c != CAP_GENERATE && c != CAP_EMBED && c != CAP_COUNT_TOKENS) errs.push('manifest capability "' + c + '" is unknown');
      for (let j = 0; j < i; j++) if (unchecked(p.capabilities[j]) == c) errs.push('manifest capability "' + c + '" is listed twice');
    }
    if (p.maxHistory < 0) errs.push("maxHistory is negative");
    const g = p.generation.check();
    if (g.length > 0) errs.push("manifest " + g);
    if (this.system.error.length > 0) errs.push("system: " + this.system.error);
    if (this.user.error.length > 0) errs.push("template: " + this.user.error);
    for (let i = 0; i < p.validators.length; i++) {
      const e = unchecked(p.validators[i]).configError;
      if (e.length > 0) errs.push(e);
    }
    this.checkTools(errs);
    if (errs.length > 0) return 'plugin "' + p.name + '": ' + errs.join("; ");
    return "";
  }

  private checkTools(errs: string[]): void {
    const tools = this.plugin.tools;
    if (tools.length > MAX_TOOLS) errs.push("manifest declares " + tools.length.toString() + " tools, at most " + MAX_TOOLS.toString());
    for (let i = 0; i < tools.length; i++) {
      const t = unchecked(tools[i]);
      const at = "tools[" + i.toString() + "] " + quoted(t.name);
      if (!validToolName(t.name)) errs.push(at + ": want a name of 1-64 of [A-Za-z0-9_-]");
      for (let j = 0; j < i; j++) {
        if (unchecked(tools[j]).name == t.name) {
          errs.push(at + ": the name is declared twice");
          break;
        }
      }
      if (String.UTF8.byteLength(t.description) > MAX_TOOL_DESCRIPTION_LEN) {
        errs.push(at + ": description is longer than " + MAX_TOOL_DESCRIPTION_LEN.toString() + " bytes");
      }
      if (trimSpace(t.parameters).length == 0) continue;
      const b = schemaBytes(t);
      if (b.length > MAX_TOOL_SCHEMA_LEN) {
        errs.push(at + ": parameters: " + b.length.toString() + " bytes, at most " + MAX_TOOL_SCHEMA_LEN.toString());
        continue;
      }
      const r = parseJSON(b);
      const v = r.value;
      if (v === null) errs.push(at + ": parameters: not JSON: " + r.error);
      else if (v.kind != JKind.Object) errs.push(at + ": parameters: want a JSON Schema object");
    }
  }

  private encodeManifest(): Uint8Array {
    const p = this.plugin;
    const w = new JSONWriter(4096);
    w.raw('{"abi":').int(ABI_VERSION);
    if (p.tools.length > 0) w.key("abi_minor").int(ABI_MINOR_TOOLS);
    w.key("name").str(p.name);
    w.key("version").str(p.version);
    if (p.description.length > 0) w.key("description").str(p.description);
    w.key("keywords").strings(p.keywords);
    w.key("examples").strings(p.examples);
    w.key("model").byte(0x7b);
    let first = true;
    if (p.model.tier.length > 0) {
      w.key("tier", first).str(p.model.tier);
      first = false;
    }
    if (p.model.prefer.length > 0) {
      w.key("prefer", first).strings(p.model.prefer);
      first = false;
    }
    if (p.model.minContext != 0) {
      w.key("min_context", first).int(p.model.minContext);
      first = false;
    }
    w.byte(0x7d);
    w.key("generation");
    p.generation.write(w);
    w.key("capabilities").strings(p.capabilities);
    if (p.tools.length > 0) {
      w.key("tools").byte(0x5b);
      for (let i = 0; i < p.tools.length; i++) {
        const t = unchecked(p.tools[i]);
        if (i > 0) w.byte(0x2c);
        w.raw('{"name":').str(t.name);
        if (t.description.length > 0) w.key("description").str(t.description);
        // Checked to be one JSON object, so it goes in as written.
        if (trimSpace(t.parameters).length > 0) w.key("parameters").rawBytes(schemaBytes(t));
        w.byte(0x7d);
      }
      w.byte(0x5d);
    }
    w.byte(0x7d);
    return w.bytes().slice();
  }

  defaultPrompt(req: PromptRequest): PromptResponse {
    const p = this.plugin;
    let hist = req.history;
    let from = 0;
    if (p.maxHistory > 0 && hist.length > p.maxHistory) from = hist.length - p.maxHistory;
    const out = new PromptResponse();
    const sys = this.system.render(req.query, req.contextKeys, req.contextValues);
    if (sys.length > 0) out.messages.push(new Message(ROLE_SYSTEM, sys));
    for (let i = from; i < hist.length; i++) {
      const m = unchecked(hist[i]);
      if ((m.role == ROLE_USER || m.role == ROLE_ASSISTANT) && m.content.length > 0) out.messages.push(m);
    }
    out.messages.push(new Message(ROLE_USER, this.user.render(req.query, req.contextKeys, req.contextValues)));
    return out;
  }

  prompt(env: Env, req: PromptRequest): PromptResponse | null {
    if (trimSpace(req.query).length == 0) {
      env.fail("the query is empty");
      return null;
    }
    const fn = this.plugin.promptFn;
    if (fn !== null) {
      const r = fn(env, req);
      if (env.error.length > 0) return null;
      if (r.messages.length == 0) {
        env.fail("custom prompt function returned no messages");
        return null;
      }
      return r;
    }
    return this.defaultPrompt(req);
  }

  validate(env: Env, req: ValidateRequest): Validation | null {
    const fn = this.plugin.validateFn;
    if (fn !== null) {
      const v = fn(env, req);
      if (env.error.length > 0) return null;
      return v;
    }
    return evaluate(req.query, req.response, req.domain, this.plugin.validators);
  }
}

let registered: Plugin | null = null;
let registerError: string = "";
let compiledPlugin: Compiled | null = null;

/**
 * register declares the plugin this module serves. Call it once, at the
 * top level of the plugin's entry file. A plugin that fails its checks is
 * not fatal here: every export then fails with the reason, so the host
 * refuses the plugin at load with a clear message.
 */
export function register(p: Plugin): void {
  if (registered !== null) {
    registerError = "register called more than once (again for " + p.name + ")";
    return;
  }
  registered = p;
}

// current returns the compiled plugin, or sets the export's error.
function current(exportName: string): Compiled | null {
  if (registerError.length > 0) {
    setError(exportName + ": " + registerError);
    return null;
  }
  let c = compiledPlugin;
  if (c === null) {
    const p = registered;
    if (p === null) {
      setError(exportName + ": no plugin registered: call register() at the top level of the plugin's entry file");
      return null;
    }
    c = new Compiled(p);
    compiledPlugin = c;
  }
  if (c.error.length > 0) {
    setError(exportName + ": " + c.error);
    return null;
  }
  return c;
}

function decodeInput(exportName: string): JValue | null {
  const r = parseJSON(readInput());
  const v = r.value;
  if (v === null) {
    setError(exportName + ": decode input: " + r.error);
    return null;
  }
  if (v.kind != JKind.Object) {
    setError(exportName + ": decode input: want a JSON object");
    return null;
  }
  return v;
}

// field returns member key of obj when it is absent, null, or of kind; it
// sets the export's error and returns null for any other kind.
function field(exportName: string, obj: JValue, key: string, kind: JKind, what: string, ok: StaticArray<bool>, path: string = ""): JValue | null {
  const v = obj.get(key);
  if (v === null || v.kind == JKind.Null) return null;
  if (v.kind != kind) {
    setError(exportName + ": decode input: " + path + key + ": want " + what);
    ok[0] = false;
    return null;
  }
  return v;
}

/** Decodes a PromptRequest from a parsed JSON object; null (with the error set) when it has the wrong shape. */
function decodePromptRequest(exportName: string, v: JValue): PromptRequest | null {
  const req = new PromptRequest();
  const ok = new StaticArray<bool>(1);
  ok[0] = true;
  const q = field(exportName, v, "query", JKind.String, "a string", ok);
  if (!ok[0]) return null;
  if (q !== null) req.query = q.str;
  const h = field(exportName, v, "history", JKind.Array, "an array of messages", ok);
  if (!ok[0]) return null;
  if (h !== null) {
    for (let i = 0; i < h.items.length; i++) {
      const m = unchecked(h.items[i]);
      const path = "history[" + i.toString() + "]";
      if (m.kind != JKind.Object) {
        setError(exportName + ": decode input: " + path + ": want an object");
        return null;
      }
      const role = field(exportName, m, "role", JKind.String, "a string", ok, path + ".");
      if (!ok[0]) return null;
      const content = field(exportName, m, "content", JKind.String, "a string", ok, path + ".");
      if (!ok[0]) return null;
      req.history.push(new Message(role === null ? "" : role.str, content === null ? "" : content.str));
    }
  }
  const c = field(exportName, v, "context", JKind.Object, "an object of strings", ok);
  if (!ok[0]) return null;
  if (c !== null) {
    for (let i = 0; i < c.keys.length; i++) {
      const val = unchecked(c.items[i]);
      if (val.kind == JKind.Null) continue;
      if (val.kind != JKind.String) {
        setError(exportName + ": decode input: context." + unchecked(c.keys[i]) + ": want a string");
        return null;
      }
      req.contextKeys.push(unchecked(c.keys[i]));
      req.contextValues.push(val.str);
    }
  }
  return req;
}

function writePromptResponse(w: JSONWriter, r: PromptResponse): void {
  w.raw('{"messages":');
  writeMessages(w, r.messages);
  w.raw(',"generation":');
  r.generation.write(w);
  w.byte(0x7d);
}

/** The describe export: the manifest. */
export function describe(): i32 {
  const c = current("describe");
  if (c === null) return 1;
  return setOutput("describe", c.describe) ? 0 : 1;
}

/** The prompt export: the chat messages for the model. */
export function prompt(): i32 {
  const c = current("prompt");
  if (c === null) return 1;
  const v = decodeInput("prompt");
  if (v === null) return 1;
  const req = decodePromptRequest("prompt", v);
  if (req === null) return 1;
  const env = new Env(c);
  env.query = req.query;
  const r = c.prompt(env, req);
  if (r === null) {
    setError("prompt: " + env.error);
    return 1;
  }
  const w = new JSONWriter(1024);
  writePromptResponse(w, r);
  return setOutput("prompt", w.bytes()) ? 0 : 1;
}

/** The validate export: the validators' findings and the revised answer. */
export function validate(): i32 {
  const c = current("validate");
  if (c === null) return 1;
  const v = decodeInput("validate");
  if (v === null) return 1;
  const ok = new StaticArray<bool>(1);
  ok[0] = true;
  const req = new ValidateRequest();
  const q = field("validate", v, "query", JKind.String, "a string", ok);
  if (!ok[0]) return 1;
  const resp = field("validate", v, "response", JKind.String, "a string", ok);
  if (!ok[0]) return 1;
  const dom = field("validate", v, "domain", JKind.String, "a string", ok);
  if (!ok[0]) return 1;
  if (q !== null) req.query = q.str;
  if (resp !== null) req.response = resp.str;
  if (dom !== null) req.domain = dom.str;
  const env = new Env(c);
  env.query = req.query;
  const res = c.validate(env, req);
  if (res === null) {
    setError("validate: " + env.error);
    return 1;
  }
  const w = new JSONWriter(req.response.length + 256);
  writeValidation(w, res);
  return setOutput("validate", w.bytes()) ? 0 : 1;
}

/**
 * The handle export (optional: re-export it only if the plugin should run
 * whole requests itself; the host cannot stream a handle answer). It runs
 * the plugin's prompt, mdsa_generate with the manifest's generation
 * settings overlaid by the prompt's, and the plugin's validate, whose
 * revised response becomes the answer. A refused generation fails the
 * export with the host's code and message.
 */
export function handle(): i32 {
  const c = current("handle");
  if (c === null) return 1;
  const v = decodeInput("handle");
  if (v === null) return 1;
  const req = decodePromptRequest("handle", v);
  if (req === null) return 1;
  const env = new Env(c);
  env.query = req.query;
  const pr = c.prompt(env, req);
  if (pr === null) {
    setError("handle: " + env.error);
    return 1;
  }
  const gen = env.generate(pr.messages, c.plugin.generation.merge(pr.generation));
  if (!gen.ok) {
    setError("handle: mdsa_generate refused (" + gen.errorCode + "): " + gen.errorMessage);
    return 1;
  }
  const vreq = new ValidateRequest();
  vreq.query = req.query;
  vreq.response = gen.text;
  vreq.domain = c.plugin.name;
  const val = c.validate(env, vreq);
  if (val === null) {
    setError("handle: " + env.error);
    return 1;
  }
  const w = new JSONWriter(gen.text.length + 256);
  const revised = val.response;
  w.raw('{"response":').str(revised !== null ? revised : gen.text);
  w.raw(',"validation":');
  writeValidation(w, val);
  w.byte(0x7d);
  return setOutput("handle", w.bytes()) ? 0 : 1;
}

/**
 * The tool export (ABI 1.1; re-export it when the plugin declares tools):
 * runs the tool the input names with its arguments and outputs
 * {"content": ..., "is_error": true|absent}. A tool's ToolResult.error is
 * a failed call the model reads; an unknown name, malformed input or
 * env.fail fail the export ("tool: ...").
 */
export function tool(): i32 {
  const c = current("tool");
  if (c === null) return 1;
  const v = decodeInput("tool");
  if (v === null) return 1;
  const ok = new StaticArray<bool>(1);
  ok[0] = true;
  const n = field("tool", v, "name", JKind.String, "a string", ok);
  if (!ok[0]) return 1;
  const q = field("tool", v, "query", JKind.String, "a string", ok);
  if (!ok[0]) return 1;
  const name = n === null ? "" : n.str;
  let args = v.get("arguments");
  if (args === null || args.kind == JKind.Null) args = new JValue(JKind.Object);
  const tools = c.plugin.tools;
  for (let i = 0; i < tools.length; i++) {
    const t = unchecked(tools[i]);
    if (t.name != name) continue;
    const env = new Env(c);
    if (q !== null) env.query = q.str;
    const run = t.run;
    const r = run(env, args);
    if (env.error.length > 0) {
      setError("tool: " + name + ": " + env.error);
      return 1;
    }
    const w = new JSONWriter(r.content.length + 32);
    w.raw('{"content":').str(r.content);
    if (r.isError) w.raw(',"is_error":true');
    w.byte(0x7d);
    return setOutput("tool", w.bytes()) ? 0 : 1;
  }
  setError("tool: no tool named " + quoted(name));
  return 1;
}
