package llamacpp

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/mdsa-go/mdsa/host/engine"
)

// Defaults applied by Open to zero-valued Options fields.
const (
	// DefaultContextSize caps the context of a model whose training context
	// is larger; a bigger context costs KV-cache memory per pooled context.
	DefaultContextSize = 4096
	// DefaultBatchSize is the number of prompt tokens decoded per call.
	DefaultBatchSize = 512
	// DefaultParallel is the number of sequences decoded together.
	DefaultParallel = 4
)

// maxUBatch bounds the physical batch llama.cpp computes at once, which
// bounds the compute buffer of each context.
const maxUBatch = 512

// Options configure Open. The zero value works when $MDSA_LLAMA_LIB is set.
type Options struct {
	// LibDir is the directory holding libllama.so and libggml*.so. Empty
	// means $MDSA_LLAMA_LIB. The libraries are loaded once per process; see
	// the package documentation.
	LibDir string
	// Name is what Model() and Result.Model report. Empty means the model
	// file's base name without the .gguf extension.
	Name string
	// Threads is the number of CPU threads the engine computes with: one
	// thread pool per engine, shared by all its sequences. 0 means one per
	// physical (performance) core.
	Threads int
	// Cores, when set, is shared by every engine of the process: their
	// decodes together never use more threads than it has cores.
	Cores *Cores
	// PromptCacheBytes is the memory (outside the Go heap) that states of
	// evaluated prompts may take, kept for prompts that come back after
	// their sequence served others (see the package documentation). 0
	// means DefaultPromptCacheBytes; negative turns the cache off.
	PromptCacheBytes int64
	// PromptCacheDir, when set, makes the prompt cache persistent: Close
	// writes it there (the sequences' caches included) and Open reads what
	// an earlier run of the same model file wrote, so the first requests
	// after a restart find their prompts evaluated. Files that do not
	// match the model, or are damaged, are ignored and removed.
	PromptCacheDir string
	// ContextSize is the number of tokens (prompt and reply) one
	// generation may use. 0 means the model's training context, at most
	// DefaultContextSize.
	ContextSize int
	// Parallel is the number of sequences decoded together, each holding
	// one generation and, between generations, its tokens for reuse.
	// Further calls wait. 0 means DefaultParallel.
	Parallel int
	// GPULayers is the number of layers to offload to a GPU when the
	// libraries have a GPU back-end: 0 keeps the model on the CPU, a
	// negative value offloads every layer.
	GPULayers int
	// BatchSize is the number of prompt tokens decoded per llama.cpp call.
	// 0 means DefaultBatchSize. It is capped at ContextSize.
	BatchSize int
	// Logger receives the engine's logs and, for the Open that first loads
	// the libraries, llama.cpp's own log lines at debug level. nil means
	// slog.Default().
	Logger *slog.Logger
}

// Info describes an open engine's model and configuration.
type Info struct {
	Name          string // as reported by Model()
	Path          string // model file
	Description   string // llama.cpp's model description, e.g. "llama ?B Q4_0"
	Params        uint64 // number of parameters
	SizeBytes     uint64 // size of the weights in memory
	TrainContext  int    // context length the model was trained with
	ContextSize   int    // tokens one generation may use
	BatchSize     int    // tokens per decode step
	Parallel      int    // sequences (concurrent generations)
	Threads       int    // CPU threads of the engine's thread pool
	EmbeddingSize int    // length of Embed vectors
	ChatTemplate  string // the model's chat template; "" means ChatML is used
	// GPULayers is how many of the model's Layers llama.cpp offloaded to
	// a GPU (0 on the CPU); Layers is 0 when no GPU device is there to
	// offload to (a CPU-only build, or a GPU back-end that did not come up).
	GPULayers, Layers int
}

