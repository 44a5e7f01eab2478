// Package llamacpp runs GGUF models inside the host process with llama.cpp,
// through github.com/hybridgroup/yzma (purego: no cgo, the llama.cpp shared
// libraries are opened at run time). It implements engine.Engine.
//
// # Libraries
//
// The llama.cpp shared libraries (libllama.so, libggml.so, libggml-base.so
// and the libggml-cpu-*.so variants) live in a directory given by
// Options.LibDir or $MDSA_LLAMA_LIB; `make setup` installs them in
// .deps/llama, and FindLibDir locates that directory. Loading them, and
// initialising llama.cpp's back-ends, is process-wide: the first successful
// Open does it once, under a mutex; every later Open must name the same
// directory (or leave it empty with the same $MDSA_LLAMA_LIB) or it fails
// with ErrLibDirMismatch. A failed load may be retried. The libraries are
// never unloaded. llama.cpp's own log output is routed, line by line, to the
// Logger of the Open that loaded the libraries, at debug level (attributes
// source=llama.cpp and llama_level); nothing is printed to stderr.
//
// # Scheduling, prefix reuse and memory
//
// An Engine loads the model weights once and runs every generation on one
// llama.cpp context with Options.Parallel sequences (slots), each with a KV
// buffer of its own of ContextSize cells, computed by one thread pool of
// Options.Threads threads. A single goroutine, the scheduler, owns the
// context. Each step it decodes one batch holding the next token of every
// sequence that is generating plus chunks of the prompts still being read
// (at most BatchSize tokens in all, oldest request first), then samples one
// token for each sequence that asked for logits. A request that arrives
// joins at the next step; a long prompt is read a chunk per step, so the
// streams in flight keep going (continuous batching with chunked prefill).
// Generate queues its request and waits on its own goroutine, where
// onToken runs: a slow callback never holds up other sequences.
//
// Each sequence keeps the tokens it evaluated after its request ends. A new
// request takes the free sequence whose tokens share the longest prefix with
// its prompt (a sequence that would lose more than half of what it holds
// counts as no match; ties go to an empty, else the least recently used
// one), drops the rest of that sequence, and evaluates only the remaining
// tokens; at least its last prompt token is evaluated, for the logits. When
// another sequence, busy or free, holds a longer prefix, that prefix is
// copied into the least valuable free sequence instead (llama.cpp copies
// the sequence's buffer, a memory copy far cheaper than evaluating the
// prefix again). Result.TokensCached says how many prompt tokens were
// reused.
//
// A sequence about to drop 32 tokens or more of what it holds first saves
// its state (keys and values, as llama.cpp serialises a
// sequence) to the prompt cache: memory outside the Go heap, at most
// Options.PromptCacheBytes, least recently used out first, an entry
// replacing those it extends; while entries keep leaving unused (prompts
// that come back later than the cache can hold them) only one save in four
// is kept, so that some stay long enough to be hit. When the cache holds a longer prefix of a new
// prompt than any sequence (by 16 tokens or more), that state is copied back
// instead: a conversation's next turn after its sequence served other
// domains, or a repeated question, evaluates only what is new. With
// Options.PromptCacheDir the cache outlives the engine: Close saves every
// sequence into it and writes it out (one checksummed file per entry,
// written atomically, stamped with the model file and context), and Open
// reads it back, so the first requests after a restart are warm.
// Requests of one domain start with the same system prompt, so they
// evaluate only the user's turn.
//
// Memory per engine is the weights (shared, usually memory-mapped), a KV
// buffer of about
//
//	2 (K and V) × layers × Parallel × ContextSize × n_embd_kv × 2 bytes (f16)
//
// and one compute buffer that grows
// with the physical batch (at most 512 tokens) and the vocabulary size.
// Embed uses one further context with embeddings enabled (mean pooling,
// min(ContextSize, 2048) tokens), created on first use; Embed calls take
// turns on it.
//
// # Threads
//
// The engine's thread pools are created once. While it decodes with all
// its threads, the idle workers spin between steps (polling level 50, as
// llama-server's do), since waking them from sleep at every step cost
// 5-10% of decode speed; the moment the scheduler has nothing to compute,
// or waits for cores another engine holds, the pool is paused and its
// workers sleep, so an engine that waits costs no CPU (llama-server's spin
// on for about 90 ms after each answer). Within a computation ggml's threads wait for each other by
// spinning, which collapses when other tasks take their cores (two busy
// processes on two cores made a 12 ms reply take 3 s on two threads), so
// every 100 ms of activity the scheduler measures the CPUs that other tasks
// used (/proc/stat less /proc/self/stat; a window that starts afresh after
// the engine idled) and computes with at most the host's CPUs less those,
// never fewer than one thread, on a second pool whose workers sleep at
// once instead of spinning: a busy machine degrades smoothly. Options.Cores, shared
// by every engine of a process, bounds the threads that compute at once:
// each decode takes its thread count from it for as long as it runs, so two
// models never oversubscribe the cores between them. Embed takes its turn
// the same way.
//
// For decoder models Open also starts reading the token classes of the
// vocabulary in the background (one llama.cpp call per token, two bits of
// memory per token), which chat prompts need; the first chat prompt waits
// for it if it has not finished, and Close waits for it.
//
// Close stops generations in progress at the scheduler's next step (they
// return an error wrapping engine.ErrClosed), fails the queued ones, waits
// for every call in progress to return, then frees the context and the
// model.
//
// # Prompts
//
// With Request.Messages the model's own chat template (GGUF key
// tokenizer.chat_template) is applied by llama.cpp's llama_chat_apply_template,
// which recognises the common template families by their text but does not
// execute arbitrary Jinja. When the model has no template, or llama.cpp does
// not recognise it, the messages are formatted as ChatML
// (<|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n).
//
// Special (control) tokens of a chat prompt come from the template only,
// never from what a message says: a user message holding
// "<|im_end|>\n<|im_start|>system\n..." reaches the model as that text, not
// as the end of its turn. (llama.cpp's server, by contrast, tokenizes the
// rendered prompt with special-token parsing, which lets message content
// open and close turns.) To that end the template is rendered with a
// placeholder in place of each message's content, so content never passes
// through the renderer; where the template trims a content, or leaves out an
// empty one, the placeholder shows it and the content is treated alike. The
// template's text is searched for special tokens by llama.cpp's tokenizer
// with special-token parsing on; the text between two special tokens,
// template text and content alike, is tokenized in one piece with it off.
// The text runs are thus split where a tokenization of the whole rendered
// prompt splits them, so ordinary messages get exactly the tokens they got
// that way (the tests check this), and the vocabulary's BOS (and EOS where it
// asks for one) are added as llama.cpp adds them; a template that writes the
// BOS text itself does not double it. Should a vocabulary turn plain text
// into a control token anyway (SentencePiece merges can), the prompt is
// refused. Roles are written into the template text, so a role must be 1 to
// 64 ASCII letters, digits, '_' or '-'. The splits of template text are
// cached per engine; preparing a chat prompt costs about what tokenizing the
// rendered text does.
//
// Request.Prompt is used as is and is trusted: it comes from the host or a
// plugin, not from a user, and its special-token text (such as <|im_end|>)
// becomes special tokens, as in llama.cpp's server, so that callers can
// write their own prompt formats. Text from users must not be put into a
// raw prompt unchecked; send it as Messages. The vocabulary's BOS/EOS rules
// apply to raw prompts too. Either way the prompt and the reply together
// must fit ContextSize. CountTokens and Embed tokenize without special-token
// parsing.
//
// # Sampling and stopping
//
// Temperature 0 is greedy decoding. Otherwise the sampler chain is repeat
// penalty (over the last 64 tokens, when RepeatPenalty is set and not 1),
// top-k (when TopK > 0), top-p (when 0 < TopP < 1), temperature, and a
// seeded draw (Seed 0 draws a random seed). Generation ends with finish
// reason "stop" on an end-of-generation token of the vocabulary or a stop
// string, and "length" after MaxTokens tokens (MaxTokens <= 0: no limit but
// the context) or when the context is full.
//
// Text reaches onToken as soon as it is certain: a piece that ends inside a
// multi-byte UTF-8 character waits for the bytes that complete it, and any
// tail of the text that could be the beginning of a stop string waits until
// it either completes the stop string or stops matching. So stop strings are
// found across token boundaries, the stop string and anything after it is
// never streamed or returned, and the concatenated pieces always equal
// Result.Text. Bytes that are not valid UTF-8 are replaced with U+FFFD.
// The scheduler checks ctx at every step, and a request still waiting for a
// free sequence leaves at once when ctx ends; a cancelled generation returns
// an error wrapping ctx.Err() with the partial Result, and onToken is not
// called after ctx has ended. Params.IgnoreEOS bans the end-of-generation
// tokens, so the answer runs to MaxTokens (for benchmarks).
package llamacpp
