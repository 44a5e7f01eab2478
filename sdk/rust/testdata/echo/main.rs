//! echo: a test plugin for the Rust SDK. It exports handle and drives every
//! host function: mdsa_count_tokens on the query, mdsa_embed when the
//! context asks for it, then mdsa_generate with its prompt; a model_denied
//! refusal is answered without the model. Its custom prompt lowers
//! max_tokens to 7, which the test sees arrive at the host. It declares two
//! tools: "add" (sums two numbers; a failed call for bad arguments) and
//! "query" (no parameters; the query and its mdsa_count_tokens count).

#[path = "../../mdsa.rs"]
mod mdsa;

use mdsa::*;

fn prompt(env: &Env, req: &PromptRequest) -> Result<PromptResponse, String> {
    let mut p = env.default_prompt(req);
    p.generation.max_tokens = 7;
    Ok(p)
}

fn handle(env: &Env, req: &PromptRequest) -> Result<HandleResponse, String> {
    let mut notes = Vec::new();
    let n = env.count_tokens(&req.query)?;
    notes.push(Issue::info("tokens", &format!("query has {n} tokens")));
    if req.context_value("embed") == "1" {
        let e = env.embed(&[req.query.clone(), "second".to_string()])?;
        let dims: Vec<String> = e.vectors.iter().map(|v| v.len().to_string()).collect();
        notes.push(Issue::info("embedded", &format!("{} vectors of dims [{}] from {}", e.vectors.len(), dims.join(","), e.model)));
    }
    let p = prompt(env, req)?;
    let gen = GenerateRequest {
        messages: p.messages,
        prompt: String::new(),
        generation: env.manifest().generation.merge(&p.generation),
    };
    match env.generate(&gen) {
        Ok(g) => {
            let mut v = env.default_validate(&ValidateRequest {
                query: req.query.clone(),
                response: g.text.clone(),
                domain: env.manifest().name.clone(),
            });
            notes.push(Issue::info("generated", &format!("model {} finish {} out {}", g.model, g.finish_reason, g.tokens_out)));
            v.issues.extend(notes);
            Ok(HandleResponse { response: v.response.clone().unwrap_or(g.text), validation: v })
        }
        Err(e) if e.code == ERR_MODEL_DENIED => {
            notes.push(Issue::warning("fallback", &e.to_string()));
            Ok(HandleResponse {
                response: "The model is not available to you; here is a canned answer.".to_string(),
                validation: Validation { ok: true, score: score(&notes), issues: notes, response: None },
            })
        }
        Err(e) => Err(format!("mdsa_generate: {e}")),
    }
}

const ADD_PARAMETERS: &str = r#"{
  "type": "object",
  "properties": {"a": {"type": "number"}, "b": {"type": "number", "description": "the second é addend"}},
  "required": ["a", "b"]
}"#;

// add: {"sum": a + b}, or a failed call when a or b is not a number.
fn add(_env: &Env, args: &Json) -> Result<String, String> {
    match (args.get("a").and_then(Json::as_f64), args.get("b").and_then(Json::as_f64)) {
        (Some(a), Some(b)) => {
            let mut out = String::new();
            ObjWriter::new(&mut out).num("sum", a + b).end();
            Ok(out)
        }
        _ => Err("a and b must be numbers".to_string()),
    }
}

// query: the query, how many arguments came, and its token count (a host
// call from the tool export).
fn query(env: &Env, args: &Json) -> Result<String, String> {
    let n = env.count_tokens(env.query()).map_err(|e| format!("count_tokens: {e}"))?;
    let k = args.as_object().map_or(0, |m| m.len());
    Ok(format!("{} ({k} arguments, {n} tokens)", env.query()))
}

fn plugin() -> Plugin {
    Plugin::new("echo", "0.0.1")
        .keywords(&["echo"])
        .examples(&["echo this back to me"])
        .generation(Generation { max_tokens: 64, temperature: Some(0.5), ..Generation::default() })
        .capabilities(&[CAP_GENERATE, CAP_EMBED, CAP_COUNT_TOKENS])
        .system("Echo system. Mode: {{context.mode|plain}}.")
        .validator(require_disclaimer("Echo disclaimer.", &[]))
        .on_prompt(prompt)
        .on_handle(handle)
        .tool("add", "Adds two numbers exactly. Use it for any sum.", ADD_PARAMETERS, add)
        .tool("query", "Returns the query.", "", query)
}

export_plugin!(plugin, handle);