// Engine runs one GGUF model with llama.cpp. It implements engine.Engine
// and is safe for concurrent use; see the package documentation for the
// design.
type Engine struct {
	info  Info
	log   *slog.Logger
	model llama.Model
	vocab llama.Vocab

	pieceOnce sync.Once           // maxPiece, computed on the first long prompt
	maxPiece  int                 // bytes of the longest token text
	utf8Once  sync.Once           // utf8, built before the first constrained generation
	utf8      *utf8Table          // for the UTF-8 guard of constrained generations
	cparam    llama.ContextParams // of the generation context

	hasDecoder bool
	hasEncoder bool

	// addPrefix and addSuffix are the tokens llama.cpp adds around a text
	// tokenized with add_special (BOS, and EOS where the vocabulary asks
	// for it); set by Open. specials classifies the vocabulary's tokens; it
	// is written once, by a goroutine that Open starts, and may be read
	// after specialsReady is closed. All serve chat prompts (decoder models
	// only).
	addPrefix, addSuffix []llama.Token
	specials             vocabSpecials
	specialsReady        chan struct{}

	// cores bounds the compute threads of this engine and its peers.
	cores *Cores
	// cacheBytes (<= 0: off) and cacheDir configure the prompt cache.
	cacheBytes int64
	cacheDir   string

	// tmplCache holds the splits of template texts (see templateText);
	// tmplMu guards the map, never a tokenization.
	tmplMu    sync.Mutex
	tmplCache map[string]*templateText

	// sched runs every generation (decoder models only).
	sched *sched
	// embedSlot holds one token while an Embed call uses the embedding
	// context.
	embedSlot chan struct{}
	// done is closed by Close so that waiting and running calls stop.
	done chan struct{}

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup // calls that use the model; Close waits for them

	// embed is created on first use by the holder of embedSlot and freed by
	// Close after inflight drains.
	embed    llama.Context
	embedErr error
}

var _ engine.Engine = (*Engine)(nil)

// Open loads the llama.cpp libraries (once per process) and the GGUF model
// at modelPath, and creates the first pooled context so that configuration
// errors surface here. Loading the weights cannot be interrupted; ctx is
// checked before and after.
func Open(ctx context.Context, modelPath string, opts Options) (*Engine, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("llamacpp: opening %s: %w", modelPath, err)
	}
	if err := loadLibrary(opts.LibDir, opts.Logger); err != nil {
		return nil, err
	}
	if err := cString("model path", modelPath); err != nil {
		return nil, err
	}
	if err := checkModelFile(modelPath); err != nil {
		return nil, err
	}

	if opts.GPULayers != 0 {
		if why := currentBackends().Explain(); why != "" {
			log.Warn("gpu_layers asks for a GPU, but llama.cpp has none: the model runs on the CPU", "model", modelPath, "gpu_layers", opts.GPULayers, "why", why)
		}
	}
	mp := llama.ModelDefaultParams()
	switch {
	case opts.GPULayers < 0:
		mp.NGpuLayers = 999
	default:
		mp.NGpuLayers = int32(opts.GPULayers)
	}
	lastLlamaError() // forget errors from earlier calls
	model, err := llama.ModelLoadFromFile(modelPath, mp)
	if err != nil || model == 0 {
		msg := lastLlamaError()
		if msg != "" {
			return nil, fmt.Errorf("llamacpp: llama.cpp could not load model file %s (corrupt or unsupported GGUF?): %s", modelPath, msg)
		}
		return nil, fmt.Errorf("llamacpp: llama.cpp could not load model file %s (corrupt or unsupported GGUF?)", modelPath)
	}

	e := &Engine{
		log:        log,
		model:      model,
		vocab:      llama.ModelGetVocab(model),
		hasDecoder: llama.ModelHasDecoder(model),
		hasEncoder: llama.ModelHasEncoder(model),
		done:       make(chan struct{}),
		embedSlot:  make(chan struct{}, 1),
	}
	e.info = Info{
		Name:          opts.Name,
		Path:          modelPath,
		Description:   llama.ModelDesc(model),
		Params:        llama.ModelNParams(model),
		SizeBytes:     llama.ModelSize(model),
		TrainContext:  int(llama.ModelNCtxTrain(model)),
		EmbeddingSize: int(llama.ModelNEmbdOut(model)),
		ChatTemplate:  llama.ModelChatTemplate(model, ""),
	}
	if e.info.Name == "" {
		e.info.Name = strings.TrimSuffix(filepath.Base(modelPath), filepath.Ext(modelPath))
	}
	if llama.SupportsGpuOffload() {
		e.info.GPULayers, e.info.Layers = offloadedLayers(mp.NGpuLayers, llama.ModelNLayer(model))
		if e.info.GPULayers > 0 {
			log.Info("model offloaded to GPU", "model", e.info.Name, "layers", e.info.GPULayers, "of", e.info.Layers)
		}
	}
	if e.info.EmbeddingSize <= 0 {
		e.info.EmbeddingSize = int(llama.ModelNEmbd(model))
	}

	nCtx := opts.ContextSize
	if nCtx <= 0 {
		nCtx = e.info.TrainContext
		if nCtx <= 0 || nCtx > DefaultContextSize {
			nCtx = DefaultContextSize
		}
	}
	nBatch := opts.BatchSize
	if nBatch <= 0 {
		nBatch = DefaultBatchSize
	}
	nBatch = min(nBatch, nCtx)
	parallel := opts.Parallel
	if parallel <= 0 {
		parallel = DefaultParallel
	}

	threads := opts.Threads
	if threads <= 0 {
		threads = int(llama.Threads())
	}
	cp := llama.ContextDefaultParams()
	cp.NThreads = int32(threads)
	cp.NThreadsBatch = int32(threads)
	cp.NCtx = uint32(nCtx)
	cp.NBatch = uint32(nBatch)
	cp.NUbatch = uint32(min(nBatch, maxUBatch))
	cp.NSeqMax = 1
	cp.NoPerf = 1
	e.cparam = cp
	e.cores = opts.Cores
	e.cacheBytes = opts.PromptCacheBytes
	if e.cacheBytes == 0 {
		e.cacheBytes = DefaultPromptCacheBytes
	}
	e.cacheDir = opts.PromptCacheDir
	e.info.ContextSize = nCtx
	e.info.BatchSize = nBatch
	e.info.Parallel = parallel
	e.info.Threads = threads

	if e.hasDecoder {
		s, err := e.newSched(parallel)
		if err != nil {
			llama.ModelFree(model)
			return nil, err
		}
		e.sched = s
		e.info.ContextSize = s.nCtx
		s.loadPromptCache(e.cacheDir)
		go s.loop(e.done)

		// Chat prompts need the vocabulary's token classes. Reading them
		// takes one llama.cpp call per token (tens of milliseconds for a
		// large vocabulary), so it runs in the background, as a call in
		// flight that Close waits for; chat prompts wait for it.
		e.addPrefix, e.addSuffix = specialAffixes(e.vocab)
		e.specialsReady = make(chan struct{})
		e.inflight.Add(1)
		go func() {
			defer e.inflight.Done()
			e.specials = newVocabSpecials(e.vocab)
			close(e.specialsReady)
		}()
	}
	if err := ctx.Err(); err != nil {
		e.Close()
		return nil, fmt.Errorf("llamacpp: opening %s: %w", modelPath, err)
	}
	log.Debug("llama.cpp model loaded", "model", e.info.Name, "path", modelPath,
		"desc", e.info.Description, "params", e.info.Params, "context", e.info.ContextSize,
		"parallel", parallel, "threads", e.info.Threads, "chat_template", e.info.ChatTemplate != "")
	return e, nil
}

// newSched creates the generation context (parallel sequences, each with a
// KV buffer of its own of ContextSize cells), its batch and its thread
// pool.
//
// Per-sequence buffers rather than one unified buffer: in a unified buffer
// every token attends over all the cells in use up to the highest one, the
// other sequences' included (masked out), which made a single stream after
// busy periods read several times the KV memory it needs (decode 0.7x
// llama-server's). Per-sequence buffers keep each stream's attention to its
// own cells, at the price that a prefix copied between sequences is a copy
// of the buffer rather than shared cells.
func (e *Engine) newSched(parallel int) (*sched, error) {
	nCtx := int(e.cparam.NCtx)
	cp := e.cparam
	cp.NCtx = uint32(nCtx * parallel)
	cp.NSeqMax = uint32(parallel)
	cp.KVUnified = 0
	lctx, err := llama.InitFromModel(e.model, cp)
	if err != nil {
		msg := lastLlamaError()
		return nil, fmt.Errorf("llamacpp: creating a llama.cpp context for %s (%d sequences of %d tokens, batch %d; lower ContextSize or Parallel if memory is short): %w %s",
			e.info.Path, parallel, nCtx, cp.NBatch, err, msg)
	}
	mem, err := llama.GetMemory(lctx)
	if err != nil {
		llama.Free(lctx)
		return nil, fmt.Errorf("llamacpp: context memory for %s: %w", e.info.Path, err)
	}
	// llama.cpp pads each sequence's buffer to a multiple of 256 cells.
	nCtx = max(int(llama.NCtxSeq(lctx)), 1)
	nBatch := int(llama.NBatch(lctx))
	s := &sched{
		e:        e,
		lctx:     lctx,
		mem:      mem,
		batch:    llama.BatchInit(int32(nBatch), 0, 1),
		nBatch:   nBatch,
		nCtx:     nCtx,
		threads:  int(cp.NThreads),
		cur:      int(cp.NThreads),
		load:     newLoadWatch(),
		nVocab:   llama.VocabNTokens(e.vocab),
		cores:    e.cores,
		wake:     make(chan struct{}, 1),
		loopDone: make(chan struct{}),
	}
	if e.cacheBytes > 0 {
		s.cache = &promptCache{budget: e.cacheBytes}
	}
	for i := range parallel {
		id := llama.SeqId(i)
		s.slots = append(s.slots, &slot{id: id, ids: []llama.SeqId{id}})
	}
	// Thread pools for every decode of this context (without one, ggml
	// starts and joins its threads for each computation): one whose idle
	// workers spin between steps, used while the engine has the CPUs it
	// wants and paused whenever it stops computing, and one whose workers
	// sleep at once, used while other tasks take CPUs. Without the pause
	// call only the sleeping pool is made.
	s.pause = poolPause()
	if s.pause != 0 {
		s.tpSpin = newPool(e, cp.NThreads, spinPoll)
	}
	s.tpSleep = newPool(e, cp.NThreads, sleepPoll)
	s.attachPool(s.tpSpin)
	return s, nil
}

// free releases the context, its batch and its thread pool; the loop must
// have ended.
func (s *sched) free() {
	llama.BatchFree(s.batch)
	for _, sl := range s.slots {
		if sl.sampler != 0 {
			llama.SamplerFree(sl.sampler)
		}
		if sl.grammar != 0 {
			llama.SamplerFree(sl.grammar)
		}
	}
	s.cache.free()
	llama.Free(s.lctx)
	llama.ThreadpoolFree(s.tpSpin)
	llama.ThreadpoolFree(s.tpSleep)
}

// Model names the model this engine runs.
func (e *Engine) Model() string { return e.info.Name }

// Info describes the model and the engine's configuration.
func (e *Engine) Info() Info { return e.info }

// offloadedLayers returns how many layers llama.cpp puts on a GPU when
// asked for asked of a model of nLayer layers, and of how many: the
// repeating layers plus the output layer, the first asked of them (the
// count llama.cpp itself reports when it loads a model with a GPU device).
func offloadedLayers(asked, nLayer int32) (gpu, layers int) {
	layers = int(nLayer) + 1
	return min(max(int(asked), 0), layers), layers
}

// Placement implements engine.Placer: the layers llama.cpp offloaded.
func (e *Engine) Placement() engine.Placement {
	return engine.Placement{GPULayers: e.info.GPULayers, Layers: e.info.Layers}
}

var _ engine.Placer = (*Engine)(nil)

// begin registers a call that uses the model, or fails once closed.
func (e *Engine) begin() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return engine.ErrClosed
	}
	e.inflight.Add(1)
	return nil
}

// Close stops running generations at their next token, waits for every call
// in progress to return, and frees the contexts and the model. Calling it
// again returns nil; other methods then fail with engine.ErrClosed. The
// process-wide libraries stay loaded.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.done)
	e.mu.Unlock()

	e.inflight.Wait()
	if e.sched != nil {
		<-e.sched.loopDone
		e.sched.savePromptCache(e.cacheDir)
		e.sched.free()
		e.sched = nil
	}
	if e.embed != 0 {
		llama.Free(e.embed)
		e.embed = 0
	}
	llama.ModelFree(e.model)
	e.model = 0
	e.log.Debug("llama.cpp model closed", "model", e.info.Name)
	return nil
}

// stopped returns a non-nil error when ctx is done or the engine is closing.
func (e *Engine) stopped(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-e.done:
		return engine.ErrClosed
	default:
		return nil
	}
}

// tokenize converts text to tokens. addSpecial adds BOS/EOS as the vocabulary
// asks; parseSpecial turns special-token text such as <|im_start|> into
// those tokens.
func (e *Engine) tokenize(what, text string, addSpecial, parseSpecial bool) ([]llama.Token, error) {
	if err := cString(what, text); err != nil {
		return nil, err
	}
	if len(text) > 1<<30 {
		return nil, fmt.Errorf("llamacpp: %s is too long (%d bytes)", what, len(text))
	}
	return llama.Tokenize(e.vocab, text, addSpecial, parseSpecial), nil
}

// CountTokens returns how many tokens text has in the model's vocabulary,
// without BOS/EOS and without parsing special-token text.
func (e *Engine) CountTokens(ctx context.Context, text string) (int, error) {
	if err := e.begin(); err != nil {
		return 0, err
	}
	defer e.inflight.Done()
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("llamacpp: counting tokens: %w", err)
	}
	toks, err := e.tokenize("text", text, false, false)
	if err != nil {
		return 0, err
	}
	return len(toks), nil
}

// errNoDecoder is returned by Generate for encoder-only (embedding) models.
var errNoDecoder = fmt.Errorf("llamacpp: model cannot generate text (no decoder): %w", engine.ErrNotSupported)

// decodeError explains a non-zero llama_decode result.
func decodeError(what string, ret int32) error {
	switch ret {
	case 1:
		return fmt.Errorf("llamacpp: %s: no room in the KV cache (context full)", what)
	case 2:
		return fmt.Errorf("llamacpp: %s: aborted", what)
	default:
		return fmt.Errorf("llamacpp: %s: llama_decode failed with %d", what, ret)
	}
}
